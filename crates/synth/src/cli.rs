//! `landwatch synth`: command-line front end of the scene synthesiser.

use std::io::Write;
use std::path::PathBuf;

use super::{generate, SynthParams, SynthSummary};
use landwatch_core::{Error, Result};

/// Make a synthetic before/after pair with ground truth (deterministic for a size and seed).
#[derive(clap::Args, Debug, Clone)]
pub struct SynthArgs {
    /// Pixels per image side (2048 = 4 km x 4 km at 2 m).
    #[arg(long, default_value_t = 2048)]
    pub size: usize,
    /// Scene seed: the same size and seed give identical files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output folder (created if missing; existing outputs are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Ground sampling distance in metres.
    #[arg(long, default_value_t = 2.0)]
    pub pixel_m: f64,
    /// Planted cropland changes per km² (at least one of each type).
    #[arg(long, default_value_t = 5.0)]
    pub changes_per_km2: f64,
    /// Non-target changes off cropland per km².
    #[arg(long, default_value_t = 1.0)]
    pub nontarget_per_km2: f64,
    /// Approximate share of the after image under cloud.
    #[arg(long, default_value_t = 0.015)]
    pub cloud_cover: f64,
    /// Vary the scene's look with the seed as real pairs vary: radiometric product
    /// (reflectance × 10000, 10/12-bit DN, 8-bit stretched), sensor gain/offset, haze, blur,
    /// misregistration, seasonal share and roof colours (for training data; without it a
    /// seed's scene is the fixed benchmark).
    #[arg(long)]
    pub vary: bool,
    /// Worker threads (default: all cores). The output does not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs the synthesiser and prints what it made. Returns the process exit code.
pub fn cli_main(args: SynthArgs) -> Result<i32> {
    let params = SynthParams {
        size: args.size,
        seed: args.seed,
        pixel_m: args.pixel_m,
        changes_per_km2: args.changes_per_km2,
        nontarget_per_km2: args.nontarget_per_km2,
        cloud_cover: args.cloud_cover,
        vary: args.vary,
        ..SynthParams::default()
    };
    params.validate()?;
    let run = || generate(&params, &args.out);
    let summary = match args.threads {
        Some(0) => return Err(Error::Usage("synth: --threads must be at least 1".into())),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| Error::Other(format!("synth: starting {n} threads: {e}")))?
            .install(run)?,
        None => run()?,
    };
    print_summary(&args, &summary);
    Ok(0)
}

/// Prints what was made. Output goes through a fallible write: a closed pipe (`| head`) must not
/// turn a finished run into a panic.
fn print_summary(args: &SynthArgs, summary: &SynthSummary) {
    let mut lines: Vec<String> = Vec::new();
    let km = args.size as f64 * args.pixel_m / 1000.0;
    lines.push(format!(
        "synth: {} x {} px ({km:.2} km x {km:.2} km), seed {}, in {:.1} s -> {}",
        args.size,
        args.size,
        args.seed,
        summary.seconds,
        args.out.display()
    ));
    let changes: Vec<String> = summary.changes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    lines.push(format!("  changes: {}", changes.join(", ")));
    if !summary.unplaced.is_empty() {
        let missing: Vec<String> = summary.unplaced.iter().map(|(k, v)| format!("{k} {v}")).collect();
        lines.push(format!("  not placed (no room): {}", missing.join(", ")));
    }
    lines.push(format!(
        "  crop parcels {} ({} seasonal changes), land-use polygons {}, cloud {:.2} %, shadow {:.2} %, shift ({:.2}, {:.2}) px",
        summary.crop_parcels,
        summary.seasonal_changes,
        summary.landuse_polygons,
        summary.cloud_fraction * 100.0,
        summary.shadow_fraction * 100.0,
        summary.shift_px[0],
        summary.shift_px[1]
    ));
    lines.push(format!(
        "  time: scene {:.1} s, rasters {:.1} s, vectors {:.1} s",
        summary.seconds_scene, summary.seconds_rasters, summary.seconds_vectors
    ));
    let mut out = std::io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
}
