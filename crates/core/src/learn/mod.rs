//! The learned change model: a cascade of the rules evidence (candidates) and gradient-boosted
//! trees on per-pixel multi-scale features, trained with `landwatch train` and run by
//! `detect --model <learned model file>` inside the streaming pass.
//!
//! * [`features`]: per-pixel features of a block with a halo (pure kernels);
//! * [`booster`]: the gradient-boosted trees (training and prediction);
//! * [`forest`]: the trees laid out for fast prediction in batches of rows;
//! * [`cascade`]: candidates, per-pixel decision, cleaning (pure kernels);
//! * [`model_file`]: the model file format and its checks;
//! * [`inference`]: what the streaming pass prepares per scene;
//! * [`verdict`]: the verdict model, a patch classifier trained on reviewers' verdicts
//!   (`landwatch train verdicts`) that marks likely false alarms `suppressed`;
//!
//! Training (rows from labelled pairs, fitting, the manifest, `landwatch train`) lives in the
//! eval crate (`landwatch_eval::train`), beside the labelled-pair readers and the
//! cross-validation that use it.

pub mod booster;
pub mod cascade;
pub mod features;
pub mod forest;
pub mod inference;
pub mod model_file;
pub mod verdict;

pub use model_file::LearnedModel;
