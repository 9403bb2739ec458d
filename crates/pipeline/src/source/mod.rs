//! Image sources: where a run learns which tiles exist, and where to get their bytes.
//!
//! Every source produces the same thing, a [`Listing`]: tile images (grid id + acquisition date +
//! location + optional footprint and checksum) and the entries it could not use, by name. Listing is
//! cheap; bytes are fetched later, only for the tiles a run actually needs.

pub mod http_index;
pub mod local;
pub mod stac;

use std::path::PathBuf;

use serde::Serialize;

use super::archive::raster_footprint;
use super::config::{Pipeline, Source};
use landwatch_core::Result;

/// Where a tile image's bytes are.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    Url(String),
    File(PathBuf),
}

impl Location {
    /// Human-readable origin, recorded in the catalogue.
    pub fn describe(&self) -> String {
        match self {
            Location::Url(u) => u.clone(),
            Location::File(p) => p.display().to_string(),
        }
    }
}

/// One tile image a source offers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TileRef {
    /// Grid id: images of the same place share it and are paired with each other.
    pub tile: String,
    /// Acquisition date, `YYYY-MM-DD`.
    pub date: String,
    pub location: Location,
    pub footprint: Option<serde_json::Value>,
    pub sha256: Option<String>,
}

impl TileRef {
    /// `tile@date`, the name tiles are reported by.
    pub fn key(&self) -> String {
        format!("{}@{}", self.tile, self.date)
    }
}

/// What a source listed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Listing {
    pub tiles: Vec<TileRef>,
    /// Entries that could not be used: (name, reason). They make the run exit 1.
    pub problems: Vec<(String, String)>,
    /// Images left out because they lie wholly outside the pipeline's `[aoi]`.
    pub outside_aoi: usize,
}

impl Listing {
    /// Sorts tiles by (tile, date) so planning is deterministic. An image listed twice with the
    /// same file is kept once (counted in a warning); the same tile and date listed with different
    /// files is ambiguous, so none of them is used and the entry is reported.
    pub fn normalise(mut self) -> Self {
        self.tiles
            .sort_by_cached_key(|t| (t.tile.clone(), t.date.clone(), t.location.describe()));
        let mut kept: Vec<TileRef> = Vec::with_capacity(self.tiles.len());
        let mut repeats = 0;
        for group in self.tiles.chunk_by(|a, b| a.tile == b.tile && a.date == b.date) {
            let mut files: Vec<String> = group.iter().map(|t| t.location.describe()).collect();
            files.dedup();
            repeats += group.len() - files.len();
            if files.len() == 1 {
                kept.push(group[0].clone());
            } else {
                let why = format!(
                    "listed {} times with different files ({}); none is used until all but one are removed",
                    files.len(),
                    files.join(", ")
                );
                self.problems.push((group[0].key(), why));
            }
        }
        if repeats > 0 {
            tracing::warn!(
                repeats,
                "{repeats} repeated listing entries (same tile, date and file) ignored"
            );
        }
        self.tiles = kept;
        self.problems.sort();
        self
    }
}

/// Lists the pipeline's source. Unreachable sources are an error (exit 3); bad entries are
/// reported in the listing.
pub async fn list(p: &Pipeline, client: &reqwest::Client) -> Result<Listing> {
    let listing = match &p.source {
        Source::Local { path, tiles } => local::list(path, tiles)?,
        Source::Archive { path } => local::list_archive(path)?,
        Source::HttpIndex { url } => http_index::list(client, url, &p.fetch).await?,
        Source::Stac {
            url,
            collections,
            asset,
            datetime,
            tile_property,
            limit,
        } => {
            let q = stac::Query {
                collections,
                asset,
                datetime: datetime.as_deref(),
                tile_property,
                limit: *limit,
                bbox: p.aoi_bbox,
            };
            stac::list(client, url, &q, &p.fetch).await?
        }
    };
    Ok(filter_aoi(listing.normalise(), p.aoi_bbox))
}

/// Drops images whose footprint lies wholly outside the area of interest. Images listed without
/// a footprint (local files) get theirs from the raster's georeference; an image without one
/// cannot be judged and is kept.
fn filter_aoi(mut l: Listing, bbox: Option<[f64; 4]>) -> Listing {
    let Some(b) = bbox else { return l };
    for t in l.tiles.iter_mut().filter(|t| t.footprint.is_none()) {
        if let Location::File(path) = &t.location {
            t.footprint = raster_footprint(path);
        }
    }
    let listed = l.tiles.len();
    let mut unknown = 0;
    l.tiles.retain(|t| match t.footprint.as_ref().and_then(footprint_bbox) {
        Some(f) => f[0] <= b[2] && f[2] >= b[0] && f[1] <= b[3] && f[3] >= b[1],
        None => {
            unknown += 1;
            true
        }
    });
    l.outside_aoi = listed - l.tiles.len();
    if l.outside_aoi > 0 {
        tracing::info!(listed, outside = l.outside_aoi, "images outside the aoi skipped");
    }
    if unknown > 0 {
        tracing::warn!(
            unknown,
            "{unknown} images have no footprint (no georeference); kept whatever the aoi"
        );
    }
    l
}

/// Bounding box of a GeoJSON geometry's coordinates.
pub fn footprint_bbox(g: &serde_json::Value) -> Option<[f64; 4]> {
    fn walk(v: &serde_json::Value, b: &mut [f64; 4]) {
        if let Some(a) = v.as_array() {
            if let (Some(x), Some(y)) = (a.first().and_then(|x| x.as_f64()), a.get(1).and_then(|y| y.as_f64())) {
                b[0] = b[0].min(x);
                b[1] = b[1].min(y);
                b[2] = b[2].max(x);
                b[3] = b[3].max(y);
            } else {
                a.iter().for_each(|c| walk(c, b));
            }
        }
    }
    let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    walk(g.get("coordinates")?, &mut b);
    (b[0] <= b[2]).then_some(b)
}

/// Normalises a checksum given as plain hex or as a multihash (`1220` + SHA-256 hex, STAC
/// `file:checksum`). Other algorithms are not understood and give None.
pub fn normalise_sha256(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let hex = s.strip_prefix("1220").filter(|h| h.len() == 64).unwrap_or(&s);
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| hex.to_string())
}
