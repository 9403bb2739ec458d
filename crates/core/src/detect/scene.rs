//! A before/after pair made ready for detection: opened, checked, warped onto one grid, with
//! the residual shift and the radiometric normalisation estimated. Any window of it can then be
//! read as aligned, normalised arrays — the one thing every later step needs.

use crate::align::normalise::{self, Normalisation, Samples};
use crate::align::shift::{self, Shift};
use crate::align::warp;
use crate::detect::gate::BlockLayers;
use crate::detect::reuse::{KeptTiles, TileGrid};
use crate::detect::{budget, evidence, indices, masks, threshold};
use crate::io::radiometry::{self, Gain, Radiometry};
use crate::io::raster::{self, DatasetPool, HeldPixels, Pixels, RasterInfo, Window};
use crate::model::{MaskMode, Model, ShiftParams};
use crate::{Error, Result};
use ndarray::{Array2, Array3, Axis, Zip};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Smallest window a replacement for a skipped shift window may have (px).
const MIN_SHIFT_WINDOW: usize = 64;
/// A shift resting on fewer windows than this, or than a quarter of those planned (when more
/// were planned), is reported as weak.
const FEW_SHIFT_WINDOWS: usize = 2;

/// Which input band holds blue, green, red and (optionally) NIR, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BandMap {
    /// GDAL band number (1-based) of the blue band.
    pub blue: usize,
    /// GDAL band number of the green band.
    pub green: usize,
    /// GDAL band number of the red band.
    pub red: usize,
    /// GDAL band number of the near-infrared band, if the image has one.
    pub nir: Option<usize>,
}

impl BandMap {
    /// Parses `B,G,R,NIR` style orders such as `R,G,B` or `B,G,R,NIR`; other bands may be
    /// skipped with `_` (e.g. `B,G,R,NIR,_,_` for Landsat's SWIR bands).
    pub fn parse(s: &str) -> Result<Self> {
        let names: Vec<String> = s.split(',').map(|t| t.trim().to_ascii_uppercase()).collect();
        let find = |n: &str| names.iter().position(|x| x == n).map(|i| i + 1);
        let need = |n: &str| {
            find(n).ok_or_else(|| Error::Usage(format!("--bands '{s}': no {n} band; expected e.g. B,G,R,NIR or R,G,B")))
        };
        for n in &names {
            if !["B", "G", "R", "NIR", "_"].contains(&n.as_str()) {
                return Err(Error::Usage(format!(
                    "--bands '{s}': unknown band name '{n}'; use B, G, R, NIR or _"
                )));
            }
        }
        Ok(Self {
            blue: need("B")?,
            green: need("G")?,
            red: need("R")?,
            nir: find("NIR"),
        })
    }

    /// The default for a raster with `n` bands: B,G,R,NIR for 4 or more, R,G,B for 3 (the order
    /// of PNG/JPEG orthophotos).
    pub fn default_for(n: usize) -> Option<Self> {
        match n {
            3 => Some(Self {
                blue: 3,
                green: 2,
                red: 1,
                nir: None,
            }),
            n if n >= 4 => Some(Self {
                blue: 1,
                green: 2,
                red: 3,
                nir: Some(4),
            }),
            // One or two bands: no default; `choose_bands` refuses the image.
            _ => None,
        }
    }

    /// GDAL band numbers in canonical order `[B, G, R, (NIR)]`.
    pub fn canonical(&self) -> Vec<usize> {
        let mut v = vec![self.blue, self.green, self.red];
        v.extend(self.nir);
        v
    }
}

/// Aligned, normalised pixels of one window of the pair.
pub struct PairWindow {
    /// Before bands, `(band, row, col)`.
    pub before: Array3<f32>,
    /// After bands on the before grid, `(band, row, col)`.
    pub after: Array3<f32>,
    /// Observed on both dates: inside both images, not nodata, not cloud or shadow.
    pub observed: Array2<bool>,
    /// Inside both images and not nodata (clouds and shadows included).
    pub valid: Array2<bool>,
}

/// Both dates over a rectangle held in memory, possibly in pieces
/// (row bands shared with the [`StripReader`]).
pub struct HeldPair {
    before: Vec<Arc<HeldPixels>>,
    after: Vec<Arc<HeldPixels>>,
}

/// Reads the pair strip by strip for the streaming pass, each input row of tiles exactly once:
/// rows are read in bands of the strip height (aligned with the tiles of the usual tiled
/// GeoTIFF), and a strip with its halo is assembled from the band it lies in and its
/// neighbours. (GDAL's multi-threaded decoding bypasses its block cache, so reading the halo
/// rows from the file again would decode their tiles again.)
pub struct StripReader<'a> {
    scene: &'a Scene,
    halo: usize,
    band_h: usize,
    /// Row bands read so far and still needed.
    bands: std::collections::VecDeque<RowBand>,
    next_band: usize,
    /// Tiles calibration decoded, used instead of reading them again.
    kept: (KeptTiles, KeptTiles),
}

