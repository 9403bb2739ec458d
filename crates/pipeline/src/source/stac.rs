//! STAC API search (`POST {url}/search`): items whose chosen asset is a (COG) GeoTIFF.
//!
//! An item gives the grid id (property `tile_property`, default `grid:code`), the acquisition date
//! (`properties.datetime`), the footprint (`geometry`) and the asset href, with an optional
//! `file:checksum` multihash. Items missing any of these are reported by id, not silently dropped.
//! Pages are followed through `links[rel=next]`.

use super::{normalise_sha256, Listing, Location, TileRef};
use crate::config::FetchParams;
use crate::fetch::get_json;
use landwatch_core::{Error, Result};

/// Search parameters from the pipeline file.
pub struct Query<'a> {
    pub collections: &'a [String],
    pub asset: &'a str,
    pub datetime: Option<&'a str>,
    pub tile_property: &'a str,
    pub limit: usize,
    pub bbox: Option<[f64; 4]>,
}

/// More pages than this means a misbehaving server (a `next` link that loops).
const MAX_PAGES: usize = 1000;

/// Runs the search and lists every item's asset.
pub async fn list(client: &reqwest::Client, url: &str, q: &Query<'_>, fetch: &FetchParams) -> Result<Listing> {
    let search = if url.trim_end_matches('/').ends_with("/search") {
        url.to_string()
    } else {
        format!("{}/search", url.trim_end_matches('/'))
    };
    let mut body = serde_json::json!({"limit": q.limit});
    if !q.collections.is_empty() {
        body["collections"] = serde_json::json!(q.collections);
    }
    if let Some(b) = q.bbox {
        body["bbox"] = serde_json::json!(b);
    }
    if let Some(d) = q.datetime {
        body["datetime"] = serde_json::json!(d);
    }
    let mut l = Listing::default();
    let mut next = Some((search, Some(body)));
    let mut pages = 0;
    while let Some((page_url, page_body)) = next.take() {
        pages += 1;
        if pages > MAX_PAGES {
            return Err(Error::Other(format!("{url}: more than {MAX_PAGES} STAC pages")));
        }
        let bytes = get_json(client, &page_url, page_body.as_ref(), fetch).await?;
        let page: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::input(&page_url, format!("STAC response is not JSON: {e}")))?;
        let base = reqwest::Url::parse(&page_url).ok();
        parse_page(&page, q, base.as_ref(), &mut l).map_err(|why| Error::input(&page_url, why))?;
        next = next_link(&page).map(|(href, body)| match base.as_ref().map(|b| b.join(&href)) {
            Some(Ok(u)) => (u.to_string(), body),
            _ => (href, body),
        });
    }
    Ok(l)
}

/// Adds one page's items to the listing.
fn parse_page(
    page: &serde_json::Value,
    q: &Query,
    base: Option<&reqwest::Url>,
    l: &mut Listing,
) -> std::result::Result<(), String> {
    let features = page
        .get("features")
        .and_then(|f| f.as_array())
        .ok_or("STAC response has no `features` array")?;
    for (i, item) in features.iter().enumerate() {
        let name = item
            .get("id")
            .and_then(|v| v.as_str())
            .map_or_else(|| format!("STAC item #{i}"), str::to_string);
        match parse_item(item, q, base) {
            Ok(t) => l.tiles.push(t),
            Err(why) => l.problems.push((name, why)),
        }
    }
    Ok(())
}

fn parse_item(
    item: &serde_json::Value,
    q: &Query,
    base: Option<&reqwest::Url>,
) -> std::result::Result<TileRef, String> {
    let props = item.get("properties").ok_or("missing `properties`")?;
    let tile = match props.get(q.tile_property) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err(format!("missing property `{}`", q.tile_property)),
    };
    let datetime = props
        .get("datetime")
        .and_then(|d| d.as_str())
        .ok_or("missing `properties.datetime`")?;
    let date = datetime.get(..10).filter(|d| crate::config::is_date(d));
    let date = date.ok_or(format!("`datetime` {datetime} does not start with YYYY-MM-DD"))?;
    let asset = item
        .get("assets")
        .and_then(|a| a.get(q.asset))
        .ok_or(format!("missing asset `{}`", q.asset))?;
    let href = asset
        .get("href")
        .and_then(|h| h.as_str())
        .ok_or(format!("asset `{}` has no `href`", q.asset))?;
    let href = match base.map(|b| b.join(href)) {
        Some(Ok(u)) => u.to_string(),
        _ => href.to_string(),
    };
    let footprint = item.get("geometry").filter(|g| !g.is_null()).cloned();
    if footprint.is_none() {
        return Err("missing `geometry`".into());
    }
    let sha256 = asset
        .get("file:checksum")
        .and_then(|c| c.as_str())
        .and_then(normalise_sha256);
    Ok(TileRef {
        tile,
        date: date.to_string(),
        location: Location::Url(href),
        footprint,
        sha256,
    })
}

/// The `next` page: (url, POST body) — a GET link has no body.
fn next_link(page: &serde_json::Value) -> Option<(String, Option<serde_json::Value>)> {
    let links = page.get("links")?.as_array()?;
    let next = links
        .iter()
        .find(|l| l.get("rel").and_then(|r| r.as_str()) == Some("next"))?;
    let href = next.get("href")?.as_str()?.to_string();
    let is_post = next.get("method").and_then(|m| m.as_str()) == Some("POST");
    let body = if is_post { next.get("body").cloned() } else { None };
    Some((href, body))
}
