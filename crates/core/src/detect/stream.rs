//! The streaming pass: the image is cut into blocks, each block is read with a halo (so
//! neighbourhood operations see across block edges), processed in parallel, cropped back and
//! written. Peak memory depends on the block size and thread count, not on the image size.

use super::gate::{self, BlockLayers};
use super::indices::{self, as_flat, spectrum, MAX_BANDS};
use super::morphology;
use super::pixel;
use super::scene::{HeldPair, PairWindow, Scene, StripReader};
use super::texture::{self, CrownLayers};
use crate::io::raster::Window;
use crate::model::{FilmParams, Model};
use crate::types::features::PIXEL_VALUES;
use crate::types::layout::{plane_of, row_major};
use crate::{Error, Result};
use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::{Dataset, DriverManager, Metadata};
use ndarray::{s, Array2, ArrayView1, ArrayView2, Zip};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;

/// Pixel classes written to band 1 of `change.tif`.
pub const CLASS_UNCHANGED: u8 = 0;
/// Change of use.
pub const CLASS_CHANGED: u8 = 1;
/// Changed, but the after state looks like a crop cycle (see [`super::gate`]).
pub const CLASS_CROP_CYCLE: u8 = 2;
/// Not observed on both dates (cloud, shadow, nodata).
pub const CLASS_UNOBSERVED: u8 = 255;

/// Receives each row of the change mask with the feature values of its set pixels.
pub type MaskRowSink<'a> = dyn FnMut(&[bool], &[[f32; PIXEL_VALUES]]) + Send + 'a;

/// Pixel counts from the streaming pass.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassStats {
    /// Pixels of the grid.
    pub pixels: u64,
    /// Pixels observed on both dates.
    pub observed: u64,
    /// Pixels not observed on both dates (cloud, shadow, nodata).
    pub unobserved: u64,
    /// Pixels classed as change of use.
    pub changed: u64,
    /// Blocks streamed.
    pub blocks: usize,
}

struct BlockOut {
    win: Window,
    /// Feature values of the changed pixels, in row-major order.
    values: Vec<[f32; PIXEL_VALUES]>,
    class: Array2<u8>,
    magnitude: Array2<u8>,
    stats: PassStats,
}

/// Creates an output GeoTIFF on the scene's grid.
pub fn create_grid_tiff(scene: &Scene, path: &Path, bands: usize, extra: &[&str]) -> Result<Dataset> {
    let drv = DriverManager::get_driver_by_name("GTiff").map_err(|e| Error::gdal(path, "GTiff driver", e))?;
    let mut opts = vec!["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256"];
    opts.extend_from_slice(extra);
    let co = RasterCreationOptions::from_iter(opts);
    let mut ds = drv
        .create_with_band_type_with_options::<u8, _>(path, scene.width(), scene.height(), bands, &co)
        .map_err(|e| Error::gdal(path, "cannot create", e))?;
    if let Some(g) = &scene.before.georef {
        ds.set_geo_transform(&g.geo_transform)
            .map_err(|e| Error::gdal(path, "cannot set geotransform", e))?;
        if !g.wkt.is_empty() {
            ds.set_projection(&g.wkt)
                .map_err(|e| Error::gdal(path, "cannot set CRS", e))?;
        }
    }
    Ok(ds)
}

