//! Before/after image chips: one pair of PNGs per patch so a reviewer sees the change at a glance.
//!
//! Both chips show the same window — the patch's box plus a margin, at least
//! [`MIN_WINDOW_PX`] pixels — read through [`Scene::read_pair`], so the after chip is aligned
//! and radiometrically normalised onto the before image. Colours are true colour (R, G, B)
//! with a 2–98 % stretch computed over the window's observed (cloud-free) pixels on *both*
//! dates together: one mapping for
//! the pair, so a brighter after chip means a brighter ground, not a different stretch. Small
//! windows are enlarged by whole factors (nearest neighbour, pixels stay visible as pixels) to
//! at least [`MIN_OUTPUT_PX`]; large ones are box-averaged down to at most [`MAX_OUTPUT_PX`].
//! The patch outline is drawn in yellow, and a scale bar with its length (digits in a built-in
//! 3×5 bitmap font) sits bottom-left.

use crate::detect::scene::{PairWindow, Scene, StripReader};
use crate::io::atomic;
use crate::io::raster::Window;
use crate::patches::{area::AreaCalc, vectorise, Patch};
use crate::{Error, Result};
use geo::CoordsIter;
use image::{ImageEncoder, Rgb, RgbImage};
use ndarray::{Array2, Array3};
use rayon::prelude::*;
use std::path::Path;

/// Smallest window side read around a patch, in image pixels (context for tiny patches).
pub const MIN_WINDOW_PX: usize = 64;
/// Chips smaller than this are enlarged by a whole factor.
pub const MIN_OUTPUT_PX: usize = 256;
/// Chips larger than this are reduced by a whole factor.
pub const MAX_OUTPUT_PX: usize = 512;

const OUTLINE: Rgb<u8> = Rgb([255, 230, 0]);
const NO_DATA: Rgb<u8> = Rgb([40, 40, 40]);

/// Writes `dir/chips/<id>_before.png` and `_after.png` for every patch (`dir` being a
/// [`atomic::StagingDir`]) and sets `Patch.chips` to those paths relative to `dir`. Returns
/// how many pairs were written; `progress` advances by one per pair written.
pub fn write_all(
    dir: &Path,
    scene: &Scene,
    patches: &mut [Patch],
    areas: &AreaCalc,
    progress: &indicatif::ProgressBar,
) -> Result<usize> {
    let chips = dir.join("chips");
    std::fs::create_dir_all(&chips).map_err(|e| Error::io(&chips, "cannot create the chips folder", e))?;
    let gt = vectorise::grid_transform(scene.before.georef.as_ref());
    // Metres per image pixel at each patch (None: unknown, bar in pixels). AreaCalc is not Sync.
    let metres: Vec<Option<f64>> = patches
        .iter()
        .map(|p| {
            areas
                .is_metric()
                .then(|| areas.m2_per_grid_unit(&p.shape).sqrt() * gt[1].abs())
        })
        .collect();
    let wins: Vec<Window> = patches.iter().map(|p| chip_window(p.pixel_box)).collect();
    let names: Vec<(String, String)> = patches
        .iter()
        .map(|p| {
            (
                format!("chips/{}_before.png", p.id),
                format!("chips/{}_after.png", p.id),
            )
        })
        .collect();
    render_in_row_order(scene, patches, &wins, gt, &metres, &|i, (before, after)| {
        write_png(&dir.join(&names[i].0), &before)?;
        write_png(&dir.join(&names[i].1), &after)?;
        progress.inc(1);
        Ok(())
    })?;
    for (p, rel) in patches.iter_mut().zip(names) {
        p.chips = Some(rel);
    }
    Ok(patches.len())
}

/// Chips whose window is taller than this many block rows are read on their own.
const MAX_HELD_ROWS: usize = 4;

