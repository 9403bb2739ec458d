//! The change-of-use gate: which changed pixels look like something crops never are.
//! See [`crate::model::GateParams`] for the reasoning and the thresholds.

use super::indices::{brightness_plane, flatness, local_std3, vegetation_plane, water_plane};
use super::morphology::dilate;
use crate::model::GateParams;
use ndarray::{Array2, Array3, Axis};

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
        let vi_before = vegetation_plane(before);
        let vi_after = vegetation_plane(after);
        Self {
            vtex_before: local_std3(&vi_before),
            vtex_after: local_std3(&vi_after),
            vi_before,
            vi_after,
            bright_before: brightness_plane(before),
            bright_after: brightness_plane(after),
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
    let ndwi = water_plane(after);
    let ndwi = ndwi.as_ref().map(flat);
    let after = after.as_standard_layout();
    let bands = after.as_slice().unwrap_or(&[]);
    let c = after.len_of(Axis(0));
    let mut px = [0.0f32; 16];
    let mut gate = vec![false; h * w];
    for (i, g) in gate.iter_mut().enumerate() {
        let bright = ba[i];
        // Flatness needs the pixel's whole spectrum: gathered only for the few candidates.
        let artificial = va[i] < p.artificial_max_vi && {
            for (k, v) in px.iter_mut().take(c.min(16)).enumerate() {
                *v = bands[k * h * w + i];
            }
            flatness(&px[..c.min(16)]) > p.artificial_min_flatness
        };
        let wet = ndwi.is_some_and(|nd| nd[i] > p.water_min_ndwi && bright < p.water_max_brightness);
        let textured = ta[i] > p.texture_min && ta[i] - tb[i] > p.texture_min_gain;
        let brighter = bright - bb[i] > p.brighten_min;
        *g = artificial || wet || textured || brighter;
    }
    let gate = Array2::from_shape_vec((h, w), gate).unwrap_or_else(|_| Array2::from_elem((h, w), false));
    dilate(&gate, p.grow_px)
}

/// The layers are built contiguous (see [`BlockLayers::new`]).
fn flat(a: &Array2<f32>) -> &[f32] {
    a.as_slice().unwrap_or(&[])
}
