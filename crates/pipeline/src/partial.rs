//! Temporary files in `archive/tmp/`, safe when several processes share one archive.
//!
//! A file being downloaded or copied into the archive is named `<key>.<pid>-<n>.part`: `key` says
//! what it is (a hash of the URL or source path), `pid` and a per-process counter `n` make the
//! name unique per process and per task. So two pipelines fetching the same tile into a shared
//! archive never write, truncate or rename each other's file; whichever stores its verified copy
//! second finds the content address taken by the same bytes, which is success.
//!
//! HTTP Range resume needs the opposite: a later process must continue a partial download that a
//! crashed one left behind. The owner of a partial file holds an exclusive `flock` on it for as
//! long as it lives, and the kernel drops that lock when the process dies, however it dies. So a
//! `<key>.*.part` file whose lock can be taken belongs to no living process, and
//! [`Partial::claim`] takes it over by renaming it to its own unique name while holding the lock:
//! the rename succeeds for one claimer only, and a file is only ever resumed by the task that owns
//! it. A new file is created under a `.new` name, locked, and only then renamed to `.part`, so no
//! claimer can see a living owner's file before it is locked (claimers ignore `.new` names; a
//! crash in that instant leaves an empty one behind).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fs4::fs_std::FileExt;

/// A temporary file owned (locked) by this task; removed on drop unless it was stored.
#[derive(Debug)]
pub struct Partial {
    file: File,
    path: PathBuf,
    kept: bool,
}

/// The next unique `<key>.<pid>-<n>` stem of this process.
fn own_stem(key: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{key}.{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Whether `path` still names the file `file` has open.
fn names(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Partial {
    /// A new, empty temporary file for `key` in `dir`, locked by this task.
    pub fn create(dir: &Path, key: &str) -> io::Result<Partial> {
        let stem = own_stem(key);
        let fresh = dir.join(format!("{stem}.new"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&fresh)?;
        if !file.try_lock_exclusive()? {
            return Err(io::Error::other(
                "a file this process just created is locked by another",
            ));
        }
        let path = dir.join(format!("{stem}.part"));
        std::fs::rename(&fresh, &path)?;
        Ok(Partial {
            file,
            path,
            kept: false,
        })
    }

    /// Takes over a temporary file for `key` left by a process that died, if there is one: it is
    /// renamed to this task's own name under the lock, so no other task can write it.
    pub fn claim(dir: &Path, key: &str) -> io::Result<Option<Partial>> {
        let prefix = format!("{key}.");
        let mut candidates: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".part"))
                })
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        candidates.sort();
        for candidate in candidates {
            if let Some(p) = Self::take_over(dir, key, &candidate)? {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// Claims one abandoned file (None: it has a living owner, or another claimer won).
    fn take_over(dir: &Path, key: &str, candidate: &Path) -> io::Result<Option<Partial>> {
        let file = match OpenOptions::new().read(true).write(true).open(candidate) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // Locked: its owner lives. Lockable but renamed or replaced since we opened it: another
        // claimer took it (and may have stored it already).
        if !file.try_lock_exclusive()? || !names(candidate, &file) {
            return Ok(None);
        }
        let path = dir.join(format!("{}.part", own_stem(key)));
        match std::fs::rename(candidate, &path) {
            Ok(()) => Ok(Some(Partial {
                file,
                path,
                kept: false,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A claimed file to resume, or a new empty one.
    pub fn claim_or_create(dir: &Path, key: &str) -> io::Result<Partial> {
        match Self::claim(dir, key)? {
            Some(p) => Ok(p),
            None => Self::create(dir, key),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Bytes written so far.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Whether nothing is written yet (for the tests: the pipeline reads [`Partial::len`]).
    #[cfg(test)]
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Empties the file, to start over.
    pub fn truncate(&self) -> io::Result<()> {
        self.file.set_len(0)
    }

    /// Called once the file was moved into the archive: nothing to remove on drop. The lock is
    /// still held until the value is dropped, after the catalogue record is written.
    pub fn mark_stored(&mut self) {
        self.kept = true;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn names_are_unique_per_task() {
        let d = tempfile::tempdir().unwrap();
        let a = Partial::create(d.path(), "k").unwrap();
        let b = Partial::create(d.path(), "k").unwrap();
        assert_ne!(a.path(), b.path());
        assert!(a.path().to_str().unwrap().contains(&std::process::id().to_string()));
        drop((a, b));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "removed on drop");
    }

    #[test]
    fn a_living_owners_file_is_never_claimed() {
        let d = tempfile::tempdir().unwrap();
        let mut owner = Partial::create(d.path(), "k").unwrap();
        owner.file().write_all(b"half").unwrap();
        assert!(Partial::claim(d.path(), "k").unwrap().is_none());
        let other = Partial::claim_or_create(d.path(), "k").unwrap();
        assert_ne!(other.path(), owner.path());
        assert!(other.is_empty().unwrap());
        assert_eq!(std::fs::read(owner.path()).unwrap(), b"half");
        owner.mark_stored();
    }

    #[test]
    fn an_abandoned_file_is_claimed_once_with_its_bytes() {
        let d = tempfile::tempdir().unwrap();
        // What a process killed mid-download leaves: an unlocked `<key>.<pid>-<n>.part`.
        let left = d.path().join("k.4194303-7.part");
        std::fs::write(&left, b"first 40%").unwrap();
        std::fs::write(d.path().join("other.1-1.part"), b"x").unwrap();
        let mine = Partial::claim(d.path(), "k").unwrap().expect("claimed");
        assert!(!left.exists(), "renamed to the claimer's own name");
        assert_eq!(std::fs::read(mine.path()).unwrap(), b"first 40%");
        assert_eq!(mine.len().unwrap(), 9);
        assert!(Partial::claim(d.path(), "k").unwrap().is_none(), "claimed once");
        assert!(d.path().join("other.1-1.part").exists(), "other keys untouched");
    }
}
