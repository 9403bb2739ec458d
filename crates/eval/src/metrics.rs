//! Accuracy metrics of a predicted change map against a label map, as pure functions.
//!
//! Two levels, because county staff care about both:
//! * **pixels** — precision, recall, F1 and IoU of "changed" over the labelled pixels;
//! * **patches** — with the coverage rule of `../shared/peers/score.py` (chosen there over an
//!   IoU match because it is robust to one tool merging what another splits):
//!   a true patch (8-connected component of the label's change pixels) is *found* when at least
//!   half of its pixels are predicted changed; a predicted patch is *correct* when at least half
//!   of its labelled pixels are true change.
//!
//! Pixels marked [`Truth::Ignore`] (unlabelled) count nowhere: not as hits, misses or false
//! alarms, and not in a predicted patch's area. A predicted patch lying wholly on unlabelled
//! pixels cannot be judged and is left out of patch precision.
//!
//! Everything is kept as counts ([`PixelCounts`], [`PatchCounts`]) so that results over many
//! pairs are aggregated by summing counts first and forming ratios last. A ratio with a zero
//! denominator (precision of an empty prediction, recall against an empty label) is `None`:
//! undefined, not zero.

use ndarray::{Array2, Zip};
use serde::Serialize;

/// What the label says about one pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    NoChange,
    Change,
    /// Unlabelled: excluded from every count.
    Ignore,
}

/// Pixel confusion counts over the labelled pixels, plus the number of ignored pixels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PixelCounts {
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tn: u64,
    pub ignored: u64,
}

/// Patch counts under the coverage rule (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PatchCounts {
    /// True patches (8-connected components of label change).
    pub true_patches: u64,
    /// True patches at least half covered by the prediction.
    pub found: u64,
    /// Predicted patches with at least one labelled pixel.
    pub pred_patches: u64,
    /// Predicted patches at least half of whose labelled pixels are true change.
    pub pred_correct: u64,
}

/// Both levels of counts for one pair (or a sum over pairs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pixel: PixelCounts,
    pub patch: PatchCounts,
}

/// The ratios derived from [`Counts`]; `None` where the denominator is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Scores {
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub iou: Option<f64>,
    pub patch_precision: Option<f64>,
    pub patch_recall: Option<f64>,
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

impl PixelCounts {
    pub fn add(&mut self, o: &PixelCounts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
        self.tn += o.tn;
        self.ignored += o.ignored;
    }

    pub fn precision(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp)
    }

    pub fn recall(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// F1 = 2TP / (2TP + FP + FN): defined whenever anything was predicted or labelled, and 0
    /// when both exist but do not meet.
    pub fn f1(&self) -> Option<f64> {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    pub fn iou(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp + self.fn_)
    }
}

impl PatchCounts {
    pub fn add(&mut self, o: &PatchCounts) {
        self.true_patches += o.true_patches;
        self.found += o.found;
        self.pred_patches += o.pred_patches;
        self.pred_correct += o.pred_correct;
    }

    pub fn precision(&self) -> Option<f64> {
        ratio(self.pred_correct, self.pred_patches)
    }

    pub fn recall(&self) -> Option<f64> {
        ratio(self.found, self.true_patches)
    }
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.pixel.add(&o.pixel);
        self.patch.add(&o.patch);
    }

    pub fn scores(&self) -> Scores {
        Scores {
            precision: self.pixel.precision(),
            recall: self.pixel.recall(),
            f1: self.pixel.f1(),
            iou: self.pixel.iou(),
            patch_precision: self.patch.precision(),
            patch_recall: self.patch.recall(),
        }
    }
}

