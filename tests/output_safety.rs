//! `detect --out` replaces only a folder landwatch wrote: other people's files and the run's
//! own inputs are never deleted, and what a killed run left beside the output is cleaned up.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod landuse_support;

fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/demo")
}

/// `detect` on the demo pair (no chips, to keep it quick) into `out`.
fn detect_demo(before: &Path, after: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_landwatch"))
        .arg("detect")
        .arg("--before")
        .arg(before)
        .arg("--after")
        .arg(after)
        .arg("--out")
        .arg(out)
        .arg("--no-chips")
        .output()
        .expect("run landwatch")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_folder_of_other_files_is_refused_and_kept() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("v");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("important.txt"), "x").unwrap();
    let run = detect_demo(&seeds().join("before.tif"), &seeds().join("after.tif"), &out);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("important.txt"), "{}", stderr(&run));
    assert_eq!(std::fs::read_to_string(out.join("important.txt")).unwrap(), "x");
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        1,
        "nothing staged beside it"
    );
}

#[test]
fn the_inputs_folder_is_never_the_output() {
    let root = tempfile::tempdir().unwrap();
    let inputs = root.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    for f in ["before.tif", "after.tif"] {
        std::fs::copy(seeds().join(f), inputs.join(f)).unwrap();
    }
    let run = detect_demo(&inputs.join("before.tif"), &inputs.join("after.tif"), &inputs);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(inputs.join("before.tif").exists() && inputs.join("after.tif").exists());
}

#[test]
fn landwatchs_own_output_is_replaced_but_not_once_someone_adds_to_it() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("det");
    let (before, after) = (seeds().join("before.tif"), seeds().join("after.tif"));
    let first = detect_demo(&before, &after, &out);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(out.join(".landwatch-output").exists());
    let again = detect_demo(&before, &after, &out);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(out.join("patches.geojson").exists());

    std::fs::write(out.join("notes.txt"), "reviewer's notes").unwrap();
    let refused = detect_demo(&before, &after, &out);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("notes.txt"), "{}", stderr(&refused));
    assert!(out.join("notes.txt").exists() && out.join("patches.geojson").exists());
}

#[test]
fn a_killed_runs_staging_folder_is_removed_by_the_next_run() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("det");
    // What a run killed mid-pass leaves: a staging folder with its (no longer locked) marker.
    let leftover = root.path().join(".det.staging-killed");
    std::fs::create_dir(&leftover).unwrap();
    std::fs::write(leftover.join(".landwatch-output"), "").unwrap();
    std::fs::write(leftover.join("change.tif"), "half").unwrap();
    // Something that only looks like one (no marker) is not ours to delete.
    let lookalike = root.path().join(".det.staging-notours");
    std::fs::create_dir(&lookalike).unwrap();
    std::fs::write(lookalike.join("data"), "x").unwrap();

    let run = detect_demo(&seeds().join("before.tif"), &seeds().join("after.tif"), &out);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(!leftover.exists(), "the killed run's leftover is cleaned");
    assert!(lookalike.join("data").exists());
    let names: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "only the output and the lookalike remain: {names:?}");
}

/// The demo's land-use layer with DLBM stored as an integer (`0101` → `101`) and without DLMC.
fn numeric_landuse(path: &Path) {
    use gdal::vector::LayerAccess;
    let src = gdal::Dataset::open(seeds().join("landuse.gpkg")).unwrap();
    let mut layer = src.layer_by_name("dltb").unwrap();
    let srs = layer.spatial_ref().unwrap();
    let parcels: Vec<_> = layer
        .features()
        .map(|f| {
            let idx = f.field_index("DLBM").unwrap();
            let code: i64 = f.field_as_string(idx).unwrap().unwrap().parse().unwrap();
            (f.geometry().unwrap().clone(), code)
        })
        .collect();
    landuse_support::write_numeric_dlbm(path, &srs, parcels);
}

fn patch_count(out: &Path) -> usize {
    let text = std::fs::read_to_string(out.join("patches.geojson")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["features"].as_array().unwrap().len()
}

#[test]
fn a_land_use_layer_with_numeric_codes_finds_the_same_patches() {
    let root = tempfile::tempdir().unwrap();
    let numeric = root.path().join("numeric.gpkg");
    numeric_landuse(&numeric);
    let mut counts = Vec::new();
    for (name, layer) in [("text", seeds().join("landuse.gpkg")), ("numeric", numeric)] {
        let out = root.path().join(name);
        let run = Command::new(env!("CARGO_BIN_EXE_landwatch"))
            .arg("detect")
            .args(["--before", seeds().join("before.tif").to_str().unwrap()])
            .args(["--after", seeds().join("after.tif").to_str().unwrap()])
            .args(["--landuse", layer.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap(), "--no-chips"])
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
        counts.push(patch_count(&out));
    }
    assert!(counts[0] > 0, "the demo finds patches on cropland");
    assert_eq!(counts[0], counts[1], "integer DLBM codes read as the same 三调 classes");
}
