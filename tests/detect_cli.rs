//! End-to-end checks of `landwatch detect` through the binary: the demo pair against its truth,
//! byte-identical reruns, and one clear line with exit code 2 for every kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_landwatch"))
}

fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/demo")
}

fn detect(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("detect")
        .args(args)
        .output()
        .expect("run landwatch")
}

/// Runs `detect` from `before` to `after` into `out`, with extra arguments.
fn detect_into(before: &Path, after: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--before", s(before), "--after", s(after), "--out", s(out)];
    args.extend_from_slice(extra);
    detect(&args)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Writes a small 4-band UInt16 GeoTIFF (EPSG:4545) filled by `f(band, row, col)`.
fn write_tif(path: &Path, size: usize, origin_x: f64, nodata: Option<f64>, f: impl Fn(usize, usize, usize) -> u16) {
    use gdal::raster::Buffer;
    let drv = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = drv.create_with_band_type::<u16, _>(path, size, size, 4).unwrap();
    ds.set_geo_transform(&[origin_x, 2.0, 0.0, 2_535_000.0, 0.0, -2.0])
        .unwrap();
    ds.set_spatial_ref(&gdal::spatial_ref::SpatialRef::from_epsg(4545).unwrap())
        .unwrap();
    for b in 0..4 {
        let data: Vec<u16> = (0..size * size).map(|i| f(b, i / size, i % size)).collect();
        let mut band = ds.rasterband(b + 1).unwrap();
        if let Some(nd) = nodata {
            band.set_no_data_value(Some(nd)).unwrap();
        }
        let mut buf = Buffer::new((size, size), data);
        band.write((0, 0), (size, size), &mut buf).unwrap();
    }
}

fn field(b: usize, r: usize, c: usize) -> u16 {
    [330u16, 680, 380, 4300][b] + ((r * 7 + c * 13) % 40) as u16
}

fn assert_bad_input(out: &Output, needle: &str, out_dir: &Path) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    assert!(lines[0].contains(needle), "'{needle}' not in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out_dir.exists(), "no output may be left behind");
}

#[test]
fn demo_pair_finds_the_planted_changes_and_reruns_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let (o1, o2) = (tmp.path().join("a"), tmp.path().join("b"));
    let sd = seeds();
    let args = |o: &Path| {
        vec![
            "--before".to_string(),
            sd.join("before.tif").display().to_string(),
            "--after".into(),
            sd.join("after.tif").display().to_string(),
            "--landuse".into(),
            sd.join("landuse.gpkg").display().to_string(),
            "--after-date".into(),
            "2024-11-23".into(),
            "--out".into(),
            o.display().to_string(),
        ]
    };
    for o in [&o1, &o2] {
        let a = args(o);
        let out = detect(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let g1 = std::fs::read(o1.join("patches.geojson")).unwrap();
    assert_eq!(
        g1,
        std::fs::read(o2.join("patches.geojson")).unwrap(),
        "same inputs must give the same bytes"
    );
    let fc: serde_json::Value = serde_json::from_slice(&g1).unwrap();
    let feats = fc["features"].as_array().unwrap();
    assert!(!feats.is_empty());
    // Every planted change of use (truth) must be hit by some patch's bounding box centre region.
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sd.join("truth_changes.geojson")).unwrap()).unwrap();
    let bbox = |g: &serde_json::Value| {
        let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
        let mut visit = |c: &serde_json::Value| {
            let (x, y) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
            b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
        };
        for ring in g["coordinates"].as_array().unwrap() {
            match g["type"].as_str().unwrap() {
                "Polygon" => ring.as_array().unwrap().iter().for_each(&mut visit),
                _ => ring
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|r| r.as_array().unwrap())
                    .for_each(&mut visit),
            }
        }
        b
    };
    let overlaps = |a: [f64; 4], b: [f64; 4]| a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
    let pred: Vec<[f64; 4]> = feats.iter().map(|f| bbox(&f["geometry"])).collect();
    let targets: Vec<&serde_json::Value> = truth["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["properties"]["type_code"].as_i64() != Some(9))
        .collect();
    let found = targets
        .iter()
        .filter(|t| pred.iter().any(|p| overlaps(*p, bbox(&t["geometry"]))))
        .count();
    assert!(
        found * 10 >= targets.len() * 6,
        "found {found} of {} planted changes",
        targets.len()
    );
    let p0 = &feats[0]["properties"];
    for key in [
        "id",
        "change_type",
        "category",
        "area_m2",
        "area_mu",
        "JCBH",
        "DLBM",
        "JCMJ",
        "model",
    ] {
        assert!(!p0[key].is_null(), "property {key} missing");
    }
    assert!((p0["area_mu"].as_f64().unwrap() - p0["area_m2"].as_f64().unwrap() / 666.667).abs() < 0.01);
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(o1.join("run.json")).unwrap()).unwrap();
    assert_eq!(manifest["inputs"]["before"]["sha256"].as_str().unwrap().len(), 64);
    assert!(o1.join("change.tif").exists());
}

