//! Local sources: a folder of tiles, or an existing landwatch archive.
//!
//! A folder's tiles come, in this order of preference, from the `tiles` list in the pipeline file,
//! from an `index.json` in the folder (the HTTP index format with relative paths), or from file
//! names `<tile>_<YYYY-MM-DD>.tif`.

use std::path::Path;

use super::{Listing, Location, TileRef};
use crate::archive::{sorted_dir, Archive};
use crate::config::{is_date, LocalTile};
use landwatch_core::{Error, Result};

/// Lists a local folder.
pub fn list(dir: &Path, explicit: &[LocalTile]) -> Result<Listing> {
    if !explicit.is_empty() {
        let tiles = explicit
            .iter()
            .map(|t| TileRef {
                tile: t.tile.clone(),
                date: t.date.clone(),
                location: Location::File(dir.join(&t.file)),
                footprint: None,
                sha256: None,
            })
            .collect();
        return Ok(Listing {
            tiles,
            ..Default::default()
        });
    }
    let index = dir.join("index.json");
    if index.is_file() {
        let bytes = std::fs::read(&index).map_err(|e| Error::io(&index, "reading", e))?;
        let mut l = super::http_index::parse_index(&bytes, &index.display().to_string())?;
        for t in &mut l.tiles {
            if let Location::Url(u) = &t.location {
                t.location = Location::File(dir.join(u));
            }
        }
        return Ok(l);
    }
    list_by_names(dir)
}

/// `<tile>_<YYYY-MM-DD>.tif` files; other `.tif` names are reported.
fn list_by_names(dir: &Path) -> Result<Listing> {
    let mut l = Listing::default();
    for p in sorted_dir(dir)? {
        let is_tif = p
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"));
        let Some(stem) = p.file_stem().and_then(|s| s.to_str()).filter(|_| is_tif) else {
            continue;
        };
        match stem.rsplit_once('_').filter(|(_, d)| is_date(d)) {
            Some((tile, date)) => l.tiles.push(TileRef {
                tile: tile.to_string(),
                date: date.to_string(),
                location: Location::File(p.clone()),
                footprint: None,
                sha256: None,
            }),
            None => l.problems.push((
                p.display().to_string(),
                "file name is not <tile>_<YYYY-MM-DD>.tif".into(),
            )),
        }
    }
    Ok(l)
}

/// Lists an existing archive's catalogue: everything is already stored, nothing is fetched.
pub fn list_archive(root: &Path) -> Result<Listing> {
    let archive = Archive::open_existing(root)?;
    let tiles = archive
        .entries()?
        .into_iter()
        .map(|e| TileRef {
            tile: e.tile,
            date: e.date,
            location: Location::File(archive.blob_path(&e.sha256)),
            footprint: e.footprint,
            sha256: Some(e.sha256),
        })
        .collect();
    Ok(Listing {
        tiles,
        ..Default::default()
    })
}
