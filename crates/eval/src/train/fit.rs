//! Fitting a cascade model on the samples of labelled pairs.
//!
//! The probability threshold is chosen on pairs the booster that scores them did not see: the
//! training pairs are split into [`INNER_FOLDS`] folds (pair `i` in fold `i mod k`), each
//! fold's pairs are scored by a booster fitted on the other folds, and the threshold that
//! maximises the estimated pixel F1 of all those scores pooled is kept (each sampled pixel
//! weighted to its class's candidate count; labelled change outside the candidates counts as
//! missed). Pooling over every training pair keeps one pair with much change from pulling the
//! threshold to "flag everything". Then the final booster is fitted on every training pair.

use super::samples::PairSamples;
use landwatch_core::learn::booster::{self, BoostParams, Booster, RoundLoss, Rows};
use landwatch_core::learn::cascade::{CandidateParams, CleanParams};
use landwatch_core::learn::features::FeatureSpec;
use landwatch_core::learn::model_file::{LearnedModel, FORMAT, FORMAT_VERSION};
use landwatch_core::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// Everything a training run is given besides the rows.
#[derive(Debug, Clone, Serialize)]
pub struct TrainParams {
    pub boost: BoostParams,
    pub features: FeatureSpec,
    pub candidates: CandidateParams,
    pub clean: CleanParams,
    /// Candidate pixels sampled per class and pair.
    pub per_class: usize,
    pub seed: u64,
}

impl TrainParams {
    pub fn new(features: FeatureSpec, seed: u64) -> Self {
        Self {
            boost: BoostParams {
                seed,
                ..Default::default()
            },
            features,
            candidates: CandidateParams::default(),
            clean: CleanParams::default(),
            per_class: 4000,
            seed,
        }
    }
}

/// What the model is called and what its data allows.
#[derive(Debug, Clone)]
pub struct ModelMeta {
    pub name: String,
    pub version: String,
    pub changelog: String,
    pub licence: String,
    /// The rules model's TOML text.
    pub rules_model: String,
}

/// How training went, for the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub pairs: usize,
    pub rows: usize,
    pub positive_rows: usize,
    pub threshold_pairs: Vec<String>,
    /// True when there were too few pairs to hold some out: the threshold is then in-sample.
    pub threshold_in_sample: bool,
    pub probability_threshold: f32,
    /// Estimated pixel precision/recall/F1 of the held-out pairs at that threshold (before
    /// cleaning and minimum area).
    pub threshold_pairs_precision: f64,
    pub threshold_pairs_recall: f64,
    pub threshold_pairs_f1: f64,
    /// Share of the labelled change that falls inside the candidates (all pairs).
    pub candidate_recall: f64,
    pub last_round: Option<RoundLossReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundLossReport {
    pub round: usize,
    pub train_log_loss: f64,
}

/// Which stage a round belongs to, for progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The booster that chooses the threshold (validation loss on the held-out pairs).
    Threshold,
    /// The final booster on every pair.
    Final,
}

