//! Fault injection: an in-process HTTP server on 127.0.0.1 serves a tile index / STAC API whose
//! tiles fail in the ways real providers fail. The run must finish with the good tiles, name the
//! bad ones, exit 1, and leave nothing corrupt in the archive.

mod pipeline_common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use landwatch_core::io::hash::{sha256_file, sha256_hex};
use landwatch_pipeline::archive::{verify_raster, Archive};
use landwatch_pipeline::config;
use landwatch_pipeline::run::{run, RunOptions, RunResult};
use pipeline_common::*;

#[derive(Default)]
struct Server {
    files: HashMap<String, Vec<u8>>,
    hits: Mutex<HashMap<String, usize>>,
    /// Range requests that resumed from a non-zero offset.
    resumed: AtomicUsize,
    index: Vec<u8>,
    stac_pages: Vec<serde_json::Value>,
}

type Shared = Arc<Server>;

fn range_start(h: &HeaderMap) -> Option<usize> {
    let v = h.get("range")?.to_str().ok()?;
    v.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()
}

async fn tile(State(s): State<Shared>, UrlPath(name): UrlPath<String>, h: HeaderMap) -> Response {
    let hit = {
        let mut hits = s.hits.lock().unwrap();
        let n = hits.entry(name.clone()).or_default();
        *n += 1;
        *n
    };
    let Some(bytes) = s.files.get(&name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if name.starts_with("flaky") && hit <= 2 || name.starts_with("always500") {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    if name.starts_with("slow") {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
    match range_start(&h) {
        Some(from) if from > 0 && from < bytes.len() => {
            s.resumed.fetch_add(1, Ordering::SeqCst);
            let total = bytes.len();
            Response::builder()
                .status(StatusCode::PARTIAL_CONTENT)
                .header("content-range", format!("bytes {from}-{}/{total}", total - 1))
                .header("content-length", total - from)
                .body(Body::from(bytes[from..].to_vec()))
                .unwrap()
        }
        _ if name.starts_with("cut") => {
            // Announce the whole file, send 40% of it, then drop the connection.
            let half = Bytes::from(bytes[..bytes.len() * 2 / 5].to_vec());
            let parts: Vec<Result<Bytes, std::io::Error>> = vec![Ok(half), Err(std::io::Error::other("cut"))];
            Response::builder()
                .header("content-length", bytes.len())
                .body(Body::from_stream(futures_util::StreamExt::then(
                    futures_util::stream::iter(parts),
                    |part| async move {
                        // Let the first chunk reach the client before the cut.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        part
                    },
                )))
                .unwrap()
        }
        _ => bytes.into_response(),
    }
}

async fn index(State(s): State<Shared>) -> Response {
    s.index.clone().into_response()
}

async fn stac_search(State(s): State<Shared>) -> Response {
    axum::Json(s.stac_pages[0].clone()).into_response()
}

async fn stac_page(State(s): State<Shared>, UrlPath(n): UrlPath<usize>) -> Response {
    match s.stac_pages.get(n) {
        Some(p) => axum::Json(p.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Starts the server on an ephemeral loopback port; returns its base URL.
fn serve(rt: &tokio::runtime::Runtime, s: Shared) -> String {
    let app = axum::Router::new()
        .route("/tiles/{name}", get(tile))
        .route("/index.json", get(index))
        .route("/stac/search", post(stac_search))
        .route("/stac/page/{n}", get(stac_page))
        .with_state(s);
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn tile_bytes(dir: &Path, name: &str, col: usize, bright: &[Rect]) -> Vec<u8> {
    let p = dir.join(name);
    make_tile(&p, col, bright);
    std::fs::read(&p).unwrap()
}

const FETCH: &str = "[fetch]\nconcurrency = 3\nretries = 2\nbackoff_ms = 10\ntimeout_s = 0.5\n";

fn pipeline(root: &Path, source: &str) -> std::path::PathBuf {
    let p = root.join("p.toml");
    let text = format!(
        "name = \"faults\"\noutput = \"out\"\n{FETCH}\n[source]\n{source}\n[baseline]\ndate = \"2024-02-01\"\n"
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// Every stored blob is named by its checksum and is a readable raster; nothing is left half done.
fn assert_archive_clean(archive: &Path) {
    let a = Archive::open(archive).unwrap();
    let mut blobs = 0;
    for head in std::fs::read_dir(archive.join("sha256")).unwrap() {
        for f in std::fs::read_dir(head.unwrap().path()).unwrap() {
            let f = f.unwrap().path();
            let name = format!(
                "{}{}",
                f.parent().unwrap().file_name().unwrap().to_str().unwrap(),
                f.file_stem().unwrap().to_str().unwrap()
            );
            assert_eq!(sha256_file(&f).unwrap(), name, "{}", f.display());
            verify_raster(&f).unwrap();
            blobs += 1;
        }
    }
    for e in a.entries().unwrap() {
        assert!(a.blob_path(&e.sha256).is_file(), "catalogue points at a missing blob");
    }
    assert!(blobs > 0);
    assert_eq!(
        std::fs::read_dir(archive.join("tmp")).unwrap().count(),
        0,
        "leftover partial files"
    );
}

#[test]
fn http_index_faults_are_reported_and_the_good_tiles_published() {
    let d = tempfile::tempdir().unwrap();
    let gen = d.path().join("gen");
    std::fs::create_dir_all(&gen).unwrap();
    let mut s = Server::default();
    let mut entries = Vec::new();
    let kinds = [
        "good",
        "flaky",
        "cut",
        "always500",
        "slow",
        "badsum",
        "trunc",
        "notraster",
    ];
    for (i, kind) in kinds.iter().enumerate() {
        let before = tile_bytes(&gen, &format!("{kind}-before.tif"), i * 2, &[]);
        let mut after = tile_bytes(&gen, &format!("{kind}-after.tif"), i * 2, &[(10, 40, 10, 40)]);
        let mut sha = sha256_hex(&after);
        match *kind {
            "badsum" => sha = sha256_hex(b"something else"),
            "trunc" => after.truncate(after.len() / 2),
            "notraster" => after = b"<html>503 maintenance</html>".to_vec(),
            _ => {}
        }
        let bsha = sha256_hex(&before);
        s.files.insert(format!("{kind}-before.tif"), before);
        s.files.insert(format!("{kind}-after.tif"), after);
        entries.push(serde_json::json!({"id": kind, "date": "2024-01-10", "url": format!("tiles/{kind}-before.tif"), "sha256": bsha}));
        let mut e = serde_json::json!({"id": kind, "date": "2024-05-10", "url": format!("/tiles/{kind}-after.tif")});
        if *kind != "trunc" && *kind != "notraster" {
            e["sha256"] = serde_json::json!(sha);
        }
        entries.push(e);
    }
    entries.push(serde_json::json!({"id": "nodate", "url": "tiles/x.tif"}));
    s.index = serde_json::to_vec(&serde_json::json!({"tiles": entries})).unwrap();
    let s = Arc::new(s);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = serve(&rt, s.clone());
    let file = pipeline(d.path(), &format!("kind = \"http_index\"\nurl = \"{base}/index.json\""));
    let p = config::load(&file).unwrap();

    let report = run(&p, &RunOptions::default(), &BoxDetector { delay_ms: 0 }).unwrap();
    assert_eq!(report.exit_code(), 1);
    let failed: HashMap<String, String> = report.failed.iter().cloned().collect();
    let mut names: Vec<&str> = failed.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "always500@2024-05-10",
            "badsum@2024-05-10",
            "nodate",
            "notraster@2024-05-10",
            "slow@2024-05-10",
            "trunc@2024-05-10"
        ]
    );
    assert!(failed["always500@2024-05-10"].contains("500"), "{failed:?}");
    assert!(failed["badsum@2024-05-10"].contains("checksum mismatch"), "{failed:?}");
    assert!(failed["trunc@2024-05-10"].contains("raster"), "{failed:?}");
    assert!(failed["notraster@2024-05-10"].contains("raster"), "{failed:?}");
    assert!(failed["nodate"].contains("date"), "{failed:?}");
    assert!(
        s.resumed.load(Ordering::SeqCst) >= 1,
        "the cut download was resumed with Range"
    );

    let RunResult::Published { dir, .. } = &report.result else {
        panic!("{:?}", report.result)
    };
    let feats = features(&dir.join("patches.geojson"));
    let tiles: Vec<String> = feats
        .iter()
        .map(|f| {
            f["properties"]["chip_after"]
                .as_str()
                .unwrap()
                .split('/')
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(tiles, ["cut@2024-05-10", "flaky@2024-05-10", "good@2024-05-10"]);
    let cut = Archive::open(&p.archive).unwrap().lookup("cut", "2024-05-10").unwrap();
    assert_eq!(
        cut.sha256,
        sha256_hex(&s.files["cut-after.tif"]),
        "resumed file is intact"
    );
    assert_archive_clean(&p.archive);

    // The next night retries only the failed pairs (they fail again, nothing else is redone);
    // a run in which every pair failed publishes nothing.
    let again = run(&p, &RunOptions::default(), &BoxDetector { delay_ms: 0 }).unwrap();
    assert_eq!(again.exit_code(), 1);
    assert!(
        matches!(again.result, RunResult::AllFailed { .. }),
        "{:?}",
        again.result
    );
    assert!(again.failed.iter().all(|(n, _)| !n.starts_with("good")));
    assert_eq!(std::fs::read_dir(p.output.join("runs")).unwrap().count(), 1);
}

fn stac_item(
    id: &str,
    grid: Option<&str>,
    datetime: Option<&str>,
    href: Option<&str>,
    geom: bool,
) -> serde_json::Value {
    let mut props = serde_json::json!({});
    if let Some(g) = grid {
        props["grid:code"] = serde_json::json!(g);
    }
    if let Some(d) = datetime {
        props["datetime"] = serde_json::json!(d);
    }
    let assets = match href {
        Some(h) => {
            serde_json::json!({"image": {"href": h, "type": "image/tiff; application=geotiff; profile=cloud-optimized"}})
        }
        None => serde_json::json!({"thumbnail": {"href": "x.png"}}),
    };
    let geometry = if geom {
        serde_json::json!({"type": "Polygon", "coordinates": [[[108.0, 22.5], [108.1, 22.5], [108.1, 22.6], [108.0, 22.5]]]})
    } else {
        serde_json::Value::Null
    };
    serde_json::json!({"type": "Feature", "stac_version": "1.0.0", "id": id, "properties": props, "geometry": geometry, "assets": assets, "links": []})
}

#[test]
fn stac_items_with_missing_fields_are_reported_by_id() {
    let d = tempfile::tempdir().unwrap();
    let gen = d.path().join("gen");
    std::fs::create_dir_all(&gen).unwrap();
    let mut s = Server::default();
    for (i, g) in ["s1", "s2"].iter().enumerate() {
        s.files.insert(
            format!("{g}-before.tif"),
            tile_bytes(&gen, &format!("{g}b.tif"), i * 2, &[]),
        );
        s.files.insert(
            format!("{g}-after.tif"),
            tile_bytes(&gen, &format!("{g}a.tif"), i * 2, &[(5, 25, 5, 25)]),
        );
    }
    let page1 = serde_json::json!({"type": "FeatureCollection", "features": [
        stac_item("s1-before", Some("s1"), Some("2024-01-10T03:00:00Z"), Some("/tiles/s1-before.tif"), true),
        stac_item("s1-after", Some("s1"), Some("2024-05-10T03:00:00Z"), Some("/tiles/s1-after.tif"), true),
        stac_item("no-datetime", Some("s3"), None, Some("/tiles/s1-after.tif"), true),
        stac_item("no-asset", Some("s3"), Some("2024-05-10T03:00:00Z"), None, true),
    ], "links": [{"rel": "next", "href": "/stac/page/1"}]});
    let page2 = serde_json::json!({"type": "FeatureCollection", "features": [
        stac_item("s2-before", Some("s2"), Some("2024-01-10T03:00:00Z"), Some("/tiles/s2-before.tif"), true),
        stac_item("s2-after", Some("s2"), Some("2024-05-10T03:00:00Z"), Some("/tiles/s2-after.tif"), true),
        stac_item("no-geometry", Some("s4"), Some("2024-05-10T03:00:00Z"), Some("/tiles/s2-after.tif"), false),
        stac_item("no-grid", None, Some("2024-05-10T03:00:00Z"), Some("/tiles/s2-after.tif"), true),
    ], "links": []});
    s.stac_pages = vec![page1, page2];
    let s = Arc::new(s);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = serve(&rt, s.clone());
    let src = format!("kind = \"stac\"\nurl = \"{base}/stac\"\ncollections = [\"demo\"]\nasset = \"image\"");
    let p = config::load(&pipeline(d.path(), &src)).unwrap();
    let report = run(&p, &RunOptions::default(), &BoxDetector { delay_ms: 0 }).unwrap();
    assert_eq!(report.exit_code(), 1);
    let mut names: Vec<&str> = report.failed.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, ["no-asset", "no-datetime", "no-geometry", "no-grid"]);
    let RunResult::Published { dir, .. } = &report.result else {
        panic!()
    };
    assert_eq!(features(&dir.join("patches.geojson")).len(), 2);
    assert_archive_clean(&p.archive);
}

#[test]
fn unreachable_index_cannot_run() {
    let d = tempfile::tempdir().unwrap();
    let file = pipeline(
        d.path(),
        "kind = \"http_index\"\nurl = \"http://127.0.0.1:9/index.json\"",
    );
    let p = config::load(&file).unwrap();
    let e = run(&p, &RunOptions::default(), &BoxDetector { delay_ms: 0 }).unwrap_err();
    assert_eq!(e.exit_code(), 3, "{e}");
}

/// Two pipelines (different outputs) sharing one archive, run at the same moment, over and
/// over: both sources (HTTP with a cut download resumed by Range, and a local folder). Temporary
/// files used to share one name per URL or path, so one run renamed away or truncated the
/// other's file and about half of the pairs had a spurious tile failure.
#[test]
fn two_pipelines_sharing_an_archive_never_collide() {
    let d = tempfile::tempdir().unwrap();
    let gen = d.path().join("gen");
    std::fs::create_dir_all(&gen).unwrap();
    let mut s = Server::default();
    let mut entries = Vec::new();
    for (i, kind) in ["good", "cut", "other"].iter().enumerate() {
        for (date, bright) in [("2024-01-10", vec![]), ("2024-05-10", vec![(10, 40, 10, 40)])] {
            let name = format!("{kind}_{date}.tif");
            make_tile(&gen.join(&name), i * 2, &bright);
            s.files.insert(name.clone(), std::fs::read(gen.join(&name)).unwrap());
            entries.push(serde_json::json!({"id": kind, "date": date, "url": format!("tiles/{name}")}));
        }
    }
    s.index = serde_json::to_vec(&serde_json::json!({"tiles": entries})).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = serve(&rt, Arc::new(s));
    let sources = [
        format!("kind = \"http_index\"\nurl = \"{base}/index.json\""),
        format!("kind = \"local\"\npath = \"{}\"", gen.display()),
    ];
    for round in 0..12 {
        for (k, source) in sources.iter().enumerate() {
            let root = d.path().join(format!("round{round}-{k}"));
            let files: Vec<std::path::PathBuf> = ["a", "b"]
                .iter()
                .map(|name| {
                    let dir = root.join(name);
                    std::fs::create_dir_all(&dir).unwrap();
                    let f = dir.join("p.toml");
                    let text = format!(
                        "name = \"{name}\"\noutput = \"out\"\narchive = \"../shared\"\n{FETCH}\n[source]\n{source}\n\
                         [baseline]\ndate = \"2024-02-01\"\n"
                    );
                    std::fs::write(&f, text).unwrap();
                    f
                })
                .collect();
            let barrier = std::sync::Barrier::new(2);
            let reports: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = files
                    .iter()
                    .map(|f| {
                        let barrier = &barrier;
                        scope.spawn(move || {
                            let p = config::load(f).unwrap();
                            barrier.wait();
                            run(&p, &RunOptions::default(), &BoxDetector { delay_ms: 0 })
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for r in reports {
                let r = r.unwrap_or_else(|e| panic!("round {round} source {k}: {e}"));
                assert!(r.failed.is_empty(), "round {round} source {k}: {:?}", r.failed);
                assert!(matches!(r.result, RunResult::Published { .. }));
            }
            assert_archive_clean(&root.join("shared"));
        }
    }
}

/// Remote images are checked against `[bands]` once fetched: every pair lacking the band is a
/// configuration failure, so nothing is published and the run exits 2 naming the key.
#[test]
fn fetched_images_without_the_configured_band_fail_as_configuration() {
    let d = tempfile::tempdir().unwrap();
    let gen = d.path().join("gen");
    std::fs::create_dir_all(&gen).unwrap();
    let mut s = Server::default();
    let mut entries = Vec::new();
    for (date, bright) in [("2024-01-10", vec![]), ("2024-05-10", vec![(10, 40, 10, 40)])] {
        let name = format!("g_{date}.tif");
        s.files.insert(name.clone(), tile_bytes(&gen, &name, 0, &bright));
        entries.push(serde_json::json!({"id": "g", "date": date, "url": format!("tiles/{name}")}));
    }
    s.index = serde_json::to_vec(&serde_json::json!({"tiles": entries})).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = serve(&rt, Arc::new(s));
    let source =
        format!("kind = \"http_index\"\nurl = \"{base}/index.json\"\n[bands]\nblue = 1\ngreen = 2\nred = 3\nnir = 6");
    let p = config::load(&pipeline(d.path(), &source)).unwrap();
    let report = run(&p, &RunOptions::default(), &BoxDetector { delay_ms: 0 }).unwrap();
    assert_eq!(report.exit_code(), 2, "{:?}", report.failed);
    assert!(
        matches!(report.result, RunResult::AllFailed { .. }),
        "{:?}",
        report.result
    );
    let why = &report.failed[0].1;
    assert!(
        why.contains("bands.nir") && why.contains("line ") && why.contains("4 bands"),
        "{why}"
    );
    assert!(!p.output.join("runs").exists());
}
