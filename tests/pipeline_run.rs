//! End-to-end runs of the pipeline on a local folder of small synthetic tiles: seams, tracking,
//! "nothing new", reruns (byte-identical), and N shards + merge == one run.

mod pipeline_common;

use landwatch_pipeline::rerun::{rerun, RerunWhat};
use landwatch_pipeline::run::{run, RunOptions, RunResult};
use landwatch_pipeline::{config, shard, Shard};
use pipeline_common::*;

const DET: BoxDetector = BoxDetector { delay_ms: 0 };

fn published(r: &RunResult) -> (String, std::path::PathBuf) {
    match r {
        RunResult::Published { run_id, dir } => (run_id.clone(), dir.clone()),
        other => panic!("expected a published run, got {other:?}"),
    }
}

#[test]
fn run_merges_seams_then_second_run_does_nothing_then_tracks_a_change_seen_again() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let p = config::load(&local_pipeline(d.path(), &src, "")).unwrap();

    let first = run(&p, &RunOptions::default(), &DET).unwrap();
    assert_eq!(first.exit_code(), 0, "{:?}", first.failed);
    let (run1, dir1) = published(&first.result);
    let feats = features(&dir1.join("patches.geojson"));
    // t0+t1 straddling change is one patch, t2 another, t3 unchanged.
    assert_eq!(feats.len(), 2, "{feats:#?}");
    let seam = &feats[0];
    assert_eq!(seam["geometry"]["type"], "Polygon");
    let area = seam["properties"]["area_m2"].as_f64().unwrap();
    let want = 50.0 * (56.0 + 40.0) * PX * PX;
    assert!((area - want).abs() / want < 0.01, "area {area} vs {want}");
    let ids: Vec<_> = feats.iter().map(|f| f["properties"]["id"].clone()).collect();
    assert_eq!(ids, ["P0001", "P0002"]);
    assert!(feats.iter().all(|f| f["properties"]["seen_before"] == false));
    let chip = seam["properties"]["chip_after"].as_str().unwrap();
    assert!(
        dir1.join(chip).is_file(),
        "chip path {chip} is relative to the run folder"
    );
    let manifest: serde_json::Value = serde_json::from_str(&read(&dir1.join("manifest.json"))).unwrap();
    assert_eq!(manifest["properties"]["tiles"].as_array().unwrap().len(), 4);
    assert_eq!(manifest["properties"]["pipeline"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(manifest["properties"]["inputs"].as_array().unwrap().len(), 8);
    assert!(!p.output.join("work").join(&run1).exists(), "work folder renamed away");

    let second = run(&p, &RunOptions::default(), &DET).unwrap();
    assert_eq!(second.result, RunResult::NothingNew);
    assert_eq!(second.exit_code(), 0);
    assert_eq!(std::fs::read_dir(p.output.join("runs")).unwrap().count(), 1);

    // A later image still shows the t2 change (and nothing else new): same track, seen before.
    make_tile(&src.join("t2_2024-06-10.tif"), 2, &[(30, 60, 30, 90)]);
    let third = run(&p, &RunOptions::default(), &DET).unwrap();
    let (_, dir3) = published(&third.result);
    let again = features(&dir3.join("patches.geojson"));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["properties"]["seen_before"], true);
    assert_eq!(again[0]["properties"]["track_id"], feats[1]["properties"]["track_id"]);
    assert!(feats[1]["properties"]["track_id"].as_str().unwrap().starts_with(&run1));
}

#[test]
fn dry_run_lists_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let p = config::load(&local_pipeline(d.path(), &src, "")).unwrap();
    let opts = RunOptions {
        dry_run: true,
        ..Default::default()
    };
    assert_eq!(run(&p, &opts, &DET).unwrap().result, RunResult::DryRun);
    assert!(!p.output.join("runs").exists());
    assert!(landwatch_pipeline::archive::Archive::open(&p.archive)
        .unwrap()
        .entries()
        .unwrap()
        .is_empty());
}

