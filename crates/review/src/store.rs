//! The review database: one SQLite file (system libsqlite3, WAL) with numbered schema
//! migrations recorded in `PRAGMA user_version`.
//!
//! Why SQLite: a county office runs one small server; a single file is easy to back up and
//! needs no service. WAL lets the CLI (`import`, `export`) work while the server is running.
//!
//! The `verdicts` table is the audit trail. Triggers make it append-only inside the database
//! itself, so not even a buggy code path can overwrite or delete a decision.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};

/// Errors of the review module. Each maps to an HTTP status (see `web::error`) and, at the
/// CLI boundary, to a [`landwatch_core::Error`] with the project's exit codes.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The request or input is malformed (HTTP 400, exit 2).
    #[error("{0}")]
    BadInput(String),
    /// The named patch, user or file does not exist (HTTP 404, exit 2).
    #[error("{0}")]
    NotFound(String),
    /// The action conflicts with the current state, e.g. judging a decided patch (HTTP 409, exit 2).
    #[error("{0}")]
    Conflict(String),
    /// The user may not do this (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The database refused an operation (HTTP 500, exit 3).
    #[error("review database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A file-level error from the rest of landwatch (input files, I/O).
    #[error(transparent)]
    Landwatch(#[from] landwatch_core::Error),
}

impl From<ReviewError> for landwatch_core::Error {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::Landwatch(inner) => inner,
            ReviewError::BadInput(m)
            | ReviewError::NotFound(m)
            | ReviewError::Conflict(m)
            | ReviewError::Forbidden(m) => landwatch_core::Error::Usage(m),
            ReviewError::Db(e) => landwatch_core::Error::Other(format!("review database: {e}")),
        }
    }
}

/// Result of the review app's operations.
pub type ReviewResult<T> = std::result::Result<T, ReviewError>;