/// Renders every patch's chips and hands each pair to `emit` (with the patch's index), reading
/// the images once, top to bottom: chip windows are taken in order of their top row, a batch
/// per block row, from row bands held by a [`StripReader`], so each tile is decoded once
/// however many chips overlap it, and each batch is rendered in parallel. A window taller than
/// [`MAX_HELD_ROWS`] block rows is read on its own (holding that many rows of the whole width
/// would cost more memory than decoding its tiles again).
fn render_in_row_order(
    scene: &Scene,
    patches: &[Patch],
    wins: &[Window],
    gt: gdal::GeoTransform,
    metres: &[Option<f64>],
    emit: &(dyn Fn(usize, (RgbImage, RgbImage)) -> Result<()> + Sync),
) -> Result<()> {
    let bs = scene.model().detect.block_size.max(1);
    let mut order: Vec<usize> = (0..patches.len()).collect();
    order.sort_by_key(|&i| (wins[i].y, i));
    let (tall, held): (Vec<usize>, Vec<usize>) = order.into_iter().partition(|&i| wins[i].h > MAX_HELD_ROWS * bs);
    let block_row = |i: usize| wins[i].y.div_euclid(bs as isize);
    let render = |i: usize, pair: PairWindow| emit(i, render_pair(&pair, &patches[i], wins[i], gt, metres[i]));
    let mut reader = StripReader::new(scene, 0, bs);
    for batch in held.chunk_by(|&a, &b| block_row(a) == block_row(b)) {
        let top = wins[batch[0]].y;
        let bottom = batch
            .iter()
            .map(|&i| wins[i].y + wins[i].h as isize)
            .max()
            .unwrap_or(top);
        let rows = reader.hold_rows(Window::new(0, top, scene.width(), (bottom - top).max(0) as usize))?;
        batch
            .par_iter()
            .try_for_each(|&i| render(i, scene.read_pair_held(&rows, wins[i])))?;
    }
    tall.par_iter().try_for_each(|&i| render(i, scene.read_pair(wins[i])?))
}

/// The square window read around a patch's pixel box.
pub fn chip_window(b: Window) -> Window {
    let side = b.w.max(b.h);
    let margin = (side / 4).max(8);
    let win = (side + 2 * margin).max(MIN_WINDOW_PX);
    let cx = b.x + (b.w / 2) as isize;
    let cy = b.y + (b.h / 2) as isize;
    Window::new(cx - (win / 2) as isize, cy - (win / 2) as isize, win, win)
}

/// Output pixels per window pixel: an integer enlargement, or a reduction `1/k`.
pub fn chip_scale(window_px: usize) -> f64 {
    if window_px > MAX_OUTPUT_PX {
        1.0 / window_px.div_ceil(MAX_OUTPUT_PX) as f64
    } else {
        MIN_OUTPUT_PX.div_ceil(window_px).max(1) as f64
    }
}

/// Renders both chips of one patch from its window `win` of the pair.
pub fn render_pair(
    pair: &PairWindow,
    p: &Patch,
    win: Window,
    gt: gdal::GeoTransform,
    m_per_px: Option<f64>,
) -> (RgbImage, RgbImage) {
    let scale = chip_scale(win.w);
    let stretch = Stretch::from_pair(pair);
    let ring_px = outline_in_chip(&p.shape, gt, win, scale);
    let mut out = Vec::with_capacity(2);
    for bands in [&pair.before, &pair.after] {
        let mut img = to_rgb(bands, &pair.valid, &stretch, scale);
        for ring in &ring_px {
            draw_polyline(&mut img, ring, OUTLINE);
        }
        draw_scale_bar(&mut img, m_per_px.map(|m| m / scale), scale);
        out.push(img);
    }
    let after = out.pop().unwrap_or_default();
    let before = out.pop().unwrap_or_default();
    (before, after)
}

/// Per-channel 2nd and 98th percentiles of R, G, B over the valid pixels of both dates.
pub struct Stretch {
    lo: [f32; 3],
    hi: [f32; 3],
}

/// Canonical band order is B, G, R(, NIR): R, G, B are bands 2, 1, 0.
const RGB_BANDS: [usize; 3] = [2, 1, 0];

impl Stretch {
    pub fn from_pair(pair: &PairWindow) -> Self {
        let mut lo = [0.0; 3];
        let mut hi = [1.0; 3];
        // Clouds and shadows would swamp the stretch: use observed pixels when there are some.
        let mask = if pair.observed.iter().any(|o| *o) {
            &pair.observed
        } else {
            &pair.valid
        };
        for (c, &b) in RGB_BANDS.iter().enumerate() {
            let mut v: Vec<f32> = Vec::new();
            for bands in [&pair.before, &pair.after] {
                let band = bands.index_axis(ndarray::Axis(0), b);
                v.extend(
                    band.iter()
                        .zip(mask.iter())
                        .filter(|(_, ok)| **ok)
                        .map(|(x, _)| *x)
                        .filter(|x| x.is_finite()),
                );
            }
            if let (Some(l), Some(h)) = (percentile(&mut v, 0.02), percentile(&mut v, 0.98)) {
                lo[c] = l;
                hi[c] = if h > l { h } else { l + 1e-3 };
            }
        }
        Self { lo, hi }
    }

    fn byte(&self, c: usize, v: f32) -> u8 {
        ((v - self.lo[c]) / (self.hi[c] - self.lo[c]) * 255.0)
            .clamp(0.0, 255.0)
            .round() as u8
    }
}

/// The `q` quantile (0..1) of `v` (reordered in place); `None` when empty.
pub fn percentile(v: &mut [f32], q: f64) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let k = ((v.len() - 1) as f64 * q).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, f32::total_cmp);
    Some(*x)
}

