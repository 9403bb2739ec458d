//! GDAL's warp (`gdalwarp` as a library call), the one place landwatch calls it: aligning the
//! after image onto the before grid and rendering the review map's tiles both go through here.
//!
//! The `gdal` crate has no safe binding for `GDALWarp`, so this wraps the C call once, with
//! the option list built from plain strings and GDAL's own message on failure.

use std::ffi::CString;

use gdal::cpl::CslStringList;
use gdal::Dataset;

/// Why a warp failed, in words (GDAL's own message where it gave one).
#[derive(Debug)]
pub enum WarpError {
    /// An argument was refused before GDAL ran (a NUL byte, or options GDAL does not accept).
    Options(String),
    /// GDAL ran and produced no dataset.
    Failed(String),
}

impl std::fmt::Display for WarpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WarpError::Options(m) => write!(f, "invalid warp options: {m}"),
            WarpError::Failed(m) if m.is_empty() => f.write_str("GDAL gave no reason"),
            WarpError::Failed(m) => f.write_str(m),
        }
    }
}

/// Warps `src` with `gdalwarp`'s command-line `args` into `dst` (a file name, or an empty name
/// with `-of MEM`), and returns the new dataset.
pub fn warp(src: &Dataset, dst: &str, args: &[String]) -> Result<Dataset, WarpError> {
    let mut argv = CslStringList::new();
    for a in args {
        argv.add_string(a).map_err(|e| WarpError::Options(e.to_string()))?;
    }
    let c_dst = CString::new(dst).map_err(|_| WarpError::Options(format!("{dst}: the name contains a NUL byte")))?;
    // SAFETY: the option list, the source handle and the output name live through the call;
    // GDALWarp returns a new dataset (or null) that `from_c_dataset` takes ownership of.
    unsafe {
        let opts = gdal_sys::GDALWarpAppOptionsNew(argv.as_ptr(), std::ptr::null_mut());
        if opts.is_null() {
            return Err(WarpError::Options(crate::gdal_messages::gdal_last_error()));
        }
        let mut srcs = [src.c_dataset()];
        let mut usage_err = 0;
        let h = gdal_sys::GDALWarp(
            c_dst.as_ptr(),
            std::ptr::null_mut(),
            1,
            srcs.as_mut_ptr(),
            opts,
            &mut usage_err,
        );
        gdal_sys::GDALWarpAppOptionsFree(opts);
        if h.is_null() {
            return Err(WarpError::Failed(crate::gdal_messages::gdal_last_error()));
        }
        Ok(Dataset::from_c_dataset(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdal::DriverManager;

    fn small_image() -> Dataset {
        let drv = DriverManager::get_driver_by_name("MEM").expect("MEM driver");
        let mut ds = drv.create_with_band_type::<u8, _>("", 8, 8, 1).expect("MEM dataset");
        ds.set_geo_transform(&[500000.0, 2.0, 0.0, 2500000.0, 0.0, -2.0])
            .expect("geotransform");
        let srs = gdal::spatial_ref::SpatialRef::from_epsg(32649).expect("EPSG:32649");
        ds.set_spatial_ref(&srs).expect("CRS");
        ds
    }

    #[test]
    fn warps_into_memory_at_the_asked_size() {
        crate::io::init_gdal();
        let args: Vec<String> = ["-of", "MEM", "-ts", "4", "4", "-r", "bilinear", "-q"]
            .map(String::from)
            .to_vec();
        let out = warp(&small_image(), "", &args).expect("warp");
        assert_eq!(out.raster_size(), (4, 4));
    }

    #[test]
    fn options_gdal_refuses_are_an_options_error_with_its_message() {
        crate::io::init_gdal();
        let args: Vec<String> = ["-of", "MEM", "-no-such-option"].map(String::from).to_vec();
        match warp(&small_image(), "", &args) {
            Err(WarpError::Options(m)) => assert!(m.contains("no-such-option"), "{m}"),
            other => panic!("expected an options error, got {:?}", other.map(|d| d.raster_size())),
        }
    }
}
