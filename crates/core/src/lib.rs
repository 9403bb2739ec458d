//! landwatch-core: farmland change detection for one before/after pair of 2–3 m optical
//! satellite images, for natural-resources enforcement (卫片执法).
//!
//! What it is for: everything between two images on disk and a folder of published patches.
//! What it is not for: fetching tiles, nightly runs and shards (`landwatch-pipeline`), the
//! review web app (`landwatch-review`), accuracy evaluation (`landwatch-eval`), synthetic scenes
//! (`landwatch-synth`) or the command line (the `landwatch` binary). It has no server, network
//! or database code.
//!
//! The modules follow the stages, in the order data flows through them; [`pair`] drives them
//! for one pair:
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | 1 | [`align`] | warp onto the baseline grid, sub-pixel shift, radiometric normalisation |
//! | 2 | [`detect`] | masks, change evidence, thresholds, morphology — streamed in blocks |
//! | 3 | [`patches`] | polygons, typing with a model, land-use overlay, 非农化/非粮化 categories |
//! | 4 | [`publish`] | GeoJSON, GeoPackage/Shapefile, image chips |
//!
//! Beside them: [`types`] (the patch and feature values the stages hand each other), [`io`]
//! (GDAL access, atomic output folders, checksums), [`model`] (versioned model files) and
//! [`error`] (the error type every landwatch crate uses, with its exit codes). No two modules
//! import each other: a stage uses only the stages before it and the modules beside them.
//!
//! Detecting change on a pair (here a small synthetic one):
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use landwatch_core::pair::{run, DetectRequest};
//! let dir = tempfile::tempdir()?;
//! let scene = dir.path().join("scene");
//! let params = landwatch_synth::SynthParams { size: 256, seed: 7, ..Default::default() };
//! landwatch_synth::generate(&params, &scene)?;
//! let summary = run(&DetectRequest {
//!     before: scene.join("before.tif"),
//!     after: scene.join("after.tif"),
//!     out_dir: dir.path().join("run"),
//!     landuse: Some(scene.join("landuse.gpkg")),
//!     ..Default::default()
//! })?;
//! assert!(dir.path().join("run/patches.geojson").is_file());
//! println!("{} patches", summary.patches);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod align;
pub mod detect;
pub mod error;
pub(crate) mod gdal_messages;
pub mod io;
pub mod learn;
pub mod model;
pub mod pair;
pub mod patches;
pub mod progress;
pub mod publish;
pub mod types;

pub use error::{Error, Result};
