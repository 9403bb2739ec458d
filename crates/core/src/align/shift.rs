//! Residual shift between the two dates after warping, estimated by phase correlation with
//! sub-pixel refinement, and corrected by bilinear resampling.
//!
//! Orbit/ortho errors of 2–3 m products leave shifts of a fraction of a pixel to a few pixels
//! after warping; uncorrected, every field edge becomes a stripe of false change.

use crate::types::layout::{plane_of, row_major};
use ndarray::{s, Array2, Array3};
use rustfft::num_complex::Complex32;
use rustfft::FftPlanner;

/// A shift estimate: `after(x, y) ≈ before(x − dx, y − dy)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Shift {
    /// Columns the after image is displaced by from the before image (positive: to the right).
    pub dx: f64,
    /// Rows the after image is displaced by from the before image (positive: down).
    pub dy: f64,
    /// Height of the correlation peak in 0..1 (1 = perfect match); low values are unreliable.
    pub peak: f64,
    /// Windows whose trusted correlation peak the estimate rests on.
    pub windows_used: usize,
    /// Calibration windows left out for having too few pixels valid on both dates
    /// (nodata, NaN, outside the after image).
    pub windows_skipped: usize,
    /// Windows taken from valid parts of the image in place of skipped ones.
    pub windows_added: usize,
}

/// Phase correlation of two equally sized single-band images.
pub fn phase_correlation(before: &Array2<f32>, after: &Array2<f32>) -> Shift {
    let (h, w) = before.dim();
    let fa = fft2(&windowed(after), false);
    let fb = fft2(&windowed(before), false);
    let mut cross: Vec<Complex32> = fa
        .iter()
        .zip(&fb)
        .map(|(a, b)| {
            let c = a * b.conj();
            let n = c.norm();
            if n > 1e-12 {
                c / n
            } else {
                Complex32::new(0.0, 0.0)
            }
        })
        .collect();
    cross = fft2_vec(cross, h, w, true);
    let corr: Vec<f32> = cross.iter().map(|c| c.re / (h * w) as f32).collect();
    let (mut best, mut bi) = (f32::NEG_INFINITY, 0);
    for (i, &v) in corr.iter().enumerate() {
        if v > best {
            best = v;
            bi = i;
        }
    }
    let (py, px) = (bi / w, bi % w);
    let at = |y: isize, x: isize| -> f32 {
        let yy = y.rem_euclid(h as isize) as usize;
        let xx = x.rem_euclid(w as isize) as usize;
        corr[yy * w + xx]
    };
    let (py_i, px_i) = (py as isize, px as isize);
    let sub_x = subpixel(at(py_i, px_i - 1), best, at(py_i, px_i + 1));
    let sub_y = subpixel(at(py_i - 1, px_i), best, at(py_i + 1, px_i));
    let wrap = |p: usize, n: usize| {
        if p > n / 2 {
            p as f64 - n as f64
        } else {
            p as f64
        }
    };
    Shift {
        dx: wrap(px, w) + sub_x,
        dy: wrap(py, h) + sub_y,
        peak: best as f64,
        windows_used: 1,
        ..Default::default()
    }
}

/// Foroosh et al. (2002) sub-pixel estimate from a correlation peak and its two neighbours.
fn subpixel(left: f32, centre: f32, right: f32) -> f64 {
    if centre <= 0.0 {
        return 0.0;
    }
    let d = if right >= left {
        right / (right + centre)
    } else {
        -left / (left + centre)
    };
    (d as f64).clamp(-0.5, 0.5)
}

/// Mean-removed image times a Hann window, so the image borders do not dominate the spectrum.
fn windowed(img: &Array2<f32>) -> Array2<f32> {
    let (h, w) = img.dim();
    // `None` only for an empty image, which has no pixel for the mean to be taken from.
    let mean = img.mean().unwrap_or(0.0);
    let hann = |i: usize, n: usize| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / (n.max(2) - 1) as f32).cos();
    Array2::from_shape_fn((h, w), |(y, x)| (img[(y, x)] - mean) * hann(y, h) * hann(x, w))
}

