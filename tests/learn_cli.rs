//! `landwatch train` and `detect --model <learned model>` from the command line: the same
//! inputs and seed give the same model bytes, a trained model runs in detect, and every kind of
//! bad input (a corrupt or unknown model file, a model for other bands, a label off its image's
//! grid, an empty training set) is one clear line naming the file, exit 2, and nothing written
//! as if complete.

mod raster_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn landwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_landwatch"))
        .args(args)
        .env("LANDWATCH_LOG", "error")
        .output()
        .expect("landwatch runs")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The error lines of a failed run (log lines are JSON and start with `{`).
fn error_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('{'))
        .map(str::to_string)
        .collect()
}

/// A small synthetic pair folder (before.tif, after.tif, truth_labels.tif).
fn synth_pair(dir: &Path, size: &str, seed: &str) -> PathBuf {
    let out = dir.join(format!("synth-{size}-{seed}"));
    let o = landwatch(&["synth", "--size", size, "--seed", seed, "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn train(data: &[&Path], out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--out",
        s(out),
        "--licence",
        "landwatch synthetic (test)",
        "--rounds",
        "4",
    ];
    for d in data {
        args.extend(["--data", s(d)]);
    }
    args.extend_from_slice(extra);
    landwatch(&args)
}

fn demo(file: &str) -> PathBuf {
    repo().join("seeds/demo").join(file)
}

#[test]
fn same_inputs_and_seed_give_the_same_model_bytes_and_the_model_runs_in_detect() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth_pair(tmp.path(), "384", "11");
    let (a, b) = (tmp.path().join("a-1.0.0.json"), tmp.path().join("b-1.0.0.json"));
    for m in [&a, &b] {
        let o = train(&[&data], m, &["--name", "t", "--seed", "3"]);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("a-1.0.0.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["parameters"]["seed"], 3);
    assert_eq!(manifest["training_data_licence"], "landwatch synthetic (test)");
    assert_eq!(
        manifest["inputs"][0]["before"]["sha256"].as_str().map(str::len),
        Some(64)
    );
    let c = tmp.path().join("c-1.0.0.json");
    assert_eq!(
        train(&[&data], &c, &["--name", "t", "--seed", "4"]).status.code(),
        Some(0)
    );
    assert_ne!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&c).unwrap(),
        "another seed, another model"
    );

    let run = tmp.path().join("run");
    #[rustfmt::skip]
    let o = landwatch(&[
        "detect", "--before", s(&demo("before.tif")), "--after", s(&demo("after.tif")),
        "--model", s(&a), "--no-chips", "--out", s(&run),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(manifest["model"]["id"], "t@1.0.0");
}

/// The change polygons `synth` writes (lon/lat GeoJSON) beside its images, as a georeferenced
/// pair folder with change polygons in place of the label raster.
fn polygon_pair(synth: &Path, dir: &Path) -> PathBuf {
    let pair = dir.join("polygons");
    std::fs::create_dir_all(&pair).unwrap();
    for f in ["before.tif", "after.tif"] {
        std::fs::copy(synth.join(f), pair.join(f)).unwrap();
    }
    std::fs::copy(synth.join("truth_changes.geojson"), pair.join("changes.geojson")).unwrap();
    pair
}

fn manifest_of(model: &Path) -> serde_json::Value {
    let path = model.with_file_name(
        model
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".json", ".manifest.json"),
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_pair_with_change_polygons_trains_on_the_pixels_its_truth_raster_marks() {
    let tmp = tempfile::tempdir().unwrap();
    let raster = synth_pair(tmp.path(), "384", "11");
    let polygons = polygon_pair(&raster, tmp.path());
    let fixed = ["--seed", "3", "--depth", "3", "--max-radius", "15", "--no-edges"];
    let (from_raster, from_polygons) = (tmp.path().join("r-1.0.0.json"), tmp.path().join("p-1.0.0.json"));
    for (data, model) in [(&raster, &from_raster), (&polygons, &from_polygons)] {
        let o = train(&[data], model, &fixed);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (r, p) = (manifest_of(&from_raster), manifest_of(&from_polygons));
    let label = &p["inputs"][0];
    assert!(label["label"]["path"].as_str().unwrap().ends_with("changes.geojson"));
    assert_eq!(label["label"]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(label["label_polygons_outside"], "no-change");
    assert!(
        label.get("label_change_values").is_none(),
        "no raster values for polygons"
    );
    // The lon/lat polygons land on the pixels the truth raster marks (reprojected to the
    // image's CRS, burnt by pixel centre): the labelled change agrees to a few edge pixels.
    let change = |m: &serde_json::Value| m["samples"][0]["labelled_change_px"].as_f64().unwrap();
    let (cr, cp) = (change(&r), change(&p));
    assert!(
        cr > 1000.0 && (cp - cr).abs() / cr < 0.03,
        "raster {cr} px, polygons {cp} px"
    );

    // Only the polygons teach: a folder whose polygons lie elsewhere is refused by name.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    for f in ["before.tif", "after.tif"] {
        std::fs::copy(raster.join(f), elsewhere.join(f)).unwrap();
    }
    let far = r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [[[2.0, 48.0], [2.1, 48.0], [2.1, 48.1], [2.0, 48.0]]]}}]}"#;
    std::fs::write(elsewhere.join("changes.geojson"), far).unwrap();
    let out = tmp.path().join("e-1.0.0.json");
    let o = train(&[&elsewhere], &out, &fixed);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = error_lines(&o);
    assert!(
        lines.len() == 1 && lines[0].contains("changes.geojson") && lines[0].contains("none of its 1 polygons"),
        "{lines:?}"
    );
    assert!(!out.exists(), "nothing written");
}

