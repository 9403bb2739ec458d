//! `landwatch train --cv K`: what the model being trained can be expected to do on pairs it
//! has not seen, measured on the training data itself — the figure a province needs before it
//! puts a model trained on its own enforcement history to work.
//!
//! Pair `i` is in fold `i mod K`. Each fold's model is trained, with every choice nested as in
//! [`super::fit`], on the other folds' rows only, and the fold's pairs are then detected with
//! it through the whole detect path (candidates, trees, cleaning, labelling, minimum area) and
//! scored against their labels, raster or polygons; so are the rules model's detections of the
//! same pairs, for comparison. Counts are pooled over the pairs. The model written by `train`
//! is the one fitted on every pair, as without `--cv`.

use super::fit::{self, ModelMeta, TrainParams};
use super::samples::{PairSamples, PairSource};
use crate::inputs;
use crate::metrics::{self, Counts, Scores};
use crate::report::ratio;
use landwatch_core::pair::{self, DetectRequest};
use landwatch_core::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// The cross-validation recorded in the training manifest.
#[derive(Debug, Clone, Serialize)]
pub struct CrossValidation {
    /// How pairs were split and scored.
    pub protocol: String,
    pub folds: usize,
    /// The learned models' detections, pooled over the pairs.
    pub learned: Scores,
    /// The rules model's detections of the same pairs.
    pub rules: Scores,
    pub learned_counts: Counts,
    pub rules_counts: Counts,
    pub per_pair: Vec<CvPair>,
}

/// One held-out pair.
#[derive(Debug, Clone, Serialize)]
pub struct CvPair {
    pub pair: String,
    pub fold: usize,
    /// Pairs its model was trained on.
    pub trained_on_pairs: usize,
    pub probability_threshold: f32,
    pub learned: Scores,
    pub rules: Scores,
}

/// Runs the K folds over `sources` (with their sampled `rows`, in the same order).
pub fn run(
    sources: &[PairSource],
    rows: &[PairSamples],
    params: &TrainParams,
    meta: &ModelMeta,
    k: usize,
    rules_model: Option<&Path>,
) -> Result<CrossValidation> {
    check_folds(k, sources.len())?;
    let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), "cannot create a temp folder", e))?;
    let mut per_pair = Vec::new();
    let (mut learned_counts, mut rules_counts) = (Counts::default(), Counts::default());
    let source = Path::new(&sources[0].name);
    for fold in 0..k {
        let train: Vec<PairSamples> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| i % k != fold)
            .map(|(_, r)| r.clone())
            .collect();
        let (model, report) = fit::fit_cascade(&train, params, meta, source, &mut |_, _| {})?;
        let path = scratch.path().join(format!("fold{fold}.json"));
        landwatch_core::io::atomic::write_file(&path, &model.to_bytes()?)?;
        for (i, src) in sources.iter().enumerate().filter(|(i, _)| i % k == fold) {
            let runs = scratch.path().join(format!("pair{i}"));
            let label = src.read_label()?;
            let learned = score(src, &label, Some(&path), &runs.join("learned"))?;
            let rules = score(src, &label, rules_model, &runs.join("rules"))?;
            eprintln!(
                "cross-validation fold {fold}: {} F1 {} (rules {})",
                src.name,
                ratio(learned.scores().f1),
                ratio(rules.scores().f1)
            );
            learned_counts.add(&learned);
            rules_counts.add(&rules);
            per_pair.push(CvPair {
                pair: src.name.clone(),
                fold,
                trained_on_pairs: report.pairs,
                probability_threshold: report.probability_threshold,
                learned: learned.scores(),
                rules: rules.scores(),
            });
        }
    }
    Ok(CrossValidation {
        protocol: format!(
            "k-fold by pair (pair i in fold i mod {k}); each fold's model trained on the other folds with every \
             choice nested inside them; pairs detected through the whole detect path and scored against their labels"
        ),
        folds: k,
        learned: learned_counts.scores(),
        rules: rules_counts.scores(),
        learned_counts,
        rules_counts,
        per_pair,
    })
}

/// `--cv k` needs every fold to hold a pair and leave pairs to train on.
pub fn check_folds(k: usize, pairs: usize) -> Result<()> {
    if k < 2 || k > pairs {
        return Err(Error::Usage(format!(
            "--cv {k}: expected 2 to {pairs} folds for {pairs} training pairs (each fold holds out at least one pair)"
        )));
    }
    Ok(())
}

/// Detects `src` with `model` (the built-in rules model when `None`) into `out` and counts the
/// published patches against its `label` (read once for both models).
fn score(src: &PairSource, label: &inputs::Label, model: Option<&Path>, out: &Path) -> Result<Counts> {
    let req = DetectRequest {
        model_path: model.map(Path::to_path_buf),
        bands: src.bands.clone(),
        pixel_size: src.pixel_size,
        radiometry: src.radiometry,
        keep_all: true,
        no_chips: true,
        ..DetectRequest::new(&src.before, &src.after, out)
    };
    pair::run(&req)?;
    let pred = inputs::read_prediction(out, label)?;
    metrics::evaluate(&pred.ids, pred.patches, &label.truth).ok_or_else(|| {
        Error::input(
            &src.label,
            format!("is not on the grid of the detection of {}", src.before.display()),
        )
    })
}