#[test]
fn missing_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let r = detect(&[
        "--before",
        "/nonexistent/a.tif",
        "--after",
        "/nonexistent/b.tif",
        "--out",
        s(&out),
    ]);
    assert_bad_input(&r, "/nonexistent/a.tif: file not found", &out);
}

#[test]
fn a_text_file_is_not_a_raster() {
    let tmp = tempfile::tempdir().unwrap();
    let txt = tmp.path().join("notes.tif");
    std::fs::write(&txt, "not an image").unwrap();
    let good = tmp.path().join("good.tif");
    write_tif(&good, 64, 530_000.0, None, field);
    let out = tmp.path().join("out");
    let r = detect_into(&good, &txt, &out, &[]);
    assert_bad_input(&r, "not a raster GDAL can read", &out);
}

#[test]
fn images_that_do_not_overlap() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.tif"), tmp.path().join("b.tif"));
    write_tif(&a, 64, 530_000.0, None, field);
    write_tif(&b, 64, 600_000.0, None, field);
    let out = tmp.path().join("out");
    let r = detect_into(&a, &b, &out, &[]);
    assert_bad_input(&r, "does not overlap", &out);
}

#[test]
fn mismatched_band_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.tif");
    write_tif(&a, 64, 530_000.0, None, field);
    let b = tmp.path().join("b.tif");
    let drv = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = drv.create_with_band_type::<u16, _>(&b, 64, 64, 3).unwrap();
    ds.set_geo_transform(&[530_000.0, 2.0, 0.0, 2_535_000.0, 0.0, -2.0])
        .unwrap();
    ds.set_spatial_ref(&gdal::spatial_ref::SpatialRef::from_epsg(4545).unwrap())
        .unwrap();
    drop(ds);
    let out = tmp.path().join("out");
    let r = detect_into(&a, &b, &out, &[]);
    assert_bad_input(&r, "has 3 bands but the before image", &out);
}

#[test]
fn all_nodata_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.tif"), tmp.path().join("b.tif"));
    write_tif(&a, 64, 530_000.0, Some(0.0), |_, _, _| 0);
    write_tif(&b, 64, 530_000.0, None, field);
    let out = tmp.path().join("out");
    let r = detect_into(&a, &b, &out, &[]);
    assert_bad_input(&r, "no pixel is observed on both dates", &out);
}

#[test]
fn unknown_model_file_and_typo_in_a_model_key() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.tif");
    write_tif(&a, 64, 530_000.0, None, field);
    let out = tmp.path().join("out");
    let r = detect_into(&a, &a, &out, &["--model", "/nonexistent/m.toml"]);
    assert_bad_input(&r, "model file not found", &out);
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/rules-v1.toml")).unwrap();
    let typo = tmp.path().join("typo.toml");
    std::fs::write(&typo, shipped.replace("block_size = 512", "blok_size = 512")).unwrap();
    let r = detect_into(&a, &a, &out, &["--model", s(&typo)]);
    assert_bad_input(&r, "blok_size", &out);
    let range = tmp.path().join("range.toml");
    std::fs::write(&range, shipped.replace("min_area_m2 = 200.0", "min_area_m2 = -5.0")).unwrap();
    let r = detect_into(&a, &a, &out, &["--model", s(&range)]);
    assert_bad_input(&r, "detect.min_area_m2", &out);
}

