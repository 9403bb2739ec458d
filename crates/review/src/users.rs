//! Accounts, passwords and login sessions.
//!
//! Passwords are stored only as argon2id PHC strings. A session is a random 256-bit token
//! held by the browser in an HttpOnly cookie; the database keeps only its SHA-256, so a
//! leaked database backup does not let anyone log in. Each session also carries its own
//! random CSRF token (the synchroniser token) that the page must echo on every state change.
//!
//! A session ends when it has been idle longer than [`SessionLimits::idle`] or exists longer
//! than [`SessionLimits::max_lifetime`] (checked on every request, so the server, not the
//! cookie, decides), on logout, and when its user's password is changed or the user is
//! disabled or removed. Removed users stay in the table — their names are on verdicts —
//! but can never log in again, and their names are not given to anyone else.

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use rand::RngCore;
use rusqlite::params;
use sha2::{Digest, Sha256};
use std::time::Duration;

use super::store::{now_text, optional, ReviewError, ReviewResult, Store};
use super::text::check_single_line;

/// Default idle time after which a session ends (`--session-idle-timeout`).
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// Default time after which a session ends however busy (`--session-max-lifetime`).
pub const DEFAULT_SESSION_MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// When sessions end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// A session unused for longer than this ends.
    pub idle: Duration,
    /// A session older than this ends, however busy.
    pub max_lifetime: Duration,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            idle: DEFAULT_SESSION_IDLE,
            max_lifetime: DEFAULT_SESSION_MAX_LIFETIME,
        }
    }
}

/// The cost of new argon2id password hashes. Hashes already stored keep verifying whatever
/// the cost now is: the PHC string carries the parameters it was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl HashCost {
    /// The safe minimum (OWASP's argon2id recommendation, also the argon2 crate's default):
    /// 19 MiB, 2 iterations, 1 lane. Lower values are refused.
    pub const MINIMUM: HashCost = HashCost {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };
    /// Largest memory accepted (1 GiB; a login costs this much per concurrent check).
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
    /// Most iterations accepted.
    pub const MAX_ITERATIONS: u32 = 64;
    /// Most lanes accepted.
    pub const MAX_PARALLELISM: u32 = 64;

    /// A cost of `memory_kib` KiB, `iterations` passes and `parallelism` lanes; refuses
    /// values below [`HashCost::MINIMUM`] or above the maximums, naming the flag.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> ReviewResult<HashCost> {
        let check = |value: u32, min: u32, max: u32, name: &str, unit: &str| {
            if (min..=max).contains(&value) {
                return Ok(());
            }
            let env = name.replace('-', "_").to_uppercase();
            Err(ReviewError::BadInput(format!(
                "--argon2-{name} (or LANDWATCH_ARGON2_{env}) {value} is outside {min}–{max}{unit}: \
                 lower is not safe against password cracking, higher makes every login too slow"
            )))
        };
        let min = HashCost::MINIMUM;
        check(memory_kib, min.memory_kib, Self::MAX_MEMORY_KIB, "memory-kib", " KiB")?;
        check(iterations, min.iterations, Self::MAX_ITERATIONS, "iterations", "")?;
        check(parallelism, min.parallelism, Self::MAX_PARALLELISM, "parallelism", "")?;
        // Argon2 needs at least 8 KiB per lane.
        if memory_kib < 8 * parallelism {
            return Err(ReviewError::BadInput(format!(
                "--argon2-memory-kib {memory_kib} is too small for {parallelism} lanes (8 KiB each)"
            )));
        }
        Ok(HashCost {
            memory_kib,
            iterations,
            parallelism,
        })
    }

    /// Memory cost, KiB.
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    /// Time cost (passes over the memory).
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Lanes.
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }

    fn hasher(&self) -> ReviewResult<Argon2<'static>> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| ReviewError::BadInput(format!("argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for HashCost {
    fn default() -> HashCost {
        HashCost::MINIMUM
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Records verdicts on undecided patches.
    Reviewer,
    /// Also manages users and reopens or changes decided patches.
    Admin,
}

impl Role {
    /// The role's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }

    /// The role named `s` (`reviewer` or `admin`).
    pub fn parse(s: &str) -> ReviewResult<Role> {
        match s {
            "reviewer" => Ok(Role::Reviewer),
            "admin" => Ok(Role::Admin),
            other => Err(ReviewError::BadInput(format!(
                "unknown role {other:?}; use reviewer or admin"
            ))),
        }
    }
}

/// A user as the rest of the app sees it (never with the hash).
#[derive(Debug, Clone, serde::Serialize)]
pub struct User {
    /// Database id.
    pub id: i64,
    /// Login name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// Whether logins are refused.
    pub disabled: bool,
    /// When the account was created (UTC, ISO 8601).
    pub created_at: String,
    /// Removed accounts stay listed (their names are on verdicts) but cannot log in.
    pub removed: bool,
}

/// The user behind a valid session, with that session's CSRF token.
#[derive(Debug, Clone)]
pub struct SessionUser {
    /// The user.
    pub user: User,
    /// The session's CSRF token.
    pub csrf_token: String,
}

/// A freshly created session: the cookie value (shown once) and its CSRF token.
pub struct NewSession {
    /// The session cookie's value.
    pub token: String,
    /// The session's CSRF token.
    pub csrf_token: String,
}

/// Checks a user name: 1–64 characters, no surrounding spaces, no control or
/// text-direction characters (see [`crate::text`]).
pub fn validate_name(name: &str) -> ReviewResult<()> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.trim() != name {
        return Err(ReviewError::BadInput(
            "name must be 1–64 characters, without surrounding spaces".into(),
        ));
    }
    check_single_line("name", name)
}

/// Checks a new password: at least 8 and at most 1024 characters.
pub fn validate_password(password: &str) -> ReviewResult<()> {
    let n = password.chars().count();
    if !(8..=1024).contains(&n) {
        return Err(ReviewError::BadInput("password must be 8 to 1024 characters".into()));
    }
    Ok(())
}

/// Hashes a password into an argon2id PHC string (default cost) with a random salt.
pub fn hash_password(password: &str) -> ReviewResult<String> {
    hash_password_with(password, &HashCost::default())
}

/// Hashes a password into an argon2id PHC string of the given cost with a random salt.
pub fn hash_password_with(password: &str, cost: &HashCost) -> ReviewResult<String> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| ReviewError::BadInput(format!("cannot make a salt: {e}")))?;
    cost.hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ReviewError::BadInput(format!("cannot hash password: {e}")))
}

/// True when `password` matches the stored PHC string, checked with the parameters the
/// string records; a corrupt hash never matches.
pub fn password_matches(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Creates a user (default hash cost); fails with `Conflict` when the name is taken.
pub fn add_user(store: &Store, name: &str, role: Role, password: &str) -> ReviewResult<User> {
    add_user_with(store, name, role, password, &HashCost::default())
}

/// Creates a user whose password is hashed at `cost`; fails with `Conflict` when the name
/// is taken, also by a removed user.
pub fn add_user_with(store: &Store, name: &str, role: Role, password: &str, cost: &HashCost) -> ReviewResult<User> {
    validate_name(name)?;
    validate_password(password)?;
    let hash = hash_password_with(password, cost)?;
    let now = now_text();
    let inserted = store.conn().execute(
        "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, role.as_str(), hash, now],
    );
    match inserted {
        Ok(_) => user_by_name(store, name)?.ok_or_else(|| ReviewError::NotFound(format!("user {name:?} vanished"))),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            Err(name_taken(store, name))
        }
        Err(e) => Err(e.into()),
    }
}

/// The conflict for a name already in use, saying so when its user was removed.
fn name_taken(store: &Store, name: &str) -> ReviewError {
    match user_by_name(store, name) {
        Ok(Some(u)) if u.removed => ReviewError::Conflict(format!(
            "user {name:?} was removed; the name stays with that user's past verdicts, so choose another"
        )),
        _ => ReviewError::Conflict(format!("user {name:?} already exists")),
    }
}

pub(crate) fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(User, String)> {
    let role: String = row.get(2)?;
    let role = Role::parse(&role).unwrap_or(Role::Reviewer);
    Ok((
        User {
            id: row.get(0)?,
            name: row.get(1)?,
            role,
            disabled: row.get::<_, i64>(3)? != 0,
            created_at: row.get(4)?,
            removed: row.get::<_, Option<String>>(5)?.is_some(),
        },
        row.get(6)?,
    ))
}