/// Runs detection over every block; writes `change.tif` (band 1 class, band 2 evidence as a
/// percentage of the threshold, capped at 255) and hands each row of the binary change mask
/// (class "change of use"), top to bottom, with the feature values of its set pixels, to
/// `mask_row`.
pub fn run(
    scene: &Scene,
    threshold: f32,
    change_path: &Path,
    mask_row: &mut MaskRowSink<'_>,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<PassStats> {
    let model = scene.model();
    let bs = model.detect.block_size;
    let morph = model.detect.morphology_px(scene.pixel_metres());
    let halo = rules_halo(scene);
    // A learned model decides inside the rules evidence's candidates (see `crate::learn`).
    let learned = model
        .learned
        .as_deref()
        .map(|l| crate::learn::inference::Prepared::new(scene, l, &model.source))
        .transpose()?;
    let halo = halo + learned.as_ref().map_or(0, |l| l.extra_halo());
    let blocks = block_grid(scene.width(), scene.height(), bs);
    // ZSTD compresses the mostly-constant class band well at a fraction of DEFLATE's cost;
    // level 1 is within a few per cent of level 3 in size here, and faster. Band interleaving
    // keeps the constant class runs apart from the noisy evidence: at 8192 px the file is 20 %
    // smaller and compressing it takes a third of the time it takes pixel-interleaved.
    let change = create_grid_tiff(
        scene,
        change_path,
        2,
        &["COMPRESS=ZSTD", "ZSTD_LEVEL=1", "INTERLEAVE=BAND"],
    )?;
    let strips = strip_rows(&blocks);
    // Three stages overlap: a reader decodes the next strip, the rayon pool processes this one,
    // a writer compresses and labels the previous one. Each hand-over holds at most one strip
    // waiting (a little slack for uneven strips), so memory stays a few strips.
    let (to_compute, from_reader) = std::sync::mpsc::sync_channel::<Result<HeldPair>>(1);
    let (to_writer, from_compute) = std::sync::mpsc::sync_channel::<Vec<BlockOut>>(1);
    let total_blocks = blocks.len();
    std::thread::scope(|sc| {
        let strips_r = strips.clone();
        let reader = sc.spawn(move || {
            let mut reader = StripReader::new(scene, halo, bs);
            for strip in strips_r {
                let held = reader.hold(strip_window(strip));
                let failed = held.is_err();
                if to_compute.send(held).is_err() || failed {
                    break;
                }
            }
        });
        let writer =
            sc.spawn(move || write_strips(change, change_path, from_compute, mask_row, progress, total_blocks));
        let computed = compute_strips(
            scene,
            &strips,
            from_reader,
            to_writer,
            (halo, threshold, morph),
            learned.as_ref(),
        );
        // A reader that died early dropped its sender: `compute_strips` reports that as an error.
        let _ = reader.join();
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::Other("the change writer stopped unexpectedly".into())));
        computed.and(written)
    })
}

/// The halo the rules path reads each block with (neighbourhood operations see across edges).
pub fn rules_halo(scene: &Scene) -> usize {
    let model = scene.model();
    let morph = model.detect.morphology_px(scene.pixel_metres());
    let halo = model.detect.match_radius + 2 * morph + model.masks.cloud_buffer_px + 3;
    halo.max(texture::halo(&model.detect.texture))
}

/// The middle stage of [`run`]: each held strip's blocks, in parallel.
fn compute_strips(
    scene: &Scene,
    strips: &[&[Window]],
    held: std::sync::mpsc::Receiver<Result<HeldPair>>,
    out: std::sync::mpsc::SyncSender<Vec<BlockOut>>,
    (halo, threshold, morph): (usize, f32, usize),
    learned: Option<&crate::learn::inference::Prepared>,
) -> Result<()> {
    for strip in strips {
        let pair = held
            .recv()
            .map_err(|_| Error::Other("the strip reader stopped unexpectedly".into()))??;
        let outs: Vec<BlockOut> = strip
            .par_iter()
            .map(|&w| match learned {
                Some(l) => learned_block(scene, l, &pair, w, halo, threshold),
                None => process_block(scene, &pair, w, halo, threshold, morph),
            })
            .collect::<Result<_>>()?;
        drop(pair);
        if out.send(outs).is_err() {
            break;
        }
    }
    Ok(())
}

/// The last stage of [`run`]: writes each strip's blocks and hands its mask rows over.
fn write_strips(
    mut change: Dataset,
    change_path: &Path,
    strips: std::sync::mpsc::Receiver<Vec<BlockOut>>,
    mask_row: &mut MaskRowSink<'_>,
    progress: &(dyn Fn(usize, usize) + Sync),
    total_blocks: usize,
) -> Result<PassStats> {
    let mut total = PassStats::default();
    let mut row = vec![false; change.raster_size().0];
    for outs in strips {
        for out in &outs {
            write_block(&mut change, out, change_path)?;
            add_stats(&mut total, &out.stats);
        }
        hand_over_mask_rows(&outs, &mut row, mask_row);
        total.blocks += outs.len();
        progress(total.blocks, total_blocks);
    }
    set_band_descriptions(&change);
    change
        .flush_cache()
        .map_err(|e| Error::gdal(change_path, "cannot flush", e))?;
    Ok(total)
}

fn set_band_descriptions(ds: &Dataset) {
    for (b, d) in [
        (1, "class: 0 unchanged, 1 change of use, 2 crop cycle, 255 not observed"),
        (2, "evidence, % of threshold"),
    ] {
        if let Ok(mut band) = ds.rasterband(b) {
            let _ = band.set_description(d);
        }
    }
}

