//! Field check (实地核查): a GeoPackage of patches to take out on a tablet, and the results
//! brought back.
//!
//! `field-export` writes the chosen patches (a county or a list of ids) with their status and
//! both chips embedded (PNG blobs) into layer `patches`, and an empty point layer
//! `field_results` that the field app (QField, Mergin Maps, any GPKG editor) fills: `patch`
//! (the review id), `verdict` (legal / illegal / other / unchanged, or empty), `note`, `photo`
//! (a JPEG or PNG blob), `photo_name`, `taken_at` (ISO 8601) and the point where it was taken
//! (lon/lat, CGCS2000). The package carries this database's id.
//!
//! `field-import` checks everything first — the package is from this database, every patch
//! exists, every verdict is known, every photo is a JPEG or PNG of at most
//! [`MAX_PHOTO_BYTES`] — then stores all results in one transaction as evidence
//! (`field_evidence`) and one audit row per result (`patch_events`, kind `field_check`); on
//! any error nothing is imported.

use std::path::{Path, PathBuf};

use gdal::spatial_ref::{AxisMappingStrategy, SpatialRef};
use gdal::vector::{Feature, Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType};
use gdal::{Dataset, DriverManager, Metadata};
use rusqlite::params;
use serde_json::json;

use crate::store::{now_text, ReviewError, ReviewResult, Store};

/// Metadata item of the package holding the database id.
pub const DATABASE_ID_ITEM: &str = "LANDWATCH_REVIEW_DATABASE";
/// Largest photo accepted.
pub const MAX_PHOTO_BYTES: usize = 20 * 1024 * 1024;
/// Field verdicts a result may carry (empty: none given).
pub const FIELD_VERDICTS: [&str; 5] = ["", "legal", "illegal", "other", "unchanged"];
/// Longest note accepted.
const MAX_NOTE_CHARS: usize = 2000;

/// Which patches go into a package.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every patch of a county (XZQDM).
    County(String),
    /// These review ids.
    Ids(Vec<i64>),
}

/// This database's id (written into packages).
pub fn database_id(store: &Store) -> ReviewResult<String> {
    Ok(store
        .conn()
        .query_row("SELECT value FROM review_meta WHERE key = 'database_id'", [], |r| {
            r.get(0)
        })?)
}

struct PatchRow {
    id: i64,
    patch_id: String,
    xzqdm: String,
    category: String,
    change_type: String,
    area_m2: f64,
    geometry: String,
    properties: String,
    run_dir: String,
    chips: [String; 2],
    status: String,
}

fn selected(store: &Store, sel: &Selection) -> ReviewResult<Vec<PatchRow>> {
    let sql = "SELECT p.id, p.patch_id, p.xzqdm, p.category, p.change_type, p.area_m2, p.geometry,
                      p.properties, r.run_dir, p.chip_before, p.chip_after,
                      COALESCE((SELECT v.new_status FROM verdicts v WHERE v.patch_id = p.id
                                ORDER BY v.id DESC LIMIT 1), 'unreviewed')
               FROM patches p JOIN runs r ON r.id = p.run_id";
    let map = |r: &rusqlite::Row<'_>| {
        Ok(PatchRow {
            id: r.get(0)?,
            patch_id: r.get(1)?,
            xzqdm: r.get(2)?,
            category: r.get(3)?,
            change_type: r.get(4)?,
            area_m2: r.get(5)?,
            geometry: r.get(6)?,
            properties: r.get(7)?,
            run_dir: r.get(8)?,
            chips: [r.get(9)?, r.get(10)?],
            status: r.get(11)?,
        })
    };
    let rows: Vec<PatchRow> = match sel {
        Selection::County(code) => {
            let mut stmt = store
                .conn()
                .prepare(&format!("{sql} WHERE p.xzqdm = ?1 ORDER BY p.id"))?;
            let rows = stmt.query_map([code], map)?.collect::<Result<_, _>>()?;
            rows
        }
        Selection::Ids(ids) => {
            let mut stmt = store.conn().prepare(&format!("{sql} WHERE p.id = ?1"))?;
            let mut rows = Vec::new();
            for id in ids {
                let row = crate::store::optional(stmt.query_row([id], map))?
                    .ok_or_else(|| ReviewError::NotFound(format!("--ids: no patch with id {id} in this database")))?;
                rows.push(row);
            }
            rows
        }
    };
    if rows.is_empty() {
        return Err(ReviewError::NotFound(format!(
            "no patches match {sel:?}; nothing to export"
        )));
    }
    Ok(rows)
}

