//! RFC 7946 GeoJSON of the patches: EPSG:4326 lon/lat, exterior rings counter-clockwise,
//! coordinates rounded to 1e-7° (≈1 cm), features sorted by id — the same inputs give the same
//! bytes. Inputs without georeferencing are written in pixel coordinates and say so.

use crate::patches::Patch;
use crate::{Error, Result};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use geo::orient::{Direction, Orient};
use geo::CoordsIter;
use serde_json::{json, Map, Value};
use std::path::Path;

/// 1 亩 in square metres.
pub const M2_PER_MU: f64 = 2000.0 / 3.0;

/// Converts outlines from the grid CRS to lon/lat.
pub struct ToLonLat {
    ct: Option<CoordTransform>,
}

impl ToLonLat {
    /// `wkt` empty or `None`: pixel coordinates pass through.
    pub fn new(wkt: Option<&str>, path: &Path) -> Result<Self> {
        let Some(w) = wkt.filter(|w| !w.is_empty()) else {
            return Ok(Self { ct: None });
        };
        let mut src = SpatialRef::from_wkt(w).map_err(|e| Error::gdal(path, "CRS", e))?;
        src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let mut dst = SpatialRef::from_epsg(4326).map_err(|e| Error::gdal(path, "EPSG:4326", e))?;
        dst.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let ct = CoordTransform::new(&src, &dst).map_err(|e| Error::gdal(path, "transform to EPSG:4326", e))?;
        Ok(Self { ct: Some(ct) })
    }

    /// Whether the grid has no CRS (outlines stay in pixel coordinates).
    pub fn is_pixel(&self) -> bool {
        self.ct.is_none()
    }

    /// `shape` in EPSG:4326 (unchanged on a grid without CRS).
    pub fn shape(&self, shape: &geo::MultiPolygon<f64>) -> Result<geo::MultiPolygon<f64>> {
        let Some(ct) = &self.ct else {
            return Ok(shape.clone());
        };
        // All vertices in one call: PROJ's per-call set-up costs more than a point.
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = shape.coords_iter().map(|c| (c.x, c.y)).unzip();
        let mut zs = vec![0.0; xs.len()];
        ct.transform_coords(&mut xs, &mut ys, &mut zs)
            .map_err(|e| Error::Other(format!("cannot transform a patch outline to EPSG:4326: {e}")))?;
        let mut out = xs.into_iter().zip(ys).map(|(x, y)| geo::coord! { x: x, y: y });
        let mut ring = |r: &geo::LineString<f64>| geo::LineString(out.by_ref().take(r.0.len()).collect());
        let polygons = shape
            .0
            .iter()
            .map(|p| {
                let exterior = ring(p.exterior());
                geo::Polygon::new(exterior, p.interiors().iter().map(&mut ring).collect())
            })
            .collect();
        Ok(geo::MultiPolygon(polygons))
    }
}

fn round7(v: f64) -> f64 {
    (v * 1e7).round() / 1e7
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// GeoJSON geometry of a lon/lat multipolygon (a Polygon when it has one part).
pub fn geometry_json(shape: &geo::MultiPolygon<f64>, pixel: bool) -> Value {
    // RFC 7946 wants exteriors counter-clockwise in lon/lat; in pixel space (y down) the
    // same visual orientation is the reverse.
    let dir = if pixel { Direction::Reversed } else { Direction::Default };
    let oriented = shape.orient(dir);
    let ring = |ls: &geo::LineString<f64>| -> Value {
        Value::Array(ls.coords().map(|c| json!([round7(c.x), round7(c.y)])).collect())
    };
    let poly = |p: &geo::Polygon<f64>| -> Value {
        let mut rings = vec![ring(p.exterior())];
        rings.extend(p.interiors().iter().map(ring));
        Value::Array(rings)
    };
    if oriented.0.len() == 1 {
        json!({"type": "Polygon", "coordinates": poly(&oriented.0[0])})
    } else {
        json!({"type": "MultiPolygon", "coordinates": Value::Array(oriented.0.iter().map(poly).collect())})
    }
}

/// Run-level facts every feature carries.
pub struct RunFacts {
    /// Model id (`name` and `version`).
    pub model: String,
    /// Acquisition date of the before image.
    pub before_date: Option<String>,
    /// Acquisition date of the after image.
    pub after_date: Option<String>,
}

/// The properties of one patch (see README "Patch fields").
pub fn properties(p: &Patch, centre: (f64, f64), run: &RunFacts) -> Map<String, Value> {
    let mut m = Map::new();
    let date8 = |d: &Option<String>| d.as_deref().map(|s| s.replace('-', "")).unwrap_or_default();
    let (qsx, hsx) = (date8(&run.before_date), date8(&run.after_date));
    let area_mu = p.area_m2 / M2_PER_MU;
    let seq = p.id.trim_start_matches('P');
    let jcbh = format!("{}{}{}", p.land.county_code, hsx, seq);
    let yes_no = |b: bool| if b { "是" } else { "否" };
    let features: Map<String, Value> = p.features.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let chips = p.chips.clone().unwrap_or_default();
    let entries: Vec<(&str, Value)> = vec![
        ("id", json!(p.id)),
        ("track_id", json!(p.id)),
        ("change_type", json!(p.change_type)),
        ("type_code", json!(type_code(&p.change_type))),
        ("category", json!(p.category)),
        ("confidence", json!(p.confidence)),
        ("change_confidence", json!(p.change_confidence)),
        ("evidence_rel", json!(p.evidence_rel)),
        ("area_m2", json!(round2(p.area_m2))),
        ("area_mu", json!(round2(area_mu))),
        ("cropland_area_m2", json!(round2(p.land.cropland_area_m2))),
        ("basic_farmland_area_m2", json!(round2(p.land.basic_farmland_area_m2))),
        ("before_date", json!(run.before_date)),
        ("after_date", json!(run.after_date)),
        ("model", json!(run.model)),
        ("features", Value::Object(features)),
        ("chip_before", json!(chips.0)),
        ("chip_after", json!(chips.1)),
        ("JCBH", json!(jcbh)),
        ("XZQDM", json!(p.land.county_code)),
        ("XZQMC", json!(p.land.county_name)),
        ("QSX", json!(qsx)),
        ("HSX", json!(hsx)),
        ("TBLX", json!(type_cn(&p.change_type))),
        ("DLBM", json!(p.land.dlbm)),
        ("DLMC", json!(p.land.dlmc)),
        ("JCMJ", json!(round2(p.area_m2))),
        ("JCMJ_MU", json!(round2(area_mu))),
        ("GDMJ", json!(round2(p.land.cropland_area_m2))),
        ("YJJBNTMJ", json!(round2(p.land.basic_farmland_area_m2))),
        ("SFYN", json!(yes_no(p.land.basic_farmland_area_m2 > 0.0))),
        ("SFHX", json!(yes_no(p.land.touches_red_line))),
        ("ZXX", json!(round7(centre.0))),
        ("ZXY", json!(round7(centre.1))),
        ("NYQK", json!("")),
        ("PDJG", json!("")),
        ("BZ", json!("")),
    ];
    for (k, v) in entries {
        m.insert(k.to_string(), v);
    }
    m
}

/// Numeric change type, the codes of `landwatch synth`'s truth rasters (and the peers' scorer):
/// 1 building, 2 pond, 3 orchard/forest, 4 greenhouse, 5 hardened; 0 anything else.
pub fn type_code(t: &str) -> u8 {
    match t {
        "building" => 1,
        "pond" => 2,
        "orchard_forest" => 3,
        "greenhouse" => 4,
        "hardened" => 5,
        _ => 0,
    }
}

/// The change type as county desks name it (TBLX).
pub fn type_cn(t: &str) -> &'static str {
    match t {
        "building" => "新增建筑",
        "hardened" => "推填土/硬化",
        "pond" => "坑塘",
        "orchard_forest" => "园地/林地",
        "greenhouse" => "大棚",
        "crop_cycle" => "农作物轮作",
        _ => "其他",
    }
}