/// Schema migrations, applied in order; migration `i` brings `user_version` from `i` to `i+1`.
/// Never edit a released migration: append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('reviewer', 'admin')),
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    run_dir      TEXT NOT NULL,
    crs          TEXT NOT NULL,
    imported_at  TEXT NOT NULL,
    n_features   INTEGER NOT NULL,
    n_new        INTEGER NOT NULL,
    n_by_track   INTEGER NOT NULL,
    n_by_overlap INTEGER NOT NULL
);
CREATE TABLE patches (
    id            INTEGER PRIMARY KEY,
    track_id      TEXT NOT NULL,
    patch_id      TEXT NOT NULL,
    first_run_id  INTEGER NOT NULL REFERENCES runs(id),
    run_id        INTEGER NOT NULL REFERENCES runs(id),
    geometry      TEXT NOT NULL,
    minx REAL NOT NULL, miny REAL NOT NULL, maxx REAL NOT NULL, maxy REAL NOT NULL,
    properties    TEXT NOT NULL,
    xzqdm         TEXT NOT NULL,
    category      TEXT NOT NULL,
    change_type   TEXT NOT NULL,
    after_date    TEXT NOT NULL,
    area_m2       REAL NOT NULL,
    chip_before   TEXT NOT NULL,
    chip_after    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX patches_bbox ON patches (minx, maxx, miny, maxy);
-- Every track id a patch was ever published under, so a rerun matches by any of them.
CREATE TABLE patch_tracks (
    track_id TEXT PRIMARY KEY,
    patch_id INTEGER NOT NULL REFERENCES patches(id)
);
CREATE TABLE verdicts (
    id         INTEGER PRIMARY KEY,
    patch_id   INTEGER NOT NULL REFERENCES patches(id),
    user_id    INTEGER NOT NULL REFERENCES users(id),
    at         TEXT NOT NULL,
    old_status TEXT NOT NULL,
    new_status TEXT NOT NULL CHECK (new_status IN ('unreviewed', 'legal', 'illegal', 'other')),
    subtype    TEXT NOT NULL,
    note       TEXT NOT NULL
);
CREATE INDEX verdicts_by_patch ON verdicts (patch_id, id);
CREATE TRIGGER verdicts_append_only_update BEFORE UPDATE ON verdicts
BEGIN SELECT RAISE(ABORT, 'verdicts are append-only'); END;
CREATE TRIGGER verdicts_append_only_delete BEFORE DELETE ON verdicts
BEGIN SELECT RAISE(ABORT, 'verdicts are append-only'); END;
-- The current verdict of a patch is its latest audit row.
CREATE VIEW current_verdicts AS
SELECT v.* FROM verdicts v
WHERE v.id = (SELECT MAX(id) FROM verdicts w WHERE w.patch_id = v.patch_id);
"#,
    r#"
-- Removed accounts stay (their names are on verdicts); they can no longer log in.
ALTER TABLE users ADD COLUMN removed_at TEXT;
-- Sessions end after idling (last_seen_at) as well as after their lifetime (created_at).
ALTER TABLE sessions ADD COLUMN last_seen_at TEXT NOT NULL DEFAULT '';
UPDATE sessions SET last_seen_at = created_at;
-- Set by an import when a decided patch's outline changed materially; cleared by the next
-- verdict or reopening.
ALTER TABLE patches ADD COLUMN needs_rereview INTEGER NOT NULL DEFAULT 0;
CREATE INDEX patches_needs_rereview ON patches (needs_rereview) WHERE needs_rereview = 1;
-- The outline (GeoJSON) each decision was made on; NULL for rows from before this column.
ALTER TABLE verdicts ADD COLUMN geometry TEXT;
-- Audit rows of what happened to a patch other than verdicts (an import flagging it for
-- re-review); append-only like the verdicts.
CREATE TABLE patch_events (
    id       INTEGER PRIMARY KEY,
    patch_id INTEGER NOT NULL REFERENCES patches(id),
    run_id   INTEGER REFERENCES runs(id),
    at       TEXT NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX patch_events_by_patch ON patch_events (patch_id, id);
CREATE TRIGGER patch_events_append_only_update BEFORE UPDATE ON patch_events
BEGIN SELECT RAISE(ABORT, 'patch events are append-only'); END;
CREATE TRIGGER patch_events_append_only_delete BEFORE DELETE ON patch_events
BEGIN SELECT RAISE(ABORT, 'patch events are append-only'); END;
"#,
    r#"
-- Map tokens: a user's key for the WMTS service in QGIS/ArcGIS, put in the service URL
-- (those clients send no session cookie). Only the SHA-256 of the key is kept; a revoked
-- key stays listed with the time it was revoked.
CREATE TABLE map_tokens (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    token_hash TEXT NOT NULL UNIQUE,
    label      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX map_tokens_by_user ON map_tokens (user_id, id);
-- This database's identity, written into field packages so results cannot come back into
-- another database.
CREATE TABLE review_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO review_meta (key, value) VALUES ('database_id', lower(hex(randomblob(16))));
-- Field-check results (实地核查) brought back from a field package: photo, place, time, note
-- and the field verdict, as evidence for the reviewer (not a verdict). Append-only.
CREATE TABLE field_evidence (
    id          INTEGER PRIMARY KEY,
    patch_id    INTEGER NOT NULL REFERENCES patches(id),
    imported_at TEXT NOT NULL,
    package     TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    note        TEXT NOT NULL,
    photo       BLOB,
    photo_type  TEXT,
    photo_name  TEXT NOT NULL,
    lon         REAL,
    lat         REAL,
    taken_at    TEXT NOT NULL
);
CREATE INDEX field_evidence_by_patch ON field_evidence (patch_id, id);
CREATE TRIGGER field_evidence_append_only_update BEFORE UPDATE ON field_evidence
BEGIN SELECT RAISE(ABORT, 'field evidence is append-only'); END;
CREATE TRIGGER field_evidence_append_only_delete BEFORE DELETE ON field_evidence
BEGIN SELECT RAISE(ABORT, 'field evidence is append-only'); END;
"#,
];

/// An open review database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> ReviewResult<Store> {
        let conn = Connection::open(path).map_err(|e| {
            ReviewError::Landwatch(landwatch_core::Error::input(path, format!("cannot open database: {e}")))
        })?;
        // PRAGMA, not `Connection::busy_timeout`: rusqlite 0.43's method needs
        // `sqlite3_set_clientdata` (SQLite 3.44+), which Debian 12's libsqlite3 3.40 lacks.
        let setup = conn
            .query_row("PRAGMA busy_timeout = 10000", [], |_| Ok(()))
            .and_then(|_| conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())))
            .and_then(|_| conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;"));
        setup.map_err(|e| {
            ReviewError::Landwatch(landwatch_core::Error::input(
                path,
                format!("not a usable review database: {e}"),
            ))
        })?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Checkpoints the write-ahead log into the database file and closes it, so a stopped
    /// server leaves one self-contained file behind.
    pub fn close(self) -> ReviewResult<()> {
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        self.conn.close().map_err(|(_, e)| ReviewError::Db(e))
    }

    /// The database file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SQLite connection.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The SQLite connection, for transactions.
    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> ReviewResult<usize> {
        let v: i64 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        Ok(usize::try_from(v).unwrap_or(0))
    }

    fn migrate(&mut self) -> ReviewResult<()> {
        let current = self.schema_version()?;
        if current > MIGRATIONS.len() {
            return Err(landwatch_core::Error::input(
                &self.path,
                format!(
                    "database schema version {current} is newer than this landwatch knows ({}); upgrade landwatch",
                    MIGRATIONS.len()
                ),
            )
            .into());
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }
}

/// Current UTC time as the ISO-8601 text stored in every timestamp column.
pub fn now_text() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Runs `query` and returns its single optional row.
pub fn optional<T>(r: rusqlite::Result<T>) -> ReviewResult<Option<T>> {
    Ok(r.optional()?)
}