fn gdal_err(path: &Path, what: &str, e: gdal::errors::GdalError) -> ReviewError {
    landwatch_core::Error::gdal(path, what, e).into()
}

fn lonlat() -> ReviewResult<SpatialRef> {
    let mut srs = SpatialRef::from_epsg(4490).map_err(|e| gdal_err(Path::new("EPSG:4490"), "CRS", e))?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(srs)
}

/// Writes the field package `out` (`.gpkg`) for `sel`, chips read from run folders inside
/// `data_root`; returns how many patches it holds. Written beside `out` and renamed into place.
pub fn export(store: &Store, data_root: &Path, sel: &Selection, out: &Path) -> ReviewResult<usize> {
    if out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
        != Some("gpkg")
    {
        return Err(ReviewError::BadInput(format!(
            "{}: a field package is a GeoPackage; name it *.gpkg",
            out.display()
        )));
    }
    let data_root = data_root
        .canonicalize()
        .map_err(|e| landwatch_core::Error::input(data_root, format!("data folder not found: {e}")))?;
    let rows = selected(store, sel)?;
    let tmp = tmp_path(out);
    let _ = std::fs::remove_file(&tmp);
    let written = write_package(store, &data_root, &rows, &tmp);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).map_err(|e| landwatch_core::Error::io(out, "cannot move the package into place", e))?;
    Ok(rows.len())
}

fn tmp_path(out: &Path) -> PathBuf {
    // Ends in .gpkg, as GDAL's GeoPackage driver expects.
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp.gpkg");
    out.with_file_name(name)
}

fn write_package(store: &Store, data_root: &Path, rows: &[PatchRow], path: &Path) -> ReviewResult<()> {
    let fail = |what: &'static str| move |e| gdal_err(path, what, e);
    let driver = DriverManager::get_driver_by_name("GPKG").map_err(fail("GPKG driver"))?;
    let mut ds = driver
        .create_vector_only(path)
        .map_err(fail("cannot create the package"))?;
    ds.set_metadata_item(DATABASE_ID_ITEM, &database_id(store)?, "")
        .map_err(fail("cannot write the package's metadata"))?;
    let srs = lonlat()?;
    let mut txn = ds.start_transaction().map_err(fail("cannot start writing"))?;
    let patches = txn
        .create_layer(LayerOptions {
            name: "patches",
            srs: Some(&srs),
            ty: OGRwkbGeometryType::wkbMultiPolygon,
            options: None,
        })
        .map_err(fail("cannot create layer patches"))?;
    let text = OGRFieldType::OFTString;
    patches
        .create_defn_fields(&[
            ("patch", OGRFieldType::OFTInteger64),
            ("patch_id", text),
            ("JCBH", text),
            ("XZQDM", text),
            ("XZQMC", text),
            ("category", text),
            ("change_type", text),
            ("status", text),
            ("area_m2", OGRFieldType::OFTReal),
            ("chip_before", OGRFieldType::OFTBinary),
            ("chip_after", OGRFieldType::OFTBinary),
        ])
        .map_err(fail("cannot create the fields of patches"))?;
    for row in rows {
        write_patch(&patches, row, data_root, path)?;
    }
    let results = txn
        .create_layer(LayerOptions {
            name: "field_results",
            srs: Some(&srs),
            ty: OGRwkbGeometryType::wkbPoint,
            options: None,
        })
        .map_err(fail("cannot create layer field_results"))?;
    results
        .create_defn_fields(&[
            ("patch", OGRFieldType::OFTInteger64),
            ("verdict", text),
            ("note", text),
            ("photo", OGRFieldType::OFTBinary),
            ("photo_name", text),
            ("taken_at", text),
        ])
        .map_err(fail("cannot create the fields of field_results"))?;
    txn.commit().map_err(fail("cannot finish the package"))?;
    Ok(())
}

