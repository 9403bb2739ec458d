//! The change-of-use gate: which changed pixels look like something crops never are.
//! See [`crate::model::GateParams`] for the reasoning and the thresholds.

use super::indices::{as_flat, local_std3, DateIndices, DateLayers};
use super::morphology::dilate;
use crate::model::GateParams;
use ndarray::{Array2, Array3};

/// Per-pixel layers of a block that the gate and the patch features both read.
pub struct BlockLayers {
    /// Vegetation index and NDWI of each date.
    pub before: DateIndices,
    pub after: DateIndices,
    /// 3×3 standard deviation of the vegetation index (texture).
    pub vtex_before: Array2<f32>,
    pub vtex_after: Array2<f32>,
    pub bright_before: Array2<f32>,
    pub bright_after: Array2<f32>,
    /// Spectral flatness after (see [`super::indices::flatness`]).
    pub flat_after: Array2<f32>,
}

impl BlockLayers {
    pub fn new(before: &Array3<f32>, after: &Array3<f32>) -> Self {
        let (b, a) = (DateLayers::of(before, false), DateLayers::of(after, true));
        Self {
            vtex_before: local_std3(&b.ix.vi),
            vtex_after: local_std3(&a.ix.vi),
            before: b.ix,
            after: a.ix,
            bright_before: b.bright,
            flat_after: a.flat.unwrap_or_else(|| Array2::zeros(a.bright.raw_dim())),
            bright_after: a.bright,
        }
    }
}

/// Pixels whose after state is artificial, water, newly textured or much brighter, grown by
/// `grow_px`.
pub fn change_of_use(after: &Array3<f32>, l: &BlockLayers, p: &GateParams) -> Array2<bool> {
    let (_, h, w) = after.dim();
    let n = h * w;
    let (tb, ta, bb, ba, va, fa) = (
        &as_flat(&l.vtex_before)[..n],
        &as_flat(&l.vtex_after)[..n],
        &as_flat(&l.bright_before)[..n],
        &as_flat(&l.bright_after)[..n],
        &as_flat(&l.after.vi)[..n],
        &as_flat(&l.flat_after)[..n],
    );
    // Non-short-circuit `&` / `|` and the NDWI test hoisted out of the loop, so the sweep
    // vectorises (same truth values as the plain boolean formula).
    let dry = |i: usize| {
        let artificial = (va[i] < p.artificial_max_vi) & (fa[i] > p.artificial_min_flatness);
        let textured = (ta[i] > p.texture_min) & (ta[i] - tb[i] > p.texture_min_gain);
        let brighter = ba[i] - bb[i] > p.brighten_min;
        artificial | textured | brighter
    };
    let gate: Vec<bool> = match l.after.wi.as_ref().map(|wi| &as_flat(wi)[..n]) {
        Some(nd) => (0..n)
            .map(|i| dry(i) | ((nd[i] > p.water_min_ndwi) & (ba[i] < p.water_max_brightness)))
            .collect(),
        None => (0..n).map(dry).collect(),
    };
    let gate = Array2::from_shape_vec((h, w), gate).unwrap_or_else(|_| Array2::from_elem((h, w), false));
    dilate(&gate, p.grow_px)
}
