//! The map's routes: XYZ tiles of a run's images and the patches as GeoJSON for a box.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /tiles/{run}/{before\|after}/{z}/{x}/{y}.png` | user allowed the run | a 256² PNG in Web Mercator |
//! | `GET /api/map/patches?bbox=W,S,E,N&limit=` | user | patches overlapping the box, lon/lat GeoJSON |
//! | `GET /api/map/layers/{run}/{landuse\|basic_farmland}?bbox=W,S,E,N` | user allowed the run | the run's reference layer in the box |
//!
//! Who may see which run is decided in one place, [`may_view_run`], so per-region account
//! scopes can restrict runs later without touching the routes.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::auth::CurrentUser;
use super::error::{ApiError, ApiPath, ApiQuery};
use super::AppState;
use crate::store::{ReviewError, ReviewResult, Store};
use crate::tiles::Date;
use crate::users::User;

/// Leaflet 1.9.4 (BSD-2-Clause), from the npm registry (see build.rs), and the map's own files.
const LEAFLET_JS: &str = include_str!("../../web-vendor/node_modules/leaflet/dist/leaflet.js");
const LEAFLET_CSS: &str = include_str!("../../web-vendor/node_modules/leaflet/dist/leaflet.css");
const LEAFLET_LICENSE: &str = include_str!("../../web-vendor/node_modules/leaflet/LICENSE");
const LEAFLET_LAYERS_PNG: &[u8] = include_bytes!("../../web-vendor/node_modules/leaflet/dist/images/layers.png");
const LEAFLET_LAYERS_2X_PNG: &[u8] = include_bytes!("../../web-vendor/node_modules/leaflet/dist/images/layers-2x.png");
const MAP_JS: &str = include_str!("assets/map.js");
const MAP_CSS: &str = include_str!("assets/map.css");

/// The map's static files by name under `/static/`: body and content type.
pub fn static_asset(file: &str) -> Option<(&'static [u8], &'static str)> {
    let js = "text/javascript; charset=utf-8";
    let css = "text/css; charset=utf-8";
    Some(match file {
        "leaflet.js" => (LEAFLET_JS.as_bytes(), js),
        "leaflet.css" => (LEAFLET_CSS.as_bytes(), css),
        "leaflet-LICENSE.txt" => (LEAFLET_LICENSE.as_bytes(), "text/plain; charset=utf-8"),
        "map.js" => (MAP_JS.as_bytes(), js),
        "map.css" => (MAP_CSS.as_bytes(), css),
        // leaflet.css names its icons relative to itself: /static/images/….
        "images/layers.png" => (LEAFLET_LAYERS_PNG, "image/png"),
        "images/layers-2x.png" => (LEAFLET_LAYERS_2X_PNG, "image/png"),
        _ => return None,
    })
}

/// Most patches one `/api/map/patches` answer carries.
pub const MAX_MAP_PATCHES: usize = 20_000;

/// Whether `user` may see run `run_id`'s imagery. Every account sees every run today; a
/// per-region scope would be checked here.
pub fn may_view_run(user: &User, run_id: i64) -> bool {
    let _ = (user, run_id);
    true
}

/// The folder of run `run_id`, or 404.
pub(crate) fn run_dir(store: &Store, run_id: i64) -> ReviewResult<PathBuf> {
    let dir: Option<String> = crate::store::optional(store.conn().query_row(
        "SELECT run_dir FROM runs WHERE id = ?1",
        [run_id],
        |r| r.get(0),
    ))?;
    dir.map(PathBuf::from)
        .ok_or_else(|| ReviewError::NotFound(format!("no run {run_id} in this database")))
}

/// Parses a path segment that must be a whole number.
fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{what} must be a whole number, got {text:?}"),
        )
    })
}