/// Labels the 8-connected components of `mask`: 0 is background, components are numbered
/// 1..=n in raster order of their first pixel (deterministic). Returns the ids and `n`.
pub fn components(mask: &Array2<bool>) -> (Array2<u32>, usize) {
    let (h, w) = mask.dim();
    let mut ids = Array2::<u32>::zeros((h, w));
    let mut n = 0u32;
    let mut stack = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if !mask[(y, x)] || ids[(y, x)] != 0 {
                continue;
            }
            n += 1;
            ids[(y, x)] = n;
            stack.push((y, x));
            while let Some((cy, cx)) = stack.pop() {
                for (ny, nx) in neighbours8(cy, cx, h, w) {
                    if mask[(ny, nx)] && ids[(ny, nx)] == 0 {
                        ids[(ny, nx)] = n;
                        stack.push((ny, nx));
                    }
                }
            }
        }
    }
    (ids, n as usize)
}

fn neighbours8(y: usize, x: usize, h: usize, w: usize) -> impl Iterator<Item = (usize, usize)> {
    let ys = y.saturating_sub(1)..=(y + 1).min(h - 1);
    ys.flat_map(move |ny| {
        let xs = x.saturating_sub(1)..=(x + 1).min(w - 1);
        xs.map(move |nx| (ny, nx))
    })
    .filter(move |&(ny, nx)| (ny, nx) != (y, x))
}

/// Pixel counts of a binary prediction against the label.
///
/// # Panics
/// Never on user data; callers check shapes first ([`evaluate`] does).
pub fn pixel_counts(pred: &Array2<bool>, truth: &Array2<Truth>) -> PixelCounts {
    let mut c = PixelCounts::default();
    Zip::from(pred).and(truth).for_each(|&p, &t| match (t, p) {
        (Truth::Ignore, _) => c.ignored += 1,
        (Truth::Change, true) => c.tp += 1,
        (Truth::Change, false) => c.fn_ += 1,
        (Truth::NoChange, true) => c.fp += 1,
        (Truth::NoChange, false) => c.tn += 1,
    });
    c
}

/// Patch counts of predicted patches (`pred_ids`: 0 = no patch, 1..=n_pred = patch id)
/// against the label, under the coverage rule.
pub fn patch_counts(pred_ids: &Array2<u32>, n_pred: usize, truth: &Array2<Truth>) -> PatchCounts {
    let (true_ids, n_true) = components(&truth.mapv(|t| t == Truth::Change));
    let mut true_area = vec![0u64; n_true + 1];
    let mut true_covered = vec![0u64; n_true + 1];
    let mut pred_area = vec![0u64; n_pred + 1];
    let mut pred_hit = vec![0u64; n_pred + 1];
    Zip::from(pred_ids).and(&true_ids).and(truth).for_each(|&p, &t, &lab| {
        let p = (p as usize).min(n_pred);
        true_area[t as usize] += 1;
        if p > 0 {
            true_covered[t as usize] += 1;
            if lab != Truth::Ignore {
                pred_area[p] += 1;
                pred_hit[p] += u64::from(lab == Truth::Change);
            }
        }
    });
    let half_or_more = |part: u64, whole: u64| 2 * part >= whole;
    let found = (1..=n_true)
        .filter(|&i| half_or_more(true_covered[i], true_area[i]))
        .count();
    let judged: Vec<usize> = (1..=n_pred).filter(|&i| pred_area[i] > 0).collect();
    let correct = judged
        .iter()
        .filter(|&&i| half_or_more(pred_hit[i], pred_area[i]))
        .count();
    PatchCounts {
        true_patches: n_true as u64,
        found: found as u64,
        pred_patches: judged.len() as u64,
        pred_correct: correct as u64,
    }
}

/// Both levels of counts for one prediction. `None` when the shapes differ.
pub fn evaluate(pred_ids: &Array2<u32>, n_pred: usize, truth: &Array2<Truth>) -> Option<Counts> {
    if pred_ids.dim() != truth.dim() {
        return None;
    }
    let pred = pred_ids.mapv(|p| p > 0);
    Some(Counts {
        pixel: pixel_counts(&pred, truth),
        patch: patch_counts(pred_ids, n_pred, truth),
    })
}

