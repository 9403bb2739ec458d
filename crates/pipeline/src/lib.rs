//! The nightly pipeline: pipeline files, fetching tiles into an archive, resumable runs,
//! provenance, reruns and scale-out.
//!
//! A run ([`run::run`]) lists the configured source, plans before/after pairs that no earlier run
//! processed, fetches what the archive lacks ([`fetch`] → [`archive`]), detects each pair into a
//! checkpoint folder through a [`detector::TileDetector`], merges patches across tile seams
//! ([`seams`]), recognises changes already published ([`tracking`]), and publishes the run folder
//! and its [`manifest`] atomically. [`rerun`] recomputes from the archive; [`shard`] splits a run
//! over a cluster scheduler and merges the parts.
//!
//! The CLI entry points ([`run_main`], [`rerun_main`], [`merge_main`]) map outcomes to the
//! project's exit codes: 0 all good, 1 finished with failed tiles, 2 bad configuration or input,
//! 3 could not run. Logging is set up by the binary (`--log-json`, JSON when not a terminal).
#![warn(missing_docs)]

pub mod archive;
pub mod config;
pub mod detector;
pub(crate) mod fetch;
pub mod lock;
pub(crate) mod manifest;
pub(crate) mod partial;
pub(crate) mod patchset;
pub mod promote;
pub mod rerun;
pub mod run;
pub(crate) mod seams;
pub mod shard;
pub(crate) mod source;
pub mod test_hooks;
pub(crate) mod tracking;

use std::io::IsTerminal;
use std::path::PathBuf;

use landwatch_core::Result;

pub use detector::{EngineDetector, TileDetector, TileJob};
pub use run::{RunOptions, RunReport, RunResult};
pub use shard::Shard;

/// `landwatch run PIPELINE [--dry-run] [--shard I/N] [--log-json]`
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Pipeline file (TOML), e.g. pipelines/demo.toml.
    pub pipeline: PathBuf,
    /// List what would be fetched and processed, and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Process only shard I of N (0-based), e.g. `--shard $SLURM_ARRAY_TASK_ID/8`; combine the
    /// shards with `landwatch merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
}

/// `landwatch rerun PIPELINE (RUN_ID | --from DATE --to DATE) [--model M] [--out DIR]`
#[derive(Debug, Clone, clap::Args)]
pub struct RerunArgs {
    /// Pipeline file whose archive and runs to use.
    pub pipeline: PathBuf,
    /// A published run to recompute (a folder name under `<output>/runs/`).
    #[arg(required_unless_present = "from", conflicts_with_all = ["from", "to"])]
    pub run_id: Option<String>,
    /// First after-date (YYYY-MM-DD) of an archive range to recompute.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Last after-date (YYYY-MM-DD) of the range.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Model file to use instead of the run's.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Output folder (default `<output>/reruns/<run>-model-<hash>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `landwatch merge SHARD_DIR... [--out RUN_DIR]`
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// Shard folders written by `landwatch run --shard I/N` (all N of one run).
    #[arg(required = true)]
    pub shard_dirs: Vec<PathBuf>,
    /// Published run folder (default `<output>/runs/<run_id>` of the pipeline).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Prints the failed names (stderr) and returns the exit code.
fn report_failures(failed: &[(String, String)]) -> i32 {
    for (name, why) in failed {
        eprintln!("FAILED {name}: {why}");
    }
    i32::from(!failed.is_empty())
}

/// Entry point of `landwatch run`.
pub fn run_main(args: RunArgs) -> Result<i32> {
    let p = config::load(&args.pipeline)?;
    let opts = RunOptions {
        dry_run: args.dry_run,
        shard: args.shard,
        progress: std::io::stderr().is_terminal(),
    };
    let report = run::run(&p, &opts, &EngineDetector)?;
    match &report.result {
        RunResult::Published { run_id, dir } => println!(
            "published run {run_id}: {} patches -> {}",
            report.patches,
            dir.display()
        ),
        RunResult::ShardWritten { run_id, dir } => {
            println!("shard of run {run_id} written -> {}", dir.display())
        }
        RunResult::AllFailed { run_id, .. } => eprintln!(
            "landwatch: error: NOTHING PUBLISHED: every pair of run {run_id} failed (listed below); \
             the next run retries them as run {run_id}"
        ),
        RunResult::NothingNew | RunResult::DryRun => {}
    }
    report_failures(&report.failed);
    Ok(report.exit_code())
}

/// Entry point of `landwatch rerun`.
pub fn rerun_main(args: RerunArgs) -> Result<i32> {
    let p = config::load(&args.pipeline)?;
    let what = match (args.run_id, args.from, args.to) {
        (Some(id), None, None) => rerun::RerunWhat::Run(id),
        (None, Some(from), Some(to)) => rerun::RerunWhat::Range { from, to },
        _ => {
            return Err(landwatch_core::Error::Usage(
                "give either RUN_ID or --from DATE --to DATE".into(),
            ))
        }
    };
    let r = rerun::rerun(&p, &what, args.model.as_deref(), args.out.as_deref(), &EngineDetector)?;
    println!("rerun: {} patches -> {}", r.patches, r.dir.display());
    Ok(report_failures(&r.failed))
}

/// Entry point of `landwatch merge`.
pub fn merge_main(args: MergeArgs) -> Result<i32> {
    let r = shard::merge(&args.shard_dirs, args.out.as_deref())?;
    println!("merged: {} patches -> {}", r.patches, r.dir.display());
    Ok(report_failures(&r.failed))
}
