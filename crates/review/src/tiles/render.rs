//! One image of a run prepared for tiles, and the rendering of one Web Mercator tile.
//!
//! An image is read through GDAL as it is. When it has no overviews, a VRT pointing at it
//! is written into the server's cache folder and the overviews are built there once
//! (`<key>.vrt.ovr`), never next to the user's file. A tile is GDAL warp of just the
//! tile's window into a 256² in-memory dataset in EPSG:3857 (bilinear, GDAL picking the
//! overview that fits the zoom), coloured with the run's contrast stretch and encoded as a
//! PNG whose pixels outside the image are transparent.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use gdal::raster::ResampleAlg;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::{Dataset, DriverManager};
use image::ImageEncoder;
use landwatch_core::io::warp::{self, WarpError};
use landwatch_core::publish::percentile;

use crate::store::{ReviewError, ReviewResult};

/// Side of a tile in pixels.
pub const TILE_PX: usize = 256;
/// Half the side of the Web Mercator square, metres.
pub const MERCATOR_HALF: f64 = 20_037_508.342_789_244;
/// Images smaller than this on both sides get no overviews (a tile reads them whole).
const MIN_SIDE_FOR_OVERVIEWS: usize = 512;
/// Side of the reduced read the stretch is computed from.
const STRETCH_SAMPLE_PX: usize = 512;
/// Datasets kept open per image, for as many tiles rendered at once.
const POOL_SIZE: usize = 8;

/// Bounds of tile `z/x/y` in EPSG:3857: [min x, min y, max x, max y].
pub fn tile_bounds(z: u8, x: u32, y: u32) -> [f64; 4] {
    let side = 2.0 * MERCATOR_HALF / f64::from(1u32 << z);
    let minx = -MERCATOR_HALF + f64::from(x) * side;
    let maxy = MERCATOR_HALF - f64::from(y) * side;
    [minx, maxy - side, minx + side, maxy]
}

/// Per-channel (R, G, B) 2nd and 98th percentiles mapped to 0 and 255 — the chips' stretch,
/// computed once per run over both dates so both tiles of a place use one mapping.
#[derive(Debug, Clone, Copy)]
pub struct Stretch {
    lo: [f32; 3],
    hi: [f32; 3],
}

impl Stretch {
    /// The 2–98 % stretch of the given per-channel samples.
    pub fn from_samples(mut samples: [Vec<f32>; 3]) -> Stretch {
        let mut s = Stretch {
            lo: [0.0; 3],
            hi: [1.0; 3],
        };
        for (c, v) in samples.iter_mut().enumerate() {
            if let (Some(l), Some(h)) = (percentile(v, 0.02), percentile(v, 0.98)) {
                s.lo[c] = l;
                s.hi[c] = if h > l { h } else { l + 1e-3 };
            }
        }
        s
    }

    /// One stretch for both dates: per channel the tighter of the two dates' ranges, so
    /// clouds or shadows on one date (the chips mask them; tiles have no mask) saturate
    /// instead of darkening every field; `pooled` where the ranges do not overlap.
    pub fn shared(before: &Stretch, after: &Stretch, pooled: &Stretch) -> Stretch {
        let mut s = *pooled;
        for c in 0..3 {
            let (lo, hi) = (before.lo[c].max(after.lo[c]), before.hi[c].min(after.hi[c]));
            if hi > lo {
                s.lo[c] = lo;
                s.hi[c] = hi;
            }
        }
        s
    }

    fn byte(&self, c: usize, v: f32) -> u8 {
        ((v - self.lo[c]) / (self.hi[c] - self.lo[c]) * 255.0)
            .clamp(0.0, 255.0)
            .round() as u8
    }
}

/// One date's image of a run, ready for tiles.
pub struct TileImage {
    /// The user's file.
    pub source: PathBuf,
    /// What GDAL opens: the file itself, or the cached VRT that carries its overviews.
    open_path: PathBuf,
    /// GDAL band numbers of red, green and blue.
    rgb: [usize; 3],
    /// Extent in EPSG:3857.
    bounds: [f64; 4],
    /// Datasets ready for use: a Dataset is not Sync, so each render takes one out.
    pool: Mutex<Vec<Dataset>>,
    /// DN scale and offset per R, G, B applied before the stretch (the after date's
    /// normalisation onto the before one).
    linear: [(f32, f32); 3],
}

