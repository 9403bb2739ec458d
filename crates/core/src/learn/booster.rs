//! Gradient-boosted decision trees for a binary target (logistic loss), written here rather
//! than taken from a crate: `perpetual` 2.3.0 (the pure-Rust candidate) does not build on the
//! stable toolchain (`#![feature(array_ptr_get)]`), and this one is small, deterministic by
//! construction and predicts from flat node arrays on `f32` features.
//!
//! Training bins every feature at up to [`MAX_BINS`] quantiles of the training rows, grows each
//! tree depth-first on gradient/hessian histograms (second-order gain with an L2 term), and
//! subsamples rows per round with a seeded ChaCha stream. Histograms are built per feature in
//! parallel, each in row order, and splits are chosen by a strict comparison in feature and
//! bin order, so the same rows, parameters and seed give the same trees on any thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Bins per feature (quantile edges + 1).
pub const MAX_BINS: usize = 64;
/// Marks a leaf in [`Node::feature`].
pub const LEAF: u16 = u16::MAX;
/// The early stop of [`Booster::above`] keeps summing while the margin is within this of the
/// threshold's log-odds beyond what the trees left can move it (covers the rounding of the sum).
pub(crate) const STOP_SLACK: f32 = 1e-3;

/// Training parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoostParams {
    /// Boosting rounds (trees).
    pub rounds: usize,
    /// Depth of each tree.
    pub max_depth: usize,
    /// Shrinkage of each tree's leaf values.
    pub learning_rate: f64,
    /// L2 penalty on leaf values.
    pub lambda: f64,
    /// Smallest hessian sum a child may have.
    pub min_child_hessian: f64,
    /// Share of rows each round sees.
    pub row_subsample: f64,
    /// Seed of the row subsampling (same rows, parameters and seed: same trees).
    pub seed: u64,
}

impl Default for BoostParams {
    fn default() -> Self {
        Self {
            rounds: 200,
            max_depth: 4,
            learning_rate: 0.05,
            lambda: 1.0,
            min_child_hessian: 5.0,
            row_subsample: 0.7,
            seed: 1,
        }
    }
}

/// One tree node: a split `x[feature] <= threshold` (left child at `left`, right at `left + 1`)
/// or, when `feature == LEAF`, a leaf adding `value` to the margin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Feature index tested, or [`LEAF`].
    #[serde(rename = "f")]
    pub feature: u16,
    /// Split value: `x[feature] <= threshold` goes left.
    #[serde(rename = "t")]
    pub threshold: f32,
    /// Index of the left child (the right child follows it).
    #[serde(rename = "l")]
    pub left: u32,
    /// A leaf's contribution to the margin.
    #[serde(rename = "v")]
    pub value: f32,
}

/// One regression tree, its nodes in a flat array (root first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Nodes; children are found by [`Node::left`].
    pub nodes: Vec<Node>,
}

/// A trained ensemble: `p = sigmoid(base + Σ tree(x))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Booster {
    /// Length of the feature rows it was trained on.
    pub features: usize,
    /// Initial margin (log-odds of the weighted positive share).
    pub base: f32,
    /// The trees, in boosting order.
    pub trees: Vec<Tree>,
}

/// Rows for training: row-major `x` (`n × features`), targets 0/1 and weights.
pub struct Rows<'a> {
    /// Feature values, row-major.
    pub x: &'a [f32],
    /// Targets, 0 or 1.
    pub y: &'a [f32],
    /// Row weights.
    pub w: &'a [f32],
    /// Features per row.
    pub features: usize,
}

impl Rows<'_> {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.features..(i + 1) * self.features]
    }
}

/// One round's losses, for the progress line.
#[derive(Debug, Clone, Copy)]
pub struct RoundLoss {
    /// Round number, from 1.
    pub round: usize,
    /// Weighted log-loss on the training rows.
    pub train: f64,
    /// Weighted log-loss on the validation rows, when given.
    pub valid: Option<f64>,
}

