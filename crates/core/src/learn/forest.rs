//! The trees of a [`Booster`] laid out for prediction: every tree padded to a complete binary
//! tree of the ensemble's depth, its split features and thresholds in level order and its
//! leaves in one array, so that a row descends with `i = 2i + 1 + (x[f] > t)` and no test for
//! a leaf. Rows are decided in batches, one tree at a time for all of a batch's rows, level by
//! level: the descents of different rows are independent, so the processor overlaps their
//! loads instead of waiting on one row's chain of nodes and mispredicted leaf tests.
//!
//! The answers are those of [`Booster::above`] (and of `probability > p`): a padded node's two
//! subtrees hold the same leaf, real splits make the same comparison, and each row's margin is
//! summed in tree order. The early stop is tighter: the trees left can raise the margin by at
//! most the sum of their largest leaves and lower it by at most the sum of their smallest
//! (rather than ± the sum of their largest |leaf|), with the same slack for the rounding of
//! the sum; so a row stops no later, and on the same side of the threshold.
//!
//! Shallow trees (depth ≤ [`MAX_LANE_DEPTH`], both shipped models) are evaluated for
//! [`LANES`] rows at once instead: the rows' features stored feature by feature, every inner
//! node compares its feature's [`LANES`] values with its threshold and picks between its two
//! children's values, from the last level up to the root, so the root holds each row's leaf.
//! That is `2^depth − 1` comparisons per tree and no data-dependent load, where a descent is
//! `depth` dependent loads per row; the compiler turns each node into a load, a compare and a
//! blend over one vector register. A row decided early leaves its lane to the last undecided
//! row of the batch, so lanes stay full.

use super::booster::{sigmoid, Booster, Node, LEAF, STOP_SLACK as SLACK};

/// Deepest ensemble laid out (2^depth leaves per tree); deeper ones keep [`Booster::above`].
pub const MAX_DEPTH: usize = 8;
/// Rows decided together.
pub const BATCH: usize = 32;
/// Rows evaluated side by side (eight `f32`: one AVX2 register).
pub const LANES: usize = 8;
/// Deepest ensemble evaluated lane-wise: its `2^depth − 1` comparisons per tree still cost
/// less than the descents of [`LANES`] rows.
pub const MAX_LANE_DEPTH: usize = 5;
/// Rows whose lanes are pooled: the slots of rows decided early are refilled from this many
/// (their features, 64 × a few hundred bytes, stay in L1).
const LANE_BATCH: usize = 8 * LANES;

/// A [`Booster`] as complete trees of one depth.
pub struct Forest {
    depth: usize,
    features: usize,
    base: f32,
    /// Per tree `2^depth` slots: the split feature of the inner node at each level-order index
    /// (the last slot is unused).
    feature: Vec<u32>,
    /// Per tree `2^depth` slots: the split thresholds, laid out like `feature`.
    threshold: Vec<f32>,
    /// Per tree `2^depth` leaf values, left to right.
    leaf: Vec<f32>,
    /// For each `k`, the most the trees after tree `k` can raise the margin (Σ largest leaf).
    up: Vec<f32>,
    /// For each `k`, the most they can lower it (Σ smallest leaf, ≤ 0 in practice).
    down: Vec<f32>,
}

