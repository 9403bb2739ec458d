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

use super::booster::{sigmoid, Booster, Node, LEAF, STOP_SLACK as SLACK};

/// Deepest ensemble laid out (2^depth leaves per tree); deeper ones keep [`Booster::above`].
pub const MAX_DEPTH: usize = 8;
/// Rows decided together.
pub const BATCH: usize = 32;

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

    /// Up to [`BATCH`] rows through trees of `SLOTS = 2^depth` leaves. Rows still undecided
    /// after a tree are kept in `live`; each row's sum is the same sequence of additions as in
    /// [`Booster::above`].
    fn batch<const SLOTS: usize>(&self, rows: &[f32], p: f32, logit_p: f32, out: &mut [bool]) {
        let nf = self.features;
        let mut sum = [self.base; BATCH];
        let mut live: [usize; BATCH] = std::array::from_fn(|r| r);
        let mut n_live = out.len();
        let mut at = [0usize; BATCH];
        let trees = self.feature.chunks_exact(SLOTS).zip(self.threshold.chunks_exact(SLOTS));
        let trees = trees
            .zip(self.leaf.chunks_exact(SLOTS))
            .zip(self.up.iter().zip(&self.down));
        for (((feature, threshold), leaf), (&up, &down)) in trees {
            let (feature, threshold, leaf) = (
                slots::<u32, SLOTS>(feature),
                slots::<f32, SLOTS>(threshold),
                slots::<f32, SLOTS>(leaf),
            );
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
                let s = sum[r];
                if s + down > logit_p + SLACK {
                    out[r] = true;
                } else if s + up < logit_p - SLACK {
                    out[r] = false;
                } else {
                    live[kept] = r;
                    kept += 1;
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
            // 1001 rows: batches of 32 and a partial one.
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
        for depth in [1, 3, 6] {
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
