//! The change-of-use gate: which changed pixels look like something crops never are.
//! See [`crate::model::GateParams`] for the reasoning and the thresholds.

use super::indices::{brightness, flatness, for_each_pixel, local_std3, per_pixel, vegetation, water};
use super::morphology::dilate;
use crate::model::GateParams;
use ndarray::{Array2, Array3};

/// Per-pixel layers of a block that the gate and the patch features both read.
pub struct BlockLayers {
    pub vi_before: Array2<f32>,
    pub vi_after: Array2<f32>,
    /// 3×3 standard deviation of the vegetation index (texture).
    pub vtex_before: Array2<f32>,
    pub vtex_after: Array2<f32>,
    pub bright_before: Array2<f32>,
    pub bright_after: Array2<f32>,
}

impl BlockLayers {
    pub fn new(before: &Array3<f32>, after: &Array3<f32>) -> Self {
        let vi_before = per_pixel(before, vegetation);
        let vi_after = per_pixel(after, vegetation);
        Self {
            vtex_before: local_std3(&vi_before),
            vtex_after: local_std3(&vi_after),
            vi_before,
            vi_after,
            bright_before: per_pixel(before, brightness),
            bright_after: per_pixel(after, brightness),
        }
    }
}

/// Pixels whose after state is artificial, water, newly textured or much brighter, grown by
/// `grow_px`.
pub fn change_of_use(after: &Array3<f32>, l: &BlockLayers, p: &GateParams) -> Array2<bool> {
    let (_, h, w) = after.dim();
    let (tb, ta, bb, ba, va) = (
        flat(&l.vtex_before),
        flat(&l.vtex_after),
        flat(&l.bright_before),
        flat(&l.bright_after),
        flat(&l.vi_after),
    );
    let mut gate = vec![false; h * w];
    for_each_pixel(after, |i, px| {
        let bright = ba[i];
        let vi = va[i];
        let artificial = vi < p.artificial_max_vi && flatness(px) > p.artificial_min_flatness;
        let wet = water(px).is_some_and(|nd| nd > p.water_min_ndwi && bright < p.water_max_brightness);
        let textured = ta[i] > p.texture_min && ta[i] - tb[i] > p.texture_min_gain;
        let brighter = bright - bb[i] > p.brighten_min;
        gate[i] = artificial || wet || textured || brighter;
    });
    let gate = Array2::from_shape_vec((h, w), gate).unwrap_or_else(|_| Array2::from_elem((h, w), false));
    dilate(&gate, p.grow_px)
}

/// The layers are built contiguous (see [`BlockLayers::new`]).
fn flat(a: &Array2<f32>) -> &[f32] {
    a.as_slice().unwrap_or(&[])
}
