//! The review app: where county enforcement staff triage patches (图斑) in a browser and
//! record verdicts — 合法 / 违法 / 其他 — that survive every later nightly run and stay
//! traceable to who decided what, when.
//!
//! Parts:
//! * [`store`]: the SQLite database (WAL, numbered migrations, append-only audit table);
//! * [`import`]: loading a run's `patches.geojson`, matching reruns to existing patches;
//! * [`users`]: accounts (argon2), sessions, CSRF tokens;
//! * [`verdicts`]: recording and reopening decisions, the filtered queue;
//! * [`chips`]: serving chip images without ever leaving the data folder;
//! * [`text`]: refusing control and text-direction characters in notes and names;
//! * [`export`], [`export_ogr`]: verdicts as GeoJSON / CSV / GeoPackage / Shapefile with the
//!   reviewer fields (NYQK/PDJG/BZ) filled;
//! * [`tiles`]: map tiles of a run's before/after images (Web Mercator, cached on disk);
//! * [`web`]: the axum server and the embedded zh-CN/English page.
//!
//! The CLI is `landwatch review serve|import|user add|passwd|remove|list|export`
//! ([`ReviewCmd`], [`cli_main`]).
#![warn(missing_docs)]

pub(crate) mod chips;
pub mod export;
pub(crate) mod export_ogr;
pub mod field;
pub mod import;
pub(crate) mod layers;
pub mod map_tokens;
pub mod simulate;
pub mod store;
pub(crate) mod text;
pub mod tiles;
pub mod users;
pub mod verdict_eval;
pub mod verdict_train;
pub mod verdicts;
pub mod web;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use store::{ReviewError, Store};

/// Name of the environment variable `user add` reads the password from.
pub const PASSWORD_ENV: &str = "LANDWATCH_PASSWORD";
/// Environment variables that set the argon2 cost when the flags are not given: its memory (KiB) …
pub const ARGON2_MEMORY_ENV: &str = "LANDWATCH_ARGON2_MEMORY_KIB";
/// … its time cost (iterations) …
pub const ARGON2_ITERATIONS_ENV: &str = "LANDWATCH_ARGON2_ITERATIONS";
/// … and its parallelism (lanes).
pub const ARGON2_PARALLELISM_ENV: &str = "LANDWATCH_ARGON2_PARALLELISM";

/// The cost of new password hashes: flag, else environment variable, else the minimum
/// (which is also the default). Stored hashes keep verifying whatever is chosen here.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Argon2Args {
    /// Memory per password hash in KiB (at least 19456; env LANDWATCH_ARGON2_MEMORY_KIB).
    #[arg(long, value_name = "KIB")]
    pub argon2_memory_kib: Option<u32>,
    /// Passes per password hash (at least 2; env LANDWATCH_ARGON2_ITERATIONS).
    #[arg(long, value_name = "N")]
    pub argon2_iterations: Option<u32>,
    /// Lanes per password hash (at least 1; env LANDWATCH_ARGON2_PARALLELISM).
    #[arg(long, value_name = "N")]
    pub argon2_parallelism: Option<u32>,
}

impl Argon2Args {
    /// The cost asked for; refuses values below the safe minimum (exit 2, naming the flag
    /// or variable).
    pub fn cost(&self) -> landwatch_core::Result<users::HashCost> {
        let min = users::HashCost::MINIMUM;
        let memory = flag_or_env(self.argon2_memory_kib, ARGON2_MEMORY_ENV, min.memory_kib())?;
        let iterations = flag_or_env(self.argon2_iterations, ARGON2_ITERATIONS_ENV, min.iterations())?;
        let parallelism = flag_or_env(self.argon2_parallelism, ARGON2_PARALLELISM_ENV, min.parallelism())?;
        Ok(users::HashCost::new(memory, iterations, parallelism)?)
    }
}

/// `flag` when given, else the environment variable `env` (a whole number), else `default`.
fn flag_or_env(flag: Option<u32>, env: &str, default: u32) -> landwatch_core::Result<u32> {
    if let Some(v) = flag {
        return Ok(v);
    }
    match std::env::var(env) {
        Ok(text) => text.trim().parse().map_err(|_| {
            landwatch_core::Error::Usage(format!("{env}={text:?} is not a whole number; unset it or fix it"))
        }),
        Err(_) => Ok(default),
    }
}