#[test]
fn train_cv_scores_each_pair_with_a_model_trained_without_it_and_leaves_the_model_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (synth_pair(tmp.path(), "256", "5"), synth_pair(tmp.path(), "256", "6"));
    let fixed = [
        "--name",
        "t",
        "--seed",
        "3",
        "--depth",
        "3",
        "--max-radius",
        "15",
        "--no-edges",
    ];
    let (plain, with_cv) = (tmp.path().join("plain-1.0.0.json"), tmp.path().join("cv-1.0.0.json"));
    let o = train(&[&a, &b], &plain, &fixed);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let o = train(&[&a, &b], &with_cv, &[&fixed[..], &["--cv", "2"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&plain).unwrap() == std::fs::read(&with_cv).unwrap(),
        "the model written is the one fitted on every pair, with or without --cv"
    );
    let cv = &manifest_of(&with_cv)["cross_validation"];
    assert_eq!(cv["folds"], 2);
    let pairs = cv["per_pair"].as_array().unwrap();
    assert_eq!(pairs.len(), 2);
    for (p, fold) in pairs.iter().zip([0, 1]) {
        assert_eq!(p["fold"], fold);
        assert_eq!(p["trained_on_pairs"], 1, "a held-out pair's model never saw it");
    }
    let pooled = |who: &str| {
        cv[format!("{who}_counts")]["pixel"]["tp"].as_u64().unwrap()
            + cv[format!("{who}_counts")]["pixel"]["fn"].as_u64().unwrap()
    };
    assert!(
        pooled("learned") > 0 && pooled("learned") == pooled("rules"),
        "both scored on the same labelled change"
    );
    assert!(manifest_of(&plain).get("cross_validation").is_none());

    // A fold count the pairs cannot fill is refused before any training, and nothing is written.
    let out = tmp.path().join("bad-1.0.0.json");
    let o = train(&[&a, &b], &out, &["--cv", "3"]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(error_lines(&o)[0].contains("--cv 3"), "{:?}", error_lines(&o));
    assert!(!out.exists());
}

#[test]
fn train_chooses_the_edge_features_by_cross_validation_and_edges_or_no_edges_fix_them() {
    // By default the nested selection inside the training pairs decides (both settings are
    // estimated and reported in the manifest); `--edges` always uses them, `--no-edges` gives
    // the features, and the file, of models made before them.
    let tmp = tempfile::tempdir().unwrap();
    // Two pairs: with one, nothing is held out and no choice is made (the largest is kept).
    let (data, data2) = (synth_pair(tmp.path(), "384", "11"), synth_pair(tmp.path(), "384", "12"));
    let trained = |name: &str, extra: &[&str]| {
        let m = tmp.path().join(format!("{name}-1.0.0.json"));
        let o = train(
            &[&data, &data2],
            &m,
            &[&["--depth", "3", "--max-radius", "7"], extra].concat(),
        );
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let read = |p: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
        let model = read(&m);
        let manifest = read(&tmp.path().join(format!("{name}-1.0.0.manifest.json")));
        (model, manifest["validation"]["selection"].clone())
    };
    let (on, on_selection) = trained("on", &["--edges"]);
    assert_eq!(on["features"]["edges"], true, "{}", on["features"]);
    assert_eq!(on_selection.as_array().map(Vec::len), Some(1), "{on_selection}");
    let (off, _) = trained("off", &["--no-edges"]);
    assert!(
        off["features"].get("edges").is_none(),
        "absent means off, as in older files: {}",
        off["features"]
    );
    // 3 gradient features per pixel and 4 per radius (1, 3, 7).
    let count = |m: &serde_json::Value| m["booster"]["features"].as_u64().unwrap();
    assert_eq!(count(&on) - count(&off), 3 + 4 * 3);
    let (chosen, selection) = trained("auto", &[]);
    let offered: Vec<&serde_json::Value> = selection
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["choice"]["edges"])
        .collect();
    assert_eq!(offered, [false, true], "both estimated: {selection}");
    let kept_edges = chosen["features"].get("edges").is_some();
    assert_eq!(count(&chosen), if kept_edges { count(&on) } else { count(&off) });
}