/// Blocks of `bs` px in row-major order (deterministic).
pub fn block_grid(width: usize, height: usize, bs: usize) -> Vec<Window> {
    let mut v = Vec::new();
    for y in (0..height).step_by(bs) {
        for x in (0..width).step_by(bs) {
            v.push(Window::new(
                x as isize,
                y as isize,
                bs.min(width - x),
                bs.min(height - y),
            ));
        }
    }
    v
}

/// The blocks of `blocks` (row-major) grouped by the row of blocks they sit in.
fn strip_rows(blocks: &[Window]) -> Vec<&[Window]> {
    blocks.chunk_by(|a, b| a.y == b.y).collect()
}

/// The rectangle a strip of blocks covers.
fn strip_window(strip: &[Window]) -> Window {
    let (first, last) = (strip[0], strip[strip.len() - 1]);
    Window::new(first.x, first.y, (last.x + last.w as isize - first.x) as usize, first.h)
}

fn process_block(
    scene: &Scene,
    held: &HeldPair,
    win: Window,
    halo: usize,
    threshold: f32,
    morph_r: usize,
) -> Result<BlockOut> {
    let pair = scene.read_pair_held(held, win.grow(halo));
    let layers = BlockLayers::new(&pair.before, &pair.after);
    let e = scene.evidence(&pair, &layers);
    let mut changed = Array2::from_elem(e.raw_dim(), false);
    Zip::from(&mut changed)
        .and(&e)
        .and(&pair.observed)
        .for_each(|c, &v, &o| *c = o & (v > threshold));
    let cleaned = morphology::close(&morphology::open(&changed, morph_r), morph_r);
    let gate_p = &scene.model().detect.gate;
    let tex_p = &scene.model().detect.texture;
    let crowns = CrownLayers::new(&layers.before.vi, &layers.after.vi, tex_p.radius);
    let of_use = if gate_p.enabled {
        let g = gate::change_of_use(&pair.after, &layers, gate_p);
        let mut m = cleaned.clone();
        Zip::from(&mut m).and(&g).for_each(|c, &g| *c &= g);
        morphology::open(&m, morph_r)
    } else {
        cleaned.clone()
    };
    // Texture appearance (tree planting) is change of use, whatever the evidence and the gate say.
    let tex = texture::appeared_in(&crowns, &layers.after.vi, &pair.observed, tex_p);
    // So is plastic film appearing (greenhouses), kept with a smaller opening than the gate's.
    let film = film_appeared(&pair, &layers, &scene.model().detect.film);
    let extra = match (tex, film) {
        (Some(t), f) => Some(morphology::union(t, f.as_ref())),
        (None, f) => f,
    };
    let (cleaned, of_use) = (
        morphology::union(cleaned, extra.as_ref()),
        morphology::union(of_use, extra.as_ref()),
    );
    let masks = BlockMasks {
        cleaned: &cleaned,
        of_use: &of_use,
        evidence: &e,
    };
    Ok(finish_block(
        scene, &pair, &layers, &crowns, masks, win, halo, threshold,
    ))
}

/// A block decided by the learned cascade: its cleaned decisions are the change of use (no
/// crop-cycle gate: the model was trained to tell them apart), then the same classes,
/// magnitude and pixel values as the rules path.
fn learned_block(
    scene: &Scene,
    learned: &crate::learn::inference::Prepared,
    held: &HeldPair,
    win: Window,
    halo: usize,
    threshold: f32,
) -> Result<BlockOut> {
    let pair = scene.read_pair_held(held, win.grow(halo));
    let layers = BlockLayers::new(&pair.before, &pair.after);
    let e = scene.evidence(&pair, &layers);
    let decided = learned.decide(&pair, &e, threshold, halo);
    let crowns = CrownLayers::new(&layers.before.vi, &layers.after.vi, scene.model().detect.texture.radius);
    let masks = BlockMasks {
        cleaned: &decided,
        of_use: &decided,
        evidence: &e,
    };
    Ok(finish_block(
        scene, &pair, &layers, &crowns, masks, win, halo, threshold,
    ))
}

/// A block's change masks (with its halo) and evidence.
struct BlockMasks<'a> {
    cleaned: &'a Array2<bool>,
    of_use: &'a Array2<bool>,
    evidence: &'a Array2<f32>,
}