#[test]
fn a_new_bright_roof_on_a_field_is_one_patch_across_block_edges() {
    // 600 px with 512 px blocks: the square straddles the block edge at x = 512 and y = 512.
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.tif"), tmp.path().join("b.tif"));
    write_tif(&a, 600, 530_000.0, None, field);
    let roof = |r: usize, c: usize| (495..530).contains(&r) && (495..530).contains(&c);
    write_tif(&b, 600, 530_000.0, None, |band, r, c| {
        if roof(r, c) {
            [1900u16, 2100, 2200, 2400][band]
        } else {
            field(band, r, c)
        }
    });
    let out = tmp.path().join("out");
    let r = detect_into(&a, &b, &out, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let fc: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("patches.geojson")).unwrap()).unwrap();
    let feats = fc["features"].as_array().unwrap();
    assert_eq!(feats.len(), 1, "{fc}");
    let area = feats[0]["properties"]["area_m2"].as_f64().unwrap();
    assert!((area - 35.0 * 35.0 * 4.0).abs() < 0.1 * 4900.0, "area {area}");
    assert_eq!(feats[0]["properties"]["change_type"], "hardened");
}

fn pixels(path: &Path, band: usize) -> Vec<u8> {
    let ds = gdal::Dataset::open(path).expect("open change.tif");
    let b = ds.rasterband(band).expect("band");
    let (w, h) = b.size();
    b.read_as::<u8>((0, 0), (w, h), (w, h), None)
        .expect("read")
        .data()
        .to_vec()
}

/// Rewrites a GeoTIFF with other creation options (layout only; the pixels stay the same).
fn relayout(src: &Path, dst: &Path, options: &[&str]) {
    let ds = gdal::Dataset::open(src).expect("open seed");
    let drv = gdal::DriverManager::get_driver_by_name("GTiff").expect("GTiff driver");
    let co = gdal::raster::RasterCreationOptions::from_iter(options.iter().copied());
    ds.create_copy(&drv, dst, &co).expect("copy");
}

