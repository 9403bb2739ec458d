//! Importing a detection run (`RUN_DIR/patches.geojson`) into the review database.
//!
//! Decisions must survive reruns, so an imported feature is matched to an existing patch
//! rather than always added:
//! 1. by `track_id` (any track id the patch was ever published under), else
//! 2. by overlap: the existing patch whose polygon has the highest intersection-over-union
//!    with the new one, if that IoU is at least [`MIN_IOU`].
//!
//! A matched patch keeps its row, verdict and history; its geometry, attributes and chip
//! paths are replaced by the new run's. Each existing patch is matched at most once per
//! import. The whole import is one transaction: it lands completely or not at all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use geo::{Area, BooleanOps, BoundingRect};
use rusqlite::{params, Transaction};
use serde_json::{Map, Value};

use super::store::{now_text, optional, ReviewError, ReviewResult, Store};

/// Smallest intersection-over-union for two polygons to count as the same patch.
pub const MIN_IOU: f64 = 0.5;

/// What an import did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    pub run_id: i64,
    pub features: usize,
    pub new: usize,
    pub matched_by_track: usize,
    pub matched_by_overlap: usize,
    /// Features whose chip paths are absolute or leave the run folder; they are stored
    /// but the server will refuse to serve those chips.
    pub unsafe_chip_paths: usize,
}

/// One feature of `patches.geojson`, checked and ready to store.
struct Incoming {
    patch_id: String,
    track_id: String,
    geometry_json: String,
    shape: geo::MultiPolygon<f64>,
    bbox: [f64; 4],
    properties: Map<String, Value>,
}

/// Imports `run_dir` into the store. When `data_root` is given, the run folder must lie
/// inside it (the server only serves chips from under its data folder).
pub fn import_run(store: &mut Store, run_dir: &Path, data_root: Option<&Path>) -> ReviewResult<ImportReport> {
    let run_dir = canonical_run_dir(run_dir, data_root)?;
    let geojson_path = run_dir.join("patches.geojson");
    let (crs, features) = read_features(&geojson_path)?;
    let unsafe_chip_paths = features.iter().filter(|f| !chip_paths_look_safe(&f.properties)).count();
    let tx = store.conn_mut().transaction()?;
    let run_id = insert_run(&tx, &run_dir, &crs)?;
    let mut report = ImportReport {
        run_id,
        features: features.len(),
        new: 0,
        matched_by_track: 0,
        matched_by_overlap: 0,
        unsafe_chip_paths,
    };
    let mut claimed = BTreeSet::new();
    for f in &features {
        let existing = match match_by_track(&tx, &f.track_id, &claimed)? {
            Some(id) => {
                report.matched_by_track += 1;
                Some(id)
            }
            None => {
                let hit = match_by_overlap(&tx, f, &claimed)?;
                report.matched_by_overlap += usize::from(hit.is_some());
                hit
            }
        };
        let id = match existing {
            Some(id) => {
                update_patch(&tx, id, run_id, f)?;
                id
            }
            None => {
                report.new += 1;
                insert_patch(&tx, run_id, f)?
            }
        };
        tx.execute(
            "INSERT OR IGNORE INTO patch_tracks (track_id, patch_id) VALUES (?1, ?2)",
            params![f.track_id, id],
        )?;
        claimed.insert(id);
    }
    tx.execute(
        "UPDATE runs SET n_new = ?2, n_by_track = ?3, n_by_overlap = ?4, n_features = ?5
         WHERE id = ?1",
        params![
            run_id,
            report.new as i64,
            report.matched_by_track as i64,
            report.matched_by_overlap as i64,
            report.features as i64
        ],
    )?;
    tx.commit()?;
    Ok(report)
}

fn canonical_run_dir(run_dir: &Path, data_root: Option<&Path>) -> ReviewResult<PathBuf> {
    let canon = run_dir
        .canonicalize()
        .map_err(|e| crate::Error::input(run_dir, format!("run folder not found or unreadable: {e}")))?;
    if let Some(root) = data_root {
        let root = root
            .canonicalize()
            .map_err(|e| crate::Error::input(root, format!("data folder not found: {e}")))?;
        if !canon.starts_with(&root) {
            return Err(crate::Error::input(
                run_dir,
                format!(
                    "run folder is outside the data folder {}; the server could not serve its chips",
                    root.display()
                ),
            )
            .into());
        }
    }
    Ok(canon)
}

