//! `detect --radiometry`: the same scene delivered as reflectance × 10000, as raw 12-bit DN (with
//! and without the file declaring NBITS), as DN stored in floats and with GDAL band scales must
//! give the same patches where the values say what they are, a warning where they may be DN read
//! as reflectance, and one clear error where they cannot be reflectance.

mod raster_support;

use raster_support::rewrite;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn demo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/demo").join(name)
}

/// Both demo dates rewritten into `dir` with `make(src, dst)`; returns (before, after).
fn pair(dir: &Path, tag: &str, make: impl Fn(&Path, &Path)) -> (PathBuf, PathBuf) {
    let (b, a) = (
        dir.join(format!("{tag}_before.tif")),
        dir.join(format!("{tag}_after.tif")),
    );
    make(&demo("before.tif"), &b);
    make(&demo("after.tif"), &a);
    (b, a)
}

fn detect(before: &Path, after: &Path, out: &Path, radiometry: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_landwatch"))
        .args(["detect", "--no-chips", "--radiometry", radiometry, "--landuse"])
        .arg(demo("landuse.gpkg"))
        .arg("--before")
        .arg(before)
        .arg("--after")
        .arg(after)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run landwatch")
}

fn manifest(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("run.json")).expect("run.json")).expect("json")
}

/// Each patch's change type and area (m²), in id order.
fn patches(out: &Path) -> Vec<(String, f64)> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("patches.geojson")).unwrap()).unwrap();
    v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = &f["properties"];
            (p["change_type"].to_string(), p["area_m2"].as_f64().expect("area_m2"))
        })
        .collect()
}

/// The same patches as `reference`, up to the outline changes 12-bit quantisation makes (a
/// pixel or two at an edge: 3 % of the area).
fn same_patches(got: &Path, reference: &Path) {
    let (got, want) = (patches(got), patches(reference));
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for ((gt, ga), (wt, wa)) in got.iter().zip(&want) {
        assert_eq!(gt, wt, "{got:?} vs {want:?}");
        assert!((ga - wa).abs() <= 0.03 * wa, "{got:?} vs {want:?}");
    }
}

fn ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}

/// 12-bit DN: reflectance × 4095.
fn to_dn12(v: f64) -> u16 {
    (v / 10000.0 * 4095.0).round() as u16
}

#[test]
fn twelve_bit_dn_read_as_dn_finds_what_reflectance_finds_and_read_as_reflectance_is_warned() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("ref");
    ok(&detect(&demo("before.tif"), &demo("after.tif"), &reference, "auto"));
    let (b, a) = pair(tmp.path(), "dn", |s, d| rewrite(s, d, to_dn12, &["TILED=YES"], &[]));

    let as_dn = tmp.path().join("as_dn");
    ok(&detect(&b, &a, &as_dn, "dn"));
    same_patches(&as_dn, &reference);
    let m = manifest(&as_dn);
    assert_eq!(m["calibration"]["radiometry"]["mode"], "dn");
    assert!(m["calibration"]["radiometry"]["before"]["basis"]
        .as_str()
        .unwrap()
        .starts_with("12-bit DN"));

    let as_reflectance = tmp.path().join("as_reflectance");
    ok(&detect(&b, &a, &as_reflectance, "auto"));
    let warnings = manifest(&as_reflectance)["warnings"].to_string();
    assert!(
        warnings.contains("--radiometry dn"),
        "DN read as reflectance must be warned: {warnings}"
    );
    assert!(!manifest(&reference)["warnings"].to_string().contains("--radiometry dn"));
}

#[test]
fn a_file_declaring_nbits_is_read_as_dn_without_being_told() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("ref");
    ok(&detect(&demo("before.tif"), &demo("after.tif"), &reference, "auto"));
    let (b, a) = pair(tmp.path(), "nbits", |s, d| rewrite(s, d, to_dn12, &["NBITS=12"], &[]));
    let out = tmp.path().join("out");
    ok(&detect(&b, &a, &out, "auto"));
    same_patches(&out, &reference);
    let basis = manifest(&out)["calibration"]["radiometry"]["before"]["basis"].to_string();
    assert!(basis.contains("NBITS"), "{basis}");
    // Found by auto or asked for, DN stand in for reflectance: the run says so.
    let warnings = manifest(&out)["warnings"].to_string();
    assert!(
        warnings.contains("radiometry dn") && warnings.contains("approximate"),
        "{warnings}"
    );
    assert!(!manifest(&reference)["warnings"].to_string().contains("approximate"));
}

#[test]
fn a_declared_band_scale_is_applied_and_mixed_scales_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("ref");
    ok(&detect(&demo("before.tif"), &demo("after.tif"), &reference, "auto"));
    // Reflectance × 20000 with a declared scale of 1/20000.
    let scale = [(5e-5, 0.0); 4];
    let (b, a) = pair(tmp.path(), "scaled", |s, d| {
        rewrite(s, d, |v| (v * 2.0) as u16, &[], &scale)
    });
    let out = tmp.path().join("out");
    ok(&detect(&b, &a, &out, "auto"));
    same_patches(&out, &reference);

    let mixed = [(5e-5, 0.0), (1e-4, 0.0), (5e-5, 0.0), (5e-5, 0.0)];
    let (b, a) = pair(tmp.path(), "mixed", |s, d| rewrite(s, d, |v| v as u16, &[], &mixed));
    let out = tmp.path().join("mixed_out");
    let o = detect(&b, &a, &out, "auto");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("mixed_before.tif") && err.contains("band 2: scale 0.0001"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn values_no_reflectance_has_are_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, a) = pair(tmp.path(), "float_dn", |s, d| {
        rewrite(s, d, |v| (v / 10000.0 * 4095.0) as f32, &[], &[])
    });
    let out = tmp.path().join("out");
    let o = detect(&b, &a, &out, "auto");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("float_dn_before.tif") && err.contains("median"), "{err}");
    assert!(!out.exists());

    let (b, a) = pair(tmp.path(), "dn16", |s, d| rewrite(s, d, to_dn12, &[], &[]));
    let o = detect(&b, &a, &out, "8bit");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("dn16_before.tif") && err.contains("8bit"), "{err}");
}
