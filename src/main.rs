//! The `landwatch` binary: parses the command line, sets up logging, maps errors to exit codes.

use clap::Parser;
use landwatch::cli::{dispatch, Cli};
use std::io::IsTerminal;

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_json, cli.verbose);
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("landwatch: error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn init_logging(json: bool, verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LANDWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json || !std::io::stderr().is_terminal() && std::env::var_os("LANDWATCH_LOG_TEXT").is_none() {
        builder.json().init();
    } else {
        builder.init();
    }
}
