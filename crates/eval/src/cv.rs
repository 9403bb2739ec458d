//! `landwatch eval datasets --cv kfold[:K]|lodo`: the learned cascade judged by
//! cross-validation, so that no pair is ever scored by a model trained on it.
//!
//! * `kfold:K` — within each dataset, pair `i` (in name order) is in fold `i mod K` (K capped
//!   at the number of pairs; a dataset of one pair has no k-fold figure). Each fold's model is
//!   trained on the dataset's other pairs: the situation of a province training on its own
//!   earlier labels.
//! * `lodo` — leave one dataset out: each dataset is scored by a model trained on every pair of
//!   the other datasets (RGB features, so that all datasets can be pooled); its inner folds
//!   leave one training dataset out too.
//!
//! Each model's depth, window radius, edge features and probability threshold are chosen inside its training
//! pairs by an inner split of them ([`crate::train::fit`]): nested, so the held-out pairs never
//! influence a choice.
//! Held-out pairs are scored through the same detect path and rasterised patches as the
//! rules model ([`super::datasets`]); counts are pooled per dataset.

use super::datasets::{self, Options, PairResult, Report, PROFILES};
use super::inputs::LabelSpec;
use super::metrics::{Counts, Scores};
use crate::train::fit::{self, Choice, ModelMeta, TrainParams};
use crate::train::samples::{self, PairSamples, PairSource};
use landwatch_core::learn::features::FeatureSpec;
use landwatch_core::model::Model;
use landwatch_core::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The cross-validation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    KFold(usize),
    Lodo,
}

impl Protocol {
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::Usage(format!("--cv '{s}': expected kfold, kfold:K (K ≥ 2) or lodo"));
        match s.split_once(':') {
            None if s == "kfold" => Ok(Self::KFold(5)),
            None if s == "lodo" => Ok(Self::Lodo),
            Some(("kfold", k)) => match k.parse::<usize>() {
                Ok(k) if k >= 2 => Ok(Self::KFold(k)),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Self::KFold(k) => format!("k-fold by pair within the dataset (K = {k})"),
            Self::Lodo => "leave one dataset out".into(),
        }
    }
}

/// The learned model's figures for one dataset under one protocol.
#[derive(Debug, Clone, Serialize)]
pub struct LearnedResult {
    pub protocol: String,
    pub pairs: usize,
    pub counts: Counts,
    pub scores: Scores,
    pub per_pair: Vec<LearnedPair>,
    /// Share of the dataset's labelled change inside the candidate stage (what the learned
    /// decision can reach at most) at each evidence factor, `(factor, share)`, over its pairs
    /// that were sampled for training.
    pub candidate_recall: Vec<(f32, f64)>,
    /// Why there is no figure (e.g. one pair cannot be k-folded).
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LearnedPair {
    pub pair: String,
    pub fold: usize,
    pub trained_on_pairs: usize,
    pub probability_threshold: f32,
    pub threshold_in_sample: bool,
    /// The depth, radius and edge features the nested selection kept inside the training pairs.
    pub chosen: Choice,
    /// The candidate factor kept inside the training pairs.
    pub candidate_factor: f32,
    pub counts: Counts,
    pub scores: Scores,
}

/// One dataset's pairs and how to read them.
struct DatasetPairs {
    dir: PathBuf,
    profile: &'static datasets::Profile,
    pairs: Vec<PairSource>,
}

/// Adds the learned figures under `protocol` to every dataset of `report`.
pub fn run(opts: &Options, protocol: Protocol, report: &mut Report, rules: &Model) -> Result<()> {
    let sets = dataset_pairs(opts, report)?;
    let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), "cannot create a temp folder", e))?;
    let mut cache = SampleCache::new(rules);
    for (di, set) in sets.iter().enumerate() {
        let result = match protocol {
            Protocol::KFold(k) => kfold(set, k, &mut cache, scratch.path())?,
            Protocol::Lodo => lodo(&sets, di, &mut cache, scratch.path())?,
        };
        if let Some(d) = report.datasets.iter_mut().find(|d| d.dataset == set.profile.name) {
            d.learned = Some(result);
        }
    }
    for d in report.datasets.iter_mut() {
        if let Some(l) = d.learned.as_mut() {
            l.candidate_recall = cache.candidate_recall(&d.dataset);
        }
    }
    report.cv = Some(protocol.label());
    Ok(())
}

