//! Per-pixel features of the learned model, from one block of the pair read with a halo.
//!
//! Every band of each date is standardised with that image's own mean and standard deviation
//! (valid pixels; [`ImageStats`]), so DN, reflectance × 10000 and 8-bit deliveries give the
//! same features. Per pixel: the standardised bands of both dates, their differences, the
//! change-vector magnitude, brightness and greenness of each date (NDVI with NIR, the
//! green–red index without), the rules model's evidence relative to its threshold; then, at
//! each radius of [`RADII`], local means and standard deviations of those planes over the
//! observed pixels of a square window.
//!
//! Window sums come from integral images of values quantised to 1/[`QUANT`] in integers:
//! integer sums are exact, so a pixel's features do not depend on where its block starts —
//! the features, and the model's decisions, are seamless across blocks.

use ndarray::{Array2, Array3};
use serde::{Deserialize, Serialize};

/// Radii (px) of the local statistics; a model uses those up to its
/// [`FeatureSpec::max_radius`].
pub const RADII: [usize; 5] = [1, 3, 7, 15, 31];
/// The largest radius of [`RADII`]: the default of [`FeatureSpec::max_radius`] (model files
/// written before the radius was chosen per model have it).
pub const MAX_RADIUS: usize = 31;
/// Quantisation step of the window sums: 1/256 of a standard deviation.
const QUANT: f64 = 256.0;
/// Values are clamped to ±this many units before quantising (a window sum stays in i64).
const CLAMP: f32 = 1.0e4;
/// Local statistics per radius (see [`FeatureSpec::names`]).
const PER_RADIUS: usize = 9;

/// The [`PER_RADIUS`] features of one window radius, in feature-row order, from the window's
/// mean and standard deviation of the per-pixel sums: one home for the order, shared by the
/// feature rows and the tests' reference (`FeatureSpec::names` lists the same order).
fn radius_features(mean: impl Fn(Sums) -> f32, std: impl Fn(Sums, Sums) -> f32) -> [f32; PER_RADIUS] {
    [
        mean(Sums::Cva),
        std(Sums::Cva, Sums::CvaSq),
        mean(Sums::BrightDiff),
        std(Sums::BrightBefore, Sums::BrightBeforeSq),
        std(Sums::BrightAfter, Sums::BrightAfterSq),
        mean(Sums::GreenDiff),
        std(Sums::GreenBefore, Sums::GreenBeforeSq),
        std(Sums::GreenAfter, Sums::GreenAfterSq),
        mean(Sums::Evidence),
    ]
}

/// Which bands the features use: B, G, R of the canonical order, and NIR when `nir`; and the
/// radii of the local statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Whether the near-infrared band is used (the model then needs it).
    pub nir: bool,
    /// The largest radius of [`RADII`] whose local statistics are features (absent in a model
    /// file: [`MAX_RADIUS`]; not written when it is that, so such files keep their bytes).
    #[serde(default = "max_radius_default", skip_serializing_if = "is_max_radius_default")]
    pub max_radius: usize,
}

fn max_radius_default() -> usize {
    MAX_RADIUS
}

fn is_max_radius_default(r: &usize) -> bool {
    *r == MAX_RADIUS
}

impl FeatureSpec {
    /// Every radius of [`RADII`], with NIR features when `nir`.
    pub fn new(nir: bool) -> Self {
        Self {
            nir,
            max_radius: MAX_RADIUS,
        }
    }

    /// The same bands with local statistics up to `max_radius` only.
    pub fn up_to_radius(self, max_radius: usize) -> Self {
        Self { max_radius, ..self }
    }

