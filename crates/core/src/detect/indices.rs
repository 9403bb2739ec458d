//! Spectral indices on band-major pixel arrays in canonical band order `[B, G, R, (NIR)]`.
//!
//! GF-1/2/6 and ZY-3 have no SWIR, so built-up indices such as NDBI are out of reach; the
//! indices here are the ones 4-band (and 3-band RGB) imagery supports.

use crate::types::layout::{plane_of, row_major};
use ndarray::{Array2, Array3, Zip};
use std::borrow::Cow;

const EPS: f32 = 1e-6;

/// Index of each band in a canonical array.
pub const BLUE: usize = 0;
/// Index of the green band in a pixel's band vector.
pub const GREEN: usize = 1;
/// Index of the red band in a pixel's band vector.
pub const RED: usize = 2;
/// Index of the near-infrared band in a pixel's band vector (absent in RGB images).
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

/// Most bands a pixel spectrum is gathered for.
pub const MAX_BANDS: usize = 16;

/// The band vector of pixel `i` from a band-major buffer of `n`-pixel planes, gathered into `px`.
#[inline]
pub fn spectrum<'a>(all: &[f32], n: usize, i: usize, px: &'a mut [f32; MAX_BANDS]) -> &'a [f32] {
    let c = (all.len() / n.max(1)).min(MAX_BANDS);
    for (k, v) in px.iter_mut().take(c).enumerate() {
        *v = all[k * n + i];
    }
    &px[..c]
}

/// A 2-D layer as one slice. The layers are built row-major from vectors ([`plane_of`]) and
/// never sliced, so they always are one slice.
pub fn as_flat(a: &Array2<f32>) -> &[f32] {
    a.as_slice()
        .expect("per-pixel layers are built row-major and never sliced")
}

/// Calls `f(i, pixel)` for every pixel `i` (row-major index) with the pixel's band vector,
/// without allocating.
pub fn for_each_pixel(bands: &Array3<f32>, mut f: impl FnMut(usize, &[f32])) {
    let (_, h, w) = bands.dim();
    let std = bands.as_standard_layout();
    let data = row_major(&std);
    let mut px = [0.0f32; MAX_BANDS];
    for i in 0..h * w {
        f(i, spectrum(data, h * w, i, &mut px));
    }
}

/// Applies `f` to each pixel's band vector, giving a 2-D array.
pub fn per_pixel(bands: &Array3<f32>, f: impl Fn(&[f32]) -> f32) -> Array2<f32> {
    let (_, h, w) = bands.dim();
    let mut out = vec![0.0f32; h * w];
    for_each_pixel(bands, |i, px| out[i] = f(px));
    plane_of((h, w), out)
}

/// Plane `k` of a band-major buffer of `n`-pixel planes. Callers ask only for the bands the
/// buffer has: blue, green and red (every band map names them), NIR when there are more than
/// three, or `k` below the band count.
fn plane(all: &[f32], n: usize, k: usize) -> &[f32] {
    all.get(k * n..(k + 1) * n)
        .expect("only bands the buffer holds are asked for")
}

/// The vegetation index and (with NIR) NDWI of one date, computed once per window and shared
/// by the change evidence, the gate, the texture paths and the patch features.
pub struct DateIndices {
    /// Vegetation index.
    pub vi: Array2<f32>,
    /// NDWI; `None` without a NIR band.
    pub wi: Option<Array2<f32>>,
}

impl DateIndices {
    /// The indices of one date's bands (`(band, row, col)`).
    pub fn of(bands: &Array3<f32>) -> Self {
        DateLayers::of(bands, false).ix
    }
}

/// The per-pixel layers of one date: its indices, brightness and (when asked) flatness.
pub struct DateLayers {
    /// Vegetation index and NDWI.
    pub ix: DateIndices,
    /// Brightness (mean reflectance).
    pub bright: Array2<f32>,
    /// Spectral flatness, when asked for.
    pub flat: Option<Array2<f32>>,
}

