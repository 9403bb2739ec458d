//! Hooks the crash tests use to stop a run at a chosen moment. They exist only with the
//! `test-hooks` cargo feature, which `scripts/test` turns on for the test build: the binary
//! that ships has no environment variable that makes it abort.

/// Aborts the process (as abruptly as `kill -9`) once a pipeline run has detected this many
/// pairs.
#[cfg(feature = "test-hooks")]
pub const ABORT_AFTER_PAIRS_ENV: &str = "LANDWATCH_TEST_ABORT_AFTER_TILES";

/// Called after each pair of a pipeline run with the number of pairs it detected so far;
/// aborts when [`ABORT_AFTER_PAIRS_ENV`] names that number. Does nothing without the feature.
#[cfg(feature = "test-hooks")]
pub fn pairs_detected(detected: usize) {
    let abort_after: Option<usize> = std::env::var(ABORT_AFTER_PAIRS_ENV).ok().and_then(|v| v.parse().ok());
    if detected > 0 && abort_after == Some(detected) {
        tracing::warn!("{ABORT_AFTER_PAIRS_ENV} reached: aborting the process");
        std::process::abort();
    }
}

/// Without the `test-hooks` feature: nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn pairs_detected(_detected: usize) {}