fn write_patch(layer: &gdal::vector::Layer<'_>, row: &PatchRow, data_root: &Path, path: &Path) -> ReviewResult<()> {
    let fail = |what: &'static str| move |e| gdal_err(path, what, e);
    let props: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&row.properties).unwrap_or_default();
    let prop = |k: &str| props.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let geometry = Geometry::from_geojson(&as_multi_polygon(&row.geometry)).map_err(fail("a patch outline"))?;
    let mut f = Feature::new(layer.defn()).map_err(fail("a feature"))?;
    f.set_geometry(geometry).map_err(fail("a patch outline"))?;
    let strings = [
        ("patch_id", row.patch_id.clone()),
        ("JCBH", prop("JCBH")),
        ("XZQDM", row.xzqdm.clone()),
        ("XZQMC", prop("XZQMC")),
        ("category", row.category.clone()),
        ("change_type", row.change_type.clone()),
        ("status", row.status.clone()),
    ];
    for (name, value) in strings {
        let i = f.field_index(name).map_err(fail(name))?;
        f.set_field_string(i, &value).map_err(fail(name))?;
    }
    let i = f.field_index("patch").map_err(fail("patch"))?;
    f.set_field_integer64(i, row.id).map_err(fail("patch"))?;
    let i = f.field_index("area_m2").map_err(fail("area_m2"))?;
    f.set_field_double(i, row.area_m2).map_err(fail("area_m2"))?;
    for (name, rel) in ["chip_before", "chip_after"].iter().zip(&row.chips) {
        // A chip that cannot be read is left out; the package stays useful without it.
        let chip = crate::chips::resolve_chip(data_root, Path::new(&row.run_dir), rel)
            .ok()
            .and_then(|c| std::fs::read(c.path).ok());
        if let Some(bytes) = chip {
            let i = f.field_index(name).map_err(fail(name))?;
            set_binary(&f, i, &bytes);
        }
    }
    f.create(layer).map_err(fail("cannot write a patch"))?;
    Ok(())
}

/// A GeoJSON Polygon as a MultiPolygon (the layer has one geometry type); others unchanged.
fn as_multi_polygon(geojson: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(geojson) {
        Ok(v) if v["type"] == "Polygon" => {
            json!({"type": "MultiPolygon", "coordinates": [v["coordinates"]]}).to_string()
        }
        _ => geojson.to_string(),
    }
}

/// Sets a binary (BLOB) field; the `gdal` crate has no setter for it.
fn set_binary(f: &Feature<'_>, field: usize, bytes: &[u8]) {
    let (Ok(i), Ok(n)) = (i32::try_from(field), i32::try_from(bytes.len())) else {
        return;
    };
    // SAFETY: the feature handle is valid while `f` lives; OGR copies the bytes.
    unsafe { gdal_sys::OGR_F_SetFieldBinary(f.c_feature(), i, n, bytes.as_ptr() as *const std::ffi::c_void) };
}

/// A binary field's bytes (empty when unset).
fn get_binary(f: &Feature<'_>, field: usize) -> Vec<u8> {
    let Ok(i) = i32::try_from(field) else { return Vec::new() };
    let mut n = 0;
    // SAFETY: the pointer returned is owned by the feature and valid until it changes; copied at once.
    unsafe {
        let p = gdal_sys::OGR_F_GetFieldAsBinary(f.c_feature(), i, &mut n);
        if p.is_null() || n <= 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts(p as *const u8, n as usize).to_vec()
    }
}

