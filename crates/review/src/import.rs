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
//!
//! A verdict is about an outline. When a matched patch is decided and its new outline
//! differs materially from the one its verdict was made on — IoU below
//! [`REREVIEW_MIN_IOU`] or area changed by more than [`REREVIEW_MAX_AREA_CHANGE`] — it is
//! flagged `needs_rereview` and an `outline_changed` audit row (IoU, area change, run) is
//! appended to `patch_events`; the verdict and its history stay. The flag stays until
//! somebody decides the patch again (any reviewer may) or an admin reopens it. Comparing
//! with the verdict's outline rather than the previous run's means slow drift over many
//! runs is caught too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use geo::{Area, BooleanOps, BoundingRect};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, AABB};
use rusqlite::{params, Transaction};
use serde_json::{Map, Value};

use super::store::{now_text, optional, ReviewError, ReviewResult, Store};

/// Smallest intersection-over-union for two polygons to count as the same patch.
pub const MIN_IOU: f64 = 0.5;
/// A decided patch whose new outline has a lower IoU with its verdict's outline is
/// flagged for re-review.
pub const REREVIEW_MIN_IOU: f64 = 0.9;
/// A decided patch whose area grew or shrank by more than this fraction of its verdict's
/// outline's area is flagged for re-review.
pub const REREVIEW_MAX_AREA_CHANGE: f64 = 0.10;

