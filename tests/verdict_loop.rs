//! The verdict loop through the binary, on small synthetic scenes: detect → review import →
//! simulated review → `train verdicts` → `detect --verdict-model` marks likely false alarms
//! `suppressed` (published, counted, naming both models); and one clear line with exit 2 for
//! an empty or foreign database, run folders that are gone and a model for another feature set.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

const PASSWORD: &str = "correct horse battery";

fn landwatch(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_landwatch"))
        .args(args)
        .env("LANDWATCH_PASSWORD", PASSWORD)
        .output()
        .expect("run landwatch")
}

fn ok(args: &[&str]) -> String {
    let o = landwatch(args);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Exit 2 with exactly one error line containing `needle`.
fn assert_bad_input(o: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    assert!(lines[0].contains(needle), "'{needle}' not in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A synthetic scene of `seed`, moved `seed` × 5 km east so that scenes of different seeds
/// are different places (the review import matches patches by place).
fn scene(root: &Path, seed: u64) -> PathBuf {
    let dir = root.join(format!("scene{seed}"));
    ok(&["synth", "--size", "768", "--seed", &seed.to_string(), "--out", s(&dir)]);
    for f in ["before.tif", "after.tif", "truth_labels.tif"] {
        let ds = gdal::Dataset::open_ex(
            dir.join(f),
            gdal::DatasetOptions {
                open_flags: gdal::GdalOpenFlags::GDAL_OF_UPDATE | gdal::GdalOpenFlags::GDAL_OF_RASTER,
                ..Default::default()
            },
        )
        .expect("open for update");
        let mut gt = ds.geo_transform().expect("geotransform");
        gt[0] += seed as f64 * 5000.0;
        let mut ds = ds;
        ds.set_geo_transform(&gt).expect("set geotransform");
    }
    dir
}

/// Detects `scene` into `out` (all patches kept, dates from `month`), with extra arguments.
fn detect(scene: &Path, out: &Path, month: u32, extra: &[&str]) -> Output {
    let (before, after) = (scene.join("before.tif"), scene.join("after.tif"));
    let after_date = format!("2025-{month:02}-01");
    let mut args = vec![
        "detect",
        "--before",
        s(&before),
        "--after",
        s(&after),
        "--out",
        s(out),
        "--keep-all",
        "--no-chips",
        "--before-date",
        "2025-01-01",
        "--after-date",
        &after_date,
    ];
    args.extend_from_slice(extra);
    landwatch(&args)
}

/// One-off `detect` runs all number their patches P00001…: give each run's track ids its own
/// prefix, as a pipeline's would be, so the import does not take them for one place.
fn unique_track_ids(run: &Path, prefix: &str) {
    let path = run.join("patches.geojson");
    let mut fc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for f in fc["features"].as_array_mut().unwrap() {
        let id = f["properties"]["id"].as_str().unwrap().to_string();
        f["properties"]["track_id"] = Value::from(format!("{prefix}-{id}"));
    }
    std::fs::write(&path, fc.to_string()).unwrap();
}

/// A review database holding the simulated verdicts on scenes of seeds 1 and 2.
struct Reviewed {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    db: PathBuf,
    runs: Vec<PathBuf>,
}

fn reviewed() -> Reviewed {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let db = root.join("review.sqlite");
    let data = root.join("runs");
    ok(&["review", "user", "add", "simulator", "--role", "admin", "--db", s(&db)]);
    let mut runs = Vec::new();
    for seed in [1u64, 2] {
        let sc = scene(&root, seed);
        let run = data.join(format!("r{seed}"));
        let o = detect(&sc, &run, 4 + seed as u32, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        unique_track_ids(&run, &format!("seed{seed}"));
        ok(&["review", "import", s(&run), "--db", s(&db), "--data", s(&data)]);
        let truth = sc.join("truth_labels.tif");
        let out = ok(&[
            "review",
            "simulate",
            "--db",
            s(&db),
            "--run",
            s(&run),
            "--truth",
            s(&truth),
        ]);
        assert!(out.contains("real changes"), "{out}");
        runs.push(run);
    }
    Reviewed {
        _tmp: tmp,
        root,
        db,
        runs,
    }
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn the_loop_runs_from_review_to_suppressed_patches_in_the_next_detection() {
    let r = reviewed();
    let model = r.root.join("models/verdict-t1.json");
    let train = [
        "train",
        "verdicts",
        "--db",
        s(&r.db),
        "--out",
        s(&model),
        "--version",
        "t1",
    ];
    let out = ok(&train);
    assert!(out.contains("verdict@t1"), "{out}");
    let again = landwatch(&train);
    assert_bad_input(&again, "exists already");
    let manifest = read_json(&r.root.join("models/verdict-t1.manifest.json"));
    assert_eq!(manifest["model"], "verdict@t1");
    assert_eq!(manifest["run_ids"], serde_json::json!([1, 2]));
    assert_eq!(manifest["reviewers"], 1);
    let used = manifest["verdict_ids"].as_array().unwrap().len() as u64;
    let counts = &manifest["counts"];
    assert_eq!(
        used,
        counts["real_change"].as_u64().unwrap() + counts["false_alarm"].as_u64().unwrap()
    );
    assert_eq!(
        manifest["split"]["held_out_from_after_date"], "2025-06-01",
        "the latest after-date is held out"
    );
    assert!(manifest["held_out"]["counts"]["false_alarms"].as_u64().unwrap() > 0);
    assert_eq!(
        manifest["feature_names"].as_array().unwrap().len(),
        manifest_feature_count(&model)
    );

    // The next run, on a scene the model never saw.
    let sc = scene(&r.root, 3);
    let next = r.root.join("runs/r3");
    let o = detect(&sc, &next, 7, &["--verdict-model", s(&model)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let fc = read_json(&next.join("patches.geojson"));
    let feats = fc["features"].as_array().unwrap();
    let suppressed: Vec<&Value> = feats.iter().filter(|f| f["properties"]["suppressed"] == true).collect();
    assert!(
        !suppressed.is_empty() && suppressed.len() < feats.len(),
        "{} of {}",
        suppressed.len(),
        feats.len()
    );
    for f in feats {
        let p = &f["properties"];
        assert_eq!(p["verdict_model"], "verdict@t1");
        assert!(p["model"].as_str().unwrap().starts_with("rules"), "{}", p["model"]);
        let prob = p["verdict_probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&prob));
        let reason = p["suppressed_reason"].as_str().unwrap();
        assert_eq!(p["suppressed"] == true, !reason.is_empty(), "{reason}");
    }
    let run = read_json(&next.join("run.json"));
    assert_eq!(run["suppressed"].as_u64().unwrap() as usize, suppressed.len());
    assert_eq!(
        run["patches"].as_u64().unwrap() as usize,
        feats.len(),
        "suppressed patches are published"
    );
    assert_eq!(run["verdict_model"]["id"], "verdict@t1");

    // Replay, promote into a pipeline, run it, roll back.
    let replay = ok(&[
        "eval",
        "verdicts",
        "--db",
        s(&r.db),
        "--model",
        s(&model),
        "--since",
        "2025-06-01",
    ]);
    assert!(
        replay.contains("false alarms avoided") && replay.contains("per county") && replay.contains("per change type"),
        "{replay}"
    );
    let pipeline = r.root.join("loop.toml");
    let text = r#"# the loop's pipeline
name = "loop"
output = "out"

[source]
kind = "local"
path = "scene3"
tiles = [
  { file = "before.tif", tile = "s3", date = "2025-01-01" },
  { file = "after.tif", tile = "s3", date = "2025-07-01" },
]

[baseline]
date = "2025-01-01"
"#;
    std::fs::write(&pipeline, text).unwrap();
    ok(&[
        "model",
        "promote",
        "--pipeline",
        s(&pipeline),
        "--verdict-model",
        s(&model),
        "--by",
        "tester",
    ]);
    let text = std::fs::read_to_string(&pipeline).unwrap();
    assert!(
        text.contains("verdict = \"models/verdict-t1.json\"") && text.contains("# the loop's pipeline"),
        "{text}"
    );
    ok(&["run", s(&pipeline)]);
    let runs: Vec<PathBuf> = std::fs::read_dir(r.root.join("out/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let fc = read_json(&runs[0].join("patches.geojson"));
    let feats = fc["features"].as_array().unwrap();
    assert!(!feats.is_empty());
    for f in feats {
        assert_eq!(f["properties"]["verdict_model"], "verdict@t1", "{}", f["properties"]);
        assert!(f["properties"]["suppressed"].is_boolean());
    }
    ok(&["model", "rollback", "--pipeline", s(&pipeline), "--by", "tester"]);
    let text = std::fs::read_to_string(&pipeline).unwrap();
    assert!(!text.contains("verdict ="), "{text}");
    let log = std::fs::read_to_string(r.root.join("loop.toml.promotions.jsonl")).unwrap();
    let records: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["action"], "promote");
    assert_eq!(records[0]["by"], "tester");
    assert_eq!(records[0]["from"], Value::Null);
    assert_eq!(records[1]["action"], "rollback");
    assert_eq!(records[1]["from"], "models/verdict-t1.json");
    let o = landwatch(&["model", "rollback", "--pipeline", s(&pipeline), "--by", "tester"]);
    assert_bad_input(&o, "nothing to roll back");
}

/// The other half of the loop: the patches reviewers decided, exported as a GeoPackage, are
/// the change polygons a pixel model trains on (`--outside ignore`: what was never flagged was
/// never checked).
#[test]
fn exported_verdicts_train_the_pixel_model_on_their_real_changes_and_false_alarms() {
    let r = reviewed();
    let export = r.root.join("verdicts.gpkg");
    ok(&[
        "review",
        "export",
        "--db",
        s(&r.db),
        "--format",
        "gpkg",
        "--out",
        s(&export),
    ]);
    let pair = r.root.join("pair1");
    std::fs::create_dir_all(&pair).unwrap();
    for f in ["before.tif", "after.tif"] {
        std::fs::copy(r.root.join("scene1").join(f), pair.join(f)).unwrap();
    }
    std::fs::copy(&export, pair.join("changes.gpkg")).unwrap();
    let model = r.root.join("from-verdicts-1.0.0.json");
    #[rustfmt::skip]
    ok(&[
        "train", "--data", s(&pair), "--out", s(&model), "--licence", "own verdicts (test)",
        "--outside", "ignore", "--rounds", "4", "--depth", "3", "--max-radius", "15", "--no-edges",
    ]);
    let manifest = read_json(&r.root.join("from-verdicts-1.0.0.manifest.json"));
    let input = &manifest["inputs"][0];
    assert!(input["label"]["path"].as_str().unwrap().ends_with("changes.gpkg"));
    assert_eq!(input["label_polygons_outside"], "ignore");
    let rows = &manifest["samples"][0];
    let (all, real) = (rows["rows"].as_u64().unwrap(), rows["positive_rows"].as_u64().unwrap());
    assert!(
        real > 0 && all > real,
        "real changes and false alarms both teach: {rows}"
    );
}

fn manifest_feature_count(model: &Path) -> usize {
    read_json(model)["feature_names"].as_array().unwrap().len()
}

#[test]
fn an_empty_review_database_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("review.sqlite");
    ok(&["review", "user", "add", "simulator", "--role", "admin", "--db", s(&db)]);
    let model = tmp.path().join("m/v.json");
    let o = landwatch(&["train", "verdicts", "--db", s(&db), "--out", s(&model)]);
    assert_bad_input(&o, "too few verdicts");
    assert!(!tmp.path().join("m").exists(), "nothing written");
    let missing = tmp.path().join("nope.sqlite");
    let o = landwatch(&["train", "verdicts", "--db", s(&missing), "--out", s(&model)]);
    assert_bad_input(&o, "not found");
    assert!(!missing.exists(), "a missing database is not created");
}

#[test]
fn a_foreign_database_is_refused_and_left_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("other.sqlite");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE birds (name TEXT); INSERT INTO birds VALUES ('crane');")
            .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let model = tmp.path().join("v.json");
    let o = landwatch(&["train", "verdicts", "--db", s(&db), "--out", s(&model)]);
    assert_bad_input(&o, "not a landwatch review database");
    assert_eq!(std::fs::read(&db).unwrap(), before, "the foreign database is untouched");
    assert!(!model.exists());
    let text = tmp.path().join("notes.sqlite");
    std::fs::write(
        &text,
        "not a database at all, just some text that is long enough to be read",
    )
    .unwrap();
    let o = landwatch(&["train", "verdicts", "--db", s(&text), "--out", s(&model)]);
    assert_bad_input(&o, "not a landwatch review database");
}

#[test]
fn verdicts_whose_run_folder_is_gone_are_skipped_by_name_and_training_fails_when_none_remain() {
    let r = reviewed();
    let model = r.root.join("v.json");
    std::fs::rename(&r.runs[0], r.root.join("moved-away")).unwrap();
    let o = landwatch(&["train", "verdicts", "--db", s(&r.db), "--out", s(&model)]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    // One run left: either enough verdicts (trained, the other named as skipped) or too few.
    if o.status.success() {
        assert!(
            err.contains("skipped") && err.contains("r1") && err.contains("is gone"),
            "{err}"
        );
        let m = read_json(&r.root.join("v.manifest.json"));
        assert_eq!(m["skipped_runs"].as_array().unwrap().len(), 1);
    } else {
        assert_bad_input(&o, "after skipping runs whose inputs are gone");
    }
    std::fs::remove_file(&model).ok();
    std::fs::rename(&r.runs[1], r.root.join("moved-away-2")).unwrap();
    let o = landwatch(&["train", "verdicts", "--db", s(&r.db), "--out", s(&model)]);
    let err = assert_bad_input(&o, "no verdict could be used");
    assert!(err.contains("r1") && err.contains("r2"), "{err}");
    assert!(!model.exists());
}

#[test]
fn a_verdict_model_for_another_feature_set_is_refused_before_detection_writes_anything() {
    let r = reviewed();
    let model = r.root.join("v.json");
    ok(&["train", "verdicts", "--db", s(&r.db), "--out", s(&model)]);
    let mut m = read_json(&model);
    m["feature_set"] = Value::from("verdict-patch-v0");
    let old = r.root.join("old.json");
    std::fs::write(&old, m.to_string()).unwrap();
    let sc = r.root.join("scene1");
    let out = r.root.join("next");
    let o = detect(&sc, &out, 8, &["--verdict-model", s(&old)]);
    assert_bad_input(&o, "feature set verdict-patch-v0");
    assert!(!out.exists(), "nothing written");
    let mut m = read_json(&model);
    m["feature_names"].as_array_mut().unwrap().pop();
    std::fs::write(&old, m.to_string()).unwrap();
    let o = detect(&sc, &out, 8, &["--verdict-model", s(&old)]);
    assert_bad_input(&o, "retrain");
    assert!(!out.exists(), "nothing written");
}