#[test]
fn rerun_of_a_run_is_byte_identical_and_needs_no_source() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let p = config::load(&local_pipeline(d.path(), &src, "")).unwrap();
    let (run_id, dir) = published(&run(&p, &RunOptions::default(), &DET).unwrap().result);
    std::fs::remove_dir_all(&src).unwrap(); // reruns read the archive only
    let r = rerun(&p, &RerunWhat::Run(run_id.clone()), None, None, &DET).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert_eq!(read(&dir.join("patches.geojson")), read(&r.dir.join("patches.geojson")));

    let range = RerunWhat::Range {
        from: "2024-05-01".into(),
        to: "2024-05-31".into(),
    };
    let a = rerun(&p, &range, None, Some(&d.path().join("ra")), &DET).unwrap();
    let b = rerun(&p, &range, None, Some(&d.path().join("rb")), &DET).unwrap();
    assert_eq!(a.patches, 2);
    assert_eq!(
        read(&a.dir.join("patches.geojson")),
        read(&b.dir.join("patches.geojson"))
    );
    let missing = rerun(&p, &RerunWhat::Run("nope".into()), None, None, &DET).unwrap_err();
    assert_eq!(missing.exit_code(), 2);
}

/// Two tile names that land in different shards of 2, so the seam crosses shards.
fn names_split_across(n: u32) -> [String; 4] {
    let s0 = Shard { index: 0, count: n };
    let a = (0..).map(|i| format!("a{i}")).find(|t| s0.owns(t)).unwrap();
    let b = (0..).map(|i| format!("b{i}")).find(|t| !s0.owns(t)).unwrap();
    [a, b, "c".into(), "d".into()]
}

#[test]
fn shards_plus_merge_equal_one_run() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    let names = names_split_across(2);
    standard_scene(&src, [&names[0], &names[1], &names[2], &names[3]].map(String::as_str));

    let single_root = d.path().join("single");
    std::fs::create_dir_all(&single_root).unwrap();
    let single = config::load(&local_pipeline(&single_root, &src, "")).unwrap();
    let (_, single_dir) = published(&run(&single, &RunOptions::default(), &DET).unwrap().result);

    let sharded_root = d.path().join("sharded");
    std::fs::create_dir_all(&sharded_root).unwrap();
    let sharded = config::load(&local_pipeline(&sharded_root, &src, "")).unwrap();
    let mut dirs = Vec::new();
    for i in 0..2 {
        let opts = RunOptions {
            shard: Some(Shard { index: i, count: 2 }),
            ..Default::default()
        };
        match run(&sharded, &opts, &DET).unwrap().result {
            RunResult::ShardWritten { dir, .. } => dirs.push(dir),
            other => panic!("{other:?}"),
        }
    }
    // The run's shard folder stands for all its shards (what the deploy scripts pass).
    let merged = shard::merge(&[dirs[0].parent().unwrap().to_path_buf()], None).unwrap();
    assert!(merged.failed.is_empty());
    assert_eq!(
        read(&single_dir.join("patches.geojson")),
        read(&merged.dir.join("patches.geojson"))
    );
    assert_eq!(merged.dir.file_name(), single_dir.file_name(), "same run id");
    // The merged run counts as published: nothing new afterwards.
    let again = run(&sharded, &RunOptions::default(), &DET).unwrap();
    assert_eq!(again.result, RunResult::NothingNew);
    // Merging an incomplete set is refused with a usage error.
    let e = shard::merge(&dirs[..1], Some(&d.path().join("x"))).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
}

#[test]
fn second_concurrent_run_is_locked_out() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let p = config::load(&local_pipeline(d.path(), &src, "")).unwrap();
    let _held = landwatch_pipeline::lock::RunLock::acquire(&p.output.join("state/run.lock")).unwrap();
    let e = run(&p, &RunOptions::default(), &DET).unwrap_err();
    assert_eq!(e.exit_code(), 3, "{e}");
}

struct Broken;

impl landwatch_pipeline::TileDetector for Broken {
    fn detect(&self, _: &landwatch_pipeline::TileJob) -> landwatch_core::Result<()> {
        Err(landwatch_core::Error::Other("engine exploded".into()))
    }
}

