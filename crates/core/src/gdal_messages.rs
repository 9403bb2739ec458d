//! GDAL's error messages in words for the user: what failed, not a bare OGR error code or a
//! GDAL function name, with GDAL's own message even when it failed on one of its worker
//! threads. Below [`crate::error`] and [`crate::io`], which both use it.

use std::sync::Mutex;

/// GDAL's last error message on this thread, else the last failure GDAL reported on any thread
/// (its multi-threaded decoding fails on worker threads); empty when it left none.
pub(crate) fn gdal_last_error() -> String {
    // SAFETY: returns a pointer to a thread-local string owned by GDAL, valid until the next
    // GDAL call on this thread; it is copied at once.
    let here = unsafe {
        let p = gdal_sys::CPLGetLastErrorMsg();
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    if !here.trim().is_empty() {
        return here.trim().to_string();
    }
    // Only the wording of an error: a lock poisoned by a panic elsewhere leaves it without
    // GDAL's message (the caller then says GDAL gave no reason).
    LAST_FAILURE
        .lock()
        .map(|mut m| std::mem::take(&mut *m))
        .unwrap_or_default()
}

/// The last failure message GDAL reported, on whatever thread (see [`remember_gdal_failure`]).
static LAST_FAILURE: Mutex<String> = Mutex::new(String::new());

/// Called by the GDAL error handler for every failure, so that an error raised on one of GDAL's
/// worker threads can still be shown to the user.
pub(crate) fn remember_gdal_failure(msg: &str) {
    if let Ok(mut m) = LAST_FAILURE.lock() {
        m.clear();
        m.push_str(msg.trim());
    }
}

/// A GDAL error in words for the user: what failed (not a bare OGR error code or a GDAL
/// function name) and GDAL's own message when it left one.
pub fn gdal_reason(e: &gdal::errors::GdalError) -> String {
    use gdal::errors::GdalError as G;
    let with_said = |what: String| {
        let said = gdal_last_error();
        if said.is_empty() {
            what
        } else {
            format!("{what} ({said})")
        }
    };
    match e {
        G::OgrError { err, method_name } => with_said(format!("{} {}", ogr_action(method_name), ogr_error_words(*err))),
        G::CplError { msg, .. } | G::NullPointer { msg, .. } if !msg.trim().is_empty() => msg.trim().to_string(),
        G::CplError { .. } | G::NullPointer { .. } => with_said("GDAL failed without saying why".to_string()),
        other => with_said(other.to_string()),
    }
}

/// What an OGR function was doing, for people.
fn ogr_action(method: &str) -> &'static str {
    match method {
        "OGR_L_CreateFeature" | "OGR_L_SetFeature" => "cannot write a feature:",
        "OGR_L_CreateField" => "cannot add a field:",
        "OGR_L_StartTransaction" | "GDALDatasetStartTransaction" => "cannot start writing:",
        "OGR_L_CommitTransaction" | "GDALDatasetCommitTransaction" => "cannot finish writing:",
        "OGR_G_TransformTo" | "OGR_G_Transform" => "cannot reproject a geometry:",
        _ => "GDAL vector operation failed:",
    }
}

/// OGR's error codes (`ogr_core.h`) in words.
fn ogr_error_words(code: gdal_sys::OGRErr::Type) -> &'static str {
    match code {
        1 => "not enough data",
        2 => "out of memory",
        3 => "unsupported geometry type",
        4 => "operation not supported by this format",
        5 => "corrupt data",
        6 => "the write failed (disk full, or the file not writable?)",
        7 => "unsupported coordinate reference system",
        8 => "invalid handle",
        9 => "no such feature",
        _ => "unknown OGR error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdal::errors::GdalError;

    #[test]
    fn gdal_errors_are_told_in_words_not_codes_or_debug_text() {
        let full_disk = GdalError::OgrError {
            err: 6,
            method_name: "OGR_L_CreateFeature",
        };
        let msg = crate::Error::gdal("/out/patches.gpkg", "write patch P00001", full_disk).to_string();
        assert!(msg.contains("cannot write a feature"), "{msg}");
        assert!(msg.contains("disk full"), "{msg}");
        assert!(!msg.contains("OGR_L_CreateFeature") && !msg.contains("'6'"), "{msg}");
        let silent = GdalError::CplError {
            class: gdal_sys::CPLErr::CE_Failure,
            number: 1,
            msg: String::new(),
        };
        let msg = crate::Error::gdal("/out/change.tif", "cannot write a block", silent).to_string();
        assert!(
            msg.contains("without saying why") && !msg.contains("error msg"),
            "{msg}"
        );
        // A failure on one of GDAL's worker threads is still reported on the reading thread.
        std::thread::spawn(|| remember_gdal_failure("Cannot read 356133 bytes at offset 1039281"))
            .join()
            .expect("thread");
        assert_eq!(gdal_last_error(), "Cannot read 356133 bytes at offset 1039281");
    }
}