    /// The radii of the local statistics.
    pub fn radii(&self) -> impl Iterator<Item = usize> + '_ {
        RADII.into_iter().filter(move |&r| r <= self.max_radius)
    }

    /// Features per pixel before the local statistics.
    pub fn pixel_count(&self) -> usize {
        3 * self.bands() + 7
    }

    /// Whether `max_radius` is one of [`RADII`] (a model file may say otherwise).
    pub fn is_valid(&self) -> bool {
        RADII.contains(&self.max_radius)
    }

    /// Bands read from the canonical `[B, G, R, NIR]` order.
    pub fn bands(&self) -> usize {
        3 + usize::from(self.nir)
    }

    /// Features per pixel.
    pub fn count(&self) -> usize {
        self.names().len()
    }

    /// The feature names, in the order of a feature row.
    pub fn names(&self) -> Vec<String> {
        let band_names = ["b", "g", "r", "nir"];
        let bands = &band_names[..self.bands()];
        let mut n: Vec<String> = Vec::new();
        for date in ["before", "after", "diff"] {
            n.extend(bands.iter().map(|b| format!("{date}_{b}")));
        }
        for s in [
            "cva",
            "bright_before",
            "bright_after",
            "green_before",
            "green_after",
            "green_diff",
            "evidence_rel",
        ] {
            n.push(s.into());
        }
        for r in self.radii() {
            for s in [
                "cva_mean",
                "cva_std",
                "bright_diff_mean",
                "bright_before_std",
                "bright_after_std",
                "green_diff_mean",
                "green_before_std",
                "green_after_std",
                "evidence_rel_mean",
            ] {
                n.push(format!("{s}_r{r}"));
            }
        }
        n
    }

    /// The halo a block needs for the features of its inner pixels.
    pub fn halo(&self) -> usize {
        self.radii().last().unwrap_or(0)
    }
}

/// Mean and standard deviation per band of each image (the canonical bands the spec uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageStats {
    /// `(mean, standard deviation)` per band of the before image.
    pub before: Vec<(f64, f64)>,
    /// The same for the after image.
    pub after: Vec<(f64, f64)>,
}

/// Running sums for [`ImageStats`], over the pixels `valid` marks.
#[derive(Debug, Clone, Default)]
pub struct StatsSums {
    before: Vec<(f64, f64, u64)>,
    after: Vec<(f64, f64, u64)>,
}

impl StatsSums {
    /// Adds a window's valid pixels of both dates (`bands` canonical bands).
    pub fn add(&mut self, before: &Array3<f32>, after: &Array3<f32>, valid: &Array2<bool>, bands: usize) {
        add_image(&mut self.before, before, valid, bands);
        add_image(&mut self.after, after, valid, bands);
    }

    /// `None` when no pixel was valid.
    pub fn finish(&self) -> Option<ImageStats> {
        let done = |s: &[(f64, f64, u64)]| -> Option<Vec<(f64, f64)>> {
            s.iter()
                .map(|&(sum, sq, n)| {
                    (n > 0).then(|| {
                        let mean = sum / n as f64;
                        (mean, (sq / n as f64 - mean * mean).max(0.0).sqrt())
                    })
                })
                .collect()
        };
        let (b, a) = (done(&self.before)?, done(&self.after)?);
        (!b.is_empty()).then_some(ImageStats { before: b, after: a })
    }
}

fn add_image(sums: &mut Vec<(f64, f64, u64)>, img: &Array3<f32>, valid: &Array2<bool>, bands: usize) {
    sums.resize(bands, (0.0, 0.0, 0));
    for (k, s) in sums.iter_mut().enumerate() {
        let band = img.index_axis(ndarray::Axis(0), k);
        ndarray::Zip::from(&band).and(valid).for_each(|&v, &ok| {
            if ok && v.is_finite() {
                s.0 += f64::from(v);
                s.1 += f64::from(v) * f64::from(v);
                s.2 += 1;
            }
        });
    }
}

/// One block's inputs: both dates in the canonical band order (after aligned and normalised
/// onto before), the observed mask, the rules evidence and its threshold.
pub struct BlockInput<'a> {
    /// Before bands `(band, row, col)`, with the halo.
    pub before: &'a Array3<f32>,
    /// After bands, aligned and normalised onto the before image.
    pub after: &'a Array3<f32>,
    /// Pixels observed on both dates.
    pub observed: &'a Array2<bool>,
    /// The rules model's change evidence.
    pub evidence: &'a Array2<f32>,
    /// The rules model's threshold for this scene.
    pub threshold: f32,
}

/// The planes of a block and the integral images of their local statistics.
pub struct FeatureBlock {
    spec: FeatureSpec,
    w: usize,
    h: usize,
    /// Standardised bands, before then after (`2 · bands` planes, row-major).
    z: Vec<Vec<f32>>,
    /// cva, bright before/after, green before/after, evidence_rel (row-major).
    px: [Vec<f32>; 6],
    /// Integral images, `(h + 1) × (w + 1)`, the [`Sums`] of one position side by side (a
    /// window's four corners are four cache-line pairs, not 4 × 14 scattered reads).
    sums: Vec<[i64; SUMS]>,
}

