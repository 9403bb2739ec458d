//! End-to-end runs of the pipeline on a local folder of small synthetic tiles: seams, tracking,
//! "nothing new", reruns (byte-identical), and N shards + merge == one run.

mod pipeline_common;

use landwatch::pipeline::rerun::{rerun, RerunWhat};
use landwatch::pipeline::run::{run, RunOptions, RunResult};
use landwatch::pipeline::{config, shard, Shard};
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
    assert!(landwatch::pipeline::archive::Archive::open(&p.archive)
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
    let _held = landwatch::pipeline::lock::RunLock::acquire(&p.output.join("state/run.lock")).unwrap();
    let e = run(&p, &RunOptions::default(), &DET).unwrap_err();
    assert_eq!(e.exit_code(), 3, "{e}");
}

struct Broken;

impl landwatch::pipeline::TileDetector for Broken {
    fn detect(&self, _: &landwatch::pipeline::TileJob) -> landwatch::Result<()> {
        Err(landwatch::Error::Other("engine exploded".into()))
    }
}

#[test]
fn failed_pairs_are_named_and_retried_next_time_under_a_new_run_id() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let p = config::load(&local_pipeline(d.path(), &src, "")).unwrap();
    let first = run(&p, &RunOptions::default(), &Broken).unwrap();
    assert_eq!(first.exit_code(), 1);
    assert_eq!(first.failed.len(), 4);
    assert!(first.failed.iter().all(|(_, why)| why.contains("engine exploded")));
    let (id1, _) = published(&first.result);
    let again = run(&p, &RunOptions::default(), &Broken).unwrap();
    let (id1b, _) = published(&again.result);
    assert_ne!(id1, id1b, "a retry of the same pairs is a new run");
    let second = run(&p, &RunOptions::default(), &DET).unwrap();
    assert_eq!(second.exit_code(), 0);
    let (id2, dir2) = published(&second.result);
    assert_ne!(id1, id2);
    assert_eq!(features(&dir2.join("patches.geojson")).len(), 2);
}
