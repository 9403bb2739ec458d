//! JSON API handlers: the queue, patch details, chips, verdicts, overview, export and
//! user management. Each handler does its database work through [`AppState::db`].

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::auth::CurrentUser;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::chips::resolve_chip;
use crate::export;
use crate::store::{optional, ReviewError, ReviewResult, Store};
use crate::users::{self, Role};
use crate::verdicts::{self, Filter, VerdictInput};

/// `GET /api/facets`
pub async fn facets(State(state): State<AppState>, _user: CurrentUser) -> Result<Json<Value>, ApiError> {
    let f = state.db(|s| verdicts::facets(s)).await?;
    Ok(Json(json!(f)))
}

/// The link to the page after `next_after`: the request's own query with `limit` and
/// `after` replaced, so every filter carries over.
fn next_link(path: &str, raw_query: Option<&str>, limit: u32, next_after: Option<i64>) -> Option<String> {
    let after = next_after?;
    let mut pairs: Vec<&str> = raw_query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("limit=") && !p.starts_with("after="))
        .collect();
    let page = format!("limit={limit}&after={after}");
    pairs.push(&page);
    Some(format!("{path}?{}", pairs.join("&")))
}

/// Adds the `next` link to a page answer.
fn with_next_link(mut page: Value, path: &str, raw_query: Option<&str>) -> Value {
    let limit = page["limit"].as_u64().and_then(|l| u32::try_from(l).ok()).unwrap_or(0);
    let next = next_link(path, raw_query, limit, page["next_after"].as_i64());
    page["next"] = json!(next);
    page
}

/// `GET /api/patches?xzqdm=&category=&change_type=&status=&date_from=&date_to=&min_area=&max_area=&needs_rereview=&limit=&after=`:
/// one page of the queue (in id order), the counts, the total and the `next` page's link.
pub async fn list_patches(
    State(state): State<AppState>,
    _user: CurrentUser,
    RawQuery(raw): RawQuery,
    ApiQuery(filter): ApiQuery<Filter>,
) -> Result<Json<Value>, ApiError> {
    let q = state.db(move |s| verdicts::queue(s, &filter)).await?;
    Ok(Json(with_next_link(json!(q), "/api/patches", raw.as_deref())))
}

/// A stored patch row as the detail view needs it.
struct PatchRow {
    id: i64,
    track_id: String,
    patch_id: String,
    run_id: i64,
    geometry: String,
    properties: String,
    chip_before: String,
    chip_after: String,
    updated_at: String,
}

fn load_patch(store: &Store, id: i64) -> ReviewResult<PatchRow> {
    let row = optional(store.conn().query_row(
        "SELECT id, track_id, patch_id, run_id, geometry, properties, chip_before, chip_after, updated_at
         FROM patches WHERE id = ?1",
        [id],
        |r| {
            Ok(PatchRow {
                id: r.get(0)?,
                track_id: r.get(1)?,
                patch_id: r.get(2)?,
                run_id: r.get(3)?,
                geometry: r.get(4)?,
                properties: r.get(5)?,
                chip_before: r.get(6)?,
                chip_after: r.get(7)?,
                updated_at: r.get(8)?,
            })
        },
    ))?;
    row.ok_or_else(|| ReviewError::NotFound(format!("no patch with id {id}")))
}

fn run_info(store: &Store, run_id: i64) -> ReviewResult<(String, String)> {
    Ok(store
        .conn()
        .query_row("SELECT run_dir, crs FROM runs WHERE id = ?1", [run_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?)
}

fn parse_json(text: &str, what: &str) -> ReviewResult<Value> {
    serde_json::from_str(text).map_err(|e| ReviewError::BadInput(format!("stored {what}: {e}")))
}

/// `GET /api/patches/{id}`: attributes, geometry, chip URLs, current verdict and history.
pub async fn patch_detail(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let detail = state
        .db(move |s| {
            let p = load_patch(s, id)?;
            let (_, crs) = run_info(s, p.run_id)?;
            Ok(json!({
                "id": p.id,
                "track_id": p.track_id,
                "patch_id": p.patch_id,
                "run_id": p.run_id,
                "crs": crs,
                "updated_at": p.updated_at,
                "geometry": parse_json(&p.geometry, "geometry")?,
                "properties": parse_json(&p.properties, "properties")?,
                "chips": {
                    "before": (!p.chip_before.is_empty()).then(|| format!("/api/patches/{id}/chip/before")),
                    "after": (!p.chip_after.is_empty()).then(|| format!("/api/patches/{id}/chip/after")),
                },
                "current": verdicts::current(s, id)?,
                "needs_rereview": verdicts::needs_rereview(s, id)?,
                "history": verdicts::history(s, id)?,
                "events": verdicts::events(s, id)?,
            }))
        })
        .await?;
    Ok(Json(detail))
}

/// `GET /api/patches/{id}/chip/{before|after}`: the chip image, if its path is safe.
pub async fn chip(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath((id, which)): ApiPath<(i64, String)>,
) -> Result<Response, ApiError> {
    if which != "before" && which != "after" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "chip must be 'before' or 'after'",
        ));
    }
    let root = state.data_root().to_path_buf();
    let file = state
        .db(move |s| {
            let p = load_patch(s, id)?;
            let (run_dir, _) = run_info(s, p.run_id)?;
            let rel = if which == "before" { p.chip_before } else { p.chip_after };
            resolve_chip(&root, std::path::Path::new(&run_dir), &rel)
        })
        .await?;
    let bytes = tokio::fs::read(&file.path)
        .await
        .map_err(|_| ApiError::not_found("chip file not readable"))?;
    Ok((
        [
            (header::CONTENT_TYPE, file.content_type),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        bytes,
    )
        .into_response())
}

