//! WMTS 1.0.0 (RESTful) for GIS clients: QGIS, ArcGIS and GDAL read the runs' imagery from
//! the same tiles as the review page's map.
//!
//! | route | what |
//! |---|---|
//! | `GET /wmts/1.0.0/WMTSCapabilities.xml` | capabilities, with the session cookie |
//! | `GET /wmts/t/{token}/1.0.0/WMTSCapabilities.xml` | the same with a map token in the URL |
//! | `GET /wmts[/t/{token}]/1.0.0/run{N}-{before\|after}/GoogleMapsCompatible/{z}/{row}/{col}.png` | a tile |
//! | `GET/POST /api/me/map-tokens`, `DELETE /api/me/map-tokens/{id}` | list, create, revoke one's tokens |
//!
//! One layer per run and date, in the GoogleMapsCompatible matrix set (EPSG:3857, 256²
//! tiles). GIS clients send no cookie, so a user creates a map token (see
//! [`crate::map_tokens`]) and uses the URL that carries it; every URL in the capabilities
//! carries the same token.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::auth::CurrentUser;
use super::error::{ApiError, ApiJson, ApiPath};
use super::map::may_view_run;
use super::AppState;
use crate::map_tokens;
use crate::store::{ReviewResult, Store};
use crate::tiles::Date;
use crate::users::User;

/// The one tile matrix set offered.
pub const MATRIX_SET: &str = "GoogleMapsCompatible";
/// Deepest level listed in the capabilities (about 3.7 cm per pixel at 22°N).
pub const MAX_LISTED_ZOOM: u32 = 21;
/// Scale denominator of level 0 of GoogleMapsCompatible (OGC WMTS 1.0.0, annex E.4).
const SCALE_0: f64 = 559_082_264.028_717_8;

/// The owner of a live map token, or 401 with what to do.
async fn token_user(state: &AppState, token: String) -> Result<User, ApiError> {
    state
        .db(move |s| map_tokens::user_for(s, &token))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this map token is unknown or was revoked; create a new one in the review page",
            )
        })
}

/// `GET /wmts/1.0.0/WMTSCapabilities.xml` with a session.
pub async fn capabilities(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    capabilities_for(&state, user.0.user, &headers, None).await
}

/// `GET /wmts/t/{token}/1.0.0/WMTSCapabilities.xml`.
pub async fn capabilities_with_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(token): ApiPath<String>,
) -> Result<Response, ApiError> {
    let user = token_user(&state, token.clone()).await?;
    capabilities_for(&state, user, &headers, Some(&token)).await
}

/// `GET /wmts/1.0.0/{layer}/{set}/{z}/{row}/{col}.png` with a session.
pub async fn tile(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(path): ApiPath<(String, String, String, String, String)>,
) -> Result<Response, ApiError> {
    tile_for(&state, &user.0.user, path).await
}

/// `GET /wmts/t/{token}/1.0.0/{layer}/{set}/{z}/{row}/{col}.png`.
pub async fn tile_with_token(
    State(state): State<AppState>,
    ApiPath((token, layer, set, z, row, col)): ApiPath<(String, String, String, String, String, String)>,
) -> Result<Response, ApiError> {
    let user = token_user(&state, token).await?;
    tile_for(&state, &user, (layer, set, z, row, col)).await
}

/// Parses a layer name `run{N}-{before|after}`.
fn parse_layer(layer: &str) -> Result<(i64, Date), ApiError> {
    let unknown = || {
        ApiError::not_found(format!(
            "no layer {layer:?}: layers are named like run1-before, run1-after"
        ))
    };
    let (run, date) = layer
        .strip_prefix("run")
        .and_then(|l| l.split_once('-'))
        .ok_or_else(unknown)?;
    let run_id = run.parse().map_err(|_| unknown())?;
    Ok((run_id, Date::parse(date).map_err(|_| unknown())?))
}

