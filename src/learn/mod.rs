//! The learned change model: a cascade of the rules evidence (candidates) and gradient-boosted
//! trees on per-pixel multi-scale features, trained with `landwatch train` and run by
//! `detect --model <learned model file>` inside the streaming pass.
//!
//! * [`features`]: per-pixel features of a block with a halo (pure kernels);
//! * [`booster`]: the gradient-boosted trees (training and prediction);
//! * [`cascade`]: candidates, per-pixel decision, cleaning (pure kernels);
//! * [`model_file`]: the model file format and its checks;
//! * [`inference`]: what the streaming pass prepares per scene;
//! * [`samples`]: training rows from labelled pairs; [`train`]: fitting a model with an inner
//!   split for its threshold; [`manifest`]: the training manifest; [`cli`]: `landwatch train`.

pub mod booster;
pub mod cascade;
pub mod features;
pub mod inference;
pub mod model_file;

pub use model_file::LearnedModel;
pub mod cli;
pub mod manifest;
pub mod samples;
pub mod train;