/// True when both chip paths are relative and never step up (`..`). The server checks
/// again, on the real file system, before serving anything.
pub fn chip_paths_look_safe(props: &Map<String, Value>) -> bool {
    ["chip_before", "chip_after"].iter().all(|k| {
        let p = props.get(*k).and_then(Value::as_str).unwrap_or("");
        Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    })
}

fn bad(path: &Path, msg: String) -> ReviewError {
    crate::Error::input(path, msg).into()
}

/// Reads and checks every feature of a `patches.geojson`; returns the CRS marker and the
/// features sorted by patch id.
fn read_features(path: &Path) -> ReviewResult<(String, Vec<Incoming>)> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, "cannot read patches.geojson", e))?;
    let root: Value = serde_json::from_str(&text).map_err(|e| bad(path, format!("not valid JSON: {e}")))?;
    if root.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        return Err(bad(path, "expected a GeoJSON FeatureCollection".into()));
    }
    let crs = match root.get("landwatch:crs").and_then(Value::as_str) {
        Some("pixel") => "pixel",
        _ => "lonlat",
    };
    let features = root
        .get("features")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(path, "FeatureCollection has no features array".into()))?;
    let mut out = Vec::with_capacity(features.len());
    let mut seen_tracks = BTreeSet::new();
    for (i, f) in features.iter().enumerate() {
        let inc = parse_feature(f).map_err(|msg| bad(path, format!("feature {i}: {msg}")))?;
        if !seen_tracks.insert(inc.track_id.clone()) {
            return Err(bad(
                path,
                format!("feature {i}: track_id {:?} appears twice", inc.track_id),
            ));
        }
        out.push(inc);
    }
    out.sort_by(|a, b| a.patch_id.cmp(&b.patch_id));
    Ok((crs.to_string(), out))
}

fn parse_feature(f: &Value) -> Result<Incoming, String> {
    let properties = f
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .ok_or("no properties object")?;
    let patch_id = properties
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("properties.id must be a non-empty string")?
        .to_string();
    let track_id = properties
        .get("track_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(&patch_id)
        .to_string();
    let geometry = f.get("geometry").cloned().ok_or("no geometry")?;
    let shape = to_multipolygon(&geometry)?;
    let rect = shape.bounding_rect().ok_or("empty geometry")?;
    let bbox = [rect.min().x, rect.min().y, rect.max().x, rect.max().y];
    if bbox.iter().any(|v| !v.is_finite()) {
        return Err("geometry has non-finite coordinates".into());
    }
    Ok(Incoming {
        patch_id,
        track_id,
        geometry_json: geometry.to_string(),
        shape,
        bbox,
        properties,
    })
}

/// Converts a GeoJSON Polygon or MultiPolygon into a `geo` MultiPolygon.
fn to_multipolygon(geometry: &Value) -> Result<geo::MultiPolygon<f64>, String> {
    let parsed: geojson::Geometry =
        serde_json::from_value(geometry.clone()).map_err(|e| format!("invalid geometry: {e}"))?;
    let g: geo::Geometry<f64> = geo::Geometry::try_from(&parsed.value).map_err(|e| format!("invalid geometry: {e}"))?;
    match g {
        geo::Geometry::Polygon(p) => Ok(geo::MultiPolygon(vec![p])),
        geo::Geometry::MultiPolygon(m) => Ok(m),
        _ => Err("geometry must be a Polygon or MultiPolygon".into()),
    }
}

fn insert_run(tx: &Transaction<'_>, run_dir: &Path, crs: &str) -> ReviewResult<i64> {
    tx.execute(
        "INSERT INTO runs (run_dir, crs, imported_at, n_features, n_new, n_by_track, n_by_overlap)
         VALUES (?1, ?2, ?3, 0, 0, 0, 0)",
        params![run_dir.to_string_lossy(), crs, now_text()],
    )?;
    Ok(tx.last_insert_rowid())
}

fn match_by_track(tx: &Transaction<'_>, track_id: &str, claimed: &BTreeSet<i64>) -> ReviewResult<Option<i64>> {
    let id: Option<i64> = optional(tx.query_row(
        "SELECT patch_id FROM patch_tracks WHERE track_id = ?1",
        [track_id],
        |r| r.get(0),
    ))?;
    Ok(id.filter(|id| !claimed.contains(id)))
}

/// The unclaimed existing patch with the highest polygon IoU (at least [`MIN_IOU`]).
fn match_by_overlap(tx: &Transaction<'_>, f: &Incoming, claimed: &BTreeSet<i64>) -> ReviewResult<Option<i64>> {
    let [minx, miny, maxx, maxy] = f.bbox;
    let mut stmt = tx.prepare(
        "SELECT id, geometry FROM patches
         WHERE maxx >= ?1 AND minx <= ?3 AND maxy >= ?2 AND miny <= ?4 ORDER BY id",
    )?;
    let candidates = stmt
        .query_map(params![minx, miny, maxx, maxy], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut best: Option<(f64, i64)> = None;
    for (id, geometry) in candidates {
        if claimed.contains(&id) {
            continue;
        }
        let Ok(value) = serde_json::from_str::<Value>(&geometry) else {
            continue;
        };
        let Ok(old) = to_multipolygon(&value) else {
            continue;
        };
        let score = iou(&old, &f.shape);
        if score >= MIN_IOU && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, id));
        }
    }
    Ok(best.map(|(_, id)| id))
}

