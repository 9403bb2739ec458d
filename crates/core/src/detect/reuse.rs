//! Decoded tiles kept from calibration for the streaming pass.
//!
//! GDAL decodes whole tiles (or strips), so calibration's sixteen 256-px windows decode every
//! tile they touch: at 8192² with 512-px tiles, a quarter of both images, which the pass then
//! decoded again. Calibration reads the tile-aligned rectangle around each window instead and
//! keeps it here; the strip reader takes those tiles from here and reads only the rest of each
//! row band from the file. The pixels are the same either way, so the results do not change.

use crate::io::raster::{intersect, HeldPixels, Window};
use crate::Result;
use gdal::Dataset;
use std::sync::Arc;

/// Largest tile (or strip) kept, in pixels: rectangles stay a few MiB each.
const MAX_TILE_PIXELS: usize = 512 * 512;
/// Most pixels kept per image, whatever the window count and tile shape.
const MAX_KEPT_PIXELS: usize = 64 << 20;

/// The tile layout of a raster file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileGrid {
    pub tile_w: usize,
    pub tile_h: usize,
    pub width: usize,
    pub height: usize,
}

impl TileGrid {
    /// The layout of band 1, when its tiles are small enough to keep.
    pub fn of(ds: &Dataset) -> Option<Self> {
        let band = ds.rasterband(1).ok()?;
        let (tile_w, tile_h) = band.block_size();
        let (width, height) = ds.raster_size();
        (tile_w > 0 && tile_h > 0 && tile_w * tile_h <= MAX_TILE_PIXELS).then_some(Self {
            tile_w,
            tile_h,
            width,
            height,
        })
    }

    /// The whole tiles `win` touches, clipped to the image (`None` when it misses the image).
    pub fn align(&self, win: Window) -> Option<Window> {
        let c = intersect(win, Window::new(0, 0, self.width, self.height))?;
        let (x0, y0) = (
            c.x as usize / self.tile_w * self.tile_w,
            c.y as usize / self.tile_h * self.tile_h,
        );
        let x1 = (c.x as usize + c.w).div_ceil(self.tile_w) * self.tile_w;
        let y1 = (c.y as usize + c.h).div_ceil(self.tile_h) * self.tile_h;
        let (x1, y1) = (x1.min(self.width), y1.min(self.height));
        Some(Window::new(x0 as isize, y0 as isize, x1 - x0, y1 - y0))
    }

    /// Whether rows `y0..y1` start and end on tile-row boundaries (or the image's last row).
    fn rows_aligned(&self, y0: usize, y1: usize) -> bool {
        y0 % self.tile_h == 0 && (y1 % self.tile_h == 0 || y1 == self.height)
    }
}

/// Tile-aligned rectangles of one image decoded earlier, waiting for the strip reader.
#[derive(Default)]
pub struct KeptTiles {
    grid: Option<TileGrid>,
    rects: Vec<Arc<HeldPixels>>,
    pixels: usize,
}

impl KeptTiles {
    pub fn new(grid: Option<TileGrid>) -> Self {
        Self {
            grid,
            ..Default::default()
        }
    }

    /// The rectangle to read for `win`: with the whole tiles it touches when they can be kept
    /// (`win` itself where it reaches past the image).
    pub fn rect_for(&self, win: Window) -> Window {
        match self.grid.and_then(|g| g.align(win)) {
            Some(a) => bounding(a, win),
            None => win,
        }
    }

    /// Keeps a rectangle read for [`KeptTiles::rect_for`] (once per rectangle; nothing past the
    /// pixel budget, nothing when the tiles cannot be kept).
    pub fn keep(&mut self, rect: Arc<HeldPixels>) {
        let Some(g) = self.grid else { return };
        let n = rect.win.w * rect.win.h;
        if g.align(rect.win) != Some(rect.win)
            || self.pixels + n > MAX_KEPT_PIXELS
            || self.rects.iter().any(|r| r.win == rect.win)
        {
            return;
        }
        self.pixels += n;
        self.rects.push(rect);
    }

