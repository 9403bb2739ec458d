//! Reading what eval compares: a label raster (turned into [`Truth`] per pixel) and a
//! prediction, either a raster mask or landwatch's `patches.geojson`, put on the label's grid.
//!
//! Polygons are rasterised with GDAL's pixel-centre rule (a pixel belongs to a polygon when its
//! centre lies inside), each feature burnt with its own id so that every feature is one
//! predicted patch — as `../shared/peers/score.py` does for vector predictions.

use super::metrics::Truth;
use gdal::raster::{rasterize, RasterizeOptions};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{Geometry, LayerAccess, ToGdal};
use gdal::{Dataset, DriverManager};
use landwatch_core::io::raster::{self, Georef};
use landwatch_core::patches::layer::{self, GridFrame};
use landwatch_core::{Error, Result};
use ndarray::Array2;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// How label values map to [`Truth`].
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSpec {
    /// Values meaning "changed"; every other value is "no change" unless ignored.
    pub change_values: Vec<f64>,
    /// A value meaning "not labelled" (the band's nodata value is ignored too, unless it is
    /// one of the change values).
    pub ignore_value: Option<f64>,
}

/// A label read from disk, with the grid predictions are put on.
pub struct Label {
    pub path: PathBuf,
    pub truth: Array2<Truth>,
    pub georef: Option<Georef>,
}

impl Label {
    pub fn width(&self) -> usize {
        self.truth.ncols()
    }

    pub fn height(&self) -> usize {
        self.truth.nrows()
    }
}

/// A prediction on the label grid: patch ids (0 = none) and how many patches there are.
pub struct Prediction {
    pub ids: Array2<u32>,
    pub patches: usize,
}

/// Parses `255,1` style value lists.
pub fn parse_values(s: &str, flag: &str) -> Result<Vec<f64>> {
    let vals: Vec<f64> = s
        .split(',')
        .map(|t| t.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::Usage(format!("{flag} '{s}': expected comma-separated numbers, e.g. 255,1")))?;
    if vals.is_empty() {
        return Err(Error::Usage(format!("{flag}: give at least one value")));
    }
    Ok(vals)
}

/// Reads band 1 of a raster as `f64` values.
fn read_band1(path: &Path) -> Result<(Array2<f64>, raster::RasterInfo)> {
    let ds = raster::open(path)?;
    let info = raster::describe(&ds, path)?;
    let band = ds
        .rasterband(1)
        .map_err(|e| Error::gdal(path, "cannot open band 1", e))?;
    let buf = band
        .read_as::<f64>((0, 0), (info.width, info.height), (info.width, info.height), None)
        .map_err(|e| Error::gdal(path, "cannot read band 1", e))?;
    let arr = buf
        .to_array()
        .map_err(|e| Error::gdal(path, "unexpected buffer shape", e))?;
    Ok((arr, info))
}

/// Reads a label raster's band 1 and classifies every pixel.
pub fn read_label(path: &Path, spec: &LabelSpec) -> Result<Label> {
    let (values, info) = read_band1(path)?;
    let is_change = |v: f64| spec.change_values.iter().any(|c| (c - v).abs() < 1e-9);
    if spec.ignore_value.is_some_and(is_change) {
        return Err(Error::Usage(format!(
            "--ignore-value {} is also a change value; a label value cannot mean both",
            spec.ignore_value.unwrap_or_default()
        )));
    }
    let nodata = info.nodata.first().copied().flatten().filter(|&nd| !is_change(nd));
    let ignored = |v: f64| {
        [spec.ignore_value, nodata]
            .iter()
            .flatten()
            .any(|i| (i - v).abs() < 1e-9)
    };
    let truth = values.mapv(|v| {
        if ignored(v) {
            Truth::Ignore
        } else if is_change(v) {
            Truth::Change
        } else {
            Truth::NoChange
        }
    });
    Ok(Label {
        path: path.to_path_buf(),
        truth,
        georef: info.georef,
    })
}

/// Reads a prediction: a folder (its `patches.geojson`), a GeoJSON file, or a raster mask.
pub fn read_prediction(path: &Path, label: &Label) -> Result<Prediction> {
    let file = if path.is_dir() {
        path.join("patches.geojson")
    } else {
        path.to_path_buf()
    };
    if !file.exists() {
        return Err(Error::input(
            &file,
            "prediction not found; give RUN_DIR, RUN_DIR/patches.geojson or a mask raster",
        ));
    }
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext == "geojson" || ext == "json" {
        rasterise_patches(&file, label)
    } else {
        read_mask(&file, label)
    }
}