/// [`evaluate`] for a binary prediction whose patches are its 8-connected components.
pub fn evaluate_mask(pred: &Array2<bool>, truth: &Array2<Truth>) -> Option<Counts> {
    let (ids, n) = components(pred);
    evaluate(&ids, n, truth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    const N: Truth = Truth::NoChange;
    const C: Truth = Truth::Change;
    const I: Truth = Truth::Ignore;

    fn mask(rows: &[&str]) -> Array2<bool> {
        let h = rows.len();
        let w = rows[0].len();
        Array2::from_shape_fn((h, w), |(y, x)| rows[y].as_bytes()[x] == b'#')
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn pixel_counts_of_a_partial_hit() {
        let truth = array![[C, C, N], [C, C, N], [N, N, N]];
        let pred = mask(&["##.", "...", "..#"]);
        let c = pixel_counts(&pred, &truth);
        assert_eq!(
            c,
            PixelCounts {
                tp: 2,
                fp: 1,
                fn_: 2,
                tn: 4,
                ignored: 0
            }
        );
        assert!(close(c.precision(), 2.0 / 3.0));
        assert!(close(c.recall(), 0.5));
        assert!(close(c.f1(), 4.0 / 7.0));
        assert!(close(c.iou(), 0.4));
    }

    #[test]
    fn ignored_pixels_count_nowhere() {
        let truth = array![[C, I, I], [N, I, N]];
        let all = mask(&["###", "###"]);
        let c = pixel_counts(&all, &truth);
        assert_eq!(
            c,
            PixelCounts {
                tp: 1,
                fp: 2,
                fn_: 0,
                tn: 0,
                ignored: 3
            }
        );
        let none = mask(&["...", "..."]);
        assert_eq!(
            pixel_counts(&none, &truth),
            PixelCounts {
                tp: 0,
                fp: 0,
                fn_: 1,
                tn: 2,
                ignored: 3
            }
        );
    }

    #[test]
    fn empty_prediction_has_undefined_precision_and_zero_recall() {
        let truth = array![[C, N], [N, N]];
        let c = evaluate_mask(&mask(&["..", ".."]), &truth).unwrap();
        assert_eq!(c.pixel.precision(), None);
        assert!(close(c.pixel.recall(), 0.0));
        assert!(close(c.pixel.f1(), 0.0));
        assert_eq!(
            c.patch,
            PatchCounts {
                true_patches: 1,
                found: 0,
                pred_patches: 0,
                pred_correct: 0
            }
        );
        assert_eq!(c.patch.precision(), None);
        assert!(close(c.patch.recall(), 0.0));
    }

    #[test]
    fn empty_label_has_undefined_recall() {
        let truth = array![[N, N], [N, N]];
        let c = evaluate_mask(&mask(&["#.", ".."]), &truth).unwrap();
        assert_eq!(c.pixel.recall(), None);
        assert!(close(c.pixel.precision(), 0.0));
        assert_eq!(c.patch.recall(), None);
        assert!(close(c.patch.precision(), 0.0));
        let quiet = evaluate_mask(&mask(&["..", ".."]), &truth).unwrap();
        assert_eq!(
            quiet.scores().f1,
            None,
            "nothing labelled, nothing predicted: F1 undefined"
        );
    }

    #[test]
    fn components_are_eight_connected_and_numbered_in_raster_order() {
        let (ids, n) = components(&mask(&["#..#", ".#..", "...#", "##.#"]));
        assert_eq!(n, 4);
        assert_eq!(ids[(0, 0)], 1);
        assert_eq!(ids[(1, 1)], 1, "diagonal neighbour joins");
        assert_eq!(ids[(0, 3)], 2);
        assert_eq!(ids[(2, 3)], 3);
        assert_eq!(ids[(3, 3)], 3);
        assert_eq!(ids[(3, 0)], 4);
        assert_eq!(ids[(3, 1)], 4);
        assert_eq!(ids[(0, 1)], 0);
    }

    #[test]
    fn coverage_rule_at_exactly_half() {
        // One true patch of 4 px; prediction covers 2 of them (found) and adds 2 false px in
        // the same component: the predicted patch is 2/4 true, so it is correct.
        let truth = array![[C, C, N, N], [C, C, N, N]];
        let c = evaluate_mask(&mask(&["####", "...."]), &truth).unwrap();
        assert_eq!(
            c.patch,
            PatchCounts {
                true_patches: 1,
                found: 1,
                pred_patches: 1,
                pred_correct: 1
            }
        );
        // Covering one pixel of four is not enough; a patch one third true is not correct.
        let right_half = array![[N, N, C, C], [N, N, C, C]];
        let c = evaluate_mask(&mask(&["###.", "...."]), &right_half).unwrap();
        assert_eq!(
            c.patch,
            PatchCounts {
                true_patches: 1,
                found: 0,
                pred_patches: 1,
                pred_correct: 0
            }
        );
    }

    #[test]
    fn patch_rule_counts_two_true_patches_separately() {
        let truth = array![[C, N, N, C], [C, N, N, C]];
        let c = evaluate_mask(&mask(&["#...", "#..."]), &truth).unwrap();
        assert_eq!(c.patch.true_patches, 2);
        assert_eq!(c.patch.found, 1);
        assert!(close(c.patch.recall(), 0.5));
        assert!(close(c.patch.precision(), 1.0));
    }

    #[test]
    fn predicted_patch_on_unlabelled_pixels_is_not_judged() {
        let truth = array![[I, I, N], [I, I, C]];
        let c = evaluate_mask(&mask(&["##.", "##."]), &truth).unwrap();
        assert_eq!(c.patch.pred_patches, 0);
        assert_eq!(c.pixel.fp, 0);
        // Its labelled part decides: 1 true of 2 labelled = correct; area ignores the rest.
        let truth = array![[I, I, N], [I, I, C]];
        let c = evaluate_mask(&mask(&["###", "###"]), &truth).unwrap();
        assert_eq!(
            c.patch,
            PatchCounts {
                true_patches: 1,
                found: 1,
                pred_patches: 1,
                pred_correct: 1
            }
        );
    }

    #[test]
    fn polygon_ids_are_patches_even_when_touching() {
        // Two predicted polygons side by side: one all true, one all false.
        let truth = array![[C, C, N, N]];
        let ids = array![[1u32, 1, 2, 2]];
        let c = evaluate(&ids, 2, &truth).unwrap();
        assert_eq!(
            c.patch,
            PatchCounts {
                true_patches: 1,
                found: 1,
                pred_patches: 2,
                pred_correct: 1
            }
        );
        // As one 8-connected mask it would be a single half-true, correct patch.
        let m = evaluate_mask(&ids.mapv(|v| v > 0), &truth).unwrap();
        assert_eq!(m.patch.pred_patches, 1);
    }

    #[test]
    fn counts_sum_before_ratios() {
        let mut total = Counts::default();
        let a = Counts {
            pixel: PixelCounts {
                tp: 9,
                fp: 1,
                fn_: 0,
                tn: 0,
                ignored: 0,
            },
            ..Default::default()
        };
        let b = Counts {
            pixel: PixelCounts {
                tp: 0,
                fp: 0,
                fn_: 10,
                tn: 5,
                ignored: 2,
            },
            ..Default::default()
        };
        total.add(&a);
        total.add(&b);
        assert!(
            close(total.pixel.recall(), 9.0 / 19.0),
            "pooled, not the mean of 1.0 and 0.0"
        );
        assert_eq!(total.pixel.ignored, 2);
    }

    #[test]
    fn shape_mismatch_is_refused() {
        let truth = array![[C, N]];
        assert!(evaluate(&array![[1u32], [0]], 1, &truth).is_none());
    }
}
