//! The pipeline with the real detection engine on small synthetic tiles: a change that straddles
//! two tiles is published once, and a second run has nothing new.

mod pipeline_common;

use landwatch::pipeline::run::{run, RunOptions, RunResult};
use landwatch::pipeline::{config, EngineDetector};
use pipeline_common::*;

#[test]
fn engine_run_publishes_seam_merged_patches_then_nothing_new() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let p = config::load(&local_pipeline(d.path(), &src, "")).unwrap();
    let report = run(&p, &RunOptions::default(), &EngineDetector).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let RunResult::Published { dir, .. } = &report.result else {
        panic!("{:?}", report.result)
    };
    let feats = features(&dir.join("patches.geojson"));
    // The engine finds the t0|t1 change on both tiles, a pixel short of the seam on each side;
    // the pipeline joins the two into one polygon. t2's change stays separate.
    assert_eq!(feats.len(), 2, "{feats:#?}");
    assert_eq!(feats[0]["geometry"]["type"], "Polygon");
    let joined = feats[0]["properties"]["area_m2"].as_f64().unwrap();
    let truth = 50.0 * 96.0 * PX * PX;
    assert!(
        (joined - truth).abs() / truth < 0.15,
        "seam patch {joined} m² vs {truth} m²"
    );
    assert!(feats[0]["properties"]["JCBH"].as_str().unwrap().ends_with("0001"));
    let again = run(&p, &RunOptions::default(), &EngineDetector).unwrap();
    assert_eq!(again.result, RunResult::NothingNew);
}