fn dataset_pairs(opts: &Options, report: &Report) -> Result<Vec<DatasetPairs>> {
    report
        .datasets
        .iter()
        .filter_map(|d| PROFILES.iter().find(|p| p.name == d.dataset))
        .map(|profile| {
            let dir = opts.root.join(profile.name);
            let spec = LabelSpec {
                change_values: profile.change_values.to_vec(),
                ignore_value: profile.ignore_value,
            };
            let pairs = samples::dataset_pairs(&dir, &spec, &[profile.label_ext], profile.bands, profile.pixel_size)?;
            Ok(DatasetPairs { dir, profile, pairs })
        })
        .collect()
}

/// Training rows per (dataset, pair, NIR features), computed once.
struct SampleCache<'a> {
    rules: &'a Model,
    seed: u64,
    rows: BTreeMap<(String, String, bool, bool), PairSamples>,
}

impl<'a> SampleCache<'a> {
    fn new(rules: &'a Model) -> Self {
        Self {
            rules,
            seed: 1,
            rows: BTreeMap::new(),
        }
    }

    fn get(&mut self, dataset: &str, src: &PairSource, spec: FeatureSpec) -> Result<PairSamples> {
        let key = (dataset.to_string(), src.name.clone(), spec.nir, spec.edges);
        if let Some(s) = self.rows.get(&key) {
            return Ok(s.clone());
        }
        let p = TrainParams::new(spec, self.seed);
        let s = samples::pair_samples(
            src,
            self.rules,
            spec,
            &p.candidates,
            &p.candidate_factors,
            p.per_class,
            self.seed,
        )?;
        self.rows.insert(key, s.clone());
        Ok(s)
    }
}

impl SampleCache<'_> {
    /// Labelled change inside the candidates over all labelled change at each candidate
    /// factor, over the dataset's sampled pairs (each pair once, whatever its features).
    fn candidate_recall(&self, dataset: &str) -> Vec<(f32, f64)> {
        let mut seen = std::collections::BTreeSet::new();
        let factors = TrainParams::new(FeatureSpec::new(false), self.seed).candidate_factors;
        let (mut inside, mut all) = (vec![0.0; factors.len()], 0.0);
        for ((d, pair, _, _), s) in &self.rows {
            if d == dataset && seen.insert(pair) {
                inside.iter_mut().enumerate().for_each(|(l, a)| *a += s.positives_at(l));
                all += s.positives;
            }
        }
        if all <= 0.0 {
            return vec![];
        }
        factors.into_iter().zip(inside).map(|(f, n)| (f, n / all)).collect()
    }
}

fn has_nir(profile: &datasets::Profile) -> bool {
    profile
        .bands
        .is_some_and(|b| b.split(',').any(|t| t.trim().eq_ignore_ascii_case("NIR")))
}

/// The models measured here are offered the gradient (edge) features, as `train` does by
/// default: the nested selection inside each model's training pairs decides whether it uses them.
const EDGES: bool = true;

fn kfold(set: &DatasetPairs, k: usize, cache: &mut SampleCache, scratch: &Path) -> Result<LearnedResult> {
    let n = set.pairs.len();
    let protocol = Protocol::KFold(k).label();
    if n < 2 {
        return Ok(empty(protocol, format!("{n} pair: nothing to train on without it")));
    }
    let k = k.min(n);
    let spec = FeatureSpec::new(has_nir(set.profile)).with_edges(EDGES);
    let mut per_pair = Vec::new();
    for fold in 0..k {
        let mut train_rows = Vec::new();
        for (i, src) in set.pairs.iter().enumerate() {
            if i % k != fold {
                train_rows.push(cache.get(set.profile.name, src, spec)?);
            }
        }
        let held: Vec<&PairSource> = set
            .pairs
            .iter()
            .enumerate()
            .filter(|(i, _)| i % k == fold)
            .map(|(_, s)| s)
            .collect();
        let name = format!("{}-fold{fold}", set.profile.name);
        per_pair.extend(train_and_score(
            &name,
            &train_rows,
            spec,
            &[(set, held)],
            fold,
            cache.rules,
            scratch,
        )?);
    }
    Ok(pooled(protocol, per_pair))
}

