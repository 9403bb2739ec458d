//! Deterministic synthetic before/after scenes with ground truth (`landwatch synth`).
//!
//! Real enforcement imagery comes without complete truth, so landwatch measures its detection and
//! typing on scenes it makes itself: a Guangxi-like countryside (paddy and dry land in field blocks
//! with field roads, villages, forest, orchards, fish ponds, roads) seen on two dates 2 m
//! apart in EPSG:4545 near Nanning, with everything that makes real pairs hard — seasonal crop
//! changes that are not changes, sensor gain/offset, haze, sub-pixel misregistration, blur, noise,
//! clouds with shadows — and planted real changes of every reportable type on cropland, plus
//! non-target changes off cropland. The same parameters give byte-identical files on any number
//! of threads.
//!
//! Files written to the output folder (each atomically): `before.tif`, `after.tif` (4-band
//! UInt16 B,G,R,NIR reflectance x 10000), `truth_labels.tif` (UInt8 change codes, see
//! [`ChangeType`]), `truth_ids.tif` (Int32 object id = `id` in the GeoJSON), `clouds.tif`
//! (1 cloud, 2 shadow on the after image), `truth_changes.geojson` (EPSG:4326), `landuse.gpkg`
//! (layer `dltb`: BSM, DLBM, DLMC, TBMJ) and `meta.json` (parameters and counts).
//!
//! Pipeline: [`scene`] lays out vectors, [`changes`] adds clouds and planted changes, [`render`]
//! renders row strips in parallel (rayon), [`write`] streams them into GDAL files on a writer
//! thread, so memory stays bounded by a few strips whatever the size.
#![warn(missing_docs)]

mod changes;
mod cli;
mod geom;
mod noise;
mod render;
mod scene;
mod spectra;
mod variety;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use rand::Rng;
use rayon::prelude::*;
use variety::Product;

pub use changes::ChangeType;
pub use cli::{cli_main, SynthArgs};

use landwatch_core::{Error, Result};

/// Rows per rendered strip; equal to the GeoTIFF tile height so each strip completes a tile row.
const STRIP_ROWS: usize = 256;
fn is_false(b: &bool) -> bool {
    !*b
}

/// Version of the scene recipe; bump when the same parameters start to give different scenes.
pub const GENERATOR_VERSION: &str = "landwatch-synth 1";

/// What scene to make. Two runs with equal parameters produce identical files.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SynthParams {
    /// Pixels per image side.
    pub size: usize,
    /// Scene seed.
    pub seed: u64,
    /// Ground sampling distance in metres.
    pub pixel_m: f64,
    /// Target (cropland) changes per km²; at least one of each type is planted.
    pub changes_per_km2: f64,
    /// Non-target changes (off cropland) per km².
    pub nontarget_per_km2: f64,
    /// Approximate share of the after image under cloud.
    pub cloud_cover: f64,
    /// Share of crop parcels whose state changes between the dates (seasonal, not reportable).
    pub seasonal_share: f64,
    /// Draw the scene's look from the seed too (see [`variety`]): radiometric product, sensor
    /// and atmosphere, season and roofs vary from seed to seed, as real pairs do.
    #[serde(skip_serializing_if = "is_false")]
    pub vary: bool,
}

impl Default for SynthParams {
    fn default() -> Self {
        SynthParams {
            size: 2048,
            seed: 42,
            pixel_m: 2.0,
            changes_per_km2: 5.0,
            nontarget_per_km2: 1.0,
            cloud_cover: 0.015,
            seasonal_share: 0.25,
            vary: false,
        }
    }
}

impl SynthParams {
    /// Rejects parameters that cannot make a sensible scene, naming the parameter.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Usage(format!("synth: {what}")));
        if !(64..=100_000).contains(&self.size) {
            return bad(&format!(
                "--size {} is out of range: use 64 to 100000 pixels",
                self.size
            ));
        }
        if !(self.pixel_m.is_finite() && (0.3..=30.0).contains(&self.pixel_m)) {
            return bad(&format!(
                "--pixel-m {} is out of range: use 0.3 to 30 metres",
                self.pixel_m
            ));
        }
        for (name, v, max) in [
            ("--changes-per-km2", self.changes_per_km2, 100.0),
            ("--nontarget-per-km2", self.nontarget_per_km2, 100.0),
            ("--cloud-cover", self.cloud_cover, 0.3),
            ("--seasonal-share", self.seasonal_share, 1.0),
        ] {
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                return bad(&format!("{name} {v} is out of range: use 0 to {max}"));
            }
        }
        Ok(())
    }
}