impl Forest {
    /// The layout of `b`, or `None` when a tree is deeper than [`MAX_DEPTH`]. `b` must have
    /// passed [`Booster::check`] (children after their parent, features in range).
    pub fn new(b: &Booster) -> Option<Self> {
        let depth = b.trees.iter().map(|t| tree_depth(&t.nodes)).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return None;
        }
        let slots = 1usize << depth;
        let mut f = Self {
            depth,
            features: b.features,
            base: b.base,
            feature: vec![0; slots * b.trees.len()],
            threshold: vec![f32::INFINITY; slots * b.trees.len()],
            leaf: vec![0.0; slots * b.trees.len()],
            up: vec![0.0; b.trees.len()],
            down: vec![0.0; b.trees.len()],
        };
        let (mut up, mut down) = (0.0f32, 0.0f32);
        for (k, t) in b.trees.iter().enumerate().rev() {
            f.up[k] = up;
            f.down[k] = down;
            let leaves = t.nodes.iter().filter(|n| n.feature == LEAF).map(|n| n.value);
            up += leaves.clone().fold(f32::NEG_INFINITY, f32::max);
            down += leaves.fold(f32::INFINITY, f32::min);
        }
        for (k, t) in b.trees.iter().enumerate() {
            f.lay_out(&t.nodes, 0, 0, 0, k * slots);
        }
        Some(f)
    }

    /// Places node `i` of `nodes` at level-order index `at` (level `level`) of the tree whose
    /// slots start at `base`. A leaf above the last level becomes a split whose two subtrees
    /// both end in that leaf, so whatever it compares gives the leaf's value.
    fn lay_out(&mut self, nodes: &[Node], i: usize, at: usize, level: usize, base: usize) {
        let inner = (1usize << self.depth) - 1;
        let n = &nodes[i];
        if level == self.depth {
            self.leaf[base + at - inner] = n.value;
            return;
        }
        let children = if n.feature == LEAF {
            (i, i)
        } else {
            self.feature[base + at] = u32::from(n.feature);
            self.threshold[base + at] = n.threshold;
            (n.left as usize, n.left as usize + 1)
        };
        self.lay_out(nodes, children.0, 2 * at + 1, level + 1, base);
        self.lay_out(nodes, children.1, 2 * at + 2, level + 1, base);
    }

    /// `out[r] = booster.above(row r, p, logit_p, bounds)` for the rows of `rows` (row-major,
    /// `out.len()` rows of the booster's feature count).
    pub fn above(&self, rows: &[f32], p: f32, logit_p: f32, out: &mut [bool]) {
        assert_eq!(
            rows.len(),
            out.len() * self.features,
            "rows of the trees' feature count"
        );
        if self.depth <= MAX_LANE_DEPTH {
            return self.above_in_lanes(rows, p, logit_p, out);
        }
        for (rows, out) in rows.chunks(BATCH * self.features).zip(out.chunks_mut(BATCH)) {
            match self.depth {
                0 => self.batch::<1>(rows, p, logit_p, out),
                1 => self.batch::<2>(rows, p, logit_p, out),
                2 => self.batch::<4>(rows, p, logit_p, out),
                3 => self.batch::<8>(rows, p, logit_p, out),
                4 => self.batch::<16>(rows, p, logit_p, out),
                5 => self.batch::<32>(rows, p, logit_p, out),
                6 => self.batch::<64>(rows, p, logit_p, out),
                7 => self.batch::<128>(rows, p, logit_p, out),
                _ => self.batch::<256>(rows, p, logit_p, out),
            }
        }
    }

    /// [`Forest::above`] for trees of at most [`MAX_LANE_DEPTH`] levels.
    fn above_in_lanes(&self, rows: &[f32], p: f32, logit_p: f32, out: &mut [bool]) {
        let mut lanes = Lanes::new(self.features);
        for (rows, out) in rows.chunks(LANE_BATCH * self.features).zip(out.chunks_mut(LANE_BATCH)) {
            lanes.load(rows, self.base);
            match self.depth {
                0 => self.lane_batch::<1>(&mut lanes, p, logit_p, out),
                1 => self.lane_batch::<2>(&mut lanes, p, logit_p, out),
                2 => self.lane_batch::<4>(&mut lanes, p, logit_p, out),
                3 => self.lane_batch::<8>(&mut lanes, p, logit_p, out),
                4 => self.lane_batch::<16>(&mut lanes, p, logit_p, out),
                _ => self.lane_batch::<32>(&mut lanes, p, logit_p, out),
            }
        }
    }

    /// The rows loaded in `lanes` through trees of `SLOTS = 2^depth` leaves, one tree at a time
    /// for all rows still undecided. Each row's sum is the same sequence of additions as in
    /// [`Booster::above`], and it stops on the same tests as [`Forest::batch`].
    fn lane_batch<const SLOTS: usize>(&self, lanes: &mut Lanes, p: f32, logit_p: f32, out: &mut [bool]) {
        for tree in self.trees::<SLOTS>() {
            for g in 0..lanes.live.div_ceil(LANES) {
                let value = tree_in_lanes(lanes.group(g), &tree);
                for (s, v) in lanes.sum[g].iter_mut().zip(value) {
                    *s += v;
                }
            }
            lanes.retire(out, |s| tree.settles(s, logit_p));
            if lanes.live == 0 {
                return;
            }
        }
        lanes.retire(out, |s| Some(sigmoid(s) > p));
    }

    /// The laid-out trees of `SLOTS = 2^depth` leaves, in order.
    fn trees<const SLOTS: usize>(&self) -> impl Iterator<Item = LaidOut<'_, SLOTS>> {
        let trees = self.feature.chunks_exact(SLOTS).zip(self.threshold.chunks_exact(SLOTS));
        trees
            .zip(self.leaf.chunks_exact(SLOTS))
            .zip(self.up.iter().zip(&self.down))
            .map(|(((feature, threshold), leaf), (&up, &down))| LaidOut {
                feature: slots(feature),
                threshold: slots(threshold),
                leaf: slots(leaf),
                up,
                down,
            })
    }

    /// Up to [`BATCH`] rows through trees of `SLOTS = 2^depth` leaves. Rows still undecided
    /// after a tree are kept in `live`; each row's sum is the same sequence of additions as in
    /// [`Booster::above`].
    fn batch<const SLOTS: usize>(&self, rows: &[f32], p: f32, logit_p: f32, out: &mut [bool]) {
        let nf = self.features;
        let mut sum = [self.base; BATCH];
        let mut live: [usize; BATCH] = std::array::from_fn(|r| r);
        let mut n_live = out.len();
        let mut at = [0usize; BATCH];
        for tree in self.trees::<SLOTS>() {
            let (feature, threshold, leaf) = (tree.feature, tree.threshold, tree.leaf);
            at[..n_live].fill(0);
            for _ in 0..self.depth {
                for (a, &r) in at[..n_live].iter_mut().zip(&live[..n_live]) {
                    let node = *a & (SLOTS - 1);
                    let x = rows[r * nf + feature[node] as usize];
                    *a = 2 * *a + 1 + usize::from(x > threshold[node]);
                }
            }
            let mut kept = 0;
            for j in 0..n_live {
                let r = live[j];
                sum[r] += leaf[(at[j] + 1 - SLOTS) & (SLOTS - 1)];
                match tree.settles(sum[r], logit_p) {
                    Some(answer) => out[r] = answer,
                    None => {
                        live[kept] = r;
                        kept += 1;
                    }
                }
            }
            n_live = kept;
            if n_live == 0 {
                return;
            }
        }
        for &r in &live[..n_live] {
            out[r] = sigmoid(sum[r]) > p;
        }
    }
}

