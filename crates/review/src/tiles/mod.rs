//! Map tiles of a run's before and after images (XYZ, Web Mercator), for the review page's
//! map and for GIS clients through WMTS.
//!
//! A run's images are the ones its `run.json` names (`inputs.before.path`,
//! `inputs.after.path`, coloured with its `bands`). They are only read when they lie inside
//! the server's data folder. Each image is prepared once per server (overviews built into
//! the cache folder when it has none, see [`render`]) and rendered tiles are kept on disk
//! in the cache folder, bounded in size ([`cache`]). Tiles are keyed by the images'
//! identity (path, size, modification time), so replacing an image never serves stale
//! tiles, and a moved or deleted image is a 404 with a message, not a 500.

pub mod cache;
pub mod render;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::{ReviewError, ReviewResult};
pub use render::{tile_bounds, Stretch, TileImage, TILE_PX};

/// Deepest zoom level served (about 1 cm per pixel at the equator; far past any image).
pub const MAX_ZOOM: u8 = 24;
/// Changes whenever tiles would come out differently (stretch, resampling), so tiles cached by
/// an older server are not served again.
const RENDER_VERSION: u32 = 3;
/// Default bound of the rendered-tile cache, bytes.
pub const DEFAULT_TILE_CACHE_BYTES: u64 = 512 * 1024 * 1024;

/// Which date of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Date {
    /// The baseline image.
    Before,
    /// The new image.
    After,
}

impl Date {
    /// `before` or `after`.
    pub fn parse(s: &str) -> ReviewResult<Date> {
        match s {
            "before" => Ok(Date::Before),
            "after" => Ok(Date::After),
            _ => Err(ReviewError::NotFound(format!("no date {s:?}: use before or after"))),
        }
    }

    /// The name in URLs.
    pub fn name(self) -> &'static str {
        match self {
            Date::Before => "before",
            Date::After => "after",
        }
    }
}

/// Refuses tile coordinates outside zoom 0..=[`MAX_ZOOM`] or outside the zoom's grid.
pub fn check_tile(z: u32, x: u32, y: u32) -> ReviewResult<u8> {
    let zoom = u8::try_from(z).ok().filter(|z| *z <= MAX_ZOOM).ok_or_else(|| {
        ReviewError::BadInput(format!(
            "zoom {z} is out of range: tiles exist for zoom 0 to {MAX_ZOOM}"
        ))
    })?;
    let n = 1u64 << zoom;
    if u64::from(x) >= n || u64::from(y) >= n {
        return Err(ReviewError::BadInput(format!(
            "tile {z}/{x}/{y} is out of range: at zoom {z}, x and y run from 0 to {}",
            n - 1
        )));
    }
    Ok(zoom)
}

/// The images a run was detected from, checked to lie inside the data folder.
#[derive(Debug, Clone)]
pub struct RunInputs {
    /// Canonical path of the before image.
    pub before: PathBuf,
    /// Canonical path of the after image.
    pub after: PathBuf,
    /// GDAL band numbers of red, green and blue.
    pub rgb: [usize; 3],
    /// The run's radiometric normalisation of the after image onto the before one, per R, G,
    /// B: `before_dn = after_dn * scale + add` (identity when the manifest has none), so the
    /// dates look alike where the ground did not change, as in the chips.
    pub after_to_before: [(f32, f32); 3],
}

impl RunInputs {
    /// Reads `run_dir/run.json`. A relative input path is taken relative to the run folder,
    /// then to each folder above it up to the one holding the data folder (where `landwatch
    /// detect` was started). `data_root` must be canonical.
    pub fn read(run_dir: &Path, data_root: &Path) -> ReviewResult<RunInputs> {
        let manifest = run_dir.join("run.json");
        let text = std::fs::read_to_string(&manifest).map_err(|e| {
            ReviewError::NotFound(format!(
                "{}: cannot read the run's manifest ({e}); without it the run's images are unknown",
                manifest.display()
            ))
        })?;
        let m: Value = serde_json::from_str(&text)
            .map_err(|e| ReviewError::BadInput(format!("{}: not valid JSON: {e}", manifest.display())))?;
        let image = |date: &str| -> ReviewResult<PathBuf> {
            let raw = m
                .pointer(&format!("/inputs/{date}/path"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ReviewError::NotFound(format!(
                        "{}: field inputs.{date}.path is missing; the run's {date} image is unknown",
                        manifest.display()
                    ))
                })?;
            resolve_input(Path::new(raw), run_dir, data_root, date)
        };
        Ok(RunInputs {
            before: image("before")?,
            after: image("after")?,
            rgb: rgb_bands(&m),
            after_to_before: after_to_before(&m),
        })
    }

    /// A short name that changes whenever either image is replaced (path, size, time).
    pub fn identity(&self) -> ReviewResult<String> {
        let mut h = Sha256::new();
        for (date, p) in [("before", &self.before), ("after", &self.after)] {
            let meta = std::fs::metadata(p).map_err(|_| gone(date, p))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            h.update(format!("{}\0{}\0{modified}\0", p.display(), meta.len()).as_bytes());
        }
        Ok(hex::encode(&h.finalize()[..12]))
    }

