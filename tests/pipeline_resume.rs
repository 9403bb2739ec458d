//! Crash and resume: a run is killed (SIGKILL at an arbitrary moment, or an abort right after k
//! pairs), then run again; the published result must equal an uninterrupted run's.
//!
//! The crashing run is a child process: this test binary re-executes itself, running only
//! `child_entry` with the pipeline file in an environment variable.

mod pipeline_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use landwatch_pipeline::config;
use landwatch_pipeline::run::{run, RunOptions, RunResult};
use landwatch_pipeline::test_hooks::ABORT_AFTER_PAIRS_ENV as ABORT_HOOK_ENV;
use pipeline_common::*;

const CHILD_ENV: &str = "LANDWATCH_TEST_CHILD_PIPELINE";
const DELAY_ENV: &str = "LANDWATCH_TEST_CHILD_DELAY_MS";

/// In the child: run the pipeline named by the environment (a no-op in a normal test run).
#[test]
fn child_entry() {
    let Ok(file) = std::env::var(CHILD_ENV) else {
        return;
    };
    let delay_ms = std::env::var(DELAY_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let p = config::load(Path::new(&file)).unwrap();
    run(&p, &RunOptions::default(), &BoxDetector { delay_ms }).unwrap();
}

fn child(file: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, file)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn scene(root: &Path, names: [&str; 4]) -> PathBuf {
    let src = root.join("src");
    standard_scene(&src, names);
    // A second row of tiles so a run has enough pairs to be interrupted in the middle.
    for i in 4..8 {
        make_tile(&src.join(format!("r{i}_2024-01-10.tif")), i, &[]);
        make_tile(
            &src.join(format!("r{i}_2024-05-10.tif")),
            i,
            &[(20, 50, 20 + i, 60 + i)],
        );
    }
    src
}

fn fresh(root: &Path, src: &Path) -> PathBuf {
    std::fs::create_dir_all(root).unwrap();
    local_pipeline(root, src, "")
}

fn published_patches(file: &Path) -> (String, String) {
    let p = config::load(file).unwrap();
    let report = run(&p, &RunOptions::default(), &BoxDetector { delay_ms: 0 }).unwrap();
    match report.result {
        RunResult::Published { run_id, dir } => (run_id, read(&dir.join("patches.geojson"))),
        other => panic!("{other:?}"),
    }
}

fn done_pairs(out: &Path, run_id: &str) -> usize {
    std::fs::read_dir(out.join("work").join(run_id).join("tiles"))
        .map(|rd| {
            rd.filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn abort_after_k_pairs_then_resume_equals_uninterrupted() {
    let d = tempfile::tempdir().unwrap();
    let src = scene(d.path(), ["t0", "t1", "t2", "t3"]);
    let (want_id, want) = published_patches(&fresh(&d.path().join("clean"), &src));

    let file = fresh(&d.path().join("crashy"), &src);
    let status = child(&file).env(ABORT_HOOK_ENV, "3").status().unwrap();
    assert!(!status.success(), "the child must have crashed");
    let out = d.path().join("crashy/out");
    assert!(
        !out.join("runs").join(&want_id).exists(),
        "nothing published by the crashed run"
    );
    assert_eq!(done_pairs(&out, &want_id), 3, "three checkpoints survive the crash");

    let (got_id, got) = published_patches(&file);
    assert_eq!(got_id, want_id);
    assert_eq!(got, want);
}

#[test]
fn sigkill_mid_run_then_resume_equals_uninterrupted() {
    let d = tempfile::tempdir().unwrap();
    let src = scene(d.path(), ["t0", "t1", "t2", "t3"]);
    let (want_id, want) = published_patches(&fresh(&d.path().join("clean"), &src));

    let file = fresh(&d.path().join("killed"), &src);
    let mut c = child(&file).env(DELAY_ENV, "150").spawn().unwrap();
    let out = d.path().join("killed/out");
    // Kill once the run is visibly in the middle of detecting.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while done_pairs(&out, &want_id) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    c.kill().unwrap(); // SIGKILL
    c.wait().unwrap();
    let k = done_pairs(&out, &want_id);
    assert!((2..8).contains(&k), "killed mid-run, {k} pairs done");

    // The lock died with the process: the resumed run is not locked out.
    let (got_id, got) = published_patches(&file);
    assert_eq!(got_id, want_id);
    assert_eq!(got, want);
}