/// Fails the pairs of one tile, detects the others.
struct FailsOn(&'static str);

impl landwatch_pipeline::TileDetector for FailsOn {
    fn detect(&self, job: &landwatch_pipeline::TileJob) -> landwatch_core::Result<()> {
        if job.out_dir.to_string_lossy().contains(self.0) {
            return Err(landwatch_core::Error::Other("engine exploded".into()));
        }
        DET.detect(job)
    }
}

/// Writes part of its output, then the disk is full (ENOSPC) on the pair of tile `self.0`.
struct DiskFullOn(&'static str);

impl landwatch_pipeline::TileDetector for DiskFullOn {
    fn detect(&self, job: &landwatch_pipeline::TileJob) -> landwatch_core::Result<()> {
        if !job.out_dir.to_string_lossy().contains(self.0) {
            return DET.detect(job);
        }
        std::fs::write(job.out_dir.join("change.tif"), b"half").unwrap();
        let enospc = std::io::Error::from_raw_os_error(28);
        Err(landwatch_core::Error::io(
            job.out_dir.join("change.tif"),
            "writing change.tif",
            enospc,
        ))
    }
}

fn clean_run(root: &std::path::Path, src: &std::path::Path) -> (String, String) {
    std::fs::create_dir_all(root).unwrap();
    let p = config::load(&local_pipeline(root, src, "")).unwrap();
    let (id, dir) = published(&run(&p, &RunOptions::default(), &DET).unwrap().result);
    (id, read(&dir.join("patches.geojson")))
}

#[test]
fn failed_pairs_are_named_and_retried_next_time() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let p = config::load(&local_pipeline(d.path(), &src, "")).unwrap();
    let first = run(&p, &RunOptions::default(), &FailsOn("t2@")).unwrap();
    assert_eq!(first.exit_code(), 1);
    assert_eq!(first.failed.len(), 1, "{:?}", first.failed);
    assert!(first.failed[0].0.starts_with("t2@") && first.failed[0].1.contains("engine exploded"));
    let (id1, _) = published(&first.result);
    let second = run(&p, &RunOptions::default(), &DET).unwrap();
    assert_eq!(second.exit_code(), 0);
    let (id2, dir2) = published(&second.result);
    assert_ne!(id1, id2, "the retried pair is a new run");
    assert_eq!(features(&dir2.join("patches.geojson")).len(), 1);
}

/// A run in which every pair failed publishes nothing (so a run with no result never hides
/// the published history), exits non-zero, and the retry is the run a clean night would have
/// published: same run id, same track ids, same bytes.
#[test]
fn every_pair_failing_publishes_nothing_and_the_retry_equals_a_clean_run() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let (clean_id, clean) = clean_run(&d.path().join("clean"), &src);
    let root = d.path().join("retried");
    std::fs::create_dir_all(&root).unwrap();
    let p = config::load(&local_pipeline(&root, &src, "")).unwrap();
    let first = run(&p, &RunOptions::default(), &Broken).unwrap();
    assert_eq!(first.exit_code(), 1);
    assert_eq!(first.failed.len(), 4);
    assert!(first.failed.iter().all(|(_, why)| why.contains("engine exploded")));
    assert!(
        !matches!(first.result, RunResult::Published { .. }),
        "{:?}",
        first.result
    );
    assert!(tracking_runs(&p.output).is_empty(), "nothing published");
    let (id, dir) = published(&run(&p, &RunOptions::default(), &DET).unwrap().result);
    assert_eq!(id, clean_id);
    assert_eq!(read(&dir.join("patches.geojson")), clean);
}

