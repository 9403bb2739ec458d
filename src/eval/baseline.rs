//! The plain baseline every change detector has to beat: "CVA + Otsu".
//!
//! Per pixel, the Euclidean length of the change vector between the raw band values of the two
//! dates — no radiometric normalisation, no co-registration, no neighbourhood, no masks, no
//! morphology, no minimum area — thresholded with Otsu's method over the whole image
//! ([`crate::detect::threshold::otsu`]). Its patches are the 8-connected components of the mask.
//! It reads the same bands landwatch reads (the band map), so both see the same input.

use crate::detect::scene::BandMap;
use crate::detect::threshold::{otsu, Histogram};
use crate::io::raster::{self, Window};
use crate::{Error, Result};
use ndarray::{Array2, Axis, Zip};
use std::path::Path;

/// Histogram resolution for the Otsu split of the magnitudes.
const BINS: usize = 2048;

/// The change-vector magnitude of `after` against `before` and the pixels valid on both dates.
pub fn cva_magnitude(before: &Path, after: &Path, bands: Option<&BandMap>) -> Result<(Array2<f32>, Array2<bool>)> {
    let (bds, ads) = (raster::open(before)?, raster::open(after)?);
    let (bi, ai) = (raster::describe(&bds, before)?, raster::describe(&ads, after)?);
    if (bi.width, bi.height, bi.band_count) != (ai.width, ai.height, ai.band_count) {
        return Err(Error::input(
            after,
            format!(
                "is {}x{} px with {} bands but {} is {}x{} with {}; the CVA baseline needs both dates on one grid",
                ai.width,
                ai.height,
                ai.band_count,
                before.display(),
                bi.width,
                bi.height,
                bi.band_count
            ),
        ));
    }
    let map = match bands {
        Some(m) => m.clone(),
        None => BandMap::default_for(bi.band_count)
            .ok_or_else(|| Error::input(before, format!("has {} band(s); expected 3 or more", bi.band_count)))?,
    };
    let idx = map.canonical();
    if idx.iter().any(|&b| b > bi.band_count) {
        return Err(Error::input(
            before,
            format!("has {} bands; the band map asks for more", bi.band_count),
        ));
    }
    let win = Window::new(0, 0, bi.width, bi.height);
    let b = raster::read_window(&bds, &bi, &idx, win, 1.0)?;
    let a = raster::read_window(&ads, &ai, &idx, win, 1.0)?;
    let diff = &a.bands - &b.bands;
    let magnitude = diff.mapv(|d| d * d).sum_axis(Axis(0)).mapv(f32::sqrt);
    let mut valid = b.valid;
    Zip::from(&mut valid).and(&a.valid).for_each(|v, &w| *v &= w);
    Ok((magnitude, valid))
}

/// Otsu's split of `magnitude` over the valid pixels: `true` = changed.
pub fn otsu_mask(magnitude: &Array2<f32>, valid: &Array2<bool>) -> Array2<bool> {
    let max = Zip::from(magnitude)
        .and(valid)
        .fold(0.0f32, |m, &v, &ok| if ok && v.is_finite() { m.max(v) } else { m });
    let mut hist = Histogram::new(BINS, max.max(f32::MIN_POSITIVE) * 1.0001);
    Zip::from(magnitude).and(valid).for_each(|&v, &ok| {
        if ok {
            hist.add(v)
        }
    });
    let Some(t) = otsu(&hist) else {
        return Array2::from_elem(magnitude.raw_dim(), false);
    };
    let mut out = Array2::from_elem(magnitude.raw_dim(), false);
    Zip::from(&mut out)
        .and(magnitude)
        .and(valid)
        .for_each(|o, &v, &ok| *o = ok && v > t);
    out
}

/// The baseline's change mask for a pair.
pub fn cva_otsu(before: &Path, after: &Path, bands: Option<&BandMap>) -> Result<Array2<bool>> {
    let (m, valid) = cva_magnitude(before, after, bands)?;
    Ok(otsu_mask(&m, &valid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otsu_separates_a_bright_block_from_noise() {
        let m = Array2::from_shape_fn((40, 40), |(y, x)| {
            let noise = ((x * 7 + y * 13) % 10) as f32;
            if (10..20).contains(&y) && (10..20).contains(&x) {
                100.0 + noise
            } else {
                noise
            }
        });
        let valid = Array2::from_elem((40, 40), true);
        let mask = otsu_mask(&m, &valid);
        assert_eq!(mask.iter().filter(|&&c| c).count(), 100);
        assert!(mask[(15, 15)] && !mask[(5, 5)]);
    }

    #[test]
    fn invalid_pixels_are_never_change() {
        let m = Array2::from_shape_fn((4, 4), |(y, _)| if y < 2 { 0.0 } else { 50.0 });
        let mut valid = Array2::from_elem((4, 4), true);
        valid[(3, 3)] = false;
        let mask = otsu_mask(&m, &valid);
        assert!(mask[(2, 0)]);
        assert!(!mask[(3, 3)]);
        assert!(!mask[(0, 0)]);
    }

    #[test]
    fn an_empty_image_has_no_change() {
        let m = Array2::<f32>::zeros((3, 3));
        let valid = Array2::from_elem((3, 3), false);
        assert!(otsu_mask(&m, &valid).iter().all(|&c| !c));
    }
}