async fn tile_for(
    state: &AppState,
    user: &User,
    (layer, set, z, row, col): (String, String, String, String, String),
) -> Result<Response, ApiError> {
    let (run_id, date) = parse_layer(&layer)?;
    if set != MATRIX_SET {
        return Err(ApiError::not_found(format!(
            "no tile matrix set {set:?}: use {MATRIX_SET}"
        )));
    }
    let col = col
        .strip_suffix(".png")
        .ok_or_else(|| ApiError::not_found("tiles are PNG: the last part must be {TileCol}.png"))?;
    let number = |text: &str, what: &str| {
        text.parse::<u32>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{what} must be a whole number, got {text:?}"),
            )
        })
    };
    let (z, y, x) = (
        number(&z, "TileMatrix")?,
        number(&row, "TileRow")?,
        number(col, "TileCol")?,
    );
    if !may_view_run(user, run_id) {
        return Err(ApiError::forbidden(format!("your account may not see run {run_id}")));
    }
    let dir = state.db(move |s| super::map::run_dir(s, run_id)).await?;
    let png = state.render_tile(run_id, dir, date, (z, x, y)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, no-cache"),
        ],
        png,
    )
        .into_response())
}

/// A run listed in the capabilities: id, folder name and lon/lat box of its patches.
struct RunEntry {
    id: i64,
    name: String,
    bbox: Option<[f64; 4]>,
}

