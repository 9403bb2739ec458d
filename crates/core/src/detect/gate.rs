//! The change-of-use gate: which changed pixels look like something crops never are.
//! See [`crate::model::GateParams`] for the reasoning and the thresholds.

use super::indices::{as_flat, local_std3, DateIndices, DateLayers};
use super::morphology::dilate;
use crate::model::GateParams;
use crate::types::layout::plane_of;
use ndarray::{Array2, Array3};

/// Per-pixel layers of a block that the gate and the patch features both read.
pub struct BlockLayers {
    /// Vegetation index and NDWI of each date.
    pub before: DateIndices,
    /// Vegetation index and NDWI after.
    pub after: DateIndices,
    /// 3×3 standard deviation of the vegetation index (texture).
    pub vtex_before: Array2<f32>,
    /// The same texture after.
    pub vtex_after: Array2<f32>,
    /// Mean reflectance (brightness) before.
    pub bright_before: Array2<f32>,
    /// Mean reflectance (brightness) after.
    pub bright_after: Array2<f32>,
    /// Spectral flatness after (see [`super::indices::flatness`]).
    pub flat_after: Array2<f32>,
}

impl BlockLayers {
    /// Computes the layers of a block from its before and after bands (`(band, row, col)`).
    pub fn new(before: &Array3<f32>, after: &Array3<f32>) -> Self {
        let (b, a) = (DateLayers::of(before, false), DateLayers::of(after, true));
        Self {
            vtex_before: local_std3(&b.ix.vi),
            vtex_after: local_std3(&a.ix.vi),
            before: b.ix,
            after: a.ix,
            bright_before: b.bright,
            // Made with `with_flatness` just above, so always there.
            flat_after: a.flat.expect("the after date's layers are made with flatness"),
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
    // Non-short-circuit `&` / `|`, zipped slices and the NDWI test hoisted out of the loop, so
    // the sweep vectorises (same truth values as the plain boolean formula).
    let dry = va.iter().zip(fa).zip(ta.iter().zip(tb)).zip(ba.iter().zip(bb)).map(
        |(((&vi, &flat), (&tex, &tex_before)), (&bright, &bright_before))| {
            let artificial = (vi < p.artificial_max_vi) & (flat > p.artificial_min_flatness);
            let textured = (tex > p.texture_min) & (tex - tex_before > p.texture_min_gain);
            artificial | textured | (bright - bright_before > p.brighten_min)
        },
    );
    let gate: Vec<bool> = match l.after.wi.as_ref().map(|wi| &as_flat(wi)[..n]) {
        Some(nd) => dry
            .zip(nd.iter().zip(ba))
            .map(|(dry, (&ndwi, &bright))| dry | ((ndwi > p.water_min_ndwi) & (bright < p.water_max_brightness)))
            .collect(),
        None => dry.collect(),
    };
    let gate = plane_of((h, w), gate);
    dilate(&gate, p.grow_px)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::indices::{brightness, flatness, local_std3, spectrum, vegetation, water, MAX_BANDS};
    use rand::{Rng, SeedableRng};

    /// The gate at one pixel, written as the plain boolean formula.
    fn gate_at(b: &Array3<f32>, a: &Array3<f32>, vtex: (&Array2<f32>, &Array2<f32>), i: usize, p: &GateParams) -> bool {
        let (_, h, w) = a.dim();
        let (sb, sa) = (b.as_slice().unwrap(), a.as_slice().unwrap());
        let (mut pb, mut pa) = ([0.0f32; MAX_BANDS], [0.0f32; MAX_BANDS]);
        let (pb, pa) = (spectrum(sb, h * w, i, &mut pb), spectrum(sa, h * w, i, &mut pa));
        let (tb, ta) = (vtex.0.as_slice().unwrap()[i], vtex.1.as_slice().unwrap()[i]);
        let artificial = vegetation(pa) < p.artificial_max_vi && flatness(pa) > p.artificial_min_flatness;
        let wet = water(pa).is_some_and(|nd| nd > p.water_min_ndwi && brightness(pa) < p.water_max_brightness);
        let textured = ta > p.texture_min && ta - tb > p.texture_min_gain;
        let brighter = brightness(pa) - brightness(pb) > p.brighten_min;
        artificial || wet || textured || brighter
    }

    #[test]
    fn the_gate_is_the_boolean_formula_at_every_pixel_with_and_without_nir() {
        let p = crate::model::Model::builtin().expect("built-in model").detect.gate;
        let p = GateParams { grow_px: 0, ..p };
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for bands in [4, 3] {
            let mut img = || Array3::from_shape_fn((bands, 23, 29), |_| rng.random_range(0.0f32..0.5));
            let (b, a) = (img(), img());
            let l = BlockLayers::new(&b, &a);
            let (vb, va) = (local_std3(&l.before.vi), local_std3(&l.after.vi));
            let g = change_of_use(&a, &l, &p);
            let set = g.iter().filter(|&&v| v).count();
            assert!(
                set > 0 && set < g.len(),
                "{bands} bands: a gate of all or nothing tests little"
            );
            for (i, &v) in g.iter().enumerate() {
                assert_eq!(v, gate_at(&b, &a, (&vb, &va), i, &p), "{bands} bands, pixel {i}");
            }
        }
    }
}
