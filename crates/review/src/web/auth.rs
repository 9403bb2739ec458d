//! Login, sessions and cross-site request protection.
//!
//! * The session cookie is `HttpOnly; SameSite=Strict` (plus `Secure` when the server is told
//!   it sits behind HTTPS), so scripts cannot read it and other sites cannot send it.
//! * Every state-changing request (anything but GET/HEAD/OPTIONS) must come from this site:
//!   its `Origin` (or, lacking that, `Sec-Fetch-Site`) is checked, and — except for the login
//!   form itself — it must carry the session's CSRF token in the `X-CSRF-Token` header
//!   (the synchroniser-token pattern; the page gets the token from `/api/me`).
//! * Without a valid session the API answers 401 and pages redirect to `/login`.
//! * Logins are throttled (see [`super::throttle`]): a locked account or address gets 429
//!   with `Retry-After`. Every failed login is logged (name escaped, address; never the
//!   password), and a lock-out at warn level.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;

use super::error::{ApiError, ApiForm, ApiJson};
use super::throttle::{Lockout, Scope};
use super::AppState;
use crate::text::escape_for_log;
use crate::users::{self, constant_time_eq, NewSession, Role, SessionUser};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "lw_session";
/// Header the page sends the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The logged-in user of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub SessionUser);

impl CurrentUser {
    /// Fails with 403 unless the user is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.user.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("admin role required"))
        }
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(user) = parts.extensions.get::<CurrentUser>() {
            return Ok(user.clone());
        }
        load_session(state, &parts.headers)
            .await?
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The value of the session cookie, if the request has one.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

async fn load_session(state: &AppState, headers: &HeaderMap) -> Result<Option<CurrentUser>, ApiError> {
    let Some(token) = session_token(headers) else {
        return Ok(None);
    };
    let limits = *state.session_limits();
    let found = state.db(move |s| users::session_user(s, &token, &limits)).await?;
    Ok(found.map(CurrentUser))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses requests that a browser marks as coming from another site.
fn check_same_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = || ApiError::forbidden("cross-site request refused");
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| refuse())?;
        return if state.origin_allowed(origin, headers) {
            Ok(())
        } else {
            Err(refuse())
        };
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(_) => Err(refuse()),
    }
}

/// Middleware on every route: same-origin and CSRF checks for state-changing requests.
/// On success the session's user is stored in the request for the handler.
pub async fn csrf_guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if is_safe(req.method()) {
        return next.run(req).await;
    }
    if let Err(e) = check_same_origin(&state, req.headers()) {
        return e.into_response();
    }
    if req.uri().path() == "/login" {
        return next.run(req).await;
    }
    let user = match load_session(&state, req.headers()).await {
        Ok(Some(user)) => user,
        Ok(None) => return ApiError::unauthorized().into_response(),
        Err(e) => return e.into_response(),
    };
    let sent = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !constant_time_eq(sent, &user.0.csrf_token) {
        return ApiError::forbidden("missing or wrong CSRF token").into_response();
    }
    req.extensions_mut().insert(user);
    next.run(req).await
}

/// The login form's fields.
#[derive(serde::Deserialize)]
pub struct LoginForm {
    /// Login name.
    pub name: String,
    /// Password.
    pub password: String,
}

fn session_cookie(state: &AppState, value: &str, max_age_s: i64) -> Result<HeaderValue, ApiError> {
    let secure = if state.secure_cookie() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .map_err(ApiError::internal)
}

/// The address a request came from (unspecified when the server did not record it).
pub struct PeerIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip().to_canonical());
        Ok(PeerIp(ip))
    }
}

/// Characters of a login name written to the log.
const LOGGED_NAME_CHARS: usize = 64;

