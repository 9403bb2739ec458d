//! The change-of-use gate: which changed pixels look like something crops never are.
//! See [`crate::model::GateParams`] for the reasoning and the thresholds.

use super::indices::{brightness, flatness, for_each_pixel, local_std3, per_pixel, vegetation, water};
use super::morphology::dilate;
use crate::model::GateParams;
use ndarray::{Array2, Array3};

/// Pixels whose after state is artificial, water, newly textured or much brighter, grown by
/// `grow_px`.
pub fn change_of_use(before: &Array3<f32>, after: &Array3<f32>, p: &GateParams) -> Array2<bool> {
    let (_, h, w) = after.dim();
    let vi_b = per_pixel(before, vegetation);
    let vi_a = per_pixel(after, vegetation);
    let (tex_b, tex_a) = (local_std3(&vi_b), local_std3(&vi_a));
    let bright_b = per_pixel(before, brightness);
    let (tb, ta, bb) = (
        tex_b.as_slice().unwrap_or(&[]),
        tex_a.as_slice().unwrap_or(&[]),
        bright_b.as_slice().unwrap_or(&[]),
    );
    let va = vi_a.as_slice().unwrap_or(&[]);
    let mut gate = vec![false; h * w];
    for_each_pixel(after, |i, px| {
        let bright = brightness(px);
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
