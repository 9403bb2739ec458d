//! End-to-end checks of `landwatch_synth` on a moderate scene (1024 px = 4.2 km²): every file
//! opens in GDAL on the right grid, every change type is in the truth, target changes lie on
//! cropland of the land-use layer, non-target ones do not, and nothing changes under clouds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gdal::raster::GdalDataType;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{Geometry, LayerAccess};
use gdal::{Dataset, Metadata};
use landwatch_synth::{generate, SynthParams, SynthSummary};

/// One scene shared by the tests in this file (generated once).
fn scene() -> &'static (PathBuf, SynthSummary) {
    static SCENE: OnceLock<(PathBuf, SynthSummary)> = OnceLock::new();
    SCENE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let params = SynthParams {
            size: 1024,
            seed: 11,
            ..SynthParams::default()
        };
        let summary = generate(&params, &dir).expect("generate a 1024 scene");
        (dir, summary)
    })
}

fn band_u8(path: &Path) -> Vec<u8> {
    let ds = Dataset::open(path).expect("open raster");
    let band = ds.rasterband(1).expect("band 1");
    band.read_band_as::<u8>().expect("read").data().to_vec()
}

fn band_i32(path: &Path) -> Vec<i32> {
    let ds = Dataset::open(path).expect("open raster");
    let band = ds.rasterband(1).expect("band 1");
    band.read_band_as::<i32>().expect("read").data().to_vec()
}

fn traditional(epsg: u32) -> SpatialRef {
    let mut srs = SpatialRef::from_epsg(epsg).expect("srs");
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    srs
}

/// Truth features: (id, type_code, dlbm_before, area_m2, geometry in EPSG:4545).
fn truth_features(dir: &Path) -> Vec<(i32, i32, String, f64, Geometry)> {
    let ds = Dataset::open(dir.join("truth_changes.geojson")).expect("open geojson");
    let mut layer = ds.layer(0).expect("layer");
    let srs = layer.spatial_ref().expect("geojson has a CRS");
    assert_eq!(srs.auth_code().expect("code"), 4326);
    let to_gk = CoordTransform::new(&traditional(4326), &traditional(4545)).expect("transform");
    layer
        .features()
        .map(|f| {
            let get_i = |n: &str| f.field_as_integer(f.field_index(n).expect(n)).expect(n).expect(n);
            let dlbm = f
                .field_as_string(f.field_index("dlbm_before").expect("dlbm"))
                .expect("dlbm")
                .expect("dlbm");
            let area = f
                .field_as_double(f.field_index("area_m2").expect("area"))
                .expect("area")
                .expect("area");
            let g = f.geometry().expect("geometry").transform(&to_gk).expect("reproject");
            (get_i("id"), get_i("type_code"), dlbm, area, g)
        })
        .collect()
}

#[test]
fn rasters_open_in_gdal_on_the_epsg4545_grid() {
    let (dir, _) = scene();
    let expect = [
        ("before.tif", 4, GdalDataType::UInt16),
        ("after.tif", 4, GdalDataType::UInt16),
        ("truth_labels.tif", 1, GdalDataType::UInt8),
        ("truth_ids.tif", 1, GdalDataType::Int32),
        ("clouds.tif", 1, GdalDataType::UInt8),
    ];
    for (name, bands, ty) in expect {
        let ds = Dataset::open(dir.join(name)).expect(name);
        assert_eq!(ds.raster_size(), (1024, 1024), "{name}");
        assert_eq!(ds.raster_count(), bands, "{name}");
        assert_eq!(
            ds.spatial_ref().expect("srs").auth_code().expect("code"),
            4545,
            "{name}"
        );
        assert_eq!(
            ds.geo_transform().expect("gt"),
            [530000.0, 2.0, 0.0, 2535000.0, 0.0, -2.0],
            "{name}"
        );
        let band = ds.rasterband(1).expect("band");
        assert_eq!(band.band_type(), ty, "{name}");
        assert_eq!(band.block_size(), (256, 256), "{name} is tiled");
    }
    let ds = Dataset::open(dir.join("before.tif")).expect("before");
    let names: Vec<String> = (1..=4)
        .map(|b| ds.rasterband(b).expect("band").description().expect("desc"))
        .collect();
    assert_eq!(names, ["B", "G", "R", "NIR"]);
    assert_eq!(
        ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE").as_deref(),
        Some("DEFLATE")
    );
}

#[test]
fn images_hold_plausible_reflectance_and_differ_between_dates() {
    let (dir, _) = scene();
    let read = |name: &str, b: usize| -> Vec<u16> {
        let ds = Dataset::open(dir.join(name)).expect(name);
        let band = ds.rasterband(b).expect("band");
        band.read_band_as::<u16>().expect("read").data().to_vec()
    };
    let mean = |v: &[u16]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let (red, nir) = (read("before.tif", 3), read("before.tif", 4));
    assert!(red.iter().chain(&nir).all(|&v| (1..=10000).contains(&v)));
    // A green, cropped landscape: NIR well above red on average.
    assert!(mean(&nir) > 1.5 * mean(&red), "NIR {} red {}", mean(&nir), mean(&red));
    assert_ne!(read("before.tif", 1), read("after.tif", 1));
}