impl Booster {
    /// The margin (log-odds) of one row.
    #[inline]
    pub fn margin(&self, x: &[f32]) -> f32 {
        let mut s = self.base;
        for t in &self.trees {
            s += t.leaf_value(x);
        }
        s
    }

    /// The probability of change of one row.
    #[inline]
    pub fn probability(&self, x: &[f32]) -> f32 {
        sigmoid(self.margin(x))
    }

    /// For each `k`, the most the trees from `k` on can move the margin (Σ max |leaf|), with
    /// a final 0: what [`Booster::above`] stops early with.
    pub fn remaining_bounds(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.trees.len() + 1];
        for (k, t) in self.trees.iter().enumerate().rev() {
            let most = t
                .nodes
                .iter()
                .filter(|n| n.feature == LEAF)
                .fold(0.0f32, |m, n| m.max(n.value.abs()));
            out[k] = out[k + 1] + most;
        }
        out
    }

    /// Whether the probability of `x` is above `p` (the same answer as
    /// `probability(x) > p`): trees are summed in order and the sum stops as soon as the trees
    /// left cannot carry the margin across the threshold (`bounds` from
    /// [`Booster::remaining_bounds`]; a slack covers the rounding of the sum).
    #[inline]
    pub fn above(&self, x: &[f32], p: f32, logit_p: f32, bounds: &[f32]) -> bool {
        const SLACK: f32 = STOP_SLACK;
        let mut s = self.base;
        for (t, &left) in self.trees.iter().zip(&bounds[1..]) {
            s += t.leaf_value(x);
            if s - left > logit_p + SLACK {
                return true;
            }
            if s + left < logit_p - SLACK {
                return false;
            }
        }
        sigmoid(s) > p
    }

    /// Checks what a model file cannot be trusted to hold: feature indices in range, children
    /// inside the tree and after their parent (no loops), finite numbers.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !self.base.is_finite() {
            return Err("base is not a finite number".into());
        }
        for (k, t) in self.trees.iter().enumerate() {
            if t.nodes.is_empty() {
                return Err(format!("tree {k} has no node"));
            }
            for (i, n) in t.nodes.iter().enumerate() {
                let bad = if n.feature == LEAF {
                    !n.value.is_finite()
                } else {
                    (n.feature as usize) >= self.features
                        || !n.threshold.is_finite()
                        || (n.left as usize) <= i
                        || (n.left as usize) + 1 >= t.nodes.len()
                };
                if bad {
                    return Err(format!("tree {k} node {i} is malformed"));
                }
            }
        }
        Ok(())
    }
}

impl Tree {
    #[inline]
    fn leaf_value(&self, x: &[f32]) -> f32 {
        let mut i = 0usize;
        loop {
            let n = &self.nodes[i];
            if n.feature == LEAF {
                return n.value;
            }
            i = n.left as usize + usize::from(x[n.feature as usize] > n.threshold);
        }
    }
}

/// The logistic function: margin to probability.
#[inline]
pub fn sigmoid(m: f32) -> f32 {
    1.0 / (1.0 + (-m).exp())
}

