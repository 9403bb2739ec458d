//! Access to files through GDAL: opening rasters with clear errors, reading windows into
//! `ndarray`, writing tiled GeoTIFFs, and atomic output folders.
//!
//! Everything format-specific stays here, so the kernels in [`crate::detect`] only ever see
//! `ndarray` arrays in reflectance units.

pub mod atomic;
pub mod raster;

use std::sync::Once;

/// Routes GDAL's own error messages into `tracing` (instead of raw stderr) and sizes its
/// block cache. Safe to call many times.
pub fn init_gdal() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gdal::config::set_error_handler(|class, code, msg| {
            use gdal::errors::CplErrType;
            match class {
                CplErrType::Failure | CplErrType::Fatal => {
                    tracing::debug!(target: "gdal", code, "{msg}")
                }
                CplErrType::Warning => tracing::debug!(target: "gdal", code, "{msg}"),
                _ => tracing::trace!(target: "gdal", code, "{msg}"),
            }
        });
        // A bounded block cache keeps peak memory independent of image size.
        let _ = gdal::config::set_config_option("GDAL_CACHEMAX", "256");
    });
}