    /// The pixels of `band` (a row band, read top to bottom) as pieces: kept tiles where there
    /// are some, the rest through `read`. Tiles wholly above the band's end are let go.
    pub fn band(
        &mut self,
        band: Window,
        mut read: impl FnMut(Window) -> Result<HeldPixels>,
    ) -> Result<Vec<Arc<HeldPixels>>> {
        let (y0, y1) = (band.y.max(0) as usize, (band.y + band.h as isize).max(0) as usize);
        let grid = match self.grid {
            Some(g) if !self.rects.is_empty() && g.rows_aligned(y0, y1) => g,
            // Nothing kept that could serve this band: all of it from the file (same pixels).
            _ => return Ok(vec![Arc::new(read(band)?)]),
        };
        let mut pieces = Vec::new();
        for (g0, g1, holders) in self.row_groups(grid, y0, y1) {
            let rows = Window::new(band.x, g0 as isize, band.w, g1 - g0);
            let mut covered = Vec::new();
            for rect in holders.iter().map(|&i| &self.rects[i]) {
                // A holder covers the group's rows (`row_groups`), so the crop is never empty; a
                // skipped one would leave its columns unread and taken as not observed.
                let p = rect
                    .crop(Window::new(rect.win.x, g0 as isize, rect.win.w, g1 - g0))
                    .expect("a kept rectangle covers the rows of its group");
                pieces.push(Arc::new(p));
                covered.push((rect.win.x, rect.win.x + rect.win.w as isize));
            }
            for gap in gaps(rows, &merged(covered)) {
                pieces.push(Arc::new(read(gap)?));
            }
        }
        self.rects.retain(|r| r.win.y + r.win.h as isize > y1 as isize);
        Ok(pieces)
    }

    /// Rows `y0..y1` in runs of tile rows held by the same kept rectangles, each with the
    /// indices of those rectangles (each covers the whole run).
    fn row_groups(&self, grid: TileGrid, y0: usize, y1: usize) -> Vec<(usize, usize, Vec<usize>)> {
        let mut groups: Vec<(usize, usize, Vec<usize>)> = Vec::new();
        let mut ty = y0;
        while ty < y1 {
            let te = (ty + grid.tile_h).min(y1);
            let holders: Vec<usize> = (0..self.rects.len())
                .filter(|&i| covers_rows(self.rects[i].win, ty, te))
                .collect();
            match groups.last_mut() {
                Some(last) if last.1 == ty && last.2 == holders => last.1 = te,
                _ => groups.push((ty, te, holders)),
            }
            ty = te;
        }
        groups
    }
}

/// The smallest window holding both.
fn bounding(a: Window, b: Window) -> Window {
    let (x0, y0) = (a.x.min(b.x), a.y.min(b.y));
    let x1 = (a.x + a.w as isize).max(b.x + b.w as isize);
    let y1 = (a.y + a.h as isize).max(b.y + b.h as isize);
    Window::new(x0, y0, (x1 - x0) as usize, (y1 - y0) as usize)
}

fn covers_rows(w: Window, y0: usize, y1: usize) -> bool {
    w.y <= y0 as isize && w.y + w.h as isize >= y1 as isize
}