fn lodo(sets: &[DatasetPairs], held: usize, cache: &mut SampleCache, scratch: &Path) -> Result<LearnedResult> {
    let spec = FeatureSpec::new(false).with_edges(EDGES);
    let mut train_rows = Vec::new();
    for (di, set) in sets.iter().enumerate() {
        if di != held {
            for src in &set.pairs {
                // Grouped by dataset: the inner choices are made on a dataset left out, as the
                // outer protocol scores them.
                let mut rows = cache.get(set.profile.name, src, spec)?;
                rows.group = set.profile.name.to_string();
                train_rows.push(rows);
            }
        }
    }
    let set = &sets[held];
    let protocol = Protocol::Lodo.label();
    if train_rows.is_empty() {
        return Ok(empty(protocol, "no other dataset to train on".into()));
    }
    let name = format!("lodo-without-{}", set.profile.name);
    let all: Vec<&PairSource> = set.pairs.iter().collect();
    let per_pair = train_and_score(&name, &train_rows, spec, &[(set, all)], 0, cache.rules, scratch)?;
    Ok(pooled(protocol, per_pair))
}

/// Trains one model on `rows` and scores the held-out pairs with it.
fn train_and_score(
    name: &str,
    rows: &[PairSamples],
    spec: FeatureSpec,
    held: &[(&DatasetPairs, Vec<&PairSource>)],
    fold: usize,
    rules: &Model,
    scratch: &Path,
) -> Result<Vec<LearnedPair>> {
    let params = TrainParams::new(spec, 1);
    let rules_text = toml::to_string(rules)
        .map_err(|e| Error::Other(format!("cannot write the rules model into the learned model: {e}")))?;
    let meta = ModelMeta {
        name: format!("cv-{name}"),
        version: "0.0.0".into(),
        changelog: "cross-validation fold model (research-only training data; never shipped)".into(),
        licence: "research-only (../shared/datasets READMEs)".into(),
        rules_model: rules_text,
    };
    let started = std::time::Instant::now();
    let (model, rep) = fit::fit_cascade(rows, &params, &meta, Path::new(name), &mut |_, _| {})?;
    let path = scratch.join(format!("{name}.json"));
    landwatch_core::io::atomic::write_file(&path, &model.to_bytes()?)?;
    tracing::info!(
        fold = name,
        pairs = rep.pairs,
        rows = rep.rows,
        threshold = rep.probability_threshold,
        depth = rep.chosen.max_depth,
        radius = rep.chosen.max_radius,
        edges = rep.chosen.edges,
        in_sample = rep.threshold_in_sample,
        seconds = started.elapsed().as_secs_f64(),
        "cv model trained"
    );
    let mut out = Vec::new();
    for (set, pairs) in held {
        for src in pairs {
            let r: PairResult = datasets::run_pair(
                &set.dir,
                &src.before,
                &src.name,
                set.profile,
                &Some(path.clone()),
                &scratch.join("runs").join(name),
            )?;
            tracing::info!(fold = name, pair = %src.name, f1 = ?r.landwatch_scores.f1, "cv pair scored");
            out.push(LearnedPair {
                pair: format!("{}/{}", set.profile.name, src.name),
                fold,
                trained_on_pairs: rep.pairs,
                probability_threshold: rep.probability_threshold,
                threshold_in_sample: rep.threshold_in_sample,
                chosen: rep.chosen,
                candidate_factor: rep.candidate_factor,
                scores: r.landwatch_scores,
                counts: r.landwatch,
            });
        }
    }
    Ok(out)
}

fn pooled(protocol: String, per_pair: Vec<LearnedPair>) -> LearnedResult {
    let mut counts = Counts::default();
    for p in &per_pair {
        counts.add(&p.counts);
    }
    LearnedResult {
        protocol,
        pairs: per_pair.len(),
        scores: counts.scores(),
        counts,
        per_pair,
        candidate_recall: vec![],
        note: None,
    }
}

fn empty(protocol: String, note: String) -> LearnedResult {
    LearnedResult {
        protocol,
        pairs: 0,
        counts: Counts::default(),
        scores: Scores::default(),
        per_pair: vec![],
        candidate_recall: vec![],
        note: Some(note),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_and_bad_ones_are_usage_errors() {
        assert_eq!(Protocol::parse("kfold").unwrap(), Protocol::KFold(5));
        assert_eq!(Protocol::parse("kfold:3").unwrap(), Protocol::KFold(3));
        assert_eq!(Protocol::parse("lodo").unwrap(), Protocol::Lodo);
        for bad in ["kfold:1", "kfold:x", "loo", ""] {
            assert_eq!(Protocol::parse(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }
}
