//! Texture appearance: fields newly planted with trees (orchards, eucalyptus).
//!
//! A young planting is a grid of crowns a few metres apart over bare or grassy soil. In the
//! best-match evidence ([`super::evidence`]) the crowns find their match in the green crop that
//! was there before, only the gaps between them change, and the opening erases the gaps — the
//! planting is found in fragments, if at all. This path looks at the field's texture instead:
//! a pixel is *texture appeared* when the vegetation index has crown texture after, much more
//! than before, and the neighbourhood is vegetated after. The mask is closed (joins the crowns
//! of one planting), opened (drops what is narrower than a planting) and taken as change of use.
//!
//! The texture is *crown* texture ([`crown_texture`]): the smallest, over four directions, of
//! the windowed energy of the vegetation index's second difference. A plain local standard
//! deviation answers as strongly to the straight edge between two fields (a green-up next to a
//! bare parcel) or to a field ridge between two green parcels as to tree crowns; a straight
//! line has no second difference along itself, crowns have one in every direction. On the
//! synthetic 2048-px pair, among pixels whose plain 5×5 std appeared (after > 0.08, gain > 0.05),
//! the crown-texture gain was ≥ 0.061 for 95 % of orchard pixels and ≤ 0.039 for 95 % of
//! unchanged cropland ones (plain std gain: orchards ≥ 0.05 … cropland up to 0.07 and beyond).
//!
//! Everything here runs over whole rows as slices (separable box sums, shifted-row differences),
//! with no per-pixel window loops.

use super::morphology::close_open;
use crate::model::TextureParams;
use crate::types::layout::{plane_of, row_major};
use ndarray::{Array2, Zip};

/// Window sums along one row: `out[x] = Σ row[x − r ..= x + r]` over the in-row neighbours,
/// as `2r + 1` shifted slice additions (vectorisable).
fn row_sums(row: &[f32], r: usize, out: &mut [f32]) {
    let w = row.len();
    if r == 2 && w >= 5 {
        // The default window: one fused pass over the interior, the four edge pixels apart.
        let n = w - 4;
        let (a, b, c, d, e) = (&row[..n], &row[1..n + 1], &row[2..n + 2], &row[3..n + 3], &row[4..]);
        for (((((o, &a), &b), &c), &d), &e) in out[2..w - 2].iter_mut().zip(a).zip(b).zip(c).zip(d).zip(e) {
            *o = a + b + c + d + e;
        }
        out[0] = row[0] + row[1] + row[2];
        out[1] = out[0] + row[3];
        out[w - 1] = row[w - 1] + row[w - 2] + row[w - 3];
        out[w - 2] = out[w - 1] + row[w - 4];
        return;
    }
    out.fill(0.0);
    let w = row.len() as isize;
    let ri = r as isize;
    for d in -ri..=ri {
        let (x0, x1) = ((-d).max(0), w.min(w - d));
        if x1 <= x0 {
            continue;
        }
        let (x0, x1, s0) = (x0 as usize, x1 as usize, (x0 + d) as usize);
        for (o, &v) in out[x0..x1].iter_mut().zip(&row[s0..s0 + (x1 - x0)]) {
            *o += v;
        }
    }
}

/// Window sums down the rows of `rows` (row-major, width `w`) for output row `y`, into `out`.
fn col_sums(rows: &[f32], w: usize, y: usize, r: usize, out: &mut [f32]) {
    let h = rows.len() / w.max(1);
    let (ya, yb) = (y.saturating_sub(r), (y + r + 1).min(h));
    out.fill(0.0);
    for src in rows[ya * w..yb * w].chunks_exact(w) {
        for (o, &v) in out.iter_mut().zip(src) {
            *o += v;
        }
    }
}

/// `1 / n` for the number of in-array positions of each index's window along an axis of length `n`.
fn inv_counts(n: usize, r: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 1.0 / ((i + r + 1).min(n) - i.saturating_sub(r)) as f32)
        .collect()
}

