//! One detection run: a before/after pair in, a folder of patches out.
//!
//! [`run`] drives the stages and hands each one's result to the next as a value: the pair
//! opened and aligned ([`Scene`]) → the change pass (`ChangePass`: calibration, pixel counts,
//! the labelled change mask; `change.tif` written) → the patches (`PatchSet`: typed, overlaid
//! and categorised) → the published files (GeoJSON, GIS exports, chips, `run.json`).
//!
//! The output folder is built in a staging folder beside it and renamed into place at the end,
//! so it either holds a complete result or nothing new.

use crate::detect::budget;
use crate::detect::scene::{BandMap, Calibration, Scene};
use crate::detect::stream::{self, PassStats};
use crate::io::atomic::{self, StagingDir};
use crate::io::hash;
use crate::io::radiometry::Radiometry;
use crate::learn::verdict::{self, ImagePair, RunImages, VerdictModel};
use crate::model::Model;
use crate::patches::{self, area::AreaCalc, category, label::Labeller, overlay, vectorise, Patch};
use crate::publish::{chips, exports, geojson};
use crate::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything a detection run takes.
#[derive(Debug, Clone, Default)]
pub struct DetectRequest {
    /// Before (baseline) image.
    pub before: PathBuf,
    /// After (new) image; warped onto the before grid when they differ.
    pub after: PathBuf,
    /// Output folder (replaced atomically when the run completes).
    pub out_dir: PathBuf,
    /// `None`: the built-in model (`models/rules-v1.toml`).
    pub model_path: Option<PathBuf>,
    /// Band order of the inputs, e.g. `B,G,R,NIR`; `None`: guessed from the band count.
    pub bands: Option<String>,
    /// Pixel size in metres for images without georeferencing.
    pub pixel_size: Option<f64>,
    /// Land-use baseline (三调 parcels with a DLBM field).
    pub landuse: Option<PathBuf>,
    /// Permanent basic farmland polygons.
    pub basic_farmland: Option<PathBuf>,
    /// Approved construction land polygons.
    pub approved: Option<PathBuf>,
    /// County boundaries.
    pub counties: Option<PathBuf>,
    /// Ecological red line polygons.
    pub red_line: Option<PathBuf>,
    /// Acquisition date of the before image (`YYYY-MM-DD`).
    pub before_date: Option<String>,
    /// Acquisition date of the after image (`YYYY-MM-DD`).
    pub after_date: Option<String>,
    /// Keep crop-cycle and off-cropland patches (for evaluation against plain change labels).
    pub keep_all: bool,
    /// Accept a land-use layer with no parcel over the image.
    pub allow_empty_landuse: bool,
    /// Show progress bars (terminal only).
    pub progress: bool,
    /// County layer fields as `CODE,NAME` (default: XZQDM/XZQMC, code/name, …).
    pub county_fields: Option<String>,
    /// Text encoding of the exported Shapefile's DBF.
    pub dbf_encoding: exports::DbfEncoding,
    /// Skip the before/after PNG chips.
    pub no_chips: bool,
    /// Memory budget in bytes (`None`: `LANDWATCH_MEMORY_BUDGET`, else from the machine's
    /// memory; see [`crate::detect::budget::resolve`]).
    pub memory_budget: Option<u64>,
    /// What the images' stored values are (DN, reflectance, 8-bit stretched); see
    /// [`crate::io::radiometry`].
    pub radiometry: Radiometry,
    /// A verdict model (`landwatch train verdicts`): patches it judges likely false alarms are
    /// published with `suppressed: true` and a reason, never dropped.
    pub verdict_model: Option<PathBuf>,
}

impl DetectRequest {
    /// Every file the run reads: the output folder must not hold any of them.
    pub fn inputs(&self) -> Vec<&Path> {
        let layers = [
            &self.model_path,
            &self.verdict_model,
            &self.landuse,
            &self.basic_farmland,
            &self.approved,
            &self.counties,
            &self.red_line,
        ];
        [self.before.as_path(), self.after.as_path()]
            .into_iter()
            .chain(layers.into_iter().filter_map(|p| p.as_deref()))
            .collect()
    }