/// The integral images kept per block.
#[derive(Clone, Copy)]
enum Sums {
    Count,
    Cva,
    CvaSq,
    BrightDiff,
    BrightBefore,
    BrightBeforeSq,
    BrightAfter,
    BrightAfterSq,
    GreenDiff,
    GreenBefore,
    GreenBeforeSq,
    GreenAfter,
    GreenAfterSq,
    Evidence,
}
const SUMS: usize = 14;
/// The sums of squares among [`Sums`].
const SQUARES: [Sums; 5] = [
    Sums::CvaSq,
    Sums::BrightBeforeSq,
    Sums::BrightAfterSq,
    Sums::GreenBeforeSq,
    Sums::GreenAfterSq,
];
/// Per [`Sums`], what undoes the quantisation: 1/QUANT, 1/QUANT² for squares. Both are
/// powers of two, so multiplying by them gives the same bits as dividing by QUANT (QUANT²).
const UNQUANT: [f64; SUMS] = {
    let mut u = [1.0 / QUANT; SUMS];
    let mut i = 0;
    while i < SQUARES.len() {
        u[SQUARES[i] as usize] = 1.0 / (QUANT * QUANT);
        i += 1;
    }
    u
};

impl FeatureBlock {
    /// Computes the block's planes and integral images.
    pub fn new(input: &BlockInput, spec: FeatureSpec, stats: &ImageStats) -> Self {
        let (_, h, w) = input.before.dim();
        let nb = spec.bands();
        let standardise = |img: &Array3<f32>, st: &[(f64, f64)]| -> Vec<Vec<f32>> {
            (0..nb)
                .map(|k| {
                    let (mean, std) = st[k];
                    let inv = if std > 0.0 { 1.0 / std } else { 0.0 };
                    img.index_axis(ndarray::Axis(0), k)
                        .iter()
                        .map(|&v| finite(((f64::from(v) - mean) * inv) as f32))
                        .collect()
                })
                .collect()
        };
        let zb = standardise(input.before, &stats.before);
        let za = standardise(input.after, &stats.after);
        let obs: Vec<bool> = input.observed.iter().copied().collect();
        let n = h * w;
        let mut px: [Vec<f32>; 6] = std::array::from_fn(|_| vec![0.0f32; n]);
        let (bb, ba) = (raw_bands(input.before, nb), raw_bands(input.after, nb));
        let ev: Vec<f32> = input.evidence.iter().copied().collect();
        let inv_t = if input.threshold > 0.0 {
            1.0 / input.threshold
        } else {
            0.0
        };
        for i in 0..n {
            if !obs[i] {
                continue;
            }
            let mut d2 = 0.0f32;
            let (mut sb, mut sa) = (0.0f32, 0.0f32);
            for k in 0..nb {
                let d = za[k][i] - zb[k][i];
                d2 += d * d;
                sb += zb[k][i];
                sa += za[k][i];
            }
            px[0][i] = d2.sqrt();
            px[1][i] = sb / nb as f32;
            px[2][i] = sa / nb as f32;
            px[3][i] = greenness(&bb, i, spec.nir);
            px[4][i] = greenness(&ba, i, spec.nir);
            px[5][i] = finite(ev[i] * inv_t);
        }
        let mut z = zb;
        z.extend(za);
        let sums = integrals(&px, &obs, w, h);
        Self {
            spec,
            w,
            h,
            z,
            px,
            sums,
        }
    }

    /// The feature row of pixel `(y, x)` of the block into `out` (`spec.count()` values). The
    /// windows are clipped to the block; the caller asks only for pixels at least
    /// [`FeatureSpec::halo`] inside it, where no window is clipped.
    pub fn row_at(&self, y: usize, x: usize, out: &mut Vec<f32>) {
        out.clear();
        let i = y * self.w + x;
        let nb = self.spec.bands();
        for k in 0..2 * nb {
            out.push(self.z[k][i]);
        }
        for k in 0..nb {
            out.push(self.z[nb + k][i] - self.z[k][i]);
        }
        let [cva, bb, ba, gb, ga, er] = &self.px;
        out.extend([cva[i], bb[i], ba[i], gb[i], ga[i], ga[i] - gb[i], er[i]]);
        for r in self.spec.radii() {
            let sums = self.window_sums(self.window(y, x, r));
            let count = sums[Sums::Count as usize] as f64;
            if count <= 0.0 {
                out.extend([0.0; PER_RADIUS]);
                continue;
            }
            // Every sum's mean over the window at once, so the divisions are vectorised.
            let m: [f64; SUMS] = std::array::from_fn(|k| sums[k] as f64 * UNQUANT[k] / count);
            let mean = |s: Sums| m[s as usize] as f32;
            let std = |s: Sums, sq: Sums| (m[sq as usize] - m[s as usize] * m[s as usize]).max(0.0).sqrt() as f32;
            out.extend(radius_features(mean, std));
        }
        debug_assert_eq!(out.len(), self.spec.count());
    }