/// Fits the model. `source` names the training data in an error.
pub fn fit_cascade(
    samples: &[PairSamples],
    p: &TrainParams,
    meta: &ModelMeta,
    source: &Path,
    on_round: &mut dyn FnMut(Stage, RoundLoss),
) -> Result<(LearnedModel, TrainReport)> {
    let used: Vec<&PairSamples> = samples.iter().filter(|s| s.rows() > 0).collect();
    let positives: usize = used.iter().map(|s| s.y.iter().filter(|&&y| y > 0.5).count()).sum();
    let negatives: usize = used.iter().map(|s| s.rows()).sum::<usize>() - positives;
    if positives == 0 || negatives == 0 {
        return Err(Error::input(
            source,
            format!(
                "is an empty training set: {} pairs gave {positives} changed and {negatives} unchanged candidate pixels; \
                 training needs labelled change and no change inside the candidates",
                samples.len()
            ),
        ));
    }
    let k = INNER_FOLDS.min(used.len());
    let in_sample = k < 2;
    let mut scored = Vec::new();
    let mut missed = 0.0;
    for fold in 0..k.max(1) {
        let (inner, held) = if in_sample {
            (used.clone(), used.clone())
        } else {
            split(&used, fold, k)
        };
        let b = fit_on(&inner, &held, p, &mut |l| on_round(Stage::Threshold, l));
        missed += score(&b, &held, &mut scored);
    }
    let (threshold, est) = choose_threshold(&scored, missed);
    let mut last = None;
    let final_booster = fit_on(&used, &[], p, &mut |l| {
        last = Some(RoundLossReport {
            round: l.round,
            train_log_loss: l.train,
        });
        on_round(Stage::Final, l)
    });
    let all_pos: f64 = samples.iter().map(|s| s.positives).sum();
    let in_cand: f64 = samples.iter().map(|s| s.positives_in_candidates).sum();
    let model = LearnedModel {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        name: meta.name.clone(),
        version: meta.version.clone(),
        changelog: meta.changelog.clone(),
        training_data_licence: meta.licence.clone(),
        features: p.features,
        candidates: p.candidates.clone(),
        clean: p.clean.clone(),
        probability_threshold: threshold,
        rules_model: meta.rules_model.clone(),
        booster: final_booster,
    };
    let report = TrainReport {
        pairs: used.len(),
        rows: used.iter().map(|s| s.rows()).sum(),
        positive_rows: positives,
        threshold_pairs: used.iter().map(|s| s.name.clone()).collect(),
        threshold_in_sample: in_sample,
        probability_threshold: threshold,
        threshold_pairs_precision: est.0,
        threshold_pairs_recall: est.1,
        threshold_pairs_f1: est.2,
        candidate_recall: if all_pos > 0.0 { in_cand / all_pos } else { 0.0 },
        last_round: last,
    };
    Ok((model, report))
}

/// Inner folds for the threshold.
pub const INNER_FOLDS: usize = 3;

/// The pairs outside fold `fold` of `k`, and those in it.
fn split<'a>(pairs: &[&'a PairSamples], fold: usize, k: usize) -> (Vec<&'a PairSamples>, Vec<&'a PairSamples>) {
    let (mut inner, mut held) = (vec![], vec![]);
    for (i, s) in pairs.iter().enumerate() {
        if i % k == fold {
            held.push(*s);
        } else {
            inner.push(*s);
        }
    }
    (inner, held)
}

/// Appends `(probability, change, weight)` of every row of `pairs` to `out`; returns the
/// labelled change those pairs have outside their candidates.
fn score(b: &Booster, pairs: &[&PairSamples], out: &mut Vec<(f32, bool, f64)>) -> f64 {
    let mut missed = 0.0;
    for s in pairs {
        for i in 0..s.rows() {
            let p = b.probability(&s.x[i * s.features..(i + 1) * s.features]);
            out.push((p, s.y[i] > 0.5, f64::from(s.weight[i])));
        }
        missed += s.positives - s.positives_in_candidates;
    }
    missed
}

/// Fits on `pairs` with the classes weighted equally (each row by its class's share); the
/// per-round validation loss is on `valid_pairs` (none when empty).
fn fit_on(
    pairs: &[&PairSamples],
    valid_pairs: &[&PairSamples],
    p: &TrainParams,
    on_round: &mut dyn FnMut(RoundLoss),
) -> Booster {
    let (x, y, w) = balanced_rows(pairs);
    let rows = Rows {
        x: &x,
        y: &y,
        w: &w,
        features: p.features.count(),
    };
    let (vx, vy, vw) = balanced_rows(valid_pairs);
    let valid = Rows {
        x: &vx,
        y: &vy,
        w: &vw,
        features: p.features.count(),
    };
    let v = (!valid.is_empty()).then_some(&valid);
    booster::fit(&rows, v, &p.boost, on_round)
}