/// Trains on `train`; reports each round's weighted log-loss on `train` and `valid` to
/// `on_round`.
pub fn fit(train: &Rows, valid: Option<&Rows>, p: &BoostParams, on_round: &mut dyn FnMut(RoundLoss)) -> Booster {
    let nf = train.features;
    let edges = quantile_edges(train);
    let bins = bin_columns(train, &edges);
    let base = base_margin(train);
    let mut margin = vec![base; train.len()];
    let mut vmargin = valid.map(|v| vec![base; v.len()]);
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let mut trees = Vec::with_capacity(p.rounds);
    for round in 0..p.rounds {
        let rows: Vec<u32> = (0..train.len() as u32)
            .filter(|_| rng.random::<f64>() < p.row_subsample)
            .collect();
        let (g, h) = gradients(train, &margin);
        let mut grower = Grower {
            bins: &bins,
            n: train.len(),
            nf,
            g: &g,
            h: &h,
            p,
            nodes: vec![],
            split_bins: vec![],
        };
        grower.nodes.push(leaf(0.0));
        grower.split_bins.push(0);
        let mut rows = rows;
        grower.grow(0, &mut rows, 0);
        let tree = finish_tree(&grower.nodes, &grower.split_bins, &edges);
        for (i, m) in margin.iter_mut().enumerate() {
            *m += binned_leaf(&grower.nodes, &grower.split_bins, &bins, train.len(), i);
        }
        if let (Some(v), Some(vm)) = (valid, vmargin.as_mut()) {
            for (i, m) in vm.iter_mut().enumerate() {
                *m += tree.leaf_value(v.row(i));
            }
        }
        trees.push(tree);
        on_round(RoundLoss {
            round: round + 1,
            train: log_loss(train, &margin),
            valid: valid.zip(vmargin.as_ref()).map(|(v, m)| log_loss(v, m)),
        });
    }
    Booster {
        features: nf,
        base,
        trees,
    }
}

fn leaf(value: f32) -> Node {
    Node {
        feature: LEAF,
        threshold: 0.0,
        left: 0,
        value,
    }
}

/// Up to `MAX_BINS - 1` increasing edges per feature at quantiles of the training rows; a
/// value's bin is the number of edges below it.
fn quantile_edges(rows: &Rows) -> Vec<Vec<f32>> {
    (0..rows.features)
        .into_par_iter()
        .map(|j| {
            let mut v: Vec<f32> = (0..rows.len()).map(|i| rows.x[i * rows.features + j]).collect();
            v.sort_by(f32::total_cmp);
            let mut edges = Vec::with_capacity(MAX_BINS);
            for k in 1..MAX_BINS {
                let Some(&e) = v.get(k * v.len() / MAX_BINS) else { break };
                if edges.last().is_none_or(|&l| e > l) {
                    edges.push(e);
                }
            }
            // The largest value needs no edge: nothing lies above it.
            if edges.last() == v.last() {
                edges.pop();
            }
            edges
        })
        .collect()
}

/// Column-major bin indices (`features × n`).
fn bin_columns(rows: &Rows, edges: &[Vec<f32>]) -> Vec<u8> {
    let n = rows.len();
    let mut bins = vec![0u8; rows.features * n];
    bins.par_chunks_mut(n.max(1)).enumerate().for_each(|(j, col)| {
        for (i, b) in col.iter_mut().enumerate() {
            let v = rows.x[i * rows.features + j];
            *b = edges[j].partition_point(|&e| e < v) as u8;
        }
    });
    bins
}

fn base_margin(rows: &Rows) -> f32 {
    let (mut wy, mut w) = (0.0f64, 0.0f64);
    for (&y, &wi) in rows.y.iter().zip(rows.w) {
        wy += f64::from(y * wi);
        w += f64::from(wi);
    }
    let p = (wy / w.max(1e-12)).clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln() as f32
}

fn gradients(rows: &Rows, margin: &[f32]) -> (Vec<f64>, Vec<f64>) {
    margin
        .iter()
        .zip(rows.y.iter().zip(rows.w))
        .map(|(&m, (&y, &w))| {
            let p = f64::from(sigmoid(m));
            let w = f64::from(w);
            (w * (p - f64::from(y)), (w * p * (1.0 - p)).max(1e-9))
        })
        .unzip()
}

/// Weighted mean log-loss.
pub fn log_loss(rows: &Rows, margin: &[f32]) -> f64 {
    let (mut s, mut w) = (0.0f64, 0.0f64);
    for ((&m, &y), &wi) in margin.iter().zip(rows.y).zip(rows.w) {
        let p = f64::from(sigmoid(m)).clamp(1e-7, 1.0 - 1e-7);
        let l = if y > 0.5 { -p.ln() } else { -(1.0 - p).ln() };
        s += f64::from(wi) * l;
        w += f64::from(wi);
    }
    s / w.max(1e-12)
}

