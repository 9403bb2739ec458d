//! Reading a polygon layer (land use, farmland, approvals, counties, red line) onto the grid:
//! open it with any GDAL vector driver, find its fields, fix the text encoding of Chinese
//! Shapefiles, reproject to the grid's CRS, repair invalid polygons and index them in an R-tree.
//!
//! Every problem either stops the run with a message naming the file and field, or is counted
//! and reported in one warning: a layer is never read silently wrong.

use crate::{Error, Result};
use gdal::cpl::CslStringList;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{Feature, Geometry, Layer, LayerAccess, LayerCaps, OGRFieldType};
use gdal::{Dataset, DatasetOptions, GdalOpenFlags};
use rstar::primitives::GeomWithData;
use rstar::RTree;
use std::ffi::CStr;
use std::path::{Path, PathBuf};

/// A polygon of a layer with the index of its feature's attributes.
pub type Indexed = GeomWithData<geo::Polygon<f64>, usize>;

/// A layer's polygons in the grid CRS, indexed, with one attribute record per feature.
pub struct PolygonLayer<T> {
    /// The file read.
    pub path: PathBuf,
    /// Its polygons in the grid CRS, each with the index of its feature's record.
    pub tree: RTree<Indexed>,
    /// One record per feature kept.
    pub attrs: Vec<T>,
    /// What loading found.
    pub stats: LoadStats,
}

/// What loading found; reported once per layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Features read (near the grid).
    pub features: usize,
    /// Polygons kept from them.
    pub polygons: usize,
    /// Invalid geometries repaired with GEOS make_valid.
    pub repaired: usize,
    /// Features without a usable polygon (no geometry, empty, points/lines, unrepairable).
    pub skipped: usize,
    /// Features the caller rejected (e.g. no readable DLBM code).
    pub rejected: usize,
    /// The DBF text was not UTF-8 and was read as GBK (CP936).
    pub read_as_gbk: bool,
    /// Text values that were not valid UTF-8 before recoding.
    pub non_utf8_values: usize,
}

/// The CRS and extent of the grid the patches live on.
pub struct GridFrame {
    /// The grid's CRS (traditional GIS axis order).
    pub srs: SpatialRef,
    /// `[min_x, min_y, max_x, max_y]` in the grid CRS; features outside are not read.
    pub bounds: [f64; 4],
}

/// `[min_x, min_y, max_x, max_y]` of a `w`×`h` grid with geotransform `gt` (all four corners,
/// so a rotated grid is covered too).
pub fn grid_bounds(gt: [f64; 6], w: usize, h: usize) -> [f64; 4] {
    let corner = |px: f64, py: f64| (gt[0] + px * gt[1] + py * gt[2], gt[3] + px * gt[4] + py * gt[5]);
    let (w, h) = (w as f64, h as f64);
    let corners = [corner(0.0, 0.0), corner(w, 0.0), corner(0.0, h), corner(w, h)];
    let (xs, ys) = (corners.map(|c| c.0), corners.map(|c| c.1));
    let min = |v: [f64; 4]| v.into_iter().fold(f64::INFINITY, f64::min);
    let max = |v: [f64; 4]| v.into_iter().fold(f64::NEG_INFINITY, f64::max);
    [min(xs), min(ys), max(xs), max(ys)]
}

impl GridFrame {
    /// The frame of a grid in the CRS `wkt` covering `bounds`.
    pub fn new(wkt: &str, bounds: [f64; 4]) -> Result<Self> {
        let mut srs = SpatialRef::from_wkt(wkt)
            .map_err(|e| Error::gdal(Path::new("<grid>"), "the image CRS cannot be parsed", e))?;
        srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        Ok(Self { srs, bounds })
    }
}

/// Opens `path` as a vector dataset. Shapefiles whose text is not UTF-8 and whose encoding is
/// not declared (no `.cpg`, an unknown one, or no code page byte) are reopened as GBK (CP936),
/// the encoding of most Chinese DBFs; `stats` records it.
pub fn open(path: &Path, what: &str, stats: &mut LoadStats) -> Result<Dataset> {
    crate::io::init_gdal();
    if !path.exists() {
        return Err(Error::input(path, format!("{what} layer not found; check the path")));
    }
    let ds = open_vector(path, None).map_err(|_| {
        Error::input(
            path,
            format!("{what} layer: not a vector file GDAL can read (GeoPackage, Shapefile, GeoJSON …)"),
        )
    })?;
    if ds.layer_count() == 0 {
        return Err(Error::input(
            path,
            format!("{what} layer: the file has no vector layer"),
        ));
    }
    if ds.driver().short_name() != "ESRI Shapefile" {
        return Ok(ds);
    }
    let bad = {
        let mut layer = pick_layer(&ds, path, what)?;
        if layer.has_capability(LayerCaps::OLCStringsAsUTF8) {
            0
        } else {
            count_non_utf8(&mut layer).0
        }
    };
    if bad == 0 {
        return Ok(ds);
    }
    stats.read_as_gbk = true;
    stats.non_utf8_values = bad;
    drop(ds);
    open_vector(path, Some(&["ENCODING=CP936"])).map_err(|e| Error::gdal(path, "reopen as GBK (CP936)", e))
}