/// Intersection over union of two polygon sets (0 when both are empty).
pub fn iou(a: &geo::MultiPolygon<f64>, b: &geo::MultiPolygon<f64>) -> f64 {
    let inter = a.intersection(b).unsigned_area();
    let union = a.unsigned_area() + b.unsigned_area() - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// The column values a patch row is filtered on, from its properties.
struct Columns {
    xzqdm: String,
    category: String,
    change_type: String,
    after_date: String,
    area_m2: f64,
    chip_before: String,
    chip_after: String,
}

fn columns(props: &Map<String, Value>) -> Columns {
    let text = |k: &str| props.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Columns {
        xzqdm: text("XZQDM"),
        category: text("category"),
        change_type: text("change_type"),
        after_date: text("after_date"),
        area_m2: props.get("area_m2").and_then(Value::as_f64).unwrap_or(0.0),
        chip_before: text("chip_before"),
        chip_after: text("chip_after"),
    }
}

fn insert_patch(tx: &Transaction<'_>, run_id: i64, f: &Incoming) -> ReviewResult<i64> {
    let c = columns(&f.properties);
    let [minx, miny, maxx, maxy] = f.bbox;
    tx.execute(
        "INSERT INTO patches (track_id, patch_id, first_run_id, run_id, geometry,
             minx, miny, maxx, maxy, properties, xzqdm, category, change_type, after_date,
             area_m2, chip_before, chip_after, updated_at)
         VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        params![
            f.track_id,
            f.patch_id,
            run_id,
            f.geometry_json,
            minx,
            miny,
            maxx,
            maxy,
            Value::Object(f.properties.clone()).to_string(),
            c.xzqdm,
            c.category,
            c.change_type,
            c.after_date,
            c.area_m2,
            c.chip_before,
            c.chip_after,
            now_text()
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

fn update_patch(tx: &Transaction<'_>, id: i64, run_id: i64, f: &Incoming) -> ReviewResult<()> {
    let c = columns(&f.properties);
    let [minx, miny, maxx, maxy] = f.bbox;
    tx.execute(
        "UPDATE patches SET track_id = ?2, patch_id = ?3, run_id = ?4, geometry = ?5,
             minx = ?6, miny = ?7, maxx = ?8, maxy = ?9, properties = ?10, xzqdm = ?11,
             category = ?12, change_type = ?13, after_date = ?14, area_m2 = ?15,
             chip_before = ?16, chip_after = ?17, updated_at = ?18
         WHERE id = ?1",
        params![
            id,
            f.track_id,
            f.patch_id,
            run_id,
            f.geometry_json,
            minx,
            miny,
            maxx,
            maxy,
            Value::Object(f.properties.clone()).to_string(),
            c.xzqdm,
            c.category,
            c.change_type,
            c.after_date,
            c.area_m2,
            c.chip_before,
            c.chip_after,
            now_text()
        ],
    )?;
    Ok(())
}

/// The run folders imported so far, by run id.
pub fn run_dirs(store: &Store) -> ReviewResult<BTreeMap<i64, PathBuf>> {
    let mut stmt = store.conn().prepare("SELECT id, run_dir FROM runs ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows.into_iter().map(|(id, d)| (id, PathBuf::from(d))).collect())
}
