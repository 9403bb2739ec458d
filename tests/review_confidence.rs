//! The review queue by change confidence and with patches a verdict model suppressed: sort,
//! filter, page through, and the default queue hiding what the model suppressed.

mod review_support;

use review_support::*;
use serde_json::{json, Value};

/// Five patches with confidences 0.2, 0.9, 0.5, 0.7 and 0.5, the fourth suppressed; one
/// patch of an older run without any confidence.
fn specs() -> Vec<PatchSpec> {
    let confidences = [Some(0.2), Some(0.9), Some(0.5), Some(0.7), Some(0.5), None];
    confidences
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut s = PatchSpec::new(
                format!("P{:04}", i + 1),
                format!("T-{i}"),
                108.3 + i as f64 * 0.01,
                22.8,
            );
            if let Some(c) = c {
                s.extra.insert("change_confidence".into(), json!(c));
            }
            if i == 3 {
                s.extra.insert("suppressed".into(), json!(true));
                s.extra.insert(
                    "suppressed_reason".into(),
                    json!("verdict model test@1: p(change) 0.12 < 0.30"),
                );
            }
            s
        })
        .collect()
}

fn patch_ids(q: &Value) -> Vec<String> {
    q["patches"]
        .as_array()
        .expect("patches")
        .iter()
        .map(|p| p["patch_id"].as_str().expect("patch_id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_sorts_and_filters_by_change_confidence_and_hides_suppressed_patches_by_default() {
    let fx = Fixture::with_first_run(&specs());
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;

    let default = c.get_json("/api/patches").await;
    assert_eq!(patch_ids(&default), ["P0001", "P0002", "P0003", "P0005", "P0006"]);
    assert_eq!(default["total"], 5);
    assert_eq!(default["patches"][0]["change_confidence"], 0.2);
    assert_eq!(default["patches"][4]["change_confidence"], Value::Null);

    let only = c.get_json("/api/patches?suppressed=only").await;
    assert_eq!(patch_ids(&only), ["P0004"]);
    assert_eq!(only["patches"][0]["suppressed"], true);
    assert!(only["patches"][0]["suppressed_reason"]
        .as_str()
        .unwrap()
        .contains("verdict model"));
    let all = c.get_json("/api/patches?suppressed=include").await;
    assert_eq!(all["total"], 6);

    let desc = c.get_json("/api/patches?sort=confidence_desc&suppressed=include").await;
    assert_eq!(patch_ids(&desc), ["P0002", "P0004", "P0003", "P0005", "P0001", "P0006"]);
    let asc = c.get_json("/api/patches?sort=confidence_asc").await;
    assert_eq!(patch_ids(&asc), ["P0006", "P0001", "P0003", "P0005", "P0002"]);

    let confident = c.get_json("/api/patches?min_confidence=0.5&sort=confidence_desc").await;
    assert_eq!(patch_ids(&confident), ["P0002", "P0003", "P0005"]);
    let doubtful = c.get_json("/api/patches?max_confidence=0.5").await;
    assert_eq!(patch_ids(&doubtful), ["P0001", "P0003", "P0005"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_in_confidence_order_lists_every_patch_once_ties_included() {
    let fx = Fixture::with_first_run(&specs());
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let mut seen = Vec::new();
    let mut path = "/api/patches?sort=confidence_desc&suppressed=include&limit=2".to_string();
    loop {
        let page = c.get_json(&path).await;
        seen.extend(patch_ids(&page));
        match page["next_after"].as_i64() {
            Some(after) => path = format!("/api/patches?sort=confidence_desc&suppressed=include&limit=2&after={after}"),
            None => break,
        }
    }
    assert_eq!(seen, ["P0002", "P0004", "P0003", "P0005", "P0001", "P0006"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_confidence_sort_and_suppressed_values_are_400_naming_the_parameter() {
    let fx = Fixture::with_first_run(&specs());
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    for (query, needle) in [
        ("min_confidence=1.5", "min_confidence"),
        ("max_confidence=-1", "max_confidence"),
        ("sort=area", "sort"),
        ("suppressed=maybe", "suppressed"),
    ] {
        let r = c.get(&format!("/api/patches?{query}")).await;
        assert_eq!(r.status(), 400, "{query}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(needle), "{query}: {body}");
    }
}