fn open_vector(path: &Path, open_options: Option<&[&str]>) -> gdal::errors::Result<Dataset> {
    Dataset::open_ex(
        path,
        DatasetOptions {
            open_flags: GdalOpenFlags::GDAL_OF_VECTOR,
            open_options,
            ..Default::default()
        },
    )
}

/// The layer to read: the only one, else one named like a 三调 parcel layer (DLTB), else the first.
pub fn pick_layer<'a>(ds: &'a Dataset, path: &Path, what: &str) -> Result<Layer<'a>> {
    let names: Vec<String> = ds.layers().map(|l| l.name()).collect();
    let idx = names.iter().position(|n| n.eq_ignore_ascii_case("dltb")).unwrap_or(0);
    if names.len() > 1 {
        tracing::info!(file = %path.display(), layer = %names[idx], "{what}: several layers; reading '{}'", names[idx]);
    }
    ds.layer(idx)
        .map_err(|e| Error::gdal(path, format!("{what}: open layer '{}'", names[idx]), e))
}

/// How many string values are not valid UTF-8, of how many non-empty ones (raw DBF bytes).
fn count_non_utf8(layer: &mut Layer) -> (usize, usize) {
    let string_fields: Vec<usize> = layer
        .defn()
        .fields()
        .enumerate()
        .filter(|(_, f)| f.field_type() == OGRFieldType::OFTString)
        .map(|(i, _)| i)
        .collect();
    let (mut bad, mut total) = (0, 0);
    for f in layer.features() {
        for &i in &string_fields {
            let bytes = raw_string(&f, i);
            if !bytes.is_empty() {
                total += 1;
                bad += usize::from(std::str::from_utf8(&bytes).is_err());
            }
        }
    }
    layer.reset_feature_reading();
    (bad, total)
}

/// The bytes GDAL holds for a string field, without lossy UTF-8 conversion.
fn raw_string(f: &Feature, idx: usize) -> Vec<u8> {
    let Ok(i) = i32::try_from(idx) else {
        return Vec::new();
    };
    // SAFETY: `f` is a live feature and `i` a valid field index; GDAL returns a pointer to a
    // NUL-terminated buffer owned by the feature, copied out before `f` can change.
    unsafe {
        let p = gdal_sys::OGR_F_GetFieldAsString(f.c_feature(), i);
        if p.is_null() {
            Vec::new()
        } else {
            CStr::from_ptr(p).to_bytes().to_vec()
        }
    }
}

/// The names of a layer's attribute fields, in order.
pub fn field_names(layer: &Layer) -> Vec<String> {
    layer.defn().fields().map(|f| f.name()).collect()
}

/// The index of the first field named like one of `candidates` (case-insensitive).
pub fn find_field(names: &[String], candidates: &[&str]) -> Option<usize> {
    candidates
        .iter()
        .find_map(|c| names.iter().position(|n| n.eq_ignore_ascii_case(c)))
}

/// Like [`find_field`], but a missing field is an error naming the file, the field and the
/// fields the layer does have.
pub fn require_field(path: &Path, layer: &str, names: &[String], candidates: &[&str], what: &str) -> Result<usize> {
    find_field(names, candidates).ok_or_else(|| {
        Error::config(
            path,
            candidates.join("/"),
            format!(
                "{what} layer '{layer}' has no {} field; its fields are: {}",
                candidates.join(" or "),
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            ),
        )
    })
}

/// Whether field `idx` holds numbers (integer or real) rather than text.
pub fn is_numeric_field(layer: &Layer, idx: usize) -> bool {
    layer.defn().fields().nth(idx).is_some_and(|f| {
        matches!(
            f.field_type(),
            OGRFieldType::OFTInteger | OGRFieldType::OFTInteger64 | OGRFieldType::OFTReal
        )
    })
}

