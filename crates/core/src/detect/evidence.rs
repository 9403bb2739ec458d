//! Per-pixel change evidence that survives residual misregistration.
//!
//! Plain change-vector analysis compares each pixel with the same pixel on the other date, so a
//! field edge shifted by one pixel lights up as change. Here each pixel is compared with the
//! best-matching pixel within `radius` on the other date, in both directions, and the larger of
//! the two distances is kept:
//!
//! `e(p) = max( min_q |A(p) − B(q)|,  min_q |B(p) − A(q)| )`,  `q ∈ p ± radius`
//!
//! An edge that merely moved finds its match in both directions (small `e`); a new object has
//! no counterpart in either (large `e`). Vectors are the normalised bands plus scaled index
//! layers (see [`super::indices::evidence_planes`]).

use crate::types::layout::{plane_of, row_major};
use ndarray::{Array2, Array3};

/// Neighbourhood-aware change magnitude between two feature stacks of equal shape.
/// Pixels where `valid` is false are never used as matches; their own evidence is 0.
pub fn neighbourhood_distance(a: &Array3<f32>, b: &Array3<f32>, valid: &Array2<bool>, radius: usize) -> Array2<f32> {
    assert_eq!(a.dim(), b.dim(), "feature stacks must match");
    let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
    let plane = valid.len().max(1);
    let pa: Vec<&[f32]> = row_major(&a).chunks_exact(plane).collect();
    let pb: Vec<&[f32]> = row_major(&b).chunks_exact(plane).collect();
    distance_of_planes(&pa, &pb, valid, radius)
}

/// [`neighbourhood_distance`] of two stacks given as planes (each `h × w`, row-major, the shape
/// of `valid`), so a stack can borrow the bands it starts with instead of copying them.
pub fn distance_of_planes(a: &[&[f32]], b: &[&[f32]], valid: &Array2<bool>, radius: usize) -> Array2<f32> {
    let (h, w) = valid.dim();
    let plane = h * w;
    assert!(
        a.len() == b.len() && a.iter().chain(b).all(|p| p.len() == plane),
        "feature stacks must match"
    );
    let valid = valid.as_standard_layout();
    let vv = row_major(&valid);
    let mut ab = vec![f32::INFINITY; plane];
    let mut ba = vec![f32::INFINITY; plane];
    let m = Matches {
        av: a,
        bv: b,
        vv,
        w,
        radius,
    };
    m.best_matches(&mut ab, &mut ba);
    // Zipped slices and a non-short-circuit test, so the sweep vectorises.
    let out: Vec<f32> = ab
        .iter()
        .zip(&ba)
        .zip(&vv[..plane])
        .map(|((&x, &y), &v)| {
            let m = x.max(y);
            if v & m.is_finite() {
                m.sqrt()
            } else {
                0.0
            }
        })
        .collect();
    plane_of((h, w), out)
}

/// The inputs of the best-match search: the planes of both stacks and the valid mask, as flat
/// slices of `w`-pixel rows.
struct Matches<'a> {
    av: &'a [&'a [f32]],
    bv: &'a [&'a [f32]],
    vv: &'a [bool],
    w: usize,
    radius: usize,
}

