//! Verdicts (判定) and the queue of patches to judge.
//!
//! A verdict is never edited: each decision, change or reopening appends one row to the
//! `verdicts` audit table (who, when, old → new, subtype, note). A patch's current state is
//! its latest row, or 未核 (unreviewed) when it has none.
//!
//! Rules: a reviewer may judge a patch that is undecided; once decided, only an admin may
//! change the verdict or reopen it (back to 未核), so a decision cannot be silently replaced.

use rusqlite::{params, params_from_iter, types::Value};

use super::store::{now_text, optional, ReviewError, ReviewResult, Store};
use super::text::check_multi_line;
use super::users::{Role, User};

/// The review state of a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// 未核: not yet judged (or reopened).
    Unreviewed,
    /// 合法: legal, with a proof type.
    Legal,
    /// 违法: illegal.
    Illegal,
    /// 其他: neither, with a subtype (实地未变化 = false alarm).
    Other,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Unreviewed, Status::Legal, Status::Illegal, Status::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unreviewed => "unreviewed",
            Status::Legal => "legal",
            Status::Illegal => "illegal",
            Status::Other => "other",
        }
    }

    /// The 判定结果 (PDJG) text written into exports; empty while undecided.
    pub fn pdjg(self) -> &'static str {
        match self {
            Status::Unreviewed => "",
            Status::Legal => "合法",
            Status::Illegal => "违法",
            Status::Other => "其他",
        }
    }

    pub fn parse(s: &str) -> ReviewResult<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            ReviewError::BadInput(format!("unknown status {s:?}; use unreviewed, legal, illegal or other"))
        })
    }
}

/// Proof types accepted with 合法.
pub const LEGAL_PROOFS: [&str; 3] = ["农转用", "增减挂钩", "其他"];
/// Subtypes accepted with 其他; 实地未变化 marks a false alarm.
pub const OTHER_SUBTYPES: [&str; 5] = ["设施农用地", "临时用地", "农村道路", "实地未变化", "其他"];
/// Longest note accepted, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

/// A verdict as submitted by a reviewer.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictInput {
    pub status: Status,
    #[serde(default)]
    pub subtype: String,
    #[serde(default)]
    pub note: String,
}

/// One row of a patch's audit history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryRow {
    pub id: i64,
    pub user: String,
    pub at: String,
    pub old_status: Status,
    pub new_status: Status,
    pub subtype: String,
    pub note: String,
}

/// The current verdict of a patch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Current {
    pub status: Status,
    pub subtype: String,
    pub note: String,
    pub user: String,
    pub at: String,
}

impl Current {
    fn unreviewed() -> Current {
        Current {
            status: Status::Unreviewed,
            subtype: String::new(),
            note: String::new(),
            user: String::new(),
            at: String::new(),
        }
    }
}

/// Checks that the subtype fits the status and the note is not too long.
pub fn validate(input: &VerdictInput) -> ReviewResult<()> {
    let allowed: &[&str] = match input.status {
        Status::Legal => &LEGAL_PROOFS,
        Status::Other => &OTHER_SUBTYPES,
        Status::Illegal => &[""],
        Status::Unreviewed => {
            return Err(ReviewError::BadInput(
                "a verdict must be legal, illegal or other; use reopen to undo a decision".into(),
            ))
        }
    };
    if !allowed.contains(&input.subtype.as_str()) {
        return Err(ReviewError::BadInput(format!(
            "subtype {:?} does not fit status {}; allowed: {:?}",
            input.subtype,
            input.status.as_str(),
            allowed
        )));
    }
    validate_note(&input.note)
}

/// Checks a note: at most [`MAX_NOTE_CHARS`], no control or text-direction characters
/// (newlines and tabs are fine).
pub fn validate_note(note: &str) -> ReviewResult<()> {
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(ReviewError::BadInput(format!(
            "note is longer than {MAX_NOTE_CHARS} characters"
        )));
    }
    check_multi_line("note", note)
}

/// The current verdict of patch `patch` (its latest audit row).
pub fn current(store: &Store, patch: i64) -> ReviewResult<Current> {
    let row = optional(store.conn().query_row(
        "SELECT v.new_status, v.subtype, v.note, u.name, v.at
         FROM verdicts v JOIN users u ON u.id = v.user_id
         WHERE v.patch_id = ?1 ORDER BY v.id DESC LIMIT 1",
        [patch],
        |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    ))?;
    match row {
        None => Ok(Current::unreviewed()),
        Some((status, subtype, note, user, at)) => Ok(Current {
            status: Status::parse(&status)?,
            subtype,
            note,
            user,
            at,
        }),
    }
}