/// A string field's value, trimmed; empty when null.
pub fn text(f: &Feature, idx: usize) -> String {
    f.field_as_string(idx)
        .ok()
        .flatten()
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Reads every feature of `layer` that lies near the grid: `attr` turns a feature into its
/// record (`None` rejects it), its polygons are moved to the grid CRS, repaired and indexed.
pub fn read_polygons<T>(
    path: &Path,
    layer: &mut Layer,
    what: &str,
    grid: &GridFrame,
    mut stats: LoadStats,
    mut attr: impl FnMut(&Feature) -> Option<T>,
) -> Result<PolygonLayer<T>> {
    let ct = to_grid(path, layer, what, grid)?;
    let mut attrs = Vec::new();
    let mut items = Vec::new();
    for f in layer.features() {
        stats.features += 1;
        let Some(record) = attr(&f) else {
            stats.rejected += 1;
            continue;
        };
        let polys = f
            .geometry()
            .map(|g| grid_polygons(g, ct.as_ref(), &mut stats))
            .unwrap_or_default();
        if polys.is_empty() {
            stats.skipped += 1;
            continue;
        }
        let id = attrs.len();
        attrs.push(record);
        items.extend(polys.into_iter().map(|p| GeomWithData::new(p, id)));
    }
    stats.polygons = items.len();
    report(path, what, &stats);
    Ok(PolygonLayer {
        path: path.to_path_buf(),
        tree: RTree::bulk_load(items),
        attrs,
        stats,
    })
}

/// The transform from the layer CRS to the grid CRS (`None`: same CRS), and a spatial filter
/// on the layer to the grid's extent so a province-wide layer does not load entirely.
fn to_grid(path: &Path, layer: &mut Layer, what: &str, grid: &GridFrame) -> Result<Option<CoordTransform>> {
    let Some(mut srs) = layer.spatial_ref() else {
        // Taking it to be in the image's CRS would overlay it wherever its numbers happen to
        // fall, and a layer in lon/lat would then cover nothing: never a quiet guess.
        return Err(Error::input(
            path,
            format!("{what} layer has no CRS (a Shapefile without its .prj?), so it cannot be placed on the image; add it, e.g. `ogr2ogr -a_srs EPSG:4545 fixed.gpkg {}`", path.display()),
        ));
    };
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    if srs == grid.srs {
        set_filter(layer, grid.bounds);
        return Ok(None);
    }
    let ct = CoordTransform::new(&srs, &grid.srs).map_err(|e| {
        Error::gdal(
            path,
            format!("{what}: no transform from the layer CRS to the image CRS"),
            e,
        )
    })?;
    if let Ok(back) = CoordTransform::new(&grid.srs, &srs) {
        if let Ok(b) = back.transform_bounds(&grid.bounds, 21) {
            set_filter(layer, b);
        }
    }
    Ok(Some(ct))
}

/// Filters to `b` grown by 5 % (features straddling the edge still count).
fn set_filter(layer: &mut Layer, b: [f64; 4]) {
    let (mx, my) = ((b[2] - b[0]) * 0.05, (b[3] - b[1]) * 0.05);
    layer.set_spatial_filter_rect(b[0] - mx, b[1] - my, b[2] + mx, b[3] + my);
}

/// A feature's geometry as valid polygons in the grid CRS.
fn grid_polygons(g: &Geometry, ct: Option<&CoordTransform>, stats: &mut LoadStats) -> Vec<geo::Polygon<f64>> {
    let moved = match ct {
        Some(ct) => match g.transform(ct) {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        },
        None => g.clone(),
    };
    let valid = if moved.is_valid() {
        moved
    } else {
        match moved.make_valid(&CslStringList::new()) {
            Ok(v) => {
                stats.repaired += 1;
                v
            }
            Err(_) => return Vec::new(),
        }
    };
    valid.to_geo().map(polygons_of).unwrap_or_default()
}

/// The polygonal parts of a geometry (make_valid may return lines or points beside them).
pub fn polygons_of(g: geo::Geometry<f64>) -> Vec<geo::Polygon<f64>> {
    use geo::Area;
    match g {
        geo::Geometry::Polygon(p) => vec![p],
        geo::Geometry::MultiPolygon(mp) => mp.0,
        geo::Geometry::GeometryCollection(gc) => gc.0.into_iter().flat_map(polygons_of).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|p| p.unsigned_area() > 0.0)
    .collect()
}

/// One warning per layer with everything that was not read as is.
fn report(path: &Path, what: &str, s: &LoadStats) {
    tracing::info!(file = %path.display(), features = s.features, polygons = s.polygons, "{what} layer loaded");
    if s.read_as_gbk {
        tracing::warn!(
            file = %path.display(),
            non_utf8 = s.non_utf8_values,
            "{what}: {} text values are not UTF-8 and the encoding is not declared (.cpg); read them as GBK (CP936)",
            s.non_utf8_values
        );
    }
    if s.repaired > 0 || s.skipped > 0 || s.rejected > 0 {
        tracing::warn!(
            file = %path.display(),
            repaired = s.repaired,
            skipped = s.skipped,
            rejected = s.rejected,
            "{what}: repaired {} invalid geometries, skipped {} features without a usable polygon, rejected {} features with unusable attributes",
            s.repaired, s.skipped, s.rejected
        );
    }
}
