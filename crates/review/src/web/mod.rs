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
//! | `POST /api/me/password` | user | change one's own password (with the current one) |
//! | `GET /api/facets` | user | values for the filter drop-downs |
//! | `GET /api/patches?…&limit=&after=` | user | one page of the filtered queue, its counts, total and next link |
//! | `GET /api/patches/{id}` | user | attributes, geometry, current verdict, history, events |
//! | `GET /api/patches/{id}/chip/{before,after}` | user | chip image |
//! | `POST /api/patches/{id}/verdict` | user | record a verdict (admins may change one) |
//! | `POST /api/patches/{id}/reopen` | admin | reopen a decided patch |
//! | `GET /api/overview?…&limit=&after=` | user | one page of outlines, for the SVG overview |
//! | `GET /api/export?format=geojson\|csv` | user | download the verdicts |
//! | `GET /tiles/{run}/{before,after}/{z}/{x}/{y}.png`, `GET /api/map/patches` | user | the map (see [`map`]) |
//! | `GET /api/patches/{id}/evidence`, `…/evidence/{eid}/photo` | user | field-check results (see [`field`]) |
//! | `GET /wmts/…`, `GET/POST/DELETE /api/me/map-tokens` | user or map token | WMTS for GIS clients (see [`wmts`]) |
//! | `GET/POST /api/admin/users`, `POST /api/admin/users/{id}/disabled` | admin | manage users |
//! | `POST /api/admin/users/{id}/password`, `DELETE /api/admin/users/{id}` | admin | reset a password, remove an account |
//!
//! Sessions end server-side after [`users::SessionLimits`] (idle time, lifetime). The
//! server stops gracefully on SIGTERM or Ctrl-C ([`serve`]).
//!
//! Against abuse: logins are throttled per account and per address ([`throttle`]) and their
//! passwords checked outside the database lock, a few at a time; a request must name an
//! allowed `Host` (DNS-rebinding protection); bodies are limited to [`MAX_BODY_BYTES`]; a
//! connection must send its request head within the header-read timeout and every request
//! must finish within the request timeout (408).

mod api;
pub mod auth;
pub mod error;
pub mod field;
pub mod map;
pub mod throttle;
pub mod wmts;

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower_http::timeout::TimeoutLayer;

use super::store::{ReviewError, ReviewResult, Store};
use super::users::{self, HashCost, LoginCandidate, SessionLimits, User};
use error::ApiError;
use throttle::{Attempt, Lockout, LoginLimits, LoginThrottle};

/// Largest request body accepted (bigger ones get 413). The largest real one, a verdict
/// with a 2000-character note, is well under 16 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Default time a connection has to send a complete request head (`--header-read-timeout`).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a request has to be read and answered (`--request-timeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for requests in flight (systemd waits 90 s before SIGKILL).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Server options beyond the database and data folder.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Mark the session cookie `Secure` (set when served over HTTPS, e.g. behind a proxy).
    /// An `https://` public origin implies it.
    pub secure_cookie: bool,
    /// The public origin (`https://review.example.gov.cn`) when behind a proxy that
    /// rewrites `Host`; state changes from any other origin are refused.
    pub public_origin: Option<String>,
    /// Host names, besides `localhost` and the public origin's, that requests may name in
    /// `Host`. IP addresses are always accepted (DNS rebinding needs a name).
    pub allowed_hosts: Vec<String>,
    /// Login throttling.
    pub login_limits: LoginLimits,
    /// Time a connection has to send a complete request head before it is closed.
    pub header_read_timeout: Duration,
    /// Time a request has to be read and answered before it gets 408.
    pub request_timeout: Duration,
    /// When sessions end (idle time and lifetime).
    pub session_limits: SessionLimits,
    /// Cost of the password hashes the server makes (new users, password changes).
    pub password_cost: HashCost,
    /// Folder for map overviews and rendered tiles; `None`: `<database>.cache` beside the
    /// database (never beside the user's images).
    pub cache_dir: Option<PathBuf>,
    /// Bound of the rendered-tile cache, bytes.
    pub tile_cache_bytes: u64,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            secure_cookie: false,
            public_origin: None,
            allowed_hosts: Vec::new(),
            login_limits: LoginLimits::default(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            session_limits: SessionLimits::default(),
            password_cost: HashCost::default(),
            cache_dir: None,
            tile_cache_bytes: crate::tiles::DEFAULT_TILE_CACHE_BYTES,
        }
    }
}

