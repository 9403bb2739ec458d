//! The review web server: an axum router over the review database, serving the embedded
//! single-page app (HTML/CSS/JS compiled into the binary; no CDN, no network at run time).
//!
//! Routes (all `/api/*` answer JSON; errors are `{"error": "..."}`):
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /`, `GET /login` | any | the app (redirects to `/login` without a session), the login form |
//! | `POST /login`, `POST /logout` | any / user | start / end a session |
//! | `GET /api/me` | user | name, role, CSRF token |
//! | `GET /api/facets` | user | values for the filter drop-downs |
//! | `GET /api/patches?…` | user | the filtered queue and its counts |
//! | `GET /api/patches/{id}` | user | attributes, geometry, current verdict, history |
//! | `GET /api/patches/{id}/chip/{before,after}` | user | chip image |
//! | `POST /api/patches/{id}/verdict` | user | record a verdict (admins may change one) |
//! | `POST /api/patches/{id}/reopen` | admin | reopen a decided patch |
//! | `GET /api/overview` | user | every outline, for the SVG overview |
//! | `GET /api/export?format=geojson\|csv` | user | download the verdicts |
//! | `GET/POST /api/admin/users`, `POST /api/admin/users/{id}/disabled` | admin | manage users |

mod api;
pub mod auth;
pub mod error;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use super::store::{ReviewResult, Store};
use error::ApiError;

/// Server options beyond the database and data folder.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Mark the session cookie `Secure` (set when served over HTTPS, e.g. behind a proxy).
    pub secure_cookie: bool,
    /// The public origin (`https://review.example.gov.cn`) when behind a proxy that
    /// rewrites `Host`; state changes from any other origin are refused.
    pub public_origin: Option<String>,
}

/// Shared state of the server: the database (one connection behind a mutex; SQLite
/// serialises writes anyway) and the canonical data folder chips are served from.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Mutex<Store>,
    data_root: PathBuf,
    options: ServeOptions,
}

impl AppState {
    /// Builds the state; `data_root` must exist (it is canonicalised once, here).
    pub fn new(store: Store, data_root: &Path, options: ServeOptions) -> ReviewResult<AppState> {
        let data_root = data_root
            .canonicalize()
            .map_err(|e| crate::Error::input(data_root, format!("data folder not found: {e}")))?;
        Ok(AppState {
            inner: Arc::new(Inner {
                store: Mutex::new(store),
                data_root,
                options,
            }),
        })
    }

    /// Runs `f` on the database in the blocking pool (SQLite and argon2 are blocking).
    pub async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> ReviewResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let joined = tokio::task::spawn_blocking(move || {
            let mut store = inner
                .store
                .lock()
                .map_err(|_| ApiError::internal("database lock poisoned"))?;
            f(&mut store).map_err(ApiError::from)
        })
        .await;
        joined.unwrap_or_else(|e| Err(ApiError::internal(e)))
    }

    pub fn data_root(&self) -> &Path {
        &self.inner.data_root
    }

    pub fn secure_cookie(&self) -> bool {
        self.inner.options.secure_cookie
    }

    /// True when `origin` is this server: the configured public origin, or else the
    /// request's own `Host` over http or https.
    pub fn origin_allowed(&self, origin: &str, headers: &HeaderMap) -> bool {
        if let Some(public) = &self.inner.options.public_origin {
            return origin.trim_end_matches('/') == public.trim_end_matches('/');
        }
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        origin == format!("http://{host}") || origin == format!("https://{host}")
    }
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const LOGIN_JS: &str = include_str!("assets/login.js");
const I18N_JS: &str = include_str!("assets/i18n.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The complete router, with the security middleware applied.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/me", get(auth::me))
        .route("/facets", get(api::facets))
        .route("/patches", get(api::list_patches))
        .route("/patches/{id}", get(api::patch_detail))
        .route("/patches/{id}/chip/{which}", get(api::chip))
        .route("/patches/{id}/verdict", post(api::post_verdict))
        .route("/patches/{id}/reopen", post(api::reopen))
        .route("/overview", get(api::overview))
        .route("/export", get(api::export))
        .route("/admin/users", get(api::list_users).post(api::add_user))
        .route("/admin/users/{id}/disabled", post(api::set_disabled))
        .fallback(|| async { ApiError::not_found("no such API route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        });
    Router::new()
        .route("/", get(index_page))
        .route("/login", get(login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/static/{file}", get(static_file))
        .nest("/api", api)
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::csrf_guard,
        ))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers on every response: a strict CSP (only our own scripts, styles and images), no
/// MIME sniffing, no framing, no referrer to other sites, and no caching of API answers.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not "no-referrer": with it browsers send `Origin: null` on same-origin POSTs, which
    // the Origin check (rightly) refuses.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if is_api && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

fn html(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the app, or a redirect to the login form without a session.
async fn index_page(user: Result<auth::CurrentUser, ApiError>) -> Response {
    match user {
        Ok(_) => html(INDEX_HTML),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Redirect::to("/login").into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /login`: the login form (or straight to the app when already logged in).
async fn login_page(user: Result<auth::CurrentUser, ApiError>) -> Response {
    match user {
        Ok(_) => Redirect::to("/").into_response(),
        Err(_) => html(LOGIN_HTML),
    }
}

/// `GET /static/{file}`: the embedded scripts and stylesheet.
async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, ctype) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "login.js" => (LOGIN_JS, "text/javascript; charset=utf-8"),
        "i18n.js" => (I18N_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Binds `bind` and serves until Ctrl-C. Prints the address it listens on.
pub async fn serve(state: AppState, bind: SocketAddr) -> crate::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| crate::Error::Usage(format!("cannot listen on {bind}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| crate::Error::Other(format!("listener address: {e}")))?;
    eprintln!(
        "landwatch review: serving http://{addr}/ (data folder {})",
        state.data_root().display()
    );
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| crate::Error::Other(format!("review server stopped: {e}")))
}

/// State for an already open listener; used by tests to serve on an ephemeral port.
pub async fn serve_on(state: AppState, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}