/// Both dates over the same rows, each as pieces (see [`KeptTiles::band`]).
struct RowBand {
    rows: Window,
    before: Vec<Arc<HeldPixels>>,
    after: Vec<Arc<HeldPixels>>,
}

impl<'a> StripReader<'a> {
    /// A reader over `scene` whose strips carry `halo` extra rows on each side, reading `band_h` rows of both images at a time.
    pub fn new(scene: &'a Scene, halo: usize, band_h: usize) -> Self {
        // Kept tiles only save decoding: should calibration have panicked holding the lock,
        // the reader decodes those tiles from the file instead (the same pixels).
        let kept = scene
            .kept
            .lock()
            .map(|mut k| std::mem::take(&mut *k))
            .unwrap_or_default();
        Self {
            scene,
            halo,
            band_h: band_h.max(1),
            bands: Default::default(),
            next_band: 0,
            kept,
        }
    }

    /// Both dates over `strip` grown by the halo (strips must come top to bottom).
    pub fn hold(&mut self, strip: Window) -> Result<HeldPair> {
        let before_win = strip.grow(self.halo);
        let held = self.hold_rows(before_win)?;
        // The next strip needs only the last rows of this one's bands: keep a copy of those,
        // so a whole band is not held twice while the next one is read.
        let top = self.scene.after_window(before_win).y.min(before_win.y);
        let next_top = top + strip.h as isize;
        for band in self.bands.iter_mut() {
            if band.rows.y < next_top && band.rows.y + (band.rows.h as isize) > next_top {
                band.before = rows_from(&band.before, next_top);
                band.after = rows_from(&band.after, next_top);
            }
        }
        Ok(held)
    }

    /// Both dates over the rows of `win` (and the after image's shift margin), the whole width;
    /// rows above `win` are let go, so windows must come in order of their top row.
    pub fn hold_rows(&mut self, win: Window) -> Result<HeldPair> {
        let sc = self.scene;
        let before_win = Window::new(0, win.y, sc.width(), win.h);
        let after_win = sc.after_window(before_win);
        let need_end = (after_win.y + after_win.h as isize).max(0) as usize;
        let (margin, w) = (after_win.w.saturating_sub(before_win.w) / 2, sc.width());
        while self.next_band * self.band_h < need_end.min(sc.height()) {
            let rows = Window::new(
                -(margin as isize),
                (self.next_band * self.band_h) as isize,
                w + 2 * margin,
                self.band_h.min(sc.height() - self.next_band * self.band_h),
            );
            let idx = sc.bands.canonical();
            let before = self.kept.0.band(rows, |win| {
                sc.before_pool
                    .with(|ds| HeldPixels::read(ds, &sc.before, &idx, win, sc.scale_before))
            })?;
            let after = self.kept.1.band(rows, |win| {
                sc.after_pool
                    .with(|ds| HeldPixels::read(ds, &sc.after, &idx, win, sc.scale_after))
            })?;
            self.bands.push_back(RowBand { rows, before, after });
            self.next_band += 1;
        }
        let top = after_win.y.min(before_win.y);
        while self
            .bands
            .front()
            .is_some_and(|b| b.rows.y + (b.rows.h as isize) <= top)
        {
            self.bands.pop_front();
        }
        Ok(HeldPair {
            before: self.bands.iter().flat_map(|b| b.before.iter().cloned()).collect(),
            after: self.bands.iter().flat_map(|b| b.after.iter().cloned()).collect(),
        })
    }
}

/// The rows from `top` down of each piece (pieces wholly above it are dropped).
fn rows_from(pieces: &[Arc<HeldPixels>], top: isize) -> Vec<Arc<HeldPixels>> {
    pieces
        .iter()
        .filter_map(|p| {
            let bottom = p.win.y + p.win.h as isize;
            if bottom <= top {
                None
            } else if p.win.y >= top {
                Some(Arc::clone(p))
            } else {
                let rows = Window::new(p.win.x, top, p.win.w, (bottom - top) as usize);
                // `p` reaches past `top` on both sides, so the two overlap.
                Some(Arc::new(
                    p.crop(rows)
                        .expect("a piece straddling `top` overlaps the rows from it"),
                ))
            }
        })
        .collect()
}

/// What calibration found, reported in the run manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// Residual sub-pixel shift of the after image.
    pub shift: Shift,
    /// Per-band gain and offset that put the after image on the before image's radiometry.
    pub normalisation: Normalisation,
    /// Evidence threshold the run used.
    pub threshold: f32,
    /// The automatic threshold before the model's floor, when one was computed.
    pub threshold_auto: Option<f32>,
    /// Calibration windows sampled.
    pub windows: usize,
    /// How each image's stored values were turned into reflectance.
    pub radiometry: RadiometryUsed,
    /// What calibration could not do as planned (logged, and listed in `run.json` as the
    /// run's `warnings`).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// An opened, calibrated pair: both images' grids, the band order, the shift and normalisation
