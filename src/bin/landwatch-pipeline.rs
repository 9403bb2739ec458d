//! TEMPORARY: drives the pipeline subcommands end to end until the lead wires them into
//! `landwatch` (src/cli.rs). Delete once `landwatch run|rerun|merge` exist.

use clap::{Parser, Subcommand};
use landwatch::pipeline::{merge_main, rerun_main, run_main, MergeArgs, RerunArgs, RunArgs};

#[derive(Parser)]
struct Cli {
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(RunArgs),
    Rerun(RerunArgs),
    Merge(MergeArgs),
}

fn main() {
    let cli = Cli::parse();
    let b = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr);
    if cli.log_json {
        b.json().init();
    } else {
        b.init();
    }
    let r = match cli.command {
        Command::Run(a) => run_main(a),
        Command::Rerun(a) => rerun_main(a),
        Command::Merge(a) => merge_main(a),
    };
    std::process::exit(match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("landwatch: error: {e}");
            e.exit_code()
        }
    });
}
