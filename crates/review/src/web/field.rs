//! Field-check evidence in the page: `GET /api/patches/{id}/evidence` (notes, field verdicts,
//! places, times) and `GET /api/patches/{id}/evidence/{eid}/photo` (the photo).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::auth::CurrentUser;
use super::error::{ApiError, ApiPath};
use super::AppState;
use crate::field;

/// `GET /api/patches/{id}/evidence`.
pub async fn evidence(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let items = state.db(move |s| field::evidence_of(s, id)).await?;
    let items: Vec<Value> = items
        .into_iter()
        .map(|e| {
            let photo = e
                .has_photo
                .then(|| format!("/api/patches/{id}/evidence/{}/photo", e.id));
            json!({ "evidence": e, "photo_url": photo })
        })
        .collect();
    Ok(Json(json!({ "patch": id, "items": items })))
}

/// `GET /api/patches/{id}/evidence/{eid}/photo`.
pub async fn photo(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath((id, eid)): ApiPath<(i64, i64)>,
) -> Result<Response, ApiError> {
    let (bytes, kind) = state.db(move |s| field::photo(s, id, eid)).await?;
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}
