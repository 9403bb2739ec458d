//! Stage 3: change detection, streamed in blocks with bounded memory.
//!
//! [`run`] is the entry point: it opens a pair as a [`scene::Scene`] (aligned, normalised),
//! calibrates thresholds, streams every block through masks → evidence → threshold →
//! morphology ([`stream`]), then hands the change mask to [`crate::patches`].
pub mod budget;
pub mod evidence;
pub mod gate;
pub mod indices;
pub mod layout;
pub mod masks;
pub mod morphology;
pub mod reuse;
pub mod run;
pub mod scene;
pub mod stream;
pub mod texture;
pub mod threshold;

pub use run::{run, DetectRequest, DetectSummary};