impl TileImage {
    /// Prepares `source` (canonical): opens it, finds its Web Mercator extent and makes sure
    /// overviews exist, building them into `cache_dir` under `key` when the file has none.
    pub fn prepare(source: &Path, rgb: [usize; 3], cache_dir: &Path, key: &str) -> ReviewResult<TileImage> {
        let ds = open(source)?;
        let count = ds.raster_count();
        if let Some(b) = rgb.iter().find(|b| **b == 0 || **b > count) {
            return Err(ReviewError::BadInput(format!(
                "{}: the run names band {b} for the map colours but the image has {count} bands",
                source.display()
            )));
        }
        let bounds = mercator_bounds(&ds, source)?;
        let open_path = with_overviews(ds, source, cache_dir, key)?;
        Ok(TileImage {
            source: source.to_path_buf(),
            open_path,
            rgb,
            bounds,
            pool: Mutex::new(Vec::new()),
            linear: [(1.0, 0.0); 3],
        })
    }

    /// The same image with `linear` (scale, offset per R, G, B) applied to its values.
    pub fn with_linear(mut self, linear: [(f32, f32); 3]) -> TileImage {
        self.linear = linear;
        self
    }

    /// Samples of R, G, B from a reduced read of the whole image (overviews make it cheap),
    /// leaving out pixels that are 0 or nodata on all three.
    pub fn stretch_samples(&self) -> ReviewResult<[Vec<f32>; 3]> {
        let ds = self.take()?;
        let read = || -> gdal::errors::Result<[Vec<f32>; 3]> {
            let (w, h) = ds.raster_size();
            let scale = (STRETCH_SAMPLE_PX as f64 / w.max(h) as f64).min(1.0);
            let shape = (
                ((w as f64 * scale).round() as usize).max(1),
                ((h as f64 * scale).round() as usize).max(1),
            );
            let mut bands: [Vec<f32>; 3] = Default::default();
            for (c, b) in self.rgb.iter().enumerate() {
                let band = ds.rasterband(*b)?;
                let nodata = band.no_data_value();
                let mut v = band
                    .read_as::<f32>((0, 0), (w, h), shape, Some(ResampleAlg::Average))?
                    .into_shape_and_vec()
                    .1;
                if let Some(nd) = nodata {
                    v.iter_mut().filter(|x| f64::from(**x) == nd).for_each(|x| *x = 0.0);
                }
                bands[c] = v;
            }
            Ok(bands)
        };
        let bands = read().map_err(|e| gdal_failure(&self.source, "cannot read it for the contrast stretch", e));
        self.give_back(ds);
        let bands = bands?;
        let keep: Vec<bool> = (0..bands[0].len())
            .map(|i| bands.iter().any(|b| b[i] != 0.0 && b[i].is_finite()))
            .collect();
        let mut c = 0;
        Ok(bands.map(|b| {
            let (scale, add) = self.linear[c];
            c += 1;
            b.into_iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(x, _)| x * scale + add)
                .collect()
        }))
    }

    /// Renders tile `z/x/y` as PNG bytes; a tile that misses the image is transparent.
    pub fn render(&self, stretch: &Stretch, z: u8, x: u32, y: u32) -> ReviewResult<Vec<u8>> {
        let tb = tile_bounds(z, x, y);
        let b = self.bounds;
        if tb[0] >= b[2] || tb[2] <= b[0] || tb[1] >= b[3] || tb[3] <= b[1] {
            return encode_png(&vec![0; TILE_PX * TILE_PX * 4]);
        }
        let ds = self.take()?;
        let rgba = self.warp_rgba(&ds, tb, stretch);
        self.give_back(ds);
        encode_png(&rgba?)
    }

    fn warp_rgba(&self, ds: &Dataset, tb: [f64; 4], stretch: &Stretch) -> ReviewResult<Vec<u8>> {
        let warped = warp_window(ds, tb, &self.source)?;
        let read = || -> gdal::errors::Result<Vec<u8>> {
            let alpha_band = warped.raster_count();
            let full = (0, 0);
            let size = (TILE_PX, TILE_PX);
            let alpha = warped
                .rasterband(alpha_band)?
                .read_as::<u8>(full, size, size, None)?
                .into_shape_and_vec()
                .1;
            let mut rgba = vec![0u8; TILE_PX * TILE_PX * 4];
            for (c, b) in self.rgb.iter().enumerate() {
                let v = warped
                    .rasterband(*b)?
                    .read_as::<f32>(full, size, size, None)?
                    .into_shape_and_vec()
                    .1;
                let (scale, add) = self.linear[c];
                for (i, x) in v.iter().enumerate() {
                    rgba[i * 4 + c] = stretch.byte(c, *x * scale + add);
                }
            }
            for (i, a) in alpha.iter().enumerate() {
                rgba[i * 4 + 3] = if *a > 0 { 255 } else { 0 };
            }
            Ok(rgba)
        };
        read().map_err(|e| gdal_failure(&self.source, "cannot read the warped tile", e))
    }

    fn take(&self) -> ReviewResult<Dataset> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(ds) => Ok(ds),
            None => open(&self.open_path),
        }
    }

    fn give_back(&self, ds: Dataset) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_SIZE {
            pool.push(ds);
        }
    }
}

