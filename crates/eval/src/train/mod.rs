//! Training the learned change model from labelled pairs: training rows ([`samples`]), fitting
//! with an inner split for the decision threshold ([`fit`]), the training manifest
//! ([`manifest`]), the cross-validation of `train --cv` ([`cv`]) and the `landwatch train`
//! command ([`cli`]). The model itself — features,
//! trees, cascade, file format, inference in the streaming pass — is `landwatch_core::learn`.

pub mod cli;
pub(crate) mod cv;
pub(crate) mod fit;
pub(crate) mod manifest;
pub(crate) mod samples;
