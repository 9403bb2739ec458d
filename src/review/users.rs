//! Accounts, passwords and login sessions.
//!
//! Passwords are stored only as argon2id PHC strings. A session is a random 256-bit token
//! held by the browser in an HttpOnly cookie; the database keeps only its SHA-256, so a
//! leaked database backup does not let anyone log in. Each session also carries its own
//! random CSRF token (the synchroniser token) that the page must echo on every state change.

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use rand::RngCore;
use rusqlite::params;
use sha2::{Digest, Sha256};

use super::store::{now_text, optional, ReviewError, ReviewResult, Store};
use super::text::check_single_line;

/// How long a login lasts before the user must log in again.
pub const SESSION_HOURS: i64 = 12;

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
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }

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
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: String,
}

/// The user behind a valid session, with that session's CSRF token.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user: User,
    pub csrf_token: String,
}

/// A freshly created session: the cookie value (shown once) and its CSRF token.
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
}

/// Checks a user name: 1–64 characters, no surrounding spaces, no control or
/// text-direction characters (see [`crate::review::text`]).
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

/// Hashes a password into an argon2id PHC string with a random salt.
pub fn hash_password(password: &str) -> ReviewResult<String> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| ReviewError::BadInput(format!("cannot make a salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ReviewError::BadInput(format!("cannot hash password: {e}")))
}

/// True when `password` matches the stored PHC string; a corrupt hash never matches.
pub fn password_matches(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Creates a user; fails with `Conflict` when the name is taken.
pub fn add_user(store: &Store, name: &str, role: Role, password: &str) -> ReviewResult<User> {
    validate_name(name)?;
    validate_password(password)?;
    let hash = hash_password(password)?;
    let now = now_text();
    let inserted = store.conn().execute(
        "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, role.as_str(), hash, now],
    );
    match inserted {
        Ok(_) => user_by_name(store, name)?.ok_or_else(|| ReviewError::NotFound(format!("user {name:?} vanished"))),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            Err(ReviewError::Conflict(format!("user {name:?} already exists")))
        }
        Err(e) => Err(e.into()),
    }
}

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(User, String)> {
    let role: String = row.get(2)?;
    let role = Role::parse(&role).unwrap_or(Role::Reviewer);
    Ok((
        User {
            id: row.get(0)?,
            name: row.get(1)?,
            role,
            disabled: row.get::<_, i64>(3)? != 0,
            created_at: row.get(4)?,
        },
        row.get(5)?,
    ))
}

const USER_COLUMNS: &str = "id, name, role, disabled, created_at, password_hash";

fn user_by_name_with_hash(store: &Store, name: &str) -> ReviewResult<Option<(User, String)>> {
    optional(store.conn().query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
        [name],
        user_from_row,
    ))
}

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

/// Disables or re-enables a user; disabling also ends all of their sessions.
pub fn set_disabled(store: &Store, user_id: i64, disabled: bool) -> ReviewResult<()> {
    let n = store.conn().execute(
        "UPDATE users SET disabled = ?2 WHERE id = ?1",
        params![user_id, disabled as i64],
    )?;
    if n == 0 {
        return Err(ReviewError::NotFound(format!("no user with id {user_id}")));
    }
    if disabled {
        store
            .conn()
            .execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?;
    }
    Ok(())
}

/// A PHC hash of a random password, verified against when the user does not exist so that a
/// failed login takes the same time whether or not the name is known.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_hex(16)).unwrap_or_default())
}

/// A login attempt's account as stored: the user and their password hash, or `None` for
/// an unknown name. Looked up under the database lock; the slow password check is done
/// afterwards, without it, by [`verify_login`].
pub struct LoginCandidate(Option<(User, String)>);

/// Looks up the account a login names (quick; no password check).
pub fn login_candidate(store: &Store, name: &str) -> ReviewResult<LoginCandidate> {
    Ok(LoginCandidate(user_by_name_with_hash(store, name)?))
}

/// Returns the user when the password is right and the account is enabled. For an unknown
/// name a decoy hash is checked, so the answer takes as long either way. Slow (argon2):
/// call it off the async runtime and outside the database lock.
pub fn verify_login(candidate: LoginCandidate, password: &str) -> Option<User> {
    match candidate.0 {
        Some((user, hash)) => {
            let ok = password_matches(password, &hash);
            (ok && !user.disabled).then_some(user)
        }
        None => {
            let _ = password_matches(password, decoy_hash());
            None
        }
    }
}

/// Returns the user when the name and password are right and the account is enabled.
pub fn check_login(store: &Store, name: &str, password: &str) -> ReviewResult<Option<User>> {
    Ok(verify_login(login_candidate(store, name)?, password))
}

/// `n` random bytes from the thread-local CSPRNG, hex-encoded.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Starts a session for a user who just logged in; also drops expired sessions.
pub fn create_session(store: &Store, user_id: i64) -> ReviewResult<NewSession> {
    let token = random_hex(32);
    let csrf_token = random_hex(32);
    let now = chrono::Utc::now();
    let expires = now + chrono::Duration::hours(SESSION_HOURS);
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    store
        .conn()
        .execute("DELETE FROM sessions WHERE expires_at < ?1", [fmt(now)])?;
    store.conn().execute(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![token_hash(&token), user_id, csrf_token, fmt(now), fmt(expires)],
    )?;
    Ok(NewSession { token, csrf_token })
}

/// The user of an unexpired session of an enabled account, if the token names one.
pub fn session_user(store: &Store, token: &str) -> ReviewResult<Option<SessionUser>> {
    let sql = "SELECT u.id, u.name, u.role, u.disabled, u.created_at, s.csrf_token
               FROM sessions s JOIN users u ON u.id = s.user_id
               WHERE s.token_hash = ?1 AND s.expires_at >= ?2 AND u.disabled = 0";
    let found = optional(
        store
            .conn()
            .query_row(sql, params![token_hash(token), now_text()], user_from_row),
    )?;
    Ok(found.map(|(user, csrf_token)| SessionUser { user, csrf_token }))
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
