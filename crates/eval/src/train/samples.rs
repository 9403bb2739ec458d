//! Training rows from one labelled pair: the pair goes through the same scene opening,
//! calibration, evidence and candidate stage as detection, and a seeded sample of the candidate
//! pixels of each class (bottom-k of a per-pixel hash: independent of block order and thread
//! count) is kept with its feature row and a weight that restores the class's true count.
//!
//! Candidates are taken at several evidence factors (nested sets: a lower factor's contain a
//! higher one's), each row records the largest factor at which it is a candidate (its level),
//! and the rows kept are the union of each factor's bottom k: [`PairSamples::at_level`] gives
//! exactly the sample a sampler at that factor alone draws, so one pass serves every factor a
//! model may choose, and at today's factor the rows are today's.

use crate::inputs::{self, LabelSpec};
use crate::metrics::Truth;
use landwatch_core::detect::budget;
use landwatch_core::detect::gate::BlockLayers;
use landwatch_core::detect::scene::{BandMap, Scene};
use landwatch_core::detect::stream::{block_grid, rules_halo};
use landwatch_core::io::radiometry::Radiometry;
use landwatch_core::learn::cascade::{candidates, CandidateParams};
use landwatch_core::learn::features::{BlockInput, FeatureBlock, FeatureSpec};
use landwatch_core::learn::inference::{check_bands, scene_stats};
use landwatch_core::model::Model;
use landwatch_core::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// One labelled pair on disk.
#[derive(Debug, Clone)]
pub struct PairSource {
    pub name: String,
    pub before: PathBuf,
    pub after: PathBuf,
    pub label: PathBuf,
    pub spec: LabelSpec,
    pub bands: Option<String>,
    pub pixel_size: Option<f64>,
    /// What the images' stored values are (as `detect --radiometry`).
    pub radiometry: Radiometry,
    /// With change polygons for a label: what the pixels outside them are.
    pub outside: inputs::Outside,
}

impl PairSource {
    /// The pair's label: its raster, or its change polygons on its before image's grid.
    pub fn read_label(&self) -> Result<inputs::Label> {
        if inputs::is_polygon_label(&self.label) {
            inputs::read_polygon_label(&self.label, &self.before, self.outside)
        } else {
            inputs::read_label(&self.label, &self.spec)
        }
    }
}

/// Rows kept from one pair.
#[derive(Debug, Clone, Default)]
pub struct PairSamples {
    pub name: String,
    /// The pair's group for the inner folds (its dataset under leave-one-dataset-out; empty:
    /// none, the inner folds go by pair).
    pub group: String,
    pub features: usize,
    /// Row-major feature rows.
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    /// How many candidate pixels of its class each row stands for (of a sample from
    /// [`PairSamples::at_level`]; the union of the levels' samples has placeholders).
    pub weight: Vec<f32>,
    /// Per row, the index of the largest of the candidate factors at which it is a candidate
    /// (factors in decreasing order: a row of level `l` is a candidate at factors `l..`).
    pub level: Vec<u8>,
    /// Labelled change pixels observed on both dates, and those inside the candidates (at the
    /// lowest factor; of a sample from [`PairSamples::at_level`], at its factor).
    pub positives: f64,
    pub positives_in_candidates: f64,
    /// Candidate pixels per class (no change, change) at each factor (empty: the rows are
    /// one sample, weighted).
    pub candidates_at: Vec<[f64; 2]>,
    /// The bottom k drawn per class and factor.
    pub per_class: usize,
}

impl PairSamples {
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// Labelled change inside the candidates at factor index `level`.
    pub fn positives_at(&self, level: usize) -> f64 {
        self.candidates_at
            .get(level)
            .map_or(self.positives_in_candidates, |c| c[1])
    }

