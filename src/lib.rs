//! landwatch: farmland change detection from 2–3 m optical satellite imagery for
//! natural-resources enforcement (卫片执法).
//!
//! The modules follow the pipeline's stages, in the order data flows through them:
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | 1 | [`pipeline`] | pipeline files, fetching tiles into the archive, resumable nightly runs |
//! | 2 | [`align`] | warp onto the baseline grid, sub-pixel shift, radiometric normalisation |
//! | 3 | [`detect`] | masks, change evidence, thresholds, morphology — streamed in blocks |
//! | 4 | [`patches`] | polygons, typing with a model, land-use overlay, 非农化/非粮化 categories |
//! | 5 | [`publish`] | GeoJSON, GeoPackage/Shapefile, image chips, run manifest |
//! | 6 | [`review`] | the web app where staff triage patches |
//!
//! Beside them: [`io`] (GDAL access), [`model`] (versioned model files), [`eval`] (accuracy
//! against labelled pairs) and [`synth`] (deterministic synthetic scenes with truth).

pub mod align;
pub mod cli;
pub mod detect;
pub mod error;
pub mod eval;
pub mod io;
pub mod learn;
pub mod model;
pub mod patches;
pub mod pipeline;
pub mod publish;
pub mod synth;
pub mod test_hooks;

pub use error::{Error, Result};
pub mod review;
