//! The rendered-tile cache on disk, bounded in size.
//!
//! Tiles are files under the cache folder; an in-memory index (built by one scan at start)
//! knows each file's size and when it was last used. When a new tile takes the total over
//! the bound, the least recently used tiles are deleted until the total is at 90 % of it,
//! so eviction runs once per many writes rather than on every one.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// PNG files start with these bytes; anything else in the cache (a file cut short by a
/// power cut) is treated as missing.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Rendered tiles on disk under `root`, at most `bound` bytes in all.
pub struct TileCache {
    root: PathBuf,
    bound: u64,
    index: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    entries: HashMap<PathBuf, Entry>,
    total: u64,
    clock: u64,
}

#[derive(Clone, Copy)]
struct Entry {
    size: u64,
    used: u64,
}

impl TileCache {
    /// Opens the cache in `root` (created when missing), indexing the tiles already there.
    pub fn open(root: &Path, bound: u64) -> std::io::Result<TileCache> {
        std::fs::create_dir_all(root)?;
        let mut index = Index::default();
        let mut files = Vec::new();
        list_files(root, &mut files);
        // Older files first, so the scan's order of use follows their modification times.
        files.sort_by_key(|(_, _, modified)| *modified);
        for (path, size, _) in files {
            index.insert(path, size);
        }
        let cache = TileCache {
            root: root.to_path_buf(),
            bound,
            index: Mutex::new(index),
        };
        cache.evict_if_over();
        Ok(cache)
    }

    /// The cached bytes of tile `key` (a relative path), if present and whole.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let path = self.root.join(key);
        let bytes = std::fs::read(&path).ok()?;
        if !bytes.starts_with(PNG_SIGNATURE) {
            return None;
        }
        let mut index = self.lock();
        index.clock += 1;
        let clock = index.clock;
        index
            .entries
            .entry(path)
            .or_insert(Entry {
                size: bytes.len() as u64,
                used: clock,
            })
            .used = clock;
        Some(bytes)
    }

    /// Stores tile `key`. Failures are logged and ignored: the cache only saves work.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let path = self.root.join(key);
        if let Err(e) = write_replacing(&path, bytes) {
            tracing::warn!("tile cache: cannot write {}: {e}", path.display());
            return;
        }
        self.lock().insert(path, bytes.len() as u64);
        self.evict_if_over();
    }

    /// Bytes held now.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // The index is a hint; a panic half-way through an update leaves it usable.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn evict_if_over(&self) {
        let mut index = self.lock();
        if index.total <= self.bound {
            return;
        }
        let target = self.bound / 10 * 9;
        let mut by_age: Vec<(u64, PathBuf)> = index.entries.iter().map(|(p, e)| (e.used, p.clone())).collect();
        by_age.sort_unstable();
        for (_, path) in by_age {
            if index.total <= target {
                break;
            }
            // Gone already (someone cleaned the folder) is as good as deleted.
            let _ = std::fs::remove_file(&path);
            if let Some(e) = index.entries.remove(&path) {
                index.total -= e.size;
            }
        }
    }
}

impl Index {
    fn insert(&mut self, path: PathBuf, size: u64) {
        self.clock += 1;
        let entry = Entry { size, used: self.clock };
        if let Some(old) = self.entries.insert(path, entry) {
            self.total -= old.size;
        }
        self.total += size;
    }
}

/// Writes through a temp file renamed into place, so readers never see half a tile. No
/// fsync: a tile lost to a power cut is simply rendered again.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Every file below `dir` with its size and modification time (unreadable entries skipped).
fn list_files(dir: &Path, out: &mut Vec<(PathBuf, u64, std::time::SystemTime)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() {
            list_files(&entry.path(), out);
        } else if meta.is_file() {
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            out.push((entry.path(), meta.len(), modified));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(n: usize) -> Vec<u8> {
        let mut v = PNG_SIGNATURE.to_vec();
        v.resize(n, 7);
        v
    }

    #[test]
    fn evicts_the_least_recently_used_tiles_past_the_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = TileCache::open(tmp.path(), 1000).unwrap();
        cache.put("a/0/0/0.png", &png(400));
        cache.put("a/1/0/0.png", &png(400));
        assert!(cache.get("a/0/0/0.png").is_some(), "a fresh tile is served");
        cache.put("a/1/1/0.png", &png(400));
        assert!(
            cache.total_bytes() <= 1000,
            "total {} over the bound",
            cache.total_bytes()
        );
        assert!(cache.get("a/0/0/0.png").is_some(), "the tile used last stays");
        assert!(cache.get("a/1/0/0.png").is_none(), "the least recently used tile goes");
        assert!(!tmp.path().join("a/1/0/0.png").exists());
    }

    #[test]
    fn reopening_counts_the_tiles_on_disk_and_ignores_cut_files() {
        let tmp = tempfile::tempdir().unwrap();
        TileCache::open(tmp.path(), 10_000)
            .unwrap()
            .put("r/2/1/1.png", &png(300));
        std::fs::write(tmp.path().join("r/2/1/2.png"), b"").unwrap();
        let cache = TileCache::open(tmp.path(), 10_000).unwrap();
        assert_eq!(cache.total_bytes(), 300);
        assert!(cache.get("r/2/1/2.png").is_none());
        let small = TileCache::open(tmp.path(), 100).unwrap();
        assert_eq!(small.total_bytes(), 0, "a smaller bound evicts at start");
    }
}