/// A raster mask on the label grid: nonzero = change, patches = 8-connected components. For
/// landwatch's own `change.tif` only class 1 is change (255 there means "not observed").
pub fn read_mask(path: &Path, label: &Label) -> Result<Prediction> {
    let (values, info) = read_band1(path)?;
    if (info.width, info.height) != (label.width(), label.height()) {
        return Err(Error::input(
            path,
            format!(
                "is {}x{} px but the label {} is {}x{}; a mask prediction must be on the label grid",
                info.width,
                info.height,
                label.path.display(),
                label.width(),
                label.height()
            ),
        ));
    }
    let landwatch_classes = is_landwatch_change_raster(path);
    let pred = values.mapv(|v| {
        if landwatch_classes {
            v == 1.0
        } else {
            v != 0.0 && v.is_finite()
        }
    });
    let (ids, patches) = super::metrics::components(&pred);
    Ok(Prediction { ids, patches })
}

fn is_landwatch_change_raster(path: &Path) -> bool {
    let Ok(ds) = Dataset::open(path) else {
        return false;
    };
    let Ok(band) = ds.rasterband(1) else {
        return false;
    };
    gdal::Metadata::description(&band).is_ok_and(|d| d.starts_with("class: 0 unchanged, 1 changed"))
}

/// Burns each feature of a FeatureCollection with its 1-based index onto the label grid.
pub fn rasterise_patches(path: &Path, label: &Label) -> Result<Prediction> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let fc: Value = serde_json::from_str(&text).map_err(|e| Error::input(path, format!("not valid JSON: {e}")))?;
    if fc.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        return Err(Error::input(path, "not a GeoJSON FeatureCollection"));
    }
    let pixel_space = fc.get("landwatch:crs").and_then(Value::as_str) == Some("pixel");
    let mut geoms = geometries(&fc, path)?;
    let gt = if pixel_space {
        [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    } else {
        let Some(g) = &label.georef else {
            return Err(Error::input(
                &label.path,
                format!(
                    "has no georeferencing, but the prediction {} is in lon/lat",
                    path.display()
                ),
            ));
        };
        to_label_crs(&mut geoms, &g.wkt, path)?;
        g.geo_transform
    };
    let ids = burn(&geoms, gt, label.width(), label.height(), path)?;
    Ok(Prediction {
        ids,
        patches: geoms.len(),
    })
}

fn geometries(fc: &Value, path: &Path) -> Result<Vec<Geometry>> {
    let feats = fc
        .get("features")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut out = Vec::with_capacity(feats.len());
    for (i, f) in feats.iter().enumerate() {
        let g = f
            .get("geometry")
            .filter(|g| !g.is_null())
            .ok_or_else(|| Error::input(path, format!("feature {} has no geometry", i + 1)))?;
        let geom = Geometry::from_geojson(&g.to_string())
            .map_err(|e| Error::input(path, format!("feature {}: invalid geometry: {e}", i + 1)))?;
        out.push(geom);
    }
    Ok(out)
}

fn to_label_crs(geoms: &mut [Geometry], label_wkt: &str, path: &Path) -> Result<()> {
    if label_wkt.is_empty() {
        return Err(Error::input(
            path,
            "the label has a geotransform but no CRS; cannot place lon/lat polygons on it",
        ));
    }
    let mut src = SpatialRef::from_epsg(4326).map_err(|e| Error::gdal(path, "EPSG:4326", e))?;
    src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut dst = SpatialRef::from_wkt(label_wkt).map_err(|e| Error::gdal(path, "label CRS", e))?;
    dst.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let ct = CoordTransform::new(&src, &dst).map_err(|e| Error::gdal(path, "transform to the label CRS", e))?;
    for g in geoms.iter_mut() {
        g.transform_inplace(&ct)
            .map_err(|e| Error::gdal(path, "cannot transform a patch to the label CRS", e))?;
    }
    Ok(())
}

/// Rasterises `geoms` (burn value = index + 1) into a `w`×`h` grid with geotransform `gt`.
fn burn(geoms: &[Geometry], gt: gdal::GeoTransform, w: usize, h: usize, path: &Path) -> Result<Array2<u32>> {
    let values: Vec<f64> = (1..=geoms.len()).map(|i| i as f64).collect();
    burn_values(geoms, &values, gt, w, h, path)
}