/// One tree of a [`Forest`] and how far the trees after it can move a margin.
struct LaidOut<'a, const SLOTS: usize> {
    feature: &'a [u32; SLOTS],
    threshold: &'a [f32; SLOTS],
    leaf: &'a [f32; SLOTS],
    /// The most the trees after it can raise the margin.
    up: f32,
    /// The most they can lower it.
    down: f32,
}

impl<const SLOTS: usize> LaidOut<'_, SLOTS> {
    /// The answer for a row whose margin after this tree is `s`, when the trees after it cannot
    /// bring it back across the threshold's log-odds `logit_p` (with the rounding slack).
    #[inline(always)]
    fn settles(&self, s: f32, logit_p: f32) -> Option<bool> {
        if s + self.down > logit_p + SLACK {
            Some(true)
        } else if s + self.up < logit_p - SLACK {
            Some(false)
        } else {
            None
        }
    }
}

/// Up to [`LANE_BATCH`] rows in lanes: slot `s` is lane `s % LANES` of group `s / LANES`, a
/// group's features stored feature by feature (`LANES` values each). Slots `0..live` hold the
/// rows not yet decided, in no particular order.
struct Lanes {
    features: usize,
    /// Per group, `features × LANES` values.
    columns: Vec<f32>,
    /// Per slot, the row's index in the batch.
    row: [usize; LANE_BATCH],
    /// Per group, each lane's margin so far.
    sum: [[f32; LANES]; LANE_BATCH / LANES],
    live: usize,
}

impl Lanes {
    fn new(features: usize) -> Self {
        Self {
            features,
            columns: vec![0.0; LANE_BATCH * features],
            row: [0; LANE_BATCH],
            sum: [[0.0; LANES]; LANE_BATCH / LANES],
            live: 0,
        }
    }

    /// Takes up to [`LANE_BATCH`] rows (row-major), each starting from `base`.
    fn load(&mut self, rows: &[f32], base: f32) {
        let nf = self.features;
        self.live = rows.len() / nf;
        for (s, row) in rows.chunks_exact(nf).enumerate() {
            let (g, l) = (s / LANES, s % LANES);
            let group = &mut self.columns[g * nf * LANES..(g + 1) * nf * LANES];
            for (f, &x) in row.iter().enumerate() {
                group[f * LANES + l] = x;
            }
            self.row[s] = s;
            self.sum[g][l] = base;
        }
    }

    /// Group `g`'s features, `LANES` values per feature.
    fn group(&self, g: usize) -> &[f32] {
        let n = self.features * LANES;
        &self.columns[g * n..(g + 1) * n]
    }

