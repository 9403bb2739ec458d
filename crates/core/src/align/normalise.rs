//! Relative radiometric normalisation of the after image to the before image.
//!
//! Different sun angle, season, atmosphere and sensor gain make the same ground look different.
//! A linear map per band (`before ≈ gain · after + offset`) is fitted by robust regression on
//! pseudo-invariant pixels: starting from all pixels, each round keeps the fraction that changed
//! least under the current fit and refits on them, so real changes and crop cycles stop pulling
//! the line.
//!
//! The fit is a reduced-major-axis line (gain = ratio of standard deviations), not ordinary
//! least squares: OLS of before on after shrinks the gain towards 0 whenever the two dates
//! correlate imperfectly (regression dilution), which flattens the after image and hides real
//! change. When even the invariant pixels correlate poorly (r below the model's
//! `detect.normalise_min_correlation`), the dates are too different for a linear map to be
//! trusted and the identity is kept.

use ndarray::Array1;
use serde::Serialize;

/// The fitted per-band map, in canonical band order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Normalisation {
    pub gain: Vec<f32>,
    pub offset: Vec<f32>,
    /// Pixels used in the final fit.
    pub invariant_pixels: usize,
}

impl Normalisation {
    pub fn identity(bands: usize) -> Self {
        Self {
            gain: vec![1.0; bands],
            offset: vec![0.0; bands],
            invariant_pixels: 0,
        }
    }

    /// Applies the map to one after-date value of band `k`.
    #[inline]
    pub fn apply(&self, k: usize, v: f32) -> f32 {
        self.gain[k] * v + self.offset[k]
    }
}

/// Paired samples: `before[k][i]` and `after[k][i]` are band `k` of sample pixel `i`.
pub struct Samples {
    pub before: Vec<Vec<f32>>,
    pub after: Vec<Vec<f32>>,
}

impl Samples {
    pub fn new(bands: usize) -> Self {
        Self {
            before: vec![Vec::new(); bands],
            after: vec![Vec::new(); bands],
        }
    }

    pub fn push(&mut self, before: &[f32], after: &[f32]) {
        for k in 0..self.before.len() {
            self.before[k].push(before[k]);
            self.after[k].push(after[k]);
        }
    }

    pub fn len(&self) -> usize {
        self.before.first().map_or(0, Vec::len)
    }
}

/// Fits the normalisation, keeping `keep` (0..1) of the pixels each round for `rounds` rounds;
/// the identity when the kept pixels' mean correlation ends below `min_correlation`.
pub fn fit(samples: &Samples, keep: f32, rounds: usize, min_correlation: f64) -> Normalisation {
    let bands = samples.before.len();
    let n = samples.len();
    if n < 16 {
        return Normalisation::identity(bands);
    }
    let mut norm = moment_match(samples);
    let mut chosen: Vec<usize> = (0..n).collect();
    let mut r = 1.0;
    for _ in 0..rounds {
        chosen = least_changed(samples, &norm, keep);
        (norm, r) = reduced_major_axis(samples, &chosen, &norm);
    }
    if r < min_correlation {
        tracing::warn!(
            correlation = r,
            "the dates correlate too weakly for radiometric normalisation; skipped"
        );
        return Normalisation::identity(bands);
    }
    norm.invariant_pixels = chosen.len();
    norm
}

/// Starting point: match each band's mean and standard deviation.
fn moment_match(s: &Samples) -> Normalisation {
    let bands = s.before.len();
    let mut out = Normalisation::identity(bands);
    for k in 0..bands {
        let (mb, sb) = mean_std(&s.before[k]);
        let (ma, sa) = mean_std(&s.after[k]);
        let g = if sa > 1e-9 { sb / sa } else { 1.0 };
        out.gain[k] = g;
        out.offset[k] = mb - g * ma;
    }
    out
}

fn mean_std(v: &[f32]) -> (f32, f32) {
    let a = Array1::from_vec(v.to_vec());
    let m = a
        .mean()
        .expect("fit() moment-matches only samples of at least 16 pixels");
    (m, a.std(0.0))
}

