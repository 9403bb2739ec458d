//! Atomic outputs: everything is written into a staging folder or temp file beside its final
//! place and renamed into place only when complete, so a crash never leaves a half-written
//! result that looks finished.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A staging folder next to `final_dir` that becomes `final_dir` on [`StagingDir::commit`].
/// Dropped without commit, it is removed.
pub struct StagingDir {
    staging: Option<tempfile::TempDir>,
    final_dir: PathBuf,
    /// Files already being flushed to disk (see [`StagingDir::flush_early`]).
    flushing: Vec<std::thread::JoinHandle<Result<()>>>,
}

impl StagingDir {
    pub fn new(final_dir: &Path) -> Result<Self> {
        let parent = parent_of(final_dir);
        std::fs::create_dir_all(&parent)
            .map_err(|e| Error::io(&parent, "cannot create the output's parent folder", e))?;
        let name = final_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{name}.staging-"))
            .tempdir_in(&parent)
            .map_err(|e| Error::io(&parent, "cannot create a staging folder", e))?;
        Ok(Self {
            staging: Some(staging),
            final_dir: final_dir.to_path_buf(),
            flushing: Vec::new(),
        })
    }

    /// Starts writing a finished staged file to disk on a thread of its own, so that the
    /// commit's sync does not wait for a large file written long before it.
    pub fn flush_early(&mut self, path: &Path) {
        let path = path.to_path_buf();
        self.flushing.push(std::thread::spawn(move || {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_data())
                .map_err(|e| Error::io(&path, "cannot write to disk", e))
        }));
    }

    /// The folder to write into.
    pub fn path(&self) -> &Path {
        self.staging.as_ref().map(|t| t.path()).unwrap_or(&self.final_dir)
    }

    /// Moves the staged folder into its final place, replacing an older result.
    pub fn commit(mut self) -> Result<PathBuf> {
        let Some(staging) = self.staging.take() else {
            return Ok(self.final_dir.clone());
        };
        for f in self.flushing.drain(..) {
            f.join()
                .unwrap_or_else(|_| Err(Error::Other("a disk flush stopped unexpectedly".into())))?;
        }
        let staged = staging.keep();
        sync_tree(&staged)?;
        replace_dir(&staged, &self.final_dir)?;
        Ok(self.final_dir.clone())
    }
}

/// Renames `staged` onto `target`; an existing `target` is moved aside first and removed after.
fn replace_dir(staged: &Path, target: &Path) -> Result<()> {
    let old = target.with_file_name(format!(
        ".{}.old-{}",
        target.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    let had_old = target.exists();
    if had_old {
        std::fs::rename(target, &old).map_err(|e| Error::io(target, "cannot move the previous output aside", e))?;
    }
    std::fs::rename(staged, target).map_err(|e| Error::io(target, "cannot move the finished output into place", e))?;
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

/// Makes everything written under `dir` durable before it is renamed into place: one
/// `syncfs` for the whole staged tree instead of an fsync per file (a run writes thousands of
/// chips).
fn sync_tree(dir: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(dir).map_err(|e| Error::io(dir, "cannot open to sync", e))?;
        // SAFETY: `syncfs` only reads the descriptor, which `f` keeps open for the call.
        if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
            return Err(Error::io(dir, "cannot sync", std::io::Error::last_os_error()));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = dir;
    Ok(())
}

/// Writes a file inside a [`StagingDir`]: the folder becomes visible only on commit, after
/// [`sync_tree`], so the file needs no temp file or fsync of its own.
pub fn write_staged(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, "cannot write", e))
}

/// Writes `bytes` to `path` through a temp file in the same folder and a rename.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let parent = parent_of(path);
    let mut tmp =
        tempfile::NamedTempFile::new_in(&parent).map_err(|e| Error::io(&parent, "cannot create a temp file", e))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io(path, "cannot write", e))?;
    tmp.persist(path)
        .map_err(|e| Error::io(path, "cannot move into place", e.error))?;
    Ok(())
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