#[test]
fn the_file_layout_does_not_change_the_result() {
    // The pass reads whole rows of tiles at once with GDAL's multi-threaded decoding and cuts
    // blocks (with their halo) out of those rows: band- or pixel-interleaved, tiled at another
    // size or stored in strips, in one block or in 16, the answer must be the same.
    let tmp = tempfile::tempdir().unwrap();
    let sd = seeds();
    let model = tmp.path().join("small-blocks.toml");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/rules-v1.toml")).unwrap();
    assert!(text.contains("block_size = 512"));
    std::fs::write(&model, text.replace("block_size = 512", "block_size = 128")).unwrap();
    let reference = tmp.path().join("ref");
    let out = detect_into(
        &sd.join("before.tif"),
        &sd.join("after.tif"),
        &reference,
        &["--no-chips"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let layouts: [(&str, &[&str]); 2] = [
        (
            "band",
            &[
                "TILED=YES",
                "INTERLEAVE=BAND",
                "COMPRESS=DEFLATE",
                "BLOCKXSIZE=256",
                "BLOCKYSIZE=256",
            ],
        ),
        ("strips", &["COMPRESS=LZW", "INTERLEAVE=PIXEL"]),
    ];
    for (name, options) in layouts {
        let (b, a) = (
            tmp.path().join(format!("{name}_b.tif")),
            tmp.path().join(format!("{name}_a.tif")),
        );
        relayout(&sd.join("before.tif"), &b, options);
        relayout(&sd.join("after.tif"), &a, options);
        let o = tmp.path().join(name);
        let out = detect_into(&b, &a, &o, &["--no-chips", "--model", s(&model)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            std::fs::read(reference.join("patches.geojson")).unwrap(),
            std::fs::read(o.join("patches.geojson")).unwrap(),
            "{name}: patches differ"
        );
        // Same pixels (the tiles may sit in another order in the file when blocks differ).
        for band in [1, 2] {
            assert_eq!(
                pixels(&reference.join("change.tif"), band),
                pixels(&o.join("change.tif"), band),
                "{name}: change.tif band {band}"
            );
        }
    }
}

/// A VRT of `w` × `h` px whose four bands all point at band 1 of `src`: opening it reads no
/// pixel, so it stands in for an image too large for the machine.
fn huge_vrt(path: &Path, src: &Path, w: usize, h: usize) {
    let bands: String = (1..=4)
        .map(|b| {
            format!(
                r#"<VRTRasterBand dataType="UInt16" band="{b}"><SimpleSource><SourceFilename relativeToVRT="0">{}</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"#,
                src.display()
            )
        })
        .collect();
    let vrt = format!(r#"<VRTDataset rasterXSize="{w}" rasterYSize="{h}">{bands}</VRTDataset>"#);
    std::fs::write(path, vrt).unwrap();
}

#[test]
fn an_image_too_large_for_the_memory_budget_is_refused_before_it_is_read_naming_the_before_file() {
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("after.tif");
    write_tif(&small, 64, 530_000.0, None, field);
    let huge = tmp.path().join("before.vrt");
    huge_vrt(&huge, &small, 2_000_000, 2_000_000);
    let out = tmp.path().join("out");
    let r = detect_into(&huge, &small, &out, &["--memory-budget", "4G"]);
    assert_bad_input(&r, &format!("{}: image is 2000000 × 2000000 px", huge.display()), &out);
    assert_bad_input(&r, "more than the memory budget of 4.0 GiB", &out);
    // The budget from the environment; memory follows the width, so 100000 px wide is too much.
    let wide = tmp.path().join("wide.vrt");
    huge_vrt(&wide, &small, 100_000, 100_000);
    let r = Command::new(bin())
        .args(["detect", "--before", s(&wide), "--after", s(&small), "--out", s(&out)])
        .env("LANDWATCH_MEMORY_BUDGET", "4G")
        .output()
        .unwrap();
    assert_bad_input(&r, &format!("{}: image is 100000 × 100000 px", wide.display()), &out);
    // A budget too small for the demo pair names it too; the README's sizes fit a few GiB.
    let sd = seeds();
    let (b, a) = (sd.join("before.tif"), sd.join("after.tif"));
    let r = detect_into(&b, &a, &out, &["--memory-budget", "128M", "--no-chips"]);
    assert_bad_input(&r, &format!("{}: image is 512 × 512 px", b.display()), &out);
    let r = detect_into(&b, &a, &out, &["--memory-budget", "2G", "--no-chips"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

#[test]
fn images_too_small_to_calibrate_are_refused_with_their_size() {
    let tmp = tempfile::tempdir().unwrap();
    for size in [1, 3, 31] {
        let (a, b) = (
            tmp.path().join(format!("a{size}.tif")),
            tmp.path().join(format!("b{size}.tif")),
        );
        write_tif(&a, size, 530_000.0, None, field);
        write_tif(&b, size, 530_000.0, None, field);
        let out = tmp.path().join("out");
        let r = detect_into(&a, &b, &out, &[]);
        assert_bad_input(
            &r,
            &format!("image is {size} × {size} px; landwatch needs at least 32 × 32 px"),
            &out,
        );
    }
}

#[test]
fn pixel_sizes_that_are_not_positive_and_finite_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.tif");
    write_tif(&a, 64, 530_000.0, None, field);
    let out = tmp.path().join("out");
    for bad in [
        "--pixel-size=0",
        "--pixel-size=-2",
        "--pixel-size=NaN",
        "--pixel-size=inf",
    ] {
        let r = detect_into(&a, &a, &out, &[bad]);
        assert_bad_input(&r, "--pixel-size", &out);
    }
}

#[test]
fn a_before_date_later_than_the_after_date_is_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.tif");
    write_tif(&a, 64, 530_000.0, None, field);
    let out = tmp.path().join("out");
    let r = detect_into(
        &a,
        &a,
        &out,
        &["--before-date", "2024-08-01", "--after-date", "2024-01-05"],
    );
    assert_bad_input(
        &r,
        "--before-date 2024-08-01 is later than --after-date 2024-01-05",
        &out,
    );
}

#[test]
fn a_model_path_that_is_a_folder_or_not_text_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.tif");
    write_tif(&a, 64, 530_000.0, None, field);
    let out = tmp.path().join("out");
    let r = detect_into(&a, &a, &out, &["--model", s(tmp.path())]);
    assert_bad_input(&r, "is a folder; --model takes a model file", &out);
    let binary = tmp.path().join("model.toml");
    std::fs::write(&binary, [0xffu8, 0xfe, 0x00, 0x41]).unwrap();
    let r = detect_into(&a, &a, &out, &["--model", s(&binary)]);
    assert_bad_input(&r, "is not UTF-8 text", &out);
}

#[test]
fn a_band_past_the_band_count_names_the_file_and_the_band() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.tif");
    write_tif(&a, 64, 530_000.0, None, field);
    let out = tmp.path().join("out");
    let r = detect_into(&a, &a, &out, &["--bands", "B,G,R,_,NIR"]);
    assert_bad_input(
        &r,
        &format!("{}: has 4 bands but --bands puts NIR at band 5", a.display()),
        &out,
    );
}

#[test]
fn a_truncated_image_says_which_pixels_could_not_be_read_and_why() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.tif"), tmp.path().join("b.tif"));
    write_tif(&a, 256, 530_000.0, None, field);
    write_tif(&b, 256, 530_000.0, None, field);
    let bytes = std::fs::read(&b).unwrap();
    std::fs::write(&b, &bytes[..bytes.len() / 2]).unwrap();
    let out = tmp.path().join("out");
    let r = detect_into(&a, &b, &out, &[]);
    assert_bad_input(&r, &format!("{}: cannot read the pixels of columns", b.display()), &out);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!err.contains("Window {"), "{err}");
    assert!(!err.trim_end().ends_with(':'), "no reason given: {err}");
}

#[test]
fn paths_that_are_not_utf8_are_refused_with_a_readable_name() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.tif");
    write_tif(&good, 64, 530_000.0, None, field);
    let odd = tmp.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9.tif"));
    std::fs::copy(&good, &odd).unwrap();
    let out = tmp.path().join("out");
    let r = Command::new(bin())
        .arg("detect")
        .arg("--before")
        .arg(&odd)
        .args(["--after", s(&good), "--out", s(&out)])
        .output()
        .unwrap();
    assert_bad_input(&r, "caf\u{fffd}.tif: --before: the path is not valid UTF-8", &out);
}

