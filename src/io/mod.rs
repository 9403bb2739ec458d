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
        // A bounded block cache keeps peak memory independent of image size; an operator can
        // still size it with the usual GDAL_CACHEMAX environment variable.
        if std::env::var_os("GDAL_CACHEMAX").is_none() {
            let _ = gdal::config::set_config_option("GDAL_CACHEMAX", "256");
        }
        // GDAL ≥ 3.6 decodes the tiles of one large read in parallel when this is set; the
        // streaming pass reads a whole strip of tiles at a time to use it.
        if std::env::var_os("GDAL_NUM_THREADS").is_none() {
            let n = rayon::current_num_threads().to_string();
            let _ = gdal::config::set_config_option("GDAL_NUM_THREADS", &n);
        }
    });
}

/// Sizes GDAL's block cache to hold about one block row of both input images. The streaming
/// pass reads each row of tiles once with multi-threaded decoding, which bypasses this cache;
/// calibration windows and chips (read in raster order) still use it. Memory then follows the
/// image width, not its area.
/// An explicit `GDAL_CACHEMAX` in the environment wins.
pub fn size_block_cache(width: usize, bands: usize, bytes_per_sample: usize, block_rows_px: usize) {
    if std::env::var_os("GDAL_CACHEMAX").is_some() {
        return;
    }
    const MIB: usize = 1 << 20;
    let working_set = block_rows_px * width * bands * bytes_per_sample * 2 + 64 * MIB;
    let bytes = working_set.clamp(128 * MIB, 1024 * MIB);
    // SAFETY: plain setter of a process-wide integer.
    unsafe { gdal_sys::GDALSetCacheMax64(bytes as i64) };
    tracing::debug!(cache_mib = bytes / MIB, "GDAL block cache sized");
}
