//! Which output folders landwatch may replace.
//!
//! A run replaces its output folder as a whole (see [`super::atomic::StagingDir`]), so it must
//! never be pointed at a folder that holds anything else: `--out ~/data` would otherwise delete
//! the data. A folder landwatch wrote carries a marker file, [`OUTPUT_MARKER`], listing the
//! entries it wrote; only a folder whose every entry is in that list is ever replaced, and never
//! one that holds an input of the run. Anything else is refused (exit 2) before any work.
//!
//! The marker of a folder being staged is also locked for as long as its run lives: the kernel
//! drops the lock when the run dies, however it dies, so the next run to the same output can
//! tell a killed run's leftover staging folder (marker unlocked) from one a concurrent run is
//! still writing (marker locked) and removes only the former.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The marker file in every output folder landwatch writes.
pub const OUTPUT_MARKER: &str = ".landwatch-output";

/// What an output folder written before the marker existed could hold (a `detect` output, or a
/// `rerun` one): such a folder is still recognised as landwatch's when it holds one of
/// [`LEGACY_MANIFESTS`] and nothing else than these.
const LEGACY_OUTPUT_ENTRIES: &[&str] = &[
    "patches.geojson",
    "patches.gpkg",
    "patches_shp",
    "chips",
    "change.tif",
    "run.json",
    "manifest.json",
    "tiles",
];

/// The manifests of a `detect` and of a `rerun` output.
const LEGACY_MANIFESTS: &[&str] = &["run.json", "manifest.json"];

/// The marker's contents: who wrote the folder and which of its entries.
#[derive(serde::Serialize, serde::Deserialize)]
struct Marker {
    written_by: String,
    entries: Vec<String>,
}

const WRITTEN_BY: &str = "landwatch";

/// Fails (exit 2) unless `target` may be replaced by a new output: it does not exist, is an
/// empty folder, or is a folder landwatch wrote that holds nothing else and none of `inputs`.
pub fn check_replaceable(target: &Path, inputs: &[&Path]) -> Result<()> {
    let meta = match std::fs::symlink_metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(target, "cannot inspect the output folder", e)),
    };
    if !meta.is_dir() {
        return Err(Error::input(
            target,
            "the output path exists and is not a folder; choose a new folder for --out",
        ));
    }
    refuse_if_holds_an_input(target, inputs)?;
    let entries = entry_names(target)?;
    if entries.is_empty() {
        return Ok(());
    }
    match read_marker(target)? {
        Some(marker) => refuse_foreign_entries(target, &entries, &marker.entries),
        None => refuse_unless_legacy_output(target, &entries),
    }
}

/// Writes the marker into a staged output folder and locks it for as long as the returned
/// file is open (see the module docs).
pub fn claim(staged: &Path) -> Result<std::fs::File> {
    let path = staged.join(OUTPUT_MARKER);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, "cannot create the output marker", e))?;
    let locked = fs4::fs_std::FileExt::try_lock_exclusive(&file)
        .map_err(|e| Error::io(&path, "cannot lock the output marker", e))?;
    if !locked {
        return Err(Error::Other(format!(
            "{}: a fresh staging folder is locked by another process",
            path.display()
        )));
    }
    Ok(file)
}

/// Records in the marker the entries the staged folder now holds, just before it is committed.
pub fn seal(staged: &Path) -> Result<()> {
    let mut entries: Vec<String> = entry_names(staged)?
        .into_iter()
        .filter(|n| n != OUTPUT_MARKER)
        .collect();
    entries.sort();
    let marker = Marker {
        written_by: WRITTEN_BY.into(),
        entries,
    };
    let mut json = serde_json::to_vec_pretty(&marker).map_err(|e| Error::Other(e.to_string()))?;
    json.push(b'\n');
    let path = staged.join(OUTPUT_MARKER);
    std::fs::write(&path, json).map_err(|e| Error::io(&path, "cannot write the output marker", e))
}

/// Removes what killed runs to `target` left beside it: staging folders whose marker no live
/// run holds. Folders without a marker, or whose marker is still locked, are left alone.
pub fn remove_leftovers(target: &Path) -> Result<usize> {
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return Ok(0);
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let prefix = format!(".{}.staging-", name.to_string_lossy());
    let listing = match std::fs::read_dir(parent) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(parent, "cannot list the output's parent folder", e)),
    };
    let mut removed = 0;
    for entry in listing.flatten() {
        let path = entry.path();
        let is_ours = entry.file_name().to_string_lossy().starts_with(&prefix);
        if is_ours && entry.file_type().is_ok_and(|t| t.is_dir()) && is_abandoned(&path) {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, "cannot remove a killed run's leftover", e))?;
            tracing::info!(path = %path.display(), "removed a killed run's leftover staging folder");
            removed += 1;
        }
    }
    Ok(removed)
}

/// A staging folder whose marker exists and can be locked: the run that wrote it is gone.
fn is_abandoned(staged: &Path) -> bool {
    let Ok(file) = std::fs::File::open(staged.join(OUTPUT_MARKER)) else {
        return false;
    };
    fs4::fs_std::FileExt::try_lock_exclusive(&file).unwrap_or(false)
}

fn refuse_if_holds_an_input(target: &Path, inputs: &[&Path]) -> Result<()> {
    let Ok(target) = target.canonicalize() else {
        return Ok(());
    };
    for input in inputs {
        if input.canonicalize().is_ok_and(|p| p.starts_with(&target)) {
            return Err(Error::input(
                &target,
                format!(
                    "the output folder holds the input {}; a run replaces its output folder as a whole, so choose another --out",
                    input.display()
                ),
            ));
        }
    }
    Ok(())
}