    /// `[y0, y1) × [x0, x1)` of the window of radius `r`, clipped to the block.
    fn window(&self, y: usize, x: usize, r: usize) -> [usize; 4] {
        [
            y.saturating_sub(r),
            (y + r + 1).min(self.h),
            x.saturating_sub(r),
            (x + r + 1).min(self.w),
        ]
    }

    /// Every [`Sums`] over `[y0, y1) × [x0, x1)`: the four corners once, all sums side by side
    /// (one vector subtraction rather than a bounds-checked lookup per sum).
    fn window_sums(&self, [y0, y1, x0, x1]: [usize; 4]) -> [i64; SUMS] {
        let (t, w1) = (&self.sums, self.w + 1);
        let (a, b, c, d) = (&t[y1 * w1 + x1], &t[y0 * w1 + x1], &t[y1 * w1 + x0], &t[y0 * w1 + x0]);
        std::array::from_fn(|k| a[k] - b[k] - c[k] + d[k])
    }
}

fn finite(v: f32) -> f32 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

fn raw_bands(img: &Array3<f32>, nb: usize) -> Vec<Vec<f32>> {
    (0..nb)
        .map(|k| img.index_axis(ndarray::Axis(0), k).iter().copied().collect())
        .collect()
}

/// NDVI with NIR, else the green–red index `(G − R) / (G + R)` (bands B, G, R, NIR).
fn greenness(bands: &[Vec<f32>], i: usize, nir: bool) -> f32 {
    let (a, b) = if nir {
        (bands[3][i], bands[2][i])
    } else {
        (bands[1][i], bands[2][i])
    };
    let s = a + b;
    if s.abs() > 1e-6 {
        finite(((a - b) / s).clamp(-1.0, 1.0))
    } else {
        0.0
    }
}

/// `v` in units of 1/QUANT, truncated toward zero (exact and the same everywhere; the
/// truncation's bias is far below the features' noise).
#[inline]
fn quant(v: f32) -> i64 {
    (v.clamp(-CLAMP, CLAMP) * QUANT as f32) as i64
}

