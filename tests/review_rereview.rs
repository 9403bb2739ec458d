//! A re-imported patch whose outline changed materially since its verdict (IoU < 0.9 with
//! the outline the verdict was made on, or area changed by more than 10 %) is flagged for
//! re-review instead of silently keeping the verdict.

mod review_support;

use landwatch_review::import;
use review_support::*;
use serde_json::{json, Value};

/// The first run's patches with T-B's square of side `b_side` (first run: 0.001) and T-C's
/// of side `c_side`, under the same track ids.
fn rerun_with_sides(b_side: f64, c_side: f64) -> Vec<PatchSpec> {
    let mut specs = first_run_specs();
    specs[1].size = b_side;
    specs[2].size = c_side;
    specs
}

async fn judge(c: &Client, id: i64, body: Value) {
    let r = c.post_json(&format!("/api/patches/{id}/verdict"), &body).await;
    assert_eq!(r.status(), 200, "verdict on {id}");
}

fn import_run(fx: &Fixture, name: &str, specs: &[PatchSpec]) -> import::ImportReport {
    let dir = fx.data.join(name);
    write_run(&dir, specs);
    let mut store = fx.store();
    import::import_run(&mut store, &dir, Some(&fx.data)).expect("import")
}

fn flagged_ids(q: &Value) -> Vec<i64> {
    q["patches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["needs_rereview"] == true)
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_outline_is_flagged_for_rereview_with_its_history_kept() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let rev = Client::login(&base, "rev").await;
    let (a, b, c) = (
        row_id(&rev, "P0001").await,
        row_id(&rev, "P0002").await,
        row_id(&rev, "P0003").await,
    );
    judge(&rev, a, json!({"status": "illegal", "note": "A"})).await;
    judge(
        &rev,
        b,
        json!({"status": "other", "subtype": "实地未变化", "note": "B"}),
    )
    .await;

    // T-A unchanged, T-B grown by 30 % in area (IoU ≈ 0.77), T-C changed but never judged.
    let report = import_run(&fx, "run3", &rerun_with_sides(0.00114, 0.0015));
    assert_eq!(report.flagged_for_rereview, 1);

    let q = rev.get_json("/api/patches").await;
    assert_eq!(flagged_ids(&q), vec![b]);
    assert_eq!(q["counts"]["needs_rereview"], 1);
    let only = rev.get_json("/api/patches?needs_rereview=true").await;
    assert_eq!(flagged_ids(&only), vec![b]);
    assert_eq!(
        only["patches"].as_array().unwrap().len(),
        1,
        "the filter keeps only flagged patches"
    );

    // The verdict and its history are kept; an audit row says why it was flagged.
    let d = rev.get_json(&format!("/api/patches/{b}")).await;
    assert_eq!(d["needs_rereview"], true);
    assert_eq!(d["current"]["status"], "other");
    assert_eq!(d["history"].as_array().unwrap().len(), 1);
    let events = d["events"].as_array().expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["kind"], "outline_changed");
    let iou = events[0]["detail"]["iou"].as_f64().unwrap();
    assert!((0.7..0.8).contains(&iou), "iou {iou}");
    let growth = events[0]["detail"]["area_change"].as_f64().unwrap();
    assert!((0.25..0.35).contains(&growth), "area change {growth}");
    assert_eq!(
        rev.get_json(&format!("/api/patches/{a}")).await["needs_rereview"],
        false
    );
    assert_eq!(
        rev.get_json(&format!("/api/patches/{c}")).await["needs_rereview"],
        false
    );

    // Importing the same outlines again neither flags again nor adds audit rows.
    let again = import_run(&fx, "run3b", &rerun_with_sides(0.00114, 0.0015));
    assert_eq!(again.flagged_for_rereview, 0);
    let d = rev.get_json(&format!("/api/patches/{b}")).await;
    assert_eq!(d["events"].as_array().unwrap().len(), 1);

    // A reviewer (not only an admin) may decide a flagged patch again; that clears the
    // flag and appends to the history.
    judge(&rev, b, json!({"status": "illegal", "note": "grown: now a building"})).await;
    let d = rev.get_json(&format!("/api/patches/{b}")).await;
    assert_eq!(d["needs_rereview"], false);
    assert_eq!(d["current"]["status"], "illegal");
    assert_eq!(d["history"].as_array().unwrap().len(), 2);
    assert_eq!(
        d["history"][0]["new_status"], "other",
        "the old verdict stays in the history"
    );
    // Once re-reviewed it is locked for reviewers again.
    let r = rev
        .post_json(
            &format!("/api/patches/{b}/verdict"),
            &json!({"status": "legal", "subtype": "其他"}),
        )
        .await;
    assert_eq!(r.status(), 409);
    // The new verdict was made on the new outline: importing it again flags nothing.
    assert_eq!(
        import_run(&fx, "run3c", &rerun_with_sides(0.00114, 0.0015)).flagged_for_rereview,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn small_changes_pass_and_drift_is_measured_from_the_verdicts_outline() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let rev = Client::login(&base, "rev").await;
    let boss = Client::login(&base, "boss").await;
    let b = row_id(&rev, "P0002").await;
    judge(&rev, b, json!({"status": "illegal"})).await;

    // +6 % area, IoU 0.94: within tolerance.
    assert_eq!(
        import_run(&fx, "r1", &rerun_with_sides(0.00103, 0.001)).flagged_for_rereview,
        0
    );
    // Another +6 %: 12 % since the verdict, though only 6 % since the last run.
    assert_eq!(
        import_run(&fx, "r2", &rerun_with_sides(0.00106, 0.001)).flagged_for_rereview,
        1
    );
    let d = rev.get_json(&format!("/api/patches/{b}")).await;
    assert_eq!(d["needs_rereview"], true);

    // An admin reopening the patch clears the flag too (it is back to 未核).
    let r = boss
        .post_json(&format!("/api/patches/{b}/reopen"), &json!({"note": "look again"}))
        .await;
    assert_eq!(r.status(), 200);
    let d = rev.get_json(&format!("/api/patches/{b}")).await;
    assert_eq!(d["needs_rereview"], false);
    assert_eq!(d["current"]["status"], "unreviewed");
    // An undecided patch is never flagged, whatever its outline does.
    assert_eq!(
        import_run(&fx, "r3", &rerun_with_sides(0.002, 0.001)).flagged_for_rereview,
        0
    );
}