/// Fails with `NotFound` unless patch `patch` exists.
pub fn ensure_patch(store: &Store, patch: i64) -> ReviewResult<()> {
    let found = optional(
        store
            .conn()
            .query_row("SELECT 1 FROM patches WHERE id = ?1", [patch], |_| Ok(())),
    )?;
    found.ok_or_else(|| ReviewError::NotFound(format!("no patch with id {patch}")))
}

fn append(
    store: &mut Store,
    patch: i64,
    user: &User,
    new: Status,
    subtype: &str,
    note: &str,
    may_replace_decision: bool,
) -> ReviewResult<Current> {
    let tx = store.conn_mut().transaction()?;
    let old: Option<String> = optional(tx.query_row(
        "SELECT new_status FROM verdicts WHERE patch_id = ?1 ORDER BY id DESC LIMIT 1",
        [patch],
        |r| r.get(0),
    ))?;
    let old = old
        .as_deref()
        .map(Status::parse)
        .transpose()?
        .unwrap_or(Status::Unreviewed);
    if old != Status::Unreviewed && !may_replace_decision {
        return Err(ReviewError::Conflict(format!(
            "patch {patch} is already decided ({}); only an admin can change or reopen it",
            old.as_str()
        )));
    }
    tx.execute(
        "INSERT INTO verdicts (patch_id, user_id, at, old_status, new_status, subtype, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![patch, user.id, now_text(), old.as_str(), new.as_str(), subtype, note],
    )?;
    tx.commit()?;
    current(store, patch)
}

/// Records a verdict on a patch. Reviewers may only judge undecided patches; admins may
/// also change a decision. Always appends an audit row.
pub fn record(store: &mut Store, patch: i64, user: &User, input: &VerdictInput) -> ReviewResult<Current> {
    validate(input)?;
    ensure_patch(store, patch)?;
    let is_admin = user.role == Role::Admin;
    append(store, patch, user, input.status, &input.subtype, &input.note, is_admin)
}

/// Reopens a decided patch (admin only): appends a row back to 未核.
pub fn reopen(store: &mut Store, patch: i64, user: &User, note: &str) -> ReviewResult<Current> {
    if user.role != Role::Admin {
        return Err(ReviewError::Forbidden("only an admin can reopen a decision".into()));
    }
    validate_note(note)?;
    ensure_patch(store, patch)?;
    if current(store, patch)?.status == Status::Unreviewed {
        return Err(ReviewError::Conflict(format!("patch {patch} is not decided")));
    }
    append(store, patch, user, Status::Unreviewed, "", note, true)
}

/// The whole audit history of a patch, oldest first.
pub fn history(store: &Store, patch: i64) -> ReviewResult<Vec<HistoryRow>> {
    let mut stmt = store.conn().prepare(
        "SELECT v.id, u.name, v.at, v.old_status, v.new_status, v.subtype, v.note
         FROM verdicts v JOIN users u ON u.id = v.user_id
         WHERE v.patch_id = ?1 ORDER BY v.id",
    )?;
    let rows = stmt.query_map([patch], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, user, at, old, new, subtype, note) = row?;
        out.push(HistoryRow {
            id,
            user,
            at,
            old_status: Status::parse(&old)?,
            new_status: Status::parse(&new)?,
            subtype,
            note,
        });
    }
    Ok(out)
}

/// Queue filters; every field is optional and they combine with AND.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub xzqdm: Option<String>,
    pub category: Option<String>,
    pub change_type: Option<String>,
    pub status: Option<String>,
    /// Earliest after-date, `YYYY-MM-DD`.
    pub date_from: Option<String>,
    /// Latest after-date, `YYYY-MM-DD`.
    pub date_to: Option<String>,
    pub min_area: Option<f64>,
    pub max_area: Option<f64>,
}

/// One line of the queue.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueItem {
    pub id: i64,
    pub track_id: String,
    pub patch_id: String,
    pub jcbh: String,
    pub xzqdm: String,
    pub xzqmc: String,
    pub category: String,
    pub change_type: String,
    pub tblx: String,
    pub after_date: String,
    pub area_m2: f64,
    pub area_mu: f64,
    pub status: Status,
    pub subtype: String,
}

