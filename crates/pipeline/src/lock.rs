//! One run at a time per pipeline output (and per shard).
//!
//! The lock is an OS advisory lock (`flock` via fs4) on `state/<name>.lock`. The kernel drops it
//! when the holding process dies, however it dies (`kill -9`, OOM, power loss on a local disk), so a
//! crashed run never leaves the pipeline stuck; the pid written into the file is only there to make
//! the "locked" message useful.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use landwatch_core::{Error, Result};

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock or fails at once with [`Error::Locked`] (exit 3) naming the holder's pid.
    pub fn acquire(path: &Path) -> Result<RunLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "creating state folder", e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, "opening lock file", e))?;
        let got = fs4::fs_std::FileExt::try_lock_exclusive(&file).map_err(|e| Error::io(path, "locking", e))?;
        if !got {
            let holder = std::fs::read_to_string(path).unwrap_or_default();
            return Err(Error::Locked {
                path: path.to_path_buf(),
                msg: format!(
                    "another landwatch run holds this pipeline's lock (pid {}); try again when it ends",
                    holder.trim()
                ),
            });
        }
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| write!(file, "{}", std::process::id()))
            .map_err(|e| Error::io(path, "writing pid to lock file", e))?;
        Ok(RunLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_release() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state/run.lock");
        let first = RunLock::acquire(&p).unwrap();
        let e = RunLock::acquire(&p).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().contains(&std::process::id().to_string()));
        drop(first);
        RunLock::acquire(&p).unwrap();
    }
}