    /// Writes the answer of every live row that `decide` settles from its margin and gives its
    /// slot to the last live row.
    fn retire(&mut self, out: &mut [bool], decide: impl Fn(f32) -> Option<bool>) {
        let mut s = 0;
        while s < self.live {
            match decide(self.sum[s / LANES][s % LANES]) {
                Some(answer) => {
                    out[self.row[s]] = answer;
                    self.live -= 1;
                    self.move_slot(self.live, s);
                }
                None => s += 1,
            }
        }
    }

    /// Copies slot `from` (its features, row and margin) into slot `to`.
    fn move_slot(&mut self, from: usize, to: usize) {
        if from == to {
            return;
        }
        let nf = self.features;
        let (gf, lf, gt, lt) = (from / LANES, from % LANES, to / LANES, to % LANES);
        for f in 0..nf {
            self.columns[(gt * nf + f) * LANES + lt] = self.columns[(gf * nf + f) * LANES + lf];
        }
        self.row[to] = self.row[from];
        self.sum[gt][lt] = self.sum[gf][lf];
    }
}

/// One tree's leaf value for the [`LANES`] rows of `group` (features stored feature by
/// feature): each level's nodes, from the last up, pick their left or right child's value by
/// their own comparison, so the root ends with the value of the leaf each row descends to.
/// `x > threshold` is false for NaN, which goes left as in the descent.
#[inline(always)]
fn tree_in_lanes<const SLOTS: usize>(group: &[f32], tree: &LaidOut<'_, SLOTS>) -> [f32; LANES] {
    let (feature, threshold, leaf) = (tree.feature, tree.threshold, tree.leaf);
    let mut value: [[f32; LANES]; SLOTS] = std::array::from_fn(|k| [leaf[k]; LANES]);
    let mut nodes = SLOTS / 2;
    while nodes >= 1 {
        for k in 0..nodes {
            let node = nodes - 1 + k;
            let f = feature[node] as usize;
            let x: &[f32; LANES] = group[f * LANES..(f + 1) * LANES].try_into().expect("LANES values");
            let (left, right, t) = (value[2 * k], value[2 * k + 1], threshold[node]);
            value[k] = std::array::from_fn(|l| if x[l] > t { right[l] } else { left[l] });
        }
        nodes /= 2;
    }
    value[0]
}

/// One tree's `SLOTS` values as an array (its indices then need no bounds check).
fn slots<T, const SLOTS: usize>(s: &[T]) -> &[T; SLOTS] {
    s.try_into().expect("chunks of SLOTS values")
}

