//! Streaming 8-connected component labelling of the change mask, and the minimum mapping unit.
//!
//! The streaming pass hands over the mask one row at a time, top to bottom; each row is cut
//! into runs of set pixels and a run joins every run of the row above it touches (diagonals
//! included), with a union–find over run labels. Only the runs are kept — a few bytes per run,
//! not per pixel — so memory follows the amount of change, not the image area, and a component
//! that crosses processing blocks or strips is one component.
//!
//! The minimum mapping unit then works like GDAL's sieve filter on a binary mask: components
//! under `min_pixels` are dropped, and holes under `min_pixels` inside a component are filled.

use crate::io::raster::Window;
use crate::types::features::{PixelSums, PIXEL_VALUES};
use ndarray::Array2;
use rayon::prelude::*;

/// One horizontal run of set pixels `[x0, x1)` on row `y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    y: u32,
    x0: u32,
    x1: u32,
    label: u32,
}

/// Labels the mask row by row; see the module docs.
#[derive(Debug, Default)]
pub struct Labeller {
    runs: Vec<Run>,
    /// The per-pixel feature values summed over each run.
    sums: Vec<PixelSums>,
    /// Index in `runs` where the last pushed row's runs begin.
    row_start: usize,
    parent: Vec<u32>,
    rows: u32,
}

/// One connected component, with its small holes filled.
#[derive(Debug, Clone)]
pub struct Component {
    /// The pixel box enclosing it.
    pub window: Window,
    /// Its pixels (set) within `window`.
    pub pixels: Array2<bool>,
    /// Set pixels before holes were filled (read by the unit tests; the patch stage uses `pixels`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub count: usize,
    /// Feature values summed over those pixels.
    pub sums: PixelSums,
}

impl Labeller {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next row of the mask (rows come top to bottom, all of the same width), with
    /// the feature values of its set pixels, left to right.
    pub fn push_row(&mut self, row: &[bool], values: &[[f32; PIXEL_VALUES]]) {
        let y = self.rows;
        self.rows += 1;
        let prev_end = self.runs.len();
        let mut above = self.row_start;
        self.row_start = prev_end;
        let (mut x, mut used) = (0, 0);
        while let Some(start) = row[x..].iter().position(|&v| v) {
            let x0 = x + start;
            let x1 = row[x0..].iter().position(|&v| !v).map_or(row.len(), |n| x0 + n);
            x = x1;
            let label = self.parent.len() as u32;
            self.parent.push(label);
            // Runs above that end before x0 - 1 touch neither this run nor any later one.
            while above < prev_end && (self.runs[above].x1 as usize) < x0 {
                above += 1;
            }
            let mut k = above;
            while k < prev_end && self.runs[k].x0 as usize <= x1 {
                let other = self.runs[k].label;
                self.union(label, other);
                k += 1;
            }
            // The pass hands one value per set pixel (both come from the same class plane).
            let run_values = values
                .get(used..used + (x1 - x0))
                .expect("push_row gets the feature values of every set pixel of the row");
            let mut sums = PixelSums::default();
            for v in run_values {
                sums.add(v);
            }
            used += x1 - x0;
            self.sums.push(sums);
            self.runs.push(Run {
                y,
                x0: x0 as u32,
                x1: x1 as u32,
                label,
            });
            if x >= row.len() {
                break;
            }
        }
    }

    fn find(&mut self, mut a: u32) -> u32 {
        while self.parent[a as usize] != a {
            let grand = self.parent[self.parent[a as usize] as usize];
            self.parent[a as usize] = grand;
            a = grand;
        }
        a
    }

    /// Joins two sets; the smaller label (the one met first in raster order) stays the root.
    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.parent[hi as usize] = lo;
        }
    }

    /// The components of at least `min_pixels` pixels, holes under `min_pixels` filled, in
    /// raster order of their first pixel (deterministic).
    pub fn finish(mut self, min_pixels: usize) -> Vec<Component> {
        let roots: Vec<u32> = (0..self.runs.len()).map(|i| self.find(self.runs[i].label)).collect();
        let mut order: Vec<usize> = (0..self.runs.len()).collect();
        // Stable: within a component the runs stay in raster order.
        order.sort_by_key(|&i| roots[i]);
        let groups: Vec<&[usize]> = order
            .chunk_by(|&a, &b| roots[a] == roots[b])
            .filter(|group| group.iter().map(|&i| self.runs[i].len()).sum::<usize>() >= min_pixels.max(1))
            .collect();
        // Hole filling floods each component's box: in parallel, in the same order.
        groups
            .into_par_iter()
            .map(|group| {
                let runs: Vec<Run> = group.iter().map(|&i| self.runs[i]).collect();
                let mut sums = PixelSums::default();
                group.iter().for_each(|&i| sums.merge(&self.sums[i]));
                component(&runs, sums, min_pixels)
            })
            .collect()
    }
}

impl Run {
    fn len(&self) -> usize {
        (self.x1 - self.x0) as usize
    }
}