/// Splits an `https://host[:port]` origin into (is https, lower-case host name).
fn parse_public_origin(origin: &str) -> ReviewResult<(bool, String)> {
    let bad = || {
        ReviewError::BadInput(format!(
            "--public-origin must be a scheme and host with an optional port, like \
             https://review.example.gov.cn — got {origin:?}"
        ))
    };
    let (https, rest) = if let Some(rest) = origin.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = origin.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(bad());
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(bad());
    }
    let host = host_name(authority).ok_or_else(bad)?;
    Ok((https, host))
}

/// The host name of a `Host` value (`name`, `name:port`, `[v6]:port`), lower case and
/// without a trailing dot; `None` when it is malformed.
fn host_name(host: &str) -> Option<String> {
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inside
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let well_formed = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
    well_formed.then_some(name)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The host names requests may name: `localhost`, the public origin's host and `extra`.
fn allowed_host_names(public_host: Option<&str>, extra: &[String]) -> ReviewResult<HashSet<String>> {
    let mut names: HashSet<String> = ["localhost".to_string()].into();
    names.extend(public_host.map(str::to_string));
    for h in extra {
        let name = host_name(h.trim()).ok_or_else(|| {
            ReviewError::BadInput(format!(
                "--allowed-host {h:?} is not a host name (like review.example.gov.cn or review-pc:8080)"
            ))
        })?;
        names.insert(name);
    }
    Ok(names)
}

/// Shared state of the server: the database (one connection behind a mutex; SQLite
/// serialises writes anyway; `None` once closed at shutdown) and the canonical data
/// folder chips are served from.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Mutex<Option<Store>>,
    data_root: PathBuf,
    options: ServeOptions,
    /// The public origin is https: cookies are `Secure` whatever `secure_cookie` says.
    public_https: bool,
    allowed_hosts: HashSet<String>,
    throttle: Mutex<LoginThrottle>,
    /// Password checks and hashes running at once (each argon2 run takes ~19 MiB or more
    /// and a core).
    password_checks: tokio::sync::Semaphore,
    /// Checked for unknown login names, at the server's hash cost, so they take as long.
    decoy_hash: String,
    /// Map tiles of the runs' images.
    tiles: crate::tiles::TileService,
}

