//! Access to files through GDAL: opening rasters with clear errors, reading windows into
//! `ndarray`, writing tiled GeoTIFFs, and atomic output folders.
//!
//! Everything format-specific stays here, so the kernels in [`crate::detect`] only ever see
//! `ndarray` arrays in reflectance units.

pub mod atomic;
pub mod hash;
pub mod ownership;
pub mod radiometry;
pub mod raster;
pub mod toml_location;
pub mod warp;

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
                    crate::gdal_messages::remember_gdal_failure(msg);
                    tracing::debug!(target: "gdal", code, "{msg}")
                }
                CplErrType::Warning => tracing::debug!(target: "gdal", code, "{msg}"),
                CplErrType::None | CplErrType::Debug => tracing::trace!(target: "gdal", code, "{msg}"),
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

/// A small GDAL block cache for the streaming pass: its image reads decode whole tiles in
/// parallel with dataset-level reads that bypass the cache, so the cache only buffers
/// `change.tif`'s blocks, and a small one makes GDAL compress them as the pass goes (on the
/// writer thread) instead of all at the end. An explicit `GDAL_CACHEMAX` in the environment wins.
pub fn size_block_cache_for_pass() {
    set_block_cache(64 << 20);
}

/// A block cache of about five block rows of both images for the chips, which read many
/// small overlapping windows (measured 10-15 % faster at 8192 than with the pass's cache).
pub fn size_block_cache_for_chips(width: usize, bands: usize, bytes_per_sample: usize, block_rows_px: usize) {
    const MIB: usize = 1 << 20;
    let working_set = block_rows_px * width * bands * bytes_per_sample * 2 + 64 * MIB;
    set_block_cache(working_set.clamp(128 * MIB, 1024 * MIB));
}

fn set_block_cache(bytes: usize) {
    if std::env::var_os("GDAL_CACHEMAX").is_some() {
        return;
    }
    // SAFETY: plain setter of a process-wide integer.
    unsafe { gdal_sys::GDALSetCacheMax64(bytes as i64) };
    tracing::debug!(cache_mib = bytes >> 20, "GDAL block cache sized");
}

/// Lowers the calling thread's scheduling priority (nice 10): for work a run needs only at its
/// end (input checksums, loading land-use layers), which then mostly runs when the pass leaves
/// a core idle instead of taking it from the pass (8192 px: ~0.2 s of a 5.3 s run). Not the
/// lowest nice: on a server loaded with other work, a nice-19 thread gets ~1 % of a core and
/// the run would wait for it at the end; at 10 it keeps ~10 %. Threads started from such a
/// thread inherit its nice value, so it must not be the first to use a thread pool.
pub fn yield_to_critical_path() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read their arguments; on Linux a thread id given as
    // PRIO_PROCESS sets that one thread's nice value.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}