fn refuse_foreign_entries(target: &Path, entries: &[String], written: &[String]) -> Result<()> {
    let foreign: Vec<&str> = entries
        .iter()
        .filter(|e| e.as_str() != OUTPUT_MARKER && !written.contains(e))
        .map(String::as_str)
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(Error::input(
        target,
        format!(
            "the output folder holds {} that landwatch did not write; a run replaces the folder as a whole, so move {} away or choose another --out",
            quote_list(&foreign),
            if foreign.len() == 1 { "it" } else { "them" }
        ),
    ))
}

fn refuse_unless_legacy_output(target: &Path, entries: &[String]) -> Result<()> {
    let only_outputs = entries.iter().all(|e| LEGACY_OUTPUT_ENTRIES.contains(&e.as_str()));
    if only_outputs && entries.iter().any(|e| LEGACY_MANIFESTS.contains(&e.as_str())) {
        return Ok(());
    }
    let shown: Vec<&str> = entries.iter().take(3).map(String::as_str).collect();
    Err(Error::input(
        target,
        format!(
            "the output folder exists, is not empty ({}{}) and was not written by landwatch (no {OUTPUT_MARKER}); a run replaces its output folder as a whole, so choose a new or empty folder for --out",
            quote_list(&shown),
            if entries.len() > shown.len() { ", …" } else { "" }
        ),
    ))
}

fn read_marker(dir: &Path) -> Result<Option<Marker>> {
    let path = dir.join(OUTPUT_MARKER);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, "cannot read the output marker", e)),
    };
    match serde_json::from_str::<Marker>(&text) {
        Ok(m) if m.written_by == WRITTEN_BY => Ok(Some(m)),
        _ => Err(Error::input(
            &path,
            "not a landwatch output marker; this folder was not written by landwatch, choose another --out",
        )),
    }
}

fn entry_names(dir: &Path) -> Result<Vec<String>> {
    let listing = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "cannot list the output folder", e))?;
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| Error::io(dir, "cannot list the output folder", e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

fn quote_list(names: &[&str]) -> String {
    names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
}

/// The folder that holds `path` (where an output is staged and swapped in), or `.`.
pub fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_with(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        dir
    }

    #[test]
    fn a_missing_or_empty_folder_may_be_replaced() {
        let dir = tempfile::tempdir().unwrap();
        check_replaceable(&dir.path().join("new"), &[]).unwrap();
        check_replaceable(dir.path(), &[]).unwrap();
    }

    #[test]
    fn a_folder_of_someone_elses_files_is_refused() {
        let dir = folder_with(&["important.txt"]);
        let err = check_replaceable(dir.path(), &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("important.txt"), "{err}");
    }

    #[test]
    fn a_file_is_refused() {
        let dir = folder_with(&["f"]);
        let err = check_replaceable(&dir.path().join("f"), &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("not a folder"), "{err}");
    }

    #[test]
    fn a_sealed_output_may_be_replaced_until_something_foreign_is_added() {
        let dir = folder_with(&["patches.geojson", "run.json"]);
        seal(dir.path()).unwrap();
        check_replaceable(dir.path(), &[]).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let err = check_replaceable(dir.path(), &[]).unwrap_err();
        assert!(err.to_string().contains("'notes.txt'"), "{err}");
    }

    #[test]
    fn an_output_holding_an_input_is_refused_even_when_sealed() {
        let dir = folder_with(&["before.tif"]);
        seal(dir.path()).unwrap();
        let input = dir.path().join("before.tif");
        let err = check_replaceable(dir.path(), &[&input]).unwrap_err();
        assert!(err.to_string().contains("holds the input"), "{err}");
    }

    #[test]
    fn an_output_written_before_the_marker_is_recognised_by_its_files_alone() {
        check_replaceable(folder_with(&["run.json", "patches.geojson", "change.tif"]).path(), &[]).unwrap();
        check_replaceable(folder_with(&["manifest.json", "patches.geojson", "tiles"]).path(), &[]).unwrap();
        assert!(check_replaceable(folder_with(&["patches.geojson"]).path(), &[]).is_err());
        assert!(check_replaceable(folder_with(&["run.json", "thesis.docx"]).path(), &[]).is_err());
    }

    #[test]
    fn a_foreign_marker_is_refused() {
        let dir = folder_with(&["a"]);
        std::fs::write(
            dir.path().join(OUTPUT_MARKER),
            b"{\"written_by\":\"other\",\"entries\":[\"a\"]}",
        )
        .unwrap();
        assert_eq!(check_replaceable(dir.path(), &[]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn only_abandoned_staging_folders_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("out");
        let abandoned = root.path().join(".out.staging-dead");
        let live = root.path().join(".out.staging-live");
        let unmarked = root.path().join(".out.staging-nomarker");
        let other = root.path().join(".other.staging-dead");
        for d in [&abandoned, &live, &unmarked, &other] {
            std::fs::create_dir(d).unwrap();
        }
        drop(claim(&abandoned).unwrap());
        drop(claim(&other).unwrap());
        let _held = claim(&live).unwrap();
        assert_eq!(remove_leftovers(&target).unwrap(), 1);
        assert!(!abandoned.exists());
        assert!(live.exists() && unmarked.exists() && other.exists());
    }
}