/// Mean over the `(2r+1)²` window around each pixel; near the array edge, over the neighbours
/// that exist. Two separable passes of slice additions.
pub fn box_mean(a: &Array2<f32>, r: usize) -> Array2<f32> {
    let (h, w) = a.dim();
    if r == 0 || h == 0 || w == 0 {
        return a.to_owned();
    }
    let src = a.as_standard_layout();
    let v = row_major(&src);
    let mut rows = vec![0.0f32; h * w];
    for (row, out) in v.chunks_exact(w).zip(rows.chunks_exact_mut(w)) {
        row_sums(row, r, out);
    }
    let (inv_cx, inv_cy) = (inv_counts(w, r), inv_counts(h, r));
    let mut out = vec![0.0f32; h * w];
    for (y, o) in out.chunks_exact_mut(w).enumerate() {
        col_sums(&rows, w, y, r, o);
        for (o, &c) in o.iter_mut().zip(&inv_cx) {
            *o *= c * inv_cy[y];
        }
    }
    plane_of((h, w), out)
}

/// Running column sums are recomputed from scratch every this many rows.
const RESUM: usize = 32;

/// The four directions `(dy, dx)` of the second differences: along rows, along columns, both
/// diagonals.
const DIRECTIONS: [(usize, isize); 4] = [(0, 1), (1, 0), (1, 1), (1, -1)];

/// Crown texture of a layer: for each of four directions `d`, the mean over the `(2r+1)²` window
/// of the squared second difference `(v(p) − (v(p−d) + v(p+d)) / 2)²`; the texture is the square
/// root of the smallest of the four. A straight line or edge has no second difference along its
/// own direction, so it scores (near) zero; isolated spots — tree crowns — differ from their
/// neighbours in every direction. Pixels whose neighbour in a direction falls outside the array
/// contribute 0 for that direction; windows are normalised like [`box_mean`].
pub fn crown_texture(v: &Array2<f32>, r: usize) -> Array2<f32> {
    let (h, w) = v.dim();
    if h == 0 || w == 0 {
        return Array2::zeros((h, w));
    }
    let src = v.as_standard_layout();
    let s = row_major(&src);
    let mut best = vec![f32::INFINITY; h * w];
    // Row sums are needed only while the column window passes over them: a ring of the last
    // 2r + 2 rows (those entering and leaving the window) instead of a whole plane.
    let k = 2 * r + 2;
    let mut ring = vec![0.0f32; k * w];
    let (mut sq, mut col) = (vec![0.0f32; w], vec![0.0f32; w]);
    for dir in DIRECTIONS {
        let mut next = 0;
        for (y, b) in best.chunks_exact_mut(w).enumerate() {
            while next <= (y + r).min(h - 1) {
                let slot = next % k;
                second_difference_row(s, w, next, dir, &mut sq);
                row_sums(&sq, r, &mut ring[slot * w..(slot + 1) * w]);
                next += 1;
            }
            let row = |j: usize| &ring[(j % k) * w..(j % k + 1) * w];
            // Window sums down the columns, kept running (add the row entering the window, drop
            // the one leaving it) and summed afresh every RESUM rows so rounding cannot drift.
            if y % RESUM == 0 {
                col.fill(0.0);
                for j in y.saturating_sub(r)..(y + r + 1).min(h) {
                    col.iter_mut().zip(row(j)).for_each(|(c, &v)| *c += v);
                }
            } else {
                if y + r < h {
                    col.iter_mut().zip(row(y + r)).for_each(|(c, &v)| *c += v);
                }
                if y > r {
                    col.iter_mut().zip(row(y - r - 1)).for_each(|(c, &v)| *c -= v);
                }
            }
            for (b, &c) in b.iter_mut().zip(&col) {
                *b = b.min(c);
            }
        }
    }
    let (inv_cx, inv_cy) = (inv_counts(w, r), inv_counts(h, r));
    for (y, b) in best.chunks_exact_mut(w).enumerate() {
        for (b, &c) in b.iter_mut().zip(&inv_cx) {
            *b = (*b * c * inv_cy[y]).max(0.0).sqrt();
        }
    }
    plane_of((h, w), best)
}

