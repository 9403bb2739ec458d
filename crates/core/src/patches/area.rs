//! Areas in square metres, whatever the grid: projected grids scale by their linear unit,
//! geographic grids (e.g. EPSG:4326 Sentinel-2 tiles) are measured in a Lambert azimuthal
//! equal-area projection centred on the patch, plain images use a pixel size if one is known.

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use geo::{Area, Centroid, MapCoords};

pub enum AreaCalc {
    /// Grid units are `unit` metres.
    Projected { unit: f64 },
    /// Grid is lon/lat in this CRS.
    Geographic { srs: SpatialRef },
    /// No georeferencing: each pixel is `pixel_m` metres wide, or unknown (areas in pixels).
    Pixels { pixel_m: Option<f64> },
}

impl AreaCalc {
    pub fn new(wkt: Option<&str>, pixel_m: Option<f64>) -> Self {
        let Some(srs) = wkt.filter(|w| !w.is_empty()).and_then(|w| SpatialRef::from_wkt(w).ok()) else {
            return AreaCalc::Pixels { pixel_m };
        };
        if srs.is_projected() {
            AreaCalc::Projected {
                unit: srs.linear_units(),
            }
        } else {
            let mut srs = srs;
            srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
            AreaCalc::Geographic { srs }
        }
    }

    /// Whether areas are true square metres (false: square pixels).
    pub fn is_metric(&self) -> bool {
        !matches!(self, AreaCalc::Pixels { pixel_m: None })
    }

    /// Area in m² of `shape`, whose exact grid area is `grid_area`.
    pub fn area_m2(&self, shape: &geo::MultiPolygon<f64>, grid_area: f64) -> f64 {
        match self {
            AreaCalc::Projected { unit } => grid_area * unit * unit,
            AreaCalc::Pixels { pixel_m } => grid_area * pixel_m.map_or(1.0, |p| p * p),
            AreaCalc::Geographic { srs } => equal_area(srs, shape).unwrap_or(0.0),
        }
    }

    /// Square metres per unit of grid area, at a representative place (for thresholds).
    pub fn m2_per_grid_unit(&self, sample: &geo::MultiPolygon<f64>) -> f64 {
        match self {
            AreaCalc::Projected { unit } => unit * unit,
            AreaCalc::Pixels { pixel_m } => pixel_m.map_or(1.0, |p| p * p),
            AreaCalc::Geographic { .. } => {
                let a = sample.unsigned_area();
                if a > 0.0 {
                    self.area_m2(sample, a) / a
                } else {
                    1.0
                }
            }
        }
    }
}

fn equal_area(srs: &SpatialRef, shape: &geo::MultiPolygon<f64>) -> Option<f64> {
    let c = shape.centroid()?;
    let mut laea = SpatialRef::from_proj4(&format!(
        "+proj=laea +lat_0={} +lon_0={} +datum=WGS84 +units=m +no_defs",
        c.y(),
        c.x()
    ))
    .ok()?;
    laea.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let ct = CoordTransform::new(srs, &laea).ok()?;
    let projected = shape.try_map_coords(|co| {
        let (mut x, mut y, mut z) = ([co.x], [co.y], [0.0]);
        ct.transform_coords(&mut x, &mut y, &mut z)
            .map(|_| geo::coord! { x: x[0], y: y[0] })
    });
    projected.ok().map(|p| p.unsigned_area())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x0: f64, y0: f64, side: f64) -> geo::MultiPolygon<f64> {
        geo::MultiPolygon(vec![geo::Polygon::new(
            geo::LineString::from(vec![
                (x0, y0),
                (x0 + side, y0),
                (x0 + side, y0 + side),
                (x0, y0 + side),
                (x0, y0),
            ]),
            vec![],
        )])
    }

    #[test]
    fn geographic_area_of_a_small_square_near_nanning() {
        let wgs84 = SpatialRef::from_epsg(4326).unwrap().to_wkt().unwrap();
        let calc = AreaCalc::new(Some(&wgs84), None);
        // 0.001° × 0.001° at 22.8° N ≈ 111.32 km · cos(22.8°) × 110.75 km · 1e-6
        let a = calc.area_m2(&square(108.3, 22.8, 0.001), 1e-6);
        assert!((a - 11_360.0).abs() < 150.0, "area {a}");
    }

    #[test]
    fn projected_and_pixel_areas() {
        let cgcs = SpatialRef::from_epsg(4545).unwrap().to_wkt().unwrap();
        assert_eq!(
            AreaCalc::new(Some(&cgcs), None).area_m2(&square(0.0, 0.0, 10.0), 100.0),
            100.0
        );
        let px = AreaCalc::new(None, Some(2.0));
        assert_eq!(px.area_m2(&square(0.0, 0.0, 10.0), 100.0), 400.0);
        assert!(!AreaCalc::new(None, None).is_metric());
    }
}