    /// A request with the defaults for everything but the two images and the output folder.
    pub fn new(before: impl Into<PathBuf>, after: impl Into<PathBuf>, out_dir: impl Into<PathBuf>) -> Self {
        Self {
            before: before.into(),
            after: after.into(),
            out_dir: out_dir.into(),
            ..Default::default()
        }
    }
}

/// What a run did, also written into `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DetectSummary {
    /// Patches published.
    pub patches: usize,
    /// Crop-cycle and unrecognised changes left out (see `--keep-all`).
    pub dropped_unrecognised: usize,
    /// Patches the verdict model suppressed (published with `suppressed: true`).
    pub suppressed: usize,
    /// Where `patches.geojson` was written.
    pub patches_path: PathBuf,
    /// What calibration found.
    pub calibration: Calibration,
    /// Pixel counts of the streaming pass.
    pub pixels: PassStats,
    /// Ground area not observed on both dates, m².
    pub unobserved_area_m2: f64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// Throughput of the run.
    pub megapixels_per_second: f64,
    /// Wall seconds of each stage, in run order.
    pub stage_seconds: Vec<(&'static str, f64)>,
}

/// Wall time per stage, for the manifest and the log.
struct Stages {
    started: Instant,
    last: f64,
    laps: Vec<(&'static str, f64)>,
}

impl Stages {
    fn new(started: Instant) -> Self {
        Self {
            started,
            last: 0.0,
            laps: Vec::new(),
        }
    }

