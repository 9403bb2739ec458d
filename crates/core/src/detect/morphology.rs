//! Binary morphology on change masks: square structuring elements, done as separable row and
//! column passes (cost linear in the radius) over whole rows of bytes, which vectorise.
//!
//! Pixels outside the array count as "not set" for dilation and "set" for erosion, so an
//! opening does not eat objects that touch the block edge (blocks carry a halo anyway).

use crate::types::layout::{plane_of, row_major};
use ndarray::Array2;

/// Sets a pixel when any pixel within `r` (Chebyshev distance) is set.
pub fn dilate(m: &Array2<bool>, r: usize) -> Array2<bool> {
    separable(m, r, true)
}

/// Keeps a pixel when every pixel within `r` is set.
pub fn erode(m: &Array2<bool>, r: usize) -> Array2<bool> {
    separable(m, r, false)
}

/// Erosion then dilation: removes specks narrower than `2r + 1`.
///
/// ```
/// use landwatch_core::detect::morphology::open;
/// let mut m = ndarray::Array2::from_elem((7, 7), false);
/// m[(0, 0)] = true; // a one-pixel speck
/// for y in 3..6 { for x in 3..6 { m[(y, x)] = true; } } // a 3×3 object
/// let o = open(&m, 1);
/// assert!(!o[(0, 0)] && o[(4, 4)]);
/// ```
pub fn open(m: &Array2<bool>, r: usize) -> Array2<bool> {
    dilate(&erode(m, r), r)
}

/// A closing by `c` then an opening by `o`, the cleaning of the appearance paths:
/// `open(close(m, c), o) = dilate(erode(erode(dilate(m, c), c), o), o)`, and two square erosions
/// are one of the summed radius, so three passes instead of four.
pub fn close_open(m: &Array2<bool>, c: usize, o: usize) -> Array2<bool> {
    if !m.iter().any(|&v| v) {
        return m.clone();
    }
    dilate(&erode(&dilate(m, c), c + o), o)
}

/// `m` with the pixels of `extra` (if any) set.
pub fn union(mut m: Array2<bool>, extra: Option<&Array2<bool>>) -> Array2<bool> {
    if let Some(x) = extra {
        ndarray::Zip::from(&mut m).and(x).for_each(|m, &x| *m |= x);
    }
    m
}

/// Dilation then erosion: fills pinholes and gaps narrower than `2r + 1`.
pub fn close(m: &Array2<bool>, r: usize) -> Array2<bool> {
    erode(&dilate(m, r), r)
}

/// Dilation (`any`) or erosion: a pass along rows, then one across them, each row built in
/// place (no whole-plane copies first).
fn separable(m: &Array2<bool>, r: usize, any: bool) -> Array2<bool> {
    if r == 0 {
        return m.clone();
    }
    let (h, w) = m.dim();
    let src = m.as_standard_layout();
    let src = row_major(&src);
    let mut rows = Vec::with_capacity(h * w);
    for s in src.chunks_exact(w) {
        let start = rows.len();
        rows.extend_from_slice(s);
        combine_shifted(s, &mut rows[start..], r, any);
    }
    // Each output row: its first two rows in reach combined as it is appended, then the rest.
    // Rows outside the array count as unset for dilation and set for erosion: skipped.
    let row = |y: usize| &rows[y * w..(y + 1) * w];
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        let (lo, hi) = (y.saturating_sub(r), (y + r + 1).min(h));
        let start = out.len();
        match (hi - lo >= 2, any) {
            (false, _) => out.extend_from_slice(row(lo)),
            (true, true) => out.extend(row(lo).iter().zip(row(lo + 1)).map(|(&a, &b)| a | b)),
            (true, false) => out.extend(row(lo).iter().zip(row(lo + 1)).map(|(&a, &b)| a & b)),
        }
        for yy in lo + 2..hi {
            combine(&mut out[start..], row(yy), any);
        }
    }
    plane_of((h, w), out)
}

/// `dst[x]` = OR (`any`) or AND of `src[x - r ..= x + r]`, positions outside the row skipped;
/// `dst` starts as a copy of `src`.
fn combine_shifted(src: &[bool], dst: &mut [bool], r: usize, any: bool) {
    let w = src.len();
    for k in 1..=r.min(w.saturating_sub(1)) {
        combine(&mut dst[..w - k], &src[k..], any);
        combine(&mut dst[k..], &src[..w - k], any);
    }
}

#[inline]
fn combine(dst: &mut [bool], src: &[bool], any: bool) {
    if any {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d |= s);
    } else {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d &= s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> Array2<bool> {
        let h = rows.len();
        let w = rows[0].len();
        Array2::from_shape_fn((h, w), |(y, x)| rows[y].as_bytes()[x] == b'#')
    }

    #[test]
    fn opening_removes_a_speck_and_keeps_a_block() {
        let m = mask(&["#.......", "........", "...###..", "...###..", "...###..", "........"]);
        let o = open(&m, 1);
        assert!(!o[(0, 0)], "isolated pixel survives opening");
        assert!(o[(3, 4)] && o[(2, 3)] && o[(4, 5)], "3x3 block lost");
        assert_eq!(o.iter().filter(|&&v| v).count(), 9);
    }

    #[test]
    fn closing_fills_a_pinhole() {
        let m = mask(&["#####", "#####", "##.##", "#####", "#####"]);
        assert!(close(&m, 1)[(2, 2)]);
    }

    #[test]
    fn erosion_keeps_objects_touching_the_edge() {
        let m = mask(&["###.", "###.", "###."]);
        let e = erode(&m, 1);
        assert!(e[(0, 0)] && e[(1, 1)]);
        assert!(!e[(1, 2)], "pixel next to an unset column must be eroded");
    }

    /// The definition, pixel by pixel: outside the array is unset for dilation, set for erosion.
    fn naive(m: &Array2<bool>, r: usize, any: bool) -> Array2<bool> {
        let (h, w) = m.dim();
        let r = r as isize;
        Array2::from_shape_fn((h, w), |(y, x)| {
            let mut vals = (-r..=r).flat_map(|dy| (-r..=r).map(move |dx| (y as isize + dy, x as isize + dx)));
            let at = |(yy, xx): (isize, isize)| {
                let inside = yy >= 0 && xx >= 0 && yy < h as isize && xx < w as isize;
                if inside {
                    m[(yy as usize, xx as usize)]
                } else {
                    !any
                }
            };
            if any {
                vals.any(at)
            } else {
                vals.all(at)
            }
        })
    }

    #[test]
    fn separable_passes_match_the_definition() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (h, w) in [(1, 1), (3, 9), (17, 5), (40, 33)] {
            let m = Array2::from_shape_fn((h, w), |_| rng.random_bool(0.6));
            for r in 1..5 {
                assert_eq!(dilate(&m, r), naive(&m, r, true), "dilate {h}x{w} r={r}");
                assert_eq!(erode(&m, r), naive(&m, r, false), "erode {h}x{w} r={r}");
            }
        }
    }

    #[test]
    fn radius_zero_is_identity() {
        let m = mask(&["#.#", ".#."]);
        assert_eq!(dilate(&m, 0), m);
        assert_eq!(erode(&m, 0), m);
    }
}