impl DateLayers {
    /// All layers in one sweep over the bands, row by row, so each band row is read from
    /// memory once while the layers are made from it in cache. Values are those of
    /// [`vegetation`], [`water`], [`brightness`] and [`flatness`] of each pixel, bit for bit
    /// (same operations in the same order; the tests hold them to plane-wise references).
    pub fn of(bands: &Array3<f32>, with_flatness: bool) -> Self {
        let (c, h, w) = bands.dim();
        let std = bands.as_standard_layout();
        let all = row_major(&std);
        let n = h * w;
        let nir = c > NIR;
        // Filled row after row (no zeroing pass over whole planes about to be written).
        let (mut vi, mut wi) = (Vec::with_capacity(n), Vec::with_capacity(if nir { n } else { 0 }));
        let mut bright = Vec::with_capacity(n);
        let mut flat = Vec::with_capacity(if with_flatness { n } else { 0 });
        let (mut lo, mut hi) = (vec![0.0f32; w], vec![0.0f32; w]);
        for y in 0..h {
            let at = y * w..(y + 1) * w;
            let row = |k: usize| &plane(all, n, k)[at.clone()];
            if nir {
                vi.extend(row(NIR).iter().zip(row(RED)).map(|(&a, &b)| nd(a, b)));
                wi.extend(row(GREEN).iter().zip(row(NIR)).map(|(&a, &b)| nd(a, b)));
            } else {
                let (r, b, g) = (row(RED), row(BLUE), row(GREEN));
                vi.extend(r.iter().zip(b).zip(g).map(|((&r, &b), &g)| nd(2.0 * g, r + b)));
            }
            bright.resize(at.end, 0.0);
            let b = &mut bright[at.clone()];
            row_brightness(all, n, c, at.clone(), b);
            if with_flatness {
                lo.fill(f32::INFINITY);
                hi.fill(f32::NEG_INFINITY);
                for k in 0..c {
                    for ((l, u), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(row(k)) {
                        *l = l.min(v);
                        *u = u.max(v);
                    }
                }
                flat.extend(lo.iter().zip(&hi).zip(&*b).map(|((&l, &u), &mean)| {
                    if mean <= EPS {
                        0.0
                    } else {
                        (1.0 - (u - l) / mean).clamp(0.0, 1.0)
                    }
                }));
            }
        }
        let plane2 = |v: Vec<f32>| plane_of((h, w), v);
        Self {
            ix: DateIndices {
                vi: plane2(vi),
                wi: nir.then(|| plane2(wi)),
            },
            bright: plane2(bright),
            flat: with_flatness.then(|| plane2(flat)),
        }
    }
}

/// [`brightness`] of the pixels `at` of band-major planes of `n` pixels (`c` bands), into `out`:
/// bands added in order from 0.0, as [`brightness`] does, so the values are the same bits.
pub fn row_brightness(all: &[f32], n: usize, c: usize, at: std::ops::Range<usize>, out: &mut [f32]) {
    out.fill(0.0);
    for k in 0..c {
        out.iter_mut()
            .zip(&plane(all, n, k)[at.clone()])
            .for_each(|(s, &v)| *s += v);
    }
    out.iter_mut().for_each(|s| *s /= c as f32);
}

/// The feature stack used for change evidence, as planes of the window: the bands (borrowed,
/// not copied), then the vegetation index, (with NIR) NDWI and, when `texture_weight` is
/// positive, `vtex` (the 3×3 texture of the vegetation index, [`local_std3`] of `ix.vi`, which
/// the gate computes anyway), each scaled by its weight so it weighs like a reflectance
/// difference.
pub fn evidence_planes<'a>(
    bands: &'a Array3<f32>,
    ix: &DateIndices,
    vtex: &Array2<f32>,
    index_weight: f32,
    texture_weight: f32,
) -> Vec<Cow<'a, [f32]>> {
    let scaled = |a: &Array2<f32>, k: f32| Cow::Owned(as_flat(a).iter().map(|&v| k * v).collect());
    let mut planes: Vec<Cow<'a, [f32]>> = match bands.as_slice() {
        Some(all) => all.chunks_exact(ix.vi.len().max(1)).map(Cow::Borrowed).collect(),
        None => bands
            .outer_iter()
            .map(|p| Cow::Owned(p.iter().copied().collect()))
            .collect(),
    };
    planes.push(scaled(&ix.vi, index_weight));
    if let Some(wi) = &ix.wi {
        planes.push(scaled(wi, index_weight));
    }
    // Tree crowns planted in rows on a field change the texture more than the mean colour;
    // without this layer an orchard is found only between its crowns, in fragments.
    if texture_weight > 0.0 {
        planes.push(scaled(vtex, texture_weight));
    }
    planes
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