impl AppState {
    /// Builds the state; `data_root` must exist (it is canonicalised once, here). Fails
    /// (exit 2) on a malformed public origin or allowed host.
    pub fn new(store: Store, data_root: &Path, options: ServeOptions) -> ReviewResult<AppState> {
        let data_root = data_root
            .canonicalize()
            .map_err(|e| landwatch_core::Error::input(data_root, format!("data folder not found: {e}")))?;
        let public = options.public_origin.as_deref().map(parse_public_origin).transpose()?;
        let allowed_hosts = allowed_host_names(public.as_ref().map(|p| p.1.as_str()), &options.allowed_hosts)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let decoy_hash = users::decoy_hash(&options.password_cost)?;
        let cache_dir = options
            .cache_dir
            .clone()
            .unwrap_or_else(|| default_cache_dir(store.path()));
        let tiles = crate::tiles::TileService::new(&cache_dir, options.tile_cache_bytes)?;
        Ok(AppState {
            inner: Arc::new(Inner {
                store: Mutex::new(Some(store)),
                decoy_hash,
                data_root,
                public_https: public.is_some_and(|p| p.0),
                allowed_hosts,
                throttle: Mutex::new(LoginThrottle::new(options.login_limits.clone())),
                password_checks: tokio::sync::Semaphore::new(cores),
                tiles,
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
            let mut guard = inner
                .store
                .lock()
                .map_err(|_| ApiError::internal("database lock poisoned"))?;
            let store = guard
                .as_mut()
                .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"))?;
            f(store).map_err(ApiError::from)
        })
        .await;
        joined.unwrap_or_else(|e| Err(ApiError::internal(e)))
    }

    /// Closes the database (checkpointing its log); requests after this get 503.
    pub fn close_store(&self) -> ReviewResult<()> {
        let taken = match self.inner.store.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        taken.map_or(Ok(()), Store::close)
    }

    /// The data folder chips are served from.
    pub fn data_root(&self) -> &Path {
        &self.inner.data_root
    }

    /// Tile `z/x/y` of `date` of run `run_id` (folder `run_dir`), rendered in the blocking
    /// pool (GDAL is blocking) or read from the tile cache.
    pub async fn render_tile(
        &self,
        run_id: i64,
        run_dir: PathBuf,
        date: crate::tiles::Date,
        (z, x, y): (u32, u32, u32),
    ) -> Result<Vec<u8>, ApiError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.tiles.tile(run_id, &run_dir, &inner.data_root, date, (z, x, y)))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)
    }

    /// When sessions end.
    pub fn session_limits(&self) -> &SessionLimits {
        &self.inner.options.session_limits
    }

    /// Whether cookies get `Secure`: asked for, or implied by an https public origin.
    pub fn secure_cookie(&self) -> bool {
        self.inner.options.secure_cookie || self.inner.public_https
    }

    /// Checks a login's password in the blocking pool, outside the database lock and at
    /// most one per core at a time, so a flood of logins neither stalls the runtime nor
    /// keeps other users' requests from the database.
    pub async fn verify_password(&self, candidate: LoginCandidate, password: String) -> Result<Option<User>, ApiError> {
        let _permit = self.inner.password_checks.acquire().await.map_err(ApiError::internal)?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || users::verify_login(candidate, &password, &inner.decoy_hash))
            .await
            .map_err(ApiError::internal)
    }

    /// Checks and hashes a new password at the server's cost, like [`Self::verify_password`]
    /// in the blocking pool, outside the database lock, a few at a time.
    pub async fn hash_new_password(&self, password: String) -> Result<String, ApiError> {
        users::validate_password(&password)?;
        let _permit = self.inner.password_checks.acquire().await.map_err(ApiError::internal)?;
        let cost = self.inner.options.password_cost;
        tokio::task::spawn_blocking(move || users::hash_password_with(&password, &cost))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)
    }

    /// Cost of the password hashes this server makes.
    pub fn password_cost(&self) -> HashCost {
        self.inner.options.password_cost
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, LoginThrottle> {
        // The throttle holds no invariant a panic could break half-way; keep using it.
        self.inner.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets a login for `name` from `ip` go on to its password check, or refuses it with
    /// the lock-out in force.
    pub fn login_begin(&self, name: &str, ip: IpAddr) -> Result<Attempt, Lockout> {
        self.throttle().begin(name, ip, Instant::now())
    }

    /// Ends a login attempt that had the right password.
    pub fn login_succeeded(&self, attempt: Attempt) {
        self.throttle().succeeded(attempt);
    }

    /// Ends a failed login attempt; returns the lock-outs it started.
    pub fn login_failed(&self, attempt: Attempt) -> Vec<Lockout> {
        self.throttle().failed(attempt)
    }

    /// Whether a request's `Host` value names this server: any IP address, `localhost`,
    /// the public origin's host or an `--allowed-host`.
    pub fn host_allowed(&self, host: &str) -> bool {
        match host_name(host) {
            Some(name) => name.parse::<IpAddr>().is_ok() || self.inner.allowed_hosts.contains(&name),
            None => false,
        }
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

/// `<database>.cache` beside the database file.
fn default_cache_dir(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".cache");
    db.with_file_name(name)
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
        .route("/me/password", post(auth::change_own_password))
        .route("/facets", get(api::facets))
        .route("/patches", get(api::list_patches))
        .route("/patches/{id}", get(api::patch_detail))
        .route("/patches/{id}/chip/{which}", get(api::chip))
        .route("/patches/{id}/verdict", post(api::post_verdict))
        .route("/patches/{id}/reopen", post(api::reopen))
        .route("/overview", get(api::overview))
        .route("/map/patches", get(map::patches))
        .route("/patches/{id}/evidence", get(field::evidence))
        .route("/patches/{id}/evidence/{eid}/photo", get(field::photo))
        .route("/map/layers/{run}/{layer}", get(map::layer))
        .route("/me/map-tokens", get(wmts::list_tokens).post(wmts::create_token))
        .route("/me/map-tokens/{id}", axum::routing::delete(wmts::revoke_token))
        .route("/export", get(api::export))
        .route("/admin/users", get(api::list_users).post(api::add_user))
        .route("/admin/users/{id}", axum::routing::delete(api::remove_user))
        .route("/admin/users/{id}/disabled", post(api::set_disabled))
        .route("/admin/users/{id}/password", post(api::reset_password))
        .fallback(|| async { ApiError::not_found("no such API route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        });
    Router::new()
        .route("/", get(index_page))
        .route("/login", get(login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/static/{file}", get(static_file))
        .route("/static/images/{file}", get(static_image))
        .route("/tiles/{run}/{date}/{z}/{x}/{y}", get(map::tile))
        .route("/wmts/1.0.0/WMTSCapabilities.xml", get(wmts::capabilities))
        .route(
            "/wmts/t/{token}/1.0.0/WMTSCapabilities.xml",
            get(wmts::capabilities_with_token),
        )
        .route("/wmts/1.0.0/{layer}/{set}/{z}/{row}/{col}", get(wmts::tile))
        .route(
            "/wmts/t/{token}/1.0.0/{layer}/{set}/{z}/{row}/{col}",
            get(wmts::tile_with_token),
        )
        .nest("/api", api)
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::from_fn_with_state(state.clone(), auth::csrf_guard))
        .layer(middleware::from_fn_with_state(state.clone(), host_guard))
        .layer(middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.inner.options.request_timeout,
        ))
        .with_state(state)
}

/// Refuses (421) requests whose `Host` is not a name of this server, so a page on another
/// site whose name was made to resolve to this server (DNS rebinding) cannot use it.
async fn host_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        Some(h) if state.host_allowed(h) => next.run(req).await,
        Some(h) => {
            let shown = super::text::escape_for_log(h, 100);
            ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "host \"{shown}\" is not served here; use the address the server was set up \
                     with, or add it with --allowed-host"
                ),
            )
            .into_response()
        }
        None => ApiError::new(StatusCode::BAD_REQUEST, "the request has no Host header").into_response(),
    }
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
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not "no-referrer": with it browsers send `Origin: null` on same-origin POSTs, which
    // the Origin check (rightly) refuses.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
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
        _ => return map_static(&file),
    };
    (
        [(header::CONTENT_TYPE, ctype), (header::CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// The map's static files (Leaflet and map.js), or 404.
fn map_static(file: &str) -> Response {
    match map::static_asset(file) {
        Some((body, ctype)) => (
            [(header::CONTENT_TYPE, ctype), (header::CACHE_CONTROL, "no-cache")],
            body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// `GET /static/images/{file}`: the icons leaflet.css names.
async fn static_image(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    map_static(&format!("images/{file}"))
}

/// Binds `bind` and serves until SIGTERM (systemd stop) or Ctrl-C (SIGINT), then stops
/// gracefully (see [`serve_until`]) and closes the database. Prints the address it listens
/// on and each step of stopping.
pub async fn serve(state: AppState, bind: SocketAddr) -> landwatch_core::Result<()> {
    // Handlers first: a signal arriving once the address is printed must not kill the
    // process outright.
    let stop = stop_signal()?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| landwatch_core::Error::Usage(format!("cannot listen on {bind}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| landwatch_core::Error::Other(format!("listener address: {e}")))?;
    eprintln!(
        "landwatch review: serving http://{addr}/ (data folder {})",
        state.data_root().display()
    );
    let closer = state.clone();
    serve_until(state, listener, async {
        let name = stop.await;
        eprintln!("landwatch review: {name} received; stopping");
        tracing::info!("review server: {name} received; stopping");
    })
    .await;
    closer
        .close_store()
        .map_err(|e| landwatch_core::Error::Other(format!("closing the review database: {e}")))?;
    eprintln!("landwatch review: stopped; database closed");
    Ok(())
}

/// A future that ends with the name of the first stop signal: SIGTERM or SIGINT (Ctrl-C)
/// on Unix, Ctrl-C elsewhere. The handlers are installed before this returns.
fn stop_signal() -> landwatch_core::Result<impl Future<Output = &'static str>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let install = |kind, name: &str| {
            signal(kind).map_err(|e| landwatch_core::Error::Other(format!("cannot handle {name}: {e}")))
        };
        let mut term = install(SignalKind::terminate(), "SIGTERM")?;
        let mut int = install(SignalKind::interrupt(), "SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        })
    }
}

/// State for an already open listener; used by tests to serve on an ephemeral port.
pub async fn serve_on(state: AppState, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_until(state, listener, std::future::pending()).await;
    Ok(())
}

/// Accepts HTTP/1.1 connections until `shutdown`, then closes the listener (new
/// connections are refused) and lets requests in flight finish, for at most
/// [`SHUTDOWN_GRACE`]; idle keep-alive connections are closed at once. Served with hyper
/// directly rather than `axum::serve`, which has no header-read timeout: a connection that
/// does not send a complete request head within the timeout (idle keep-alive connections
/// included) is closed.
async fn serve_until(state: AppState, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.inner.options.header_read_timeout);
    let app = router(state);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("review server: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let with_peer = tower::ServiceExt::map_request(app.clone(), move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            req
        });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(with_peer));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("review server: connection from {remote}: {e}");
            }
        });
    }
    drop(listener);
    eprintln!(
        "landwatch review: no longer accepting connections; waiting up to {} s for requests in flight",
        SHUTDOWN_GRACE.as_secs()
    );
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("review server: requests still running after {SHUTDOWN_GRACE:?}; stopping anyway");
        eprintln!(
            "landwatch review: requests still running after {} s; stopping anyway",
            SHUTDOWN_GRACE.as_secs()
        );
    }
}
