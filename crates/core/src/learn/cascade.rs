//! The cascade: a permissive candidate stage from the rules model's evidence (a lower
//! threshold, dilated, so that recall stays high), then the learned model decides per pixel
//! inside the candidates, then a small opening and closing clean the decisions.
//!
//! Pure kernels over one block with a halo; the streaming pass and training call them alike,
//! so a model is trained on exactly the pixels and features it later decides on.

use super::booster::Booster;
use super::features::{BlockInput, FeatureBlock, FeatureSpec, ImageStats};
use super::forest::{self, Forest};
use crate::detect::morphology;
use ndarray::{Array2, Zip};
use serde::{Deserialize, Serialize};

/// The candidate stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateParams {
    /// Candidates have evidence above this share of the rules threshold …
    pub evidence_factor: f32,
    /// … grown by this many pixels (object edges the evidence misses).
    pub dilate_px: usize,
}

impl Default for CandidateParams {
    fn default() -> Self {
        Self {
            evidence_factor: 0.5,
            dilate_px: 2,
        }
    }
}

/// The cleaning of the learned decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanParams {
    /// Opening radius (px) applied to the decided mask: drops isolated pixels.
    pub open_px: usize,
    /// Closing radius (px): fills pinholes in decided patches.
    pub close_px: usize,
}

impl Default for CleanParams {
    fn default() -> Self {
        Self {
            open_px: 1,
            close_px: 1,
        }
    }
}

impl CleanParams {
    /// How far outside the inner part decisions are needed for the cleaning to be exact inside.
    pub fn reach(&self) -> usize {
        2 * (self.open_px + self.close_px)
    }
}

/// Observed pixels with evidence above `factor · threshold`, dilated, kept where observed.
pub fn candidates(
    evidence: &Array2<f32>,
    observed: &Array2<bool>,
    threshold: f32,
    p: &CandidateParams,
) -> Array2<bool> {
    let mut m = Array2::from_elem(evidence.raw_dim(), false);
    let t = threshold * p.evidence_factor;
    Zip::from(&mut m)
        .and(evidence)
        .and(observed)
        .for_each(|m, &e, &o| *m = o && e > t);
    let mut m = morphology::dilate(&m, p.dilate_px);
    Zip::from(&mut m).and(observed).for_each(|m, &o| *m &= o);
    m
}

/// What the cascade needs besides the block.
pub struct Decider<'a> {
    /// The trees.
    pub booster: &'a Booster,
    /// The features the trees were trained on.
    pub spec: FeatureSpec,
    /// Per-image band statistics for standardisation.
    pub stats: &'a ImageStats,
    /// How the candidate stage widens the rules evidence.
    pub candidates: &'a CandidateParams,
    /// Cleaning of the decided mask.
    pub clean: &'a CleanParams,
    /// Probability above which a candidate pixel is change.
    pub probability_threshold: f32,
}

impl Decider<'_> {
    /// The cleaned change mask of the block (its full size); exact on pixels at least
    /// `halo` inside the block, where `halo ≥ spec.halo() + candidates.dilate_px + clean.reach() + 1`.
    ///
    /// The model is evaluated on the candidates of a lattice of every other row and column
    /// (even image coordinates: blocks start at multiples of the block size and share one halo,
    /// so it is one lattice across blocks); a candidate between lattice points that are all
    /// candidates and all agree takes their decision, any other candidate is evaluated itself.
    /// Decisions change only inside uniform regions, never along their edges, and the trees
    /// run on about a quarter of the candidates.
    pub fn decide(&self, input: &BlockInput, halo: usize) -> Array2<bool> {
        let (h, w) = input.observed.dim();
        let cand = candidates(input.evidence, input.observed, input.threshold, self.candidates);
        let mut out = Array2::from_elem((h, w), false);
        let m = halo.saturating_sub(self.clean.reach());
        if h <= 2 * m + 2 || w <= 2 * m + 2 || m == 0 || !cand.iter().any(|&c| c) {
            return out;
        }
        let mut trees = Trees::new(self, FeatureBlock::new(input, self.spec, self.stats));
        // Lattice decisions one pixel beyond the decided area: 0 no, 1 yes, 2 not a candidate.
        let on_lattice = |v: usize| (v + halo) % 2 == 0;
        let mut lattice = Array2::from_elem((h, w), NOT_CANDIDATE);
        let mut points = Vec::new();
        for y in (m - 1..h - m + 1).filter(|&y| on_lattice(y)) {
            for x in (m - 1..w - m + 1).filter(|&x| on_lattice(x)) {
                if cand[(y, x)] {
                    points.push((y, x));
                }
            }
        }
        for (&at, d) in points.iter().zip(trees.decide(&points)) {
            lattice[at] = u8::from(d);
        }
        points.clear();
        for y in m..h - m {
            for x in m..w - m {
                if !cand[(y, x)] {
                    continue;
                }
                match agreed(&lattice, y, x, on_lattice(y), on_lattice(x)) {
                    Some(d) => out[(y, x)] = d,
                    None => points.push((y, x)),
                }
            }
        }
        for (&at, d) in points.iter().zip(trees.decide(&points)) {
            out[at] = d;
        }
        morphology::close(&morphology::open(&out, self.clean.open_px), self.clean.close_px)
    }
}