struct Grower<'a> {
    bins: &'a [u8],
    n: usize,
    nf: usize,
    g: &'a [f64],
    h: &'a [f64],
    p: &'a BoostParams,
    nodes: Vec<Node>,
    /// The bin each split node splits at (left: bin ≤ it), used while training.
    split_bins: Vec<u8>,
}

struct Split {
    feature: usize,
    bin: u8,
    gain: f64,
}

impl Grower<'_> {
    /// Fills node `at` from `rows`: a leaf, or a split whose two children are appended.
    fn grow(&mut self, at: usize, rows: &mut [u32], depth: usize) {
        let (gs, hs) = rows.iter().fold((0.0, 0.0), |(g, h), &r| {
            (g + self.g[r as usize], h + self.h[r as usize])
        });
        let lambda = self.p.lambda;
        let leaf_value = (-gs / (hs + lambda) * self.p.learning_rate) as f32;
        let split = if depth >= self.p.max_depth || hs < 2.0 * self.p.min_child_hessian {
            None
        } else {
            self.best_split(rows, gs, hs)
        };
        let Some(s) = split else {
            self.nodes[at] = leaf(leaf_value);
            return;
        };
        let col = &self.bins[s.feature * self.n..(s.feature + 1) * self.n];
        let mid = partition(rows, |r| col[r as usize] <= s.bin);
        let left = self.nodes.len();
        self.nodes[at] = Node {
            feature: s.feature as u16,
            threshold: 0.0,
            left: left as u32,
            value: 0.0,
        };
        self.split_bins[at] = s.bin;
        self.nodes.extend([leaf(0.0), leaf(0.0)]);
        self.split_bins.extend([0, 0]);
        let (l, r) = rows.split_at_mut(mid);
        self.grow(left, l, depth + 1);
        self.grow(left + 1, r, depth + 1);
    }

    fn best_split(&self, rows: &[u32], gs: f64, hs: f64) -> Option<Split> {
        let (lambda, mch) = (self.p.lambda, self.p.min_child_hessian);
        let parent = gs * gs / (hs + lambda);
        let per_feature: Vec<Option<Split>> = (0..self.nf)
            .into_par_iter()
            .map(|j| {
                let col = &self.bins[j * self.n..(j + 1) * self.n];
                let mut hist = [(0.0f64, 0.0f64); MAX_BINS];
                for &r in rows {
                    let e = &mut hist[col[r as usize] as usize];
                    e.0 += self.g[r as usize];
                    e.1 += self.h[r as usize];
                }
                let (mut gl, mut hl) = (0.0, 0.0);
                let mut best: Option<Split> = None;
                for (b, &(g, h)) in hist.iter().enumerate().take(MAX_BINS - 1) {
                    gl += g;
                    hl += h;
                    let (gr, hr) = (gs - gl, hs - hl);
                    if hl < mch || hr < mch {
                        continue;
                    }
                    let gain = gl * gl / (hl + lambda) + gr * gr / (hr + lambda) - parent;
                    if gain > best.as_ref().map_or(1e-9, |s| s.gain) {
                        best = Some(Split {
                            feature: j,
                            bin: b as u8,
                            gain,
                        });
                    }
                }
                best
            })
            .collect();
        per_feature.into_iter().flatten().fold(None, |best, s| match best {
            Some(b) if b.gain >= s.gain => Some(b),
            _ => Some(s),
        })
    }
}

/// Stable in-place partition: rows where `left` holds first; returns their count.
fn partition(rows: &mut [u32], left: impl Fn(u32) -> bool) -> usize {
    let (l, r): (Vec<u32>, Vec<u32>) = rows.iter().partition(|&&x| left(x));
    rows[..l.len()].copy_from_slice(&l);
    rows[l.len()..].copy_from_slice(&r);
    l.len()
}