/// `GET /tiles/{run}/{date}/{z}/{x}/{y}.png`.
pub async fn tile(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    ApiPath((run, date, z, x, y)): ApiPath<(String, String, String, String, String)>,
) -> Result<Response, ApiError> {
    let run_id: i64 = number(&run, "the run")?;
    let date = Date::parse(&date)?;
    let y = y
        .strip_suffix(".png")
        .ok_or_else(|| ApiError::not_found("tiles are PNG: the last part must be {y}.png"))?;
    let (z, x, y): (u32, u32, u32) = (number(&z, "z")?, number(&x, "x")?, number(y, "y")?);
    if !may_view_run(&user.0.user, run_id) {
        return Err(ApiError::forbidden(format!("your account may not see run {run_id}")));
    }
    let dir = state.db(move |s| run_dir(s, run_id)).await?;
    let png = state.render_tile(run_id, dir, date, (z, x, y)).await?;
    // Browsers must ask again every time (no-cache) so a logged-out browser is refused, but a
    // tile they hold already costs a 304 and no transfer.
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&png)[..10]));
    let cache = [
        (header::CACHE_CONTROL, "private, no-cache".to_string()),
        (header::ETAG, etag.clone()),
    ];
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((cache, [(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// Query of `/api/map/patches`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BboxQuery {
    bbox: String,
    limit: Option<usize>,
}

/// Parses `W,S,E,N` in lon/lat.
fn parse_bbox(text: &str) -> Result<[f64; 4], ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bbox must be west,south,east,north in degrees, got {text:?}"),
        )
    };
    let v: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    match v.as_slice() {
        [w, s, e, n] if v.iter().all(|x| x.is_finite()) && w <= e && s <= n => Ok([*w, *s, *e, *n]),
        _ => Err(bad()),
    }
}

/// `GET /api/map/patches?bbox=W,S,E,N`: the patches overlapping the box with their
/// current status, as an RFC 7946 FeatureCollection (lon/lat, CGCS2000 ≈ WGS 84 at map scale).
pub async fn patches(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiQuery(q): ApiQuery<BboxQuery>,
) -> Result<Json<Value>, ApiError> {
    let bbox = parse_bbox(&q.bbox)?;
    let limit = q.limit.unwrap_or(MAX_MAP_PATCHES).clamp(1, MAX_MAP_PATCHES);
    let fc = state.db(move |s| patches_in(s, bbox, limit)).await?;
    Ok(Json(fc))
}

fn patches_in(store: &Store, [w, s, e, n]: [f64; 4], limit: usize) -> ReviewResult<Value> {
    let mut stmt = store.conn().prepare(
        "SELECT p.id, p.patch_id, p.run_id, p.geometry, p.needs_rereview,
                COALESCE((SELECT v.new_status FROM verdicts v WHERE v.patch_id = p.id
                          ORDER BY v.id DESC LIMIT 1), 'unreviewed') AS status
         FROM patches p
         WHERE p.maxx >= ?1 AND p.minx <= ?3 AND p.maxy >= ?2 AND p.miny <= ?4
         ORDER BY p.id LIMIT ?5",
    )?;
    let rows = stmt.query_map(rusqlite::params![w, s, e, n, limit as i64 + 1], |r| {
        let geometry: String = r.get(3)?;
        Ok(json!({
            "type": "Feature",
            "id": r.get::<_, i64>(0)?,
            "geometry": serde_json::from_str::<Value>(&geometry).unwrap_or(Value::Null),
            "properties": {
                "id": r.get::<_, i64>(0)?,
                "patch_id": r.get::<_, String>(1)?,
                "run_id": r.get::<_, i64>(2)?,
                "needs_rereview": r.get::<_, i64>(4)? != 0,
                "status": r.get::<_, String>(5)?,
            }
        }))
    })?;
    let mut features = rows.collect::<Result<Vec<_>, _>>()?;
    let truncated = features.len() > limit;
    features.truncate(limit);
    Ok(json!({ "type": "FeatureCollection", "features": features, "truncated": truncated }))
}

/// `GET /api/map/layers/{run}/{layer}?bbox=W,S,E,N`: land-use parcels (with DLBM) or basic
/// farmland of the run's reference layers overlapping the box, lon/lat GeoJSON.
pub async fn layer(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath((run, which)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<BboxQuery>,
) -> Result<Json<Value>, ApiError> {
    let run_id: i64 = number(&run, "the run")?;
    let bbox = parse_bbox(&q.bbox)?;
    let limit = q.limit.unwrap_or(MAX_MAP_PATCHES).clamp(1, MAX_MAP_PATCHES);
    if !may_view_run(&user.0.user, run_id) {
        return Err(ApiError::forbidden(format!("your account may not see run {run_id}")));
    }
    let dir = state.db(move |s| run_dir(s, run_id)).await?;
    let root = state.data_root().to_path_buf();
    let fc = tokio::task::spawn_blocking(move || crate::layers::features_in(&dir, &root, &which, bbox, limit))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(fc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbox_must_be_four_ordered_numbers() {
        assert_eq!(parse_bbox("108.1,22.5,108.4,22.9").unwrap(), [108.1, 22.5, 108.4, 22.9]);
        for bad in ["", "1,2,3", "1,2,3,x", "5,0,1,1", "0,5,1,1", "NaN,0,1,1"] {
            assert_eq!(parse_bbox(bad).unwrap_err().status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