/// that put the after image on the before image, and the model; windows are read through it.
pub struct Scene {
    /// The before image's grid and bands.
    pub before: RasterInfo,
    /// The after image's grid and bands (before any warp).
    pub after: RasterInfo,
    /// Which band is which.
    pub bands: BandMap,
    /// Whether the images have a near-infrared band.
    pub has_nir: bool,
    before_pool: DatasetPool,
    after_pool: DatasetPool,
    scale_before: f32,
    scale_after: f32,
    radiometry: RadiometryUsed,
    /// Residual sub-pixel shift applied to the after image.
    pub shift: Shift,
    /// Radiometric normalisation applied to the after image.
    pub norm: Normalisation,
    mask_clouds: bool,
    model: Model,
    /// Pixel size given by the user for images without georeferencing.
    pub pixel_size_m: Option<f64>,
    /// Tile layouts of the files read (before, after), when small enough to keep tiles.
    grids: (Option<TileGrid>, Option<TileGrid>),
    /// Tiles decoded by calibration, for the first strip reader to take.
    kept: std::sync::Mutex<(KeptTiles, KeptTiles)>,
}

impl Scene {
    /// Opens and checks the pair; warps the after image into `work_dir` if its grid differs.
    /// The before image's grid, which detection runs on, must fit the memory budget (checked
    /// before any pixel is read or warped).
    pub fn open(
        before_path: &Path,
        after_path: &Path,
        bands: Option<&BandMap>,
        model: &Model,
        work_dir: &Path,
        memory_budget: budget::Budget,
        radiometry: Radiometry,
    ) -> Result<Self> {
        let before_ds = raster::open(before_path)?;
        let before = raster::describe(&before_ds, before_path)?;
        let after_ds = raster::open(after_path)?;
        let mut after = raster::describe(&after_ds, after_path)?;
        let bands = choose_bands(&before, &after, bands)?;
        // Refused before any pixel is warped or read; a warped copy keeps the after image's type.
        let (gain_before, gain_after) = radiometry::pair_gains(
            (&before_ds, &before),
            (&after_ds, &after),
            &bands.canonical(),
            radiometry,
        )?;
        let gains = RadiometryUsed {
            mode: radiometry,
            before: gain_before,
            after: gain_after,
        };
        budget::check_image(&before, bands.canonical().len(), model, memory_budget)?;
        let after_read_path = align_grid(&before, &after, &after_ds, work_dir)?;
        let mut after_grid = TileGrid::of(&after_ds);
        if after_read_path != after.path {
            let ds = raster::open(&after_read_path)?;
            after = RasterInfo {
                path: after_read_path.clone(),
                ..raster::describe(&ds, &after_read_path)?
            };
            after_grid = TileGrid::of(&ds);
        }
        let has_nir = bands.nir.is_some();
        let mask_clouds = match model.masks.clouds {
            MaskMode::On => true,
            MaskMode::Off => false,
            MaskMode::Auto => has_nir,
        };
        Ok(Self {
            scale_before: gains.before.factor,
            scale_after: gains.after.factor,
            radiometry: gains,
            before_pool: DatasetPool::new(&before.path),
            after_pool: DatasetPool::new(&after_read_path),
            norm: Normalisation::identity(bands.canonical().len()),
            shift: Shift::default(),
            before,
            after,
            bands,
            has_nir,
            mask_clouds,
            model: model.clone(),
            pixel_size_m: None,
            grids: (TileGrid::of(&before_ds), after_grid),
            kept: Default::default(),
        })
    }

    /// The model the scene was calibrated with.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Ground size of a pixel in metres: from a projected grid, else the `--pixel-size` given.
    pub fn pixel_metres(&self) -> Option<f64> {
        let projected = self.before.georef.as_ref().and_then(|g| {
            let srs = gdal::spatial_ref::SpatialRef::from_wkt(&g.wkt).ok()?;
            srs.is_projected()
                .then(|| g.geo_transform[1].abs() * srs.linear_units())
        });
        projected.or(self.pixel_size_m)
    }

    /// Width of the before grid, pixels.
    pub fn width(&self) -> usize {
        self.before.width
    }

    /// Height of the before grid, pixels.
    pub fn height(&self) -> usize {
        self.before.height
    }

    /// Reads both dates over `win`: after shifted onto before and normalised, with masks.
    pub fn read_pair(&self, win: Window) -> Result<PairWindow> {
        let idx = self.bands.canonical();
        let b = self
            .before_pool
            .with(|ds| raster::read_window(ds, &self.before, &idx, win, self.scale_before))?;
        let a = self
            .after_pool
            .with(|ds| raster::read_window(ds, &self.after, &idx, self.after_window(win), self.scale_after))?;
        Ok(self.assemble(b, a, win))
    }

