//! Patches as the pipeline handles them between the detector's per-tile GeoJSON and the published
//! run: properties kept as the detector wrote them (a sorted JSON map), plus a `geo` geometry for
//! seam merging and tracking. Geometries that the pipeline does not change are written back exactly
//! as read, so a run's output only differs from the engine's where the pipeline decided something.

use std::path::Path;

use geo::MultiPolygon;
use serde_json::{Map, Value};

use super::archive::round7;
use landwatch_core::io::atomic::write_file;
use landwatch_core::{Error, Result};

/// One change patch.
#[derive(Debug, Clone)]
pub struct Patch {
    /// Grid id of the tile it was detected on (seams only join different tiles).
    pub tile: String,
    /// Checkpoint folder name of its before/after pair, `tiles/<pair>/` in the run.
    pub pair: String,
    pub after_date: String,
    /// The engine's id within its tile (for a deterministic order).
    pub source_id: String,
    pub props: Map<String, Value>,
    /// Geometry exactly as read (written back unchanged unless `geom` was recomputed).
    pub geometry_json: Value,
    pub geom: MultiPolygon<f64>,
    /// True when coordinates are pixels, not lon/lat (no georeference): never merged or tracked.
    pub pixel_crs: bool,
}

impl Patch {
    pub fn area_m2(&self) -> f64 {
        num(&self.props, "area_m2")
    }

    /// Replaces the geometry (after a merge), rounding to the output precision.
    pub fn set_geom(&mut self, g: MultiPolygon<f64>) {
        let rounded = round_geom(&g);
        let g = if rounded.0.len() == 1 {
            geojson::Geometry::from(&rounded.0[0])
        } else {
            geojson::Geometry::from(&rounded)
        };
        self.geometry_json = serde_json::to_value(&g).unwrap_or(Value::Null);
        self.geom = rounded;
    }
}

/// A numeric property, 0 when absent.
pub fn num(props: &Map<String, Value>, key: &str) -> f64 {
    props.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn round_geom(g: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    use geo::MapCoords;
    g.map_coords(|c| geo::coord! {x: round7(c.x), y: round7(c.y)})
}

/// Reads a detector's `patches.geojson` for one pair, rewriting chip paths to be relative to the
/// run folder (`tiles/<pair>/chips/…`).
pub fn read_tile_patches(path: &Path, tile: &str, pair: &str, after_date: &str) -> Result<Vec<Patch>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "reading patches", e))?;
    let fc: Value = serde_json::from_slice(&bytes).map_err(|e| Error::input(path, format!("not JSON: {e}")))?;
    let pixel_crs = fc.get("landwatch:crs").and_then(Value::as_str) == Some("pixel");
    let features = fc
        .get("features")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::input(path, "no `features` array"))?;
    features
        .iter()
        .map(|f| read_feature(f, path, tile, pair, after_date, pixel_crs))
        .collect()
}

fn read_feature(f: &Value, path: &Path, tile: &str, pair: &str, after_date: &str, pixel_crs: bool) -> Result<Patch> {
    let mut props = f
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| Error::input(path, "feature without properties"))?;
    let geometry_json = f
        .get("geometry")
        .cloned()
        .ok_or_else(|| Error::input(path, "feature without geometry"))?;
    let geom = to_multipolygon(&geometry_json)
        .ok_or_else(|| Error::input(path, "feature geometry is not a Polygon/MultiPolygon"))?;
    for key in ["chip_before", "chip_after"] {
        if let Some(Value::String(rel)) = props.get(key).filter(|v| v.as_str() != Some("")) {
            let moved = format!("tiles/{pair}/{rel}");
            props.insert(key.into(), Value::String(moved));
        }
    }
    let source_id = props.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(Patch {
        tile: tile.to_string(),
        pair: pair.to_string(),
        after_date: after_date.to_string(),
        source_id,
        props,
        geometry_json,
        geom,
        pixel_crs,
    })
}

/// GeoJSON Polygon / MultiPolygon → geo.
pub fn to_multipolygon(v: &Value) -> Option<MultiPolygon<f64>> {
    let g: geojson::Geometry = serde_json::from_value(v.clone()).ok()?;
    match geo::Geometry::<f64>::try_from(g).ok()? {
        geo::Geometry::Polygon(p) => Some(MultiPolygon(vec![p])),
        geo::Geometry::MultiPolygon(m) => Some(m),
        _ => None,
    }
}

/// Writes a FeatureCollection of patches (already sorted by id) atomically.
pub fn write_collection(path: &Path, patches: &[Patch]) -> Result<()> {
    let mut fc = Map::new();
    fc.insert("type".into(), Value::from("FeatureCollection"));
    if patches.iter().any(|p| p.pixel_crs) {
        fc.insert("landwatch:crs".into(), Value::from("pixel"));
    }
    let features: Vec<Value> = patches
        .iter()
        .map(|p| {
            serde_json::json!({
                "type": "Feature",
                "properties": Value::Object(p.props.clone()),
                "geometry": p.geometry_json.clone(),
            })
        })
        .collect();
    fc.insert("features".into(), Value::Array(features));
    let mut bytes =
        serde_json::to_vec_pretty(&Value::Object(fc)).map_err(|e| Error::Other(format!("serialising patches: {e}")))?;
    bytes.push(b'\n');
    write_file(path, &bytes)
}
