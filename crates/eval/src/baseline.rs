//! The plain baseline every change detector has to beat: standardised change-vector analysis.
//!
//! 1. Per image and per band, every value is standardised, `(v − mean) / std`, with the mean and
//!    standard deviation over that image's valid pixels (nodata ignored). A per-band gain and
//!    offset between the dates (sun, haze, sensor) thus cancels.
//! 2. Per pixel, the Euclidean length of the change vector between the standardised bands of
//!    the two dates.
//! 3. Otsu's threshold on those magnitudes over the pixels valid on both dates
//!    ([`landwatch_core::detect::threshold::otsu`]).
//! 4. A 3×3 binary opening ([`landwatch_core::detect::morphology::open`], radius 1) removes specks.
//!
//! Nothing in it was tuned on any dataset: there is no parameter to tune. No co-registration, no
//! masks, no minimum area. Its patches are the 8-connected components of the mask. It reads
//! every band of the files, as a plain user would: on the RGB and 4-band datasets these are the
//! bands landwatch reads; on the 6-band Landsat pair it also sees the two SWIR bands landwatch's
//! band map leaves out.

use landwatch_core::detect::morphology;
use landwatch_core::detect::threshold::{otsu, Histogram};
use landwatch_core::io::raster::{self, Pixels, Window};
use landwatch_core::{Error, Result};
use ndarray::{Array2, Array3, Axis, Zip};
use std::path::Path;

/// Histogram resolution for the Otsu split of the magnitudes.
const BINS: usize = 2048;

/// The histogram spans at least this many standard deviations, so that a pair equal up to
/// floating-point rounding (all magnitudes ~1e-6) lands in one bin: one class, no change.
const MIN_HISTOGRAM_SPAN: f32 = 1.0;

/// The baseline's change mask for a pair of images on one grid.
pub fn standardised_cva(before: &Path, after: &Path) -> Result<Array2<bool>> {
    let (b, a) = read_pair(before, after)?;
    Ok(change_mask(b, a))
}

/// The baseline on pixels already read: standardise, magnitude, Otsu, 3×3 opening.
pub fn change_mask(mut before: Pixels, mut after: Pixels) -> Array2<bool> {
    standardise(&mut before.bands, &before.valid);
    standardise(&mut after.bands, &after.valid);
    let magnitude = cva_magnitude(&before.bands, &after.bands);
    let mut valid = before.valid;
    Zip::from(&mut valid).and(&after.valid).for_each(|v, &w| *v &= w);
    morphology::open(&otsu_mask(&magnitude, &valid), 1)
}

/// Every band to zero mean and unit standard deviation over the valid pixels. A constant band
/// (standard deviation 0) becomes all zeros: it carries no change.
pub fn standardise(bands: &mut Array3<f32>, valid: &Array2<bool>) {
    for mut band in bands.axis_iter_mut(Axis(0)) {
        let (mut n, mut sum, mut sum_sq) = (0u64, 0.0f64, 0.0f64);
        Zip::from(&band).and(valid).for_each(|&v, &ok| {
            if ok {
                n += 1;
                sum += f64::from(v);
                sum_sq += f64::from(v) * f64::from(v);
            }
        });
        let mean = if n > 0 { sum / n as f64 } else { 0.0 };
        let var = if n > 0 {
            (sum_sq / n as f64 - mean * mean).max(0.0)
        } else {
            0.0
        };
        let std = var.sqrt();
        band.mapv_inplace(|v| {
            if std > 0.0 {
                ((f64::from(v) - mean) / std) as f32
            } else {
                0.0
            }
        });
    }
}

/// Per pixel, the length of the change vector `after − before` over the bands.
pub fn cva_magnitude(before: &Array3<f32>, after: &Array3<f32>) -> Array2<f32> {
    let diff = after - before;
    diff.mapv(|d| d * d).sum_axis(Axis(0)).mapv(f32::sqrt)
}