/// The tree with float thresholds: bin ≤ b ⟺ value ≤ edges[b].
fn finish_tree(nodes: &[Node], split_bins: &[u8], edges: &[Vec<f32>]) -> Tree {
    let nodes = nodes
        .iter()
        .zip(split_bins)
        .map(|(n, &b)| {
            if n.feature == LEAF {
                *n
            } else {
                Node {
                    threshold: edges[n.feature as usize][b as usize],
                    ..*n
                }
            }
        })
        .collect();
    Tree { nodes }
}

fn binned_leaf(nodes: &[Node], split_bins: &[u8], bins: &[u8], n: usize, row: usize) -> f32 {
    let mut i = 0usize;
    loop {
        let nd = &nodes[i];
        if nd.feature == LEAF {
            return nd.value;
        }
        let b = bins[nd.feature as usize * n + row];
        i = nd.left as usize + usize::from(b > split_bins[i]);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Rows where the target is `x0 + 0.5·x1 > 0.3` with three noise features (also the
    /// forest's tests' training data).
    pub(in crate::learn) fn toy(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Vec::with_capacity(n * 5);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let r: [f32; 5] = std::array::from_fn(|_| rng.random::<f32>() * 2.0 - 1.0);
            y.push(f32::from(r[0] + 0.5 * r[1] > 0.3));
            x.extend_from_slice(&r);
        }
        (x, y, vec![1.0; n])
    }

    fn train(seed: u64) -> Booster {
        let (x, y, w) = toy(4000, 3);
        let rows = Rows {
            x: &x,
            y: &y,
            w: &w,
            features: 5,
        };
        let p = BoostParams {
            rounds: 40,
            max_depth: 4,
            seed,
            ..Default::default()
        };
        fit(&rows, None, &p, &mut |_| {})
    }

    #[test]
    fn learns_a_linear_boundary_on_unseen_rows() {
        let b = train(1);
        let (x, y, _) = toy(2000, 99);
        let right = (0..y.len())
            .filter(|&i| (b.probability(&x[i * 5..i * 5 + 5]) > 0.5) == (y[i] > 0.5))
            .count();
        assert!(right as f64 / y.len() as f64 > 0.95, "{right} of {}", y.len());
        assert!(b.check().is_ok());
    }

    #[test]
    fn same_rows_and_seed_give_the_same_trees_and_another_seed_does_not() {
        let (a, b, c) = (train(5), train(5), train(6));
        assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        assert_ne!(a, c);
    }

    #[test]
    fn the_float_tree_agrees_with_the_binned_tree_on_training_rows() {
        // Thresholds are bin edges: `bin ≤ b` and `value ≤ edge[b]` must route rows alike,
        // else the training loss would describe another model than the one saved.
        let (x, y, w) = toy(3000, 4);
        let rows = Rows {
            x: &x,
            y: &y,
            w: &w,
            features: 5,
        };
        let mut last = 0.0;
        let p = BoostParams {
            rounds: 10,
            row_subsample: 1.0,
            ..Default::default()
        };
        let b = fit(&rows, Some(&rows), &p, &mut |l| {
            assert!((l.train - l.valid.unwrap()).abs() < 1e-6, "{l:?}");
            last = l.train;
        });
        assert!(last < 0.4 && b.trees.len() == 10);
    }

    #[test]
    fn stopping_early_gives_the_same_decisions_as_the_full_sum() {
        let b = train(1);
        let bounds = b.remaining_bounds();
        let (x, _, _) = toy(3000, 17);
        for p in [0.1f32, 0.5, 0.83] {
            let logit = (p / (1.0 - p)).ln();
            for i in 0..3000 {
                let row = &x[i * 5..i * 5 + 5];
                assert_eq!(b.above(row, p, logit, &bounds), b.probability(row) > p, "row {i} p {p}");
            }
        }
    }

    #[test]
    fn a_malformed_tree_is_refused() {
        let mut b = train(1);
        b.trees[0].nodes[0].left = 0;
        assert!(b.check().is_err());
        let mut b = train(1);
        b.trees[0].nodes[0].feature = 9;
        assert!(b.check().is_err());
    }
}
