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

/// Makes everything written under `dir` durable before it is renamed into place. A run that
/// wrote a few files (no chips) syncs each of them and each folder; one that wrote many (a
/// run writes thousands of chips) uses one `syncfs` for the whole file system instead, which
/// also waits for whatever else is being written there (measured: a 0.7 s run at 2048 px
/// waited 2.4 s for another folder being deleted), so it is kept for when it pays.
fn sync_tree(dir: &Path) -> Result<()> {
    const MAX_ONE_BY_ONE: usize = 256;
    // Where `syncfs` exists the listing can stop as soon as it is clearly many; elsewhere every
    // entry is synced one by one, so all of them are listed.
    let limit = if cfg!(target_os = "linux") {
        MAX_ONE_BY_ONE + 1
    } else {
        usize::MAX
    };
    let mut entries = Vec::new();
    list_tree(dir, &mut entries, limit)?;
    if entries.len() > MAX_ONE_BY_ONE && sync_file_system(dir)? {
        return Ok(());
    }
    // In parallel, so the file system can commit them together; all are synced before the
    // folder is renamed into place, so their order does not matter.
    use rayon::prelude::*;
    entries.par_iter().try_for_each(|p| {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(p, "cannot write to disk", e))
    })
}

/// `syncfs` on the file system holding `dir`; `false` where there is no such call.
fn sync_file_system(dir: &Path) -> Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(dir).map_err(|e| Error::io(dir, "cannot open to sync", e))?;
        // SAFETY: `syncfs` only reads the descriptor, which `f` keeps open for the call.
        if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
            return Err(Error::io(dir, "cannot sync", std::io::Error::last_os_error()));
        }
        Ok(true)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        Ok(false)
    }
}

/// The files and folders under `dir` (folders after their contents, `dir` last); stops
/// listing past `limit` entries.
fn list_tree(dir: &Path, out: &mut Vec<PathBuf>, limit: usize) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "cannot list to sync", e))?;
    for entry in rd {
        if out.len() > limit {
            break;
        }
        let entry = entry.map_err(|e| Error::io(dir, "cannot list to sync", e))?;
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(|e| Error::io(&path, "cannot list to sync", e))?
            .is_dir();
        if is_dir {
            list_tree(&path, out, limit)?;
        } else {
            out.push(path);
        }
    }
    out.push(dir.to_path_buf());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits a staged folder of `n` files in a subfolder; both ways of syncing end with
    /// every file in place.
    fn commit_with(n: usize) {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        let staging = StagingDir::new(&out).unwrap();
        let sub = staging.path().join("chips");
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..n {
            write_staged(&sub.join(format!("{i}.txt")), i.to_string().as_bytes()).unwrap();
        }
        let mut listed = Vec::new();
        list_tree(staging.path(), &mut listed, usize::MAX).unwrap();
        assert_eq!(listed.len(), n + 2, "files, their folder and the staged folder");
        assert_eq!(listed.last().map(PathBuf::as_path), Some(staging.path()));
        staging.commit().unwrap();
        for i in 0..n {
            assert_eq!(
                std::fs::read_to_string(out.join("chips").join(format!("{i}.txt"))).unwrap(),
                i.to_string()
            );
        }
    }

    #[test]
    fn a_few_files_are_synced_one_by_one_and_committed() {
        commit_with(3);
    }

    #[test]
    fn many_files_are_synced_at_once_and_committed() {
        commit_with(300);
    }
}
