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

use super::config::{Pipeline, Source};
use crate::Result;

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
}

impl Listing {
    /// Sorts tiles by (tile, date) and drops exact duplicates, so planning is deterministic.
    pub fn normalise(mut self) -> Self {
        self.tiles.sort_by(|a, b| (&a.tile, &a.date).cmp(&(&b.tile, &b.date)));
        self.tiles.dedup_by(|a, b| a.tile == b.tile && a.date == b.date);
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

/// Drops tiles whose footprint lies entirely outside the area of interest.
fn filter_aoi(mut l: Listing, bbox: Option<[f64; 4]>) -> Listing {
    if let Some(b) = bbox {
        l.tiles.retain(|t| match t.footprint.as_ref().and_then(footprint_bbox) {
            Some(f) => f[0] <= b[2] && f[2] >= b[0] && f[1] <= b[3] && f[3] >= b[1],
            None => true,
        });
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