/// `POST /login`: checks the password and starts a session (303 to `/`), or 303 back to
/// the form with `?error=1` after a short delay that slows down password guessing; 429
/// while the account or address is locked out.
pub async fn login(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    ApiForm(form): ApiForm<LoginForm>,
) -> Response {
    let attempt = match state.login_begin(&form.name, ip) {
        Ok(attempt) => attempt,
        Err(lockout) => {
            tracing::debug!(
                user = %quoted_for_log(&form.name),
                address = %ip,
                "login refused: {} locked",
                lockout.scope.as_str()
            );
            return locked_response(&headers, lockout);
        }
    };
    match start_session(&state, &form).await {
        Ok(Some(session)) => {
            state.login_succeeded(attempt);
            let max_age = i64::try_from(state.session_limits().max_lifetime.as_secs()).unwrap_or(i64::MAX);
            match session_cookie(&state, &session.token, max_age) {
                Ok(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response(),
                Err(e) => e.into_response(),
            }
        }
        Ok(None) => {
            log_failure(state.login_failed(attempt), &form.name, ip);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            Redirect::to("/login?error=1").into_response()
        }
        Err(e) => {
            // Not a wrong password, but the attempt stays counted: errors are no way around the limit.
            let _ = state.login_failed(attempt);
            e.into_response()
        }
    }
}

/// Checks the form's password (outside the database lock) and, when right, starts a session.
async fn start_session(state: &AppState, form: &LoginForm) -> Result<Option<NewSession>, ApiError> {
    let name = form.name.clone();
    let candidate = state.db(move |s| users::login_candidate(s, &name)).await?;
    let Some(user) = state.verify_password(candidate, form.password.clone()).await? else {
        return Ok(None);
    };
    let limits = *state.session_limits();
    let session = state.db(move |s| users::create_session(s, user.id, &limits)).await?;
    Ok(Some(session))
}

/// A user-supplied name for the log: quoted, escaped and cut short.
fn quoted_for_log(name: &str) -> String {
    format!("\"{}\"", escape_for_log(name, LOGGED_NAME_CHARS))
}

/// Logs a failed login (never the password) and, at warn, the lock-outs it started.
fn log_failure(started: Vec<Lockout>, name: &str, ip: IpAddr) {
    let user = quoted_for_log(name);
    tracing::info!(user = %user, address = %ip, "failed login");
    for lockout in started {
        let what = match lockout.scope {
            Scope::Account => format!("account {user}"),
            Scope::Address => format!("address {ip}"),
        };
        tracing::warn!(
            user = %user,
            address = %ip,
            "login locked: {what} locked for {} s after repeated failed logins",
            lockout.retry_after_secs()
        );
    }
}

/// The answer to a login while locked out: 429 with `Retry-After`; a short page in both
/// languages for a browser's form post, else a JSON error.
fn locked_response(headers: &HeaderMap, lockout: Lockout) -> Response {
    let secs = lockout.retry_after_secs();
    let retry_after = [(header::RETRY_AFTER, secs.to_string())];
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html {
        let page = LOCKED_HTML.replace("{secs}", &secs.to_string());
        let ctype = [(header::CONTENT_TYPE, "text/html; charset=utf-8")];
        return (StatusCode::TOO_MANY_REQUESTS, retry_after, ctype, page).into_response();
    }
    let what = match lockout.scope {
        Scope::Account => "this account",
        Scope::Address => "your address",
    };
    let message = format!("too many failed logins for {what}; try again in {secs} s");
    (retry_after, ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)).into_response()
}

const LOCKED_HTML: &str = r#"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>登录已暂时锁定 / Login locked</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body class="login-page"><main class="login-box">
<p>登录失败次数过多，请 {secs} 秒后再试。</p>
<p lang="en">Too many failed logins; try again in {secs} s.</p>
<p><a href="/login">返回登录 / Back to login</a></p>
</main></body></html>
"#;

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers) {
        if let Err(e) = state.db(move |s| users::delete_session(s, &token)).await {
            return e.into_response();
        }
    }
    match session_cookie(&state, "", 0) {
        Ok(cookie) => (
            StatusCode::OK,
            [(header::SET_COOKIE, cookie)],
            Json(serde_json::json!({ "ok": true })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/me`: who is logged in, and the CSRF token the page must send back.
pub async fn me(CurrentUser(su): CurrentUser) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "id": su.user.id,
        "name": su.user.name,
        "role": su.user.role,
        "csrf_token": su.csrf_token,
    }))
}

/// The body of `POST /api/me/password`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnPasswordChange {
    /// The user's password now.
    pub current_password: String,
    /// The password to set.
    pub new_password: String,
}

/// `POST /api/me/password`: a user changes their own password, proving the current one.
/// Every other session of the user ends; this one stays. Wrong current passwords count as
/// failed logins of the account (so a stolen session cannot be used to guess it) and get
/// 403; while locked out, 429.
pub async fn change_own_password(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    CurrentUser(su): CurrentUser,
    ApiJson(input): ApiJson<OwnPasswordChange>,
) -> Response {
    if let Err(e) = users::validate_password(&input.new_password) {
        return ApiError::from(e).into_response();
    }
    let name = su.user.name.clone();
    let attempt = match state.login_begin(&name, ip) {
        Ok(attempt) => attempt,
        Err(lockout) => return locked_response(&headers, lockout),
    };
    let lookup = name.clone();
    let checked = match state.db(move |s| users::login_candidate(s, &lookup)).await {
        Ok(candidate) => state.verify_password(candidate, input.current_password).await,
        Err(e) => Err(e),
    };
    match checked {
        Ok(Some(_)) => state.login_succeeded(attempt),
        Ok(None) => {
            log_failure(state.login_failed(attempt), &name, ip);
            return ApiError::forbidden("the current password is wrong").into_response();
        }
        Err(e) => {
            let _ = state.login_failed(attempt);
            return e.into_response();
        }
    }
    let result = async {
        let phc = state.hash_new_password(input.new_password).await?;
        let keep = session_token(&headers);
        let id = su.user.id;
        state
            .db(move |s| users::set_password_hash(s, id, &phc, keep.as_deref()))
            .await
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(user = %quoted_for_log(&name), address = %ip, "password changed by its user");
            Json(serde_json::json!({ "ok": true })).into_response()
        }
        Err(e) => e.into_response(),
    }
}