const USER_COLUMNS: &str = "id, name, role, disabled, created_at, removed_at, password_hash";

fn user_by_name_with_hash(store: &Store, name: &str) -> ReviewResult<Option<(User, String)>> {
    optional(store.conn().query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
        [name],
        user_from_row,
    ))
}

/// The user with login `name`, if any.
pub fn user_by_name(store: &Store, name: &str) -> ReviewResult<Option<User>> {
    Ok(user_by_name_with_hash(store, name)?.map(|(u, _)| u))
}

/// All users, by name.
pub fn list_users(store: &Store) -> ReviewResult<Vec<User>> {
    let mut stmt = store
        .conn()
        .prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))?;
    let rows = stmt.query_map([], user_from_row)?;
    let mut users = Vec::new();
    for row in rows {
        users.push(row?.0);
    }
    Ok(users)
}

fn no_such_user(user_id: i64) -> ReviewError {
    ReviewError::NotFound(format!("no user with id {user_id} (or it was removed)"))
}

/// Disables or re-enables a user; disabling also ends all of their sessions. A removed
/// user cannot be re-enabled.
pub fn set_disabled(store: &Store, user_id: i64, disabled: bool) -> ReviewResult<()> {
    let n = store.conn().execute(
        "UPDATE users SET disabled = ?2 WHERE id = ?1 AND removed_at IS NULL",
        params![user_id, disabled as i64],
    )?;
    if n == 0 {
        return Err(no_such_user(user_id));
    }
    if disabled {
        end_sessions(store, user_id, None)?;
    }
    Ok(())
}

/// Ends every session of a user except the one whose token is `keep`.
fn end_sessions(store: &Store, user_id: i64, keep: Option<&str>) -> ReviewResult<()> {
    let keep_hash = keep.map(token_hash).unwrap_or_default();
    store.conn().execute(
        "DELETE FROM sessions WHERE user_id = ?1 AND token_hash <> ?2",
        params![user_id, keep_hash],
    )?;
    Ok(())
}

/// Stores an already hashed new password (see [`hash_password_with`]) for a user that is
/// not removed, and ends all of that user's sessions except `keep` (the session of a user
/// who changed their own password).
pub fn set_password_hash(store: &Store, user_id: i64, phc: &str, keep: Option<&str>) -> ReviewResult<()> {
    let n = store.conn().execute(
        "UPDATE users SET password_hash = ?2 WHERE id = ?1 AND removed_at IS NULL",
        params![user_id, phc],
    )?;
    if n == 0 {
        return Err(no_such_user(user_id));
    }
    end_sessions(store, user_id, keep)
}

/// Sets a new password (checked, hashed at `cost`) and ends all of the user's sessions.
pub fn set_password(store: &Store, user_id: i64, password: &str, cost: &HashCost) -> ReviewResult<()> {
    validate_password(password)?;
    set_password_hash(store, user_id, &hash_password_with(password, cost)?, None)
}

/// Removes an account: it can no longer log in, its sessions end, and it cannot be
/// re-enabled. The row stays, so verdicts keep the reviewer's name.
pub fn remove_user(store: &Store, user_id: i64) -> ReviewResult<()> {
    let n = store.conn().execute(
        "UPDATE users SET removed_at = ?2, disabled = 1 WHERE id = ?1 AND removed_at IS NULL",
        params![user_id, now_text()],
    )?;
    if n == 0 {
        return Err(no_such_user(user_id));
    }
    end_sessions(store, user_id, None)
}

/// A PHC hash of a random password at `cost`, verified against when the user does not
/// exist so that a failed login takes the same time whether or not the name is known (the
/// server makes one at its own hash cost).
pub fn decoy_hash(cost: &HashCost) -> ReviewResult<String> {
    hash_password_with(&random_hex(16), cost)
}

/// The decoy at the default cost, made once.
fn default_decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| decoy_hash(&HashCost::default()).unwrap_or_default())
}

/// A login attempt's account as stored: the user and their password hash, or `None` for
/// an unknown name. Looked up under the database lock; the slow password check is done
/// afterwards, without it, by [`verify_login`].
pub struct LoginCandidate(Option<(User, String)>);