#[test]
fn every_change_type_is_in_the_truth_and_matches_the_geojson() {
    let (dir, summary) = scene();
    let labels = band_u8(&dir.join("truth_labels.tif"));
    let ids = band_i32(&dir.join("truth_ids.tif"));
    let codes: BTreeSet<u8> = labels.iter().copied().collect();
    assert_eq!(codes, BTreeSet::from([0, 1, 2, 3, 4, 5, 9]));
    let feats = truth_features(dir);
    let type_of: BTreeMap<i32, i32> = feats.iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(type_of.len(), feats.len(), "ids are unique");
    assert_eq!(feats.len(), summary.changes.values().sum::<usize>());
    // Pixel ids agree with pixel codes and with the GeoJSON types.
    for (&l, &i) in labels.iter().zip(&ids) {
        assert_eq!(l == 0, i == 0);
        if i != 0 {
            assert_eq!(type_of.get(&i).copied(), Some(l as i32), "id {i}");
        }
    }
    // Every truth object is visible in the raster with about its area (2 m pixels: 4 m² each).
    for (id, _, _, area, _) in &feats {
        let px = ids.iter().filter(|&&v| v == *id).count() as f64 * 4.0;
        assert!(
            (px - area).abs() < 0.25 * area + 40.0,
            "id {id}: {px} m² of pixels vs {area} m²"
        );
    }
}

#[test]
fn target_changes_lie_on_cropland_and_non_target_ones_off_it() {
    let (dir, _) = scene();
    let ds = Dataset::open(dir.join("landuse.gpkg")).expect("open gpkg");
    let mut layer = ds.layer_by_name("dltb").expect("layer dltb");
    assert_eq!(layer.spatial_ref().expect("srs").auth_code().expect("code"), 4545);
    let mut parcels: Vec<(String, Geometry)> = Vec::new();
    let mut names: BTreeSet<(String, String)> = BTreeSet::new();
    for f in layer.features() {
        let s = |n: &str| f.field_as_string(f.field_index(n).expect(n)).expect(n).expect(n);
        names.insert((s("DLBM"), s("DLMC")));
        parcels.push((s("DLBM"), f.geometry().expect("geometry").clone()));
    }
    assert!(
        names.contains(&("0101".into(), "水田".into())) && names.contains(&("0103".into(), "旱地".into())),
        "{names:?}"
    );
    for (id, code, dlbm_before, _, g) in truth_features(dir) {
        let mut by_class: BTreeMap<&str, f64> = BTreeMap::new();
        for (dlbm, p) in &parcels {
            if let Some(i) = g.intersection(p) {
                *by_class.entry(dlbm.as_str()).or_default() += i.area();
            }
        }
        let crop = by_class.get("0101").copied().unwrap_or(0.0) + by_class.get("0103").copied().unwrap_or(0.0);
        let dominant = by_class
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|x| *x.0)
            .unwrap_or("none");
        if code == 9 {
            assert!(crop < 0.01 * g.area(), "non-target {id} overlaps cropland by {crop} m²");
        } else {
            assert!(
                crop > 0.98 * g.area(),
                "change {id} (type {code}) is only {crop} of {} m² on cropland",
                g.area()
            );
        }
        assert_eq!(dominant, dlbm_before, "change {id}: dlbm_before");
    }
}

#[test]
fn no_change_under_clouds_or_their_shadows() {
    let (dir, summary) = scene();
    let labels = band_u8(&dir.join("truth_labels.tif"));
    let clouds = band_u8(&dir.join("clouds.tif"));
    let cloudy = clouds.iter().filter(|&&c| c == 1).count();
    let shadowed = clouds.iter().filter(|&&c| c == 2).count();
    assert!(cloudy > 0 && shadowed > 0, "the scene should have clouds and shadows");
    assert!((summary.cloud_fraction - cloudy as f64 / clouds.len() as f64).abs() < 1e-9);
    let under = labels.iter().zip(&clouds).filter(|(&l, &c)| l != 0 && c != 0).count();
    assert_eq!(under, 0, "{under} changed pixels under cloud or shadow");
}

#[test]
fn meta_json_records_params_and_counts() {
    let (dir, summary) = scene();
    let text = std::fs::read_to_string(dir.join("meta.json")).expect("meta.json");
    let meta: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(meta["params"]["size"], 1024);
    assert_eq!(meta["params"]["seed"], 11);
    assert_eq!(meta["crs"], "EPSG:4545");
    for (name, n) in &summary.changes {
        assert_eq!(meta["changes"][name], *n as u64, "{name}");
    }
    // About 5 target changes per km² (4.19 km² here) and 1 non-target per km².
    let targets: usize = summary
        .changes
        .iter()
        .filter(|(k, _)| *k != "non_target")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(targets, 21);
    assert_eq!(summary.changes.get("non_target"), Some(&4));
    // Seasonal crop changes (not real changes) on about a quarter of the parcels.
    let share = summary.seasonal_changes as f64 / summary.crop_parcels as f64;
    assert!((0.18..0.32).contains(&share), "seasonal share {share}");
}
