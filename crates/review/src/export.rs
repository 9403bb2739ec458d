//! Exporting verdicts for reporting upward: every patch with its latest geometry and
//! attributes, the reviewer fields filled and who decided when.
//!
//! Reviewer fields (the schema's 内业情况 / 判定结果 / 备注):
//! * `PDJG` = 合法 / 违法 / 其他 (empty while undecided);
//! * `NYQK` = the proof type (合法: 农转用/增减挂钩/其他) or subtype (其他: 设施农用地/…/实地未变化);
//! * `BZ`   = the reviewer's note.
//!
//! Extra fields: `review_status` (unreviewed/legal/illegal/other), `reviewer`, `reviewed_at`.
//! Output is sorted by patch id and written atomically (temp file + rename). GeoPackage and
//! Shapefile go through GDAL in [`super::export_ogr`].

use std::path::Path;

use serde_json::{Map, Value};

use super::store::{ReviewError, ReviewResult, Store};
use super::verdicts::Status;

/// File formats `landwatch review export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// GeoJSON (RFC 7946).
    Geojson,
    /// CSV, one row per patch (its centre point, not the outline).
    Csv,
    /// GeoPackage, through GDAL.
    Gpkg,
    /// ESRI Shapefile (.shp + sidecars), through GDAL.
    Shp,
}

/// One patch with its current verdict, as exported.
pub struct ExportRow {
    /// The outline as GeoJSON.
    pub geometry: Value,
    /// The run's properties with the reviewer fields.
    pub properties: Map<String, Value>,
}

/// Reads every patch with its reviewer fields filled, sorted by patch id.
pub fn rows(store: &Store) -> ReviewResult<Vec<ExportRow>> {
    let mut stmt = store.conn().prepare(
        "SELECT p.id, p.track_id, p.geometry, p.properties,
                COALESCE(c.new_status, 'unreviewed'), COALESCE(c.subtype, ''),
                COALESCE(c.note, ''), COALESCE(u.name, ''), COALESCE(c.at, '')
         FROM patches p
         LEFT JOIN current_verdicts c ON c.patch_id = p.id
         LEFT JOIN users u ON u.id = c.user_id
         ORDER BY p.patch_id, p.id",
    )?;
    let raw = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(raw.len());
    for (id, track_id, geometry, props, status, subtype, note, user, at) in raw {
        let status = Status::parse(&status)?;
        let geometry: Value = serde_json::from_str(&geometry)
            .map_err(|e| ReviewError::BadInput(format!("patch {id}: stored geometry: {e}")))?;
        let mut properties: Map<String, Value> = serde_json::from_str(&props)
            .map_err(|e| ReviewError::BadInput(format!("patch {id}: stored properties: {e}")))?;
        let decided = status != Status::Unreviewed;
        let mut set = |k: &str, v: String| {
            properties.insert(k.to_string(), Value::String(v));
        };
        set("track_id", track_id);
        set("PDJG", status.pdjg().to_string());
        set("NYQK", if decided { subtype } else { String::new() });
        set("BZ", if decided { note } else { String::new() });
        set("review_status", status.as_str().to_string());
        set("reviewer", if decided { user } else { String::new() });
        set("reviewed_at", if decided { at } else { String::new() });
        out.push(ExportRow { geometry, properties });
    }
    Ok(out)
}

/// The CRS marker of the latest imported run (`lonlat` or `pixel`).
fn latest_crs(store: &Store) -> ReviewResult<String> {
    let crs = super::store::optional(store.conn().query_row(
        "SELECT crs FROM runs ORDER BY id DESC LIMIT 1",
        [],
        |r| r.get::<_, String>(0),
    ))?;
    Ok(crs.unwrap_or_else(|| "lonlat".into()))
}

/// All patches as a GeoJSON FeatureCollection.
pub fn to_geojson(store: &Store) -> ReviewResult<String> {
    let features: Vec<Value> = rows(store)?
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "type": "Feature",
                "geometry": r.geometry,
                "properties": Value::Object(r.properties),
            })
        })
        .collect();
    let mut fc = serde_json::json!({ "type": "FeatureCollection", "features": features });
    if latest_crs(store)? == "pixel" {
        fc["landwatch:crs"] = Value::String("pixel".into());
    }
    serde_json::to_string_pretty(&fc).map_err(|e| ReviewError::BadInput(format!("cannot encode GeoJSON: {e}")))
}

/// Columns of the CSV export, in order.
pub const CSV_COLUMNS: [&str; 25] = [
    "id",
    "track_id",
    "JCBH",
    "XZQDM",
    "XZQMC",
    "TBLX",
    "category",
    "change_type",
    "confidence",
    "JCMJ",
    "JCMJ_MU",
    "GDMJ",
    "YJJBNTMJ",
    "SFYN",
    "SFHX",
    "DLBM",
    "DLMC",
    "ZXX",
    "ZXY",
    "QSX",
    "HSX",
    "NYQK",
    "PDJG",
    "BZ",
    "reviewer",
];

/// All patches as CSV (UTF-8 with BOM, so spreadsheet programs show the Chinese text).
pub fn to_csv(store: &Store) -> ReviewResult<String> {
    let mut out = String::from("\u{feff}");
    let mut header: Vec<&str> = CSV_COLUMNS.to_vec();
    header.push("reviewed_at");
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for row in rows(store)? {
        let cells: Vec<String> = header.iter().map(|k| csv_cell(row.properties.get(*k))).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    Ok(out)
}

/// One CSV cell: numbers as is; text quoted when needed, and text starting with a formula
/// character prefixed with `'` so a spreadsheet does not execute a reviewer's note.
fn csv_cell(v: Option<&Value>) -> String {
    let text = match v {
        None | Some(Value::Null) => return String::new(),
        Some(Value::Number(n)) => return n.to_string(),
        Some(Value::Bool(b)) => return b.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Writes the export to `out` atomically; returns the number of patches written.
pub fn export(store: &Store, format: ExportFormat, out: &Path) -> ReviewResult<usize> {
    let n = store
        .conn()
        .query_row("SELECT COUNT(*) FROM patches", [], |r| r.get::<_, i64>(0))?;
    let text = match format {
        ExportFormat::Geojson => to_geojson(store)?,
        ExportFormat::Csv => to_csv(store)?,
        ExportFormat::Gpkg => return super::export_ogr::export_ogr(store, super::export_ogr::OgrFormat::Gpkg, out),
        ExportFormat::Shp => return super::export_ogr::export_ogr(store, super::export_ogr::OgrFormat::Shp, out),
    };
    write_atomically(out, text.as_bytes())?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Writes `bytes` to `out` atomically (temp file, fsync, rename, parent folder synced).
pub fn write_atomically(out: &Path, bytes: &[u8]) -> ReviewResult<()> {
    landwatch_core::io::atomic::write_file(out, bytes).map_err(ReviewError::from)
}
