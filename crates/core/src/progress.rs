//! Progress bars, one style for every stage (fetch, detect, chips, eval). They are drawn only
//! when asked for and stderr is a terminal: a nightly run's stderr is a log, where a redrawn bar
//! would be noise, and its progress is in the log lines instead.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps labelled `what`; hidden (every call on it a no-op) unless `show` and
/// stderr is a terminal. The length may be set later, when it becomes known; `set_message`
/// shows a detail (the pair being read, say) after the count.
pub fn bar(len: u64, what: &str, show: bool) -> ProgressBar {
    if !show || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{prefix:>8} [{bar:40}] {pos}/{len} {elapsed} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    bar
}