    /// The image of `date`.
    pub fn path(&self, date: Date) -> &Path {
        match date {
            Date::Before => &self.before,
            Date::After => &self.after,
        }
    }
}

fn gone(date: &str, p: &Path) -> ReviewError {
    ReviewError::NotFound(format!(
        "the run's {date} image {} is no longer on disk; put it back or import the run again",
        p.display()
    ))
}

/// Resolves a path from `run.json` (relative: to the run folder, then its parent) to a
/// canonical file inside `data_root`; `what` names it in messages.
pub(crate) fn resolve_input(raw: &Path, run_dir: &Path, data_root: &Path, date: &str) -> ReviewResult<PathBuf> {
    let candidates: Vec<PathBuf> = if raw.is_absolute() {
        vec![raw.to_path_buf()]
    } else {
        // `landwatch detect` records paths as given, relative to where it was started: some
        // folder above the run's, inside the data folder or the one holding it.
        let holder = data_root.parent().unwrap_or(data_root);
        run_dir
            .ancestors()
            .take_while(|a| a.starts_with(data_root) || *a == holder)
            .map(|a| a.join(raw))
            .collect()
    };
    let found = candidates
        .iter()
        .find_map(|c| c.canonicalize().ok().filter(|p| p.is_file()))
        .ok_or_else(|| gone(date, raw))?;
    if !found.starts_with(data_root) {
        return Err(ReviewError::NotFound(format!(
            "the run's {date} image lies outside the data folder; only images inside it are served"
        )));
    }
    Ok(found)
}

/// Red, green and blue band numbers from the manifest's `bands` (the pipeline's BandMap);
/// without it, the canonical B, G, R(, NIR) order.
fn rgb_bands(m: &Value) -> [usize; 3] {
    let band = |name: &str, default: usize| {
        m.pointer(&format!("/bands/{name}"))
            .and_then(Value::as_u64)
            .map_or(default, |b| b as usize)
    };
    [band("red", 3), band("green", 2), band("blue", 1)]
}

/// The manifest's normalisation (reflectance gain/offset per canonical B, G, R(, NIR) band,
/// and each date's DN→reflectance factor) as DN scale/offset per R, G, B.
fn after_to_before(m: &Value) -> [(f32, f32); 3] {
    let num = |p: &str| m.pointer(p).and_then(Value::as_f64);
    let list = |p: &str| -> Option<Vec<f64>> { m.pointer(p)?.as_array()?.iter().map(Value::as_f64).collect() };
    let (Some(gain), Some(offset)) = (
        list("/calibration/normalisation/gain"),
        list("/calibration/normalisation/offset"),
    ) else {
        return [(1.0, 0.0); 3];
    };
    let fa = num("/calibration/radiometry/after/factor").unwrap_or(1.0);
    let fb = num("/calibration/radiometry/before/factor").unwrap_or(1.0);
    // Canonical order is B, G, R: red is index 2, green 1, blue 0.
    [2usize, 1, 0].map(|i| match (gain.get(i), offset.get(i)) {
        (Some(g), Some(o)) if fb > 0.0 && g.is_finite() && o.is_finite() => ((fa * g / fb) as f32, (o / fb) as f32),
        _ => (1.0, 0.0),
    })
}

/// Both images of a run, prepared, with their shared stretch.
pub struct RunImagery {
    identity: String,
    before: TileImage,
    after: TileImage,
    stretch: Stretch,
}

impl RunImagery {
    /// Prepares both images of `inputs` (building overviews into `overview_dir` if needed)
    /// and computes the stretch over both dates.
    pub fn prepare(inputs: &RunInputs, overview_dir: &Path) -> ReviewResult<RunImagery> {
        let identity = inputs.identity()?;
        let before = TileImage::prepare(&inputs.before, inputs.rgb, overview_dir, &format!("{identity}-before"))?;
        let after = TileImage::prepare(&inputs.after, inputs.rgb, overview_dir, &format!("{identity}-after"))?
            .with_linear(inputs.after_to_before);
        let (b, a) = (before.stretch_samples()?, after.stretch_samples()?);
        let (sb, sa) = (Stretch::from_samples(b.clone()), Stretch::from_samples(a.clone()));
        let mut pooled = b;
        for (all, more) in pooled.iter_mut().zip(a) {
            all.extend(more);
        }
        let stretch = Stretch::shared(&sb, &sa, &Stretch::from_samples(pooled));
        Ok(RunImagery {
            identity,
            before,
            after,
            stretch,
        })
    }

    /// Renders tile `z/x/y` of `date` as PNG bytes (coordinates checked by [`check_tile`]).
    pub fn render(&self, date: Date, z: u8, x: u32, y: u32) -> ReviewResult<Vec<u8>> {
        let image = match date {
            Date::Before => &self.before,
            Date::After => &self.after,
        };
        image.render(&self.stretch, z, x, y)
    }
}

