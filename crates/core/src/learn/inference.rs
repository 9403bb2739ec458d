//! The cascade inside the streaming pass: what [`crate::detect::stream`] prepares once per
//! scene (the per-image statistics, the band check) and calls per block.

use super::cascade::Decider;
use super::features::{BlockInput, ImageStats, StatsSums};
use super::model_file::LearnedModel;
use crate::detect::scene::{calibration_windows, PairWindow, Scene};
use crate::{Error, Result};
use ndarray::Array2;

/// A learned model ready for one scene.
pub struct Prepared<'a> {
    /// The model.
    pub model: &'a LearnedModel,
    /// This scene's band statistics (from the calibration windows).
    pub stats: ImageStats,
}

impl<'a> Prepared<'a> {
    /// Checks the scene has the bands the model was trained for and measures the per-image
    /// statistics on the calibration windows (the image, for images up to a window's size).
    pub fn new(scene: &Scene, model: &'a LearnedModel, model_path: &str) -> Result<Self> {
        check_bands(scene, model.features, &format!("the learned model {model_path}"))?;
        Ok(Self {
            model,
            stats: scene_stats(scene, model.features.bands())?,
        })
    }

    /// The halo the pass adds for the cascade.
    pub fn extra_halo(&self) -> usize {
        self.model.extra_halo()
    }

    /// The cleaned change mask of one block read with `halo`.
    pub fn decide(&self, pair: &PairWindow, evidence: &Array2<f32>, threshold: f32, halo: usize) -> Array2<bool> {
        let input = BlockInput {
            before: &pair.before,
            after: &pair.after,
            observed: &pair.observed,
            evidence,
            threshold,
        };
        self.decider().decide(&input, halo)
    }

    /// The cascade's settings for this scene.
    pub fn decider(&self) -> Decider<'_> {
        Decider {
            booster: &self.model.booster,
            spec: self.model.features,
            stats: &self.stats,
            candidates: &self.model.candidates,
            clean: &self.model.clean,
            probability_threshold: self.model.probability_threshold,
        }
    }
}

/// A model with NIR features needs a NIR band; a model without uses B, G, R of any input.
/// `what` names the model in the message.
pub fn check_bands(scene: &Scene, spec: super::features::FeatureSpec, what: &str) -> Result<()> {
    if spec.nir && !scene.has_nir {
        return Err(Error::input(
            &scene.before.path,
            format!(
                "has no NIR band in the bands read (B={}, G={}, R={}), but {what} uses \
                 B,G,R,NIR features; give --bands with NIR, or use a model trained on RGB",
                scene.bands.blue, scene.bands.green, scene.bands.red
            ),
        ));
    }
    Ok(())
}

/// Mean and standard deviation per band of each date over the observed pixels of the
/// calibration windows (after aligned and normalised, as the pass reads it).
pub fn scene_stats(scene: &Scene, bands: usize) -> Result<ImageStats> {
    let wins = calibration_windows(scene.width(), scene.height(), scene.model());
    let mut sums = StatsSums::default();
    for w in wins {
        let pair = scene.read_pair(w)?;
        sums.add(&pair.before, &pair.after, &pair.observed, bands);
    }
    sums.finish().ok_or_else(|| {
        Error::input(
            &scene.before.path,
            "no pixel of the calibration windows is observed on both dates; the learned model cannot standardise the bands",
        )
    })
}
