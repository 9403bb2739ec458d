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
//! With [`FeatureSpec::edges`], also the gradient magnitude of each date's standardised
//! brightness (Sobel), its difference between dates and, per radius, local means of those:
//! new buildings, roads and hardened ground change the local gradient structure, which band
//! differences and window statistics of values do not see.
//!
//! Window sums come from integral images of values quantised to 1/[`QUANT`] in integers:
//! integer sums are exact, so a pixel's features do not depend on where its block starts —
//! the features, and the model's decisions, are seamless across blocks.

use ndarray::{Array2, Array3, ArrayView2};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cell::Cell;

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
/// Per-pixel edge features with [`FeatureSpec::edges`]: gradient before, after, difference.
const EDGE_PIXEL: usize = 3;
/// Edge statistics per radius with [`FeatureSpec::edges`] (see [`edge_radius_features`]).
const EDGE_PER_RADIUS: usize = 4;
/// Names of the per-radius edge statistics, in [`edge_radius_features`]' order.
const EDGE_RADIUS_NAMES: [&str; EDGE_PER_RADIUS] = [
    "grad_before_mean",
    "grad_after_mean",
    "grad_diff_mean",
    "grad_absdiff_mean",
];

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
    /// Whether the gradient (edge) features are used (absent in a model file: off, the
    /// features models had before them; not written when off, so such files keep their bytes).
    #[serde(default, skip_serializing_if = "is_false")]
    pub edges: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
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
            edges: false,
        }
    }

    /// The same features with the gradient (edge) features on or off.
    pub fn with_edges(self, edges: bool) -> Self {
        Self { edges, ..self }
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
        3 * self.bands() + 7 + if self.edges { EDGE_PIXEL } else { 0 }
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

    /// Where each of this spec's features is in the rows of `wider`, in order; `None` when
    /// `wider` lacks one of them. A model's features are then a selection of richer rows
    /// (training samples rows once and fits several choices on them).
    pub fn columns_in(&self, wider: &FeatureSpec) -> Option<Vec<usize>> {
        let names = wider.names();
        self.names().iter().map(|n| names.iter().position(|m| m == n)).collect()
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
        if self.edges {
            n.extend(["grad_before", "grad_after", "grad_diff"].map(String::from));
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
            if self.edges {
                n.extend(EDGE_RADIUS_NAMES.iter().map(|s| format!("{s}_r{r}")));
            }
        }
        n
    }

    /// The halo a block needs for the features of its inner pixels: the widest window, and
    /// one more with edges (the 3 × 3 gradient of a window's outermost pixel).
    pub fn halo(&self) -> usize {
        self.radii().last().unwrap_or(0) + usize::from(self.edges)
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
    sums: Vec<[i64; STORED]>,
    /// The edge planes and their integral images, with [`FeatureSpec::edges`].
    edges: Option<EdgePlanes>,
}

/// Gradient magnitudes of each date's standardised brightness and their integral images.
struct EdgePlanes {
    /// Gradient before, after (row-major; 0 where the 3 × 3 neighbourhood is not all observed).
    grad: [Vec<f32>; 2],
    /// Integral images, `(h + 1) × (w + 1)`, of [`EdgeSums`].
    sums: Vec<[i64; EDGE_SUMS]>,
}

/// The integral images of the edge planes (the pixel count is [`Sums::Count`]'s).
#[derive(Clone, Copy)]
enum EdgeSums {
    Before,
    After,
    AbsDiff,
}
const EDGE_SUMS: usize = 3;

/// The [`EDGE_PER_RADIUS`] statistics of one window from its edge sums and pixel count.
fn edge_radius_features(s: &[i64; EDGE_SUMS], count: f64) -> [f32; EDGE_PER_RADIUS] {
    let (b, a) = (s[EdgeSums::Before as usize], s[EdgeSums::After as usize]);
    // The difference of the integer sums is exact, so its mean is seamless too.
    let mean = |v: i64| (v as f64 / QUANT / count) as f32;
    [mean(b), mean(a), mean(a - b), mean(s[EdgeSums::AbsDiff as usize])]
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
/// The sums the integral images store: every [`Sums`] but the two differences, which a
/// window gets exactly as its after sum minus its before sum (integers), so the tables are a
/// seventh smaller and so is the memory traffic of every window lookup.
const STORED: usize = SUMS - 2;
/// The [`Sums`] each stored sum is, in stored order.
const STORED_AS: [Sums; STORED] = [
    Sums::Count,
    Sums::Cva,
    Sums::CvaSq,
    Sums::BrightBefore,
    Sums::BrightBeforeSq,
    Sums::BrightAfter,
    Sums::BrightAfterSq,
    Sums::GreenBefore,
    Sums::GreenBeforeSq,
    Sums::GreenAfter,
    Sums::GreenAfterSq,
    Sums::Evidence,
];
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

thread_local! {
    /// The integral images of the block this thread finished last, reused by its next block.
    /// A block's are tens of MB (`STORED` × 8 bytes a pixel): freshly allocated, the system maps
    /// and zeroes them page by page for every block, which was a seventh of the learned
    /// pass's processor time. Reusing them changes no value: [`integral_images`] writes them.
    static SPARE_SUMS: Cell<Vec<[i64; STORED]>> = const { Cell::new(Vec::new()) };
    /// The same for the edge sums.
    static SPARE_EDGE_SUMS: Cell<Vec<[i64; EDGE_SUMS]>> = const { Cell::new(Vec::new()) };
}

impl Drop for FeatureBlock {
    fn drop(&mut self) {
        SPARE_SUMS.set(std::mem::take(&mut self.sums));
        if let Some(e) = &mut self.edges {
            SPARE_EDGE_SUMS.set(std::mem::take(&mut e.sums));
        }
    }
}

impl FeatureBlock {
    /// Computes the block's planes and integral images.
    pub fn new(input: &BlockInput, spec: FeatureSpec, stats: &ImageStats) -> Self {
        let (_, h, w) = input.before.dim();
        let nb = spec.bands();
        let (bb, ba) = (bands(input.before, nb), bands(input.after, nb));
        let standardise = |bands: &[Cow<[f32]>], st: &[(f64, f64)]| -> Vec<Vec<f32>> {
            bands
                .iter()
                .zip(st)
                .map(|(band, &(mean, std))| {
                    let inv = if std > 0.0 { 1.0 / std } else { 0.0 };
                    band.iter()
                        .map(|&v| finite(((f64::from(v) - mean) * inv) as f32))
                        .collect()
                })
                .collect()
        };
        let zb = standardise(&bb, &stats.before);
        let za = standardise(&ba, &stats.after);
        let obs = plane(input.observed.view());
        let n = h * w;
        let mut px: [Vec<f32>; 6] = std::array::from_fn(|_| vec![0.0f32; n]);
        let ev = plane(input.evidence.view());
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
        let edges = spec.edges.then(|| EdgePlanes::new(&px[1], &px[2], &obs, w, h));
        Self {
            spec,
            w,
            h,
            z,
            px,
            sums,
            edges,
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
        if let Some(e) = &self.edges {
            let [g_before, g_after] = &e.grad;
            out.extend([g_before[i], g_after[i], g_after[i] - g_before[i]]);
        }
        for r in self.spec.radii() {
            let window = self.window(y, x, r);
            let sums = self.window_sums(window);
            let count = sums[Sums::Count as usize] as f64;
            if count <= 0.0 {
                out.extend([0.0; PER_RADIUS]);
                if self.edges.is_some() {
                    out.extend([0.0; EDGE_PER_RADIUS]);
                }
                continue;
            }
            // Every sum's mean over the window at once, so the divisions are vectorised.
            let m: [f64; SUMS] = std::array::from_fn(|k| sums[k] as f64 * UNQUANT[k] / count);
            let mean = |s: Sums| m[s as usize] as f32;
            let std = |s: Sums, sq: Sums| (m[sq as usize] - m[s as usize] * m[s as usize]).max(0.0).sqrt() as f32;
            out.extend(radius_features(mean, std));
            if let Some(e) = &self.edges {
                out.extend(edge_radius_features(&e.window_sums(window, self.w), count));
            }
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
        let stored: [i64; STORED] = std::array::from_fn(|k| a[k] - b[k] - c[k] + d[k]);
        let mut sums = [0i64; SUMS];
        for (k, s) in STORED_AS.iter().enumerate() {
            sums[*s as usize] = stored[k];
        }
        let diff = |after: Sums, before: Sums| sums[after as usize] - sums[before as usize];
        let (bright, green) = (
            diff(Sums::BrightAfter, Sums::BrightBefore),
            diff(Sums::GreenAfter, Sums::GreenBefore),
        );
        sums[Sums::BrightDiff as usize] = bright;
        sums[Sums::GreenDiff as usize] = green;
        sums
    }
}

impl EdgePlanes {
    /// The gradients of the brightness planes and their integral images.
    fn new(bright_before: &[f32], bright_after: &[f32], obs: &[bool], w: usize, h: usize) -> Self {
        let grad = [
            sobel_magnitude(bright_before, obs, w, h),
            sobel_magnitude(bright_after, obs, w, h),
        ];
        let spare = SPARE_EDGE_SUMS.take();
        let sums = integral_images(spare, obs, w, h, |i| {
            let (b, a) = (quant(grad[0][i]), quant(grad[1][i]));
            [b, a, (a - b).abs()]
        });
        Self { grad, sums }
    }

    /// Every [`EdgeSums`] over `[y0, y1) × [x0, x1)` (`w`: the block's width).
    fn window_sums(&self, [y0, y1, x0, x1]: [usize; 4], w: usize) -> [i64; EDGE_SUMS] {
        let (t, w1) = (&self.sums, w + 1);
        let (a, b, c, d) = (&t[y1 * w1 + x1], &t[y0 * w1 + x1], &t[y1 * w1 + x0], &t[y0 * w1 + x0]);
        std::array::from_fn(|k| a[k] - b[k] - c[k] + d[k])
    }
}

/// Sobel gradient magnitude of `plane` (per pixel, a unit ramp gives 1), 0 on the block's
/// border and wherever the 3 × 3 neighbourhood is not all observed: no edge is made up at a
/// cloud's rim, and a pixel's value depends only on its neighbourhood (seamless, given the
/// one-pixel extra halo).
fn sobel_magnitude(plane: &[f32], obs: &[bool], w: usize, h: usize) -> Vec<f32> {
    let mut g = vec![0.0f32; w * h];
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let all_observed = (y - 1..=y + 1).all(|yy| obs[yy * w + x - 1..=yy * w + x + 1].iter().all(|&o| o));
            if !all_observed {
                continue;
            }
            let v = |dy: usize, dx: usize| plane[(y + dy - 1) * w + x + dx - 1];
            let gx = (v(0, 2) + 2.0 * v(1, 2) + v(2, 2)) - (v(0, 0) + 2.0 * v(1, 0) + v(2, 0));
            let gy = (v(2, 0) + 2.0 * v(2, 1) + v(2, 2)) - (v(0, 0) + 2.0 * v(0, 1) + v(0, 2));
            g[y * w + x] = finite((gx * gx + gy * gy).sqrt() / 8.0);
        }
    }
    g
}

fn finite(v: f32) -> f32 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// The first `nb` bands of `img`, each as one slice.
fn bands(img: &Array3<f32>, nb: usize) -> Vec<Cow<'_, [f32]>> {
    (0..nb)
        .map(|k| plane(img.view().index_axis_move(ndarray::Axis(0), k)))
        .collect()
}

/// `a`'s values in row-major order as one slice (borrowed when `a` is in standard layout, as
/// blocks are).
fn plane<T: Copy>(a: ArrayView2<'_, T>) -> Cow<'_, [T]> {
    match a.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// NDVI with NIR, else the green–red index `(G − R) / (G + R)` (bands B, G, R, NIR).
fn greenness(bands: &[Cow<[f32]>], i: usize, nir: bool) -> f32 {
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
fn integrals(px: &[Vec<f32>; 6], obs: &[bool], w: usize, h: usize) -> Vec<[i64; STORED]> {
    integral_images(SPARE_SUMS.take(), obs, w, h, |i| {
        let q: [i64; 6] = std::array::from_fn(|k| quant(px[k][i]));
        let (cva, bb, ba, gb, ga, ev) = (q[0], q[1], q[2], q[3], q[4], q[5]);
        // In STORED_AS order.
        [
            1,
            cva,
            cva * cva,
            bb,
            bb * bb,
            ba,
            ba * ba,
            gb,
            gb * gb,
            ga,
            ga * ga,
            ev,
        ]
    })
}

/// Integral images of `N` integer terms per pixel over the observed pixels: entry
/// `(y, x)` of the `(h + 1) × (w + 1)` table is the sum over `[0, y) × [0, x)`. Integers, so a
/// window's sum is exact and the same wherever the block starts.
fn integral_images<const N: usize>(
    mut sums: Vec<[i64; N]>,
    obs: &[bool],
    w: usize,
    h: usize,
    terms: impl Fn(usize) -> [i64; N],
) -> Vec<[i64; N]> {
    let w1 = w + 1;
    // `sums` may be an earlier block's (see [`SPARE_SUMS`]): the loop below writes every entry
    // but the first row and column, which are cleared here.
    sums.resize((h + 1) * w1, [0; N]);
    sums[..w1].fill([0; N]);
    for y in 0..h {
        sums[(y + 1) * w1] = [0; N];
        let mut row = [0i64; N];
        for x in 0..w {
            let i = y * w + x;
            if obs[i] {
                for (r, t) in row.iter_mut().zip(terms(i)) {
                    *r += t;
                }
            }
            let above = sums[y * w1 + x + 1];
            let here = &mut sums[(y + 1) * w1 + x + 1];
            for k in 0..N {
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

    /// Every feature row of a block.
    fn all_rows(input: &BlockInput, spec: FeatureSpec, st: &ImageStats) -> Vec<Vec<f32>> {
        let fb = FeatureBlock::new(input, spec, st);
        let (_, h, w) = input.before.dim();
        let mut rows = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let mut r = Vec::new();
                fb.row_at(y, x, &mut r);
                rows.push(r);
            }
        }
        rows
    }

    #[test]
    fn a_block_built_on_an_earlier_blocks_buffers_has_the_same_features() {
        // The integral images of a finished block are reused by the thread's next block: a
        // larger, brighter block first, then a smaller one, must give the rows a fresh
        // thread gives the smaller one.
        let spec = FeatureSpec::new(false).with_edges(true);
        let (b1, a1, e1) = scene(90, 120);
        let (b1, a1) = (b1.mapv(|v| v * 3.0), a1.mapv(|v| v * 2.0));
        let obs1 = Array2::from_elem((90, 120), true);
        let (b2, a2, e2) = scene(60, 70);
        let mut obs2 = Array2::from_elem((60, 70), true);
        obs2[(0, 0)] = false;
        obs2[(30, 40)] = false;
        let (st1, st2) = (stats_of(&b1, &a1), stats_of(&b2, &a2));
        let input = |b, a, observed, evidence| BlockInput {
            before: b,
            after: a,
            observed,
            evidence,
            threshold: 0.05,
        };
        let (first, second) = (input(&b1, &a1, &obs1, &e1), input(&b2, &a2, &obs2, &e2));
        let on_a_thread = |blocks: &[&BlockInput], st: &[&ImageStats]| -> Vec<Vec<f32>> {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let rows: Vec<Vec<Vec<f32>>> = blocks.iter().zip(st).map(|(b, st)| all_rows(b, spec, st)).collect();
                    rows.last().cloned().unwrap_or_default()
                })
                .join()
                .unwrap()
            })
        };
        let fresh = on_a_thread(&[&second], &[&st2]);
        let reused = on_a_thread(&[&first, &second], &[&st1, &st2]);
        assert_eq!(fresh.len(), 60 * 70);
        assert!(fresh == reused, "the same bits, whatever block came before");
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
        for edges in [false, true] {
            gain_and_offset_leave_the_features_unchanged(FeatureSpec::new(false).with_edges(edges));
        }
    }

    fn gain_and_offset_leave_the_features_unchanged(spec: FeatureSpec) {
        let (b, a, e) = scene(48, 48);
        let obs = Array2::from_elem((48, 48), true);
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
        for edges in [false, true] {
            unobserved_pixels_stay_out(FeatureSpec::new(false).with_edges(edges));
        }
    }

    fn unobserved_pixels_stay_out(spec: FeatureSpec) {
        let (b, a, e) = scene(40, 40);
        let mut obs = Array2::from_elem((40, 40), true);
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
            let edges = spec.with_edges(true);
            let per_radius = PER_RADIUS + EDGE_PER_RADIUS;
            assert_eq!(
                edges.count(),
                3 * spec.bands() + 7 + EDGE_PIXEL + per_radius * RADII.len()
            );
            assert_eq!(edges.pixel_count(), spec.pixel_count() + EDGE_PIXEL);
        }
    }

    fn block(
        b: &Array3<f32>,
        a: &Array3<f32>,
        e: &Array2<f32>,
        obs: &Array2<bool>,
        spec: FeatureSpec,
        st: &ImageStats,
    ) -> FeatureBlock {
        let input = BlockInput {
            before: b,
            after: a,
            observed: obs,
            evidence: e,
            threshold: 0.05,
        };
        FeatureBlock::new(&input, spec, st)
    }

    #[test]
    fn edge_features_do_not_depend_on_where_the_block_starts_down_to_the_halo() {
        // Every pixel at least `halo` inside the part block — the ones detection asks for —
        // must get the whole block's bits; the widest window's outermost pixel needs its
        // 3 × 3 neighbourhood, hence the one extra pixel of halo.
        let (b, a, e) = scene(100, 110);
        let mut obs = Array2::from_elem((100, 110), true);
        obs[(50, 60)] = false;
        let spec = FeatureSpec::new(false).with_edges(true);
        let st = stats_of(&b, &a);
        let whole = block(&b, &a, &e, &obs, spec, &st);
        let (y0, x0) = (5, 9);
        let part = block(
            &b.slice(s![.., y0.., x0..]).to_owned(),
            &a.slice(s![.., y0.., x0..]).to_owned(),
            &e.slice(s![y0.., x0..]).to_owned(),
            &obs.slice(s![y0.., x0..]).to_owned(),
            spec,
            &st,
        );
        let halo = spec.halo();
        assert_eq!(halo, MAX_RADIUS + 1);
        let (mut r1, mut r2) = (Vec::new(), Vec::new());
        let mut edge_values = 0;
        let grad = spec.names().iter().position(|n| n == "grad_diff_mean_r31").unwrap();
        for y in halo..100 - y0 - halo {
            for x in halo..110 - x0 - halo {
                whole.row_at(y + y0, x + x0, &mut r1);
                part.row_at(y, x, &mut r2);
                assert_eq!(r1.len(), spec.count());
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&r1), bits(&r2), "pixel ({y}, {x}) of the part block");
                edge_values += usize::from(r1[grad] != 0.0);
            }
        }
        assert!(
            edge_values > 100,
            "{edge_values} non-zero edge statistics: the test compares little"
        );
    }

    #[test]
    fn without_edges_the_row_is_the_edge_row_less_its_gradient_features() {
        // Models made before the edge features (no `edges` in their file) get the rows they
        // were trained on: turning edges on only adds features.
        let (b, a, e) = scene(100, 110);
        let obs = Array2::from_elem((100, 110), true);
        let st = stats_of(&b, &a);
        let (off, on) = (FeatureSpec::new(false), FeatureSpec::new(false).with_edges(true));
        let (mut r_off, mut r_on) = (Vec::new(), Vec::new());
        block(&b, &a, &e, &obs, off, &st).row_at(50, 55, &mut r_off);
        block(&b, &a, &e, &obs, on, &st).row_at(50, 55, &mut r_on);
        let names = on.names();
        let kept: Vec<f32> = r_on
            .iter()
            .zip(&names)
            .filter(|(_, n)| !n.starts_with("grad_"))
            .map(|(v, _)| *v)
            .collect();
        assert_eq!(kept, r_off);
        // The same selection by name, as training picks a choice's columns from sampled rows.
        let columns = off
            .up_to_radius(15)
            .columns_in(&on)
            .expect("every feature is in the edge rows");
        let picked: Vec<f32> = columns.iter().map(|&c| r_on[c]).collect();
        assert_eq!(picked, r_off[..off.up_to_radius(15).count()]);
        assert!(
            on.columns_in(&off).is_none(),
            "the edge features are not in the rows without them"
        );
        assert!(
            FeatureSpec::new(true).columns_in(&on).is_none(),
            "nor is NIR in RGB rows"
        );
        assert_eq!(
            off.names(),
            names
                .iter()
                .filter(|n| !n.starts_with("grad_"))
                .cloned()
                .collect::<Vec<_>>()
        );
        assert_eq!(off.halo(), MAX_RADIUS);
    }

    #[test]
    fn a_new_buildings_outline_raises_the_gradient_difference_and_its_interior_does_not() {
        // Flat before, a bright 12 × 16 roof after: the roof's rim is a new edge, its inside
        // and the untouched ground are not.
        let b = Array3::from_shape_fn((3, 60, 60), |(k, y, x)| 100.0 + ((x * 3 + y * 5 + k) % 4) as f32 * 0.5);
        let mut a = b.clone();
        for k in 0..3 {
            for y in 20..32 {
                for x in 20..36 {
                    a[(k, y, x)] = 180.0;
                }
            }
        }
        let e = Array2::zeros((60, 60));
        let obs = Array2::from_elem((60, 60), true);
        let spec = FeatureSpec::new(false).with_edges(true);
        let fb = block(&b, &a, &e, &obs, spec, &stats_of(&b, &a));
        let names = spec.names();
        let at = |y: usize, x: usize, name: &str| {
            let mut r = Vec::new();
            fb.row_at(y, x, &mut r);
            r[names.iter().position(|n| n == name).unwrap()]
        };
        let (rim, inside, ground) = (
            at(20, 28, "grad_diff"),
            at(26, 28, "grad_diff"),
            at(45, 10, "grad_diff"),
        );
        assert!(rim > 1.0, "rim {rim}");
        // The texture's own gradients shift a little with each date's standardisation.
        assert!(
            inside.abs().max(ground.abs()) < rim / 4.0,
            "rim {rim}, inside {inside}, ground {ground}"
        );
        assert!(
            at(26, 28, "grad_absdiff_mean_r7") > 0.3,
            "the rim is within 7 px of the roof's centre"
        );
        assert!(at(45, 10, "grad_absdiff_mean_r1") < rim / 4.0);
    }

    #[test]
    fn edges_are_written_only_when_on_and_absent_means_off() {
        let off = FeatureSpec::new(false);
        let text = serde_json::to_string(&off).unwrap();
        assert!(!text.contains("edges"), "{text}");
        let back: FeatureSpec = serde_json::from_str(r#"{"nir":false}"#).unwrap();
        assert_eq!(back, off);
        let on = off.with_edges(true);
        let on_text = serde_json::to_string(&on).unwrap();
        assert_eq!(serde_json::from_str::<FeatureSpec>(&on_text).unwrap(), on);
    }
}