/// Classes, magnitude, counts and the changed pixels' values of a block's inner part.
#[allow(clippy::too_many_arguments)]
fn finish_block(
    scene: &Scene,
    pair: &PairWindow,
    layers: &BlockLayers,
    crowns: &CrownLayers,
    m: BlockMasks,
    win: Window,
    halo: usize,
    threshold: f32,
) -> BlockOut {
    let (cleaned, of_use, e) = (m.cleaned, m.of_use, m.evidence);
    let inner = s![halo..halo + win.h, halo..halo + win.w];
    let (class, magnitude) = classify(
        cleaned.slice(inner),
        of_use.slice(inner),
        pair.observed.slice(inner),
        e.slice(inner),
        threshold,
    );
    let observed = class.iter().filter(|&&c| c != CLASS_UNOBSERVED).count() as u64;
    let stats = PassStats {
        pixels: (win.w * win.h) as u64,
        observed,
        unobserved: (win.w * win.h) as u64 - observed,
        changed: class.iter().filter(|&&c| c == CLASS_CHANGED).count() as u64,
        ..Default::default()
    };
    let values = changed_pixel_values(pair, layers, crowns, &class, e, threshold, halo, scene.model());
    BlockOut {
        win,
        values,
        class,
        magnitude,
        stats,
    }
}

/// The class of each pixel of a block and its evidence as a percentage of the threshold,
/// row by row (the rows of the block's inner part are contiguous runs, so the loops vectorise).
fn classify(
    cleaned: ArrayView2<bool>,
    of_use: ArrayView2<bool>,
    observed: ArrayView2<bool>,
    e: ArrayView2<f32>,
    threshold: f32,
) -> (Array2<u8>, Array2<u8>) {
    let (h, w) = e.dim();
    let (mut class, mut magnitude) = (Vec::with_capacity(h * w), Vec::with_capacity(h * w));
    for (((ch, u), ob), ev) in cleaned
        .rows()
        .into_iter()
        .zip(of_use.rows())
        .zip(observed.rows())
        .zip(e.rows())
    {
        let (ch, u, ob, ev) = (contiguous(ch), contiguous(u), contiguous(ob), contiguous(ev));
        magnitude.extend(ev.iter().map(|&v| percent_of(v, threshold)));
        class.extend(
            ch.iter()
                .zip(u.iter())
                .zip(ob.iter())
                .map(|((&ch, &u), &ob)| match (ob, ch, u) {
                    (false, _, _) => CLASS_UNOBSERVED,
                    (true, true, true) => CLASS_CHANGED,
                    (true, true, false) => CLASS_CROP_CYCLE,
                    // Observed and not changed (`of_use` is a part of `cleaned`, so never set here).
                    (true, false, _) => CLASS_UNCHANGED,
                }),
        );
    }
    (plane_of((h, w), class), plane_of((h, w), magnitude))
}

/// A row as a slice: borrowed when it is one contiguous run (rows of a block always are).
fn contiguous<T: Clone>(row: ArrayView1<'_, T>) -> std::borrow::Cow<'_, [T]> {
    match row.to_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(row.to_vec()),
    }
}

/// `100 · v / threshold` rounded half away from zero and saturated to 0..=255: the same bytes
/// as `f32::round`, written with `trunc` so the loop vectorises (there is no vector instruction
/// for `round`'s tie rule). Evidence is never negative; a negative or NaN value gives 0 both ways.
#[inline]
fn percent_of(v: f32, threshold: f32) -> u8 {
    let x = 100.0 * v / threshold;
    let t = x.trunc();
    let r = if x - t >= 0.5 { t + 1.0 } else { t };
    // In 0..=255 after the clamp, so through i32 (a NaN gives 0 either way): that conversion
    // has a vector instruction, the direct one to u8 does not.
    r.clamp(0.0, 255.0) as i32 as u8
}

/// Plastic film appearing: much brighter and white-grey after, observed on both dates, cleaned
/// with the path's own closing and opening (see [`FilmParams`]). `None` when the path is off.
fn film_appeared(pair: &PairWindow, l: &BlockLayers, p: &FilmParams) -> Option<Array2<bool>> {
    if !p.enabled {
        return None;
    }
    let mut m = pair.observed.clone();
    Zip::from(&mut m)
        .and(&l.bright_before)
        .and(&l.bright_after)
        .and(&l.flat_after)
        .for_each(|m, &bb, &ba, &fa| *m &= (ba - bb > p.min_brightening) & (fa > p.min_flatness));
    Some(morphology::close_open(&m, p.close_px, p.open_px))
}

