//! The streaming pass: the image is cut into blocks, each block is read with a halo (so
//! neighbourhood operations see across block edges), processed in parallel, cropped back and
//! written. Peak memory depends on the block size and thread count, not on the image size.

use super::scene::Scene;
use super::{gate, morphology};
use crate::io::raster::Window;
use crate::{Error, Result};
use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::{Dataset, DriverManager, Metadata};
use ndarray::{s, Array2, Zip};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;

/// Pixel classes written to band 1 of `change.tif`.
pub const CLASS_UNCHANGED: u8 = 0;
pub const CLASS_CHANGED: u8 = 1;
/// Changed, but the after state looks like a crop cycle (see [`super::gate`]).
pub const CLASS_CROP_CYCLE: u8 = 2;
pub const CLASS_UNOBSERVED: u8 = 255;

/// Pixel counts from the streaming pass.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassStats {
    pub pixels: u64,
    pub observed: u64,
    pub unobserved: u64,
    pub changed: u64,
    pub blocks: usize,
}

struct BlockOut {
    win: Window,
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
/// percentage of the threshold, capped at 255) and a binary change mask for vectorising.
pub fn run(
    scene: &Scene,
    threshold: f32,
    change_path: &Path,
    mask_path: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<PassStats> {
    let model = scene.model();
    let bs = model.detect.block_size;
    let morph = model.detect.morphology_px(scene.pixel_metres());
    let halo = model.detect.match_radius + 2 * morph + model.masks.cloud_buffer_px + 3;
    let blocks = block_grid(scene.width(), scene.height(), bs);
    // ZSTD compresses the mostly-constant class band well at a fraction of DEFLATE's cost; the
    // mask is a scratch file and stays uncompressed.
    let mut change = create_grid_tiff(scene, change_path, 2, &["COMPRESS=ZSTD", "ZSTD_LEVEL=3"])?;
    let mut mask = create_grid_tiff(scene, mask_path, 1, &["COMPRESS=NONE"])?;
    let mut total = PassStats::default();
    let chunk = (rayon::current_num_threads() * 2).max(2);
    for (i, group) in blocks.chunks(chunk).enumerate() {
        let outs: Vec<BlockOut> = group
            .par_iter()
            .map(|&w| process_block(scene, w, halo, threshold, morph))
            .collect::<Result<_>>()?;
        for out in outs {
            write_block(&mut change, &mut mask, &out, change_path)?;
            add_stats(&mut total, &out.stats);
        }
        progress(((i + 1) * chunk).min(blocks.len()), blocks.len());
    }
    total.blocks = blocks.len();
    set_band_descriptions(&change);
    change
        .flush_cache()
        .map_err(|e| Error::gdal(change_path, "cannot flush", e))?;
    mask.flush_cache()
        .map_err(|e| Error::gdal(mask_path, "cannot flush", e))?;
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

fn process_block(scene: &Scene, win: Window, halo: usize, threshold: f32, morph_r: usize) -> Result<BlockOut> {
    let pair = scene.read_pair(win.grow(halo))?;
    let e = scene.evidence(&pair);
    let mut changed = Array2::from_elem(e.raw_dim(), false);
    Zip::from(&mut changed)
        .and(&e)
        .and(&pair.observed)
        .for_each(|c, &v, &o| *c = o && v > threshold);
    let cleaned = morphology::close(&morphology::open(&changed, morph_r), morph_r);
    let gate_p = &scene.model().detect.gate;
    let of_use = if gate_p.enabled {
        let g = gate::change_of_use(&pair.before, &pair.after, gate_p);
        let mut m = cleaned.clone();
        Zip::from(&mut m).and(&g).for_each(|c, &g| *c &= g);
        morphology::open(&m, morph_r)
    } else {
        cleaned.clone()
    };
    let inner = s![halo..halo + win.h, halo..halo + win.w];
    let (cleaned, of_use, observed, e) = (
        cleaned.slice(inner),
        of_use.slice(inner),
        pair.observed.slice(inner),
        e.slice(inner),
    );
    let mut class = Array2::<u8>::zeros((win.h, win.w));
    let mut magnitude = Array2::<u8>::zeros((win.h, win.w));
    let mut stats = PassStats {
        pixels: (win.w * win.h) as u64,
        ..Default::default()
    };
    Zip::from(&mut class)
        .and(&mut magnitude)
        .and(&cleaned)
        .and(&of_use)
        .and(&observed)
        .and(&e)
        .for_each(|c, m, &ch, &u, &ob, &ev| {
            *m = (100.0 * ev / threshold).round().clamp(0.0, 255.0) as u8;
            *c = match (ob, ch, u) {
                (false, _, _) => CLASS_UNOBSERVED,
                (true, true, true) => CLASS_CHANGED,
                (true, true, false) => CLASS_CROP_CYCLE,
                _ => CLASS_UNCHANGED,
            };
        });
    stats.observed = observed.iter().filter(|&&o| o).count() as u64;
    stats.unobserved = stats.pixels - stats.observed;
    stats.changed = class.iter().filter(|&&c| c == CLASS_CHANGED).count() as u64;
    Ok(BlockOut {
        win,
        class,
        magnitude,
        stats,
    })
}

fn write_block(change: &mut Dataset, mask: &mut Dataset, out: &BlockOut, path: &Path) -> Result<()> {
    let pos = (out.win.x, out.win.y);
    let size = (out.win.w, out.win.h);
    let binary = out.class.mapv(|c| u8::from(c == CLASS_CHANGED));
    for (ds, band, arr) in [
        (&*change, 1, &out.class),
        (&*change, 2, &out.magnitude),
        (&*mask, 1, &binary),
    ] {
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
    fn blocks_cover_the_image_exactly_once() {
        let b = block_grid(1000, 700, 256);
        assert_eq!(b.len(), 4 * 3);
        let area: usize = b.iter().map(|w| w.w * w.h).sum();
        assert_eq!(area, 1000 * 700);
        assert_eq!(b.last().map(|w| (w.w, w.h)), Some((1000 - 768, 700 - 512)));
    }
}