/// Looks up the account a login names (quick; no password check).
pub fn login_candidate(store: &Store, name: &str) -> ReviewResult<LoginCandidate> {
    Ok(LoginCandidate(user_by_name_with_hash(store, name)?))
}

/// Returns the user when the password is right and the account is enabled (and not
/// removed). For an unknown name the `decoy` hash is checked, so the answer takes as long
/// either way. Slow (argon2): call it off the async runtime and outside the database lock.
pub fn verify_login(candidate: LoginCandidate, password: &str, decoy: &str) -> Option<User> {
    match candidate.0 {
        Some((user, hash)) => {
            let ok = password_matches(password, &hash);
            (ok && !user.disabled && !user.removed).then_some(user)
        }
        None => {
            let _ = password_matches(password, decoy);
            None
        }
    }
}

/// Returns the user when the name and password are right and the account is enabled.
pub fn check_login(store: &Store, name: &str, password: &str) -> ReviewResult<Option<User>> {
    Ok(verify_login(login_candidate(store, name)?, password, default_decoy()))
}

/// `n` random bytes from the thread-local CSPRNG, hex-encoded.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The stored time `ago` before `now`.
fn before(now: chrono::DateTime<chrono::Utc>, ago: Duration) -> String {
    let ago = chrono::Duration::from_std(ago).unwrap_or(chrono::Duration::MAX);
    time_text(
        now.checked_sub_signed(ago)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
    )
}

/// Starts a session for a user who just logged in; also drops sessions that have ended.
pub fn create_session(store: &Store, user_id: i64, limits: &SessionLimits) -> ReviewResult<NewSession> {
    let token = random_hex(32);
    let csrf_token = random_hex(32);
    let now = chrono::Utc::now();
    let lifetime = chrono::Duration::from_std(limits.max_lifetime).unwrap_or(chrono::Duration::MAX);
    let expires = now
        .checked_add_signed(lifetime)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    store.conn().execute(
        "DELETE FROM sessions WHERE created_at < ?1 OR last_seen_at < ?2",
        params![before(now, limits.max_lifetime), before(now, limits.idle)],
    )?;
    store.conn().execute(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?4)",
        params![
            token_hash(&token),
            user_id,
            csrf_token,
            time_text(now),
            time_text(expires)
        ],
    )?;
    Ok(NewSession { token, csrf_token })
}

/// The user of a live session of an enabled account, if the token names one. A session is
/// live while it is younger than the limits' lifetime and was used within their idle time;
/// using it counts as a use (stored at most every minute, to spare the database a write
/// on every request).
pub fn session_user(store: &Store, token: &str, limits: &SessionLimits) -> ReviewResult<Option<SessionUser>> {
    let now = chrono::Utc::now();
    let sql = "SELECT u.id, u.name, u.role, u.disabled, u.created_at, u.removed_at, s.csrf_token, s.last_seen_at
               FROM sessions s JOIN users u ON u.id = s.user_id
               WHERE s.token_hash = ?1 AND s.created_at >= ?2 AND s.last_seen_at >= ?3
                 AND u.disabled = 0 AND u.removed_at IS NULL";
    let hash = token_hash(token);
    let found = optional(store.conn().query_row(
        sql,
        params![hash, before(now, limits.max_lifetime), before(now, limits.idle)],
        |r| Ok((user_from_row(r)?, r.get::<_, String>(7)?)),
    ))?;
    let Some(((user, csrf_token), last_seen)) = found else {
        return Ok(None);
    };
    // Refresh often enough that a session in use never looks idle: at most every minute,
    // and at least ten times per idle period.
    let step = (limits.idle / 10).min(Duration::from_secs(60));
    if last_seen < before(now, step) {
        store.conn().execute(
            "UPDATE sessions SET last_seen_at = ?2 WHERE token_hash = ?1",
            params![hash, time_text(now)],
        )?;
    }
    Ok(Some(SessionUser { user, csrf_token }))
}

/// Ends a session (logout). Unknown tokens are ignored.
pub fn delete_session(store: &Store, token: &str) -> ReviewResult<()> {
    store
        .conn()
        .execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash(token)])?;
    Ok(())
}

/// Compares two secrets in time independent of where they first differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