/// The demo image `name` as Float32 reflectance, NaN in the columns `nan(col)` says.
fn float_demo(name: &str, dst: &Path, nan: impl Fn(usize) -> bool) {
    let src = gdal::Dataset::open(seeds().join(name)).unwrap();
    let (w, h) = src.raster_size();
    let drv = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = drv.create_with_band_type::<f32, _>(dst, w, h, 4).unwrap();
    ds.set_geo_transform(&src.geo_transform().unwrap()).unwrap();
    ds.set_projection(&src.projection()).unwrap();
    for b in 1..=4 {
        let px = src
            .rasterband(b)
            .unwrap()
            .read_as::<u16>((0, 0), (w, h), (w, h), None)
            .unwrap();
        let data: Vec<f32> = px
            .data()
            .iter()
            .enumerate()
            .map(|(i, &v)| if nan(i % w) { f32::NAN } else { v as f32 / 10000.0 })
            .collect();
        let mut buf = gdal::raster::Buffer::new((w, h), data);
        ds.rasterband(b).unwrap().write((0, 0), (w, h), &mut buf).unwrap();
    }
}

fn manifest(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap()
}

#[test]
fn the_shift_is_estimated_from_valid_windows_when_a_third_of_the_image_is_nan() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, a) = (tmp.path().join("b.tif"), tmp.path().join("a.tif"));
    float_demo("before.tif", &b, |_| false);
    float_demo("after.tif", &a, |_| false);
    let clean = tmp.path().join("clean");
    let r = detect_into(&b, &a, &clean, &["--no-chips"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let want = manifest(&clean)["calibration"]["shift"].clone();
    assert_eq!(want["windows_skipped"], 0, "{want}");
    // The middle third of the after image is NaN: every planned window touches it.
    let holed = tmp.path().join("a_nan.tif");
    float_demo("after.tif", &holed, |c| (171..342).contains(&c));
    let out = tmp.path().join("nan");
    let r = detect_into(&b, &holed, &out, &["--no-chips"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let got = manifest(&out)["calibration"]["shift"].clone();
    assert!(got["windows_skipped"].as_u64().unwrap() > 0, "{got}");
    assert!(got["windows_used"].as_u64().unwrap() > 0, "{got}");
    for k in ["dx", "dy"] {
        let (g, w) = (got[k].as_f64().unwrap(), want[k].as_f64().unwrap());
        assert!((g - w).abs() < 0.2, "{k}: {g} with NaN, {w} without ({got})");
    }
    // Only a 50 px wide stripe valid: no window to estimate the shift from; said so.
    let stripe = tmp.path().join("a_stripe.tif");
    float_demo("after.tif", &stripe, |c| !(60..110).contains(&c));
    let out = tmp.path().join("stripe");
    let r = detect_into(&b, &stripe, &out, &["--no-chips"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let m = manifest(&out);
    assert_eq!(m["calibration"]["shift"]["windows_used"], 0, "{m}");
    let warnings = m["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("shift could not be estimated, the after image is not shifted: 4 of 4 calibration windows had too few valid pixels")),
        "{m}"
    );
    assert!(String::from_utf8_lossy(&r.stderr).contains("shift could not be estimated, the after image is not shifted: 4 of 4 calibration windows had too few valid pixels"));
}

#[test]
fn an_image_stored_as_64_bit_integers_is_refused_naming_its_type_before_any_pixel_is_read() {
    use gdal::raster::Buffer;
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.tif"), tmp.path().join("b.tif"));
    write_tif(&a, 256, 530_000.0, None, field);
    let drv = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = drv.create_with_band_type::<i64, _>(&b, 256, 256, 4).unwrap();
    ds.set_geo_transform(&[530_000.0, 2.0, 0.0, 2_535_000.0, 0.0, -2.0])
        .unwrap();
    ds.set_spatial_ref(&gdal::spatial_ref::SpatialRef::from_epsg(4545).unwrap())
        .unwrap();
    for band in 0..4 {
        let data: Vec<i64> = (0..256 * 256).map(|i| field(band, i / 256, i % 256) as i64).collect();
        let mut buf = Buffer::new((256, 256), data);
        ds.rasterband(band + 1)
            .unwrap()
            .write((0, 0), (256, 256), &mut buf)
            .unwrap();
    }
    drop(ds);
    let out = tmp.path().join("out");
    let r = detect_into(&a, &b, &out, &[]);
    assert_bad_input(
        &r,
        &format!(
            "{}: stores its pixels as Int64, which landwatch cannot read as reflectance",
            b.display()
        ),
        &out,
    );
}

/// The shipped model with each `(from, to)` of `edits` replaced in its text, written to `path`.
fn edited_model(path: &Path, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/rules-v1.toml")).unwrap();
    for (from, to) in edits {
        assert_eq!(text.matches(from).count(), 1, "{from}");
        text = text.replace(from, to);
    }
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// `detect` on the demo pair with its land use and `extra` arguments; the run's manifest and
/// patches.
fn demo_run(out: &Path, extra: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let landuse = seeds().join("landuse.gpkg");
    let mut args = vec!["--landuse", s(&landuse), "--no-chips"];
    args.extend_from_slice(extra);
    let r = detect_into(&seeds().join("before.tif"), &seeds().join("after.tif"), out, &args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let patches = serde_json::from_slice(&std::fs::read(out.join("patches.geojson")).unwrap()).unwrap();
    (manifest(out), patches)
}

#[test]
fn the_shift_normalisation_cloud_and_open_water_numbers_are_read_from_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (shipped, shipped_patches) = demo_run(&tmp.path().join("shipped"), &[]);
    let cal = &shipped["calibration"];
    assert!(cal["shift"]["windows_used"].as_u64().unwrap() > 0, "{cal}");
    assert!(cal["shift"]["peak"].as_f64().unwrap() < 0.5, "{cal}");
    assert!(cal["shift"]["dx"].as_f64().unwrap().abs() > 0.5, "{cal}");
    assert!(cal["normalisation"]["invariant_pixels"].as_u64().unwrap() > 0, "{cal}");
    let water = |patches: &serde_json::Value| -> Vec<f64> {
        let features = patches["features"].as_array().unwrap();
        assert!(!features.is_empty(), "the demo has patches");
        features
            .iter()
            .map(|f| f["properties"]["features"]["water_frac_after"].as_f64().unwrap())
            .collect()
    };
    assert!(water(&shipped_patches).iter().all(|&w| w < 1.0));

    let strict = edited_model(
        &tmp.path().join("strict.toml"),
        &[
            ("min_peak = 0.12", "min_peak = 0.5"),
            ("normalise_min_correlation = 0.8", "normalise_min_correlation = 1.0"),
            ("cloud_core_min_flatness = 0.75", "cloud_core_min_flatness = 1.0"),
            ("water_frac_min_ndwi = 0.1", "water_frac_min_ndwi = -1.0"),
        ],
    );
    let (m, patches) = demo_run(&tmp.path().join("strict"), &["--model", s(&strict)]);
    let cal = &m["calibration"];
    assert_eq!(cal["shift"]["windows_used"], 0, "no peak is trusted: {cal}");
    assert_eq!(cal["normalisation"]["invariant_pixels"], 0, "not normalised: {cal}");
    assert!(
        cal["normalisation"]["gain"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g == 1.0),
        "{cal}"
    );
    let unobserved = |m: &serde_json::Value| m["unobserved_area_m2"].as_f64().unwrap();
    assert!(unobserved(&m) < unobserved(&shipped), "no cloud core: less is masked");
    assert!(water(&patches).iter().all(|&w| w == 1.0), "every pixel counts as water");

    let capped = edited_model(&tmp.path().join("capped.toml"), &[("max_px = 3.0", "max_px = 0.5")]);
    let (m, _) = demo_run(&tmp.path().join("capped"), &["--model", s(&capped)]);
    assert_eq!(m["calibration"]["shift"]["dx"], 0.0, "{m}");
    let warned = m["warnings"].as_array().unwrap().iter();
    assert!(
        warned
            .map(|w| w.as_str().unwrap())
            .any(|w| w.contains("too large to trust")),
        "{m}"
    );
}

#[test]
fn every_patch_has_a_change_confidence_in_the_geojson_and_the_geopackage() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let sd = seeds();
    let o = detect_into(&sd.join("before.tif"), &sd.join("after.tif"), &out, &["--no-chips"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let fc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("patches.geojson")).unwrap()).unwrap();
    let feats = fc["features"].as_array().unwrap();
    assert!(!feats.is_empty());
    let mut seen = std::collections::BTreeSet::new();
    for f in feats {
        let c = f["properties"]["change_confidence"]
            .as_f64()
            .expect("change_confidence");
        assert!((0.0..=1.0).contains(&c), "{c}");
        assert!(f["properties"]["evidence_rel"].as_f64().unwrap() > 0.0);
        seen.insert((c * 1000.0) as i64);
    }
    assert!(seen.len() > 1, "the confidence tells patches apart: {seen:?}");
    let ds = gdal::Dataset::open(out.join("patches.gpkg")).unwrap();
    let mut layer = ds.layer(0).unwrap();
    use gdal::vector::LayerAccess;
    let first = layer.features().next().unwrap();
    let c = first
        .field_as_double(first.field_index("change_confidence").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(Some(c), feats[0]["properties"]["change_confidence"].as_f64());
}