/// Serialises the whole collection.
pub fn collection(features: Vec<Value>, pixel: bool) -> Value {
    let mut fc = Map::new();
    fc.insert("type".into(), json!("FeatureCollection"));
    if pixel {
        fc.insert("landwatch:crs".into(), json!("pixel"));
    }
    fc.insert("features".into(), Value::Array(features));
    Value::Object(fc)
}

/// A GeoJSON Feature of `geometry` with `props`.
pub fn feature(geometry: Value, props: Map<String, Value>) -> Value {
    json!({"type": "Feature", "geometry": geometry, "properties": Value::Object(props)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exterior_is_counter_clockwise_in_lon_lat() {
        let cw = geo::MultiPolygon(vec![geo::Polygon::new(
            geo::LineString::from(vec![(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0), (0.0, 0.0)]),
            vec![],
        )]);
        let g = geometry_json(&cw, false);
        let ring = g["coordinates"][0].as_array().unwrap();
        let pts: Vec<(f64, f64)> = ring
            .iter()
            .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
            .collect();
        let signed: f64 = pts.windows(2).map(|w| w[0].0 * w[1].1 - w[1].0 * w[0].1).sum();
        assert!(signed > 0.0, "exterior ring must be counter-clockwise");
        assert_eq!(g["type"], "Polygon");
    }

    #[test]
    fn every_vertex_lands_where_a_single_point_transform_puts_it() {
        crate::io::init_gdal();
        let utm = SpatialRef::from_epsg(32649).unwrap().to_wkt().unwrap();
        let ring = |x0: f64, y0: f64, d: f64| {
            geo::LineString::from(vec![(x0, y0), (x0 + d, y0), (x0 + d, y0 + d), (x0, y0 + d), (x0, y0)])
        };
        let shape = geo::MultiPolygon(vec![
            geo::Polygon::new(
                ring(500_000.0, 2_500_000.0, 90.0),
                vec![ring(500_010.0, 2_500_010.0, 5.0), ring(500_050.0, 2_500_050.0, 7.0)],
            ),
            geo::Polygon::new(ring(501_000.0, 2_501_000.0, 30.0), vec![]),
        ]);
        let got = ToLonLat::new(Some(&utm), Path::new("test.tif"))
            .unwrap()
            .shape(&shape)
            .unwrap();
        let mut src = SpatialRef::from_wkt(&utm).unwrap();
        src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let mut dst = SpatialRef::from_epsg(4326).unwrap();
        dst.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let ct = CoordTransform::new(&src, &dst).unwrap();
        let (before, after): (Vec<_>, Vec<_>) = (shape.coords_iter().collect(), got.coords_iter().collect());
        assert_eq!(before.len(), after.len());
        assert_eq!(got.0[0].interiors().len(), 2, "holes stay with their polygon");
        for (c, g) in before.iter().zip(&after) {
            let (mut x, mut y, mut z) = ([c.x], [c.y], [0.0]);
            ct.transform_coords(&mut x, &mut y, &mut z).unwrap();
            assert_eq!((x[0].to_bits(), y[0].to_bits()), (g.x.to_bits(), g.y.to_bits()));
            assert!((108.0..112.0).contains(&g.x) && (22.0..23.0).contains(&g.y), "{g:?}");
        }
    }
}
