//! Map tokens: per-user keys for the WMTS service. GIS clients (QGIS, ArcGIS) cannot log in
//! through the form, so a user creates a token in the review page and pastes the service URL
//! that carries it. A token only reads map tiles and capabilities; it is shown once, kept
//! as its SHA-256 hash, and revoked by its owner (or ends with the account).

use rusqlite::params;

use crate::store::{now_text, optional, ReviewError, ReviewResult, Store};
use crate::users::{random_hex, token_hash, user_from_row, User};

/// Longest label a token may have.
pub const MAX_LABEL_CHARS: usize = 64;
/// Live tokens one user may hold.
pub const MAX_TOKENS_PER_USER: i64 = 20;

/// A token as listed to its owner (never the token itself).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MapToken {
    /// Database id (used to revoke it).
    pub id: i64,
    /// The owner's name for it ("QGIS office PC").
    pub label: String,
    /// When it was created (UTC, ISO 8601).
    pub created_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

/// A new token for `user_id` labelled `label`; returns its id and the token (shown once).
pub fn create(store: &Store, user_id: i64, label: &str) -> ReviewResult<(i64, String)> {
    let label = label.trim();
    crate::text::check_single_line("label", label)?;
    if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
        return Err(ReviewError::BadInput(format!(
            "a map token needs a label of 1 to {MAX_LABEL_CHARS} characters (where it is used, e.g. \"QGIS office PC\")"
        )));
    }
    let live: i64 = store.conn().query_row(
        "SELECT COUNT(*) FROM map_tokens WHERE user_id = ?1 AND revoked_at IS NULL",
        [user_id],
        |r| r.get(0),
    )?;
    if live >= MAX_TOKENS_PER_USER {
        return Err(ReviewError::Conflict(format!(
            "you already have {live} map tokens; revoke one you no longer use first"
        )));
    }
    let token = format!("lwm{}", random_hex(24));
    store.conn().execute(
        "INSERT INTO map_tokens (user_id, token_hash, label, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![user_id, token_hash(&token), label, now_text()],
    )?;
    Ok((store.conn().last_insert_rowid(), token))
}

/// The tokens of `user_id`, newest first, revoked ones included.
pub fn list(store: &Store, user_id: i64) -> ReviewResult<Vec<MapToken>> {
    let mut stmt = store
        .conn()
        .prepare("SELECT id, label, created_at, revoked_at FROM map_tokens WHERE user_id = ?1 ORDER BY id DESC")?;
    let rows = stmt.query_map([user_id], |r| {
        Ok(MapToken {
            id: r.get(0)?,
            label: r.get(1)?,
            created_at: r.get(2)?,
            revoked_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes token `id` of `user_id`; 404 when the user has no such live token.
pub fn revoke(store: &Store, user_id: i64, id: i64) -> ReviewResult<()> {
    let n = store.conn().execute(
        "UPDATE map_tokens SET revoked_at = ?3 WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL",
        params![id, user_id, now_text()],
    )?;
    if n == 0 {
        return Err(ReviewError::NotFound(format!("you have no live map token {id}")));
    }
    Ok(())
}

/// The user a live token belongs to (account enabled and not removed), if any.
pub fn user_for(store: &Store, token: &str) -> ReviewResult<Option<User>> {
    let found = optional(store.conn().query_row(
        "SELECT u.id, u.name, u.role, u.disabled, u.created_at, u.removed_at, t.label
         FROM map_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = ?1 AND t.revoked_at IS NULL AND u.disabled = 0 AND u.removed_at IS NULL",
        [token_hash(token)],
        user_from_row,
    ))?;
    Ok(found.map(|(user, _label)| user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::{add_user, Role};

    #[test]
    fn a_token_works_until_revoked_and_is_stored_hashed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("db.sqlite")).unwrap();
        let rev = add_user(&store, "rev", Role::Reviewer, "correct horse battery").unwrap();
        let other = add_user(&store, "other", Role::Reviewer, "correct horse battery").unwrap();
        let (id, token) = create(&store, rev.id, "QGIS office PC").unwrap();
        assert_eq!(
            user_for(&store, &token).unwrap().map(|u| u.name).as_deref(),
            Some("rev")
        );
        let stored: String = store
            .conn()
            .query_row("SELECT token_hash FROM map_tokens WHERE id = ?1", [id], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, token, "only the hash is stored");
        assert!(
            matches!(revoke(&store, other.id, id), Err(ReviewError::NotFound(_))),
            "not another's"
        );
        revoke(&store, rev.id, id).unwrap();
        assert!(user_for(&store, &token).unwrap().is_none());
        assert!(list(&store, rev.id).unwrap()[0].revoked_at.is_some());
        assert!(matches!(create(&store, rev.id, " "), Err(ReviewError::BadInput(_))));
        assert!(matches!(create(&store, rev.id, "a\nb"), Err(ReviewError::BadInput(_))));
    }
}