/// The component of `runs`: a group of `Labeller::finish`, never empty (groups are cut from
/// the runs by `chunk_by`).
fn component(runs: &[Run], sums: PixelSums, min_pixels: usize) -> Component {
    let x0 = runs.iter().map(|r| r.x0).min().expect("a component has runs") as usize;
    let x1 = runs.iter().map(|r| r.x1).max().expect("a component has runs") as usize;
    let (y0, y1) = (runs[0].y as usize, runs[runs.len() - 1].y as usize + 1);
    let mut pixels = Array2::from_elem((y1 - y0, x1 - x0), false);
    for r in runs {
        let row = r.y as usize - y0;
        for x in r.x0 as usize..r.x1 as usize {
            pixels[(row, x - x0)] = true;
        }
    }
    fill_small_holes(&mut pixels, min_pixels);
    Component {
        window: Window::new(x0 as isize, y0 as isize, x1 - x0, y1 - y0),
        pixels,
        count: runs.iter().map(Run::len).sum(),
        sums,
    }
}

/// Sets the unset regions (8-connected, as the sieve and polygoniser see them) of fewer than
/// `max_hole` pixels that do not reach the edge of the box.
pub fn fill_small_holes(m: &mut Array2<bool>, max_hole: usize) {
    let (h, w) = m.dim();
    let mut seen = Array2::from_elem((h, w), false);
    let mut stack = Vec::new();
    let mut region = Vec::new();
    for start in ndarray::indices((h, w)) {
        if m[start] || seen[start] {
            continue;
        }
        region.clear();
        let mut open = false;
        seen[start] = true;
        stack.push(start);
        while let Some((y, x)) = stack.pop() {
            region.push((y, x));
            open |= y == 0 || x == 0 || y + 1 == h || x + 1 == w;
            for yy in y.saturating_sub(1)..(y + 2).min(h) {
                for xx in x.saturating_sub(1)..(x + 2).min(w) {
                    if !m[(yy, xx)] && !seen[(yy, xx)] {
                        seen[(yy, xx)] = true;
                        stack.push((yy, xx));
                    }
                }
            }
        }
        if !open && region.len() < max_hole {
            for &p in &region {
                m[p] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(rows: &[&str], min_pixels: usize) -> Vec<Component> {
        let mut l = Labeller::new();
        for r in rows {
            let row: Vec<bool> = r.bytes().map(|b| b == b'#').collect();
            // Each set pixel carries its column as its first value.
            let values: Vec<[f32; PIXEL_VALUES]> = (0..row.len())
                .filter(|&x| row[x])
                .map(|x| {
                    let mut v = [0.0; PIXEL_VALUES];
                    v[0] = x as f32;
                    v
                })
                .collect();
            l.push_row(&row, &values);
        }
        l.finish(min_pixels)
    }

    #[test]
    fn diagonal_neighbours_are_one_component() {
        let c = label(&["#...", ".#..", "..##", "....", "#..."], 1);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].count, 4);
        assert_eq!(c[0].window, Window::new(0, 0, 4, 3));
        assert_eq!(c[1].window, Window::new(0, 4, 1, 1));
        assert_eq!(c[0].sums.pixels, 4);
        assert_eq!(c[0].sums.sums[0], 6.0, "values follow their pixels (columns 0 to 3)");
    }

    #[test]
    #[should_panic(expected = "feature values of every set pixel")]
    fn a_row_handed_over_without_the_values_of_its_pixels_is_a_bug_not_a_zero_feature() {
        let mut l = Labeller::new();
        l.push_row(&[true, true, false, true], &[[0.5; PIXEL_VALUES]; 2]);
    }

    #[test]
    fn a_u_shape_joined_only_at_the_bottom_is_one_component() {
        let c = label(&["#..#", "#..#", "#..#", "####"], 1);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].count, 10);
    }

    #[test]
    fn small_components_are_dropped_and_small_holes_filled() {
        let rows = ["#####.....", "#...#...##", "#####.....", "..........", "######...."];
        let c = label(&rows, 4);
        assert_eq!(c.len(), 2, "the 2-pixel speck is dropped");
        assert!(c[0].pixels.iter().all(|&v| v), "3-pixel hole filled");
        assert_eq!(c[0].count, 12);
        let big_hole = label(&rows, 2);
        assert!(!big_hole[0].pixels[(1, 2)], "a hole of min_pixels or more stays");
    }

    #[test]
    fn matches_a_flood_fill_on_random_masks() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (h, w) = (37, 53);
        let m = Array2::from_shape_fn((h, w), |_| rng.random_bool(0.45));
        let mut l = Labeller::new();
        for row in m.rows() {
            let row = row.to_vec();
            let n = row.iter().filter(|&&v| v).count();
            l.push_row(&row, &vec![[0.0; PIXEL_VALUES]; n]);
        }
        let got: Vec<usize> = l.finish(1).iter().map(|c| c.count).collect();
        // Reference: flood fill in raster order of first pixel.
        let mut seen = Array2::from_elem((h, w), false);
        let mut want = Vec::new();
        for p in ndarray::indices((h, w)) {
            if !m[p] || seen[p] {
                continue;
            }
            let (mut n, mut stack) = (0, vec![p]);
            seen[p] = true;
            while let Some((y, x)) = stack.pop() {
                n += 1;
                for yy in y.saturating_sub(1)..(y + 2).min(h) {
                    for xx in x.saturating_sub(1)..(x + 2).min(w) {
                        if m[(yy, xx)] && !seen[(yy, xx)] {
                            seen[(yy, xx)] = true;
                            stack.push((yy, xx));
                        }
                    }
                }
            }
            want.push(n);
        }
        assert_eq!(got, want);
    }
}
