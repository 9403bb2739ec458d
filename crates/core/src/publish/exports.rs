//! GIS exports for county desks: a GeoPackage and a Shapefile of the patches, with the same
//! properties as `patches.geojson` (see `docs/fields.md`).
//!
//! **CRS.** Both are written in CGCS2000. When the image grid is already a projected CGCS2000 CRS
//! (the 3°/6° Gauss-Krüger zones EPSG:4491–4554 that cadastral and 三调 data use) the outlines
//! stay in it: no resampling of coordinates, and areas measured on the file match `JCMJ`. Any
//! other grid (UTM, WGS 84, …) is reprojected to geographic CGCS2000, EPSG:4490 (lon/lat).
//! Images without georeferencing are exported in pixel coordinates without a CRS (a warning says so).
//!
//! **Shapefile.** dBase limits field names to 10 ASCII characters, so the Shapefile carries the
//! desk fields (all ≤ 10 characters) and short names for landwatch's own fields (`LW_ID`,
//! `TRACK_ID`, `CHG_TYPE`, `BHLX`, `ZXD`, `BHZXD`, `MODEL`, `CHIP_Q`, `CHIP_H`); the snake_case area and
//! date fields duplicate `JCMJ`, `JCMJ_MU`, `GDMJ`, `YJJBNTMJ`, `QSX`, `HSX` and are left out, as
//! is the nested `features` object. The DBF text is GBK (CP936) by default — what Chinese desktop
//! GIS expects — or UTF-8, and a `.cpg` file always names it (`936` or `UTF-8`), so GDAL, QGIS
//! and ArcGIS read the Chinese text intact.

use crate::patches::Patch;
use crate::{Error, Result};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{
    Feature, FieldDefn, Geometry, Layer, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType, ToGdal,
};
use gdal::DriverManager;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Text encoding of the Shapefile's DBF.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DbfEncoding {
    /// GBK / CP936: what most Chinese desktop GIS installations expect.
    #[default]
    Gbk,
    /// UTF-8.
    #[value(name = "utf-8", alias = "utf8")]
    Utf8,
}

impl DbfEncoding {
    fn gdal_name(self) -> &'static str {
        match self {
            DbfEncoding::Gbk => "CP936",
            DbfEncoding::Utf8 => "UTF-8",
        }
    }

    /// The `.cpg` content: the code page number for GBK (read by ArcGIS and GDAL alike).
    fn cpg(self) -> &'static str {
        match self {
            DbfEncoding::Gbk => "936",
            DbfEncoding::Utf8 => "UTF-8",
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    /// Text of at most this many bytes in the DBF.
    Text(i32),
    /// Real with width and decimals.
    Real(i32, i32),
}

/// One exported field: the GeoJSON property it comes from, its Shapefile name (`None`: GPKG only).
struct FieldSpec {
    key: &'static str,
    shp: Option<&'static str>,
    kind: Kind,
}

const fn f(key: &'static str, shp: Option<&'static str>, kind: Kind) -> FieldSpec {
    FieldSpec { key, shp, kind }
}

/// Every exported field, in output order.
const FIELDS: &[FieldSpec] = &[
    f("id", Some("LW_ID"), Kind::Text(12)),
    f("track_id", Some("TRACK_ID"), Kind::Text(24)),
    f("change_type", Some("CHG_TYPE"), Kind::Text(16)),
    f("category", Some("BHLX"), Kind::Text(40)),
    f("confidence", Some("ZXD"), Kind::Real(6, 3)),
    f("change_confidence", Some("BHZXD"), Kind::Real(6, 3)),
    f("area_m2", None, Kind::Real(15, 2)),
    f("area_mu", None, Kind::Real(15, 2)),
    f("cropland_area_m2", None, Kind::Real(15, 2)),
    f("basic_farmland_area_m2", None, Kind::Real(15, 2)),
    f("before_date", None, Kind::Text(10)),
    f("after_date", None, Kind::Text(10)),
    f("model", Some("MODEL"), Kind::Text(60)),
    f("features", None, Kind::Text(0)),
    f("chip_before", Some("CHIP_Q"), Kind::Text(120)),
    f("chip_after", Some("CHIP_H"), Kind::Text(120)),
    f("JCBH", Some("JCBH"), Kind::Text(40)),
    f("XZQDM", Some("XZQDM"), Kind::Text(12)),
    f("XZQMC", Some("XZQMC"), Kind::Text(80)),
    f("QSX", Some("QSX"), Kind::Text(8)),
    f("HSX", Some("HSX"), Kind::Text(8)),
    f("TBLX", Some("TBLX"), Kind::Text(40)),
    f("DLBM", Some("DLBM"), Kind::Text(8)),
    f("DLMC", Some("DLMC"), Kind::Text(60)),
    f("JCMJ", Some("JCMJ"), Kind::Real(15, 2)),
    f("JCMJ_MU", Some("JCMJ_MU"), Kind::Real(15, 2)),
    f("GDMJ", Some("GDMJ"), Kind::Real(15, 2)),
    f("YJJBNTMJ", Some("YJJBNTMJ"), Kind::Real(15, 2)),
    f("SFYN", Some("SFYN"), Kind::Text(4)),
    f("SFHX", Some("SFHX"), Kind::Text(4)),
    f("ZXX", Some("ZXX"), Kind::Real(16, 7)),
    f("ZXY", Some("ZXY"), Kind::Real(16, 7)),
    f("verdict_model", Some("VMODEL"), Kind::Text(60)),
    f("verdict_probability", Some("VPROB"), Kind::Real(6, 3)),
    f("suppressed", Some("YZ"), Kind::Text(4)),
    f("suppressed_reason", Some("YZYY"), Kind::Text(254)),
    f("NYQK", Some("NYQK"), Kind::Text(254)),
    f("PDJG", Some("PDJG"), Kind::Text(60)),
    f("BZ", Some("BZ"), Kind::Text(254)),
];