    /// [`Scene::read_pair`] over a window of a held rectangle, without touching the files.
    pub fn read_pair_held(&self, held: &HeldPair, win: Window) -> PairWindow {
        let b = piece_window(&held.before, win);
        let a = piece_window(&held.after, self.after_window(win));
        self.assemble(b, a, win)
    }

    /// The after-image window that, once shifted, covers `win`.
    fn after_window(&self, win: Window) -> Window {
        let (dx, dy) = (self.shift.dx, self.shift.dy);
        if dx == 0.0 && dy == 0.0 {
            win
        } else {
            win.grow(shift_pad(dx, dy))
        }
    }

    /// Shifts the after pixels onto the before grid, normalises them and adds the masks.
    fn assemble(&self, b: Pixels, after_raw: Pixels, win: Window) -> PairWindow {
        let a = self.align_after(after_raw, win);
        let mut valid = b.valid.clone();
        Zip::from(&mut valid).and(&a.valid).for_each(|v, &w| *v &= w);
        let mut after = a.bands;
        self.normalise_after(&mut after);
        let observed = self.observed(&b.bands, &after, &valid);
        PairWindow {
            before: b.bands,
            after,
            observed,
            valid,
        }
    }

    fn normalise_after(&self, after: &mut Array3<f32>) {
        for (k, mut band) in after.outer_iter_mut().enumerate() {
            band.mapv_inplace(|v| self.norm.apply(k, v));
        }
    }

    fn align_after(&self, big: Pixels, win: Window) -> Pixels {
        let (dx, dy) = (self.shift.dx, self.shift.dy);
        if dx == 0.0 && dy == 0.0 {
            return big;
        }
        let pad = shift_pad(dx, dy);
        let (bands, valid) = shift::shift_cropped(&big.bands, &big.valid, dx, dy, pad);
        debug_assert_eq!(valid.dim(), (win.h, win.w));
        Pixels { bands, valid }
    }

    fn observed(&self, before: &Array3<f32>, after: &Array3<f32>, valid: &Array2<bool>) -> Array2<bool> {
        let mut obs = valid.clone();
        if !self.mask_clouds {
            return obs;
        }
        let p = &self.model.masks;
        let cb = masks::clouds(before, valid, p);
        let ca = masks::clouds(after, valid, p);
        let sh = masks::shadows(before, after, valid, p);
        Zip::from(&mut obs)
            .and(&cb)
            .and(&ca)
            .and(&sh)
            .for_each(|o, &x, &y, &z| *o &= !(x | y | z));
        obs
    }

    /// Change evidence over a window (see [`evidence`]).
    pub fn evidence(&self, pair: &PairWindow, l: &BlockLayers) -> Array2<f32> {
        let (w, tw) = (self.model.detect.index_weight, self.model.detect.texture_weight);
        let sb = indices::evidence_planes(&pair.before, &l.before, &l.vtex_before, w, tw);
        let sa = indices::evidence_planes(&pair.after, &l.after, &l.vtex_after, w, tw);
        let (sb, sa): (Vec<&[f32]>, Vec<&[f32]>) =
            (sb.iter().map(|p| &**p).collect(), sa.iter().map(|p| &**p).collect());
        evidence::distance_of_planes(&sb, &sa, &pair.observed, self.model.detect.match_radius)
    }

    /// Estimates shift, normalisation and threshold from windows spread over the image.
    pub fn calibrate(&mut self) -> Result<Calibration> {
        let wins = calibration_windows(self.width(), self.height(), &self.model);
        // Each window is read once, the after image with room for any accepted shift: the
        // shift is estimated on them, then they are aligned (identity normalisation), the
        // normalisation fitted, and applied in memory, exactly as `read_pair` would.
        let raw = self.read_calibration_windows(&wins)?;
        let mut warnings = Vec::new();
        let added;
        (self.shift, added) = self.estimate_shift(&wins, &raw, &mut warnings)?;
        let mut pairs: Vec<PairWindow> = raw
            .into_par_iter()
            .zip(wins.par_iter())
            .map(|((b, a), &w)| match a.window(self.after_window(w)) {
                Some(a) => Ok(self.assemble(b, a, w)),
                None => self.read_pair(w),
            })
            .collect::<Result<_>>()?;
        // Windows that replaced skipped ones for the shift sample the valid parts of the image
        // for the normalisation and the threshold too.
        let extra: Vec<PairWindow> = added.par_iter().map(|&w| self.read_pair(w)).collect::<Result<_>>()?;
        pairs.extend(extra);
        self.check_radiometry(&pairs, &mut warnings)?;
        warnings.extend(radiometry::caveat(&self.radiometry.before, &self.radiometry.after));
        self.norm = self.estimate_normalisation(&pairs);
        pairs.par_iter_mut().for_each(|p| {
            self.normalise_after(&mut p.after);
            p.observed = self.observed(&p.before, &p.after, &p.valid);
        });
        let hist = self.evidence_histogram(&pairs);
        if hist.total() == 0 {
            return Err(Error::input(
                &self.before.path,
                "no pixel is observed on both dates (all nodata, cloud or outside the after image)",
            ));
        }
        let d = &self.model.detect;
        let auto = threshold::threshold(&hist, d.threshold_method);
        let t = auto
            .map(|t| {
                t * if self.has_nir {
                    d.threshold_scale
                } else {
                    d.threshold_scale_rgb
                }
            })
            // `None` only for an empty histogram, refused just above.
            .unwrap_or(d.threshold_floor)
            .max(d.threshold_floor);
        Ok(Calibration {
            shift: self.shift,
            normalisation: self.norm.clone(),
            threshold: t,
            threshold_auto: auto,
            windows: pairs.len(),
            radiometry: self.radiometry.clone(),
            warnings,
        })
    }