/// The feature values (see [`pixel::pixel_values`]) of the block's changed pixels; the
/// block arrays (and `evidence`) carry a `halo`, `class` does not.
#[allow(clippy::too_many_arguments)]
fn changed_pixel_values(
    pair: &PairWindow,
    l: &BlockLayers,
    crowns: &CrownLayers,
    class: &Array2<u8>,
    evidence: &Array2<f32>,
    threshold: f32,
    halo: usize,
    model: &Model,
) -> Vec<[f32; PIXEL_VALUES]> {
    let (_, h, w) = pair.before.dim();
    let (bright_b, bright_a) = (as_flat(&l.bright_before), as_flat(&l.bright_after));
    let (before, after) = (pair.before.as_standard_layout(), pair.after.as_standard_layout());
    let (before, after) = (row_major(&before), row_major(&after));
    let (mut pb, mut pa) = ([0.0f32; MAX_BANDS], [0.0f32; MAX_BANDS]);
    let mut out = Vec::new();
    let cw = class.ncols().max(1);
    let changed = class
        .as_slice()
        .expect("the class plane is built row-major by classify")
        .iter()
        .enumerate()
        .filter(|(_, &c)| c == CLASS_CHANGED);
    for (k, _) in changed {
        let (yy, xx) = (k / cw + halo, k % cw + halo);
        let i = yy * w + xx;
        let vtex = (l.vtex_before[(yy, xx)], l.vtex_after[(yy, xx)]);
        let btex = (
            indices::std3_at(bright_b, h, w, yy, xx),
            indices::std3_at(bright_a, h, w, yy, xx),
        );
        let ctex = (crowns.before[(yy, xx)], crowns.after[(yy, xx)]);
        out.push(pixel::pixel_values(
            spectrum(before, h * w, i, &mut pb),
            spectrum(after, h * w, i, &mut pa),
            vtex,
            btex,
            ctex,
            &model.detect.film,
            model.typing.water_frac_min_ndwi,
            evidence[(yy, xx)] / threshold,
        ));
    }
    out
}

/// The strip's mask rows, assembled across its blocks (which come left to right), with the
/// feature values of their set pixels.
fn hand_over_mask_rows(strip: &[BlockOut], row: &mut [bool], mask_row: &mut MaskRowSink) {
    let Some(first) = strip.first() else { return };
    let mut cursor = vec![0usize; strip.len()];
    let mut values = Vec::new();
    for y in 0..first.win.h {
        values.clear();
        for (out, at) in strip.iter().zip(cursor.iter_mut()) {
            let x0 = (out.win.x - first.win.x) as usize;
            let dst = &mut row[x0..x0 + out.win.w];
            let mut n = 0;
            for (d, &c) in dst.iter_mut().zip(out.class.row(y)) {
                *d = c == CLASS_CHANGED;
                n += usize::from(*d);
            }
            values.extend_from_slice(&out.values[*at..*at + n]);
            *at += n;
        }
        mask_row(row, &values);
    }
}

fn write_block(change: &mut Dataset, out: &BlockOut, path: &Path) -> Result<()> {
    let pos = (out.win.x, out.win.y);
    let size = (out.win.w, out.win.h);
    for (ds, band, arr) in [(&*change, 1, &out.class), (&*change, 2, &out.magnitude)] {
        let mut buf: Buffer<u8> = arr.clone().into();
        ds.rasterband(band)
            .and_then(|mut b| b.write(pos, size, &mut buf))
            .map_err(|e| Error::gdal(path, "cannot write a block", e))?;
    }
    Ok(())
}

fn add_stats(t: &mut PassStats, s: &PassStats) {
    t.pixels += s.pixels;
    t.observed += s.observed;
    t.unobserved += s.unobserved;
    t.changed += s.changed;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_of_threshold_rounds_like_f32_round() {
        let reference = |v: f32, t: f32| (100.0 * v / t).round().clamp(0.0, 255.0) as u8;
        let mut v = 0.0f32;
        while v < 3.0 {
            assert_eq!(percent_of(v, 0.0956), reference(v, 0.0956), "v = {v}");
            v = f32::from_bits(v.to_bits() + 997);
        }
        // Ties, the float just below a tie, and values off either end.
        for x in [
            0.5f32,
            1.5,
            2.5,
            254.5,
            255.5,
            0.49999997,
            2.4999998,
            -0.7,
            1e9,
            f32::NAN,
        ] {
            assert_eq!(percent_of(x, 100.0), reference(x, 100.0), "x = {x}");
        }
    }

    #[test]
    fn blocks_cover_the_image_exactly_once() {
        let b = block_grid(1000, 700, 256);
        assert_eq!(b.len(), 4 * 3);
        let area: usize = b.iter().map(|w| w.w * w.h).sum();
        assert_eq!(area, 1000 * 700);
        assert_eq!(b.last().map(|w| (w.w, w.h)), Some((1000 - 768, 700 - 512)));
    }
}
