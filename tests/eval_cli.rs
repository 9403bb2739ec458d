//! End-to-end tests of `landwatch eval`: tiny before/after pairs written with GDAL (a bright
//! "roof" appears in the after image), detected with the real engine, scored against a label
//! that does — or deliberately does not — match the change.

use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::spatial_ref::SpatialRef;
use gdal::{Dataset, DriverManager};
use landwatch_core::pair::{self, DetectRequest};
use ndarray::Array2;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const W: usize = 96;
const H: usize = 96;
/// The square that changes: x, y, side.
const ROOF: (usize, usize, usize) = (40, 30, 24);
/// A square of the same size where nothing changes.
const ELSEWHERE: (usize, usize, usize) = (8, 64, 24);

fn inside(sq: (usize, usize, usize), x: usize, y: usize) -> bool {
    x >= sq.0 && x < sq.0 + sq.2 && y >= sq.1 && y < sq.1 + sq.2
}

/// Deterministic noise in 0..1 from a pixel position and a seed.
fn noise(x: usize, y: usize, seed: u64) -> f32 {
    let mut h = (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (y as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ seed;
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 32;
    (h % 10_000) as f32 / 10_000.0
}

/// RGB farmland: 16-px parcels of different greens and browns with in-field texture that both
/// dates share (furrows, soil), plus a little sensor noise of each date's own. The after date
/// has, when `roof`, a bright grey square.
fn scene(after: bool, roof: bool) -> Vec<Array2<u8>> {
    let base = [
        [70.0, 110.0, 60.0],
        [120.0, 100.0, 80.0],
        [90.0, 140.0, 70.0],
        [140.0, 125.0, 95.0],
    ];
    (0..3)
        .map(|band| {
            Array2::from_shape_fn((H, W), |(y, x)| {
                let parcel = ((x / 16) * 7 + (y / 16) * 3 + (x / 16) * (y / 16)) % 4;
                let texture = 30.0 * (noise(x, y, 7) - 0.5);
                let sensor = 6.0 * (noise(x, y, band as u64 + if after { 100 } else { 0 }) - 0.5);
                let v = if after && roof && inside(ROOF, x, y) {
                    225.0
                } else {
                    base[parcel][band] + texture + sensor
                };
                v.clamp(0.0, 255.0) as u8
            })
        })
        .collect()
}

fn write_bands(ds: &Dataset, bands: &[Array2<u8>]) {
    for (i, b) in bands.iter().enumerate() {
        let mut buf: Buffer<u8> = b.clone().into();
        ds.rasterband(i + 1).unwrap().write((0, 0), (W, H), &mut buf).unwrap();
    }
}

/// Writes a plain PNG (no georeferencing) through a MEM dataset (PNG has no Create).
fn write_png(path: &Path, bands: &[Array2<u8>]) {
    let mem = DriverManager::get_driver_by_name("MEM").unwrap();
    let ds = mem.create_with_band_type::<u8, _>("", W, H, bands.len()).unwrap();
    write_bands(&ds, bands);
    let png = DriverManager::get_driver_by_name("PNG").unwrap();
    ds.create_copy(&png, path, &RasterCreationOptions::default()).unwrap();
}

/// Writes a GeoTIFF at 2 m in UTM 50N.
fn write_tif(path: &Path, bands: &[Array2<u8>]) {
    let drv = DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = drv.create_with_band_type::<u8, _>(path, W, H, bands.len()).unwrap();
    ds.set_geo_transform(&[500_000.0, 2.0, 0.0, 3_500_000.0, 0.0, -2.0])
        .unwrap();
    ds.set_spatial_ref(&SpatialRef::from_epsg(32650).unwrap()).unwrap();
    write_bands(&ds, bands);
}

/// A label: `value` inside `sq`, 0 elsewhere (or `outside` where given).
fn label(sq: (usize, usize, usize), value: u8, outside: u8) -> Vec<Array2<u8>> {
    vec![Array2::from_shape_fn((H, W), |(y, x)| {
        if inside(sq, x, y) {
            value
        } else {
            outside
        }
    })]
}

struct Pair {
    _dir: tempfile::TempDir,
    root: PathBuf,
    run: PathBuf,
}

/// Writes a pair, detects it (keep_all), and returns where everything is.
fn detected_pair(georeferenced: bool) -> Pair {
    landwatch_core::io::init_gdal();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let ext = if georeferenced { "tif" } else { "png" };
    let (a, b) = (root.join(format!("a.{ext}")), root.join(format!("b.{ext}")));
    let write = if georeferenced { write_tif } else { write_png };
    write(&a, &scene(false, false));
    write(&b, &scene(true, true));
    let run = root.join("run");
    let req = DetectRequest {
        pixel_size: (!georeferenced).then_some(2.0),
        keep_all: true,
        ..DetectRequest::new(&a, &b, &run)
    };
    pair::run(&req).unwrap();
    Pair { _dir: dir, root, run }
}

fn landwatch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_landwatch"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn eval_json(pred: &Path, label: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "eval",
        "--pred",
        pred.to_str().unwrap(),
        "--label",
        label.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = landwatch(&args);
    assert_eq!(code, 0, "eval failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

#[test]
fn matching_label_scores_high_on_pixels_and_patches() {
    let p = detected_pair(false);
    let lab = p.root.join("label.png");
    write_png(&lab, &label(ROOF, 255, 0));
    let v = eval_json(&p.run, &lab, &["--label-change-values", "255"]);
    assert!(f(&v, "/scores/f1") > 0.8, "{v}");
    assert!(f(&v, "/scores/iou") > 0.7, "{v}");
    assert_eq!(f(&v, "/scores/patch_recall"), 1.0, "{v}");
    assert_eq!(f(&v, "/counts/patch/true_patches"), 1.0, "{v}");
    assert_eq!(f(&v, "/counts/pixel/ignored"), 0.0);
    // The same run scored through its per-pixel class raster agrees.
    let m = eval_json(&p.run.join("change.tif"), &lab, &["--label-change-values", "255"]);
    assert!(f(&m, "/scores/f1") > 0.8, "{m}");
}

#[test]
fn label_that_does_not_match_the_change_scores_low() {
    let p = detected_pair(false);
    let lab = p.root.join("wrong.png");
    write_png(&lab, &label(ELSEWHERE, 255, 0));
    let v = eval_json(&p.run.join("patches.geojson"), &lab, &["--label-change-values", "255"]);
    assert!(f(&v, "/scores/f1") < 0.1, "{v}");
    assert_eq!(f(&v, "/scores/patch_recall"), 0.0, "{v}");
    assert!(
        f(&v, "/counts/pixel/fp") > 400.0,
        "the roof must count as false alarm: {v}"
    );
}

#[test]
fn lon_lat_patches_are_put_back_on_a_projected_label_grid() {
    let p = detected_pair(true);
    let good = p.root.join("label.tif");
    write_tif(&good, &label(ROOF, 1, 0));
    let v = eval_json(&p.run, &good, &["--label-change-values", "1"]);
    assert!(f(&v, "/scores/f1") > 0.8, "{v}");
    let wrong = p.root.join("wrong.tif");
    write_tif(&wrong, &label(ELSEWHERE, 1, 0));
    let v = eval_json(&p.run, &wrong, &["--label-change-values", "1"]);
    assert!(f(&v, "/scores/f1") < 0.1, "{v}");
}

#[test]
fn unlabelled_pixels_are_ignored() {
    let p = detected_pair(false);
    // Only the right half of the image is labelled: 1 = change (the roof), 0 = no change.
    let lab = p.root.join("sparse.png");
    let sparse = Array2::from_shape_fn((H, W), |(y, x)| match (x >= 52, inside(ROOF, x, y)) {
        (false, _) => 255u8,
        (true, true) => 1,
        (true, false) => 0,
    });
    write_png(&lab, &[sparse]);
    let v = eval_json(&p.run, &lab, &["--ignore-value", "255"]);
    assert_eq!(f(&v, "/counts/pixel/ignored"), (52 * H) as f64, "{v}");
    let labelled_roof = ((ROOF.0 + ROOF.2 - 52) * ROOF.2) as f64;
    let c = f(&v, "/counts/pixel/tp") + f(&v, "/counts/pixel/fn");
    assert_eq!(c, labelled_roof, "{v}");
    assert!(f(&v, "/scores/recall") > 0.8, "{v}");
    // Without --ignore-value the default change values 255,1 make the unlabelled half "change".
    let v = eval_json(&p.run, &lab, &[]);
    assert!(f(&v, "/scores/recall") < 0.3, "{v}");
}

#[test]
fn bad_inputs_exit_2_naming_the_file() {
    let p = detected_pair(false);
    let missing = p.root.join("nope.png");
    let (code, _, err) = landwatch(&[
        "eval",
        "--pred",
        p.run.to_str().unwrap(),
        "--label",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope.png") && err.contains("not found"), "{err}");

    let lab = p.root.join("label.png");
    write_png(&lab, &label(ROOF, 255, 0));
    // A mask prediction that is not on the 96x96 label grid.
    let mem = DriverManager::get_driver_by_name("MEM").unwrap();
    let ds = mem.create_with_band_type::<u8, _>("", 48, 48, 1).unwrap();
    let crop = p.root.join("crop.tif");
    ds.create_copy(
        &DriverManager::get_driver_by_name("GTiff").unwrap(),
        &crop,
        &RasterCreationOptions::default(),
    )
    .unwrap();
    let (code, _, err) = landwatch(&[
        "eval",
        "--pred",
        crop.to_str().unwrap(),
        "--label",
        lab.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("crop.tif") && err.contains("label grid"), "{err}");

    let (code, _, err) = landwatch(&[
        "eval",
        "--pred",
        p.run.to_str().unwrap(),
        "--label",
        lab.to_str().unwrap(),
        "--label-change-values",
        "255,x",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--label-change-values"), "{err}");

    let notjson = p.root.join("bad.geojson");
    std::fs::write(&notjson, "{ not json").unwrap();
    let (code, _, err) = landwatch(&[
        "eval",
        "--pred",
        notjson.to_str().unwrap(),
        "--label",
        lab.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.geojson"), "{err}");

    let (code, _, _) = landwatch(&["eval", "--pred", p.run.to_str().unwrap()]);
    assert_eq!(code, 2, "--label is required");
}

/// `datasets/dsifn-cd/{A,B,label}` under `dir`: the dataset root and the dataset's folder.
fn dataset_folders(dir: &Path) -> (PathBuf, PathBuf) {
    landwatch_core::io::init_gdal();
    let root = dir.join("datasets");
    let ds = root.join("dsifn-cd");
    for sub in ["A", "B", "label"] {
        std::fs::create_dir_all(ds.join(sub)).unwrap();
    }
    (root, ds)
}

#[test]
fn datasets_command_aggregates_and_writes_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let (root, ds) = dataset_folders(dir.path());
    write_png(&ds.join("A/p1.png"), &scene(false, false));
    write_png(&ds.join("B/p1.png"), &scene(true, true));
    write_png(&ds.join("label/p1.png"), &label(ROOF, 255, 0));
    // A GDAL side-car in A/ is not a pair.
    std::fs::write(ds.join("A/p1.png.aux.xml"), "<PAMDataset/>").unwrap();
    std::fs::create_dir_all(root.join("mystery/A")).unwrap();
    let out = dir.path().join("report");
    let (code, stdout, err) = landwatch(&[
        "eval",
        "datasets",
        "--root",
        root.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}\n{stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["datasets"].as_array().map(Vec::len), Some(1), "{v}");
    let d = &v["datasets"][0];
    assert_eq!(d["dataset"], "dsifn-cd");
    assert_eq!(d["pairs"], 1);
    assert!(f(d, "/landwatch_scores/f1") > 0.8, "{d}");
    assert!(f(d, "/baseline_scores/f1") > 0.0, "{d}");
    assert_eq!(d["settings"]["pixel_size_m"], 2.0);
    assert!(v["skipped"][0].as_str().unwrap_or("").starts_with("mystery"), "{v}");
    let md = std::fs::read_to_string(out.join("accuracy.md")).unwrap();
    assert!(md.contains("| dsifn-cd | 1 |"), "{md}");
    // The protocol is on the table: landwatch's figures in-sample, the baseline untuned.
    assert!(md.contains("px F1¹") && md.contains("In-sample"), "{md}");
    assert!(
        md.contains("baseline² px P") && md.contains("no tuned parameters"),
        "{md}"
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(out.join("accuracy.json")).unwrap()).unwrap();
    assert_eq!(saved["datasets"][0]["landwatch"], d["landwatch"]);
}

#[test]
fn datasets_command_refuses_a_missing_root() {
    let (code, _, err) = landwatch(&["eval", "datasets", "--root", "/nonexistent/datasets"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/datasets"), "{err}");
}

/// `--cv kfold:3` over three pairs: each pair is scored by a model trained on the other two,
/// the table states the protocol, and leave-one-dataset-out with a single dataset says why it
/// has no figure. A bad protocol is a usage error.
#[test]
fn datasets_cross_validation_never_scores_a_pair_with_a_model_trained_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let (root, ds) = dataset_folders(dir.path());
    for p in ["p1", "p2", "p3"] {
        write_png(&ds.join(format!("A/{p}.png")), &scene(false, false));
        write_png(&ds.join(format!("B/{p}.png")), &scene(true, true));
        write_png(&ds.join(format!("label/{p}.png")), &label(ROOF, 255, 0));
    }
    let out = dir.path().join("report");
    let root_arg = root.to_str().unwrap();
    #[rustfmt::skip]
    let (code, stdout, err) = landwatch(&[
        "eval", "datasets", "--root", root_arg, "--cv", "kfold:3", "--out", out.to_str().unwrap(), "--json",
    ]);
    assert_eq!(code, 0, "{err}\n{stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let learned = &v["datasets"][0]["learned"];
    let pairs = learned["per_pair"].as_array().expect("per-pair learned results");
    let mut folds: Vec<u64> = pairs.iter().map(|p| p["fold"].as_u64().unwrap()).collect();
    folds.sort();
    assert_eq!(folds, vec![0, 1, 2], "one fold per pair: {learned}");
    assert!(pairs.iter().all(|p| p["trained_on_pairs"] == 2), "{learned}");
    assert!(f(learned, "/scores/f1") > 0.5, "{learned}");
    // Depth, radius and edge features are chosen inside each fold's training pairs, and
    // recorded per pair.
    for p in pairs {
        assert!([3, 4].contains(&p["chosen"]["max_depth"].as_u64().unwrap()), "{p}");
        assert!([15, 31].contains(&p["chosen"]["max_radius"].as_u64().unwrap()), "{p}");
        assert!(p["chosen"]["edges"].is_boolean(), "{p}");
    }
    // The share of the change inside the candidates, at each factor: more at lower ones.
    let shares: Vec<f64> = learned["candidate_recall"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .collect();
    assert_eq!(shares.len(), 3, "{learned}");
    assert!(
        shares[0] > 0.5 && shares.windows(2).all(|w| w[0] <= w[1]) && shares[2] <= 1.0,
        "{learned}"
    );
    let factor_ok = |p: &Value| {
        [0.5, 0.35, 0.25]
            .iter()
            .any(|&c| (f(p, "/candidate_factor") - c).abs() < 1e-6)
    };
    assert!(pairs.iter().all(factor_ok), "{learned}");
    assert_eq!(v["cv"], "k-fold by pair within the dataset (K = 3)");
    let md = std::fs::read_to_string(out.join("accuracy.md")).unwrap();
    assert!(md.contains("Learned cascade") && md.contains("Not in-sample"), "{md}");

    let (code, stdout, err) = landwatch(&["eval", "datasets", "--root", root_arg, "--cv", "lodo", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["datasets"][0]["learned"]["pairs"], 0);
    assert!(v["datasets"][0]["learned"]["note"]
        .as_str()
        .unwrap_or("")
        .contains("no other dataset"));

    let (code, _, err) = landwatch(&["eval", "datasets", "--root", root_arg, "--cv", "kfold:1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--cv 'kfold:1'"), "{err}");
}
