//! The run's reference layers (land-use parcels 地类图斑, basic farmland 永久基本农田) for the
//! map: the features overlapping a lon/lat box, read through OGR from the files the run's
//! `run.json` names (`inputs.layers.landuse.path`, `inputs.layers.basic_farmland.path`),
//! reprojected to lon/lat (CGCS2000 / WGS 84 axis order: longitude first).

use std::path::Path;

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::LayerAccess;
use gdal::Dataset;
use serde_json::{json, Value};

use crate::store::{ReviewError, ReviewResult};
use crate::tiles::resolve_input;

/// The layers the map can show, by their name in `run.json` and in URLs.
pub const LAYERS: [&str; 2] = ["landuse", "basic_farmland"];
/// Attributes passed on to the map (land-use code and name, parcel number).
const FIELDS: [&str; 4] = ["DLBM", "DLMC", "TBBH", "BSM"];

/// The features of layer `which` of the run in `run_dir` that overlap `bbox` (lon/lat), at
/// most `limit`, as an RFC 7946 FeatureCollection.
pub fn features_in(run_dir: &Path, data_root: &Path, which: &str, bbox: [f64; 4], limit: usize) -> ReviewResult<Value> {
    if !LAYERS.contains(&which) {
        return Err(ReviewError::NotFound(format!(
            "no layer {which:?}: use one of {}",
            LAYERS.join(", ")
        )));
    }
    let manifest = run_dir.join("run.json");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| ReviewError::NotFound(format!("{}: cannot read the run's manifest ({e})", manifest.display())))?;
    let m: Value = serde_json::from_str(&text)
        .map_err(|e| ReviewError::BadInput(format!("{}: not valid JSON: {e}", manifest.display())))?;
    let raw = m
        .pointer(&format!("/inputs/layers/{which}/path"))
        .and_then(Value::as_str)
        .ok_or_else(|| ReviewError::NotFound(format!("this run was detected without a {which} layer")))?;
    let path = resolve_input(Path::new(raw), run_dir, data_root, &format!("{which} layer"))?;
    read_features(&path, bbox, limit)
}

fn read_features(path: &Path, [w, s, e, n]: [f64; 4], limit: usize) -> ReviewResult<Value> {
    let fail =
        |what: &str, err: gdal::errors::GdalError| ReviewError::BadInput(format!("{}: {what}: {err}", path.display()));
    let ds = Dataset::open(path).map_err(|e| fail("cannot open the layer", e))?;
    let mut layer = ds.layer(0).map_err(|e| fail("has no layer", e))?;
    let mut lonlat = SpatialRef::from_epsg(4490).map_err(|e| fail("EPSG:4490", e))?;
    lonlat.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    // Without a CRS the layer is taken to be in lon/lat already.
    let to_lonlat = match layer.spatial_ref() {
        Some(mut srs) => {
            srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
            let to_layer = CoordTransform::new(&lonlat, &srs).map_err(|e| fail("cannot reproject", e))?;
            let b = to_layer
                .transform_bounds(&[w, s, e, n], 21)
                .map_err(|e| fail("cannot reproject the box", e))?;
            layer.set_spatial_filter_rect(b[0], b[1], b[2], b[3]);
            Some(CoordTransform::new(&srs, &lonlat).map_err(|e| fail("cannot reproject", e))?)
        }
        None => {
            layer.set_spatial_filter_rect(w, s, e, n);
            None
        }
    };
    let fields: Vec<(&str, usize)> = FIELDS
        .iter()
        .filter_map(|f| layer.defn().field_index(f).ok().map(|i| (*f, i)))
        .collect();
    let mut features = Vec::new();
    let mut truncated = false;
    for f in layer.features() {
        if features.len() == limit {
            truncated = true;
            break;
        }
        let Some(g) = f.geometry() else { continue };
        let g = match &to_lonlat {
            Some(t) => g.transform(t).map_err(|e| fail("cannot reproject a feature", e))?,
            None => g.clone(),
        };
        let geometry: Value = g
            .json()
            .ok()
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or(Value::Null);
        let mut props = serde_json::Map::new();
        for (name, i) in &fields {
            if let Ok(Some(v)) = f.field_as_string(*i) {
                props.insert((*name).to_string(), Value::String(v));
            }
        }
        features.push(json!({ "type": "Feature", "geometry": geometry, "properties": props }));
    }
    Ok(json!({ "type": "FeatureCollection", "features": features, "truncated": truncated }))
}