fn tracking_runs(output: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(output.join("runs"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The disk filling up is not a tile's fault: exit 3, nothing published, and the next run
/// resumes into exactly the clean result.
#[test]
fn disk_full_while_detecting_is_exit_3_publishes_nothing_and_resumes_to_the_clean_result() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let (clean_id, clean) = clean_run(&d.path().join("clean"), &src);
    let root = d.path().join("full");
    std::fs::create_dir_all(&root).unwrap();
    let p = config::load(&local_pipeline(&root, &src, "")).unwrap();
    let e = run(&p, &RunOptions::default(), &DiskFullOn("t2@")).unwrap_err();
    assert_eq!(e.exit_code(), 3, "{e}");
    assert!(e.to_string().contains("No space left"), "{e}");
    assert!(tracking_runs(&p.output).is_empty(), "nothing published");
    let (id, dir) = published(&run(&p, &RunOptions::default(), &DET).unwrap().result);
    assert_eq!(id, clean_id);
    assert_eq!(read(&dir.join("patches.geojson")), clean);
}

/// The archive cannot be written (here: a file where a folder of the archive must go): exit 3,
/// not a run published with "failed" tiles.
#[test]
fn archive_write_error_is_exit_3_and_publishes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let p = config::load(&local_pipeline(d.path(), &src, "")).unwrap();
    let sha = landwatch_core::io::hash::sha256_file(&src.join("t2_2024-05-10.tif")).unwrap();
    std::fs::create_dir_all(p.archive.join("sha256")).unwrap();
    std::fs::write(p.archive.join("sha256").join(&sha[..2]), b"in the way").unwrap();
    let e = run(&p, &RunOptions::default(), &DET).unwrap_err();
    assert_eq!(e.exit_code(), 3, "{e}");
    assert!(tracking_runs(&p.output).is_empty(), "nothing published");
}

/// Band numbers the rasters do not have are a configuration error found before anything runs.
#[test]
fn band_numbers_missing_from_the_rasters_are_exit_2_before_the_run() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let bands = "[bands]\nblue = 1\ngreen = 2\nred = 3\nnir = 5\n";
    let file = local_pipeline(d.path(), &src, "");
    let text = read(&file).replace("\n[source]", &format!("\n{bands}\n[source]"));
    std::fs::write(&file, text).unwrap();
    let p = config::load(&file).unwrap();
    for dry_run in [true, false] {
        let opts = RunOptions {
            dry_run,
            ..Default::default()
        };
        let e = run(&p, &opts, &DET).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("bands.nir") && msg.contains("line ") && msg.contains("4 bands"),
            "{msg}"
        );
    }
    assert!(tracking_runs(&p.output).is_empty());
    assert!(!p.archive.exists(), "nothing fetched");
}

