//! Binary morphology on change masks: square structuring elements, done as separable
//! running-window passes so the cost does not grow with the radius squared.
//!
//! Pixels outside the array count as "not set" for dilation and "set" for erosion, so an
//! opening does not eat objects that touch the block edge (blocks carry a halo anyway).

use ndarray::{Array2, Axis};

/// Sets a pixel when any pixel within `r` (Chebyshev distance) is set.
pub fn dilate(m: &Array2<bool>, r: usize) -> Array2<bool> {
    if r == 0 {
        return m.clone();
    }
    let rows = pass(m, r, Axis(1), true);
    pass(&rows, r, Axis(0), true)
}

/// Keeps a pixel when every pixel within `r` is set.
pub fn erode(m: &Array2<bool>, r: usize) -> Array2<bool> {
    if r == 0 {
        return m.clone();
    }
    let rows = pass(m, r, Axis(1), false);
    pass(&rows, r, Axis(0), false)
}

/// Erosion then dilation: removes specks narrower than `2r + 1`.
///
/// ```
/// use landwatch::detect::morphology::open;
/// let mut m = ndarray::Array2::from_elem((7, 7), false);
/// m[(0, 0)] = true; // a one-pixel speck
/// for y in 3..6 { for x in 3..6 { m[(y, x)] = true; } } // a 3×3 object
/// let o = open(&m, 1);
/// assert!(!o[(0, 0)] && o[(4, 4)]);
/// ```
pub fn open(m: &Array2<bool>, r: usize) -> Array2<bool> {
    dilate(&erode(m, r), r)
}

/// Dilation then erosion: fills pinholes and gaps narrower than `2r + 1`.
pub fn close(m: &Array2<bool>, r: usize) -> Array2<bool> {
    erode(&dilate(m, r), r)
}

/// One 1-D running max (`any = true`) or min pass along `axis`, counting set pixels in the window.
fn pass(m: &Array2<bool>, r: usize, axis: Axis, any: bool) -> Array2<bool> {
    let mut out = Array2::from_elem(m.raw_dim(), false);
    for (src, mut dst) in m.lanes(axis).into_iter().zip(out.lanes_mut(axis)) {
        let n = src.len();
        let mut set = 0usize;
        // The window [i - r, i + r]; outside-array positions count as set for erosion only.
        let outside = if any { 0 } else { 1 };
        let at = |j: isize| -> usize {
            if j < 0 || j >= n as isize {
                outside
            } else {
                src[j as usize] as usize
            }
        };
        for j in -(r as isize)..=(r as isize) {
            set += at(j);
        }
        for i in 0..n {
            dst[i] = if any { set > 0 } else { set == 2 * r + 1 };
            set += at(i as isize + r as isize + 1);
            set -= at(i as isize - r as isize);
        }
    }
    out
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

    #[test]
    fn radius_zero_is_identity() {
        let m = mask(&["#.#", ".#."]);
        assert_eq!(dilate(&m, 0), m);
        assert_eq!(erode(&m, 0), m);
    }
}