/// Rasterises each of `geoms` with its value of `values` (later ones over earlier ones) into a
/// `w`×`h` grid with geotransform `gt`; 0 where none lies.
fn burn_values(
    geoms: &[Geometry],
    values: &[f64],
    gt: gdal::GeoTransform,
    w: usize,
    h: usize,
    path: &Path,
) -> Result<Array2<u32>> {
    let drv = DriverManager::get_driver_by_name("MEM").map_err(|e| Error::gdal(path, "MEM driver", e))?;
    let mut ds = drv
        .create_with_band_type::<u32, _>("", w, h, 1)
        .map_err(|e| Error::gdal(path, "cannot create a scratch raster", e))?;
    ds.set_geo_transform(&gt)
        .map_err(|e| Error::gdal(path, "cannot set the scratch geotransform", e))?;
    if !geoms.is_empty() {
        rasterize(&mut ds, &[1], geoms, values, Some(RasterizeOptions::default()))
            .map_err(|e| Error::gdal(path, "cannot rasterise the polygons", e))?;
    }
    let band = ds.rasterband(1).map_err(|e| Error::gdal(path, "scratch band", e))?;
    let buf = band
        .read_as::<u32>((0, 0), (w, h), (w, h), None)
        .map_err(|e| Error::gdal(path, "scratch read", e))?;
    buf.to_array()
        .map_err(|e| Error::gdal(path, "unexpected buffer shape", e))
}

/// What the pixels outside every change polygon are (`train --outside`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outside {
    /// No change: the polygons map every change on the image (an enforcement history, a survey).
    #[default]
    NoChange,
    /// Unlabelled: only the polygons teach (e.g. reviewed patches from `review export`).
    Ignore,
}

/// The file names a georeferenced pair folder may hold its change polygons under.
pub const CHANGE_POLYGON_FILES: [&str; 3] = ["changes.gpkg", "changes.geojson", "changes.shp"];

/// Whether `path` is a vector file (change polygons) rather than a label raster.
pub fn is_polygon_label(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["gpkg", "geojson", "json", "shp"].contains(&e.to_ascii_lowercase().as_str()))
}

/// What a change polygon says about its pixels; later classes in this order win where polygons
/// overlap (a change drawn over an old false alarm is a change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PolygonClass {
    Unlabelled = 3,
    NoChange = 2,
    Change = 1,
}

/// The fields a change polygon's class is read from, when the layer has them.
struct ClassFields {
    /// `change`: 1/true change, 0/false no change (any source).
    change: Option<usize>,
    /// `PDJG` (判定结果, as `landwatch review export` writes it): 合法/违法 change, 其他 change
    /// unless `NYQK` (the subtype) is 实地未变化 (a false alarm: no change), empty unlabelled.
    verdict: Option<usize>,
    subtype: Option<usize>,
}

impl ClassFields {
    fn of(layer: &gdal::vector::Layer) -> Self {
        let names = layer::field_names(layer);
        Self {
            change: layer::find_field(&names, &["change"]),
            verdict: layer::find_field(&names, &["PDJG"]),
            subtype: layer::find_field(&names, &["NYQK"]),
        }
    }

    /// The feature's class, or the field and value that say neither.
    fn class(&self, f: &gdal::vector::Feature) -> std::result::Result<PolygonClass, (&'static str, String)> {
        if let Some(i) = self.change {
            let v = layer::text(f, i);
            return match v.to_ascii_lowercase().as_str() {
                "" => Ok(PolygonClass::Unlabelled),
                "0" | "0.0" | "false" | "no" => Ok(PolygonClass::NoChange),
                "1" | "1.0" | "true" | "yes" => Ok(PolygonClass::Change),
                _ => Err(("change", v)),
            };
        }
        if let Some(i) = self.verdict {
            let v = layer::text(f, i);
            let false_alarm = self.subtype.is_some_and(|s| layer::text(f, s) == "实地未变化");
            return match v.as_str() {
                "" => Ok(PolygonClass::Unlabelled),
                "合法" | "违法" => Ok(PolygonClass::Change),
                "其他" if false_alarm => Ok(PolygonClass::NoChange),
                "其他" => Ok(PolygonClass::Change),
                _ => Err(("PDJG", v)),
            };
        }
        Ok(PolygonClass::Change)
    }
}

