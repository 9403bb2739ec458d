//! From change components to polygons: the components come from the streaming labeller (see
//! [`super::label`], which also applies the minimum mapping unit, so a patch that straddles
//! processing blocks is one component), GDAL's polygoniser traces each one (8-connected, holes
//! kept), and GEOS simplifies the staircase outlines without creating self-intersections.

use super::label::Component;
use crate::io::raster::Window;
use crate::types::features::PixelSums;
use crate::{Error, Result};
use gdal::cpl::CslStringList;
use gdal::raster::Buffer;
use gdal::spatial_ref::{AxisMappingStrategy, SpatialRef};
use gdal::vector::{Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType};
use gdal::{DriverManager, GeoTransform};
use geo::{Area, BoundingRect};
use rayon::prelude::*;
use std::path::Path;

/// A traced change component before typing.
pub struct Traced {
    /// Outline in the grid's CRS (pixel coordinates when not georeferenced), simplified.
    pub shape: geo::MultiPolygon<f64>,
    /// Area of the unsimplified outline in grid units² (exact pixel area).
    pub grid_area: f64,
    /// Pixel window enclosing the component.
    pub pixel_box: Window,
    /// Feature values summed over the component's pixels.
    pub sums: PixelSums,
}

/// The geotransform used for vectors: the raster's, or identity for plain images (whose
/// outputs are in pixel coordinates by design).
pub fn grid_transform(georef: Option<&crate::io::raster::Georef>) -> GeoTransform {
    georef
        .map(|g| g.geo_transform)
        .unwrap_or([0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
}

/// Traces each component into its outline (GDAL's polygoniser on a scratch raster of the
/// component's box, 8-connected, holes kept), simplified by `simplify_px` pixels. Components
/// are traced in parallel; the output keeps their order.
pub fn trace(components: Vec<Component>, gt: GeoTransform, wkt: &str, simplify_px: f64) -> Result<Vec<Traced>> {
    let tol = simplify_px * gt[1].abs();
    let traced: Vec<Vec<Traced>> = components
        .into_par_iter()
        .map(|c| trace_one(c, gt, wkt, tol))
        .collect::<Result<_>>()?;
    Ok(traced.into_iter().flatten().collect())
}

fn trace_one(c: Component, gt: GeoTransform, wkt: &str, tol: f64) -> Result<Vec<Traced>> {
    let here = Path::new("<change mask>");
    let (h, w) = c.pixels.dim();
    let mem = DriverManager::get_driver_by_name("MEM").map_err(|e| Error::gdal(here, "MEM driver", e))?;
    let mut ds = mem
        .create_with_band_type::<u8, _>("", w, h, 1)
        .map_err(|e| Error::gdal(here, "scratch raster", e))?;
    let win = c.window;
    ds.set_geo_transform(&[
        gt[0] + win.x as f64 * gt[1] + win.y as f64 * gt[2],
        gt[1],
        gt[2],
        gt[3] + win.x as f64 * gt[4] + win.y as f64 * gt[5],
        gt[4],
        gt[5],
    ])
    .map_err(|e| Error::gdal(here, "scratch geotransform", e))?;
    let mut buf = Buffer::new((w, h), c.pixels.iter().map(|&v| u8::from(v)).collect());
    let mut band = ds.rasterband(1).map_err(|e| Error::gdal(here, "band 1", e))?;
    band.write((0, 0), (w, h), &mut buf)
        .map_err(|e| Error::gdal(here, "scratch write", e))?;
    let vec_drv = DriverManager::get_driver_by_name("Memory").map_err(|e| Error::gdal(here, "Memory driver", e))?;
    let mut vds = vec_drv
        .create_vector_only("")
        .map_err(|e| Error::gdal(here, "vector scratch", e))?;
    let srs = srs_from_wkt(wkt);
    let layer = vds
        .create_layer(LayerOptions {
            name: "changes",
            srs: srs.as_ref(),
            ty: OGRwkbGeometryType::wkbPolygon,
            options: None,
        })
        .map_err(|e| Error::gdal(here, "vector layer", e))?;
    layer
        .create_defn_fields(&[("DN", OGRFieldType::OFTInteger)])
        .map_err(|e| Error::gdal(here, "field", e))?;
    let mut opts = CslStringList::new();
    opts.set_name_value("8CONNECTED", "8")
        .map_err(|e| Error::gdal(here, "option", e))?;
    // SAFETY: band and layer are alive for the call; the band masks itself (0 = skipped).
    let rv = unsafe {
        gdal_sys::GDALPolygonize(
            band.c_rasterband(),
            band.c_rasterband(),
            layer.c_layer(),
            0,
            opts.as_ptr(),
            None,
            std::ptr::null_mut(),
        )
    };
    if rv != gdal_sys::CPLErr::CE_None {
        return Err(Error::Other("GDAL polygonize failed on a change component".into()));
    }
    let mut layer = vds.layer(0).map_err(|e| Error::gdal(here, "vector layer", e))?;
    let mut out = Vec::new();
    for f in layer.features() {
        // The polygoniser gives every feature its outline: one without would be a patch lost.
        let g = f
            .geometry()
            .ok_or_else(|| Error::Other(format!("GDAL polygonize gave a change component at {win} no outline")))?;
        let mut t = to_traced(g, gt, tol, here)?;
        t.sums = c.sums;
        out.push(t);
    }
    Ok(out)
}

/// The scratch layer's CRS. Only a label: the outlines are traced in grid coordinates either
/// way, so a CRS GDAL cannot parse changes nothing.
fn srs_from_wkt(wkt: &str) -> Option<SpatialRef> {
    if wkt.is_empty() {
        return None;
    }
    let mut srs = SpatialRef::from_wkt(wkt).ok()?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Some(srs)
}

/// One polygoniser outline as a traced patch: its exact area and pixel box, and the outline
/// simplified by `tol`. An outline that is not a polygon or has no extent is an error (the
/// polygoniser makes neither), not an empty patch.
fn to_traced(g: &Geometry, gt: GeoTransform, tol: f64, path: &Path) -> Result<Traced> {
    let raw = match g.to_geo().map_err(|e| Error::gdal(path, "geometry conversion", e))? {
        geo::Geometry::Polygon(p) => p,
        _ => {
            return Err(Error::Other(format!(
                "GDAL polygonize gave a {} instead of a polygon for a change component",
                g.geometry_name()
            )))
        }
    };
    let grid_area = raw.unsigned_area();
    let pixel_box = raw
        .bounding_rect()
        .map(|r| pixel_window(r, gt))
        .ok_or_else(|| Error::Other("GDAL polygonize gave an empty outline for a change component".into()))?;
    let simplified = if tol > 0.0 { simplify(g, tol) } else { None };
    let shape = match simplified {
        Some(geo::Geometry::Polygon(p)) => geo::MultiPolygon(vec![p]),
        Some(geo::Geometry::MultiPolygon(m)) => m,
        // Not simplified (no tolerance, or GEOS failed or gave no polygon): the exact outline,
        // which is the patch, only with its pixel staircase.
        _ => geo::MultiPolygon(vec![raw]),
    };
    Ok(Traced {
        shape,
        grid_area,
        pixel_box,
        sums: PixelSums::default(),
    })
}

/// The outline simplified by `tol` without creating self-intersections; `None` when GEOS fails
/// (logged: the patch then keeps its exact pixel outline).
fn simplify(g: &Geometry, tol: f64) -> Option<geo::Geometry<f64>> {
    match g.simplify_preserve_topology(tol).and_then(|s| s.to_geo()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "a patch outline could not be simplified; its exact pixel outline is kept");
            None
        }
    }
}