/// `POST /api/patches/{id}/verdict` with `{"status": "legal"|"illegal"|"other", "subtype", "note"}`.
pub async fn post_verdict(
    State(state): State<AppState>,
    CurrentUser(su): CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<VerdictInput>,
) -> Result<Json<Value>, ApiError> {
    let current = state.db(move |s| verdicts::record(s, id, &su.user, &input)).await?;
    Ok(Json(json!({ "id": id, "current": current })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReopenInput {
    #[serde(default)]
    note: String,
}

/// `POST /api/patches/{id}/reopen` (admin): back to 未核, keeping the history.
pub async fn reopen(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<ReopenInput>,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let su = user.0;
    let current = state
        .db(move |s| verdicts::reopen(s, id, &su.user, &input.note))
        .await?;
    Ok(Json(json!({ "id": id, "current": current })))
}

/// `GET /api/overview?<the queue's filters>&limit=&after=`: one page of outlines with
/// their status, for the SVG overview; the same pages as the queue.
pub async fn overview(
    State(state): State<AppState>,
    _user: CurrentUser,
    RawQuery(raw): RawQuery,
    ApiQuery(filter): ApiQuery<Filter>,
) -> Result<Json<Value>, ApiError> {
    let v = state.db(move |s| verdicts::overview(s, &filter)).await?;
    Ok(Json(with_next_link(json!(v), "/api/overview", raw.as_deref())))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    format: String,
}

/// `GET /api/export?format=geojson|csv`: the verdict export as a download.
pub async fn export(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let (ctype, name) = match q.format.as_str() {
        "geojson" => ("application/geo+json", "verdicts.geojson"),
        "csv" => ("text/csv; charset=utf-8", "verdicts.csv"),
        _ => return Err(ApiError::new(StatusCode::BAD_REQUEST, "format must be geojson or csv")),
    };
    let is_csv = q.format == "csv";
    let body = state
        .db(move |s| {
            if is_csv {
                export::to_csv(s)
            } else {
                export::to_geojson(s)
            }
        })
        .await?;
    let disposition = format!("attachment; filename=\"{name}\"");
    Ok((
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// `GET /api/admin/users` (admin)
pub async fn list_users(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let list = state.db(|s| users::list_users(s)).await?;
    Ok(Json(json!({ "users": list })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    role: Role,
    password: String,
}

/// `POST /api/admin/users` (admin) with `{"name", "role", "password"}`.
pub async fn add_user(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(new): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user.require_admin()?;
    let cost = state.password_cost();
    let created = state
        .db(move |s| users::add_user_with(s, &new.name, new.role, &new.password, &cost))
        .await?;
    tracing::info!(admin = %user.0.user.name, user = %created.name, "user added");
    Ok((StatusCode::CREATED, Json(json!({ "user": created }))))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisabledInput {
    disabled: bool,
}

/// `POST /api/admin/users/{id}/disabled` (admin) with `{"disabled": true|false}`.
pub async fn set_disabled(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<DisabledInput>,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    if id == user.0.user.id && input.disabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "you cannot disable your own account",
        ));
    }
    state.db(move |s| users::set_disabled(s, id, input.disabled)).await?;
    Ok(Json(json!({ "id": id, "disabled": input.disabled })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    password: String,
}

/// `POST /api/admin/users/{id}/password` (admin) with `{"password"}`: sets another user's
/// password and ends all of that user's sessions. Admins change their own password under
/// `/api/me/password`, with the current one.
pub async fn reset_password(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<PasswordReset>,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    if id == user.0.user.id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "change your own password with your current password (POST /api/me/password)",
        ));
    }
    let phc = state.hash_new_password(input.password).await?;
    state.db(move |s| users::set_password_hash(s, id, &phc, None)).await?;
    tracing::info!(admin = %user.0.user.name, user_id = id, "password reset by an admin");
    Ok(Json(json!({ "id": id, "ok": true })))
}

/// `DELETE /api/admin/users/{id}` (admin): removes an account. It can no longer log in and
/// its sessions end; its verdicts keep its name.
pub async fn remove_user(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    if id == user.0.user.id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "you cannot remove your own account",
        ));
    }
    state.db(move |s| users::remove_user(s, id)).await?;
    tracing::info!(admin = %user.0.user.name, user_id = id, "user removed");
    Ok(Json(json!({ "id": id, "removed": true })))
}