    /// Refuses images whose calibration windows, as scaled, cannot be reflectance (raw DN read
    /// as reflectance × 10000, say): every absolute threshold would misfire without a word.
    /// Images that may be DN read as reflectance get a warning.
    fn check_radiometry(&self, pairs: &[PairWindow], warnings: &mut Vec<String>) -> Result<()> {
        let r = &self.radiometry;
        for (info, gain, stats) in [
            (
                &self.before,
                &r.before,
                band_stats(pairs.iter().map(|p| (&p.before, &p.valid))),
            ),
            (
                &self.after,
                &r.after,
                band_stats(pairs.iter().map(|p| (&p.after, &p.valid))),
            ),
        ] {
            let (medians, maxima): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
            radiometry::check_plausible(info, r.mode, gain, &medians)?;
            if r.mode == Radiometry::Auto {
                warnings.extend(radiometry::dn_suspicion(info, gain, &maxima));
            }
        }
        Ok(())
    }

    /// Each window's pixels (before) and a held rectangle around it with room for the shift
    /// (after). Both are read as the whole tiles they touch, which are kept for the pass.
    fn read_calibration_windows(&self, wins: &[Window]) -> Result<Vec<(Pixels, Arc<HeldPixels>)>> {
        let idx = self.bands.canonical();
        let margin = self.model.detect.shift.max_px.ceil() as usize + 1;
        let mut kept = (KeptTiles::new(self.grids.0), KeptTiles::new(self.grids.1));
        let read: Vec<(Arc<HeldPixels>, Arc<HeldPixels>)> = wins
            .par_iter()
            .map(|&w| {
                let b = self
                    .before_pool
                    .with(|ds| HeldPixels::read(ds, &self.before, &idx, kept.0.rect_for(w), self.scale_before))?;
                let a = self.after_pool.with(|ds| {
                    HeldPixels::read(ds, &self.after, &idx, kept.1.rect_for(w.grow(margin)), self.scale_after)
                })?;
                Ok((Arc::new(b), Arc::new(a)))
            })
            .collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(wins.len());
        for (&w, (b, a)) in wins.iter().zip(read) {
            // The rectangle read holds `w` (see `rect_for`).
            let px = HeldPixels::cut(&[&b], w);
            kept.0.keep(b);
            kept.1.keep(Arc::clone(&a));
            out.push((px, a));
        }
        if let Ok(mut k) = self.kept.lock() {
            *k = kept;
        }
        Ok(out)
    }

    /// The residual shift: the median over the calibration windows with enough valid pixels on
    /// both dates; skipped windows are replaced by windows from valid parts of the image (also
    /// returned). What could not be done as planned is added to `warnings`.
    fn estimate_shift(
        &self,
        wins: &[Window],
        raw: &[(Pixels, Arc<HeldPixels>)],
        warnings: &mut Vec<String>,
    ) -> Result<(Shift, Vec<Window>)> {
        let planned: Vec<Option<Shift>> = wins
            .par_iter()
            .zip(raw.par_iter())
            .map(|(&w, (b, a))| {
                a.window(w)
                    .and_then(|a| correlate_valid(b, &a, &self.model.detect.shift))
            })
            .collect();
        let skipped: Vec<Window> = wins
            .iter()
            .zip(&planned)
            .filter(|(_, e)| e.is_none())
            .map(|(w, _)| *w)
            .collect();
        let mut estimates: Vec<Shift> = planned.into_iter().flatten().collect();
        let added = if skipped.is_empty() {
            Vec::new()
        } else {
            let kept: Vec<Window> = wins.iter().filter(|w| !skipped.contains(w)).copied().collect();
            self.replacement_estimates(&kept, &skipped)?
        };
        estimates.extend(added.iter().map(|(_, e)| *e));
        let added: Vec<Window> = added.into_iter().map(|(w, _)| w).collect();
        let p = &self.model.detect.shift;
        let mut s = shift::combine(&estimates, p.min_peak);
        s.windows_skipped = skipped.len();
        s.windows_added = added.len();
        warn_about_shift(&s, wins.len(), warnings);
        if s.dx.abs().max(s.dy.abs()) > p.max_px {
            let msg = format!(
                "residual shift estimate dx={:+.2} dy={:+.2} px is too large to trust after warping; not applied",
                s.dx, s.dy
            );
            tracing::warn!(dx = s.dx, dy = s.dy, "{msg}");
            warnings.push(msg);
            return Ok((Shift { dx: 0.0, dy: 0.0, ..s }, added));
        }
        Ok((s, added))
    }

