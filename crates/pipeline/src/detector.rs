//! The seam between the pipeline and the detection engine.
//!
//! The pipeline only needs "detect this before/after pair into this folder"; hiding that behind
//! [`TileDetector`] lets the orchestration (checkpoints, seams, tracking, shards) be tested with a
//! small fake detector, and keeps the engine's own options out of the pipeline's code.

use std::path::Path;

use super::config::{Bands, Layers};
use landwatch_core::pair::{self, DetectRequest};
use landwatch_core::Result;

/// One before/after pair to detect.
#[derive(Debug, Clone)]
pub struct TileJob<'a> {
    /// Before image.
    pub before: &'a Path,
    /// After image.
    pub after: &'a Path,
    /// Folder the detector writes into (it exists and is empty).
    pub out_dir: &'a Path,
    /// Acquisition date of the before image.
    pub before_date: &'a str,
    /// Acquisition date of the after image.
    pub after_date: &'a str,
    /// Model file; `None`: the built-in one.
    pub model: Option<&'a Path>,
    /// Verdict model marking likely false alarms `suppressed`; `None`: none.
    pub verdict_model: Option<&'a Path>,
    /// Vector layers for the overlay.
    pub layers: &'a Layers,
    /// Band order of the source tiles.
    pub bands: &'a Bands,
}

/// Something that turns a before/after pair into `out_dir/patches.geojson` (the run-folder
/// contract of notes/schema.md) plus whatever else it writes there (chips, change.tif, run.json).
pub trait TileDetector: Send + Sync {
    /// Detects `job` into `job.out_dir`; an error fails this pair only.
    fn detect(&self, job: &TileJob) -> Result<()>;
}

/// The real detection engine ([`landwatch_core::pair::run`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct EngineDetector;

impl TileDetector for EngineDetector {
    fn detect(&self, job: &TileJob) -> Result<()> {
        let l = job.layers;
        let req = DetectRequest {
            model_path: job.model.map(Path::to_path_buf),
            verdict_model: job.verdict_model.map(Path::to_path_buf),
            bands: (!job.bands.is_identity()).then(|| job.bands.engine_order()),
            radiometry: job.bands.radiometry,
            landuse: l.landuse.clone(),
            basic_farmland: l.basic_farmland.clone(),
            approved: l.approved.clone(),
            counties: l.counties.clone(),
            red_line: l.red_line.clone(),
            allow_empty_landuse: l.allow_empty_landuse,
            before_date: Some(job.before_date.to_string()),
            after_date: Some(job.after_date.to_string()),
            ..DetectRequest::new(job.before, job.after, job.out_dir)
        };
        let summary = pair::run(&req)?;
        tracing::debug!(
            patches = summary.patches,
            seconds = summary.seconds,
            "pair detected by the engine"
        );
        Ok(())
    }
}