fn open(path: &Path) -> ReviewResult<Dataset> {
    Dataset::open(path).map_err(|e| {
        ReviewError::NotFound(format!(
            "{}: the run's image cannot be opened ({e}); it may have been moved or replaced — \
             put it back or import the run again",
            path.display()
        ))
    })
}

/// GDAL failed on the user's image (it opened, then could not be read): a damaged or
/// replaced file is the user's to fix, so a 4xx naming it, not a server error.
fn gdal_failure(path: &Path, what: &str, e: gdal::errors::GdalError) -> ReviewError {
    ReviewError::BadInput(format!(
        "{}: {what} ({e}); the image may be damaged — replace it or import the run again",
        path.display()
    ))
}

/// The dataset's extent in EPSG:3857 (clamped to the Mercator square).
fn mercator_bounds(ds: &Dataset, path: &Path) -> ReviewResult<[f64; 4]> {
    let unplaceable =
        |why: String| ReviewError::BadInput(format!("{}: cannot be placed on the map: {why}", path.display()));
    let gt = ds
        .geo_transform()
        .map_err(|_| unplaceable("it has no georeferencing".into()))?;
    let mut src = ds
        .spatial_ref()
        .map_err(|_| unplaceable("it has no coordinate system".into()))?;
    let mut dst = SpatialRef::from_epsg(3857).map_err(|e| unplaceable(e.to_string()))?;
    src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    dst.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let (w, h) = ds.raster_size();
    let xs = [gt[0], gt[0] + gt[1] * w as f64 + gt[2] * h as f64];
    let ys = [gt[3], gt[3] + gt[4] * w as f64 + gt[5] * h as f64];
    let native = [xs[0].min(xs[1]), ys[0].min(ys[1]), xs[0].max(xs[1]), ys[0].max(ys[1])];
    let t = CoordTransform::new(&src, &dst).map_err(|e| unplaceable(e.to_string()))?;
    let b = t
        .transform_bounds(&native, 21)
        .map_err(|e| unplaceable(e.to_string()))?;
    let clamp = |v: f64| v.clamp(-MERCATOR_HALF, MERCATOR_HALF);
    Ok([clamp(b[0]), clamp(b[1]), clamp(b[2]), clamp(b[3])])
}

/// The path to open for tiles: the file itself when it has overviews (or is small), else
/// a VRT in `cache_dir` whose overviews are built there once.
fn with_overviews(ds: Dataset, source: &Path, cache_dir: &Path, key: &str) -> ReviewResult<PathBuf> {
    let (w, h) = ds.raster_size();
    let has_overviews = ds.rasterband(1).and_then(|b| b.overview_count()).is_ok_and(|n| n > 0);
    if has_overviews || w.max(h) < MIN_SIDE_FOR_OVERVIEWS {
        return Ok(source.to_path_buf());
    }
    let vrt = cache_dir.join(format!("{key}.vrt"));
    if vrt.is_file() && cache_dir.join(format!("{key}.vrt.ovr")).is_file() {
        return Ok(vrt);
    }
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| landwatch_core::Error::io(cache_dir, "cannot create the overview cache folder", e))?;
    // Built under temporary names and renamed, the overviews first: a VRT present means done.
    let tmp_vrt = cache_dir.join(format!("{key}.tmp.vrt"));
    let fail = |e| gdal_failure(source, "cannot build overviews for the map in the cache folder", e);
    let driver = DriverManager::get_driver_by_name("VRT").map_err(fail)?;
    let copy = ds.create_copy(&driver, &tmp_vrt, &Default::default()).map_err(fail)?;
    drop(copy);
    let mut reopened = Dataset::open(&tmp_vrt).map_err(fail)?;
    let levels = overview_levels(w.max(h));
    reopened.build_overviews("AVERAGE", &levels, &[]).map_err(fail)?;
    drop(reopened);
    let rename = |from: PathBuf, to: PathBuf| {
        std::fs::rename(&from, &to)
            .map_err(|e| landwatch_core::Error::io(&to, "cannot move the overviews into place", e))
    };
    rename(
        cache_dir.join(format!("{key}.tmp.vrt.ovr")),
        cache_dir.join(format!("{key}.vrt.ovr")),
    )?;
    rename(tmp_vrt, vrt.clone())?;
    Ok(vrt)
}