/// Indices of the `keep` fraction of samples with the smallest residual under `norm`.
fn least_changed(s: &Samples, norm: &Normalisation, keep: f32) -> Vec<usize> {
    let n = s.len();
    let mut resid: Vec<(f32, usize)> = (0..n)
        .map(|i| {
            let d: f32 = (0..s.before.len())
                .map(|k| {
                    let e = s.before[k][i] - norm.apply(k, s.after[k][i]);
                    e * e
                })
                .sum();
            (d, i)
        })
        .collect();
    let m = ((n as f32 * keep) as usize).clamp(16.min(n), n);
    resid.select_nth_unstable_by(m - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut idx: Vec<usize> = resid[..m].iter().map(|r| r.1).collect();
    idx.sort_unstable();
    idx
}

/// Reduced-major-axis fit of before against after for each band over the chosen samples;
/// also returns the mean correlation over the bands.
fn reduced_major_axis(s: &Samples, idx: &[usize], fallback: &Normalisation) -> (Normalisation, f64) {
    let bands = s.before.len();
    let mut out = fallback.clone();
    let mut r_sum = 0.0;
    for k in 0..bands {
        let n = idx.len() as f64;
        let (mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
        for &i in idx {
            let (x, y) = (s.after[k][i] as f64, s.before[k][i] as f64);
            sx += x;
            sy += y;
            sxx += x * x;
            syy += y * y;
            sxy += x * y;
        }
        let (vx, vy, cxy) = (sxx - sx * sx / n, syy - sy * sy / n, sxy - sx * sy / n);
        if vx > 1e-12 && vy > 1e-12 {
            r_sum += cxy / (vx * vy).sqrt();
            let g = (vy / vx).sqrt();
            if g.is_finite() && g > 0.2 && g < 5.0 && cxy > 0.0 {
                out.gain[k] = g as f32;
                out.offset[k] = ((sy - g * sx) / n) as f32;
            }
        } else {
            r_sum += 1.0;
        }
    }
    (out, r_sum / bands.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_gain_and_offset_despite_changed_pixels() {
        let mut s = Samples::new(2);
        for i in 0..2000 {
            let b = [
                0.05 + 0.3 * ((i * 37 % 101) as f32 / 101.0),
                0.1 + 0.2 * ((i * 53 % 97) as f32 / 97.0),
            ];
            let mut a = [(b[0] - 0.02) / 1.25, (b[1] + 0.01) / 0.8];
            if i % 5 == 0 {
                a = [0.8, 0.02]; // 20 % real change
            }
            s.push(&b, &a);
        }
        let n = fit(&s, 0.5, 4, 0.8);
        assert!((n.gain[0] - 1.25).abs() < 0.02, "{n:?}");
        assert!((n.offset[0] - 0.02).abs() < 0.01, "{n:?}");
        assert!((n.gain[1] - 0.8).abs() < 0.02, "{n:?}");
        assert!((n.offset[1] + 0.01).abs() < 0.01, "{n:?}");
        assert!(n.invariant_pixels > 500);
    }

    /// Dates that are unrelated pixel by pixel but have the same spread: least squares would
    /// shrink the gain towards 0 (regression dilution) and flatten the after image; the
    /// reduced-major-axis fit keeps it near 1.
    #[test]
    fn unrelated_dates_are_not_flattened() {
        let mut s = Samples::new(1);
        for i in 0..2000u32 {
            let b = (i.wrapping_mul(2654435761) % 1000) as f32 / 1000.0;
            let a = (i.wrapping_mul(40503) % 997) as f32 / 997.0;
            s.push(&[b], &[a]);
        }
        let n = fit(&s, 0.4, 4, 0.8);
        assert!((n.gain[0] - 1.0).abs() < 0.1 && n.offset[0].abs() < 0.05, "{n:?}");
    }

    #[test]
    fn too_few_samples_give_identity() {
        let mut s = Samples::new(3);
        s.push(&[0.1, 0.2, 0.3], &[0.2, 0.3, 0.4]);
        assert_eq!(fit(&s, 0.5, 3, 0.8), Normalisation::identity(3));
    }
}
