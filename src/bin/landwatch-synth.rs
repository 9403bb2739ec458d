//! TEMPORARY stand-alone front end for `landwatch synth` until the lead wires it into the main
//! CLI. Remove once `landwatch synth` exists.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "landwatch-synth",
    about = "Synthetic before/after pair with ground truth"
)]
struct Cli {
    #[command(flatten)]
    args: landwatch::synth::SynthArgs,
}

fn main() {
    let cli = Cli::parse();
    match landwatch::synth::cli_main(cli.args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