/// The queue: matching patches (in patch order) and per-status counts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Queue {
    pub patches: Vec<QueueItem>,
    /// Counts by status among patches matching every filter except `status`; keys in
    /// `Status::ALL` order plus `total`.
    pub counts: std::collections::BTreeMap<String, i64>,
}

/// The SQL `WHERE` clause (without status) and its parameters for a filter.
fn filter_sql(f: &Filter) -> ReviewResult<(String, Vec<Value>)> {
    let mut clauses = vec!["1 = 1".to_string()];
    let mut values: Vec<Value> = Vec::new();
    let mut text = |col: &str, op: &str, v: &Option<String>| {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            clauses.push(format!("p.{col} {op} ?"));
            values.push(Value::Text(v.to_string()));
        }
    };
    text("xzqdm", "=", &f.xzqdm);
    text("category", "=", &f.category);
    text("change_type", "=", &f.change_type);
    text("after_date", ">=", &f.date_from);
    text("after_date", "<=", &f.date_to);
    for (op, v) in [(">=", f.min_area), ("<=", f.max_area)] {
        if let Some(v) = v {
            if !v.is_finite() {
                return Err(ReviewError::BadInput("area bounds must be finite".into()));
            }
            clauses.push(format!("p.area_m2 {op} ?"));
            values.push(Value::Real(v));
        }
    }
    Ok((clauses.join(" AND "), values))
}

/// Lists the queue for a filter.
pub fn queue(store: &Store, f: &Filter) -> ReviewResult<Queue> {
    let wanted = f
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(Status::parse)
        .transpose()?;
    let (where_sql, values) = filter_sql(f)?;
    let sql = format!(
        "SELECT p.id, p.track_id, p.patch_id, p.properties, p.xzqdm, p.category, p.change_type,
                p.after_date, p.area_m2, COALESCE(c.new_status, 'unreviewed'), COALESCE(c.subtype, '')
         FROM patches p LEFT JOIN current_verdicts c ON c.patch_id = p.id
         WHERE {where_sql} ORDER BY p.patch_id, p.id"
    );
    let mut stmt = store.conn().prepare(&sql)?;
    let items = stmt
        .query_map(params_from_iter(values.iter()), queue_item)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut counts: std::collections::BTreeMap<String, i64> =
        Status::ALL.iter().map(|s| (s.as_str().to_string(), 0)).collect();
    counts.insert("total".into(), items.len() as i64);
    for item in &items {
        *counts.entry(item.status.as_str().to_string()).or_insert(0) += 1;
    }
    let patches = items
        .into_iter()
        .filter(|item| wanted.is_none_or(|w| w == item.status))
        .collect();
    Ok(Queue { patches, counts })
}

/// Builds a queue line from a row of the query in [`queue`]. The status column is
/// constrained by the schema, so an unknown value cannot occur; it would read as 未核.
fn queue_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueItem> {
    let props: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default();
    let text = |k: &str| props.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let status: String = r.get(9)?;
    Ok(QueueItem {
        id: r.get(0)?,
        track_id: r.get(1)?,
        patch_id: r.get(2)?,
        jcbh: text("JCBH"),
        xzqdm: r.get(4)?,
        xzqmc: text("XZQMC"),
        category: r.get(5)?,
        change_type: r.get(6)?,
        tblx: text("TBLX"),
        after_date: r.get(7)?,
        area_m2: r.get(8)?,
        area_mu: props.get("area_mu").and_then(|v| v.as_f64()).unwrap_or(0.0),
        status: Status::parse(&status).unwrap_or(Status::Unreviewed),
        subtype: r.get(10)?,
    })
}

/// Distinct values of the filterable text columns, for the filter drop-downs.
pub fn facets(store: &Store) -> ReviewResult<std::collections::BTreeMap<String, Vec<String>>> {
    let mut out = std::collections::BTreeMap::new();
    for col in ["xzqdm", "category", "change_type"] {
        let mut stmt = store
            .conn()
            .prepare(&format!("SELECT DISTINCT {col} FROM patches ORDER BY {col}"))?;
        let values = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.insert(col.to_string(), values);
    }
    Ok(out)
}
