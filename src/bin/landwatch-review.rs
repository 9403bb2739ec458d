//! TEMPORARY stand-alone entry point for `landwatch review ...`, used for end-to-end testing
//! until the lead wires `review::ReviewCmd` into the main CLI. Remove it then.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "landwatch-review",
    about = "landwatch review app (temporary binary)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: landwatch::review::ReviewCmd,
}

fn main() {
    let cli = Cli::parse();
    let code = match landwatch::review::cli_main(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