fn runs(store: &Store) -> ReviewResult<Vec<RunEntry>> {
    let mut stmt = store.conn().prepare(
        "SELECT r.id, r.run_dir, MIN(p.minx), MIN(p.miny), MAX(p.maxx), MAX(p.maxy)
         FROM runs r LEFT JOIN patches p ON p.run_id = r.id GROUP BY r.id ORDER BY r.id",
    )?;
    let rows = stmt.query_map([], |r| {
        let dir: String = r.get(1)?;
        let name = std::path::Path::new(&dir)
            .file_name()
            .map_or_else(|| dir.clone(), |n| n.to_string_lossy().into_owned());
        let b: [Option<f64>; 4] = [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?];
        Ok(RunEntry {
            id: r.get(0)?,
            name,
            bbox: match b {
                [Some(w), Some(s), Some(e), Some(n)] => Some([w, s, e, n]),
                _ => None,
            },
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The URL clients reach this server by: the public origin, else the request's Host.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(origin) = &state.inner.options.public_origin {
        return origin.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if state.secure_cookie() { "https" } else { "http" };
    format!("{scheme}://{host}")
}

async fn capabilities_for(
    state: &AppState,
    user: User,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<Response, ApiError> {
    let mut listed = state.db(|s| runs(s)).await?;
    listed.retain(|r| may_view_run(&user, r.id));
    let prefix = match token {
        Some(t) => format!("{}/wmts/t/{t}/1.0.0", base_url(state, headers)),
        None => format!("{}/wmts/1.0.0", base_url(state, headers)),
    };
    let xml = capabilities_xml(&listed, &prefix);
    Ok((
        [
            (header::CONTENT_TYPE, "application/xml; charset=utf-8"),
            (header::CACHE_CONTROL, "private, no-cache"),
        ],
        xml,
    )
        .into_response())
}

/// Escapes text for XML content and attribute values.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn capabilities_xml(runs: &[RunEntry], prefix: &str) -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <Capabilities xmlns=\"http://www.opengis.net/wmts/1.0\" xmlns:ows=\"http://www.opengis.net/ows/1.1\" \
         xmlns:xlink=\"http://www.w3.org/1999/xlink\" version=\"1.0.0\">\n\
         <ows:ServiceIdentification><ows:Title>landwatch review imagery</ows:Title>\
         <ows:ServiceType>OGC WMTS</ows:ServiceType><ows:ServiceTypeVersion>1.0.0</ows:ServiceTypeVersion>\
         </ows:ServiceIdentification>\n<Contents>\n",
    );
    for run in runs {
        let [w, s, e, n] = run.bbox.unwrap_or([-180.0, -85.05, 180.0, 85.05]);
        for (date, label) in [("before", "前时相 before"), ("after", "后时相 after")] {
            let id = format!("run{}-{date}", run.id);
            let title = xml_escape(&format!("run {} ({}) {label}", run.id, run.name));
            let _ = writeln!(
                x,
                "<Layer><ows:Title>{title}</ows:Title>\
                 <ows:WGS84BoundingBox><ows:LowerCorner>{w} {s}</ows:LowerCorner><ows:UpperCorner>{e} {n}</ows:UpperCorner></ows:WGS84BoundingBox>\
                 <ows:Identifier>{id}</ows:Identifier><Style isDefault=\"true\"><ows:Identifier>default</ows:Identifier></Style>\
                 <Format>image/png</Format><TileMatrixSetLink><TileMatrixSet>{MATRIX_SET}</TileMatrixSet></TileMatrixSetLink>\
                 <ResourceURL format=\"image/png\" resourceType=\"tile\" \
                 template=\"{}/{id}/{{TileMatrixSet}}/{{TileMatrix}}/{{TileRow}}/{{TileCol}}.png\"/></Layer>",
                xml_escape(prefix)
            );
        }
    }
    let corner = crate::tiles::render::MERCATOR_HALF;
    let _ = writeln!(
        x,
        "<TileMatrixSet><ows:Identifier>{MATRIX_SET}</ows:Identifier>\
         <ows:SupportedCRS>urn:ogc:def:crs:EPSG::3857</ows:SupportedCRS>\
         <WellKnownScaleSet>urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible</WellKnownScaleSet>"
    );
    for z in 0..=MAX_LISTED_ZOOM {
        let n = 1u64 << z;
        let _ = writeln!(
            x,
            "<TileMatrix><ows:Identifier>{z}</ows:Identifier><ScaleDenominator>{}</ScaleDenominator>\
             <TopLeftCorner>{} {corner}</TopLeftCorner><TileWidth>256</TileWidth><TileHeight>256</TileHeight>\
             <MatrixWidth>{n}</MatrixWidth><MatrixHeight>{n}</MatrixHeight></TileMatrix>",
            SCALE_0 / n as f64,
            -corner
        );
    }
    let _ = write!(
        x,
        "</TileMatrixSet>\n</Contents>\n<ServiceMetadataURL xlink:href=\"{}/WMTSCapabilities.xml\"/>\n</Capabilities>\n",
        xml_escape(prefix)
    );
    x
}

/// Body of `POST /api/me/map-tokens`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    label: String,
}

/// `GET /api/me/map-tokens`: one's tokens (never the tokens themselves).
pub async fn list_tokens(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Value>, ApiError> {
    let id = user.0.user.id;
    let tokens = state.db(move |s| map_tokens::list(s, id)).await?;
    Ok(Json(json!({ "tokens": tokens })))
}

/// `POST /api/me/map-tokens {"label": …}`: a new token and the capabilities URL carrying
/// it (shown once).
pub async fn create_token(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<Json<Value>, ApiError> {
    let uid = user.0.user.id;
    let (id, token) = state.db(move |s| map_tokens::create(s, uid, &body.label)).await?;
    let url = format!(
        "{}/wmts/t/{token}/1.0.0/WMTSCapabilities.xml",
        base_url(&state, &headers)
    );
    Ok(Json(json!({ "id": id, "token": token, "capabilities_url": url })))
}

/// `DELETE /api/me/map-tokens/{id}`: revokes one of one's tokens.
pub async fn revoke_token(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let uid = user.0.user.id;
    state.db(move |s| map_tokens::revoke(s, uid, id)).await?;
    Ok(Json(json!({ "revoked": id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_name_a_run_and_a_date() {
        assert_eq!(parse_layer("run12-after").unwrap(), (12, Date::After));
        for bad in ["run-after", "runx-before", "12-before", "run1-during", "run1"] {
            assert_eq!(parse_layer(bad).unwrap_err().status, StatusCode::NOT_FOUND, "{bad}");
        }
    }

    #[test]
    fn capabilities_list_both_dates_of_each_run_with_escaped_names() {
        let runs = [RunEntry {
            id: 3,
            name: "<&run>".into(),
            bbox: Some([108.0, 22.0, 109.0, 23.0]),
        }];
        let x = capabilities_xml(&runs, "http://h/wmts/1.0.0");
        assert!(x.contains("<ows:Identifier>run3-before</ows:Identifier>"));
        assert!(x.contains("<ows:Identifier>run3-after</ows:Identifier>"));
        assert!(x.contains("(&lt;&amp;run&gt;)"));
        assert!(x.contains(
            "template=\"http://h/wmts/1.0.0/run3-after/{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}.png\""
        ));
        assert_eq!(x.matches("<TileMatrix>").count(), MAX_LISTED_ZOOM as usize + 1);
    }
}