/// Change polygons (any GDAL vector file) as a label on the grid of the georeferenced `image`:
/// polygons are moved to the image's CRS and burnt by pixel centre. A polygon is change unless
/// its fields say otherwise (see [`ClassFields`]); pixels outside every polygon are `outside`.
pub fn read_polygon_label(path: &Path, image: &Path, outside: Outside) -> Result<Label> {
    let ds = raster::open(image)?;
    let info = raster::describe(&ds, image)?;
    let georef = info.georef.clone().filter(|g| !g.wkt.is_empty()).ok_or_else(|| {
        Error::input(
            image,
            format!(
                "has no georeferencing (geotransform and CRS), so the change polygons {} cannot be placed on it; \
                 give a label raster on its grid instead",
                path.display()
            ),
        )
    })?;
    let (w, h, gt) = (info.width, info.height, georef.geo_transform);
    let grid = GridFrame::new(&georef.wkt, layer::grid_bounds(gt, w, h))?;
    let mut stats = layer::LoadStats::default();
    let vector = layer::open(path, "change polygons", &mut stats)?;
    let mut lyr = layer::pick_layer(&vector, path, "change polygons")?;
    let in_file = lyr.feature_count();
    let fields = ClassFields::of(&lyr);
    let mut bad = None;
    let polygons = layer::read_polygons(path, &mut lyr, "change polygons", &grid, stats, |f| {
        fields.class(f).map_err(|e| bad = bad.take().or(Some(e))).ok()
    })?;
    if let Some((field, value)) = bad {
        return Err(Error::input(
            path,
            format!("field {field}: value '{value}' is not a class this reader knows (change: 1/0, true/false; PDJG: 合法/违法/其他)"),
        ));
    }
    if in_file > 0 && polygons.attrs.is_empty() {
        return Err(Error::input(
            path,
            format!(
                "none of its {in_file} polygons lies on {}: are they of another area, or in another CRS than the file declares?",
                image.display()
            ),
        ));
    }
    let mut order: Vec<&layer::Indexed> = polygons.tree.iter().collect();
    order.sort_by_key(|p| std::cmp::Reverse(polygons.attrs[p.data] as u8));
    let geoms = order
        .iter()
        .map(|p| p.geom().to_gdal())
        .collect::<gdal::errors::Result<Vec<_>>>()
        .map_err(|e| Error::gdal(path, "cannot convert a polygon for burning", e))?;
    let values: Vec<f64> = order.iter().map(|p| f64::from(polygons.attrs[p.data] as u8)).collect();
    let burnt = burn_values(&geoms, &values, gt, w, h, path)?;
    let truth = burnt.mapv(|v| match v {
        1 => Truth::Change,
        2 => Truth::NoChange,
        3 => Truth::Ignore,
        _ => match outside {
            Outside::NoChange => Truth::NoChange,
            Outside::Ignore => Truth::Ignore,
        },
    });
    Ok(Label {
        path: path.to_path_buf(),
        truth,
        georef: Some(georef),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20×10 px GeoTIFF at 10 m in EPSG:32649 (UTM 49N, Guangxi) in `dir`.
    fn utm_image(dir: &Path) -> PathBuf {
        let path = dir.join("before.tif");
        let drv = DriverManager::get_driver_by_name("GTiff").unwrap();
        let mut ds = drv.create_with_band_type::<u8, _>(&path, 20, 10, 1).unwrap();
        ds.set_geo_transform(&[500_000.0, 10.0, 0.0, 2_500_000.0, 0.0, -10.0])
            .unwrap();
        ds.set_spatial_ref(&SpatialRef::from_epsg(32649).unwrap()).unwrap();
        path
    }

    /// A GeoJSON feature: the square over columns `c0..c1`, rows `r0..r1` of [`utm_image`].
    fn square(props: &str, [c0, c1, r0, r1]: [i32; 4]) -> String {
        let (x0, x1) = (500_000 + 10 * c0, 500_000 + 10 * c1);
        let (y0, y1) = (2_500_000 - 10 * r1, 2_500_000 - 10 * r0);
        format!(
            r#"{{"type": "Feature", "properties": {props}, "geometry": {{"type": "Polygon", "coordinates": [[[{x0}, {y0}], [{x1}, {y0}], [{x1}, {y1}], [{x0}, {y1}], [{x0}, {y0}]]]}}}}"#
        )
    }

    /// Change polygons in EPSG:32649 written to `dir/changes.geojson`.
    fn polygons(dir: &Path, features: &[String]) -> PathBuf {
        let path = dir.join("changes.geojson");
        let text = format!(
            r#"{{"type": "FeatureCollection", "crs": {{"type": "name", "properties": {{"name": "urn:ogc:def:crs:EPSG::32649"}}}}, "features": [{}]}}"#,
            features.join(",")
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn change_polygons_burn_by_class_with_change_over_no_change_and_the_outside_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let image = utm_image(dir.path());
        let path = polygons(
            dir.path(),
            &[
                square(r#"{"change": 1}"#, [0, 5, 0, 5]),
                square(r#"{"change": 0}"#, [8, 14, 0, 5]),
                square(r#"{"change": 1}"#, [12, 17, 0, 5]),
                square(r#"{"change": null}"#, [0, 5, 6, 10]),
            ],
        );
        let label = read_polygon_label(&path, &image, Outside::NoChange).unwrap();
        assert_eq!((label.width(), label.height()), (20, 10));
        let t = &label.truth;
        assert_eq!(t[(2, 2)], Truth::Change);
        assert_eq!(t[(2, 9)], Truth::NoChange, "a change: 0 polygon");
        assert_eq!(t[(2, 12)], Truth::Change, "change drawn over no change wins");
        assert_eq!(t[(7, 2)], Truth::Ignore, "no value: unlabelled");
        assert_eq!(t[(8, 18)], Truth::NoChange, "outside, as asked");
        let change = t.iter().filter(|&&v| v == Truth::Change).count();
        assert_eq!(change, 25 + 25, "two 5×5 px squares by pixel centre");
        let ignoring = read_polygon_label(&path, &image, Outside::Ignore).unwrap();
        assert_eq!(ignoring.truth[(8, 18)], Truth::Ignore);
        assert_eq!(ignoring.truth[(2, 9)], Truth::NoChange);
    }

    #[test]
    fn reviewed_patches_are_change_unless_judged_a_false_alarm_and_undecided_ones_teach_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let image = utm_image(dir.path());
        let path = polygons(
            dir.path(),
            &[
                square(r#"{"PDJG": "违法", "NYQK": ""}"#, [0, 2, 0, 2]),
                square(r#"{"PDJG": "合法", "NYQK": "农转用"}"#, [3, 5, 0, 2]),
                square(r#"{"PDJG": "其他", "NYQK": "实地未变化"}"#, [6, 8, 0, 2]),
                square(r#"{"PDJG": "其他", "NYQK": "设施农用地"}"#, [9, 11, 0, 2]),
                square(r#"{"PDJG": "", "NYQK": ""}"#, [12, 14, 0, 2]),
            ],
        );
        let t = read_polygon_label(&path, &image, Outside::Ignore).unwrap().truth;
        let got: Vec<Truth> = [0, 3, 6, 9, 12, 16].iter().map(|&c| t[(0, c)]).collect();
        use Truth::*;
        assert_eq!(got, vec![Change, Change, NoChange, Change, Ignore, Ignore]);
    }

    #[test]
    fn a_gbk_shapefile_of_verdicts_without_its_cpg_reads_its_chinese_verdicts() {
        use gdal::vector::{Feature, FieldDefn, LayerOptions, OGRFieldType, OGRwkbGeometryType};
        let dir = tempfile::tempdir().unwrap();
        let image = utm_image(dir.path());
        let path = dir.path().join("changes.shp");
        {
            let drv = DriverManager::get_driver_by_name("ESRI Shapefile").unwrap();
            let mut ds = drv.create_vector_only(&path).unwrap();
            let layer = ds
                .create_layer(LayerOptions {
                    name: "changes",
                    srs: Some(&SpatialRef::from_epsg(32649).unwrap()),
                    ty: OGRwkbGeometryType::wkbPolygon,
                    options: Some(&["ENCODING=CP936"]),
                })
                .unwrap();
            for name in ["PDJG", "NYQK"] {
                let field = FieldDefn::new(name, OGRFieldType::OFTString).unwrap();
                field.set_width(20);
                field.add_to_layer(&layer).unwrap();
            }
            for (c0, verdict, subtype) in [(0, "违法", ""), (6, "其他", "实地未变化")] {
                let (x0, x1) = (500_000 + 10 * c0, 500_000 + 10 * (c0 + 4));
                let wkt = format!("POLYGON (({x0} 2499960,{x1} 2499960,{x1} 2500000,{x0} 2500000,{x0} 2499960))");
                let mut f = Feature::new(layer.defn()).unwrap();
                f.set_field_string(0, verdict).unwrap();
                f.set_field_string(1, subtype).unwrap();
                f.set_geometry(Geometry::from_wkt(&wkt).unwrap()).unwrap();
                f.create(&layer).unwrap();
            }
        }
        let dbf = std::fs::read(dir.path().join("changes.dbf")).unwrap();
        assert!(
            dbf.windows(4).any(|w| w == [0xCE, 0xA5, 0xB7, 0xA8]),
            "违法 in GBK in the DBF"
        );
        let _ = std::fs::remove_file(dir.path().join("changes.cpg"));
        let t = read_polygon_label(&path, &image, Outside::Ignore).unwrap().truth;
        assert_eq!(
            (t[(1, 1)], t[(1, 7)], t[(1, 15)]),
            (Truth::Change, Truth::NoChange, Truth::Ignore)
        );
    }

    #[test]
    fn change_polygons_that_cannot_be_placed_or_read_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let image = utm_image(dir.path());
        let message = |features: &[String]| {
            let path = polygons(dir.path(), features);
            read_polygon_label(&path, &image, Outside::NoChange)
                .err()
                .unwrap()
                .to_string()
        };
        let elsewhere = message(&[square("{}", [1000, 1005, 0, 5])]);
        assert!(
            elsewhere.contains("changes.geojson") && elsewhere.contains("none of its 1 polygons"),
            "{elsewhere}"
        );
        let unknown = message(&[square(r#"{"change": "maybe"}"#, [0, 5, 0, 5])]);
        assert!(
            unknown.contains("field change") && unknown.contains("maybe"),
            "{unknown}"
        );
        let png = dir.path().join("plain.png");
        DriverManager::get_driver_by_name("MEM")
            .unwrap()
            .create_with_band_type::<u8, _>("", 4, 4, 1)
            .and_then(|ds| {
                ds.create_copy(
                    &DriverManager::get_driver_by_name("PNG").unwrap(),
                    &png,
                    &Default::default(),
                )
            })
            .unwrap();
        let path = polygons(dir.path(), &[square("{}", [0, 5, 0, 5])]);
        let plain = read_polygon_label(&path, &png, Outside::NoChange)
            .err()
            .unwrap()
            .to_string();
        assert!(
            plain.contains("plain.png") && plain.contains("no georeferencing"),
            "{plain}"
        );
    }

    #[test]
    fn value_lists_parse_and_reject_junk() {
        assert_eq!(parse_values("255, 1", "--x").unwrap(), vec![255.0, 1.0]);
        assert!(parse_values("255,a", "--x").is_err());
        assert!(parse_values("", "--x").is_err());
    }

    fn pixel_label(w: usize, h: usize) -> Label {
        Label {
            path: PathBuf::from("label"),
            truth: Array2::from_elem((h, w), Truth::NoChange),
            georef: None,
        }
    }

    #[test]
    fn pixel_space_polygons_burn_by_pixel_centre() {
        landwatch_core::io::init_gdal();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.geojson");
        // A square from (2,1) to (5,3): pixel centres x 2.5..4.5, y 1.5..2.5 -> 3 x 2 px.
        let fc = r#"{"type":"FeatureCollection","landwatch:crs":"pixel","features":[
          {"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[2,1],[5,1],[5,3],[2,3],[2,1]]]}},
          {"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1],[0,0]]]}}]}"#;
        std::fs::write(&p, fc).unwrap();
        let pred = rasterise_patches(&p, &pixel_label(8, 5)).unwrap();
        assert_eq!(pred.patches, 2);
        assert_eq!(pred.ids.iter().filter(|&&v| v == 1).count(), 6);
        assert_eq!(pred.ids[(1, 2)], 1);
        assert_eq!(pred.ids[(2, 4)], 1);
        assert_eq!(pred.ids[(3, 4)], 0);
        assert_eq!(pred.ids[(0, 0)], 2);
    }

    #[test]
    fn lon_lat_polygons_need_a_georeferenced_label() {
        landwatch_core::io::init_gdal();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.geojson");
        std::fs::write(&p, r#"{"type":"FeatureCollection","features":[]}"#).unwrap();
        let err = rasterise_patches(&p, &pixel_label(4, 4)).err().unwrap();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("no georeferencing"), "{err}");
    }
}