    /// The sample a model whose candidates are at factor index `level` is trained on: each
    /// class's bottom k among the rows that are candidates there (in key order, as kept),
    /// weighted to that class's candidate count, and the change inside those candidates.
    pub fn at_level(&self, level: usize) -> PairSamples {
        let Some(counts) = self.candidates_at.get(level) else {
            let keep = |i: usize| self.level.get(i).is_none_or(|&l| usize::from(l) <= level);
            return self.select(&(0..self.rows()).filter(|&i| keep(i)).collect::<Vec<_>>(), level, None);
        };
        let mut rows = Vec::new();
        for class in [false, true] {
            let of_class = (0..self.rows())
                .filter(|&i| usize::from(self.level[i]) <= level && (self.y[i] > 0.5) == class)
                .take(self.per_class);
            rows.extend(of_class);
        }
        self.select(&rows, level, Some(counts))
    }

    fn select(&self, rows: &[usize], level: usize, counts: Option<&[f64; 2]>) -> PairSamples {
        let taken = |c: bool| rows.iter().filter(|&&i| (self.y[i] > 0.5) == c).count().max(1) as f64;
        let weight = |i: usize| match counts {
            Some(n) => {
                let c = self.y[i] > 0.5;
                (n[usize::from(c)] / taken(c)) as f32
            }
            None => self.weight[i],
        };
        PairSamples {
            name: self.name.clone(),
            group: self.group.clone(),
            features: self.features,
            x: rows
                .iter()
                .flat_map(|&i| &self.x[i * self.features..(i + 1) * self.features])
                .copied()
                .collect(),
            y: rows.iter().map(|&i| self.y[i]).collect(),
            weight: rows.iter().map(|&i| weight(i)).collect(),
            level: rows.iter().filter_map(|&i| self.level.get(i).copied()).collect(),
            positives: self.positives,
            positives_in_candidates: self.positives_at(level),
            candidates_at: vec![],
            per_class: self.per_class,
        }
    }
}

/// One kept pixel: its hash key, class, level and feature row.
type Kept = (u64, bool, u8, Vec<f32>);

/// Samples up to `per_class` candidate pixels of each class from the pair, the candidates
/// taken at the lowest of `factors` (decreasing; dilated by `cand.dilate_px`).
pub fn pair_samples(
    src: &PairSource,
    rules: &Model,
    spec: FeatureSpec,
    cand: &CandidateParams,
    factors: &[f32],
    per_class: usize,
    seed: u64,
) -> Result<PairSamples> {
    landwatch_core::io::init_gdal();
    let label = src.read_label()?;
    let bands = src.bands.as_deref().map(BandMap::parse).transpose()?;
    let work = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), "cannot create a temp folder", e))?;
    let memory = budget::resolve(None, false)?;
    let mut scene = Scene::open(
        &src.before,
        &src.after,
        bands.as_ref(),
        rules,
        work.path(),
        memory,
        src.radiometry,
    )?;
    scene.pixel_size_m = src.pixel_size;
    if (label.width(), label.height()) != (scene.width(), scene.height()) {
        return Err(Error::input(
            &src.label,
            format!(
                "is {}x{} px but its before image {} is {}x{}; a label must be on its image's grid",
                label.width(),
                label.height(),
                src.before.display(),
                scene.width(),
                scene.height()
            ),
        ));
    }
    check_bands(&scene, spec, "being trained")?;
    let calibration = scene.calibrate()?;
    let stats = scene_stats(&scene, spec.bands())?;
    let halo = rules_halo(&scene) + spec.halo() + cand.dilate_px;
    let pair_key = fnv(&src.name) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let blocks = block_grid(scene.width(), scene.height(), rules.detect.block_size);
    let per_block: Vec<BlockSamples> = blocks
        .par_iter()
        .map(|&win| -> Result<BlockSamples> {
            let pair = scene.read_pair(win.grow(halo))?;
            let layers = BlockLayers::new(&pair.before, &pair.after);
            let e = scene.evidence(&pair, &layers);
            let input = BlockInput {
                before: &pair.before,
                after: &pair.after,
                observed: &pair.observed,
                evidence: &e,
                threshold: calibration.threshold,
            };
            let tiers: Vec<_> = factors
                .iter()
                .map(|&f| {
                    let p = CandidateParams {
                        evidence_factor: f,
                        ..cand.clone()
                    };
                    candidates(&e, &pair.observed, calibration.threshold, &p)
                })
                .collect();
            let mut out = BlockSamples {
                at_level: vec![[0; 2]; factors.len()],
                ..Default::default()
            };
            let mut pixels = Vec::new();
            for y in 0..win.h {
                for x in 0..win.w {
                    let (gy, gx) = (win.y as usize + y, win.x as usize + x);
                    let (by, bx) = (y + halo, x + halo);
                    let truth = label.truth[(gy, gx)];
                    if truth == Truth::Ignore || !pair.observed[(by, bx)] {
                        continue;
                    }
                    let change = truth == Truth::Change;
                    out.positives += u64::from(change);
                    let Some(level) = tiers.iter().position(|c| c[(by, bx)]) else {
                        continue;
                    };
                    for n in &mut out.at_level[level..] {
                        n[usize::from(change)] += 1;
                    }
                    let key = mix(pair_key ^ ((gy as u64) << 32 | gx as u64));
                    pixels.push((key, change, level as u8, by, bx));
                }
            }
            // Features only for the pixels that can still be among a bottom k of the block.
            pixels.sort_unstable_by_key(|p| p.0);
            let mut taken = vec![[0usize; 2]; factors.len()];
            pixels.retain(|p| in_a_bottom_k(&mut taken, p.1, p.2, per_class));
            if !pixels.is_empty() {
                let fb = FeatureBlock::new(&input, spec, &stats);
                for &(key, change, level, by, bx) in &pixels {
                    let mut row = Vec::with_capacity(spec.count());
                    fb.row_at(by, bx, &mut row);
                    out.kept.push((key, change, level, row));
                }
            }
            Ok(out)
        })
        .collect::<Result<_>>()?;
    Ok(merge(src, spec, per_block, per_class))
}

