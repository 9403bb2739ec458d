//! Resolving a patch's chip path to a file that may be served.
//!
//! Chip paths come from `patches.geojson`, i.e. from a file on disk that the server did not
//! write, so they are untrusted. A chip is served only when its path is relative, never steps
//! up (`..`), names an image, and — after resolving symlinks — still lies inside both the run
//! folder and the server's data folder.

use std::path::{Component, Path, PathBuf};

use super::store::ReviewError;

/// Image types the server serves, by extension.
const IMAGE_TYPES: [(&str, &str); 4] = [
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("webp", "image/webp"),
];

/// A chip file checked to be servable, with its MIME type.
#[derive(Debug)]
pub struct ChipFile {
    pub path: PathBuf,
    pub content_type: &'static str,
}

/// Resolves `rel` (a chip path from the run's GeoJSON) inside `run_dir`, refusing anything
/// that escapes `data_root` (which must already be canonical).
pub fn resolve_chip(data_root: &Path, run_dir: &Path, rel: &str) -> Result<ChipFile, ReviewError> {
    if rel.is_empty() {
        return Err(ReviewError::NotFound("this patch has no such chip".into()));
    }
    let rel_path = Path::new(rel);
    let only_plain_parts = rel_path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if rel_path.is_absolute() || !only_plain_parts {
        return Err(ReviewError::Forbidden(
            "chip path must be relative and stay inside the run folder".into(),
        ));
    }
    let content_type = content_type_of(rel_path)
        .ok_or_else(|| ReviewError::Forbidden("chip path does not name a PNG, JPEG or WebP image".into()))?;
    let escape = || ReviewError::Forbidden("chip path leaves the data folder".into());
    let run_canon = run_dir
        .canonicalize()
        .map_err(|_| ReviewError::NotFound("the run folder of this patch is no longer on disk".into()))?;
    if !run_canon.starts_with(data_root) {
        return Err(escape());
    }
    let file = run_canon
        .join(rel_path)
        .canonicalize()
        .map_err(|_| ReviewError::NotFound("chip file not found".into()))?;
    if !file.starts_with(&run_canon) || !file.starts_with(data_root) || !file.is_file() {
        return Err(escape());
    }
    // The extension of the resolved target must be an image too (a symlink could rename).
    let content_type = content_type_of(&file)
        .filter(|t| *t == content_type)
        .ok_or_else(escape)?;
    Ok(ChipFile {
        path: file,
        content_type,
    })
}

fn content_type_of(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    IMAGE_TYPES.iter().find(|(e, _)| *e == ext).map(|(_, t)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let run = data.join("run1");
        std::fs::create_dir_all(run.join("chips")).unwrap();
        std::fs::write(run.join("chips/a.png"), b"png").unwrap();
        std::fs::write(tmp.path().join("secret.png"), b"secret").unwrap();
        let data = data.canonicalize().unwrap();
        (tmp, data, run)
    }

    #[test]
    fn serves_a_plain_relative_chip() {
        let (_t, data, run) = setup();
        let chip = resolve_chip(&data, &run, "chips/a.png").unwrap();
        assert_eq!(chip.content_type, "image/png");
        assert!(chip.path.ends_with("chips/a.png"));
    }

    #[test]
    fn refuses_parent_absolute_and_non_images() {
        let (t, data, run) = setup();
        for rel in ["../../secret.png", "chips/../../../secret.png", "/etc/passwd"] {
            assert!(
                matches!(resolve_chip(&data, &run, rel), Err(ReviewError::Forbidden(_))),
                "{rel}"
            );
        }
        let abs = t.path().join("secret.png");
        assert!(resolve_chip(&data, &run, abs.to_str().unwrap()).is_err());
        std::fs::write(run.join("chips/notes.txt"), b"x").unwrap();
        assert!(matches!(
            resolve_chip(&data, &run, "chips/notes.txt"),
            Err(ReviewError::Forbidden(_))
        ));
    }

    #[test]
    fn refuses_symlink_escaping_the_data_folder() {
        let (t, data, run) = setup();
        std::os::unix::fs::symlink(t.path().join("secret.png"), run.join("chips/link.png")).unwrap();
        assert!(matches!(
            resolve_chip(&data, &run, "chips/link.png"),
            Err(ReviewError::Forbidden(_))
        ));
    }
}