/// What was made.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SynthSummary {
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Truth objects per change type name.
    pub changes: BTreeMap<String, usize>,
    /// Changes that found no room, per type name (small or odd scenes).
    pub unplaced: BTreeMap<String, usize>,
    /// Crop parcels laid out.
    pub crop_parcels: usize,
    /// Crop parcels whose state changes between the dates.
    pub seasonal_changes: usize,
    /// Polygons in `landuse.gpkg`.
    pub landuse_polygons: usize,
    /// Share of the after image under cloud.
    pub cloud_fraction: f64,
    /// Share of the after image under cloud shadow.
    pub shadow_fraction: f64,
    /// Misregistration of the after image, pixels (x, y).
    pub shift_px: [f64; 2],
    /// Wall-clock seconds: total, laying out the scene, rendering + writing rasters, vectors.
    pub seconds: f64,
    /// Seconds laying out the scene.
    pub seconds_scene: f64,
    /// Seconds rendering and writing the rasters.
    pub seconds_rasters: f64,
    /// Seconds writing the vectors.
    pub seconds_vectors: f64,
}

/// Makes the scene described by `params` and writes its files into `out_dir` (created if needed).
pub fn generate(params: &SynthParams, out_dir: &Path) -> Result<SynthSummary> {
    params.validate()?;
    let started = Instant::now();
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, "creating the output folder", e))?;
    refuse_folders_in_the_way(out_dir)?;
    let extent = params.size as f64 * params.pixel_m;
    let variety = params.vary.then(|| variety::Variety::draw(params.seed));
    let (seasonal_share, roofs) = match &variety {
        Some(v) => (v.seasonal_share, v.roofs.clone()),
        None => (params.seasonal_share, variety::Variety::default_roofs()),
    };
    let mut scene = scene::Scene::build(extent, params.seed, seasonal_share, roofs);
    let clouds = changes::Clouds::generate(params.seed, extent, params.cloud_cover);
    let (truth, unplaced) = changes::plant(&mut scene, &clouds, params.changes_per_km2, params.nontarget_per_km2);
    scene.finish();
    let radiometry = match &variety {
        Some(v) => v.radiometry.clone(),
        None => draw_radiometry(params.seed),
    };
    let products = variety
        .as_ref()
        .map_or([Product::Reflectance, Product::Reflectance], |v| v.products.clone());
    let seconds_scene = started.elapsed().as_secs_f64();
    let renderer = render::Renderer::new(&scene, &clouds, &truth, params.size, params.pixel_m, radiometry.clone());

    let mut staging = write::Staging::new(out_dir);
    let paths = write::RasterPaths {
        before: staging.path("before.tif"),
        after: staging.path("after.tif"),
        labels: staging.path("truth_labels.tif"),
        ids: staging.path("truth_ids.tif"),
        clouds: staging.path("clouds.tif"),
    };
    let (cloud_px, shadow_px) = render_rasters(&renderer, paths, params, &products)?;
    let seconds_rasters = started.elapsed().as_secs_f64() - seconds_scene;
    let landuse_polygons = write::write_landuse(&staging.path("landuse.gpkg"), &scene.land, &scene.image_box())?;
    write::write_truth_geojson(&staging.path("truth_changes.geojson"), &truth)?;

    let pixels = (params.size * params.size) as f64;
    let mut summary = SynthSummary {
        files: Vec::new(),
        changes: count_by_type(&truth),
        unplaced: unplaced.iter().map(|(t, n)| (t.name().to_string(), *n)).collect(),
        crop_parcels: scene.crops.len(),
        seasonal_changes: scene.seasonal_changes,
        landuse_polygons,
        cloud_fraction: cloud_px as f64 / pixels,
        shadow_fraction: shadow_px as f64 / pixels,
        shift_px: radiometry.shift_px,
        seconds: 0.0,
        seconds_scene,
        seconds_rasters,
        seconds_vectors: 0.0,
    };
    let meta = meta_json(params, &summary, &radiometry, variety.as_ref(), scene.features.len());
    write::write_text(&staging.path("meta.json"), &meta)?;
    summary.files = staging.commit()?;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.seconds_vectors = summary.seconds - seconds_scene - seconds_rasters;
    Ok(summary)
}

/// The files `generate` writes, in the order they are moved into place (meta.json last: its
/// presence marks a complete scene).
pub const OUTPUT_FILES: [&str; 8] = [
    "before.tif",
    "after.tif",
    "truth_labels.tif",
    "truth_ids.tif",
    "clouds.tif",
    "landuse.gpkg",
    "truth_changes.geojson",
    "meta.json",
];

