//! Stage 3: change detection, streamed in blocks with bounded memory.
//!
//! [`crate::pair::run`] drives it: it opens a pair as a [`scene::Scene`] (aligned, normalised),
//! calibrates thresholds, streams every block through masks → evidence → threshold →
//! morphology ([`stream`]), then hands the change mask to [`crate::patches`]. Nothing here
//! imports the later stages: what they share lives in [`crate::types`].
pub mod budget;
pub mod evidence;
pub mod gate;
pub mod indices;
pub(crate) mod masks;
pub mod morphology;
pub(crate) mod pixel;
pub(crate) mod reuse;
pub mod scene;
pub mod stream;
pub mod texture;
pub mod threshold;
