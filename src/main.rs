//! The `landwatch` binary: parses the command line, sets up logging, maps errors to exit codes.

use clap::Parser;
mod cli;

use cli::{dispatch, Cli};
use std::io::IsTerminal;

fn main() {
    require_cpu_features();
    keep_freed_memory();
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

/// glibc hands every freed buffer over 128 KiB–32 MiB straight back to the kernel, so the
/// streaming pass, which allocates and frees the same few hundred MiB of block and strip arrays
/// over and over, spent a quarter of its CPU time in page faults and page zeroing. Raising the
/// thresholds keeps that memory in the process for reuse; peak RSS does not grow, as the same
/// sizes come back.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called first thing, before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// The build targets x86-64-v3 (see `.cargo/config.toml`); on an older CPU say so plainly
/// instead of dying of an illegal instruction somewhere in a kernel.
fn require_cpu_features() {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    if !std::arch::is_x86_feature_detected!("avx2") || !std::arch::is_x86_feature_detected!("fma") {
        eprintln!(
            "landwatch: error: this build needs an x86-64-v3 CPU (AVX2, FMA); \
             rebuild without the target-cpu line of .cargo/config.toml for this machine"
        );
        std::process::exit(2);
    }
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