/// The number of splits on the longest path from the root (children come after their parent,
/// so one pass in node order sees every parent before its children).
fn tree_depth(nodes: &[Node]) -> usize {
    let mut level = vec![0usize; nodes.len()];
    let mut deepest = 0;
    for (i, n) in nodes.iter().enumerate() {
        if n.feature == LEAF {
            deepest = deepest.max(level[i]);
        } else {
            let l = n.left as usize;
            level[l] = level[i] + 1;
            level[l + 1] = level[i] + 1;
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::booster::{fit, BoostParams, Rows, Tree};
    use crate::learn::LearnedModel;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `n` rows whose values are, per feature, often exactly a threshold the trees split at
    /// (the `<=` tie), a float next to one, a random value in the thresholds' range, or NaN.
    fn rows_near_thresholds(b: &Booster, n: usize, seed: u64) -> Vec<f32> {
        let mut cuts = vec![Vec::new(); b.features];
        for n in b.trees.iter().flat_map(|t| &t.nodes).filter(|n| n.feature != LEAF) {
            cuts[n.feature as usize].push(n.threshold);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Vec::with_capacity(n * b.features);
        for _ in 0..n * b.features {
            let f = x.len() % b.features;
            let cut = if cuts[f].is_empty() {
                0.0
            } else {
                cuts[f][rng.random_range(0..cuts[f].len())]
            };
            x.push(match rng.random_range(0..8) {
                0 => f32::NAN,
                1 => f32::from_bits(cut.to_bits() + 1),
                2 => f32::from_bits(cut.to_bits().saturating_sub(1)),
                3 | 4 => cut + rng.random::<f32>() * 4.0 - 2.0,
                _ => cut,
            });
        }
        x
    }

    /// The forest's answers equal [`Booster::above`]'s and `probability > p` on every row.
    fn assert_same_decisions(b: &Booster, rows: &[f32], ps: &[f32]) {
        let forest = Forest::new(b).expect("a shallow ensemble");
        let bounds = b.remaining_bounds();
        let n = rows.len() / b.features;
        for &p in ps {
            let logit = (p / (1.0 - p)).ln();
            let mut fast = vec![false; n];
            forest.above(rows, p, logit, &mut fast);
            let (mut yes, mut differ) = (0, 0);
            for (i, (&f, row)) in fast.iter().zip(rows.chunks_exact(b.features)).enumerate() {
                let slow = b.above(row, p, logit, &bounds);
                assert_eq!(slow, b.probability(row) > p, "row {i} p {p}: the early stop");
                differ += usize::from(f != slow);
                yes += usize::from(f);
            }
            assert_eq!(differ, 0, "{differ} of {n} rows decided otherwise at p {p}");
            assert!(
                yes > 0 && yes < n,
                "p {p}: {yes} of {n} rows above: the rows test nothing"
            );
        }
    }

    #[test]
    fn the_forest_decides_like_the_booster_on_the_shipped_models() {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
        for name in ["cascade-synth-1.0.0.json", "cascade-synth-1.1.0.json"] {
            let path = models.join(name);
            let text = std::fs::read_to_string(&path).expect("a shipped learned model");
            let model = LearnedModel::parse(&text, &path).expect("a valid learned model");
            let b = &model.booster;
            // 1001 rows: full batches (32 rows, 64 in lanes) and a partial one.
            let rows = rows_near_thresholds(b, 1001, 7);
            assert_same_decisions(b, &rows, &[0.05, 0.3, model.probability_threshold, 0.5, 0.9]);
        }
    }

    /// A booster trained to depth `depth` on rows where the target is `x0 + 0.5·x1 > 0.3`.
    fn toy_booster(depth: usize) -> Booster {
        let (x, y, w) = crate::learn::booster::tests::toy(3000, 3);
        let rows = Rows {
            x: &x,
            y: &y,
            w: &w,
            features: 5,
        };
        let p = BoostParams {
            rounds: 30,
            max_depth: depth,
            min_child_hessian: 2.0,
            learning_rate: 0.3,
            ..Default::default()
        };
        fit(&rows, None, &p, &mut |_| {})
    }

    #[test]
    fn the_forest_decides_like_the_booster_at_other_depths_and_with_uneven_trees() {
        // 1, 3 and 5 are evaluated in lanes, 6 by descents.
        for depth in [1, 3, 5, 6] {
            let b = toy_booster(depth);
            let depths: Vec<usize> = b.trees.iter().map(|t| tree_depth(&t.nodes)).collect();
            assert_eq!(depths.iter().max(), Some(&depth));
            let rows = rows_near_thresholds(&b, 700, depth as u64);
            assert_same_decisions(&b, &rows, &[0.2, 0.5, 0.8]);
        }
        let uneven = toy_booster(6);
        let leaves_above_the_last_level = uneven
            .trees
            .iter()
            .any(|t| t.nodes.iter().filter(|n| n.feature == LEAF).count() < 1 << 6);
        assert!(leaves_above_the_last_level, "the padding is exercised");
    }

    /// A tree of `splits` splits in a chain: each split's left child a leaf, its right child
    /// the next split (the last one's a leaf).
    fn deep_chain(splits: usize) -> Vec<Node> {
        let leaf = |v: f32| Node {
            feature: LEAF,
            threshold: 0.0,
            left: 0,
            value: v,
        };
        let mut nodes = Vec::new();
        for d in 0..splits {
            let left = nodes.len() as u32 + 1;
            nodes.push(Node {
                feature: 0,
                threshold: d as f32,
                left,
                value: 0.0,
            });
            nodes.push(leaf(d as f32));
        }
        nodes.push(leaf(-1.0));
        nodes
    }

    #[test]
    fn an_ensemble_deeper_than_the_layout_is_left_to_the_booster() {
        let b = |splits| Booster {
            features: 1,
            base: 0.0,
            trees: vec![Tree {
                nodes: deep_chain(splits),
            }],
        };
        let (deep, fits) = (b(MAX_DEPTH + 1), b(MAX_DEPTH));
        assert!(deep.check().is_ok() && fits.check().is_ok());
        assert_eq!(tree_depth(&deep.trees[0].nodes), MAX_DEPTH + 1);
        assert!(Forest::new(&deep).is_none());
        let rows: Vec<f32> = (0..40).map(|i| i as f32 * 0.25 - 1.0).collect();
        assert_same_decisions(&fits, &rows, &[0.4, 0.6]);
    }
}