/// Stretches, resamples (whole-factor enlargement or box reduction) and colours one date.
fn to_rgb(bands: &Array3<f32>, valid: &Array2<bool>, s: &Stretch, scale: f64) -> RgbImage {
    let (_, h, w) = bands.dim();
    let (up, down) = if scale >= 1.0 {
        (scale as usize, 1)
    } else {
        (1, (1.0 / scale).round() as usize)
    };
    // Colour each (box-reduced) source pixel once, then enlarge by replication: stretching
    // every output pixel of an enlarged chip again would repeat the same work up² times.
    let (sw, sh) = (w.div_ceil(down), h.div_ceil(down));
    let small = RgbImage::from_fn(sw as u32, sh as u32, |x, y| {
        let (sx, sy) = (x as usize * down, y as usize * down);
        let mut acc = [0.0f32; 3];
        let mut n = 0.0f32;
        for yy in sy..(sy + down).min(h) {
            for xx in sx..(sx + down).min(w) {
                if valid[(yy, xx)] {
                    for (c, &b) in RGB_BANDS.iter().enumerate() {
                        acc[c] += bands[(b, yy, xx)];
                    }
                    n += 1.0;
                }
            }
        }
        if n == 0.0 {
            return NO_DATA;
        }
        Rgb([s.byte(0, acc[0] / n), s.byte(1, acc[1] / n), s.byte(2, acc[2] / n)])
    });
    if up == 1 {
        return small;
    }
    let up = up as u32;
    let mut out = RgbImage::new(small.width() * up, small.height() * up);
    for (x, y, p) in out.enumerate_pixels_mut() {
        *p = *small.get_pixel(x / up, y / up);
    }
    out
}

/// The patch's rings (exteriors and holes) in chip pixel coordinates.
fn outline_in_chip(
    shape: &geo::MultiPolygon<f64>,
    gt: gdal::GeoTransform,
    win: Window,
    scale: f64,
) -> Vec<Vec<(f64, f64)>> {
    let to_chip = |c: geo::Coord<f64>| {
        let px = (c.x - gt[0]) / gt[1];
        let py = (c.y - gt[3]) / gt[5];
        ((px - win.x as f64) * scale, (py - win.y as f64) * scale)
    };
    let mut rings = Vec::new();
    for poly in &shape.0 {
        rings.push(poly.exterior().coords_iter().map(to_chip).collect());
        rings.extend(poly.interiors().iter().map(|r| r.coords_iter().map(to_chip).collect()));
    }
    rings
}