impl Matches<'_> {
    /// `ab[p]` = min over valid matches of |A(p) − B(q)|², `ba[q]` the same seen from B. (The
    /// build targets AVX2, see `.cargo/config.toml`, so these loops vectorise eight wide.)
    fn best_matches(&self, ab: &mut [f32], ba: &mut [f32]) {
        let &Matches { vv, w, radius, .. } = self;
        let h = vv.len() / w.max(1);
        let mut row = vec![0.0f32; w];
        let r = radius as isize;
        // Row by row, all offsets at once: the few rows of A and B involved stay in cache.
        for y in 0..h {
            for dy in -r..=r {
                let qy = y as isize + dy;
                if qy < 0 || qy >= h as isize {
                    continue;
                }
                for dx in -r..=r {
                    let (x0, x1) = (0.max(-dx) as usize, (w as isize).min(w as isize - dx) as usize);
                    if x1 <= x0 {
                        continue;
                    }
                    let n = x1 - x0;
                    let (p0, q0) = (y * w + x0, qy as usize * w + (x0 as isize + dx) as usize);
                    self.match_run(p0, q0, n, &mut row, ab, ba);
                }
            }
        }
    }

    /// The candidate matches A(p0 + j) ↔ B(q0 + j), `j < n`: lowers `ab[p0 + j]` and `ba[q0 + j]`
    /// to their squared distance where both ends are valid (a pair with an invalid end is no
    /// match). Runs of [`LANES`] pixels sum all channels in registers; the rest goes through
    /// `dist`, with the same additions in the same order.
    #[inline(always)]
    fn match_run(&self, p0: usize, q0: usize, n: usize, dist: &mut [f32], ab: &mut [f32], ba: &mut [f32]) {
        // The usual channel counts (bands, indices, texture) get their own unrolled loop.
        match self.av.len() {
            4 => self.match_run_of::<4>(p0, q0, n, dist, ab, ba),
            5 => self.match_run_of::<5>(p0, q0, n, dist, ab, ba),
            6 => self.match_run_of::<6>(p0, q0, n, dist, ab, ba),
            7 => self.match_run_of::<7>(p0, q0, n, dist, ab, ba),
            // Any other count: the general loop (the same sums, channel by channel).
            _ => self.match_run_of::<0>(p0, q0, n, dist, ab, ba),
        }
    }

    /// [`Matches::match_run`] for exactly `C` channels; `C = 0`: any number, every pixel
    /// through `dist`.
    #[inline(always)]
    fn match_run_of<const C: usize>(
        &self,
        p0: usize,
        q0: usize,
        n: usize,
        dist: &mut [f32],
        ab: &mut [f32],
        ba: &mut [f32],
    ) {
        let (av, bv, vv) = (self.av, self.bv, self.vv);
        let a: [&[f32]; C] = std::array::from_fn(|ch| &av[ch][p0..p0 + n]);
        let b: [&[f32]; C] = std::array::from_fn(|ch| &bv[ch][q0..q0 + n]);
        let (vp, vq) = (&vv[p0..p0 + n], &vv[q0..q0 + n]);
        let (abr, bar) = (&mut ab[p0..p0 + n], &mut ba[q0..q0 + n]);
        let full = if C == 0 { 0 } else { n / LANES * LANES };
        for j in (0..full).step_by(LANES) {
            let mut d = [0.0f32; LANES];
            for ch in 0..C {
                let (a, b) = (&a[ch][j..j + LANES], &b[ch][j..j + LANES]);
                for k in 0..LANES {
                    let e = a[k] - b[k];
                    d[k] += e * e;
                }
            }
            lower(
                &mut abr[j..j + LANES],
                &mut bar[j..j + LANES],
                &d,
                &vp[j..j + LANES],
                &vq[j..j + LANES],
            );
        }
        let rest = n - full;
        if rest > 0 {
            let d = &mut dist[..rest];
            squared_distances(d, av, bv, p0 + full, q0 + full);
            lower(&mut abr[full..], &mut bar[full..], d, &vp[full..], &vq[full..]);
        }
    }
}

/// Pixels summed together in registers by [`Matches::match_run`].
const LANES: usize = 16;

/// `ab[j] = min(ab[j], d[j])`, `ba[j]` likewise, where both ends are valid (branch-free, so it
/// vectorises).
#[inline(always)]
fn lower(ab: &mut [f32], ba: &mut [f32], d: &[f32], vp: &[bool], vq: &[bool]) {
    for ((((a, b), &d), &p), &q) in ab.iter_mut().zip(ba.iter_mut()).zip(d).zip(vp).zip(vq) {
        let d = if p & q { d } else { f32::INFINITY };
        *a = a.min(d);
        *b = b.min(d);
    }
}

