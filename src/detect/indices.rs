//! Spectral indices on band-major pixel arrays in canonical band order `[B, G, R, (NIR)]`.
//!
//! GF-1/2/6 and ZY-3 have no SWIR, so built-up indices such as NDBI are out of reach; the
//! indices here are the ones 4-band (and 3-band RGB) imagery supports.

use ndarray::{Array2, Array3, Axis, Zip};

const EPS: f32 = 1e-6;

/// Index of each band in a canonical array.
pub const BLUE: usize = 0;
pub const GREEN: usize = 1;
pub const RED: usize = 2;
pub const NIR: usize = 3;

/// Normalised difference `(a - b) / (a + b)`, 0 where both are 0.
#[inline]
pub fn nd(a: f32, b: f32) -> f32 {
    let s = a + b;
    if s.abs() < EPS {
        0.0
    } else {
        (a - b) / s
    }
}

/// Vegetation index: NDVI with NIR; without NIR the normalised excess-green index
/// `(2G − R − B) / (2G + R + B)`, the visible-band stand-in used on RGB orthophotos.
#[inline]
pub fn vegetation(px: &[f32]) -> f32 {
    if px.len() > NIR {
        nd(px[NIR], px[RED])
    } else {
        nd(2.0 * px[GREEN], px[RED] + px[BLUE])
    }
}

/// NDWI (McFeeters): `(G − NIR) / (G + NIR)`; open water is clearly positive.
#[inline]
pub fn water(px: &[f32]) -> Option<f32> {
    (px.len() > NIR).then(|| nd(px[GREEN], px[NIR]))
}

/// Mean reflectance over all bands.
#[inline]
pub fn brightness(px: &[f32]) -> f32 {
    px.iter().sum::<f32>() / px.len() as f32
}

/// Spectral flatness in 0..1: 1 for a grey/white spectrum (concrete, plastic, cloud), low for
/// vegetation, soil and water.
#[inline]
pub fn flatness(px: &[f32]) -> f32 {
    let (lo, hi) = px
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    let mean = brightness(px);
    if mean <= EPS {
        0.0
    } else {
        (1.0 - (hi - lo) / mean).clamp(0.0, 1.0)
    }
}

/// Applies `f` to each pixel's band vector, giving a 2-D array.
pub fn per_pixel(bands: &Array3<f32>, f: impl Fn(&[f32]) -> f32 + Sync) -> Array2<f32> {
    let (c, h, w) = bands.dim();
    let mut out = Array2::<f32>::zeros((h, w));
    let mut px = vec![0.0f32; c];
    for y in 0..h {
        for x in 0..w {
            for (k, v) in px.iter_mut().enumerate() {
                *v = bands[(k, y, x)];
            }
            out[(y, x)] = f(&px);
        }
    }
    out
}

/// The feature stack used for change evidence: the bands, then the vegetation index and (with
/// NIR) NDWI, each scaled by `index_weight` so they weigh like reflectance differences.
pub fn evidence_stack(bands: &Array3<f32>, index_weight: f32) -> Array3<f32> {
    let (c, h, w) = bands.dim();
    let extra = if c > NIR { 2 } else { 1 };
    let mut out = Array3::<f32>::zeros((c + extra, h, w));
    out.slice_mut(ndarray::s![..c, .., ..]).assign(bands);
    let mut idx = out.slice_mut(ndarray::s![c.., .., ..]);
    let mut lanes = idx.lanes_mut(Axis(0)).into_iter();
    for px in bands.lanes(Axis(0)) {
        let px = px.to_vec();
        if let Some(mut dst) = lanes.next() {
            dst[0] = index_weight * vegetation(&px);
            if let Some(wi) = water(&px) {
                dst[1] = index_weight * wi;
            }
        }
    }
    out
}

/// Mean of each band over the pixels where `mask` holds.
pub fn masked_means(bands: &Array3<f32>, mask: &Array2<bool>) -> Vec<f32> {
    let n = mask.iter().filter(|&&m| m).count().max(1) as f32;
    bands
        .outer_iter()
        .map(|b| {
            let mut s = 0.0f32;
            Zip::from(&b).and(mask).for_each(|&v, &m| {
                if m {
                    s += v
                }
            });
            s / n
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vegetation_is_high_for_plants_and_low_for_concrete() {
        let veg = [0.033, 0.068, 0.038, 0.43];
        let concrete = [0.19, 0.21, 0.22, 0.24];
        assert!(vegetation(&veg) > 0.8);
        assert!(vegetation(&concrete) < 0.1);
        // RGB fallback still orders them the same way.
        assert!(vegetation(&veg[..3]) > vegetation(&concrete[..3]));
    }

    #[test]
    fn water_index_needs_nir() {
        assert!(water(&[0.062, 0.076, 0.048, 0.026]).unwrap() > 0.4);
        assert!(water(&[0.1, 0.1, 0.1]).is_none());
    }

    #[test]
    fn flatness_separates_grey_from_green() {
        assert!(flatness(&[0.52, 0.545, 0.555, 0.565]) > 0.85);
        assert!(flatness(&[0.033, 0.068, 0.038, 0.43]) < 0.1);
        assert_eq!(flatness(&[0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn evidence_stack_appends_scaled_indices() {
        let b = Array3::from_shape_vec((4, 1, 1), vec![0.03, 0.07, 0.04, 0.43]).unwrap();
        let s = evidence_stack(&b, 0.5);
        assert_eq!(s.dim(), (6, 1, 1));
        assert!((s[(4, 0, 0)] - 0.5 * nd(0.43, 0.04)).abs() < 1e-6);
        assert!((s[(5, 0, 0)] - 0.5 * nd(0.07, 0.43)).abs() < 1e-6);
    }
}