/// Squared second differences of row `y` of `s` (width `w`) in direction `(dy, dx)`, into `sq`;
/// 0 where a neighbour falls outside the array.
fn second_difference_row(s: &[f32], w: usize, y: usize, (dy, dx): (usize, isize), sq: &mut [f32]) {
    let h = s.len() / w.max(1);
    let (x0, x1) = (dx.unsigned_abs(), w.saturating_sub(dx.unsigned_abs()));
    sq.fill(0.0);
    if y >= dy && y + dy < h && x1 > x0 {
        let n = x1 - x0;
        let c0 = y * w + x0;
        let (p0, q0) = (
            ((y - dy) * w + x0).wrapping_add_signed(-dx),
            ((y + dy) * w + x0).wrapping_add_signed(dx),
        );
        let (cur, prev, next) = (&s[c0..c0 + n], &s[p0..p0 + n], &s[q0..q0 + n]);
        for (((o, &c), &p), &q) in sq[x0..x1].iter_mut().zip(cur).zip(prev).zip(next) {
            let d = c - 0.5 * (p + q);
            *o = d * d;
        }
    }
}

/// Crown texture of a block's vegetation index on both dates (window radius of the model's
/// `detect.texture.radius`): read by the texture-appearance mask and by the patch features
/// (`ctex_*`).
pub struct CrownLayers {
    /// Crown texture before.
    pub before: Array2<f32>,
    /// Crown texture after.
    pub after: Array2<f32>,
}

impl CrownLayers {
    /// Crown texture of both dates' vegetation index over windows of `radius` pixels.
    pub fn new(vi_before: &Array2<f32>, vi_after: &Array2<f32>, radius: usize) -> Self {
        Self {
            before: crown_texture(vi_before, radius),
            after: crown_texture(vi_after, radius),
        }
    }
}

/// Pixels where crown texture appeared, before any cleaning: observed, after texture above
/// `min_after`, its gain over before above `min_gain`, 3×3 mean vegetation index after above
/// `min_vi_after`.
pub fn raw_appeared(
    c: &CrownLayers,
    vi_after: &Array2<f32>,
    observed: &Array2<bool>,
    p: &TextureParams,
) -> Array2<bool> {
    let ma = box_mean(vi_after, 1);
    let mut m = Array2::from_elem(c.after.raw_dim(), false);
    Zip::from(&mut m)
        .and(&c.after)
        .and(&c.before)
        .and(&ma)
        .and(observed)
        .for_each(|m, &ta, &tb, &ma, &o| {
            *m = o & (ta > p.min_after) & (ta - tb > p.min_gain) & (ma > p.min_vi_after);
        });
    m
}

/// The cleaned texture-appeared mask: [`raw_appeared`], closed by `close_px`, opened by `open_px`.
pub fn appeared(c: &CrownLayers, vi_after: &Array2<f32>, observed: &Array2<bool>, p: &TextureParams) -> Array2<bool> {
    close_open(&raw_appeared(c, vi_after, observed, p), p.close_px, p.open_px)
}

/// The texture-appeared mask of a block, or `None` when the path is off.
pub fn appeared_in(
    c: &CrownLayers,
    vi_after: &Array2<f32>,
    observed: &Array2<bool>,
    p: &TextureParams,
) -> Option<Array2<bool>> {
    p.enabled.then(|| appeared(c, vi_after, observed, p))
}