/// Every file under `root`: path, size and modification time.
fn snapshot(root: &std::path::Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let m = std::fs::symlink_metadata(&path).unwrap();
            if m.is_dir() {
                stack.push(path.clone());
            }
            out.push((path, m.len(), m.modified().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn dry_run_writes_nothing_at_all() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let p = config::load(&local_pipeline(d.path(), &src, "")).unwrap();
    let dry = RunOptions {
        dry_run: true,
        ..Default::default()
    };
    // Fresh: not even the output folder may appear.
    let before = snapshot(d.path());
    assert_eq!(run(&p, &dry, &DET).unwrap().result, RunResult::DryRun);
    assert_eq!(snapshot(d.path()), before);
    assert!(!p.output.exists());
    // After a published run, with something new to do: the lock, archive and runs are untouched.
    run(&p, &RunOptions::default(), &DET).unwrap();
    make_tile(&src.join("t2_2024-06-10.tif"), 2, &[(30, 60, 30, 90)]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let before = snapshot(d.path());
    assert_eq!(run(&p, &dry, &DET).unwrap().result, RunResult::DryRun);
    assert_eq!(snapshot(d.path()), before);
}

#[test]
fn an_aoi_that_excludes_every_local_tile_is_exit_2_with_counts() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    // The tiles lie near 108.0 E, 22.6 N; this box is in Hebei.
    let p = config::load(&local_pipeline(
        d.path(),
        &src,
        "[aoi]\nbbox = [115.0, 38.0, 116.0, 39.0]\n",
    ))
    .unwrap();
    let e = run(&p, &RunOptions::default(), &DET).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("aoi.bbox") && msg.contains("8 images listed, 0 inside"),
        "{msg}"
    );
    // A box around tile t2 only keeps t2 (its footprint read from the raster).
    let (w, s, e2, n) = tile_lonlat_bounds(2);
    let aoi = format!(
        "[aoi]\nbbox = [{}, {}, {}, {}]\n",
        w + 1e-4,
        s + 1e-4,
        e2 - 1e-4,
        n - 1e-4
    );
    let root = d.path().join("aoi2");
    std::fs::create_dir_all(&root).unwrap();
    let p = config::load(&local_pipeline(&root, &src, &aoi)).unwrap();
    let report = run(&p, &RunOptions::default(), &DET).unwrap();
    let (_, dir) = published(&report.result);
    let m: serde_json::Value = serde_json::from_str(&read(&dir.join("manifest.json"))).unwrap();
    let pairs: Vec<&str> = m["properties"]["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["pair"].as_str().unwrap())
        .collect();
    assert_eq!(pairs, ["t2@2024-05-10"]);
}

/// Lon/lat bounds of tile column `col` of the standard scene.
fn tile_lonlat_bounds(col: usize) -> (f64, f64, f64, f64) {
    use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
    let mut src = SpatialRef::from_epsg(4545).unwrap();
    src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut dst = SpatialRef::from_epsg(4326).unwrap();
    dst.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let ct = CoordTransform::new(&src, &dst).unwrap();
    let x0 = X0 + (col * SIZE) as f64 * PX;
    let x1 = x0 + SIZE as f64 * PX;
    let y1 = Y0 - SIZE as f64 * PX;
    let mut xs = [x0, x1, x1, x0];
    let mut ys = [Y0, Y0, y1, y1];
    ct.transform_coords(&mut xs, &mut ys, &mut []).unwrap();
    let f = |v: &[f64], max: bool| {
        v.iter().copied().fold(if max { f64::MIN } else { f64::MAX }, |a, b| {
            if max {
                a.max(b)
            } else {
                a.min(b)
            }
        })
    };
    (f(&xs, false), f(&ys, false), f(&xs, true), f(&ys, true))
}

/// Nothing processed because no image has a baseline is not "nothing new": the message says
/// why, with counts, and exits 2 (the baseline date matches no image).
#[test]
fn no_baseline_for_any_image_is_exit_2_naming_the_baseline() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let file = local_pipeline(d.path(), &src, "");
    std::fs::write(&file, read(&file).replace("2024-02-01", "2023-06-01")).unwrap();
    let p = config::load(&file).unwrap();
    let e = run(&p, &RunOptions::default(), &DET).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("baseline.date") && msg.contains("8 images have no baseline image"),
        "{msg}"
    );
    assert!(tracking_runs(&p.output).is_empty());
}

/// The same tile and date as two different files: both are reported, neither is used.
#[test]
fn the_same_tile_and_date_in_two_files_is_reported() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    std::fs::copy(src.join("t3_2024-05-10.tif"), src.join("t3_2024-05-10.tiff")).unwrap();
    let p = config::load(&local_pipeline(d.path(), &src, "")).unwrap();
    let report = run(&p, &RunOptions::default(), &DET).unwrap();
    assert_eq!(report.exit_code(), 1);
    let failed: Vec<&str> = report.failed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(failed, ["t3@2024-05-10"], "{:?}", report.failed);
    assert!(report.failed[0].1.contains("listed 2 times"), "{:?}", report.failed);
}

/// Through the binary with the real engine: every pair failing (here: after images that do not
/// overlap their before images) publishes nothing and says so on stderr.
#[test]
fn binary_says_loudly_that_nothing_was_published_when_every_pair_failed() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for (i, t) in ["a", "b"].iter().enumerate() {
        make_tile(&src.join(format!("{t}_2024-01-10.tif")), i, &[]);
        make_tile(&src.join(format!("{t}_2024-05-10.tif")), i + 5, &[]);
    }
    let file = local_pipeline(d.path(), &src, "");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_landwatch"))
        .args(["run", file.to_str().unwrap()])
        .env("LANDWATCH_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("NOTHING PUBLISHED"), "{stderr}");
    assert!(
        stderr.contains("FAILED a@2024-05-10") && stderr.contains("does not overlap"),
        "{stderr}"
    );
    assert!(tracking_runs(&d.path().join("out")).is_empty());
}

/// Runs the binary with logging off.
fn landwatch(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_landwatch"))
        .args(args)
        .env("LANDWATCH_LOG", "off")
        .output()
        .unwrap()
}