    /// Ends the stage `name` now.
    fn lap(&mut self, name: &'static str) {
        let now = self.started.elapsed().as_secs_f64();
        self.laps.push((name, now - self.last));
        self.last = now;
    }
}

/// Runs detection; see the module docs.
pub fn run(req: &DetectRequest) -> Result<DetectSummary> {
    crate::io::init_gdal();
    let started = Instant::now();
    let model = Model::load_or_builtin(req.model_path.as_ref())?;
    let verdict = req.verdict_model.as_deref().map(VerdictModel::load).transpose()?;
    check_dates(req)?;
    check_pixel_size(req.pixel_size)?;
    check_paths_are_utf8(req)?;
    let memory_budget = budget::resolve(req.memory_budget, !req.no_chips)?;
    let bands = req.bands.as_deref().map(BandMap::parse).transpose()?;
    let mut staging = StagingDir::new(&req.out_dir, &req.inputs())?;
    let work = staging.path().join(".work");
    std::fs::create_dir_all(&work).map_err(|e| Error::io(&work, "cannot create a work folder", e))?;
    let mut scene = Scene::open(
        &req.before,
        &req.after,
        bands.as_ref(),
        &model,
        &work,
        memory_budget,
        req.radiometry,
    )?;
    scene.pixel_size_m = req.pixel_size;
    crate::io::size_block_cache_for_pass();
    // Threads inherit their creator's nice value and the two background threads below lower
    // theirs: the rayon pool must not be born on one of them, so it starts here.
    let _ = rayon::current_num_threads();
    let checksums = checksum_inputs(req);
    let layers = start_loading_layers(&scene, req)?;
    let mut stages = Stages::new(started);
    stages.lap("open");
    let pass = change_pass(&mut scene, &mut staging, req, &mut stages)?;
    let PatchSet {
        mut patches,
        dropped,
        areas,
    } = make_patches(&scene, &model, req, pass.labeller, layers, &mut stages)?;
    let unobserved_area_m2 = unobserved_area(&scene, &areas, &pass.stats);
    let seconds = started.elapsed().as_secs_f64();
    let mut summary = DetectSummary {
        patches: patches.len(),
        dropped_unrecognised: dropped,
        suppressed: 0,
        patches_path: req.out_dir.join("patches.geojson"),
        calibration: pass.calibration,
        megapixels_per_second: pass.stats.pixels as f64 / 1e6 / seconds.max(1e-9),
        pixels: pass.stats,
        unobserved_area_m2,
        seconds,
        stage_seconds: stages.laps.clone(),
    };
    if !req.no_chips {
        crate::io::size_block_cache_for_chips(
            scene.width(),
            scene.before.band_count,
            scene.before.data_type.bytes() as usize,
            model.detect.block_size,
        );
        let bar = crate::progress::bar(patches.len() as u64, "chips", req.progress);
        chips::write_all(staging.path(), &scene, &mut patches, &areas, &bar)?;
        bar.finish_and_clear();
        stages.lap("chips");
    }
    let mut published = publishable(&scene, &patches, &model, req)?;
    if let (Some(v), Some(path)) = (&verdict, &req.verdict_model) {
        summary.suppressed = judge(&scene, &summary.calibration, req, v, path, &mut published)?;
        stages.lap("verdict");
    }
    // GeoJSON on its own thread beside the GIS exports.
    std::thread::scope(|sc| {
        let geojson = sc.spawn(|| write_patches(staging.path(), &published));
        let exports = write_exports(staging.path(), &scene, &patches, &published, req);
        let geojson = geojson
            .join()
            .unwrap_or_else(|_| Err(Error::Other("the GeoJSON writer stopped unexpectedly".into())));
        geojson.and(exports)
    })?;
    stages.lap("write");
    let checksums = checksums
        .join()
        .unwrap_or_else(|_| Err(Error::Other("the checksum thread stopped unexpectedly".into())))?;
    write_manifest(
        staging.path(),
        req,
        &model,
        verdict.as_ref(),
        &scene,
        &summary,
        &checksums,
    )?;
    stages.lap("manifest");
    let laps: Vec<String> = stages.laps.iter().map(|(n, t)| format!("{n} {t:.2}")).collect();
    tracing::info!(stages = laps.join(", "), "stage seconds");
    std::fs::remove_dir_all(&work).map_err(|e| Error::io(&work, "cannot remove the work folder", e))?;
    staging.commit()?;
    Ok(summary)
}

/// The change pass's hand-off to the patch stage.
struct ChangePass {
    /// What calibration found (shift, normalisation, threshold).
    calibration: Calibration,
    /// Pixel counts of the pass.
    stats: PassStats,
    /// The change mask's components, labelled row by row as the pass wrote `change.tif`.
    labeller: Labeller,
}

/// The patch stage's hand-off to publishing.
struct PatchSet {
    /// Kept patches, typed, overlaid and categorised, with ids in order.
    patches: Vec<Patch>,
    /// Crop-cycle and unrecognised patches left out.
    dropped: usize,
    /// How areas were measured (the chips' scale bars and the unobserved area use it too).
    areas: AreaCalc,
}

/// Calibrates the pair, then streams every block through the change kernels: `change.tif` goes
/// into the staging folder, the change mask into the labeller.
fn change_pass(
    scene: &mut Scene,
    staging: &mut StagingDir,
    req: &DetectRequest,
    stages: &mut Stages,
) -> Result<ChangePass> {
    let calibration = scene.calibrate()?;
    stages.lap("calibrate");
    tracing::info!(
        dx = calibration.shift.dx,
        dy = calibration.shift.dy,
        threshold = calibration.threshold,
        "calibrated"
    );
    let change_path = staging.path().join("change.tif");
    let bar = crate::progress::bar(0, "detect", req.progress);
    let mut labeller = Labeller::new();
    let stats = stream::run(
        scene,
        calibration.threshold,
        &change_path,
        &mut |row, values| labeller.push_row(row, values),
        &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    staging.flush_early(&change_path);
    stages.lap("pass");
    Ok(ChangePass {
        calibration,
        stats,
        labeller,
    })
}

/// Both dates must be dates, and the before image must not be the later one.
fn check_dates(req: &DetectRequest) -> Result<()> {
    let parse = |name: &str, d: &Option<String>| -> Result<Option<chrono::NaiveDate>> {
        d.as_deref()
            .map(|d| {
                chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| Error::Usage(format!("{name} '{d}': expected a date as YYYY-MM-DD")))
            })
            .transpose()
    };
    let before = parse("--before-date", &req.before_date)?;
    let after = parse("--after-date", &req.after_date)?;
    if let (Some(b), Some(a)) = (before, after) {
        if b > a {
            return Err(Error::Usage(format!(
                "--before-date {b} is later than --after-date {a}; the before image must be the earlier one \
                 (swap --before/--after and their dates)"
            )));
        }
    }
    Ok(())
}

/// GDAL takes file names as UTF-8 text (the gdal crate converts others lossily, so it would
/// open or create another name): refuse such paths with their lossy spelling instead.
fn check_paths_are_utf8(req: &DetectRequest) -> Result<()> {
    let paths = [
        ("--before", Some(&req.before)),
        ("--after", Some(&req.after)),
        ("--out", Some(&req.out_dir)),
        ("--landuse", req.landuse.as_ref()),
        ("--basic-farmland", req.basic_farmland.as_ref()),
        ("--approved", req.approved.as_ref()),
        ("--counties", req.counties.as_ref()),
        ("--red-line", req.red_line.as_ref()),
    ];
    match paths.into_iter().find(|(_, p)| p.is_some_and(|p| p.to_str().is_none())) {
        Some((flag, Some(p))) => Err(Error::input(
            p,
            format!("{flag}: the path is not valid UTF-8 (shown with � for the bad bytes), which GDAL cannot open; rename it"),
        )),
        _ => Ok(()),
    }
}

/// Largest pixel size accepted, in metres (coarser than any land-use imagery).
const MAX_PIXEL_SIZE_M: f64 = 10_000.0;

fn check_pixel_size(size: Option<f64>) -> Result<()> {
    match size {
        Some(p) if !(p > 0.0 && p <= MAX_PIXEL_SIZE_M) => Err(Error::Usage(format!(
            "--pixel-size {p}: expected the ground size of a pixel in metres, greater than 0 and at most \
             {MAX_PIXEL_SIZE_M}, e.g. 2"
        ))),
        _ => Ok(()),
    }
}

/// Sieves, traces and types the change components.
fn make_patches(
    scene: &Scene,
    model: &Model,
    req: &DetectRequest,
    labeller: Labeller,
    layers: LayersLoading,
    stages: &mut Stages,
) -> Result<PatchSet> {
    let wkt = scene.before.georef.as_ref().map(|g| g.wkt.as_str());
    let areas = AreaCalc::new(wkt, req.pixel_size);
    let gt = vectorise::grid_transform(scene.before.georef.as_ref());
    let px_m2 = pixel_area_m2(scene, &areas);
    let min_pixels = (model.detect.min_area_m2 / px_m2.max(1e-9)).ceil() as usize;
    let components = labeller.finish(min_pixels);
    stages.lap("label");
    // No CRS (a plain image): the outlines stay in pixel coordinates.
    let traced = vectorise::trace(components, gt, wkt.unwrap_or(""), model.detect.simplify_px)?;
    stages.lap("trace");
    let mut patches = patches::build(scene.has_nir, traced, model, &areas, model.detect.min_area_m2)?;
    stages.lap("features");
    let before = patches.len();
    let keep = |t: &str| match t {
        "crop_cycle" => req.keep_all || model.typing.keep_crop_cycle,
        "other" => req.keep_all || model.typing.keep_other,
        // Every other type is a change of use (the model refuses unknown type names).
        _ => true,
    };
    patches.retain(|p| keep(&p.change_type));
    let dropped = before - patches.len();
    enforce(model, req, &areas, &mut patches, layers)?;
    stages.lap("overlay");
    for (i, p) in patches.iter_mut().enumerate() {
        p.id = format!("P{:05}", i + 1);
    }
    Ok(PatchSet {
        patches,
        dropped,
        areas,
    })
}

/// Ground area of one pixel in m² (at the grid origin for geographic grids).
fn pixel_area_m2(scene: &Scene, areas: &AreaCalc) -> f64 {
    let gt = vectorise::grid_transform(scene.before.georef.as_ref());
    areas.m2_per_grid_unit(&pixel_square(gt)) * gt[1].abs() * gt[5].abs()
}

/// A one-pixel square at the grid origin, to convert pixel counts to m².
fn pixel_square(gt: gdal::GeoTransform) -> geo::MultiPolygon<f64> {
    let (x0, y0, dx, dy) = (gt[0], gt[3], gt[1], gt[5]);
    geo::MultiPolygon(vec![geo::Polygon::new(
        geo::LineString::from(vec![
            (x0, y0),
            (x0 + dx, y0),
            (x0 + dx, y0 + dy),
            (x0, y0 + dy),
            (x0, y0),
        ]),
        vec![],
    )])
}

fn unobserved_area(scene: &Scene, areas: &AreaCalc, stats: &PassStats) -> f64 {
    stats.unobserved as f64 * pixel_area_m2(scene, areas)
}

/// Each patch's outline in lon/lat (pixel coordinates for plain images) and its properties —
/// shared by the GeoJSON and the GIS exports so they can never disagree.
struct Published {
    outlines: Vec<geo::MultiPolygon<f64>>,
    properties: Vec<serde_json::Map<String, serde_json::Value>>,
    pixel: bool,
}

/// One patch's outline in lon/lat and its properties.
type PublishedPatch = (geo::MultiPolygon<f64>, serde_json::Map<String, serde_json::Value>);

fn publishable(scene: &Scene, patches: &[Patch], model: &Model, req: &DetectRequest) -> Result<Published> {
    let wkt = scene.before.georef.as_ref().map(|g| g.wkt.as_str());
    let pixel = geojson::ToLonLat::new(wkt, &scene.before.path)?.is_pixel();
    let facts = geojson::RunFacts {
        model: model.id(),
        before_date: req.before_date.clone(),
        after_date: req.after_date.clone(),
    };
    // A chunk of patches per thread, each with its own transform (a GDAL transform is not
    // Sync); the chunks come back in order.
    let chunk = patches.len().div_ceil(rayon::current_num_threads()).max(1);
    let chunks: Vec<Vec<PublishedPatch>> = patches
        .par_chunks(chunk)
        .map(|ps| {
            let to_ll = geojson::ToLonLat::new(wkt, &scene.before.path)?;
            ps.iter()
                .map(|p| {
                    let ll = to_ll.shape(&p.shape)?;
                    // Patches with empty outlines are dropped in `patches::build`; one here would
                    // be published at (0, 0), so it stops the run instead.
                    let c = geo::Centroid::centroid(&ll).map(|c| (c.x(), c.y())).ok_or_else(|| {
                        Error::Other(format!("patch {}: its outline is empty after reprojection", p.id))
                    })?;
                    Ok((ll, geojson::properties(p, c, &facts)))
                })
                .collect()
        })
        .collect::<Result<_>>()?;
    let (outlines, properties) = chunks.into_iter().flatten().unzip();
    Ok(Published {
        outlines,
        properties,
        pixel,
    })
}

/// Applies the verdict model to every published patch: its probability of real change, the
/// model's id, and under the threshold `suppressed: true` with the reason. Returns how many
/// were suppressed. The pixels are re-read from the inputs as `train verdicts` reads them.
fn judge(
    scene: &Scene,
    calibration: &Calibration,
    req: &DetectRequest,
    v: &VerdictModel,
    path: &Path,
    published: &mut Published,
) -> Result<usize> {
    let b = &scene.bands;
    let images = RunImages {
        before: req.before.clone(),
        after: req.after.clone(),
        bands: [b.blue, b.green, b.red, b.nir.unwrap_or(0)],
        factors: (
            f64::from(calibration.radiometry.before.factor),
            f64::from(calibration.radiometry.after.factor),
        ),
    };
    let pair = ImagePair::open(&images, !published.pixel)?;
    let mut suppressed = 0;
    for (outline, props) in published.outlines.iter().zip(published.properties.iter_mut()) {
        let row = verdict::patch_row(props, &pair.measure(outline)?);
        let p = v.probability(&row);
        let p3 = (p * 1000.0).round() / 1000.0;
        props.insert("verdict_model".into(), json!(v.id));
        props.insert("verdict_probability".into(), json!(p3));
        let under = p < v.threshold;
        props.insert("suppressed".into(), json!(under));
        let reason = if under {
            suppressed += 1;
            format!(
                "verdict model {} ({}): probability of real change {p3:.3} < threshold {:.3}",
                v.id,
                path.display(),
                v.threshold
            )
        } else {
            String::new()
        };
        props.insert("suppressed_reason".into(), json!(reason));
    }
    tracing::info!(suppressed, model = %v.id, "verdict model applied");
    Ok(suppressed)
}

fn write_patches(dir: &Path, published: &Published) -> Result<()> {
    let feats = published
        .outlines
        .iter()
        .zip(&published.properties)
        .map(|(ll, props)| geojson::feature(geojson::geometry_json(ll, published.pixel), props.clone()))
        .collect();
    let fc = geojson::collection(feats, published.pixel);
    let text = serde_json::to_string_pretty(&fc).map_err(|e| Error::Other(format!("cannot serialise patches: {e}")))?;
    atomic::write_staged(&dir.join("patches.geojson"), text.as_bytes())
}

/// The request's input files (images and layers), in a fixed order.
fn input_files(req: &DetectRequest) -> Vec<PathBuf> {
    let layers = [
        &req.landuse,
        &req.basic_farmland,
        &req.approved,
        &req.counties,
        &req.red_line,
    ];
    [req.before.clone(), req.after.clone()]
        .into_iter()
        .chain(layers.into_iter().flatten().cloned())
        .collect()
}

/// SHA-256 of every input, computed on a thread of its own while detection runs (reading two
/// large images again costs a noticeable share of a run otherwise).
fn checksum_inputs(req: &DetectRequest) -> std::thread::JoinHandle<Result<BTreeMap<PathBuf, String>>> {
    let files = input_files(req);
    std::thread::spawn(move || {
        crate::io::yield_to_critical_path();
        files
            .into_iter()
            .map(|p| hash::sha256_file(&p).map(|h| (p, h)))
            .collect()
    })
}

#[allow(clippy::too_many_arguments)]
fn write_manifest(
    dir: &Path,
    req: &DetectRequest,
    model: &Model,
    verdict: Option<&VerdictModel>,
    scene: &Scene,
    s: &DetectSummary,
    checksums: &BTreeMap<PathBuf, String>,
) -> Result<()> {
    let input = |p: &Path| -> Result<serde_json::Value> {
        let sum = match checksums.get(p) {
            Some(h) => h.clone(),
            None => hash::sha256_file(p)?,
        };
        Ok(json!({"path": p.display().to_string(), "sha256": sum}))
    };
    let mut layers = serde_json::Map::new();
    for (k, v) in [
        ("landuse", &req.landuse),
        ("basic_farmland", &req.basic_farmland),
        ("approved", &req.approved),
        ("counties", &req.counties),
        ("red_line", &req.red_line),
    ] {
        if let Some(p) = v {
            layers.insert(k.into(), input(p)?);
        }
    }
    let mut m = json!({
        "landwatch_version": env!("CARGO_PKG_VERSION"),
        "inputs": {"before": input(&req.before)?, "after": input(&req.after)?, "layers": layers},
        "before_date": req.before_date, "after_date": req.after_date,
        "bands": scene.bands,
        "model": {"id": model.id(), "source": model.source, "sha256": model.sha256, "parameters": model},
        "grid": {"width": scene.width(), "height": scene.height(),
                  "georeferenced": scene.before.georef.is_some(), "pixel_size_m": req.pixel_size},
        "calibration": s.calibration,
        "warnings": s.calibration.warnings,
        "pixels": s.pixels,
        "unobserved_area_m2": s.unobserved_area_m2,
        "patches": s.patches,
        "dropped_unrecognised": s.dropped_unrecognised,
        "timing": {
            "seconds": s.seconds,
            "megapixels_per_second": s.megapixels_per_second,
            "stage_seconds": s.stage_seconds.iter().map(|(n, t)| (n.to_string(), json!(t))).collect::<serde_json::Map<_, _>>(),
        },
    });
    if let (Some(v), Some(path)) = (verdict, &req.verdict_model) {
        m["verdict_model"] = json!({"id": v.id, "path": path.display().to_string(), "sha256": hash::sha256_file(path)?,
                                    "threshold": v.threshold, "feature_set": v.feature_set});
        m["suppressed"] = json!(s.suppressed);
    }
    let text =
        serde_json::to_string_pretty(&m).map_err(|e| Error::Other(format!("cannot serialise the manifest: {e}")))?;
    atomic::write_staged(&dir.join("run.json"), text.as_bytes())
}

// ---- Enforcement: land-use overlay, category, chips and exports
// ---- (src/patches/{overlay,category}.rs, src/publish/{chips,exports}.rs).

/// The land-use and other layers, loading on their own thread while the images are processed
/// (the overlay needs them only once the patches exist). `None` when no layer was given.
type LayersLoading = Option<std::thread::JoinHandle<Result<overlay::Overlay>>>;

/// Starts loading the request's layers onto the scene's grid. A bad county-fields option is
/// reported here, before any image work; a bad layer file when the overlay needs it.
fn start_loading_layers(scene: &Scene, req: &DetectRequest) -> Result<LayersLoading> {
    let paths = overlay::LayerPaths {
        landuse: req.landuse.clone(),
        basic_farmland: req.basic_farmland.clone(),
        approved: req.approved.clone(),
        counties: req.counties.clone(),
        red_line: req.red_line.clone(),
        allow_empty_landuse: req.allow_empty_landuse,
    };
    if !paths.any() {
        return Ok(None);
    }
    let fields = req
        .county_fields
        .as_deref()
        .map(overlay::CountyFields::parse)
        .transpose()?
        .unwrap_or_default();
    // Empty for a plain image, whose layers `check_grid` then refuses (they cannot be placed).
    let wkt = scene.before.georef.as_ref().map(|g| g.wkt.clone()).unwrap_or_default();
    overlay::Overlay::check_grid(&paths, &wkt)?;
    let bounds = grid_bounds(scene);
    Ok(Some(std::thread::spawn(move || {
        crate::io::yield_to_critical_path();
        overlay::Overlay::load(&paths, &fields, &wkt, bounds)
    })))
}

/// Fills each patch's land use from the layers (when any was given), sets its category and
/// drops off-cropland changes in no category.
fn enforce(
    model: &Model,
    req: &DetectRequest,
    areas: &AreaCalc,
    patches: &mut Vec<Patch>,
    layers: LayersLoading,
) -> Result<()> {
    if let Some(loading) = layers {
        let ov = loading
            .join()
            .unwrap_or_else(|_| Err(Error::Other("the layer loader stopped unexpectedly".into())))?;
        ov.apply(patches, areas, model.categories.village_distance_m);
    }
    let counts = category::assign(patches, &model.categories, req.keep_all, areas);
    tracing::info!(kept = ?counts.kept, dropped_off_cropland = counts.dropped_off_cropland, "categorised");
    Ok(())
}

/// The image's extent `[min_x, min_y, max_x, max_y]` in its CRS.
fn grid_bounds(scene: &Scene) -> [f64; 4] {
    let gt = vectorise::grid_transform(scene.before.georef.as_ref());
    patches::layer::grid_bounds(gt, scene.width(), scene.height())
}

/// `patches.gpkg` and `patches_shp/patches.shp` with the GeoJSON's properties.
fn write_exports(
    dir: &Path,
    scene: &Scene,
    patches: &[Patch],
    published: &Published,
    req: &DetectRequest,
) -> Result<()> {
    let wkt = scene.before.georef.as_ref().map(|g| g.wkt.as_str());
    let props = &published.properties;
    let rows: Vec<exports::Row> = patches
        .iter()
        .zip(props)
        .map(|(patch, properties)| exports::Row { patch, properties })
        .collect();
    let crs = exports::ExportCrs::for_grid(wkt)?;
    exports::write_all(dir, &rows, wkt, req.dbf_encoding)?;
    tracing::info!(crs = %crs.label, "wrote patches.gpkg and patches_shp/");
    Ok(())
}
