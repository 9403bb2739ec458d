//! Atomic outputs: everything is written into a staging folder or temp file beside its final
//! place and renamed into place only when complete, so a crash never leaves a half-written
//! result that looks finished.

use super::ownership::{self, parent_of};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A staging folder next to `final_dir` that becomes `final_dir` on [`StagingDir::commit`].
/// Dropped without commit, it is removed. Only a folder landwatch wrote is ever replaced (see
/// [`ownership`]).
pub struct StagingDir {
    staging: Option<tempfile::TempDir>,
    final_dir: PathBuf,
    /// The staged folder's marker, locked while this run lives.
    _claim: std::fs::File,
    /// The run's inputs, which the replaced folder must not hold.
    inputs: Vec<PathBuf>,
    /// Files already being flushed to disk (see [`StagingDir::flush_early`]).
    flushing: Vec<std::thread::JoinHandle<Result<()>>>,
}

impl StagingDir {
    /// Checks that `final_dir` may be replaced (it is new, empty or landwatch's own output and
    /// holds none of `inputs`), removes what killed runs to it left behind, and stages beside it.
    pub fn new(final_dir: &Path, inputs: &[&Path]) -> Result<Self> {
        ownership::check_replaceable(final_dir, inputs)?;
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
        let claim = ownership::claim(staging.path())?;
        ownership::remove_leftovers(final_dir)?;
        Ok(Self {
            staging: Some(staging),
            final_dir: final_dir.to_path_buf(),
            _claim: claim,
            inputs: inputs.iter().map(|p| p.to_path_buf()).collect(),
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
        ownership::seal(staging.path())?;
        // The folder may have changed since the run started: look again right before replacing.
        let inputs: Vec<&Path> = self.inputs.iter().map(PathBuf::as_path).collect();
        ownership::check_replaceable(&self.final_dir, &inputs)?;
        let staged = staging.keep();
        sync_tree(&staged)?;
        replace_dir(&staged, &self.final_dir)?;
        Ok(self.final_dir.clone())
    }
}

/// Puts `staged` in `target`'s place. Where the file system can swap two folders in one step
/// (Linux `renameat2(RENAME_EXCHANGE)`), `target` is never missing, not even for a moment;
/// elsewhere the old folder is moved aside first. The old folder, now at `staged`'s name and
/// still carrying the marker checked before the swap, is removed after; if the run is killed
/// before that, the next run to `target` removes it as a leftover.
fn replace_dir(staged: &Path, target: &Path) -> Result<()> {
    if target.exists() && swap_dirs(staged, target)? {
        sync_parent(target)?;
        return std::fs::remove_dir_all(staged).map_err(|e| Error::io(staged, "cannot remove the previous output", e));
    }
    if target.exists() {
        // An empty folder or one that cannot be swapped: a rename replaces an empty folder in
        // one step; a non-empty one is moved aside to the staging name first.
        if std::fs::rename(staged, target).is_ok() {
            return sync_parent(target);
        }
        let mut aside_name = staged.file_name().unwrap_or_default().to_os_string();
        aside_name.push("-old");
        let aside = staged.with_file_name(aside_name);
        std::fs::rename(target, &aside).map_err(|e| Error::io(target, "cannot move the previous output aside", e))?;
        std::fs::rename(staged, target)
            .map_err(|e| Error::io(target, "cannot move the finished output into place", e))?;
        sync_parent(target)?;
        return std::fs::remove_dir_all(&aside).map_err(|e| Error::io(&aside, "cannot remove the previous output", e));
    }
    std::fs::rename(staged, target).map_err(|e| Error::io(target, "cannot move the finished output into place", e))?;
    sync_parent(target)
}

/// Swaps two folders atomically; `false` where the system or file system cannot.
fn swap_dirs(a: &Path, b: &Path) -> Result<bool> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|_| Error::input(p, "the path contains a NUL byte"))
        };
        let (ca, cb) = (c(a)?, c(b)?);
        // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::ENOTSUP) => Ok(false),
            _ => Err(Error::io(b, "cannot move the finished output into place", err)),
        };
    }
    #[allow(unreachable_code)]
    {
        let _ = (a, b);
        Ok(false)
    }
}

/// Makes the rename itself durable: the entry lives in the parent folder.
fn sync_parent(target: &Path) -> Result<()> {
    let parent = parent_of(target);
    std::fs::File::open(&parent)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&parent, "cannot write to disk", e))
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

/// Writes `bytes` to `path` durably and atomically: a temp file in the same folder (created if
/// missing), fsynced, renamed over `path`, then the folder fsynced so the rename survives a
/// power cut. Readers see the old bytes or the new, never a part. The one home for this:
/// archive catalogues, checkpoints, manifests, eval reports and review exports all use it.
///
/// The file gets the permissions a plain write would give it: a replaced file keeps its own,
/// a new one the process's umask applied to 0666 (a temp file alone is 0600, which left models
/// and catalogues unreadable to the review server's or a colleague's account).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let parent = parent_of(path);
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, "cannot create the folder", e))?;
    let mut tmp = temp_file_beside(path, &parent)?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io(path, "cannot write", e))?;
    tmp.persist(path)
        .map_err(|e| Error::io(path, "cannot move into place", e.error))?;
    sync_parent(path)
}

/// A temp file in `parent` with the permissions [`write_file`] promises for `path`.
fn temp_file_beside(path: &Path, parent: &Path) -> Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Creation applies the umask to this mode, as it does for a plain write.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder
        .tempfile_in(parent)
        .map_err(|e| Error::io(parent, "cannot create a temp file", e))?;
    if let Ok(existing) = std::fs::metadata(path) {
        tmp.as_file()
            .set_permissions(existing.permissions())
            .map_err(|e| Error::io(tmp.path(), "cannot give the new file the old one's permissions", e))?;
    }
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_creates_its_folder_and_replaces_whole_files() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("new/deeper/state.json");
        write_file(&path, b"first").unwrap();
        write_file(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temp file is left beside the output");
    }

    #[cfg(unix)]
    #[test]
    fn write_file_gives_new_files_a_plain_writes_permissions_and_keeps_a_replaced_ones() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let root = tempfile::tempdir().unwrap();
        let (plain, atomic) = (root.path().join("plain.json"), root.path().join("atomic.json"));
        std::fs::write(&plain, b"{}").unwrap();
        write_file(&atomic, b"{}").unwrap();
        assert_eq!(
            mode(&atomic),
            mode(&plain),
            "a new file: 0666 less the umask, as a plain write"
        );
        std::fs::set_permissions(&atomic, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_file(&atomic, b"{\"v\": 2}").unwrap();
        assert_eq!(mode(&atomic), 0o640, "a replaced file keeps its permissions");
    }

    /// Commits a staged folder of `n` files in a subfolder; both ways of syncing end with
    /// every file in place.
    fn commit_with(n: usize) {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        let staging = StagingDir::new(&out, &[]).unwrap();
        let sub = staging.path().join("chips");
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..n {
            write_staged(&sub.join(format!("{i}.txt")), i.to_string().as_bytes()).unwrap();
        }
        let mut listed = Vec::new();
        list_tree(staging.path(), &mut listed, usize::MAX).unwrap();
        assert_eq!(
            listed.len(),
            n + 3,
            "files, their folder, the marker and the staged folder"
        );
        assert_eq!(listed.last().map(PathBuf::as_path), Some(staging.path()));
        staging.commit().unwrap();
        assert!(out.join(ownership::OUTPUT_MARKER).exists());
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