/// One patch ready to export: its outline in the grid CRS and its GeoJSON properties.
pub struct Row<'a> {
    /// The patch.
    pub patch: &'a Patch,
    /// Its GeoJSON properties.
    pub properties: &'a Map<String, Value>,
}

/// The CRS exports are written in, and how to get there from the grid.
pub struct ExportCrs {
    srs: Option<SpatialRef>,
    ct: Option<CoordTransform>,
    /// e.g. `EPSG:4545` or `EPSG:4490`, for the log and the manifest.
    pub label: String,
}

impl ExportCrs {
    /// Decides the export CRS for a grid in `grid_wkt` (see the module docs).
    pub fn for_grid(grid_wkt: Option<&str>) -> Result<Self> {
        let here = Path::new("<export CRS>");
        let Some(wkt) = grid_wkt.filter(|w| !w.is_empty()) else {
            tracing::warn!("the images have no CRS: GeoPackage and Shapefile are in pixel coordinates");
            return Ok(Self {
                srs: None,
                ct: None,
                label: "pixel".into(),
            });
        };
        let mut grid = SpatialRef::from_wkt(wkt).map_err(|e| Error::gdal(here, "image CRS", e))?;
        grid.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        if is_cgcs2000_projected(&grid) {
            let label = grid
                .auth_code()
                .map(|c| format!("EPSG:{c}"))
                .unwrap_or_else(|_| grid.name().unwrap_or_default());
            return Ok(Self {
                srs: Some(grid),
                ct: None,
                label,
            });
        }
        let mut geo = SpatialRef::from_epsg(4490).map_err(|e| Error::gdal(here, "EPSG:4490", e))?;
        geo.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let ct = CoordTransform::new(&grid, &geo).map_err(|e| Error::gdal(here, "transform to EPSG:4490", e))?;
        Ok(Self {
            srs: Some(geo),
            ct: Some(ct),
            label: "EPSG:4490".into(),
        })
    }

    fn geometry(&self, shape: &geo::MultiPolygon<f64>) -> Result<Geometry> {
        let here = Path::new("<export>");
        let g = shape
            .to_gdal()
            .map_err(|e| Error::gdal(here, "geometry conversion", e))?;
        match &self.ct {
            Some(ct) => g
                .transform(ct)
                .map_err(|e| Error::gdal(here, "reproject a patch outline", e)),
            None => Ok(g),
        }
    }
}

/// A projected CRS on the CGCS2000 datum (Gauss-Krüger zones and the like).
pub fn is_cgcs2000_projected(srs: &SpatialRef) -> bool {
    if !srs.is_projected() {
        return false;
    }
    if srs.auth_code().is_ok_and(|c| (4491..=4554).contains(&c)) {
        return true;
    }
    let datum = srs
        .get_attr_value("DATUM", 0)
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_ascii_lowercase();
    datum.contains("china") && datum.contains("2000")
}

/// Writes `dir/patches.gpkg` (layer `patches`) and `dir/patches_shp/patches.shp`.
/// The GeoPackage is written on its own thread beside the shapefile (each with its own CRS
/// objects: GDAL's are not shared between threads).
pub fn write_all(
    dir: &Path,
    rows: &[Row],
    grid_wkt: Option<&str>,
    encoding: DbfEncoding,
) -> Result<(PathBuf, PathBuf)> {
    let (gpkg, shp) = std::thread::scope(|sc| {
        let gpkg = sc.spawn(|| write_gpkg(&dir.join("patches.gpkg"), rows, &ExportCrs::for_grid(grid_wkt)?));
        let shp = write_shapefile(
            &dir.join("patches_shp"),
            rows,
            &ExportCrs::for_grid(grid_wkt)?,
            encoding,
        );
        let gpkg = gpkg
            .join()
            .unwrap_or_else(|_| Err(Error::Other("the GeoPackage writer stopped unexpectedly".into())));
        Ok::<_, Error>((gpkg, shp))
    })?;
    Ok((gpkg?, shp?))
}