    /// Shift estimates from windows elsewhere in the image, one in place of each skipped
    /// window (the nearest with enough valid pixels and a trusted peak), away from the
    /// windows `kept`; windows of the planned size first, then of half of it.
    fn replacement_estimates(&self, kept: &[Window], skipped: &[Window]) -> Result<Vec<(Window, Shift)>> {
        let mut taken: Vec<Window> = kept.to_vec();
        let mut missing: Vec<Window> = skipped.to_vec();
        let mut out = Vec::new();
        let mut size = skipped[0].w.min(skipped[0].h);
        while !missing.is_empty() && size >= MIN_SHIFT_WINDOW.min(self.width()).min(self.height()) {
            let found = self.trusted_estimates(&candidate_windows(self.width(), self.height(), size, &taken))?;
            for target in std::mem::take(&mut missing) {
                let nearest = found
                    .iter()
                    .filter(|(c, _)| !taken.iter().any(|t| overlaps_much(*c, *t)))
                    .min_by_key(|(c, _)| centre_distance2(*c, target));
                match nearest {
                    Some(&(c, e)) => {
                        taken.push(c);
                        out.push((c, e));
                    }
                    None => missing.push(target),
                }
            }
            size /= 2;
        }
        Ok(out)
    }

    /// The candidates with enough valid pixels on both dates and a trusted peak, with their
    /// estimates, in the candidates' order.
    fn trusted_estimates(&self, candidates: &[Window]) -> Result<Vec<(Window, Shift)>> {
        let idx = self.bands.canonical();
        let found: Vec<Option<(Window, Shift)>> = candidates
            .par_iter()
            .map(|&c| {
                let b = self
                    .before_pool
                    .with(|ds| raster::read_window(ds, &self.before, &idx, c, self.scale_before))?;
                let a = self
                    .after_pool
                    .with(|ds| raster::read_window(ds, &self.after, &idx, c, self.scale_after))?;
                let p = &self.model.detect.shift;
                Ok(correlate_valid(&b, &a, p)
                    .filter(|e| e.peak >= p.min_peak)
                    .map(|e| (c, e)))
            })
            .collect::<Result<_>>()?;
        Ok(found.into_iter().flatten().collect())
    }

    fn estimate_normalisation(&self, pairs: &[PairWindow]) -> Normalisation {
        let nb = self.bands.canonical().len();
        let mut samples = Samples::new(nb);
        let (mut pb, mut pa) = (vec![0.0; nb], vec![0.0; nb]);
        for p in pairs {
            let (_, h, w) = p.before.dim();
            for y in (0..h).step_by(2) {
                for x in (0..w).step_by(2) {
                    if !p.observed[(y, x)] {
                        continue;
                    }
                    for k in 0..nb {
                        pb[k] = p.before[(k, y, x)];
                        pa[k] = p.after[(k, y, x)];
                    }
                    samples.push(&pb, &pa);
                }
            }
        }
        let d = &self.model.detect;
        normalise::fit(&samples, d.invariant_fraction, 4, d.normalise_min_correlation)
    }

    fn evidence_histogram(&self, pairs: &[PairWindow]) -> threshold::Histogram {
        let hists: Vec<threshold::Histogram> = pairs
            .par_iter()
            .map(|pair| {
                let e = self.evidence(pair, &BlockLayers::new(&pair.before, &pair.after));
                let mut h = threshold::Histogram::new(4000, 2.0);
                Zip::from(&e).and(&pair.observed).for_each(|&v, &o| {
                    if o {
                        h.add(v)
                    }
                });
                h
            })
            .collect();
        let mut total = threshold::Histogram::new(4000, 2.0);
        for h in hists {
            for (t, c) in total.counts.iter_mut().zip(h.counts) {
                *t += c;
            }
        }
        total
    }
}

