//! Reading what eval compares: a label raster (turned into [`Truth`] per pixel) and a
//! prediction, either a raster mask or landwatch's `patches.geojson`, put on the label's grid.
//!
//! Polygons are rasterised with GDAL's pixel-centre rule (a pixel belongs to a polygon when its
//! centre lies inside), each feature burnt with its own id so that every feature is one
//! predicted patch — as `../shared/peers/score.py` does for vector predictions.

use super::metrics::Truth;
use gdal::raster::{rasterize, RasterizeOptions};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::Geometry;
use gdal::{Dataset, DriverManager};
use landwatch_core::io::raster::{self, Georef};
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
    let drv = DriverManager::get_driver_by_name("MEM").map_err(|e| Error::gdal(path, "MEM driver", e))?;
    let mut ds = drv
        .create_with_band_type::<u32, _>("", w, h, 1)
        .map_err(|e| Error::gdal(path, "cannot create a scratch raster", e))?;
    ds.set_geo_transform(&gt)
        .map_err(|e| Error::gdal(path, "cannot set the scratch geotransform", e))?;
    if !geoms.is_empty() {
        let values: Vec<f64> = (1..=geoms.len()).map(|i| i as f64).collect();
        rasterize(&mut ds, &[1], geoms, &values, Some(RasterizeOptions::default()))
            .map_err(|e| Error::gdal(path, "cannot rasterise the patches", e))?;
    }
    let band = ds.rasterband(1).map_err(|e| Error::gdal(path, "scratch band", e))?;
    let buf = band
        .read_as::<u32>((0, 0), (w, h), (w, h), None)
        .map_err(|e| Error::gdal(path, "scratch read", e))?;
    buf.to_array()
        .map_err(|e| Error::gdal(path, "unexpected buffer shape", e))
}

#[cfg(test)]
mod tests {
    use super::*;

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