/// 3×3 local standard deviation of a layer (texture); edge pixels use the neighbours they have.
pub fn local_std3(a: &Array2<f32>) -> Array2<f32> {
    let (h, w) = a.dim();
    let std = a.as_standard_layout();
    let v = row_major(&std);
    let mut out = Vec::with_capacity(h * w);
    let (mut s, mut s2) = (vec![0.0f32; w], vec![0.0f32; w]);
    let mut edges = [0usize; 2];
    for y in 0..h {
        let rows = y.saturating_sub(1)..(y + 2).min(h);
        let n_rows = rows.len();
        s.fill(0.0);
        s2.fill(0.0);
        // Each pixel adds its window row by row, left to right: the interior columns go
        // through in one vectorisable sweep per window cell, the two edge columns alone.
        for yy in rows {
            let row = &v[yy * w..(yy + 1) * w];
            if w >= 3 {
                for dx in 0..3 {
                    let src = &row[dx..w - 2 + dx];
                    for ((a, b), &p) in s[1..w - 1].iter_mut().zip(&mut s2[1..w - 1]).zip(src) {
                        *a += p;
                        *b += p * p;
                    }
                }
            }
            for &x in edge_columns(w, &mut edges) {
                for &p in &row[x.saturating_sub(1)..(x + 2).min(w)] {
                    s[x] += p;
                    s2[x] += p * p;
                }
            }
        }
        // The interior has 3 columns in every window, so one count and a vectorised loop; the
        // edge columns have fewer. The row is appended to `out` (no zeroing pass first).
        let std_of = |s: f32, s2: f32, n: f32| {
            let m = s / n;
            (s2 / n - m * m).max(0.0).sqrt()
        };
        let count = |x: usize| (n_rows * ((x + 2).min(w) - x.saturating_sub(1))) as f32;
        if w >= 3 {
            out.push(std_of(s[0], s2[0], count(0)));
            let n = count(1);
            out.extend(s[1..w - 1].iter().zip(&s2[1..w - 1]).map(|(&a, &b)| std_of(a, b, n)));
            out.push(std_of(s[w - 1], s2[w - 1], count(w - 1)));
        } else {
            out.extend((0..w).map(|x| std_of(s[x], s2[x], count(x))));
        }
    }
    plane_of((h, w), out)
}

/// The 3×3 standard deviation of plane `v` (`h` × `w`, row-major) at one pixel, summed in the
/// same order as [`local_std3`] so both give the same bits.
pub fn std3_at(v: &[f32], h: usize, w: usize, y: usize, x: usize) -> f32 {
    let (mut s, mut s2) = (0.0f32, 0.0f32);
    let (ya, yb) = (y.saturating_sub(1), (y + 2).min(h));
    let (xa, xb) = (x.saturating_sub(1), (x + 2).min(w));
    for yy in ya..yb {
        for &p in &v[yy * w + xa..yy * w + xb] {
            s += p;
            s2 += p * p;
        }
    }
    let n = ((yb - ya) * (xb - xa)) as f32;
    let m = s / n;
    (s2 / n - m * m).max(0.0).sqrt()
}

