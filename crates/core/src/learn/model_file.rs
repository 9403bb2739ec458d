//! The learned model file: one JSON document holding the booster, the feature and cascade
//! settings, the probability threshold, and the rules model (TOML text) whose evidence,
//! calibration, typing and categories the cascade runs with. `--model` takes it like a rules
//! TOML file ([`crate::model::Model::load`] tells them apart by the first character).

use super::booster::Booster;
use super::cascade::{CandidateParams, CleanParams};
use super::features::FeatureSpec;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The `format` value of a learned model file.
pub const FORMAT: &str = "landwatch-learned-change-model";
/// The only `format_version` this build reads.
pub const FORMAT_VERSION: u32 = 1;

/// A learned change model file: the cascade's settings, the trees and what they were trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedModel {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`FORMAT_VERSION`] for files this build reads.
    pub format_version: u32,
    /// Model name, e.g. `cascade-synth`.
    pub name: String,
    /// Model version (semantic).
    pub version: String,
    /// One line on what this model is and how its data was made.
    pub changelog: String,
    /// The licence of the data it was trained on, as stated by that data.
    pub training_data_licence: String,
    /// The features the trees use.
    pub features: FeatureSpec,
    /// The permissive candidate stage.
    pub candidates: CandidateParams,
    /// Cleaning of the decided mask.
    pub clean: CleanParams,
    /// A candidate pixel is change when the model's probability is above this (chosen on a
    /// split of the training pairs that the booster deciding it did not see).
    pub probability_threshold: f32,
    /// The rules model (TOML) for evidence, calibration, typing and categories.
    pub rules_model: String,
    /// The gradient-boosted trees.
    pub booster: Booster,
}

impl LearnedModel {
    /// The file's bytes: compact JSON, deterministic for the same model.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Other(format!("cannot serialise the learned model: {e}")))
    }

    /// Parses and checks a learned model file's text.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let head: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            Error::input(
                path,
                format!(
                    "is not a valid learned model: JSON error at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let format = head.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != FORMAT {
            return Err(Error::config(
                path,
                "format",
                format!("is '{format}', expected '{FORMAT}'; --model takes a rules TOML file or a learned model made by `landwatch train`"),
            ));
        }
        let version = head.get("format_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(Error::config(
                path,
                "format_version",
                format!("is {version:?}; this landwatch reads version {FORMAT_VERSION}: retrain the model with this landwatch"),
            ));
        }
        let m: LearnedModel = serde_json::from_value(head).map_err(|e| {
            Error::input(
                path,
                format!("is not a valid learned model: {e}; retrain it with `landwatch train`"),
            )
        })?;
        m.check(path)?;
        Ok(m)
    }

    fn check(&self, path: &Path) -> Result<()> {
        if !self.features.is_valid() {
            return Err(Error::config(
                path,
                "features.max_radius",
                format!(
                    "is {}, expected one of {:?}; retrain the model with `landwatch train`",
                    self.features.max_radius,
                    super::features::RADII
                ),
            ));
        }
        let count = self.features.count();
        if self.booster.features != count {
            return Err(Error::config(
                path,
                "booster.features",
                format!("is {} but the feature spec has {count} features", self.booster.features),
            ));
        }
        self.booster.check().map_err(|e| {
            Error::config(
                path,
                "booster.trees",
                format!("{e}; the file is damaged, retrain the model"),
            )
        })?;
        let t = self.probability_threshold;
        if !(t > 0.0 && t < 1.0) {
            return Err(Error::config(
                path,
                "probability_threshold",
                format!("is {t}, expected a probability between 0 and 1"),
            ));
        }
        let c = &self.candidates;
        if !(c.evidence_factor > 0.0 && c.evidence_factor <= 10.0) || c.dilate_px > 15 {
            return Err(Error::config(
                path,
                "candidates",
                "evidence_factor must be in (0, 10] and dilate_px at most 15",
            ));
        }
        if self.clean.open_px > 5 || self.clean.close_px > 5 {
            return Err(Error::config(path, "clean", "open_px and close_px must be at most 5"));
        }
        Ok(())
    }

    /// The halo the streaming pass adds for the cascade, beyond the rules model's own.
    pub fn extra_halo(&self) -> usize {
        // One more for the decision lattice (see `Decider::decide`).
        self.features.halo() + self.candidates.dilate_px + self.clean.reach() + 1
    }
}