fn fft2(img: &Array2<f32>, inverse: bool) -> Vec<Complex32> {
    let (h, w) = img.dim();
    let data = img.iter().map(|&v| Complex32::new(v, 0.0)).collect();
    fft2_vec(data, h, w, inverse)
}

fn fft2_vec(mut data: Vec<Complex32>, h: usize, w: usize, inverse: bool) -> Vec<Complex32> {
    let mut planner = FftPlanner::<f32>::new();
    let (row_fft, col_fft) = if inverse {
        (planner.plan_fft_inverse(w), planner.plan_fft_inverse(h))
    } else {
        (planner.plan_fft_forward(w), planner.plan_fft_forward(h))
    };
    for row in data.chunks_mut(w) {
        row_fft.process(row);
    }
    let mut col = vec![Complex32::new(0.0, 0.0); h];
    for x in 0..w {
        for y in 0..h {
            col[y] = data[y * w + x];
        }
        col_fft.process(&mut col);
        for y in 0..h {
            data[y * w + x] = col[y];
        }
    }
    data
}

/// Resamples `after` so it lines up with the before image: output pixel `(x, y)` takes the value
/// at `(x + dx, y + dy)` (bilinear). Pixels whose source falls outside become invalid.
pub fn apply_shift(after: &Array3<f32>, valid: &Array2<bool>, dx: f64, dy: f64) -> (Array3<f32>, Array2<bool>) {
    shift_cropped(after, valid, dx, dy, 0)
}