/// Overview factors 2, 4, 8 … until the smallest level is under a tile.
fn overview_levels(side: usize) -> Vec<i32> {
    let mut levels = Vec::new();
    let mut f = 2usize;
    while side / (f / 2) > TILE_PX && f <= 1 << 16 {
        levels.push(f as i32);
        f *= 2;
    }
    levels
}

/// GDAL warp of the tile window `tb` (EPSG:3857) of `src` into a 256² in-memory dataset
/// with an alpha band last (transparent where the image has no data).
fn warp_window(src: &Dataset, tb: [f64; 4], path: &Path) -> ReviewResult<Dataset> {
    let args = [
        "-of".to_string(),
        "MEM".into(),
        "-t_srs".into(),
        "EPSG:3857".into(),
        "-te".into(),
        format!("{}", tb[0]),
        format!("{}", tb[1]),
        format!("{}", tb[2]),
        format!("{}", tb[3]),
        "-ts".into(),
        TILE_PX.to_string(),
        TILE_PX.to_string(),
        "-r".into(),
        "bilinear".into(),
        "-dstalpha".into(),
        "-q".into(),
    ];
    warp::warp(src, "", &args).map_err(|e| match e {
        WarpError::Options(m) => ReviewError::BadInput(format!("{}: invalid warp options: {m}", path.display())),
        WarpError::Failed(m) => ReviewError::BadInput(format!(
            "{}: GDAL could not warp a map tile from it ({m}); the image may be damaged — \
             replace it or import the run again",
            path.display(),
        )),
    })
}

/// RGBA pixels (256², row-major) as PNG, fast compression (tiles are cached anyway).
fn encode_png(rgba: &[u8]) -> ReviewResult<Vec<u8>> {
    let mut out = Vec::with_capacity(64 * 1024);
    let enc = image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Sub,
    );
    enc.write_image(rgba, TILE_PX as u32, TILE_PX as u32, image::ExtendedColorType::Rgba8)
        .map_err(|e| ReviewError::Landwatch(landwatch_core::Error::Other(format!("cannot encode a map tile: {e}"))))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_bounds_cover_the_mercator_square() {
        assert_eq!(
            tile_bounds(0, 0, 0),
            [-MERCATOR_HALF, -MERCATOR_HALF, MERCATOR_HALF, MERCATOR_HALF]
        );
        let b = tile_bounds(1, 1, 0);
        assert_eq!(b, [0.0, 0.0, MERCATOR_HALF, MERCATOR_HALF]);
    }

    #[test]
    fn clouds_on_one_date_do_not_darken_the_shared_stretch() {
        let field: Vec<f32> = (0..1000).map(|i| 400.0 + (i % 100) as f32 * 10.0).collect();
        let mut cloudy = field.clone();
        cloudy.extend(std::iter::repeat_n(4300.0, 100));
        let before = Stretch::from_samples([field.clone(), field.clone(), field.clone()]);
        let after = Stretch::from_samples([cloudy.clone(), cloudy.clone(), cloudy.clone()]);
        let mut all = field.clone();
        all.extend(&cloudy);
        let pooled = Stretch::from_samples([all.clone(), all.clone(), all]);
        assert!(pooled.hi[0] > 4000.0, "the pooled range reaches into the clouds");
        let shared = Stretch::shared(&before, &after, &pooled);
        assert!(
            shared.hi[0] < 1400.0,
            "the shared range stays on the fields: {:?}",
            shared.hi
        );
        assert!(shared.byte(0, 1000.0) > 120, "a mid field is mid grey, not dark");
    }

    #[test]
    fn overview_levels_stop_below_a_tile() {
        assert_eq!(overview_levels(8192), vec![2, 4, 8, 16, 32]);
        assert_eq!(overview_levels(600), vec![2, 4]);
    }
}