/// Names in `dir` that start with `prefix` (leftover staging or work folders).
fn names_starting(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Through the binary: `rerun --out` never deletes a folder landwatch did not write (exit 2
/// before any work, the folder untouched), and replaces its own earlier output whole.
#[test]
fn rerun_out_replaces_only_a_folder_landwatch_wrote() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let file = local_pipeline(d.path(), &src, "");
    let p = config::load(&file).unwrap();
    let engine = landwatch_pipeline::EngineDetector;
    let (run_id, dir) = published(&run(&p, &RunOptions::default(), &engine).unwrap().result);
    let rerun_to = |out: &std::path::Path| {
        landwatch(&[
            "rerun".as_ref(),
            file.as_ref(),
            run_id.as_ref(),
            "--out".as_ref(),
            out.as_ref(),
        ])
    };

    let theirs = d.path().join("v");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("important.txt"), b"keep me").unwrap();
    let refused = rerun_to(&theirs);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("important.txt"), "{stderr}");
    assert_eq!(read(&theirs.join("important.txt")), "keep me");
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1, "nothing added");
    assert!(names_starting(d.path(), ".v").is_empty(), "no work left beside it");
    assert!(names_starting(d.path(), ".work-").is_empty());

    let ours = d.path().join("r");
    let first = rerun_to(&ours);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(read(&ours.join("patches.geojson")), read(&dir.join("patches.geojson")));
    // Its own output is replaced as a whole: a stale file of it is gone afterwards.
    std::fs::write(ours.join("patches.geojson"), b"stale").unwrap();
    let again = rerun_to(&ours);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(read(&ours.join("patches.geojson")), read(&dir.join("patches.geojson")));
    assert!(
        names_starting(d.path(), ".r").is_empty(),
        "no staging folder left beside it"
    );
}

/// A finished shard folder is never deleted to make room for another: when both it and an
/// unfinished one exist (a folder restored by hand), the shard run refuses (exit 2) before
/// any work and keeps both.
#[test]
fn a_shard_run_never_deletes_a_finished_shard_folder() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let p = config::load(&local_pipeline(d.path(), &src, "")).unwrap();
    let opts = RunOptions {
        shard: Some(Shard { index: 0, count: 2 }),
        ..Default::default()
    };
    let done = match run(&p, &opts, &DET).unwrap().result {
        RunResult::ShardWritten { dir, .. } => dir,
        other => panic!("{other:?}"),
    };
    std::fs::write(done.join("notes.txt"), b"mine").unwrap();
    let name = done.file_name().unwrap().to_string_lossy().into_owned();
    let unfinished = done.with_file_name(format!(".work-{name}"));
    std::fs::create_dir_all(unfinished.join("tiles")).unwrap();
    let e = run(&p, &opts, &DET).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains(&name), "{e}");
    assert_eq!(read(&done.join("notes.txt")), "mine");
    assert!(unfinished.is_dir());
}

/// `merge --out` builds beside its target in a folder of its own: a folder there with the
/// name older versions used is someone else's and kept.
#[test]
fn merge_keeps_foreign_folders_beside_its_output() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let p = config::load(&local_pipeline(d.path(), &src, "")).unwrap();
    let mut run_id = String::new();
    for i in 0..2 {
        let opts = RunOptions {
            shard: Some(Shard { index: i, count: 2 }),
            ..Default::default()
        };
        match run(&p, &opts, &DET).unwrap().result {
            RunResult::ShardWritten { run_id: id, .. } => run_id = id,
            other => panic!("{other:?}"),
        }
    }
    let beside = d.path().join("merged");
    std::fs::create_dir_all(&beside).unwrap();
    let foreign = beside.join(format!(".merge-{run_id}"));
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
    let merged = shard::merge(&[p.output.join("shards").join(&run_id)], Some(&beside.join("run"))).unwrap();
    assert!(merged.failed.is_empty(), "{:?}", merged.failed);
    assert_eq!(read(&foreign.join("notes.txt")), "mine");
    assert_eq!(features(&merged.dir.join("patches.geojson")).len(), 2);
    let mut left = names_starting(&beside, ".");
    left.sort();
    assert_eq!(
        left,
        [format!(".merge-{run_id}")],
        "nothing of the merge left beside it"
    );
}