/// [`apply_shift`] with `crop` pixels left off each side of the output, written straight into
/// the smaller array (the after window is read with a margin for the shift; this drops it).
pub fn shift_cropped(
    after: &Array3<f32>,
    valid: &Array2<bool>,
    dx: f64,
    dy: f64,
    crop: usize,
) -> (Array3<f32>, Array2<bool>) {
    let (c, h, w) = after.dim();
    let (oh, ow) = (h.saturating_sub(2 * crop), w.saturating_sub(2 * crop));
    if dx == 0.0 && dy == 0.0 {
        let inner = s![.., crop..crop + oh, crop..crop + ow];
        return (
            after.slice(inner).to_owned(),
            valid.slice(s![crop..crop + oh, crop..crop + ow]).to_owned(),
        );
    }
    let src = after.as_standard_layout();
    let src = row_major(&src);
    let vstd = valid.as_standard_layout();
    let vs = row_major(&vstd);
    let (plane, out_plane) = (h * w, oh * ow);
    // The shift is the same for every pixel, so the integer part and the weights are too.
    let (ix, iy) = (dx.floor() as isize, dy.floor() as isize);
    let (fx, fy) = ((dx - dx.floor()) as f32, (dy - dy.floor()) as f32);
    let weights = [(1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy];
    // Input columns whose four taps lie inside the array, then the output columns they give.
    let (xa, xb) = ((-ix).max(0) as usize, ((w as isize - 1 - ix).max(0) as usize).min(w));
    let (xa, xb) = (xa.max(crop) - crop, (xb.max(crop) - crop).min(ow));
    let n = xb.saturating_sub(xa);
    // Per output row: the input offset of its top-left tap, when the row has taps inside.
    let tap_of = |y: usize| {
        let y0 = (y + crop) as isize + iy;
        (y0 >= 0 && y0 + 1 < h as isize && n > 0).then(|| (y0 * w as isize + (xa + crop) as isize + ix) as usize)
    };
    let mut ok = vec![false; out_plane];
    for y in 0..oh {
        if let Some(p00) = tap_of(y) {
            let (top, bottom) = (&vs[p00..p00 + n + 1], &vs[p00 + w..p00 + w + n + 1]);
            for (j, ok) in ok[y * ow + xa..y * ow + xb].iter_mut().enumerate() {
                *ok = top[j] & top[j + 1] & bottom[j] & bottom[j + 1];
            }
        }
    }
    // Band by band and row by row, appended (no zeroing pass first), in the same order of
    // operations per pixel as a sum over the four taps, so the loop vectorises and the values
    // do not change.
    let mut out = Vec::with_capacity(c * out_plane);
    for k in 0..c {
        let s = &src[k * plane..(k + 1) * plane];
        for y in 0..oh {
            let Some(p00) = tap_of(y) else {
                out.extend(std::iter::repeat_n(0.0f32, ow));
                continue;
            };
            let (t, b) = (&s[p00..p00 + n + 1], &s[p00 + w..p00 + w + n + 1]);
            let okr = &ok[y * ow + xa..y * ow + xb];
            out.extend(std::iter::repeat_n(0.0f32, xa));
            out.extend(t[..n].iter().zip(&t[1..]).zip(b[..n].iter().zip(&b[1..])).zip(okr).map(
                |(((&t0, &t1), (&b0, &b1)), &ok)| {
                    let v = t0 * weights[0] + t1 * weights[1] + b0 * weights[2] + b1 * weights[3];
                    if ok {
                        v
                    } else {
                        0.0
                    }
                },
            ));
            out.extend(std::iter::repeat_n(0.0f32, ow - xb));
        }
    }
    let bands = Array3::from_shape_vec((c, oh, ow), out).expect("one value per band and output pixel");
    (bands, plane_of((oh, ow), ok))
}

/// Combines per-window estimates: the median of the windows whose peak is trustworthy (all
/// zero, with no window used, when none is).
pub fn combine(estimates: &[Shift], min_peak: f64) -> Shift {
    let good: Vec<&Shift> = estimates.iter().filter(|s| s.peak >= min_peak).collect();
    if good.is_empty() {
        return Shift::default();
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Shift {
        dx: median(good.iter().map(|s| s.dx).collect()),
        dy: median(good.iter().map(|s| s.dy).collect()),
        peak: median(good.iter().map(|s| s.peak).collect()),
        windows_used: good.len(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broadband random texture (like real ground) sampled bilinearly at an offset, so
    /// sub-pixel shifts are exact: `scene(.., ox, oy)(x, y) = texture(x − ox, y − oy)`.
    fn scene(h: usize, w: usize, ox: f64, oy: f64) -> Array2<f32> {
        let n = 160usize;
        let mut state = 12345u64;
        let tex: Vec<f32> = (0..n * n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect();
        let at = |x: usize, y: usize| tex[(y % n) * n + (x % n)];
        Array2::from_shape_fn((h, w), |(y, x)| {
            let (sx, sy) = (x as f64 - ox + 16.0, y as f64 - oy + 16.0);
            let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
            let (fx, fy) = ((sx - sx.floor()) as f32, (sy - sy.floor()) as f32);
            let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
            let bot = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
            top * (1.0 - fy) + bot * fy
        })
    }

    #[test]
    fn recovers_integer_and_subpixel_shifts() {
        for &(sx, sy) in &[(3.0, -2.0), (0.4, 0.7), (-1.3, 0.25)] {
            let before = scene(128, 128, 0.0, 0.0);
            let after = scene(128, 128, sx, sy);
            let s = phase_correlation(&before, &after);
            assert!(
                (s.dx - sx).abs() < 0.2 && (s.dy - sy).abs() < 0.2,
                "want ({sx},{sy}) got {s:?}"
            );
        }
    }

    #[test]
    fn applying_the_estimate_aligns_the_images() {
        // A smooth scene: bilinear resampling of it is accurate to well under its range.
        let smooth = |ox: f64, oy: f64| {
            Array2::from_shape_fn((64, 64), |(y, x)| {
                let (x, y) = (x as f64 - ox, y as f64 - oy);
                ((x * 0.21).sin() * (y * 0.17).cos() + (x * 0.07 + y * 0.11).sin()) as f32
            })
        };
        let before = smooth(0.0, 0.0);
        let after = smooth(1.5, -0.5);
        let a3 = after.clone().insert_axis(ndarray::Axis(0));
        let (aligned, ok) = apply_shift(&a3, &Array2::from_elem((64, 64), true), 1.5, -0.5);
        let mut err = 0.0f32;
        let mut n = 0;
        for y in 4..60 {
            for x in 4..60 {
                if ok[(y, x)] {
                    err += (aligned[(0, y, x)] - before[(y, x)]).abs();
                    n += 1;
                }
            }
        }
        assert!(n > 2500 && err / (n as f32) < 0.05, "mean error {}", err / n as f32);
    }

    #[test]
    fn a_cropped_shift_is_the_shift_cropped() {
        let a = Array3::from_shape_fn((2, 23, 31), |(k, y, x)| ((k * 7 + y * 31 + x * 3) % 17) as f32 * 0.1);
        let mut valid = Array2::from_elem((23, 31), true);
        valid[(9, 12)] = false;
        for &(dx, dy, crop) in &[
            (1.5, -0.5, 3),
            (-2.25, 1.75, 4),
            (0.0, 0.0, 2),
            (0.3, 0.0, 0),
            (2.5, 2.5, 3),
        ] {
            let (full, ok) = apply_shift(&a, &valid, dx, dy);
            let (cut, cut_ok) = shift_cropped(&a, &valid, dx, dy, crop);
            let (h, w) = (23 - 2 * crop, 31 - 2 * crop);
            assert_eq!(
                cut,
                full.slice(s![.., crop..crop + h, crop..crop + w]),
                "({dx}, {dy}) crop {crop}"
            );
            assert_eq!(
                cut_ok,
                ok.slice(s![crop..crop + h, crop..crop + w]),
                "({dx}, {dy}) crop {crop}"
            );
        }
    }

    /// The shifted value at one output pixel, written out tap by tap: the four bilinear taps
    /// (in the order the kernel sums them), or 0 with `false` when a tap is outside or invalid.
    fn bilinear_at(
        a: &Array3<f32>,
        valid: &Array2<bool>,
        k: usize,
        y: usize,
        x: usize,
        dx: f64,
        dy: f64,
    ) -> (f32, bool) {
        let (_, h, w) = a.dim();
        let (x0, y0) = (x as isize + dx.floor() as isize, y as isize + dy.floor() as isize);
        if x0 < 0 || y0 < 0 || x0 + 1 >= w as isize || y0 + 1 >= h as isize {
            return (0.0, false);
        }
        let (x0, y0) = (x0 as usize, y0 as usize);
        let taps = [(y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)];
        if !taps.iter().all(|&t| valid[t]) {
            return (0.0, false);
        }
        let (fx, fy) = ((dx - dx.floor()) as f32, (dy - dy.floor()) as f32);
        let wts = [(1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy];
        let v = a[(k, taps[0].0, taps[0].1)] * wts[0]
            + a[(k, taps[1].0, taps[1].1)] * wts[1]
            + a[(k, taps[2].0, taps[2].1)] * wts[2]
            + a[(k, taps[3].0, taps[3].1)] * wts[3];
        (v, true)
    }

    #[test]
    fn the_shift_is_bilinear_at_every_pixel_and_zero_without_its_taps() {
        let a = Array3::from_shape_fn((3, 19, 26), |(k, y, x)| ((k * 5 + y * 13 + x * 7) % 23) as f32 * 0.037);
        let mut valid = Array2::from_elem((19, 26), true);
        valid[(7, 11)] = false;
        valid[(0, 3)] = false;
        for &(dx, dy) in &[(1.5, -0.5), (-2.25, 1.75), (0.3, 0.0), (-0.6, -3.2), (30.0, 0.5)] {
            let (out, ok) = apply_shift(&a, &valid, dx, dy);
            for ((k, y, x), &v) in out.indexed_iter() {
                let (want, want_ok) = bilinear_at(&a, &valid, k, y, x, dx, dy);
                assert_eq!(v.to_bits(), want.to_bits(), "({dx}, {dy}) at {k},{y},{x}");
                assert_eq!(ok[(y, x)], want_ok, "({dx}, {dy}) at {y},{x}");
            }
        }
    }

    #[test]
    fn combine_ignores_weak_peaks() {
        let s = combine(
            &[
                Shift {
                    dx: 1.0,
                    dy: 0.5,
                    peak: 0.5,
                    ..Default::default()
                },
                Shift {
                    dx: 1.2,
                    dy: 0.4,
                    peak: 0.4,
                    ..Default::default()
                },
                Shift {
                    dx: 9.0,
                    dy: 9.0,
                    peak: 0.01,
                    ..Default::default()
                },
            ],
            0.05,
        );
        assert!(s.dx < 1.3 && s.dy < 0.6);
        assert_eq!(combine(&[], 0.1).dx, 0.0);
    }
}