fn balanced_rows(pairs: &[&PairSamples]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for s in pairs {
        x.extend_from_slice(&s.x);
        y.extend_from_slice(&s.y);
    }
    let pos = y.iter().filter(|&&v| v > 0.5).count().max(1) as f32;
    let neg = (y.len() as f32 - pos).max(1.0);
    let n = y.len() as f32;
    let w = y
        .iter()
        .map(|&v| if v > 0.5 { n / (2.0 * pos) } else { n / (2.0 * neg) })
        .collect();
    (x, y, w)
}

/// The threshold (0.05..0.95 in steps of 0.01) with the best estimated pixel F1 over the
/// scored rows (plus `missed` change outside the candidates), and that estimate as
/// (precision, recall, F1).
fn choose_threshold(scored: &[(f32, bool, f64)], missed: f64) -> (f32, (f64, f64, f64)) {
    let mut best = (0.5f32, (0.0, 0.0, -1.0));
    for k in 5..=95 {
        let t = k as f32 / 100.0;
        let (mut tp, mut fp, mut fn_) = (0.0, 0.0, missed);
        for &(p, y, w) in scored {
            match (p > t, y) {
                (true, true) => tp += w,
                (true, false) => fp += w,
                (false, true) => fn_ += w,
                _ => {}
            }
        }
        let prec = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
        let rec = if tp + fn_ > 0.0 { tp / (tp + fn_) } else { 0.0 };
        let f1 = if tp > 0.0 {
            2.0 * tp / (2.0 * tp + fp + fn_)
        } else {
            0.0
        };
        if f1 > best.1 .2 {
            best = (t, (prec, rec, f1));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pair whose change rows have feature 0 high, with noise in the others.
    fn pair(name: &str, n: usize, shift: f32) -> PairSamples {
        let f = FeatureSpec { nir: false }.count();
        let mut s = PairSamples {
            name: name.into(),
            features: f,
            ..Default::default()
        };
        for i in 0..n {
            let change = i % 3 == 0;
            for j in 0..f {
                let noise = ((i * 31 + j * 17) % 13) as f32 / 13.0;
                s.x.push(if j == 0 {
                    f32::from(u8::from(change)) * 2.0 + noise + shift
                } else {
                    noise
                });
            }
            s.y.push(f32::from(u8::from(change)));
            s.weight.push(1.0);
        }
        s.positives = (n / 3 + 1) as f64;
        s.positives_in_candidates = s.positives;
        s
    }

    fn meta() -> ModelMeta {
        ModelMeta {
            name: "t".into(),
            version: "0.0.1".into(),
            changelog: String::new(),
            licence: "test".into(),
            rules_model: landwatch_core::model::BUILTIN_MODEL.into(),
        }
    }

    #[test]
    fn the_threshold_comes_from_pairs_the_threshold_booster_did_not_see() {
        let pairs: Vec<PairSamples> = (0..5).map(|i| pair(&format!("p{i}"), 300, 0.0)).collect();
        let mut p = TrainParams::new(FeatureSpec { nir: false }, 3);
        p.boost.rounds = 5;
        let (m, r) = fit_cascade(&pairs, &p, &meta(), Path::new("x"), &mut |_, _| {}).unwrap();
        assert_eq!(r.threshold_pairs.len(), 5);
        assert!(!r.threshold_in_sample);
        assert!(r.threshold_pairs_f1 > 0.9, "{r:?}");
        assert!(m.probability_threshold > 0.0 && m.probability_threshold < 1.0);
    }

    #[test]
    fn no_changed_row_is_an_empty_training_set_naming_the_source() {
        let mut s = pair("p", 30, 0.0);
        s.y.iter_mut().for_each(|y| *y = 0.0);
        let p = TrainParams::new(FeatureSpec { nir: false }, 3);
        let e = fit_cascade(&[s], &p, &meta(), Path::new("data/x"), &mut |_, _| {}).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().starts_with("data/x: is an empty training set"), "{e}");
    }
}