/// Phase correlation of the band means of one window, when at least `min_valid_fraction` of
/// its pixels are valid on both dates; the invalid ones (nodata, NaN) are set to the mean of
/// the valid ones so they neither poison the transform nor add edges of their own.
fn correlate_valid(b: &Pixels, a: &Pixels, p: &ShiftParams) -> Option<Shift> {
    let both = Zip::from(&b.valid).and(&a.valid).map_collect(|&x, &y| x & y);
    let valid = both.iter().filter(|&&v| v).count();
    if (valid as f64) < p.min_valid_fraction * both.len().max(1) as f64 {
        return None;
    }
    let mean_of = |p: &Pixels| {
        let mut m = p
            .bands
            .mean_axis(Axis(0))
            .expect("a pair window has at least three bands (every band map names B, G and R)");
        if valid < both.len() {
            fill_invalid(&mut m, &both);
        }
        m
    };
    Some(shift::phase_correlation(&mean_of(b), &mean_of(a)))
}

/// Sets the pixels of `img` that are not `valid` to the mean of those that are.
fn fill_invalid(img: &mut Array2<f32>, valid: &Array2<bool>) {
    let (sum, n) = Zip::from(&*img).and(valid).fold(
        (0.0f64, 0usize),
        |(s, n), &v, &ok| if ok { (s + v as f64, n + 1) } else { (s, n) },
    );
    let mean = (sum / n.max(1) as f64) as f32;
    Zip::from(img).and(valid).for_each(|v, &ok| {
        if !ok {
            *v = mean;
        }
    });
}

/// Logs and lists what weakened the shift estimate.
fn warn_about_shift(s: &Shift, planned: usize, warnings: &mut Vec<String>) {
    let head = if s.windows_used == 0 {
        "the residual shift could not be estimated, the after image is not shifted".to_string()
    } else if s.windows_used < (planned / 4).max(FEW_SHIFT_WINDOWS).min(planned) {
        format!("the residual shift rests on only {} window(s)", s.windows_used)
    } else {
        return;
    };
    let weak = (planned - s.windows_skipped + s.windows_added).saturating_sub(s.windows_used);
    let mut why = Vec::new();
    if s.windows_skipped > 0 {
        why.push(format!(
            "{} of {planned} calibration windows had too few valid pixels on both dates (nodata, NaN, \
             outside the after image) and {} could be replaced from elsewhere",
            s.windows_skipped, s.windows_added
        ));
    }
    if weak > 0 {
        why.push(format!(
            "{weak} window(s) gave no clear correlation peak (featureless or much changed)"
        ));
    }
    let msg = format!("{head}: {}", why.join("; "));
    tracing::warn!(
        windows_used = s.windows_used,
        windows_skipped = s.windows_skipped,
        windows_added = s.windows_added,
        "{msg}"
    );
    warnings.push(msg);
}

/// Windows of `size` px spread evenly over the image (a quarter window apart at most, up to
/// nine per side), leaving out those that overlap a window in `taken` by much.
fn candidate_windows(width: usize, height: usize, size: usize, taken: &[Window]) -> Vec<Window> {
    let size = size.min(width).min(height);
    let positions = |extent: usize| -> Vec<usize> {
        let span = extent - size;
        let n = (span / (size / 4).max(1) + 1).min(9);
        if n < 2 {
            vec![span / 2]
        } else {
            (0..n).map(|i| span * i / (n - 1)).collect()
        }
    };
    let xs = positions(width);
    positions(height)
        .into_iter()
        .flat_map(|y| xs.iter().map(move |&x| Window::new(x as isize, y as isize, size, size)))
        .filter(|c| !taken.iter().any(|t| overlaps_much(*c, *t)))
        .collect()
}

/// Whether `a` and `b` share more than a quarter of the smaller one's pixels.
fn overlaps_much(a: Window, b: Window) -> bool {
    raster::intersect(a, b).is_some_and(|c| 4 * c.w * c.h > (a.w * a.h).min(b.w * b.h))
}

fn centre_distance2(a: Window, b: Window) -> i64 {
    let centre = |w: Window| (2 * w.x as i64 + w.w as i64, 2 * w.y as i64 + w.h as i64);
    let ((ax, ay), (bx, by)) = (centre(a), centre(b));
    (ax - bx).pow(2) + (ay - by).pow(2)
}

/// `win` cut from held pieces.
fn piece_window(pieces: &[Arc<HeldPixels>], win: Window) -> Pixels {
    let refs: Vec<&HeldPixels> = pieces.iter().map(|p| p.as_ref()).collect();
    HeldPixels::cut(&refs, win)
}

/// Margin (px) read around a window so that shifting the after image by `(dx, dy)` fills it.
fn shift_pad(dx: f64, dy: f64) -> usize {
    dx.abs().max(dy.abs()).ceil() as usize + 1
}