/// `landwatch review ...`
#[derive(Debug, clap::Subcommand)]
pub enum ReviewCmd {
    /// Serve the review web app.
    Serve(ServeArgs),
    /// Load a detection run (RUN_DIR/patches.geojson) into the review database.
    /// Patches seen before (same track_id, or overlapping with IoU >= 0.5) keep their verdicts.
    Import(ImportArgs),
    /// Manage reviewer accounts.
    #[command(subcommand)]
    User(UserCmd),
    /// Write every patch with its current verdict (reviewer fields NYQK/PDJG/BZ filled).
    Export(ExportArgs),
    /// Decide a run's undecided patches from a truth raster (simulated review, for measuring).
    Simulate(simulate::SimulateArgs),
    /// Write a field-check package (GeoPackage with chips) of a county's or chosen patches.
    FieldExport(FieldExportArgs),
    /// Bring back a field package's results (photos, notes, field verdicts) as evidence.
    FieldImport(FieldImportArgs),
}

#[derive(Debug, clap::Args)]
/// Arguments of `landwatch review field-export`.
pub struct FieldExportArgs {
    /// Review database.
    #[arg(long)]
    pub db: PathBuf,
    /// Data folder the chips are read from (the one `serve --data` uses).
    #[arg(long)]
    pub data: PathBuf,
    /// Every patch of this county (XZQDM).
    #[arg(long, value_name = "XZQDM", conflicts_with = "ids", required_unless_present = "ids")]
    pub county: Option<String>,
    /// These patches (review ids, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "ID,ID,…")]
    pub ids: Option<Vec<i64>>,
    /// The package to write (*.gpkg).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
/// Arguments of `landwatch review field-import`.
pub struct FieldImportArgs {
    /// Review database.
    #[arg(long)]
    pub db: PathBuf,
    /// The field package with its field_results filled in.
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
/// Arguments of `landwatch review serve`.
pub struct ServeArgs {
    /// Review database (created if missing).
    #[arg(long)]
    pub db: PathBuf,
    /// Data folder; chips are only served from run folders inside it.
    #[arg(long)]
    pub data: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Mark the session cookie Secure (when users reach the app over HTTPS; implied by an
    /// https --public-origin).
    #[arg(long)]
    pub secure_cookie: bool,
    /// Public origin (e.g. https://review.example.gov.cn) when behind a reverse proxy.
    #[arg(long)]
    pub public_origin: Option<String>,
    /// Another host name users reach the server by (besides localhost, IP addresses and the
    /// public origin's host); requests naming any other host get 421. Repeatable.
    #[arg(long = "allowed-host", value_name = "HOST")]
    pub allowed_hosts: Vec<String>,
    /// Failed logins per account name within --login-window that lock it (0: no limit).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub login_max_failures: u32,
    /// Failed logins per client address within --login-window that lock it (0: no limit;
    /// behind a reverse proxy every client has the proxy's address).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub login_max_failures_per_address: u32,
    /// Seconds over which failed logins are counted.
    #[arg(long, default_value_t = 900, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub login_window: u64,
    /// Seconds of the first lock-out; each further one doubles, up to --login-lockout-max.
    #[arg(long, default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub login_lockout: u64,
    /// Longest lock-out in seconds.
    #[arg(long, default_value_t = 900, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub login_lockout_max: u64,
    /// Seconds a connection has to send a complete request head before it is closed.
    #[arg(long, default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout: u64,
    /// Seconds a request has to be sent and answered before it gets 408.
    #[arg(long, default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,
    /// Seconds a session may go unused before it ends (default 8 h).
    #[arg(long, default_value_t = 8 * 3600, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(60..))]
    pub session_idle_timeout: u64,
    /// Seconds after login a session ends however busy (default 12 h).
    #[arg(long, default_value_t = 12 * 3600, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(60..))]
    pub session_max_lifetime: u64,
    #[command(flatten)]
    /// Password hashing cost.
    pub argon2: Argon2Args,
    /// Folder for the map's overviews and rendered tiles (default: <db>.cache beside the
    /// database; never beside the images).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Most megabytes of rendered map tiles kept in the cache folder.
    #[arg(long, default_value_t = 512, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..))]
    pub tile_cache_mb: u64,
}

impl ServeArgs {
    /// The server options these arguments ask for; fails (exit 2) on an unsafe argon2 cost.
    pub fn options(&self) -> landwatch_core::Result<web::ServeOptions> {
        let secs = std::time::Duration::from_secs;
        Ok(web::ServeOptions {
            secure_cookie: self.secure_cookie,
            public_origin: self.public_origin.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
            login_limits: web::throttle::LoginLimits {
                max_failures_per_account: self.login_max_failures,
                max_failures_per_address: self.login_max_failures_per_address,
                window: secs(self.login_window),
                lockout: secs(self.login_lockout),
                lockout_max: secs(self.login_lockout_max.max(self.login_lockout)),
            },
            header_read_timeout: secs(self.header_read_timeout),
            request_timeout: secs(self.request_timeout),
            session_limits: users::SessionLimits {
                idle: secs(self.session_idle_timeout),
                max_lifetime: secs(self.session_max_lifetime),
            },
            password_cost: self.argon2.cost()?,
            cache_dir: self.cache_dir.clone(),
            tile_cache_bytes: self.tile_cache_mb * 1024 * 1024,
        })
    }
}

#[derive(Debug, clap::Args)]
/// Arguments of `landwatch review import`.
pub struct ImportArgs {
    /// The run folder (holds patches.geojson and chips/).
    pub run_dir: PathBuf,
    /// Review database (created if missing).
    #[arg(long)]
    pub db: PathBuf,
    /// When given, refuse a run folder outside this data folder (the one `serve --data` uses).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
/// `landwatch review user ...`
pub enum UserCmd {
    /// Add a user. The password is read from standard input (--password-stdin) or from
    /// the LANDWATCH_PASSWORD environment variable, never from the command line.
    Add(UserAddArgs),
    /// Set a user's password (read like `add` reads it); ends all of the user's sessions.
    Passwd(UserPasswdArgs),
    /// Remove a user: no more logins, sessions ended; past verdicts keep the name.
    Remove {
        /// Login name.
        name: String,
        #[arg(long)]
        /// Review database.
        db: PathBuf,
    },
    /// List users (id, name, role, active/disabled/removed).
    List {
        #[arg(long)]
        /// Review database.
        db: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
/// Arguments of `landwatch review user passwd`.
pub struct UserPasswdArgs {
    /// Login name.
    pub name: String,
    #[arg(long)]
    /// Review database.
    pub db: PathBuf,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    /// Password hashing cost.
    pub argon2: Argon2Args,
}

#[derive(Debug, clap::Args)]
/// Arguments of `landwatch review user add`.
pub struct UserAddArgs {
    /// Login name.
    pub name: String,
    /// reviewer: records verdicts; admin: also manages users and reopens decisions.
    #[arg(long, value_enum)]
    pub role: users::Role,
    #[arg(long)]
    /// Review database.
    pub db: PathBuf,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    /// Password hashing cost.
    pub argon2: Argon2Args,
}

#[derive(Debug, clap::Args)]
/// Arguments of `landwatch review export`.
pub struct ExportArgs {
    #[arg(long)]
    /// Review database.
    pub db: PathBuf,
    #[arg(long, value_enum)]
    /// Output format.
    pub format: export::ExportFormat,
    /// Output file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs a `landwatch review` subcommand; returns the process exit code.
pub fn cli_main(cmd: ReviewCmd) -> landwatch_core::Result<i32> {
    match cmd {
        ReviewCmd::Serve(a) => serve_cmd(a),
        ReviewCmd::Import(a) => import_cmd(a),
        ReviewCmd::User(UserCmd::Add(a)) => user_add_cmd(a),
        ReviewCmd::User(UserCmd::Passwd(a)) => user_passwd_cmd(a),
        ReviewCmd::User(UserCmd::Remove { name, db }) => user_remove_cmd(&name, db),
        ReviewCmd::User(UserCmd::List { db }) => user_list_cmd(db),
        ReviewCmd::Export(a) => export_cmd(a),
        ReviewCmd::Simulate(a) => simulate::cli_main(&a),
        ReviewCmd::FieldExport(a) => field_export_cmd(a),
        ReviewCmd::FieldImport(a) => field_import_cmd(a),
    }
}

fn field_export_cmd(a: FieldExportArgs) -> landwatch_core::Result<i32> {
    let store = Store::open(&a.db)?;
    let selection = match (a.county, a.ids) {
        (Some(c), _) => field::Selection::County(c),
        (None, Some(ids)) => field::Selection::Ids(ids),
        (None, None) => {
            return Err(landwatch_core::Error::Usage(
                "give --county XZQDM or --ids ID,ID".into(),
            ))
        }
    };
    let n = field::export(&store, &a.data, &selection, &a.out)?;
    println!("wrote {} patches to the field package {}", n, a.out.display());
    Ok(0)
}

fn field_import_cmd(a: FieldImportArgs) -> landwatch_core::Result<i32> {
    let mut store = Store::open(&a.db)?;
    let r = field::import(&mut store, &a.file)?;
    println!(
        "imported {} field results ({} photos) from {}",
        r.results,
        r.photos,
        a.file.display()
    );
    Ok(0)
}

fn serve_cmd(a: ServeArgs) -> landwatch_core::Result<i32> {
    let options = a.options()?;
    let store = Store::open(&a.db)?;
    let state = web::AppState::new(store, &a.data, options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| landwatch_core::Error::Other(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(web::serve(state, a.bind))?;
    Ok(0)
}

fn import_cmd(a: ImportArgs) -> landwatch_core::Result<i32> {
    let mut store = Store::open(&a.db)?;
    let r = import::import_run(&mut store, &a.run_dir, a.data.as_deref())?;
    println!(
        "imported run {} as run #{}: {} patches ({} new, {} matched by track_id, {} matched by overlap)",
        a.run_dir.display(),
        r.run_id,
        r.features,
        r.new,
        r.matched_by_track,
        r.matched_by_overlap
    );
    if r.flagged_for_rereview > 0 {
        println!(
            "{} decided patches changed outline since their verdict and are flagged for re-review",
            r.flagged_for_rereview
        );
    }
    if r.unsafe_chip_paths > 0 {
        eprintln!(
            "warning: {} patches have chip paths outside the run folder; they will not be served",
            r.unsafe_chip_paths
        );
    }
    Ok(0)
}

/// The new user's password: first line of stdin with `--password-stdin`, else the env var.
fn read_password(from_stdin: bool) -> landwatch_core::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| landwatch_core::Error::Usage(format!("cannot read the password from stdin: {e}")))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    std::env::var(PASSWORD_ENV).map_err(|_| {
        landwatch_core::Error::Usage(format!(
            "no password: pass --password-stdin (and pipe it in) or set {PASSWORD_ENV}"
        ))
    })
}

fn user_add_cmd(a: UserAddArgs) -> landwatch_core::Result<i32> {
    let cost = a.argon2.cost()?;
    let password = read_password(a.password_stdin)?;
    let store = Store::open(&a.db)?;
    let user = users::add_user_with(&store, &a.name, a.role, &password, &cost)?;
    println!("added {} user {:?} (id {})", user.role.as_str(), user.name, user.id);
    Ok(0)
}

/// The user named `name` in `store`, not removed; exit 2 otherwise.
fn existing_user(store: &Store, name: &str) -> landwatch_core::Result<users::User> {
    match users::user_by_name(store, name)? {
        Some(u) if !u.removed => Ok(u),
        Some(_) => Err(landwatch_core::Error::Usage(format!("user {name:?} was removed"))),
        None => Err(landwatch_core::Error::Usage(format!(
            "no user {name:?} in {}; `landwatch review user list` shows them",
            store.path().display()
        ))),
    }
}

fn user_passwd_cmd(a: UserPasswdArgs) -> landwatch_core::Result<i32> {
    let cost = a.argon2.cost()?;
    let password = read_password(a.password_stdin)?;
    let store = Store::open(&a.db)?;
    let user = existing_user(&store, &a.name)?;
    users::set_password(&store, user.id, &password, &cost)?;
    println!("set the password of {:?}; their sessions have ended", user.name);
    Ok(0)
}

fn user_remove_cmd(name: &str, db: PathBuf) -> landwatch_core::Result<i32> {
    let store = Store::open(&db)?;
    let user = existing_user(&store, name)?;
    users::remove_user(&store, user.id)?;
    println!("removed user {:?}; their verdicts keep the name", user.name);
    Ok(0)
}

fn user_list_cmd(db: PathBuf) -> landwatch_core::Result<i32> {
    let store = Store::open(&db)?;
    for u in users::list_users(&store)? {
        let state = match (u.removed, u.disabled) {
            (true, _) => "removed",
            (false, true) => "disabled",
            (false, false) => "active",
        };
        println!("{}\t{}\t{}\t{}", u.id, u.name, u.role.as_str(), state);
    }
    Ok(0)
}

fn export_cmd(a: ExportArgs) -> landwatch_core::Result<i32> {
    let store = Store::open(&a.db)?;
    let n = export::export(&store, a.format, &a.out)?;
    println!("exported {n} patches to {}", a.out.display());
    let flagged: i64 = store
        .conn()
        .query_row("SELECT COUNT(*) FROM patches WHERE needs_rereview <> 0", [], |r| {
            r.get(0)
        })
        .map_err(ReviewError::from)?;
    if flagged > 0 {
        eprintln!(
            "warning: {flagged} exported patches are flagged for re-review: their outline changed \
             since the verdict exported with them (filter the queue by 需复核 to decide them again)"
        );
    }
    Ok(0)
}