/// How far (px) the mask at a pixel depends on pixels around it: the block halo it needs.
pub fn halo(p: &TextureParams) -> usize {
    if p.enabled {
        1 + p.radius + 2 * p.close_px + 2 * p.open_px + 1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::morphology::{dilate, erode, union};

    /// The cleaned mask straight from two vegetation-index layers.
    fn appeared(vb: &Array2<f32>, va: &Array2<f32>, observed: &Array2<bool>, p: &TextureParams) -> Array2<bool> {
        super::appeared(&CrownLayers::new(vb, va, p.radius), va, observed, p)
    }

    fn params() -> TextureParams {
        TextureParams {
            enabled: true,
            ..Default::default()
        }
    }

    /// Naive reference: mean over the in-array window.
    fn naive_mean(a: &Array2<f32>, r: usize) -> Array2<f32> {
        let (h, w) = a.dim();
        Array2::from_shape_fn((h, w), |(y, x)| {
            let (ya, yb) = (y.saturating_sub(r), (y + r + 1).min(h));
            let (xa, xb) = (x.saturating_sub(r), (x + r + 1).min(w));
            let mut s = 0.0;
            for yy in ya..yb {
                for xx in xa..xb {
                    s += a[(yy, xx)];
                }
            }
            s / ((yb - ya) * (xb - xa)) as f32
        })
    }

    /// A field planted with a crown grid (period 3 px) in columns `x0..`, soil elsewhere.
    fn orchard(h: usize, w: usize, x0: usize) -> Array2<f32> {
        Array2::from_shape_fn((h, w), |(y, x)| {
            if x >= x0 && y % 3 == 1 && x % 3 == 1 {
                0.8
            } else if x >= x0 {
                0.25
            } else {
                0.15
            }
        })
    }

    #[test]
    fn box_mean_matches_the_naive_window_mean_including_edges() {
        for (h, w) in [(7, 9), (6, 5), (3, 4), (1, 1)] {
            let a = Array2::from_shape_fn((h, w), |(y, x)| ((y * 31 + x * 17) % 11) as f32 / 10.0);
            for r in 0..4 {
                let fast = box_mean(&a, r);
                let slow = naive_mean(&a, r);
                for (f, s) in fast.iter().zip(&slow) {
                    assert!((f - s).abs() < 1e-5, "{h}x{w} r={r}: {f} vs {s}");
                }
            }
        }
        let a = Array2::from_shape_fn((7, 9), |(y, x)| ((y * 31 + x * 17) % 11) as f32 / 10.0);
        // Wider than the array: every pixel sees the whole array.
        let m = box_mean(&a, 20);
        let mean = a.sum() / a.len() as f32;
        assert!(m.iter().all(|&v| (v - mean).abs() < 1e-5));
    }

    #[test]
    fn crown_texture_is_zero_on_flat_ground_and_high_on_a_crown_grid() {
        let flat = Array2::from_elem((12, 12), 0.6f32);
        assert!(crown_texture(&flat, 2).iter().all(|&v| v < 1e-5));
        // Crowns 0.55 above the gaps, period 3: every direction's energy is 0.55² · 1.5 / 9.
        let t = crown_texture(&orchard(12, 12, 0), 2);
        let want = (0.55f32 * 0.55 * 1.5 / 9.0).sqrt();
        assert!(
            (t[(6, 6)] - want).abs() < 0.03,
            "crown grid texture {} vs {want}",
            t[(6, 6)]
        );
    }

    /// Naive reference for [`crown_texture`]: per pixel, per direction, the in-array window mean.
    fn naive_crown(v: &Array2<f32>, r: usize) -> Array2<f32> {
        let (h, w) = v.dim();
        let (hi, wi) = (h as isize, w as isize);
        let sq = |y: isize, x: isize, dy: isize, dx: isize| -> f32 {
            let inside = |y: isize, x: isize| y >= 0 && y < hi && x >= 0 && x < wi;
            if !inside(y - dy, x - dx) || !inside(y + dy, x + dx) {
                return 0.0;
            }
            let at = |y: isize, x: isize| v[(y as usize, x as usize)];
            let d = at(y, x) - 0.5 * (at(y - dy, x - dx) + at(y + dy, x + dx));
            d * d
        };
        Array2::from_shape_fn((h, w), |(y, x)| {
            let (ya, yb) = (y.saturating_sub(r), (y + r + 1).min(h));
            let (xa, xb) = (x.saturating_sub(r), (x + r + 1).min(w));
            let n = ((yb - ya) * (xb - xa)) as f32;
            let mut best = f32::INFINITY;
            for (dy, dx) in DIRECTIONS {
                let mut s = 0.0;
                for yy in ya..yb {
                    for xx in xa..xb {
                        s += sq(yy as isize, xx as isize, dy as isize, dx);
                    }
                }
                best = best.min(s / n);
            }
            best.sqrt()
        })
    }

    #[test]
    fn crown_texture_matches_the_naive_definition() {
        // Taller than the running column sums' resum period, so their bookkeeping is exercised.
        let v = Array2::from_shape_fn((83, 41), |(y, x)| ((y * 37 + x * 11 + y * x * 3) % 17) as f32 / 17.0);
        for r in 1..=3 {
            let (fast, slow) = (crown_texture(&v, r), naive_crown(&v, r));
            for ((y, x), f) in fast.indexed_iter() {
                assert!(
                    (f - slow[(y, x)]).abs() < 1e-4,
                    "r={r} at ({y},{x}): {f} vs {}",
                    slow[(y, x)]
                );
            }
        }
    }

    #[test]
    fn straight_edges_and_ridges_have_no_crown_texture() {
        let crowns = crown_texture(&orchard(16, 16, 0), 2)[(8, 8)];
        // Green field next to bare soil (a step of 0.55), vertical, horizontal and diagonal.
        let vertical = Array2::from_shape_fn((16, 16), |(_, x)| if x >= 8 { 0.8 } else { 0.25 });
        let horizontal = vertical.t().to_owned();
        let diagonal = Array2::from_shape_fn((16, 16), |(y, x)| if x >= y { 0.8 } else { 0.25 });
        // A one-pixel ridge (grass and soil) between two green fields.
        let ridge = Array2::from_shape_fn((16, 16), |(_, x)| if x == 8 { 0.45 } else { 0.8 });
        for (name, a) in [
            ("vertical", vertical),
            ("horizontal", horizontal),
            ("diagonal", diagonal),
            ("ridge", ridge),
        ] {
            let t = crown_texture(&a, 2);
            let inner = t.slice(ndarray::s![2..14, 2..14]);
            let max = inner.iter().cloned().fold(0.0f32, f32::max);
            assert!(max < 0.1 * crowns, "{name}: {max} vs crowns {crowns}");
        }
    }

    #[test]
    fn a_new_planting_appears_and_a_green_up_does_not() {
        let (h, w) = (24, 30);
        let before = Array2::from_elem((h, w), 0.15f32);
        let observed = Array2::from_elem((h, w), true);
        let m = appeared(&before, &orchard(h, w, 12), &observed, &params());
        assert!(m[(12, 20)], "planting interior not flagged");
        assert!(!m[(12, 3)], "unchanged soil flagged");
        let covered = m.slice(ndarray::s![.., 12..]).iter().filter(|&&v| v).count();
        assert!(
            covered as f32 > 0.8 * (h * (w - 12)) as f32,
            "planting covered {covered}"
        );
        // The whole field greens up uniformly: no texture, nothing appears.
        let green = Array2::from_elem((h, w), 0.75f32);
        assert!(!appeared(&before, &green, &observed, &params()).iter().any(|&v| v));
        // Half the field greens up: the edge between the halves must not appear.
        let half = Array2::from_shape_fn((h, w), |(_, x)| if x >= 15 { 0.75 } else { 0.15 });
        assert!(!appeared(&before, &half, &observed, &params()).iter().any(|&v| v));
    }

    #[test]
    fn texture_that_was_there_before_or_is_not_observed_does_not_appear() {
        let (h, w) = (24, 24);
        let o = orchard(h, w, 0);
        let observed = Array2::from_elem((h, w), true);
        assert!(!appeared(&o, &o, &observed, &params()).iter().any(|&v| v));
        let before = Array2::from_elem((h, w), 0.15f32);
        let hidden = Array2::from_elem((h, w), false);
        assert!(!appeared(&before, &o, &hidden, &params()).iter().any(|&v| v));
    }

    #[test]
    fn bare_crown_pattern_without_vegetation_does_not_appear() {
        // Same pattern an order of magnitude less green (e.g. stones on bare ground).
        let (h, w) = (24, 24);
        let dull = orchard(h, w, 0).mapv(|v| v - 0.4);
        let before = Array2::from_elem((h, w), -0.2f32);
        let observed = Array2::from_elem((h, w), true);
        assert!(!appeared(&before, &dull, &observed, &params()).iter().any(|&v| v));
    }

    #[test]
    fn the_cleaning_is_a_closing_then_an_opening() {
        use crate::detect::morphology::{close, open};
        let raw = Array2::from_shape_fn((23, 29), |(y, x)| (y * 7 + x * 13 + y * x) % 5 < 3 || x < 2);
        for (c, o) in [(0, 0), (1, 2), (2, 1), (0, 2), (3, 3)] {
            let want = open(&close(&raw, c), o);
            let got = dilate(&erode(&dilate(&raw, c), c + o), o);
            assert_eq!(got, want, "close {c} open {o}");
        }
    }

    #[test]
    fn off_means_no_mask_and_no_halo() {
        let p = TextureParams {
            enabled: false,
            ..params()
        };
        assert_eq!(halo(&p), 0);
        assert!(halo(&params()) >= 1 + 2 + 2 + 4);
        let m = Array2::from_elem((2, 2), false);
        let x = Array2::from_shape_fn((2, 2), |(y, x)| y == x);
        assert_eq!(union(m.clone(), None), m);
        assert_eq!(union(m, Some(&x)), x);
    }
}
