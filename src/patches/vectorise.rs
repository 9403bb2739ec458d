//! From the binary change mask to polygons: GDAL's sieve filter enforces the minimum mapping
//! unit, GDAL's polygoniser traces 8-connected components (it works over the whole raster, so a
//! patch that straddles processing blocks comes out as one polygon, holes kept), and GEOS
//! simplifies the staircase outlines without creating self-intersections.

use crate::io::raster::Window;
use crate::{Error, Result};
use gdal::cpl::CslStringList;
use gdal::spatial_ref::{AxisMappingStrategy, SpatialRef};
use gdal::vector::{Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType};
use gdal::{Dataset, DatasetOptions, DriverManager, GdalOpenFlags, GeoTransform};
use geo::{Area, BoundingRect};
use std::path::Path;

/// A traced change component before typing.
pub struct Traced {
    /// Outline in the grid's CRS (pixel coordinates when not georeferenced), simplified.
    pub shape: geo::MultiPolygon<f64>,
    /// Area of the unsimplified outline in grid units² (exact pixel area).
    pub grid_area: f64,
    /// Pixel window enclosing the component.
    pub pixel_box: Window,
}

/// The geotransform used for vectors: the raster's, or identity for plain images.
pub fn grid_transform(georef: Option<&crate::io::raster::Georef>) -> GeoTransform {
    georef
        .map(|g| g.geo_transform)
        .unwrap_or([0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
}

/// Removes components smaller than `min_pixels` (8-connected) from the mask, in place.
pub fn sieve(mask_path: &Path, min_pixels: usize) -> Result<()> {
    if min_pixels <= 1 {
        return Ok(());
    }
    let ds = Dataset::open_ex(
        mask_path,
        DatasetOptions {
            open_flags: GdalOpenFlags::GDAL_OF_UPDATE | GdalOpenFlags::GDAL_OF_RASTER,
            ..Default::default()
        },
    )
    .map_err(|e| Error::gdal(mask_path, "cannot reopen the change mask", e))?;
    let band = ds.rasterband(1).map_err(|e| Error::gdal(mask_path, "band 1", e))?;
    // SAFETY: source and destination are the same valid band (GDAL allows in-place sieving);
    // no mask band, no progress callback.
    let rv = unsafe {
        let h = band.c_rasterband();
        gdal_sys::GDALSieveFilter(
            h,
            std::ptr::null_mut(),
            h,
            min_pixels as i32,
            8,
            std::ptr::null_mut(),
            None,
            std::ptr::null_mut(),
        )
    };
    if rv != gdal_sys::CPLErr::CE_None {
        return Err(Error::Other(format!(
            "{}: GDAL sieve filter failed",
            mask_path.display()
        )));
    }
    Ok(())
}

/// Traces the set pixels of the mask into polygons.
pub fn trace(mask_path: &Path, gt: GeoTransform, wkt: &str, simplify_px: f64) -> Result<Vec<Traced>> {
    let ds = Dataset::open(mask_path).map_err(|e| Error::gdal(mask_path, "cannot reopen the change mask", e))?;
    let band = ds.rasterband(1).map_err(|e| Error::gdal(mask_path, "band 1", e))?;
    let drv = DriverManager::get_driver_by_name("Memory").map_err(|e| Error::gdal(mask_path, "Memory driver", e))?;
    let mut mem = drv
        .create_vector_only("")
        .map_err(|e| Error::gdal(mask_path, "vector scratch", e))?;
    let srs = srs_from_wkt(wkt);
    let layer = mem
        .create_layer(LayerOptions {
            name: "changes",
            srs: srs.as_ref(),
            ty: OGRwkbGeometryType::wkbPolygon,
            options: None,
        })
        .map_err(|e| Error::gdal(mask_path, "vector layer", e))?;
    layer
        .create_defn_fields(&[("DN", OGRFieldType::OFTInteger)])
        .map_err(|e| Error::gdal(mask_path, "field", e))?;
    let mut opts = CslStringList::new();
    opts.set_name_value("8CONNECTED", "8")
        .map_err(|e| Error::gdal(mask_path, "option", e))?;
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
        return Err(Error::Other(format!("{}: GDAL polygonize failed", mask_path.display())));
    }
    let tol = simplify_px * gt[1].abs();
    let mut layer = mem.layer(0).map_err(|e| Error::gdal(mask_path, "vector layer", e))?;
    let mut out = Vec::new();
    for f in layer.features() {
        let Some(g) = f.geometry() else { continue };
        out.push(to_traced(g, gt, tol, mask_path)?);
    }
    Ok(out)
}

fn srs_from_wkt(wkt: &str) -> Option<SpatialRef> {
    if wkt.is_empty() {
        return None;
    }
    let mut srs = SpatialRef::from_wkt(wkt).ok()?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Some(srs)
}

fn to_traced(g: &Geometry, gt: GeoTransform, tol: f64, path: &Path) -> Result<Traced> {
    let raw = g.to_geo().map_err(|e| Error::gdal(path, "geometry conversion", e))?;
    let grid_area = raw.unsigned_area();
    let simplified = if tol > 0.0 {
        g.simplify_preserve_topology(tol)
            .and_then(|s| s.to_geo())
            .unwrap_or(raw.clone())
    } else {
        raw.clone()
    };
    let pixel_box = raw
        .bounding_rect()
        .map(|r| pixel_window(r, gt))
        .unwrap_or(Window::new(0, 0, 0, 0));
    let shape = match simplified {
        geo::Geometry::Polygon(p) => geo::MultiPolygon(vec![p]),
        geo::Geometry::MultiPolygon(m) => m,
        _ => match raw {
            geo::Geometry::Polygon(p) => geo::MultiPolygon(vec![p]),
            _ => geo::MultiPolygon(vec![]),
        },
    };
    Ok(Traced {
        shape,
        grid_area,
        pixel_box,
    })
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
}