fn detect_with(model: &Path, out: &Path, extra: &[&str]) -> Output {
    let (before, after) = (demo("before.tif"), demo("after.tif"));
    let mut args = vec![
        "detect",
        "--before",
        s(&before),
        "--after",
        s(&after),
        "--model",
        s(model),
        "--no-chips",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    landwatch(&args)
}

/// Exit 2, one error line that names `file` and says `what`, and no output folder.
fn refused(o: &Output, file: &Path, what: &str, out: &Path) {
    let lines = error_lines(o);
    assert_eq!(o.status.code(), Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(s(file)), "names {}: {lines:?}", file.display());
    assert!(lines[0].contains(what), "says '{what}': {lines:?}");
    assert!(!out.exists(), "{} written", out.display());
}

#[test]
fn corrupt_and_unknown_model_files_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "truncated.json",
            "{\"format\": \"landwatch-learned-change-model\", \"format_v",
            "not a valid learned model",
        ),
        (
            "other.json",
            "{\"format\": \"someone-elses-model\"}",
            "format: is 'someone-elses-model'",
        ),
        (
            "future.json",
            "{\"format\": \"landwatch-learned-change-model\", \"format_version\": 9}",
            "format_version",
        ),
    ];
    for (name, text, what) in cases {
        let model = tmp.path().join(name);
        std::fs::write(&model, text).unwrap();
        let out = tmp.path().join(format!("out-{name}"));
        refused(&detect_with(&model, &out, &[]), &model, what, &out);
    }
}

#[test]
fn a_model_with_broken_trees_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth_pair(tmp.path(), "256", "5");
    let model = tmp.path().join("m-1.0.0.json");
    assert_eq!(train(&[&data], &model, &[]).status.code(), Some(0));
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    v["booster"]["trees"][0]["nodes"][0]["l"] = serde_json::json!(0);
    std::fs::write(&model, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = tmp.path().join("out");
    refused(&detect_with(&model, &out, &[]), &model, "booster.trees", &out);
}

#[test]
fn a_model_with_a_window_radius_landwatch_has_not_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cascade-synth-1.0.0.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(shipped).unwrap()).unwrap();
    v["features"]["max_radius"] = serde_json::json!(20);
    let model = tmp.path().join("radius-1.0.0.json");
    std::fs::write(&model, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = tmp.path().join("out");
    refused(&detect_with(&model, &out, &[]), &model, "features.max_radius", &out);
}