/// What an import did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    /// The run's id in the database.
    pub run_id: i64,
    /// Patches in the run's `patches.geojson`.
    pub features: usize,
    /// Patches seen for the first time.
    pub new: usize,
    /// Patches matched to a known one by `track_id`.
    pub matched_by_track: usize,
    /// Patches matched to a known one by overlap (IoU).
    pub matched_by_overlap: usize,
    /// Features whose chip paths are absolute or leave the run folder; they are stored
    /// but the server will refuse to serve those chips.
    pub unsafe_chip_paths: usize,
    /// Decided patches newly flagged for re-review because their outline changed.
    pub flagged_for_rereview: usize,
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
        flagged_for_rereview: 0,
    };
    let existing_boxes = BboxIndex::load(&tx)?;
    let mut claimed = BTreeSet::new();
    for f in &features {
        let existing = match match_by_track(&tx, &f.track_id, &claimed)? {
            Some(id) => {
                report.matched_by_track += 1;
                Some(id)
            }
            None => {
                let hit = match_by_overlap(&tx, &existing_boxes, f, &claimed)?;
                report.matched_by_overlap += usize::from(hit.is_some());
                hit
            }
        };
        let id = match existing {
            Some(id) => {
                if flag_if_outline_changed(&tx, id, run_id, f)? {
                    report.flagged_for_rereview += 1;
                }
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
        .map_err(|e| landwatch_core::Error::input(run_dir, format!("run folder not found or unreadable: {e}")))?;
    if let Some(root) = data_root {
        let root = root
            .canonicalize()
            .map_err(|e| landwatch_core::Error::input(root, format!("data folder not found: {e}")))?;
        if !canon.starts_with(&root) {
            return Err(landwatch_core::Error::input(
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
    landwatch_core::Error::input(path, msg).into()
}

/// Reads and checks every feature of a `patches.geojson`; returns the CRS marker and the
/// features sorted by patch id.
fn read_features(path: &Path) -> ReviewResult<(String, Vec<Incoming>)> {
    let text =
        std::fs::read_to_string(path).map_err(|e| landwatch_core::Error::io(path, "cannot read patches.geojson", e))?;
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

/// The bounding boxes of the patches stored before an import, so that finding the overlap
/// candidates of a feature does not scan half the table each time (with tens of thousands
/// of patches that made an import take minutes). Patches added by the import itself need
/// not be in it: they are claimed, so never candidates.
struct BboxIndex(RTree<GeomWithData<Rectangle<[f64; 2]>, i64>>);

impl BboxIndex {
    fn load(tx: &Transaction<'_>) -> ReviewResult<BboxIndex> {
        let mut stmt = tx.prepare("SELECT id, minx, miny, maxx, maxy FROM patches")?;
        let boxes = stmt
            .query_map([], |r| {
                let rect = Rectangle::from_corners([r.get(1)?, r.get(2)?], [r.get(3)?, r.get(4)?]);
                Ok(GeomWithData::new(rect, r.get::<_, i64>(0)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(BboxIndex(RTree::bulk_load(boxes)))
    }

    /// Ids of the stored patches whose bounding box meets `bbox` (edges included), ascending.
    fn candidates(&self, [minx, miny, maxx, maxy]: [f64; 4]) -> Vec<i64> {
        let envelope = AABB::from_corners([minx, miny], [maxx, maxy]);
        let mut ids: Vec<i64> = self
            .0
            .locate_in_envelope_intersecting(&envelope)
            .map(|b| b.data)
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// The unclaimed existing patch with the highest polygon IoU (at least [`MIN_IOU`]); on a
/// tie the lowest id.
fn match_by_overlap(
    tx: &Transaction<'_>,
    boxes: &BboxIndex,
    f: &Incoming,
    claimed: &BTreeSet<i64>,
) -> ReviewResult<Option<i64>> {
    let mut geometry_of = tx.prepare_cached("SELECT geometry FROM patches WHERE id = ?1")?;
    let mut best: Option<(f64, i64)> = None;
    for id in boxes.candidates(f.bbox) {
        if claimed.contains(&id) {
            continue;
        }
        let geometry: String = geometry_of.query_row([id], |r| r.get(0))?;
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

/// How an outline changed since a verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlineChange {
    /// Intersection over union of the verdict's outline and the new one.
    pub iou: f64,
    /// (new area − old area) / old area.
    pub area_change: f64,
}

impl OutlineChange {
    /// Measures the change from `old` to `new`.
    pub fn between(old: &geo::MultiPolygon<f64>, new: &geo::MultiPolygon<f64>) -> OutlineChange {
        let old_area = old.unsigned_area();
        let area_change = if old_area > 0.0 {
            (new.unsigned_area() - old_area) / old_area
        } else {
            f64::INFINITY
        };
        OutlineChange {
            iou: iou(old, new),
            area_change,
        }
    }

    /// Whether the change is large enough that the verdict may no longer fit.
    pub fn is_material(&self) -> bool {
        self.iou < REREVIEW_MIN_IOU || self.area_change.abs() > REREVIEW_MAX_AREA_CHANGE
    }
}

/// The outline (GeoJSON text) patch `id`'s current verdict was made on, or `None` when the
/// patch is undecided. Verdicts recorded before outlines were kept with them fall back to
/// the patch's stored outline (the one being replaced).
fn decided_outline(tx: &Transaction<'_>, id: i64) -> ReviewResult<Option<String>> {
    let latest: Option<(String, Option<String>)> = optional(tx.query_row(
        "SELECT new_status, geometry FROM verdicts WHERE patch_id = ?1 ORDER BY id DESC LIMIT 1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    ))?;
    match latest {
        None => Ok(None),
        Some((status, _)) if status == "unreviewed" => Ok(None),
        Some((_, Some(geometry))) => Ok(Some(geometry)),
        Some((_, None)) => Ok(Some(tx.query_row(
            "SELECT geometry FROM patches WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?)),
    }
}

/// Flags decided patch `id` for re-review, with an audit row, when the incoming outline
/// differs materially from its verdict's. Returns whether it was newly flagged; a patch
/// already flagged stays so without another row.
fn flag_if_outline_changed(tx: &Transaction<'_>, id: i64, run_id: i64, f: &Incoming) -> ReviewResult<bool> {
    let flagged: bool = tx.query_row("SELECT needs_rereview <> 0 FROM patches WHERE id = ?1", [id], |r| {
        r.get(0)
    })?;
    if flagged {
        return Ok(false);
    }
    let Some(outline) = decided_outline(tx, id)? else {
        return Ok(false);
    };
    let old = serde_json::from_str::<Value>(&outline)
        .map_err(|e| e.to_string())
        .and_then(|v| to_multipolygon(&v))
        .map_err(|e| ReviewError::BadInput(format!("stored outline of patch {id}: {e}")))?;
    let change = OutlineChange::between(&old, &f.shape);
    if !change.is_material() {
        return Ok(false);
    }
    tx.execute("UPDATE patches SET needs_rereview = 1 WHERE id = ?1", [id])?;
    let detail = serde_json::json!({
        "iou": round4(change.iou),
        "area_change": if change.area_change.is_finite() { json_number(round4(change.area_change)) } else { Value::Null },
        "min_iou": REREVIEW_MIN_IOU,
        "max_area_change": REREVIEW_MAX_AREA_CHANGE,
    });
    tx.execute(
        "INSERT INTO patch_events (patch_id, run_id, at, kind, detail) VALUES (?1, ?2, ?3, 'outline_changed', ?4)",
        params![id, run_id, now_text(), detail.to_string()],
    )?;
    Ok(true)
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn json_number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: f64, y: f64, side: f64) -> geo::MultiPolygon<f64> {
        let ring = vec![(x, y), (x + side, y), (x + side, y + side), (x, y + side), (x, y)];
        geo::MultiPolygon(vec![geo::Polygon::new(geo::LineString::from(ring), vec![])])
    }

    #[test]
    fn outline_changes_are_material_below_iou_0_9_or_beyond_10_percent_area() {
        let old = square(0.0, 0.0, 10.0);
        let same = OutlineChange::between(&old, &square(0.0, 0.0, 10.0));
        assert!((same.iou - 1.0).abs() < 1e-9 && same.area_change.abs() < 1e-9);
        assert!(!same.is_material());
        // Shifted by 5 %: IoU 0.905, same area — not material.
        let shifted = OutlineChange::between(&old, &square(0.5, 0.0, 10.0));
        assert!(shifted.iou > 0.9 && !shifted.is_material(), "{shifted:?}");
        // Shifted by 6 %: IoU 0.887 — material although the area is unchanged.
        let moved = OutlineChange::between(&old, &square(0.6, 0.0, 10.0));
        assert!(moved.iou < 0.9 && moved.is_material(), "{moved:?}");
        // Grown by 10.25 % around the old outline: IoU 0.907 passes, the area rule flags it.
        let grown = OutlineChange::between(&old, &square(0.0, 0.0, 10.5));
        assert!(
            grown.iou > 0.9 && grown.area_change > 0.1 && grown.is_material(),
            "{grown:?}"
        );
        // Shrunk by 9.75 %: IoU 0.9025, area within 10 % — not material.
        let shrunk = OutlineChange::between(&old, &square(0.0, 0.0, 9.5));
        assert!(!shrunk.is_material(), "{shrunk:?}");
        // From nothing to something is always material.
        assert!(OutlineChange::between(&geo::MultiPolygon(vec![]), &old).is_material());
    }
}