/// The integral images of [`Sums`] over the observed pixels.
fn integrals(px: &[Vec<f32>; 6], obs: &[bool], w: usize, h: usize) -> Vec<[i64; SUMS]> {
    let w1 = w + 1;
    let mut sums = vec![[0i64; SUMS]; (h + 1) * w1];
    for y in 0..h {
        let mut row = [0i64; SUMS];
        for x in 0..w {
            let i = y * w + x;
            if obs[i] {
                let q: [i64; 6] = std::array::from_fn(|k| quant(px[k][i]));
                let (cva, bb, ba, gb, ga, ev) = (q[0], q[1], q[2], q[3], q[4], q[5]);
                let add = [
                    1,
                    cva,
                    cva * cva,
                    ba - bb,
                    bb,
                    bb * bb,
                    ba,
                    ba * ba,
                    ga - gb,
                    gb,
                    gb * gb,
                    ga,
                    ga * ga,
                    ev,
                ];
                for (r, a) in row.iter_mut().zip(add) {
                    *r += a;
                }
            }
            let above = sums[y * w1 + x + 1];
            let here = &mut sums[(y + 1) * w1 + x + 1];
            for k in 0..SUMS {
                here[k] = above[k] + row[k];
            }
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::s;

    fn scene(h: usize, w: usize) -> (Array3<f32>, Array3<f32>, Array2<f32>) {
        let b = Array3::from_shape_fn((3, h, w), |(k, y, x)| {
            100.0 + ((x * 7 + y * 13 + k * 5) % 17) as f32 * 3.0
        });
        let mut a = b.clone();
        for k in 0..3 {
            for y in 20..30 {
                for x in 25..40 {
                    a[(k, y, x)] = 200.0 + k as f32;
                }
            }
        }
        let e = Array2::from_shape_fn((h, w), |(y, x)| ((x + y) % 5) as f32 * 0.01);
        (b, a, e)
    }

    fn stats_of(b: &Array3<f32>, a: &Array3<f32>) -> ImageStats {
        let mut s = StatsSums::default();
        s.add(b, a, &Array2::from_elem((b.dim().1, b.dim().2), true), 3);
        s.finish().unwrap()
    }

    #[test]
    fn a_pixels_features_do_not_depend_on_where_its_block_starts() {
        let (b, a, e) = scene(100, 110);
        let obs = Array2::from_elem((100, 110), true);
        let spec = FeatureSpec::new(false);
        let st = stats_of(&b, &a);
        let whole = FeatureBlock::new(
            &BlockInput {
                before: &b,
                after: &a,
                observed: &obs,
                evidence: &e,
                threshold: 0.05,
            },
            spec,
            &st,
        );
        // A block starting at (5, 9), still holding every window of pixel (50, 55).
        let (sb, sa, se, so) = (
            b.slice(s![.., 5.., 9..]).to_owned(),
            a.slice(s![.., 5.., 9..]).to_owned(),
            e.slice(s![5.., 9..]).to_owned(),
            obs.slice(s![5.., 9..]).to_owned(),
        );
        let part = FeatureBlock::new(
            &BlockInput {
                before: &sb,
                after: &sa,
                observed: &so,
                evidence: &se,
                threshold: 0.05,
            },
            spec,
            &st,
        );
        let (mut r1, mut r2) = (Vec::new(), Vec::new());
        whole.row_at(50, 55, &mut r1);
        part.row_at(50 - 5, 55 - 9, &mut r2);
        assert_eq!(r1.len(), spec.count());
        assert_eq!(r1, r2, "bit-identical features");
    }

    /// A radius's statistics as first written: each sum looked up and divided on its own.
    fn statistics_one_sum_at_a_time(fb: &FeatureBlock, y: usize, x: usize, r: usize) -> [f32; PER_RADIUS] {
        let sums = fb.window_sums(fb.window(y, x, r));
        let sum = |s: Sums| sums[s as usize];
        let count = sum(Sums::Count) as f64;
        let mean = |s: Sums| {
            if count > 0.0 {
                (sum(s) as f64 / QUANT / count) as f32
            } else {
                0.0
            }
        };
        let std = |s: Sums, sq: Sums| {
            if count > 0.0 {
                let m = sum(s) as f64 / QUANT / count;
                let m2 = sum(sq) as f64 / (QUANT * QUANT) / count;
                (m2 - m * m).max(0.0).sqrt() as f32
            } else {
                0.0
            }
        };
        radius_features(mean, std)
    }

    #[test]
    fn the_window_statistics_are_the_bits_of_one_division_per_sum() {
        // The row divides all of a window's sums at once and multiplies by 1/QUANT (1/QUANT²
        // for squares); the features, hence the model's decisions, must be the bits the
        // per-sum divisions gave, on every pixel of a noisy block with unobserved pixels.
        let noise = |k: usize, y: usize, x: usize| ((x * 7919 + y * 104_729 + k * 31) % 1013) as f32 * 0.37;
        let b = Array3::from_shape_fn((3, 100, 110), |(k, y, x)| 100.0 + noise(k, y, x));
        let a = Array3::from_shape_fn((3, 100, 110), |(k, y, x)| 90.0 + noise(k + 1, x, y));
        let e = Array2::from_shape_fn((100, 110), |(y, x)| noise(0, x, y) * 1e-4);
        let mut obs = Array2::from_elem((100, 110), true);
        for y in 40..70 {
            obs[(y, 30 + y % 7)] = false;
        }
        let fb = FeatureBlock::new(
            &BlockInput {
                before: &b,
                after: &a,
                observed: &obs,
                evidence: &e,
                threshold: 0.05,
            },
            FeatureSpec::new(false),
            &stats_of(&b, &a),
        );
        let mut row = Vec::new();
        let first = row_len_before_radii(3);
        let mut nonzero = 0;
        for (y, x) in (0..100).flat_map(|y| (0..110).map(move |x| (y, x))) {
            fb.row_at(y, x, &mut row);
            for (k, r) in RADII.into_iter().enumerate() {
                let got = &row[first + k * PER_RADIUS..first + (k + 1) * PER_RADIUS];
                let want = statistics_one_sum_at_a_time(&fb, y, x, r);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(got), bits(&want), "pixel ({y}, {x}) radius {r}");
                nonzero += want.iter().filter(|&&v| v != 0.0).count();
            }
        }
        assert!(nonzero > 100, "{nonzero} non-zero statistics: the test compares little");
    }

    /// Features before the per-radius statistics for `bands` bands.
    fn row_len_before_radii(bands: usize) -> usize {
        3 * bands + 7
    }

    #[test]
    fn a_gain_and_offset_of_one_date_leaves_the_features_unchanged() {
        let (b, a, e) = scene(48, 48);
        let obs = Array2::from_elem((48, 48), true);
        let spec = FeatureSpec::new(false);
        let scaled = a.mapv(|v| 2.5 * v + 40.0);
        let rows = |after: &Array3<f32>| {
            let st = stats_of(&b, after);
            let fb = FeatureBlock::new(
                &BlockInput {
                    before: &b,
                    after,
                    observed: &obs,
                    evidence: &e,
                    threshold: 0.05,
                },
                spec,
                &st,
            );
            let mut r = Vec::new();
            fb.row_at(24, 30, &mut r);
            r
        };
        let (r1, r2) = (rows(&a), rows(&scaled));
        // Standardised features agree to rounding; greenness is a ratio of raw values and is
        // not offset-invariant, so those (and their local statistics) are left out here.
        let names = spec.names();
        for (k, (x, y)) in r1.iter().zip(&r2).enumerate() {
            if names[k].contains("green") {
                continue;
            }
            assert!((x - y).abs() < 2e-2, "{}: {x} vs {y}", names[k]);
        }
    }

    #[test]
    fn unobserved_pixels_do_not_enter_the_local_statistics() {
        let (b, a, e) = scene(40, 40);
        let mut obs = Array2::from_elem((40, 40), true);
        let spec = FeatureSpec::new(false);
        let st = stats_of(&b, &a);
        let mut a2 = a.clone();
        // Garbage under a cloud must not leak into a neighbour's window statistics.
        for k in 0..3 {
            a2[(k, 10, 11)] = 1e6;
        }
        obs[(10, 11)] = false;
        let row = |after: &Array3<f32>, o: &Array2<bool>| {
            let fb = FeatureBlock::new(
                &BlockInput {
                    before: &b,
                    after,
                    observed: o,
                    evidence: &e,
                    threshold: 0.05,
                },
                spec,
                &st,
            );
            let mut r = Vec::new();
            fb.row_at(10, 10, &mut r);
            r
        };
        let mut obs_a = obs.clone();
        obs_a[(10, 11)] = false;
        assert_eq!(row(&a2, &obs), row(&a, &obs_a));
    }

    #[test]
    fn a_smaller_radius_gives_the_row_without_the_larger_windows_and_a_smaller_halo() {
        // Rows are sampled once with every radius; a model with a smaller radius is fitted on
        // their prefix, so the prefix must be what that model's rows are at detection.
        let (b, a, e) = scene(100, 110);
        let st = stats_of(&b, &a);
        let obs = Array2::from_elem((100, 110), true);
        let input = BlockInput {
            before: &b,
            after: &a,
            observed: &obs,
            evidence: &e,
            threshold: 0.05,
        };
        let (full, small) = (FeatureSpec::new(false), FeatureSpec::new(false).up_to_radius(15));
        let (mut r_full, mut r_small) = (Vec::new(), Vec::new());
        FeatureBlock::new(&input, full, &st).row_at(50, 55, &mut r_full);
        FeatureBlock::new(&input, small, &st).row_at(50, 55, &mut r_small);
        assert_eq!(r_small.len(), small.count());
        assert_eq!(r_small.len(), r_full.len() - PER_RADIUS);
        assert_eq!(r_small[..], r_full[..small.count()]);
        assert_eq!(small.names()[..], full.names()[..small.count()]);
        assert_eq!((full.halo(), small.halo()), (31, 15));
    }

    #[test]
    fn names_match_the_row_length() {
        for nir in [false, true] {
            let spec = FeatureSpec::new(nir);
            assert_eq!(spec.count(), 3 * spec.bands() + 7 + PER_RADIUS * RADII.len());
        }
    }
}