fn choose_bands(before: &RasterInfo, after: &RasterInfo, bands: Option<&BandMap>) -> Result<BandMap> {
    if before.band_count != after.band_count {
        return Err(Error::input(
            &after.path,
            format!(
                "has {} bands but the before image {} has {}; both dates must have the same bands",
                after.band_count,
                before.path.display(),
                before.band_count
            ),
        ));
    }
    let map = match bands {
        Some(m) => m.clone(),
        None => BandMap::default_for(before.band_count).ok_or_else(|| {
            Error::input(
                &before.path,
                format!(
                    "has {} band(s); landwatch needs 3 (RGB) or 4+ (B,G,R,NIR) bands",
                    before.band_count
                ),
            )
        })?,
    };
    check_band_numbers(&map, before)?;
    Ok(map)
}

/// Every band `map` names must exist in the image (both dates have the same band count).
fn check_band_numbers(map: &BandMap, image: &RasterInfo) -> Result<()> {
    let named = [
        ("B", Some(map.blue)),
        ("G", Some(map.green)),
        ("R", Some(map.red)),
        ("NIR", map.nir),
    ];
    for (name, band) in named {
        if let Some(b) = band.filter(|&b| b == 0 || b > image.band_count) {
            return Err(Error::input(
                &image.path,
                format!(
                    "has {} bands but --bands puts {name} at band {b}; give one name per band of the file, e.g. B,G,R,NIR",
                    image.band_count
                ),
            ));
        }
    }
    Ok(())
}

/// Returns the path to read the after image from: itself when it shares the before grid, else
/// a warped copy in `work_dir`.
fn align_grid(before: &RasterInfo, after: &RasterInfo, after_ds: &gdal::Dataset, work_dir: &Path) -> Result<PathBuf> {
    if before.same_grid(after) {
        return Ok(after.path.clone());
    }
    match (&before.georef, &after.georef) {
        (Some(_), Some(_)) => {
            warp::check_overlap(before, after)?;
            let dst = work_dir.join("after_warped.tif");
            tracing::info!(after = %after.path.display(), "after image is on another grid; warping onto the before grid");
            warp::warp_onto(after_ds, after, before, &dst)
        }
        (None, None) => Err(Error::input(
            &after.path,
            format!(
                "is {}x{} px but the before image is {}x{}; without georeferencing both must be the same size",
                after.width, after.height, before.width, before.height
            ),
        )),
        (Some(_), None) | (None, Some(_)) => Err(Error::input(
            &after.path,
            "one image is georeferenced and the other is not; give both dates in the same kind of file",
        )),
    }
}

/// Up to `calibration_windows` windows of `calibration_window` px in a regular grid.
pub fn calibration_windows(width: usize, height: usize, model: &Model) -> Vec<Window> {
    let size = model.detect.calibration_window.min(width).min(height);
    let per_side = (model.detect.calibration_windows as f64).sqrt().ceil() as usize;
    let nx = per_side.min((width / size).max(1));
    let ny = per_side.min((height / size).max(1));
    let mut out = Vec::new();
    for j in 0..ny {
        for i in 0..nx {
            let x = (width - size) * (2 * i + 1) / (2 * nx);
            let y = (height - size) * (2 * j + 1) / (2 * ny);
            out.push(Window::new(x as isize, y as isize, size, size));
        }
    }
    out
}

/// The radiometry a run used: the mode asked for and the factor chosen for each image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RadiometryUsed {
    /// `--radiometry` (or the pipeline's `bands.radiometry`).
    pub mode: Radiometry,
    /// The before image's factor and its basis.
    pub before: Gain,
    /// The after image's factor and its basis.
    pub after: Gain,
}

/// Per-band median and largest value of the valid pixels of `windows` (every 7th pixel: a
/// median of a sample this size is within a fraction of a per cent of the whole), `NaN` for a
/// band with none.
fn band_stats<'a>(windows: impl Iterator<Item = (&'a Array3<f32>, &'a Array2<bool>)>) -> Vec<(f32, f32)> {
    let mut per_band: Vec<Vec<f32>> = Vec::new();
    for (bands, valid) in windows {
        per_band.resize_with(bands.dim().0, Vec::new);
        for (b, plane) in bands.outer_iter().enumerate() {
            let kept = plane.iter().zip(valid.iter()).step_by(7).filter(|(_, &ok)| ok);
            per_band[b].extend(kept.map(|(&v, _)| v).filter(|v| v.is_finite()));
        }
    }
    per_band
        .into_iter()
        .map(|mut v| {
            if v.is_empty() {
                return (f32::NAN, f32::NAN);
            }
            let mid = v.len() / 2;
            let (_, &mut median, above) = v.select_nth_unstable_by(mid, f32::total_cmp);
            (median, above.iter().copied().fold(median, f32::max))
        })
        .collect()
}
