//! Warping the after image onto the before image's grid (CRS, resolution, extent) with GDAL,
//! when the two differ. The result is a temporary tiled GeoTIFF read like any input.

use crate::io::raster::{Georef, RasterInfo};
use crate::io::warp::{self, WarpError};
use crate::{Error, Result};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::Dataset;
use std::path::{Path, PathBuf};

/// Bounding box `(xmin, ymin, xmax, ymax)` of a grid in its own CRS.
pub fn extent(info: &RasterInfo, g: &Georef) -> (f64, f64, f64, f64) {
    let gt = g.geo_transform;
    let xs = [gt[0], gt[0] + gt[1] * info.width as f64];
    let ys = [gt[3], gt[3] + gt[5] * info.height as f64];
    (xs[0].min(xs[1]), ys[0].min(ys[1]), xs[0].max(xs[1]), ys[0].max(ys[1]))
}

fn srs_of(wkt: &str, path: &Path) -> Result<SpatialRef> {
    let mut srs =
        SpatialRef::from_wkt(wkt).map_err(|e| Error::gdal(path, "cannot read the coordinate reference system", e))?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(srs)
}

/// Checks that the after image's footprint meets the before image's.
pub fn check_overlap(before: &RasterInfo, after: &RasterInfo) -> Result<()> {
    let (Some(gb), Some(ga)) = (&before.georef, &after.georef) else {
        return Ok(());
    };
    if gb.wkt.is_empty() || ga.wkt.is_empty() {
        return Err(Error::input(
            if gb.wkt.is_empty() { &before.path } else { &after.path },
            "has a geotransform but no coordinate reference system; assign one (gdal_edit.py -a_srs)",
        ));
    }
    let (sb, sa) = (srs_of(&gb.wkt, &before.path)?, srs_of(&ga.wkt, &after.path)?);
    let ct = CoordTransform::new(&sa, &sb)
        .map_err(|e| Error::gdal(&after.path, "cannot transform between the two CRSs", e))?;
    let (x0, y0, x1, y1) = extent(after, ga);
    let mut xs = [x0, x1, x1, x0];
    let mut ys = [y0, y0, y1, y1];
    let mut zs = [0.0; 4];
    ct.transform_coords(&mut xs, &mut ys, &mut zs)
        .map_err(|e| Error::gdal(&after.path, "cannot transform the image corners", e))?;
    let (bx0, by0, bx1, by1) = extent(before, gb);
    let (ax0, ax1) = fold_min_max(&xs);
    let (ay0, ay1) = fold_min_max(&ys);
    if ax1 <= bx0 || ax0 >= bx1 || ay1 <= by0 || ay0 >= by1 {
        return Err(Error::input(
            &after.path,
            format!(
                "does not overlap the before image {} (after covers x {ax0:.1}..{ax1:.1}, y {ay0:.1}..{ay1:.1}; before covers x {bx0:.1}..{bx1:.1}, y {by0:.1}..{by1:.1} in the before image's CRS)",
                before.path.display()
            ),
        ));
    }
    Ok(())
}

fn fold_min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)))
}

/// Warps `after` onto `before`'s grid (bilinear) into `dst`, a tiled GeoTIFF whose pixels
/// outside the after footprint are nodata 0.
pub fn warp_onto(after: &Dataset, after_info: &RasterInfo, before: &RasterInfo, dst: &Path) -> Result<PathBuf> {
    let g = before
        .georef
        .as_ref()
        .ok_or_else(|| Error::input(&before.path, "has no georeferencing; cannot warp onto it"))?;
    let (x0, y0, x1, y1) = extent(before, g);
    let args = [
        "-t_srs".to_string(),
        g.wkt.clone(),
        "-te".into(),
        format!("{x0}"),
        format!("{y0}"),
        format!("{x1}"),
        format!("{y1}"),
        "-ts".into(),
        before.width.to_string(),
        before.height.to_string(),
        "-r".into(),
        "bilinear".into(),
        "-dstnodata".into(),
        "0".into(),
        "-of".into(),
        "GTiff".into(),
        "-co".into(),
        "TILED=YES".into(),
        "-co".into(),
        "BLOCKXSIZE=512".into(),
        "-co".into(),
        "BLOCKYSIZE=512".into(),
        "-overwrite".into(),
    ];
    let name = dst
        .to_str()
        .ok_or_else(|| Error::input(dst, "path is not valid UTF-8; GDAL needs a UTF-8 name"))?;
    // The new dataset is dropped (closed, flushed) at once: the aligned pass reopens the file.
    warp::warp(after, name, &args).map_err(|e| match e {
        WarpError::Options(m) => Error::Other(format!("{}: invalid warp options: {m}", after_info.path.display())),
        WarpError::Failed(m) => Error::Other(format!(
            "{}: GDAL could not warp it onto the before grid ({m})",
            after_info.path.display()
        )),
    })?;
    Ok(dst.to_path_buf())
}