/// The server's tile service: prepared runs in memory, rendered tiles on disk.
pub struct TileService {
    overview_dir: PathBuf,
    tiles: cache::TileCache,
    runs: Mutex<HashMap<i64, Arc<RunImagery>>>,
    /// Held while a run is prepared, so two first requests do not build overviews twice.
    preparing: Mutex<()>,
}

impl TileService {
    /// A service keeping overviews in `cache_dir/overviews` and at most `bound` bytes of
    /// rendered tiles in `cache_dir/tiles`.
    pub fn new(cache_dir: &Path, bound: u64) -> ReviewResult<TileService> {
        let tiles_dir = cache_dir.join("tiles");
        let tiles = cache::TileCache::open(&tiles_dir, bound).map_err(|e| {
            landwatch_core::Error::io(&tiles_dir, "cannot create the tile cache folder (see --cache-dir)", e)
        })?;
        Ok(TileService {
            overview_dir: cache_dir.join("overviews"),
            tiles,
            runs: Mutex::new(HashMap::new()),
            preparing: Mutex::new(()),
        })
    }

    /// Tile `z/x/y` of `date` of run `run_id` (whose folder is `run_dir`) as PNG bytes,
    /// from the disk cache or rendered. Blocking: call it off the async runtime.
    pub fn tile(
        &self,
        run_id: i64,
        run_dir: &Path,
        data_root: &Path,
        date: Date,
        (z, x, y): (u32, u32, u32),
    ) -> ReviewResult<Vec<u8>> {
        let zoom = check_tile(z, x, y)?;
        let inputs = RunInputs::read(run_dir, data_root)?;
        let identity = inputs.identity()?;
        let key = format!("v{RENDER_VERSION}-{identity}/{}/{z}/{x}/{y}.png", date.name());
        if let Some(png) = self.tiles.get(&key) {
            return Ok(png);
        }
        let imagery = self.imagery(run_id, &inputs, &identity)?;
        let png = imagery.render(date, zoom, x, y)?;
        self.tiles.put(&key, &png);
        Ok(png)
    }

    /// The prepared imagery of a run, preparing it when new or when its images changed.
    fn imagery(&self, run_id: i64, inputs: &RunInputs, identity: &str) -> ReviewResult<Arc<RunImagery>> {
        let cached = |runs: &Mutex<HashMap<i64, Arc<RunImagery>>>| {
            let runs = runs.lock().unwrap_or_else(|e| e.into_inner());
            runs.get(&run_id).filter(|r| r.identity == identity).cloned()
        };
        if let Some(r) = cached(&self.runs) {
            return Ok(r);
        }
        let _one_at_a_time = self.preparing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = cached(&self.runs) {
            return Ok(r);
        }
        let prepared = Arc::new(RunImagery::prepare(inputs, &self.overview_dir)?);
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run_id, Arc::clone(&prepared));
        Ok(prepared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normalisation_becomes_a_dn_scale_per_rgb_channel() {
        let m = serde_json::json!({"calibration": {
            "normalisation": {"gain": [0.9, 1.0, 1.1, 1.0], "offset": [-0.02, 0.0, 0.01, 0.0]},
            "radiometry": {"before": {"factor": 0.0001}, "after": {"factor": 0.0001}}}});
        let t = after_to_before(&m);
        assert!(
            (t[0].0 - 1.1).abs() < 1e-6 && (t[0].1 - 100.0).abs() < 1e-3,
            "red: {:?}",
            t[0]
        );
        assert!(
            (t[2].0 - 0.9).abs() < 1e-6 && (t[2].1 + 200.0).abs() < 1e-3,
            "blue: {:?}",
            t[2]
        );
        assert_eq!(after_to_before(&serde_json::json!({})), [(1.0, 0.0); 3]);
    }

    #[test]
    fn relative_input_paths_are_found_from_where_detect_ran() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let data = root.join("data");
        let run = data.join("out/2026-10/run1");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(data.join("images")).unwrap();
        std::fs::write(data.join("images/a.tif"), b"x").unwrap();
        std::fs::write(root.join("secret.tif"), b"x").unwrap();
        for raw in ["data/images/a.tif", "images/a.tif", "../../../images/a.tif"] {
            let found = resolve_input(Path::new(raw), &run, &data, "before").unwrap();
            assert_eq!(found, data.join("images/a.tif"), "{raw}");
        }
        let e = resolve_input(Path::new("secret.tif"), &run, &data, "before").unwrap_err();
        assert!(e.to_string().contains("outside the data folder"), "{e}");
        let e = resolve_input(Path::new("images/missing.tif"), &run, &data, "after").unwrap_err();
        assert!(e.to_string().contains("no longer on disk"), "{e}");
    }

    #[test]
    fn tile_coordinates_outside_the_grid_are_refused() {
        assert_eq!(check_tile(3, 7, 7).unwrap(), 3);
        for (z, x, y) in [(3, 8, 0), (3, 0, 8), (25, 0, 0), (300, 0, 0)] {
            let e = check_tile(z, x, y).unwrap_err();
            assert!(matches!(e, ReviewError::BadInput(_)), "{z}/{x}/{y}: {e}");
        }
    }
}