/// Writes a GeoPackage through a temp file in the same folder, renamed into place.
pub fn write_gpkg(path: &Path, rows: &[Row], crs: &ExportCrs) -> Result<PathBuf> {
    let tmp = path.with_file_name(format!(".{}.tmp.gpkg", file_stem(path)));
    let _ = std::fs::remove_file(&tmp);
    {
        let drv = DriverManager::get_driver_by_name("GPKG").map_err(|e| Error::gdal(path, "GPKG driver", e))?;
        let mut ds = drv
            .create_vector_only(&tmp)
            .map_err(|e| Error::gdal(&tmp, "create GeoPackage", e))?;
        let mut txn = ds
            .start_transaction()
            .map_err(|e| Error::gdal(&tmp, "start transaction", e))?;
        let layer = txn
            .create_layer(LayerOptions {
                name: "patches",
                srs: crs.srs.as_ref(),
                ty: OGRwkbGeometryType::wkbMultiPolygon,
                options: None,
            })
            .map_err(|e| Error::gdal(&tmp, "create layer", e))?;
        let names: Vec<(&str, &FieldSpec)> = FIELDS.iter().map(|s| (s.key, s)).collect();
        write_layer(&tmp, &layer, &names, rows, crs, false)?;
        txn.commit().map_err(|e| Error::gdal(&tmp, "commit", e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, "cannot move the GeoPackage into place", e))?;
    Ok(path.to_path_buf())
}

/// Writes `folder/patches.{shp,shx,dbf,prj,cpg}`, built in a temp folder and renamed into place.
pub fn write_shapefile(folder: &Path, rows: &[Row], crs: &ExportCrs, encoding: DbfEncoding) -> Result<PathBuf> {
    let tmp = folder.with_file_name(format!(".{}.tmp", file_stem(folder)));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, "cannot create a temp folder", e))?;
    let shp = tmp.join("patches.shp");
    {
        let drv = DriverManager::get_driver_by_name("ESRI Shapefile")
            .map_err(|e| Error::gdal(&shp, "Shapefile driver", e))?;
        let mut ds = drv
            .create_vector_only(&shp)
            .map_err(|e| Error::gdal(&shp, "create Shapefile", e))?;
        let enc = format!("ENCODING={}", encoding.gdal_name());
        let layer = ds
            .create_layer(LayerOptions {
                name: "patches",
                srs: crs.srs.as_ref(),
                ty: OGRwkbGeometryType::wkbPolygon,
                options: Some(&[enc.as_str()]),
            })
            .map_err(|e| Error::gdal(&shp, "create layer", e))?;
        let names: Vec<(&str, &FieldSpec)> = FIELDS.iter().filter_map(|s| s.shp.map(|n| (n, s))).collect();
        write_layer(&shp, &layer, &names, rows, crs, true)?;
    }
    crate::io::atomic::write_file(&tmp.join("patches.cpg"), encoding.cpg().as_bytes())?;
    let _ = std::fs::remove_dir_all(folder);
    std::fs::rename(&tmp, folder).map_err(|e| Error::io(folder, "cannot move the Shapefile folder into place", e))?;
    Ok(folder.join("patches.shp"))
}

fn file_stem(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into())
}

/// Creates the fields `(output name, spec)` and writes one feature per row.
fn write_layer(
    path: &Path,
    layer: &Layer,
    fields: &[(&str, &FieldSpec)],
    rows: &[Row],
    crs: &ExportCrs,
    dbf: bool,
) -> Result<()> {
    for (name, spec) in fields {
        let (ty, width, prec) = match spec.kind {
            Kind::Text(w) => (OGRFieldType::OFTString, if dbf { w.max(1) } else { 0 }, 0),
            Kind::Real(w, p) => (OGRFieldType::OFTReal, if dbf { w } else { 0 }, if dbf { p } else { 0 }),
        };
        let fd = FieldDefn::new(name, ty).map_err(|e| Error::gdal(path, format!("field {name}"), e))?;
        fd.set_width(width);
        fd.set_precision(prec);
        fd.add_to_layer(layer)
            .map_err(|e| Error::gdal(path, format!("add field {name}"), e))?;
    }
    for row in rows {
        let mut feat = Feature::new(layer.defn()).map_err(|e| Error::gdal(path, "new feature", e))?;
        for (i, (name, spec)) in fields.iter().enumerate() {
            set_value(&mut feat, i, row.properties.get(spec.key))
                .map_err(|e| Error::gdal(path, format!("patch {} field {name}", row.patch.id), e))?;
        }
        feat.set_geometry(crs.geometry(&row.patch.shape)?)
            .map_err(|e| Error::gdal(path, "set geometry", e))?;
        feat.create(layer)
            .map_err(|e| Error::gdal(path, format!("write patch {}", row.patch.id), e))?;
    }
    Ok(())
}

fn set_value(feat: &mut Feature, i: usize, v: Option<&Value>) -> gdal::errors::Result<()> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => feat.set_field_string(i, s),
        Some(Value::Number(n)) => feat.set_field_double(i, n.as_f64().unwrap_or(f64::NAN)),
        Some(Value::Bool(b)) => feat.set_field_string(i, if *b { "是" } else { "否" }),
        Some(other) => feat.set_field_string(i, &other.to_string()),
    }
}