/// Column ranges sorted and merged where they touch or overlap.
fn merged(mut ranges: Vec<(isize, isize)>) -> Vec<(isize, isize)> {
    ranges.sort_unstable();
    let mut out: Vec<(isize, isize)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The parts of `rows` outside the (merged, sorted) column ranges `covered`.
fn gaps(rows: Window, covered: &[(isize, isize)]) -> Vec<Window> {
    let end = rows.x + rows.w as isize;
    let mut out = Vec::new();
    let mut x = rows.x;
    for &(a, b) in covered {
        if a > x {
            out.push(Window::new(x, rows.y, (a.min(end) - x) as usize, rows.h));
        }
        x = x.max(b);
    }
    if x < end {
        out.push(Window::new(x, rows.y, (end - x) as usize, rows.h));
    }
    out.into_iter().filter(|w| w.w > 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array3};

    const GRID: TileGrid = TileGrid {
        tile_w: 4,
        tile_h: 4,
        width: 20,
        height: 12,
    };

    /// A u16 image whose value names its pixel, so a misplaced piece shows.
    fn image_rect(win: Window) -> HeldPixels {
        let v = |y: isize, x: isize| {
            let inside = (0..GRID.width as isize).contains(&x) && (0..GRID.height as isize).contains(&y);
            if inside {
                (y * 100 + x + 1) as u16
            } else {
                0
            }
        };
        HeldPixels::from_u16(
            win,
            Array3::from_shape_fn((1, win.h, win.w), |(_, r, c)| v(win.y + r as isize, win.x + c as isize)),
            Array2::from_shape_fn((win.h, win.w), |(r, c)| v(win.y + r as isize, win.x + c as isize) > 0),
            1.0,
        )
    }

    #[test]
    fn windows_align_to_whole_tiles_inside_the_image() {
        assert_eq!(GRID.align(Window::new(5, 3, 6, 2)), Some(Window::new(4, 0, 8, 8)));
        assert_eq!(GRID.align(Window::new(-3, 9, 30, 9)), Some(Window::new(0, 8, 20, 4)));
        assert_eq!(GRID.align(Window::new(30, 0, 4, 4)), None);
    }

    #[test]
    fn a_band_from_kept_tiles_and_reads_equals_a_plain_read() {
        let mut kept = KeptTiles::new(Some(GRID));
        for w in [
            Window::new(5, 1, 3, 3),
            Window::new(13, 5, 2, 5),
            Window::new(6, 2, 2, 2),
        ] {
            kept.keep(Arc::new(image_rect(kept.rect_for(w))));
        }
        assert_eq!(kept.rects.len(), 2, "the same rectangle is kept once");
        let mut read_px = 0;
        for y in [0, 4, 8] {
            let band = Window::new(-2, y, 24, 4);
            let pieces = kept
                .band(band, |w| {
                    read_px += w.w * w.h;
                    Ok(image_rect(w))
                })
                .unwrap();
            let refs: Vec<&HeldPixels> = pieces.iter().map(|p| p.as_ref()).collect();
            let got = HeldPixels::cut(&refs, band);
            let want = HeldPixels::cut(&[&image_rect(band)], band);
            assert_eq!(got.bands, want.bands, "band at row {y}");
            assert_eq!(got.valid, want.valid, "band at row {y}");
        }
        assert_eq!(read_px, 3 * 24 * 4 - (4 * 4 + 4 * 8), "kept tiles are not read again");
        assert!(kept.rects.is_empty(), "tiles are let go once the reader is past them");
    }

    #[test]
    fn overlapping_rectangles_of_a_striped_image_give_every_row() {
        let strips = TileGrid {
            tile_w: 20,
            tile_h: 1,
            ..GRID
        };
        let mut kept = KeptTiles::new(Some(strips));
        for w in [Window::new(2, 1, 3, 5), Window::new(9, 4, 3, 6)] {
            kept.keep(Arc::new(image_rect(kept.rect_for(w))));
        }
        let band = Window::new(-1, 0, 22, 12);
        let pieces = kept.band(band, |w| Ok(image_rect(w))).unwrap();
        let refs: Vec<&HeldPixels> = pieces.iter().map(|p| p.as_ref()).collect();
        let got = HeldPixels::cut(&refs, band);
        let want = HeldPixels::cut(&[&image_rect(band)], band);
        assert_eq!(got.bands, want.bands);
        assert_eq!(got.valid, want.valid);
    }

    #[test]
    fn unaligned_bands_are_read_whole() {
        let mut kept = KeptTiles::new(Some(GRID));
        kept.keep(Arc::new(image_rect(kept.rect_for(Window::new(5, 1, 3, 3)))));
        let mut reads = Vec::new();
        kept.band(Window::new(0, 2, 20, 4), |w| {
            reads.push(w);
            Ok(image_rect(w))
        })
        .unwrap();
        assert_eq!(reads, vec![Window::new(0, 2, 20, 4)]);
    }
}