/// `dist[j] = |A(p0 + j) − B(q0 + j)|²` over the channel planes, channel by channel, so each
/// inner loop is a straight vectorisable pass over contiguous memory.
#[inline(always)]
fn squared_distances(dist: &mut [f32], av: &[&[f32]], bv: &[&[f32]], p0: usize, q0: usize) {
    let n = dist.len();
    dist.fill(0.0);
    for (a, b) in av.iter().zip(bv) {
        let ar = &a[p0..p0 + n];
        let br = &b[q0..q0 + n];
        for ((d, &x), &y) in dist.iter_mut().zip(ar).zip(br) {
            let e = x - y;
            *d += e * e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge_image(shift: usize) -> Array3<f32> {
        Array3::from_shape_fn((1, 9, 9), |(_, _, x)| if x >= 4 + shift { 1.0 } else { 0.0 })
    }

    /// Pseudo-random values in [0, 1): a fixed sequence, so a failure reproduces.
    fn noise(seed: u64, shape: (usize, usize, usize)) -> Array3<f32> {
        let mut s = seed;
        Array3::from_shape_fn(shape, |_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
    }

    /// The definition in the module docs, pixel by pixel, channels summed in order.
    fn reference(a: &Array3<f32>, b: &Array3<f32>, valid: &Array2<bool>, r: isize) -> Array2<f32> {
        let (c, h, w) = a.dim();
        let d2 = |y: usize, x: usize, qy: usize, qx: usize, from: &Array3<f32>, to: &Array3<f32>| {
            let mut s = 0.0f32;
            for k in 0..c {
                let e = from[(k, y, x)] - to[(k, qy, qx)];
                s += e * e;
            }
            s
        };
        Array2::from_shape_fn((h, w), |(y, x)| {
            let (mut ab, mut ba) = (f32::INFINITY, f32::INFINITY);
            for dy in -r..=r {
                for dx in -r..=r {
                    let (qy, qx) = (y as isize + dy, x as isize + dx);
                    if qy < 0 || qx < 0 || qy >= h as isize || qx >= w as isize {
                        continue;
                    }
                    let (qy, qx) = (qy as usize, qx as usize);
                    if valid[(y, x)] && valid[(qy, qx)] {
                        ab = ab.min(d2(y, x, qy, qx, a, b));
                        ba = ba.min(d2(y, x, qy, qx, b, a));
                    }
                }
            }
            let m = ab.max(ba);
            if valid[(y, x)] && m.is_finite() {
                m.sqrt()
            } else {
                0.0
            }
        })
    }

    #[test]
    fn every_pixel_is_the_definition_bit_for_bit() {
        // Widths around the register run length, so full runs, tails and edges all occur; the
        // channel counts with their own loop (4 to 7) and others.
        for (w, r, channels) in [(37, 1, 7), (33, 1, 6), (50, 2, 5), (20, 1, 4), (16, 1, 3), (5, 1, 1)] {
            let shape = (channels, 11, w);
            let (a, b) = (noise(1, shape), noise(2, shape));
            let valid = noise(3, (1, 11, w)).index_axis(ndarray::Axis(0), 0).mapv(|v| v > 0.15);
            let got = neighbourhood_distance(&a, &b, &valid, r as usize);
            let want = reference(&a, &b, &valid, r);
            for ((y, x), g) in got.indexed_iter() {
                assert_eq!(g.to_bits(), want[(y, x)].to_bits(), "w {w} r {r} at ({y}, {x})");
            }
        }
    }

    #[test]
    fn a_shifted_edge_is_not_change() {
        let valid = Array2::from_elem((9, 9), true);
        let e = neighbourhood_distance(&edge_image(0), &edge_image(1), &valid, 1);
        assert!(e.iter().all(|&v| v < 1e-6), "shifted edge flagged: {e:?}");
        let plain = neighbourhood_distance(&edge_image(0), &edge_image(1), &valid, 0);
        assert!(plain.iter().any(|&v| v > 0.9), "radius 0 must see the edge move");
    }

    #[test]
    fn a_new_object_is_change_in_its_interior() {
        let before = Array3::<f32>::zeros((2, 9, 9));
        let mut after = before.clone();
        for y in 3..6 {
            for x in 3..6 {
                after[(0, y, x)] = 0.6;
                after[(1, y, x)] = 0.8;
            }
        }
        let valid = Array2::from_elem((9, 9), true);
        let e = neighbourhood_distance(&before, &after, &valid, 1);
        assert!((e[(4, 4)] - 1.0).abs() < 1e-5);
        assert!(e[(0, 0)] < 1e-6);
    }

    #[test]
    fn invalid_pixels_have_no_evidence() {
        let before = Array3::<f32>::zeros((1, 3, 3));
        let after = Array3::<f32>::ones((1, 3, 3));
        let mut valid = Array2::from_elem((3, 3), true);
        valid[(1, 1)] = false;
        let e = neighbourhood_distance(&before, &after, &valid, 1);
        assert_eq!(e[(1, 1)], 0.0);
        assert!(e[(0, 0)] > 0.9);
    }
}