#[derive(Default)]
struct BlockSamples {
    positives: u64,
    /// Candidate pixels per class (no change, change) at each factor.
    at_level: Vec<[u64; 2]>,
    kept: Vec<Kept>,
}

/// Whether the next pixel in key order (of class `change`, candidate from factor index `level`
/// on) is among the first `per_class` of its class at some factor; counts it in `taken`.
fn in_a_bottom_k(taken: &mut [[usize; 2]], change: bool, level: u8, per_class: usize) -> bool {
    let mut kept = false;
    for t in &mut taken[usize::from(level)..] {
        t[usize::from(change)] += 1;
        kept |= t[usize::from(change)] <= per_class;
    }
    kept
}

/// The global bottom k per class and factor over the blocks' (their union, each class's rows
/// in key order).
fn merge(src: &PairSource, spec: FeatureSpec, blocks: Vec<BlockSamples>, per_class: usize) -> PairSamples {
    let mut out = PairSamples {
        name: src.name.clone(),
        features: spec.count(),
        per_class,
        ..Default::default()
    };
    let mut at_level: Vec<[u64; 2]> = Vec::new();
    let mut kept: Vec<Kept> = Vec::new();
    for b in blocks {
        out.positives += b.positives as f64;
        at_level.resize(b.at_level.len(), [0; 2]);
        for (n, m) in at_level.iter_mut().zip(&b.at_level) {
            n[0] += m[0];
            n[1] += m[1];
        }
        kept.extend(b.kept);
    }
    out.candidates_at = at_level.iter().map(|n| [n[0] as f64, n[1] as f64]).collect();
    let counts = at_level.last().copied().unwrap_or_default();
    out.positives_in_candidates = counts[1] as f64;
    tracing::info!(
        pair = %src.name,
        labelled_change_px = out.positives,
        candidates_change = counts[1],
        candidates_no_change = counts[0],
        "sampled"
    );
    kept.sort_by_key(|k| k.0);
    let mut taken = vec![[0usize; 2]; at_level.len()];
    kept.retain(|k| in_a_bottom_k(&mut taken, k.1, k.2, per_class));
    for class in [false, true] {
        for (_, _, level, row) in kept.iter().filter(|k| k.1 == class) {
            out.x.extend_from_slice(row);
            out.y.push(f32::from(u8::from(class)));
            out.weight.push(1.0);
            out.level.push(*level);
        }
    }
    out
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `z`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a name (stable across runs and platforms).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The pairs of a dataset folder (`A/`, `B/`, `label/` with matching stems; the label is the
/// first of `label/<stem>.<ext>` for `label_exts` that exists).
pub fn dataset_pairs(
    dir: &Path,
    spec: &LabelSpec,
    label_exts: &[&str],
    bands: Option<&str>,
    pixel_size: Option<f64>,
) -> Result<Vec<PairSource>> {
    let a_dir = dir.join("A");
    let rd = std::fs::read_dir(&a_dir).map_err(|e| Error::io(&a_dir, "cannot list the before images", e))?;
    let mut before: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| ["png", "tif", "tiff", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    before.sort();
    let mut out = Vec::new();
    for b in before {
        let stem = b
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = b.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        let label = label_exts
            .iter()
            .map(|e| dir.join("label").join(format!("{stem}.{e}")))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::input(
                    &b,
                    format!("has no label: expected label/{stem}.{}", label_exts.join(" or .")),
                )
            })?;
        out.push(PairSource {
            name: stem,
            after: dir.join("B").join(name),
            before: b,
            label,
            spec: spec.clone(),
            bands: bands.map(str::to_string),
            pixel_size,
            radiometry: Radiometry::Auto,
            outside: inputs::Outside::default(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_s_sample_is_each_class_s_first_k_candidates_there_weighted_to_its_count() {
        // Rows in key order: class, level (0 = candidate at the highest factor).
        let rows = [
            (false, 2u8),
            (false, 0),
            (true, 1),
            (false, 1),
            (true, 0),
            (false, 0),
            (true, 2),
        ];
        let s = PairSamples {
            name: "p".into(),
            group: String::new(),
            features: 1,
            x: (0..rows.len()).map(|i| i as f32).collect(),
            y: rows.iter().map(|r| f32::from(u8::from(r.0))).collect(),
            weight: vec![1.0; rows.len()],
            level: rows.iter().map(|r| r.1).collect(),
            positives: 50.0,
            positives_in_candidates: 40.0,
            candidates_at: vec![[100.0, 10.0], [200.0, 20.0], [400.0, 40.0]],
            per_class: 2,
        };
        let top = s.at_level(0);
        assert_eq!(
            top.x,
            vec![1.0, 5.0, 4.0],
            "class 0 then class 1, key order, level 0 only"
        );
        assert_eq!(top.weight, vec![50.0, 50.0, 10.0]);
        assert_eq!(top.positives_in_candidates, 10.0);
        let low = s.at_level(2);
        assert_eq!(low.x, vec![0.0, 1.0, 2.0, 4.0], "the first two of each class");
        assert_eq!(low.weight, vec![200.0, 200.0, 20.0, 20.0]);
        assert_eq!(low.positives_in_candidates, 40.0);
    }

    #[test]
    fn a_pixel_is_kept_while_it_is_among_the_first_k_of_its_class_at_some_factor() {
        let mut taken = vec![[0usize; 2]; 3];
        // Two slots per class and factor: level-2 pixels fill factor 2 first.
        assert!(in_a_bottom_k(&mut taken, false, 2, 2));
        assert!(in_a_bottom_k(&mut taken, false, 2, 2));
        assert!(!in_a_bottom_k(&mut taken, false, 2, 2), "factor 2 full");
        assert!(
            in_a_bottom_k(&mut taken, false, 0, 2),
            "still among factor 0's first two"
        );
        assert!(
            in_a_bottom_k(&mut taken, true, 2, 2),
            "the other class has its own slots"
        );
    }
}