/// The trees' decisions on pixels of one block.
struct Trees<'a> {
    booster: &'a Booster,
    /// The batched layout of the trees (`None` for trees too deep for it: one row at a time).
    forest: Option<Forest>,
    features: FeatureBlock,
    p: f32,
    logit_p: f32,
    bounds: Vec<f32>,
}

/// Pixels whose feature rows are gathered at once (a few hundred kB, L2-resident).
const ROWS_AT_ONCE: usize = 8 * forest::BATCH;

impl<'a> Trees<'a> {
    fn new(d: &Decider<'a>, features: FeatureBlock) -> Self {
        let p = d.probability_threshold;
        Self {
            booster: d.booster,
            forest: Forest::new(d.booster),
            features,
            p,
            logit_p: (p / (1.0 - p)).ln(),
            bounds: d.booster.remaining_bounds(),
        }
    }

    /// Whether each pixel's probability of change is above the threshold: the answers of
    /// [`Booster::above`] on the pixels' feature rows.
    fn decide(&mut self, points: &[(usize, usize)]) -> Vec<bool> {
        let mut out = vec![false; points.len()];
        let (mut row, mut rows) = (Vec::new(), Vec::new());
        for (points, out) in points.chunks(ROWS_AT_ONCE).zip(out.chunks_mut(ROWS_AT_ONCE)) {
            rows.clear();
            for &(y, x) in points {
                self.features.row_at(y, x, &mut row);
                rows.extend_from_slice(&row);
            }
            match &self.forest {
                Some(f) => f.above(&rows, self.p, self.logit_p, out),
                None => {
                    for (o, r) in out.iter_mut().zip(rows.chunks_exact(row.len())) {
                        *o = self.booster.above(r, self.p, self.logit_p, &self.bounds);
                    }
                }
            }
        }
        out
    }
}

/// A lattice cell that is not a candidate.
const NOT_CANDIDATE: u8 = 2;

/// The decision the lattice points around `(y, x)` agree on, if they are all candidates and
/// agree (a lattice point itself: its own decision).
fn agreed(lattice: &Array2<u8>, y: usize, x: usize, y_on: bool, x_on: bool) -> Option<bool> {
    let ys: &[usize] = if y_on { &[y, y] } else { &[y - 1, y + 1] };
    let xs: &[usize] = if x_on { &[x, x] } else { &[x - 1, x + 1] };
    let first = lattice[(ys[0], xs[0])];
    if first == NOT_CANDIDATE {
        return None;
    }
    let all = ys.iter().all(|&yy| xs.iter().all(|&xx| lattice[(yy, xx)] == first));
    all.then_some(first == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_the_lowered_threshold_grown_and_observed_only() {
        let mut e = Array2::from_elem((9, 9), 0.0f32);
        e[(4, 4)] = 0.6;
        e[(1, 1)] = 0.4;
        let mut obs = Array2::from_elem((9, 9), true);
        obs[(4, 5)] = false;
        let p = CandidateParams {
            evidence_factor: 0.5,
            dilate_px: 1,
        };
        let c = candidates(&e, &obs, 1.0, &p);
        assert!(c[(4, 4)] && c[(3, 3)] && c[(5, 5)]);
        assert!(!c[(4, 5)], "unobserved");
        assert!(!c[(1, 1)], "below 0.5 × threshold");
        assert_eq!(c.iter().filter(|&&v| v).count(), 8);
    }
}