/// Draws a 2-pixel-wide polyline, clipped to the image.
fn draw_polyline(img: &mut RgbImage, pts: &[(f64, f64)], colour: Rgb<u8>) {
    for seg in pts.windows(2) {
        let (x0, y0) = seg[0];
        let (x1, y1) = seg[1];
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
            for (dx, dy) in [(0.0, 0.0), (-1.0, 0.0), (0.0, -1.0), (-1.0, -1.0)] {
                put(img, (x + dx).floor() as i64, (y + dy).floor() as i64, colour);
            }
        }
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn fill(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, c: Rgb<u8>) {
    for yy in y..y + h {
        for xx in x..x + w {
            put(img, xx, yy, c);
        }
    }
}

/// A "nice" bar length (1, 2 or 5 × 10ⁿ) close to a quarter of the chip width; `unit_per_px`
/// is metres (or image pixels) per chip pixel. Returns (length in units, length in chip px).
pub fn nice_bar(chip_width: u32, unit_per_px: f64) -> (f64, f64) {
    let target = chip_width as f64 * 0.25 * unit_per_px;
    let mag = 10f64.powf(target.log10().floor());
    let len = [5.0, 2.0, 1.0]
        .iter()
        .map(|f| f * mag)
        .find(|l| *l <= target)
        .unwrap_or(mag);
    (len, len / unit_per_px)
}

/// A white bar with end ticks, black-edged, and its length above it ("50m", "1km", "20px").
fn draw_scale_bar(img: &mut RgbImage, m_per_chip_px: Option<f64>, scale: f64) {
    let (unit_per_px, suffix_m) = match m_per_chip_px {
        Some(m) if m > 0.0 && m.is_finite() => (m, true),
        _ => (1.0 / scale, false),
    };
    let (len, px) = nice_bar(img.width(), unit_per_px);
    let (x0, y0) = (8i64, img.height() as i64 - 12);
    let w = px.round() as i64;
    let black = Rgb([0, 0, 0]);
    let white = Rgb([255, 255, 255]);
    fill(img, x0 - 1, y0 - 1, w + 2, 6, black);
    fill(img, x0 - 1, y0 - 7, 4, 12, black);
    fill(img, x0 + w - 2, y0 - 7, 4, 12, black);
    fill(img, x0, y0, w, 4, white);
    fill(img, x0, y0 - 6, 2, 10, white);
    fill(img, x0 + w - 1, y0 - 6, 2, 10, white);
    let label = match (suffix_m, len >= 1000.0) {
        (true, true) => format!("{}km", trim_num(len / 1000.0)),
        (true, false) => format!("{}m", trim_num(len)),
        (false, _) => format!("{}px", trim_num(len)),
    };
    draw_text(img, &label, x0 + 6, y0 - 20, 2);
}

fn trim_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// Glyph rows (top to bottom), each row's bits left to right in the low `width` bits.
fn glyph(c: char) -> Option<(u8, [u8; 5])> {
    Some(match c {
        '0' => (3, [0b111, 0b101, 0b101, 0b101, 0b111]),
        '1' => (3, [0b010, 0b110, 0b010, 0b010, 0b111]),
        '2' => (3, [0b111, 0b001, 0b111, 0b100, 0b111]),
        '3' => (3, [0b111, 0b001, 0b111, 0b001, 0b111]),
        '4' => (3, [0b101, 0b101, 0b111, 0b001, 0b001]),
        '5' => (3, [0b111, 0b100, 0b111, 0b001, 0b111]),
        '6' => (3, [0b111, 0b100, 0b111, 0b101, 0b111]),
        '7' => (3, [0b111, 0b001, 0b001, 0b001, 0b001]),
        '8' => (3, [0b111, 0b101, 0b111, 0b101, 0b111]),
        '9' => (3, [0b111, 0b101, 0b111, 0b001, 0b111]),
        '.' => (1, [0, 0, 0, 0, 1]),
        'm' => (5, [0b00000, 0b11010, 0b10101, 0b10101, 0b10101]),
        'k' => (3, [0b100, 0b101, 0b110, 0b101, 0b101]),
        'p' => (3, [0b000, 0b110, 0b101, 0b110, 0b100]),
        'x' => (3, [0b000, 0b101, 0b010, 0b101, 0b101]),
        _ => return None,
    })
}

/// Draws `text` in white with a black shadow, each font pixel `size`×`size`.
fn draw_text(img: &mut RgbImage, text: &str, x: i64, y: i64, size: i64) {
    let mut cx = x;
    for c in text.chars() {
        let Some((w, rows)) = glyph(c) else { continue };
        for (colour, off) in [(Rgb([0, 0, 0]), 1), (Rgb([255, 255, 255]), 0)] {
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..w {
                    if bits >> (w - 1 - col) & 1 == 1 {
                        fill(
                            img,
                            cx + col as i64 * size + off,
                            y + r as i64 * size + off,
                            size,
                            size,
                            colour,
                        );
                    }
                }
            }
        }
        cx += (w as i64 + 1) * size;
    }
}

/// Encodes a PNG in memory and writes it atomically.
pub fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::Other(format!("{}: cannot encode PNG: {e}", path.display())))?;
    atomic::write_staged(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_square_with_margin_and_a_minimum() {
        let w = chip_window(Window::new(100, 200, 10, 6));
        assert_eq!((w.w, w.h), (MIN_WINDOW_PX, MIN_WINDOW_PX));
        assert!(w.x <= 100 && w.x + w.w as isize >= 110 && w.y <= 200 && w.y + w.h as isize >= 206);
        let big = chip_window(Window::new(0, 0, 400, 100));
        assert_eq!(big.w, 400 + 2 * 100);
        assert_eq!(chip_scale(64), 4.0);
        assert_eq!(chip_scale(600), 0.5);
        assert!(64.0 * chip_scale(64) >= MIN_OUTPUT_PX as f64);
    }

    #[test]
    fn scale_bar_lengths_are_nice() {
        // 256 px chip at 0.5 m/px: a quarter is 32 m → 20 m bar of 40 px.
        let (len, px) = nice_bar(256, 0.5);
        assert_eq!(len, 20.0);
        assert!((px - 40.0).abs() < 1e-9);
        assert_eq!(nice_bar(512, 4.0).0, 500.0);
    }

    #[test]
    fn percentiles_and_outline_drawing() {
        let mut v: Vec<f32> = (0..101).map(|i| i as f32).collect();
        assert_eq!(percentile(&mut v, 0.02), Some(2.0));
        assert_eq!(percentile(&mut v, 0.98), Some(98.0));
        let mut img = RgbImage::new(20, 20);
        draw_polyline(&mut img, &[(2.0, 2.0), (15.0, 2.0), (15.0, 15.0)], OUTLINE);
        assert_eq!(*img.get_pixel(8, 2), OUTLINE);
        assert_eq!(*img.get_pixel(15, 10), OUTLINE);
        assert_eq!(*img.get_pixel(8, 10), Rgb([0, 0, 0]));
    }
}
