//! HTTP JSON tile index: `{"tiles": [{"id", "date", "url", "footprint", "sha256"?}, ...]}` (or a
//! bare array). Relative URLs are resolved against the index's own URL.

use super::{normalise_sha256, Listing, Location, TileRef};
use crate::config::{is_date, FetchParams};
use crate::fetch::get_json;
use landwatch_core::{Error, Result};

/// Downloads and parses the index (with the pipeline's retry policy).
pub async fn list(client: &reqwest::Client, url: &str, fetch: &FetchParams) -> Result<Listing> {
    let bytes = get_json(client, url, None, fetch).await?;
    let mut l = parse_index(&bytes, url)?;
    let base = reqwest::Url::parse(url).map_err(|e| Error::Usage(format!("{url}: {e}")))?;
    for t in &mut l.tiles {
        if let Location::Url(u) = &t.location {
            match base.join(u) {
                Ok(abs) => t.location = Location::Url(abs.to_string()),
                Err(e) => l.problems.push((t.key(), format!("bad url {u}: {e}"))),
            }
        }
    }
    Ok(l)
}

/// Parses index JSON; unusable entries become problems named by their id (or position).
pub fn parse_index(bytes: &[u8], origin: &str) -> Result<Listing> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Error::input(origin, format!("tile index is not JSON: {e}")))?;
    let entries = v
        .get("tiles")
        .and_then(|t| t.as_array())
        .or_else(|| v.as_array())
        .ok_or_else(|| Error::input(origin, "tile index has no `tiles` array"))?;
    let mut l = Listing::default();
    for (i, e) in entries.iter().enumerate() {
        match parse_entry(e) {
            Ok(t) => l.tiles.push(t),
            Err(why) => l.problems.push((entry_name(e, i), why)),
        }
    }
    Ok(l)
}

fn entry_name(e: &serde_json::Value, i: usize) -> String {
    let s = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_string);
    match (s("id").or_else(|| s("tile")), s("date")) {
        (Some(id), Some(d)) => format!("{id}@{d}"),
        (Some(id), None) => id,
        _ => s("url").unwrap_or_else(|| format!("index entry #{i}")),
    }
}

fn parse_entry(e: &serde_json::Value) -> std::result::Result<TileRef, String> {
    let s = |k: &str| e.get(k).and_then(|v| v.as_str());
    let tile = s("id").or_else(|| s("tile")).ok_or("missing `id`")?.to_string();
    let date = s("date").ok_or("missing `date`")?;
    if !is_date(date) {
        return Err(format!("`date` {date} is not YYYY-MM-DD"));
    }
    let url = s("url").ok_or("missing `url`")?;
    let sha256 = match s("sha256") {
        Some(h) => Some(normalise_sha256(h).ok_or(format!("`sha256` {h} is not a SHA-256"))?),
        None => None,
    };
    let footprint = e.get("footprint").filter(|f| !f.is_null()).cloned();
    Ok(TileRef {
        tile,
        date: date.to_string(),
        location: Location::Url(url.to_string()),
        footprint,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_entries_are_named() {
        let j = br#"{"tiles":[{"id":"a","date":"2024-01-01","url":"a.tif"},
                    {"id":"b","url":"b.tif"},{"id":"c","date":"2024-02-30","url":"c.tif"}]}"#;
        let l = parse_index(j, "x").unwrap();
        assert_eq!(l.tiles.len(), 1);
        assert_eq!(l.problems[0].0, "b");
        assert!(l.problems[1].1.contains("YYYY-MM-DD"));
    }
}
