//! The two layout invariants the kernels rely on, stated once.
//!
//! The kernels sweep whole rows as slices and build their output planes from vectors. An array
//! made row-major by `as_standard_layout` always has its elements as one slice, and a kernel
//! always produces one value per pixel of the window it was given. When either failed, falling
//! back to an empty slice or a zero plane (as the kernels once did) would pass a broken kernel
//! off as "no change" everywhere; these helpers panic instead, naming the invariant — a bug in
//! landwatch, never a property of the input.

use ndarray::{Array2, CowArray, Dimension};

/// The elements of an array made row-major by `as_standard_layout`, as one slice.
pub fn row_major<'a, A, D: Dimension>(a: &'a CowArray<'_, A, D>) -> &'a [A] {
    a.as_slice()
        .expect("as_standard_layout gives a contiguous row-major array")
}

/// An `h × w` plane from its values in row-major order, one per pixel.
pub fn plane_of<A>(dim: (usize, usize), values: Vec<A>) -> Array2<A> {
    Array2::from_shape_vec(dim, values).expect("a kernel gives exactly one value per pixel of its window")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::s;

    #[test]
    fn a_strided_view_is_read_in_row_major_order() {
        let a = Array2::from_shape_fn((4, 5), |(y, x)| (y * 10 + x) as u32);
        let strided = a.slice(s![..;2, 1..;2]);
        let std = strided.as_standard_layout();
        assert_eq!(row_major(&std), &[1, 3, 21, 23]);
        let t = a.t();
        let std = t.as_standard_layout();
        assert_eq!(row_major(&std)[..4], [0, 10, 20, 30]);
    }

    #[test]
    #[should_panic(expected = "one value per pixel")]
    fn a_kernel_that_loses_pixels_is_a_bug_not_an_empty_change_mask() {
        plane_of((3, 4), vec![false; 11]);
    }
}