/// Otsu's split of `magnitude` over the valid pixels: `true` = changed.
pub fn otsu_mask(magnitude: &Array2<f32>, valid: &Array2<bool>) -> Array2<bool> {
    let max = Zip::from(magnitude)
        .and(valid)
        .fold(0.0f32, |m, &v, &ok| if ok && v.is_finite() { m.max(v) } else { m });
    let mut hist = Histogram::new(BINS, max.max(MIN_HISTOGRAM_SPAN) * 1.0001);
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

/// Every band of both dates over the whole image.
fn read_pair(before: &Path, after: &Path) -> Result<(Pixels, Pixels)> {
    let (bds, ads) = (raster::open(before)?, raster::open(after)?);
    let (bi, ai) = (raster::describe(&bds, before)?, raster::describe(&ads, after)?);
    if (bi.width, bi.height, bi.band_count) != (ai.width, ai.height, ai.band_count) {
        return Err(Error::input(
            after,
            format!(
                "is {}x{} px with {} bands but {} is {}x{} with {}; the baseline needs both dates on one grid",
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
    let every_band: Vec<usize> = (1..=bi.band_count).collect();
    let win = Window::new(0, 0, bi.width, bi.height);
    Ok((
        raster::read_window(&bds, &bi, &every_band, win, 1.0)?,
        raster::read_window(&ads, &ai, &every_band, win, 1.0)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 48;
    /// The square that changes: rows, columns.
    const SQUARE: (std::ops::Range<usize>, std::ops::Range<usize>) = (16..28, 20..32);

    /// Three bands of fields: 8-px parcels of different levels (40..140) with a little in-field
    /// texture, different per band.
    fn texture() -> Array3<f32> {
        Array3::from_shape_fn((3, N, N), |(b, y, x)| {
            let parcel = ((x / 8) * 5 + (y / 8) * 3 + b) % 6;
            let grain = (x * 31 + y * 17 + b * 7) % 7;
            40.0 + 20.0 * parcel as f32 + grain as f32
        })
    }

    fn pixels(bands: Array3<f32>) -> Pixels {
        let valid = Array2::from_elem((N, N), true);
        Pixels { bands, valid }
    }

    fn in_square(y: usize, x: usize) -> bool {
        SQUARE.0.contains(&y) && SQUARE.1.contains(&x)
    }

    #[test]
    fn one_changed_square_is_exactly_what_is_found() {
        let before = texture();
        let mut after = before.clone();
        for b in 0..3 {
            for y in SQUARE.0 {
                for x in SQUARE.1 {
                    after[(b, y, x)] = [250.0, 5.0, 250.0][b];
                }
            }
        }
        let mask = change_mask(pixels(before), pixels(after));
        let expected = Array2::from_shape_fn((N, N), |(y, x)| in_square(y, x));
        assert_eq!(mask, expected);
    }

    #[test]
    fn a_gain_and_offset_per_band_is_no_change() {
        let before = texture();
        let (gain, offset) = ([1.7f32, 0.6, 2.3], [-30.0f32, 12.0, 55.0]);
        let mut after = before.clone();
        for (b, mut band) in after.axis_iter_mut(Axis(0)).enumerate() {
            band.mapv_inplace(|v| gain[b] * v + offset[b]);
        }
        // Without standardisation whole parcels would be change: that is what it buys.
        let valid = Array2::from_elem((N, N), true);
        let raw = morphology::open(&otsu_mask(&cva_magnitude(&before, &after), &valid), 1);
        assert!(raw.iter().filter(|&&c| c).count() > 100);
        let mask = change_mask(pixels(before), pixels(after));
        assert!(
            mask.iter().all(|&c| !c),
            "{} px flagged",
            mask.iter().filter(|&&c| c).count()
        );
    }

    #[test]
    fn nodata_does_not_shift_the_statistics() {
        let mut bands = Array3::from_shape_fn((1, 4, 4), |(_, y, _)| y as f32);
        let mut valid = Array2::from_elem((4, 4), true);
        bands[(0, 0, 0)] = -9999.0;
        valid[(0, 0)] = false;
        let mut with_nodata = bands.clone();
        standardise(&mut with_nodata, &valid);
        // Mean and std from the 15 valid pixels alone (0 ×3, 1 ×4, 2 ×4, 3 ×4), not the -9999.
        let (n, sum, sum_sq) = (15.0f32, 24.0f32, 56.0f32);
        let (mean, std) = (sum / n, (sum_sq / n - (sum / n) * (sum / n)).sqrt());
        assert!((with_nodata[(0, 3, 1)] - (3.0 - mean) / std).abs() < 1e-5);
        assert!((with_nodata[(0, 0, 1)] - (0.0 - mean) / std).abs() < 1e-5);
    }

    #[test]
    fn a_constant_band_standardises_to_zero() {
        let mut bands = Array3::from_elem((1, 3, 3), 7.0f32);
        standardise(&mut bands, &Array2::from_elem((3, 3), true));
        assert!(bands.iter().all(|&v| v == 0.0));
    }

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