/// Columns whose 3-wide window is clipped by the array edge (all of them when `w < 3`), in
/// `buf`.
fn edge_columns(w: usize, buf: &mut [usize; 2]) -> &[usize] {
    *buf = [0, w.saturating_sub(1)];
    &buf[..w.min(2)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`brightness`] of every pixel, bands added in the same order.
    fn brightness_plane(bands: &Array3<f32>) -> Array2<f32> {
        let (c, h, w) = bands.dim();
        let std = bands.as_standard_layout();
        let all = row_major(&std);
        let mut sum = vec![0.0f32; h * w];
        for k in 0..c {
            sum.iter_mut().zip(plane(all, h * w, k)).for_each(|(s, &v)| *s += v);
        }
        sum.iter_mut().for_each(|s| *s /= c as f32);
        plane_of((h, w), sum)
    }

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
    fn local_std_is_the_windowed_standard_deviation() {
        let a = Array2::from_shape_fn((5, 7), |(y, x)| ((y * 7 + x) as f32 * 0.37).sin());
        let s = local_std3(&a);
        for y in 0..5usize {
            for x in 0..7usize {
                let vals: Vec<f32> = (y.saturating_sub(1)..(y + 2).min(5))
                    .flat_map(|yy| (x.saturating_sub(1)..(x + 2).min(7)).map(move |xx| (yy, xx)))
                    .map(|p| a[p])
                    .collect();
                let n = vals.len() as f32;
                let m = vals.iter().sum::<f32>() / n;
                let var = vals.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / n;
                assert!((s[(y, x)] - var.sqrt()).abs() < 1e-4, "({y},{x})");
            }
        }
        assert_eq!(local_std3(&Array2::from_elem((1, 2), 0.5))[(0, 1)], 0.0);
        let v = a.as_slice().unwrap();
        for ((y, x), &got) in s.indexed_iter() {
            assert_eq!(std3_at(v, 5, 7, y, x), got, "same bits at ({y},{x})");
        }
        for (h, w) in [(1, 1), (2, 2), (3, 1), (1, 4)] {
            let a = Array2::from_shape_fn((h, w), |(y, x)| (y * 3 + x) as f32 * 0.1);
            let s = local_std3(&a);
            for ((y, x), &got) in s.indexed_iter() {
                assert_eq!(std3_at(a.as_slice().unwrap(), h, w, y, x), got, "{h}x{w} at ({y},{x})");
            }
        }
    }

    // Plane-wise reference implementations of the per-pixel indices, for the one-sweep layers.

    /// `f` of two band planes, element by element, as a 2-D array.
    fn zip_planes(bands: &Array3<f32>, a: usize, b: usize, f: impl Fn(f32, f32) -> f32) -> Array2<f32> {
        let (_, h, w) = bands.dim();
        let bands = bands.as_standard_layout();
        let all = row_major(&bands);
        let (pa, pb) = (plane(all, h * w, a), plane(all, h * w, b));
        let out: Vec<f32> = pa.iter().zip(pb).map(|(&x, &y)| f(x, y)).collect();
        plane_of((h, w), out)
    }

    /// [`vegetation`] of every pixel.
    fn vegetation_plane(bands: &Array3<f32>) -> Array2<f32> {
        if bands.len_of(ndarray::Axis(0)) > NIR {
            zip_planes(bands, NIR, RED, nd)
        } else {
            let red_blue = zip_planes(bands, RED, BLUE, |r, b| r + b);
            let green = bands.index_axis(ndarray::Axis(0), GREEN);
            let mut out = red_blue;
            Zip::from(&mut out).and(&green).for_each(|o, &g| *o = nd(2.0 * g, *o));
            out
        }
    }

    /// [`water`] of every pixel (needs NIR).
    fn water_plane(bands: &Array3<f32>) -> Option<Array2<f32>> {
        (bands.len_of(ndarray::Axis(0)) > NIR).then(|| zip_planes(bands, GREEN, NIR, nd))
    }

    /// [`flatness`] of every pixel, given its [`brightness_plane`] (the mean), in the same order of
    /// operations.
    fn flatness_plane(bands: &Array3<f32>, bright: &Array2<f32>) -> Array2<f32> {
        let (c, h, w) = bands.dim();
        let std = bands.as_standard_layout();
        let all = row_major(&std);
        let (mut lo, mut hi) = (vec![f32::INFINITY; h * w], vec![f32::NEG_INFINITY; h * w]);
        for k in 0..c {
            for ((l, u), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(plane(all, h * w, k)) {
                *l = l.min(v);
                *u = u.max(v);
            }
        }
        let bright = bright.as_standard_layout();
        for ((l, &u), &mean) in lo.iter_mut().zip(&hi).zip(bright.iter()) {
            *l = if mean <= EPS {
                0.0
            } else {
                (1.0 - (u - *l) / mean).clamp(0.0, 1.0)
            };
        }
        plane_of((h, w), lo)
    }

    #[test]
    fn one_sweep_layers_equal_the_plane_functions() {
        let bands =
            |c: usize| Array3::from_shape_fn((c, 7, 9), |(k, y, x)| ((k * 13 + y * 7 + x * 3) % 11) as f32 * 0.037);
        for c in [3, 4] {
            let b = bands(c);
            let l = DateLayers::of(&b, true);
            assert_eq!(l.ix.vi, vegetation_plane(&b));
            assert_eq!(l.ix.wi, water_plane(&b));
            assert_eq!(l.bright, brightness_plane(&b));
            assert_eq!(l.flat, Some(flatness_plane(&b, &l.bright)));
            assert!(DateLayers::of(&b, false).flat.is_none());
        }
    }

    #[test]
    fn evidence_planes_append_scaled_indices() {
        let b = Array3::from_shape_vec((4, 1, 1), vec![0.03, 0.07, 0.04, 0.43]).unwrap();
        let ix = DateIndices::of(&b);
        let vtex = local_std3(&ix.vi);
        let s = evidence_planes(&b, &ix, &vtex, 0.5, 0.0);
        assert_eq!(s.len(), 6);
        assert_eq!(s[3][0], 0.43);
        assert!((s[4][0] - 0.5 * nd(0.43, 0.04)).abs() < 1e-6);
        assert!((s[5][0] - 0.5 * nd(0.07, 0.43)).abs() < 1e-6);
        let t = evidence_planes(&b, &ix, &vtex, 0.5, 1.0);
        assert_eq!(t.len(), 7);
        assert_eq!(t[6][0], vtex[(0, 0)]);
    }
}