/// The pixel window covering a bounding rectangle given in grid coordinates (north-up grids).
pub fn pixel_window(r: geo::Rect<f64>, gt: GeoTransform) -> Window {
    let to_px = |x: f64, y: f64| ((x - gt[0]) / gt[1], (y - gt[3]) / gt[5]);
    let (ax, ay) = to_px(r.min().x, r.min().y);
    let (bx, by) = to_px(r.max().x, r.max().y);
    let (x0, x1) = (ax.min(bx).floor(), ax.max(bx).ceil());
    let (y0, y1) = (ay.min(by).floor(), ay.max(by).ceil());
    Window::new(
        x0 as isize,
        y0 as isize,
        (x1 - x0).max(1.0) as usize,
        (y1 - y0).max(1.0) as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_window_of_a_north_up_grid() {
        let gt = [1000.0, 2.0, 0.0, 5000.0, 0.0, -2.0];
        let r = geo::Rect::new(
            geo::coord! { x: 1010.0, y: 4980.0 },
            geo::coord! { x: 1020.0, y: 4990.0 },
        );
        assert_eq!(pixel_window(r, gt), Window::new(5, 5, 5, 5));
    }

    #[test]
    fn an_outline_that_is_no_polygon_or_empty_stops_the_run_instead_of_making_an_empty_patch() {
        let gt = [0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let here = Path::new("<change mask>");
        for (wkt, says) in [
            ("POINT (1 2)", "gave a POINT instead of a polygon"),
            ("LINESTRING (0 0,1 1)", "gave a LINESTRING instead of a polygon"),
            ("POLYGON EMPTY", "geometry conversion"),
        ] {
            let g = Geometry::from_wkt(wkt).expect("wkt");
            let err = to_traced(&g, gt, 0.5, here)
                .err()
                .unwrap_or_else(|| panic!("{wkt} accepted"));
            assert!(err.to_string().contains(says), "{wkt}: {err}");
            assert_eq!(err.exit_code(), 3, "{wkt}");
        }
        let square = Geometry::from_wkt("POLYGON ((0 0,0 3,3 3,3 0,0 0))").expect("wkt");
        let t = to_traced(&square, gt, 0.5, here).expect("a polygon traces");
        assert_eq!((t.grid_area, t.pixel_box), (9.0, Window::new(0, 0, 3, 3)));
        assert_eq!(t.shape.0.len(), 1);
    }
}
