//! The seam between the pipeline and the detection engine.
//!
//! The pipeline only needs "detect this before/after pair into this folder"; hiding that behind
//! [`TileDetector`] lets the orchestration (checkpoints, seams, tracking, shards) be tested with a
//! small fake detector, and keeps the engine's own options out of the pipeline's code.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use super::config::{Bands, Layers};
use crate::{Error, Result};

/// One before/after pair to detect.
#[derive(Debug, Clone)]
pub struct TileJob<'a> {
    pub before: &'a Path,
    pub after: &'a Path,
    /// Folder the detector writes into (it exists and is empty).
    pub out_dir: &'a Path,
    pub before_date: &'a str,
    pub after_date: &'a str,
    pub model: Option<&'a Path>,
    pub layers: &'a Layers,
}

/// Something that turns a before/after pair into `out_dir/patches.geojson` (the run-folder
/// contract of notes/schema.md) plus whatever else it writes there (chips, change.tif, run.json).
pub trait TileDetector: Send + Sync {
    fn detect(&self, job: &TileJob) -> Result<()>;
}

/// The real detection engine (`landwatch::detect`).
#[derive(Debug, Default, Clone, Copy)]
pub struct EngineDetector;

impl TileDetector for EngineDetector {
    fn detect(&self, job: &TileJob) -> Result<()> {
        let _ = job;
        Err(Error::Other(
            "the detection engine (landwatch::detect) is not available in this build yet".into(),
        ))
    }
}

/// When the source's band order is not B,G,R,NIR, writes a VRT next to the detector's inputs that
/// presents the bands in landwatch's order; otherwise returns the tile itself.
pub fn band_ordered(tile: &Path, bands: &Bands, dir: &Path, name: &str) -> Result<PathBuf> {
    if bands.is_identity() {
        return Ok(tile.to_path_buf());
    }
    let vrt = dir.join(format!("{name}.vrt"));
    let order = [bands.blue, bands.green, bands.red, bands.nir];
    translate_to_vrt(tile, &vrt, &order)?;
    Ok(vrt)
}

/// `gdal_translate -of VRT -b … SRC DST` through the C API (the crate does not wrap it).
fn translate_to_vrt(src: &Path, dst: &Path, bands: &[u32]) -> Result<()> {
    let ds = gdal::Dataset::open(src).map_err(|e| Error::gdal(src, "opening tile", e))?;
    let mut argv = gdal::cpl::CslStringList::new();
    let mut args: Vec<String> = vec!["-of".into(), "VRT".into()];
    for b in bands {
        args.push("-b".into());
        args.push(b.to_string());
    }
    for a in &args {
        argv.add_string(a)
            .map_err(|e| Error::gdal(src, "building gdal_translate arguments", e))?;
    }
    let c_dst = CString::new(dst.to_string_lossy().as_bytes())
        .map_err(|_| Error::input(dst, "path contains a NUL byte"))?;
    // SAFETY: the options, the source handle and the path outlive the calls; the returned
    // handle is owned by us and closed once.
    unsafe {
        let opts = gdal_sys::GDALTranslateOptionsNew(argv.as_ptr(), std::ptr::null_mut());
        if opts.is_null() {
            return Err(Error::Other("GDALTranslateOptionsNew failed".into()));
        }
        let mut usage_err = 0;
        let out = gdal_sys::GDALTranslate(c_dst.as_ptr(), ds.c_dataset(), opts, &mut usage_err);
        gdal_sys::GDALTranslateOptionsFree(opts);
        if out.is_null() {
            return Err(Error::input(src, "cannot reorder bands (does it have enough bands?)"));
        }
        gdal_sys::GDALClose(out);
    }
    Ok(())
}
