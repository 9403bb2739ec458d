//! GeoPackage and Shapefile export of the verdicts through GDAL/OGR, for agencies whose
//! reporting tools take those formats. Same rows as [`super::export::rows`]: every attribute
//! of the latest run plus the reviewer fields (NYQK/PDJG/BZ, reviewer, reviewed_at).
//!
//! Fields are typed per column: numeric when every value is a number (or missing), text
//! otherwise; nested objects are written as JSON text. Polygons are written as
//! MultiPolygons so each layer has one geometry type. Shapefile field names are cut to 10
//! characters by GDAL and text to 254 bytes; the `.cpg` sidecar says UTF-8.
//! Files are written in a temporary folder beside the target and renamed into place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gdal::spatial_ref::{AxisMappingStrategy, SpatialRef};
use gdal::vector::{Feature, FieldDefn, Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType};
use gdal::DriverManager;
use serde_json::{Map, Value};

use super::export::{rows, ExportRow};
use super::store::{ReviewError, ReviewResult, Store};

/// The OGR formats `landwatch review export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OgrFormat {
    Gpkg,
    Shp,
}

impl OgrFormat {
    fn driver(self) -> &'static str {
        match self {
            OgrFormat::Gpkg => "GPKG",
            OgrFormat::Shp => "ESRI Shapefile",
        }
    }

    /// Files one dataset consists of, by extension (the first is the main file).
    fn extensions(self) -> &'static [&'static str] {
        match self {
            OgrFormat::Gpkg => &["gpkg"],
            OgrFormat::Shp => &["shp", "shx", "dbf", "prj", "cpg"],
        }
    }
}

/// Column type chosen for an attribute.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Real,
    Text,
}

fn column_kinds(rows: &[ExportRow]) -> BTreeMap<String, Kind> {
    let mut kinds = BTreeMap::new();
    for row in rows {
        for (k, v) in &row.properties {
            let this = match v {
                Value::Number(_) | Value::Null => Kind::Real,
                _ => Kind::Text,
            };
            let entry = kinds.entry(k.clone()).or_insert(this);
            if this == Kind::Text {
                *entry = Kind::Text;
            }
        }
    }
    kinds
}

fn gdal_err(out: &Path, what: &str, e: gdal::errors::GdalError) -> ReviewError {
    landwatch_core::Error::gdal(out, what, e).into()
}

/// Writes every patch with its verdict to `out` as GeoPackage or Shapefile; returns the count.
pub fn export_ogr(store: &Store, format: OgrFormat, out: &Path) -> ReviewResult<usize> {
    let rows = rows(store)?;
    let pixel_crs = latest_is_pixel(store)?;
    let stem = out
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ReviewError::BadInput(format!("{}: needs a file name", out.display())))?
        .to_string();
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let io = |e: std::io::Error| ReviewError::from(landwatch_core::Error::io(out, "cannot write export", e));
    let tmp = tempfile::Builder::new()
        .prefix(".lw-export")
        .tempdir_in(&dir)
        .map_err(io)?;
    let main_ext = format.extensions()[0];
    let tmp_main = tmp.path().join(format!("{stem}.{main_ext}"));
    write_dataset(&tmp_main, format, &stem, &rows, pixel_crs)?;
    for ext in format.extensions() {
        let from = tmp.path().join(format!("{stem}.{ext}"));
        if from.exists() {
            std::fs::rename(&from, dir.join(format!("{stem}.{ext}"))).map_err(io)?;
        }
    }
    Ok(rows.len())
}

fn latest_is_pixel(store: &Store) -> ReviewResult<bool> {
    let crs = super::store::optional(store.conn().query_row(
        "SELECT crs FROM runs ORDER BY id DESC LIMIT 1",
        [],
        |r| r.get::<_, String>(0),
    ))?;
    Ok(crs.as_deref() == Some("pixel"))
}

fn write_dataset(
    path: &Path,
    format: OgrFormat,
    layer_name: &str,
    rows: &[ExportRow],
    pixel_crs: bool,
) -> ReviewResult<()> {
    let err = |what: &'static str| move |e| gdal_err(path, what, e);
    let driver = DriverManager::get_driver_by_name(format.driver()).map_err(err("GDAL driver"))?;
    let mut ds = driver.create_vector_only(path).map_err(err("create dataset"))?;
    let srs = if pixel_crs {
        None
    } else {
        let mut srs = SpatialRef::from_epsg(4326).map_err(err("EPSG:4326"))?;
        srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        Some(srs)
    };
    let layer_opts: &[&str] = match format {
        OgrFormat::Shp => &["ENCODING=UTF-8"],
        OgrFormat::Gpkg => &[],
    };
    let kinds = column_kinds(rows);
    {
        let layer = ds
            .create_layer(LayerOptions {
                name: layer_name,
                srs: srs.as_ref(),
                ty: OGRwkbGeometryType::wkbMultiPolygon,
                options: Some(layer_opts),
            })
            .map_err(err("create layer"))?;
        for (name, kind) in &kinds {
            let ty = match kind {
                Kind::Real => OGRFieldType::OFTReal,
                Kind::Text => OGRFieldType::OFTString,
            };
            let field = FieldDefn::new(name, ty).map_err(err("field"))?;
            field.add_to_layer(&layer).map_err(err("add field"))?;
        }
        // Shapefile may rename fields (10 characters); map by position, not by name.
        let order: Vec<&String> = kinds.keys().collect();
        for row in rows {
            write_feature(&layer, &order, &kinds, row).map_err(err("write feature"))?;
        }
    }
    ds.close().map_err(err("close dataset"))?;
    Ok(())
}

fn write_feature<L: LayerAccess>(
    layer: &L,
    order: &[&String],
    kinds: &BTreeMap<String, Kind>,
    row: &ExportRow,
) -> gdal::errors::Result<()> {
    let mut feature = Feature::new(layer.defn())?;
    for (idx, name) in order.iter().enumerate() {
        set_field(&mut feature, idx, kinds[*name], row.properties.get(*name))?;
    }
    feature.set_geometry(Geometry::from_geojson(&as_multipolygon(&row.geometry).to_string())?)?;
    feature.create(layer)
}

fn set_field(feature: &mut Feature<'_>, idx: usize, kind: Kind, v: Option<&Value>) -> gdal::errors::Result<()> {
    match (kind, v) {
        (_, None) | (_, Some(Value::Null)) => Ok(()),
        (Kind::Real, Some(Value::Number(n))) => feature.set_field_double(idx, n.as_f64().unwrap_or(f64::NAN)),
        (_, Some(Value::String(s))) => feature.set_field_string(idx, s),
        (_, Some(other)) => feature.set_field_string(idx, &other.to_string()),
    }
}

/// A Polygon becomes a one-part MultiPolygon; anything else is returned unchanged.
fn as_multipolygon(geometry: &Value) -> Value {
    if geometry.get("type").and_then(Value::as_str) == Some("Polygon") {
        let mut m = Map::new();
        m.insert("type".into(), Value::String("MultiPolygon".into()));
        m.insert(
            "coordinates".into(),
            Value::Array(vec![geometry["coordinates"].clone()]),
        );
        Value::Object(m)
    } else {
        geometry.clone()
    }
}