/// Fails early, before anything is written, when a folder sits where an output file must go
/// (the final rename would fail after minutes of work).
fn refuse_folders_in_the_way(out_dir: &Path) -> Result<()> {
    match OUTPUT_FILES.iter().map(|n| out_dir.join(n)).find(|p| p.is_dir()) {
        Some(p) => Err(Error::input(
            &p,
            "is a folder, but synth must write a file with this name there",
        )),
        None => Ok(()),
    }
}

/// Renders strips in parallel (in chunks, in order) and streams them to a writer thread, which
/// compresses while the next chunk renders. Returns cloud and shadow pixel counts.
fn render_rasters(
    renderer: &render::Renderer,
    paths: write::RasterPaths,
    params: &SynthParams,
    products: &[Product; 2],
) -> Result<(u64, u64)> {
    let size = params.size;
    let mut rasters = write::RasterSet::create(paths, size, params.pixel_m, products)?;
    let strips: Vec<(usize, usize)> = (0..size)
        .step_by(STRIP_ROWS)
        .map(|r0| (r0, (r0 + STRIP_ROWS).min(size)))
        .collect();
    let chunk = rayon::current_num_threads().max(1);
    let (tx, rx) = sync_channel::<render::Strip>(chunk);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(u64, u64)> {
            for strip in rx {
                rasters.write(strip)?;
            }
            let counts = (rasters.cloud_px, rasters.shadow_px);
            rasters.close()?;
            Ok(counts)
        });
        'render: for group in strips.chunks(chunk) {
            let rendered: Vec<render::Strip> = group.par_iter().map(|&(r0, r1)| renderer.strip(r0, r1)).collect();
            for strip in rendered {
                // A send fails only when the writer has stopped on an error, which join reports.
                if tx.send(strip).is_err() {
                    break 'render;
                }
            }
        }
        drop(tx);
        writer
            .join()
            .map_err(|_| Error::Other("synth: the raster writer thread panicked".into()))?
    })
}

/// The after image's sensor and geometry differences, from the scene seed.
fn draw_radiometry(seed: u64) -> render::Radiometry {
    let mut rng = scene::stream(seed, 12, 0);
    let (mag, ang): (f64, f64) = (rng.random_range(0.3..1.0), rng.random_range(0.0..std::f64::consts::TAU));
    let gain_base = [1.07f32, 1.04, 0.98, 0.93];
    let offset_base = [120.0f32, 80.0, 30.0, -50.0];
    render::Radiometry {
        shift_px: [round4(mag * ang.cos()), round4(mag * ang.sin())],
        gain: gain_base.map(|g| g * rng.random_range(0.97..1.03)),
        offset: offset_base.map(|o| o + rng.random_range(-30.0..30.0)),
        haze: [240.0, 170.0, 110.0, 40.0],
        blur_sigma_px: [0.5, 0.6],
    }
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

fn count_by_type(truth: &[changes::TruthChange]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in truth {
        *counts.entry(t.kind.name().to_string()).or_insert(0) += 1;
    }
    counts
}

/// meta.json: everything needed to reproduce and interpret the scene (no timings, so that the
/// file is identical between runs).
fn meta_json(
    params: &SynthParams,
    s: &SynthSummary,
    radiometry: &render::Radiometry,
    variety: Option<&variety::Variety>,
    features: usize,
) -> String {
    let mut meta = serde_json::json!({
        "generator": GENERATOR_VERSION,
        "params": params,
        "crs": format!("EPSG:{}", write::EPSG),
        "origin": write::ORIGIN,
        "bands": ["B", "G", "R", "NIR"],
        "scale": "reflectance*10000",
        "dates": { "before": write::DATE_BEFORE, "after": write::DATE_AFTER },
        "codes": { "1": "building", "2": "pond", "3": "orchard_forest", "4": "greenhouse", "5": "hardened", "9": "non_target" },
        "changes": s.changes,
        "unplaced": s.unplaced,
        "crop_parcels": s.crop_parcels,
        "seasonal_changes": s.seasonal_changes,
        "landuse_polygons": s.landuse_polygons,
        "scene_features": features,
        "cloud_fraction": round4(s.cloud_fraction),
        "shadow_fraction": round4(s.shadow_fraction),
        "radiometry": radiometry,
    });
    if let (Some(v), Some(m)) = (variety, meta.as_object_mut()) {
        // Only a varied scene's meta.json has these: the default recipe's stays as it was.
        m.insert(
            "scale".into(),
            serde_json::json!([v.products[0].label(), v.products[1].label()]),
        );
        m.insert("variety".into(), serde_json::json!(v));
    }
    let mut text = serde_json::to_string_pretty(&meta).unwrap_or_default();
    text.push('\n');
    text
}