#[test]
fn a_nir_model_on_input_without_nir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth_pair(tmp.path(), "256", "5");
    let model = tmp.path().join("nir-1.0.0.json");
    let o = train(&[&data], &model, &["--nir"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let out = tmp.path().join("out");
    let o = detect_with(&model, &out, &["--bands", "B,G,R,_"]);
    refused(&o, &demo("before.tif"), "B,G,R,NIR features", &out);
    assert!(error_lines(&o)[0].contains(s(&model)), "names the model too");
}

#[test]
fn a_label_off_its_images_grid_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let small = synth_pair(tmp.path(), "256", "5");
    let pair = tmp.path().join("pair");
    std::fs::create_dir(&pair).unwrap();
    std::fs::copy(demo("before.tif"), pair.join("before.tif")).unwrap();
    std::fs::copy(demo("after.tif"), pair.join("after.tif")).unwrap();
    // A 256 px label for a 512 px pair.
    std::fs::copy(small.join("truth_labels.tif"), pair.join("truth_labels.tif")).unwrap();
    let model = tmp.path().join("m-1.0.0.json");
    let o = train(&[&pair], &model, &[]);
    refused(
        &o,
        &pair.join("truth_labels.tif"),
        "is 256x256 px but its before image",
        &model,
    );
}

#[test]
fn an_empty_training_set_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let set = tmp.path().join("mine");
    for d in ["A", "B", "label"] {
        std::fs::create_dir_all(set.join(d)).unwrap();
    }
    std::fs::copy(demo("before.tif"), set.join("A/x.tif")).unwrap();
    std::fs::copy(demo("after.tif"), set.join("B/x.tif")).unwrap();
    std::fs::copy(demo("truth_labels.tif"), set.join("label/x.tif")).unwrap();
    let model = tmp.path().join("m-1.0.0.json");
    // No label pixel has the value 77: nothing is labelled change.
    let o = train(&[&set], &model, &["--label-change-values", "77"]);
    refused(&o, &set, "is an empty training set", &model);
    assert!(!tmp.path().join("m-1.0.0.manifest.json").exists());
}

#[test]
fn a_folder_that_is_not_training_data_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m-1.0.0.json");
    let o = train(&[tmp.path()], &model, &[]);
    refused(&o, tmp.path(), "is not training data", &model);
}

/// The synth pair in `src` delivered as raw 12-bit DN (`T` = u16) or as DN in floats, its truth
/// copied as it is.
fn as_dn<T: gdal::raster::GdalType + Copy>(src: &Path, dst: &Path, f: impl Fn(f64) -> T + Copy) -> PathBuf {
    std::fs::create_dir_all(dst).unwrap();
    for name in ["before.tif", "after.tif"] {
        raster_support::rewrite(&src.join(name), &dst.join(name), f, &[], &[]);
    }
    std::fs::copy(src.join("truth_labels.tif"), dst.join("truth_labels.tif")).unwrap();
    dst.to_path_buf()
}

#[test]
fn training_reads_dn_when_told_and_refuses_values_no_reflectance_has() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth_pair(tmp.path(), "384", "11");
    let dn = as_dn(&data, &tmp.path().join("dn"), |v| (v / 10000.0 * 4095.0).round() as u16);
    let model = tmp.path().join("dn-1.0.0.json");
    let o = train(&[&dn], &model, &["--radiometry", "dn"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("dn-1.0.0.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["inputs"][0]["radiometry"], "dn");

    let floats = as_dn(&data, &tmp.path().join("float_dn"), |v| (v / 10000.0 * 4095.0) as f32);
    let refused = tmp.path().join("f-1.0.0.json");
    let o = train(&[&floats], &refused, &[]);
    let errors = error_lines(&o);
    assert_eq!(o.status.code(), Some(2), "{errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("float_dn/before.tif") && errors[0].contains("median"),
        "{errors:?}"
    );
    assert!(!refused.exists(), "nothing written as if complete");
}