/// One field result, checked.
struct FieldResult {
    patch: i64,
    verdict: String,
    note: String,
    photo: Option<(Vec<u8>, &'static str)>,
    photo_name: String,
    taken_at: String,
    position: Option<(f64, f64)>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldImport {
    /// Results stored.
    pub results: usize,
    /// Photos among them.
    pub photos: usize,
}

/// Imports the results of field package `file` into `store` (all or nothing).
pub fn import(store: &mut Store, file: &Path) -> ReviewResult<FieldImport> {
    let bad = |msg: String| ReviewError::BadInput(format!("{}: {msg}", file.display()));
    let ds = Dataset::open(file).map_err(|e| bad(format!("not a readable GeoPackage ({e})")))?;
    let from = ds.metadata_item(DATABASE_ID_ITEM, "").ok_or_else(|| {
        bad("not a landwatch field package (no database id); export one with `landwatch review field-export`".into())
    })?;
    let here = database_id(store)?;
    if from != here {
        return Err(bad(format!(
            "this package was exported from another review database (id {from}; this one is {here}); \
             import it into the database it came from"
        )));
    }
    let results = read_results(&ds, store, file)?;
    let package = file
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    store_results(store, &results, &package)?;
    Ok(FieldImport {
        results: results.len(),
        photos: results.iter().filter(|r| r.photo.is_some()).count(),
    })
}

fn read_results(ds: &Dataset, store: &Store, file: &Path) -> ReviewResult<Vec<FieldResult>> {
    let bad = |fid: u64, msg: String| {
        ReviewError::BadInput(format!("{}: field_results feature {fid}: {msg}", file.display()))
    };
    let mut layer = ds.layer_by_name("field_results").map_err(|_| {
        ReviewError::BadInput(format!(
            "{}: has no layer field_results; is it a field package?",
            file.display()
        ))
    })?;
    let defn_index = |name: &str| layer.defn().field_index(name).ok();
    let idx: Vec<Option<usize>> = ["patch", "verdict", "note", "photo", "photo_name", "taken_at"]
        .iter()
        .map(|n| defn_index(n))
        .collect();
    let Some(patch_i) = idx[0] else {
        return Err(ReviewError::BadInput(format!(
            "{}: field_results has no patch field",
            file.display()
        )));
    };
    let mut out = Vec::new();
    for f in layer.features() {
        let fid = f.fid().unwrap_or(0);
        let text = |i: Option<usize>| i.and_then(|i| f.field_as_string(i).ok().flatten()).unwrap_or_default();
        let patch = f.field_as_integer64(patch_i).ok().flatten().ok_or_else(|| {
            bad(
                fid,
                "field patch is empty; it must hold the review id of the patch".into(),
            )
        })?;
        let exists: bool =
            store
                .conn()
                .query_row("SELECT EXISTS (SELECT 1 FROM patches WHERE id = ?1)", [patch], |r| {
                    r.get(0)
                })?;
        if !exists {
            return Err(bad(fid, format!("patch {patch} is not in this database")));
        }
        let verdict = text(idx[1]).trim().to_string();
        if !FIELD_VERDICTS.contains(&verdict.as_str()) {
            return Err(bad(
                fid,
                format!("verdict {verdict:?} is not one of legal, illegal, other, unchanged (or empty)"),
            ));
        }
        let note = text(idx[2]);
        crate::text::check_multi_line("note", &note).map_err(|e| bad(fid, e.to_string()))?;
        if note.chars().count() > MAX_NOTE_CHARS {
            return Err(bad(fid, format!("the note is longer than {MAX_NOTE_CHARS} characters")));
        }
        let photo_name = text(idx[4]);
        let photo = match idx[3].map(|i| get_binary(&f, i)) {
            Some(bytes) if !bytes.is_empty() => {
                Some(check_photo(bytes).map_err(|m| bad(fid, format!("photo {photo_name:?}: {m}")))?)
            }
            _ => None,
        };
        let position = f.geometry().map(|g| {
            let (x, y, _) = g.get_point(0);
            (x, y)
        });
        out.push(FieldResult {
            patch,
            verdict,
            note,
            photo,
            photo_name,
            taken_at: text(idx[5]),
            position,
        });
    }
    Ok(out)
}

/// The photo's MIME type when it is a JPEG or PNG of acceptable size, else why not.
fn check_photo(bytes: Vec<u8>) -> Result<(Vec<u8>, &'static str), String> {
    if bytes.len() > MAX_PHOTO_BYTES {
        return Err(format!(
            "{} MB is over the limit of {} MB; export it smaller",
            bytes.len() / (1024 * 1024),
            MAX_PHOTO_BYTES / (1024 * 1024)
        ));
    }
    let kind = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) && bytes.ends_with(&[0xFF, 0xD9]) {
        "image/jpeg"
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
            .map_err(|e| format!("not a readable PNG ({e})"))?;
        "image/png"
    } else {
        return Err("not a JPEG or PNG image".into());
    };
    Ok((bytes, kind))
}

fn store_results(store: &mut Store, results: &[FieldResult], package: &str) -> ReviewResult<()> {
    let tx = store.conn_mut().transaction()?;
    let now = now_text();
    for r in results {
        let (photo, kind) = match &r.photo {
            Some((b, k)) => (Some(b.as_slice()), Some(*k)),
            None => (None, None),
        };
        tx.execute(
            "INSERT INTO field_evidence (patch_id, imported_at, package, verdict, note, photo, photo_type,
                                         photo_name, lon, lat, taken_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                r.patch,
                now,
                package,
                r.verdict,
                r.note,
                photo,
                kind,
                r.photo_name,
                r.position.map(|p| p.0),
                r.position.map(|p| p.1),
                r.taken_at
            ],
        )?;
        let evidence = tx.last_insert_rowid();
        let detail = json!({
            "evidence": evidence, "package": package, "verdict": r.verdict, "note": r.note,
            "photo": r.photo.is_some(), "taken_at": r.taken_at,
        });
        tx.execute(
            "INSERT INTO patch_events (patch_id, run_id, at, kind, detail) VALUES (?1, NULL, ?2, 'field_check', ?3)",
            params![r.patch, now, detail.to_string()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// One piece of field evidence as the page shows it (the photo by URL).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Evidence {
    /// Database id.
    pub id: i64,
    /// When it was imported.
    pub imported_at: String,
    /// The package's file name.
    pub package: String,
    /// The field verdict (may be empty).
    pub verdict: String,
    /// The note.
    pub note: String,
    /// Where the photo was taken (lon, lat), if known.
    pub position: Option<(f64, f64)>,
    /// When it was taken, as the package says.
    pub taken_at: String,
    /// The photo's file name.
    pub photo_name: String,
    /// Whether there is a photo.
    pub has_photo: bool,
}

/// The field evidence of `patch`, oldest first.
pub fn evidence_of(store: &Store, patch: i64) -> ReviewResult<Vec<Evidence>> {
    let mut stmt = store.conn().prepare(
        "SELECT id, imported_at, package, verdict, note, lon, lat, taken_at, photo_name, photo IS NOT NULL
         FROM field_evidence WHERE patch_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([patch], |r| {
        let (lon, lat): (Option<f64>, Option<f64>) = (r.get(5)?, r.get(6)?);
        Ok(Evidence {
            id: r.get(0)?,
            imported_at: r.get(1)?,
            package: r.get(2)?,
            verdict: r.get(3)?,
            note: r.get(4)?,
            position: lon.zip(lat),
            taken_at: r.get(7)?,
            photo_name: r.get(8)?,
            has_photo: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The photo of evidence `id` of `patch`: bytes and MIME type.
pub fn photo(store: &Store, patch: i64, id: i64) -> ReviewResult<(Vec<u8>, String)> {
    let found = crate::store::optional(store.conn().query_row(
        "SELECT photo, photo_type FROM field_evidence WHERE id = ?1 AND patch_id = ?2 AND photo IS NOT NULL",
        [id, patch],
        |r| Ok((r.get(0)?, r.get(1)?)),
    ))?;
    found.ok_or_else(|| ReviewError::NotFound(format!("patch {patch} has no field photo {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photos_must_be_jpeg_or_png_and_not_too_large() {
        assert_eq!(
            check_photo(vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0xFF, 0xD9]).unwrap().1,
            "image/jpeg"
        );
        assert!(check_photo(b"GIF89a....".to_vec())
            .unwrap_err()
            .contains("not a JPEG or PNG"));
        assert!(check_photo(b"\x89PNG\r\n\x1a\nbroken".to_vec())
            .unwrap_err()
            .contains("PNG"));
        let mut huge = vec![0xFF, 0xD8, 0xFF];
        huge.resize(MAX_PHOTO_BYTES + 10, 0);
        assert!(check_photo(huge).unwrap_err().contains("over the limit"));
    }
}
