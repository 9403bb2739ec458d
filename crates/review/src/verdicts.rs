//! Verdicts (判定) and the queue of patches to judge.
//!
//! A verdict is never edited: each decision, change or reopening appends one row to the
//! `verdicts` audit table (who, when, old → new, subtype, note). A patch's current state is
//! its latest row, or 未核 (unreviewed) when it has none.
//!
//! Rules: a reviewer may judge a patch that is undecided; once decided, only an admin may
//! change the verdict or reopen it (back to 未核), so a decision cannot be silently replaced.
//! The exception is a patch an import flagged for re-review (its outline changed since the
//! decision, see [`super::import`]): any reviewer may decide it again. Every verdict row
//! records the outline it was made on, and a verdict or reopening clears the flag.
//!
//! The queue and the overview come in pages of at most [`MAX_PAGE_SIZE`] patches in id
//! order, continued after the last id of the previous page (a keyset cursor): recording
//! verdicts between pages, which moves patches in or out of a status filter, never makes a
//! later page repeat or skip one.

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
    /// Every status, in display order.
    pub const ALL: [Status; 4] = [Status::Unreviewed, Status::Legal, Status::Illegal, Status::Other];

    /// The status's name, as stored and in the API.
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

    /// The status named `s`.
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
    /// The decision.
    pub status: Status,
    #[serde(default)]
    /// Proof type (合法) or subtype (其他); see [`LEGAL_PROOFS`], [`OTHER_SUBTYPES`].
    pub subtype: String,
    #[serde(default)]
    /// Free text (BZ).
    pub note: String,
}

/// One row of a patch's audit history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryRow {
    /// Audit row id.
    pub id: i64,
    /// Who decided.
    pub user: String,
    /// When (UTC, ISO 8601).
    pub at: String,
    /// Status before.
    pub old_status: Status,
    /// Status after.
    pub new_status: Status,
    /// Proof type or subtype given.
    pub subtype: String,
    /// Note given.
    pub note: String,
}

/// The current verdict of a patch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Current {
    /// The decision.
    pub status: Status,
    /// Proof type (合法) or subtype (其他).
    pub subtype: String,
    /// Free text (BZ).
    pub note: String,
    /// Who decided.
    pub user: String,
    /// When (UTC, ISO 8601).
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
    let flagged: bool = tx.query_row("SELECT needs_rereview <> 0 FROM patches WHERE id = ?1", [patch], |r| {
        r.get(0)
    })?;
    if old != Status::Unreviewed && !may_replace_decision && !flagged {
        return Err(ReviewError::Conflict(format!(
            "patch {patch} is already decided ({}); only an admin can change or reopen it",
            old.as_str()
        )));
    }
    tx.execute(
        "INSERT INTO verdicts (patch_id, user_id, at, old_status, new_status, subtype, note, geometry)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, (SELECT geometry FROM patches WHERE id = ?1))",
        params![patch, user.id, now_text(), old.as_str(), new.as_str(), subtype, note],
    )?;
    tx.execute("UPDATE patches SET needs_rereview = 0 WHERE id = ?1", [patch])?;
    tx.commit()?;
    current(store, patch)
}

/// Records a verdict on a patch. Reviewers may only judge undecided patches and those
/// flagged for re-review; admins may also change any decision. Always appends an audit row.
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

/// Patches per page when the request names no `limit`.
pub const DEFAULT_PAGE_SIZE: u32 = 200;
/// Largest page a request may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Queue filters; every field is optional and they combine with AND. `limit` and `after`
/// choose the page (see [`Filter::page`]).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// County code (XZQDM).
    pub xzqdm: Option<String>,
    /// 非农化 / 非粮化 category.
    pub category: Option<String>,
    /// Change type.
    pub change_type: Option<String>,
    /// Verdict status (see [`Status::as_str`]).
    pub status: Option<String>,
    /// Earliest after-date, `YYYY-MM-DD`.
    pub date_from: Option<String>,
    /// Latest after-date, `YYYY-MM-DD`.
    pub date_to: Option<String>,
    /// Smallest area, m².
    pub min_area: Option<f64>,
    /// Largest area, m².
    pub max_area: Option<f64>,
    /// `true`: only patches flagged for re-review; `false`: only those not flagged.
    pub needs_rereview: Option<bool>,
    /// Smallest change confidence (the patch property `change_confidence`, 0..1); patches
    /// without one (runs from before it existed) are left out by a bound.
    pub min_confidence: Option<f64>,
    /// Largest change confidence.
    pub max_confidence: Option<f64>,
    /// Patches a verdict model suppressed (`suppressed: true`): `hide` (the default: the
    /// working queue), `only` (to audit what the model hides) or `include`.
    pub suppressed: Option<String>,
    /// Order: `id` (the default), `confidence_desc` or `confidence_asc` (ties by id).
    pub sort: Option<String>,
    /// Page size, 1 to [`MAX_PAGE_SIZE`] (default [`DEFAULT_PAGE_SIZE`]). Text, so that a
    /// bad value gets an error naming the parameter.
    pub limit: Option<String>,
    /// Cursor: the page starts after this patch id (the previous page's `next_after`).
    pub after: Option<String>,
}

/// Which page of a filtered list to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Patches per page.
    pub limit: u32,
    /// Only patches with a larger id.
    pub after: i64,
}

impl Filter {
    /// The page the `limit` and `after` parameters ask for.
    pub fn page(&self) -> ReviewResult<Page> {
        let limit = match self.limit.as_deref().filter(|v| !v.is_empty()) {
            None => DEFAULT_PAGE_SIZE,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                .ok_or_else(|| {
                    ReviewError::BadInput(format!(
                        "limit must be a whole number from 1 to {MAX_PAGE_SIZE}, not {v:?}"
                    ))
                })?,
        };
        let after = match self.after.as_deref().filter(|v| !v.is_empty()) {
            None => 0,
            Some(v) => v.parse::<i64>().map_err(|_| {
                ReviewError::BadInput(format!(
                    "after must be a patch id (the next_after of the previous page), not {v:?}"
                ))
            })?,
        };
        Ok(Page { limit, after })
    }

    /// The status the filter asks for, if any.
    fn wanted_status(&self) -> ReviewResult<Option<Status>> {
        self.status
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(Status::parse)
            .transpose()
    }
}

/// One line of the queue.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueItem {
    /// Database id.
    pub id: i64,
    /// Id that follows the change across runs.
    pub track_id: String,
    /// Id within its latest run.
    pub patch_id: String,
    /// Monitoring number (JCBH).
    pub jcbh: String,
    /// County code (XZQDM).
    pub xzqdm: String,
    /// County name (XZQMC).
    pub xzqmc: String,
    /// 非农化 / 非粮化 category.
    pub category: String,
    /// Change type.
    pub change_type: String,
    /// Patch type (TBLX).
    pub tblx: String,
    /// Acquisition date of the after image.
    pub after_date: String,
    /// Area, m².
    pub area_m2: f64,
    /// Area, 亩.
    pub area_mu: f64,
    /// Verdict status.
    pub status: Status,
    /// Proof type or subtype of the verdict.
    pub subtype: String,
    /// The outline changed materially since the verdict: decide again.
    pub needs_rereview: bool,
    /// How sure detection is that the ground changed, 0..1 (`None` for runs without it).
    pub change_confidence: Option<f64>,
    /// A verdict model judged it a likely false alarm (see the `suppressed` filter).
    pub suppressed: bool,
    /// Why it was suppressed (empty when it was not).
    pub suppressed_reason: String,
}

/// One page of the queue with the counts of the whole filtered list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Queue {
    /// The page's patches.
    pub patches: Vec<QueueItem>,
    /// Counts by status among patches matching every filter except `status`; keys in
    /// `Status::ALL` order plus `total` and `needs_rereview`.
    pub counts: std::collections::BTreeMap<String, i64>,
    /// Patches matching every filter, `status` included, over all pages.
    pub total: i64,
    /// The page size used.
    pub limit: u32,
    /// The cursor for the next page (`after=`), `None` on the last page.
    pub next_after: Option<i64>,
}

/// One outline of the overview.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OverviewItem {
    /// Database id.
    pub id: i64,
    /// Verdict status.
    pub status: Status,
    /// The outline changed materially since the verdict.
    pub needs_rereview: bool,
    /// The outline as GeoJSON.
    pub geometry: serde_json::Value,
}

/// One page of the overview's outlines.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Overview {
    /// `lonlat` or `pixel`: the coordinates of the latest run.
    pub crs: String,
    /// The page's outlines.
    pub patches: Vec<OverviewItem>,
    /// Patches over all pages.
    pub total: i64,
    /// The page size used.
    pub limit: u32,
    /// The cursor for the next page (`after=`), `None` on the last page.
    pub next_after: Option<i64>,
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
    if let Some(flagged) = f.needs_rereview {
        clauses.push("p.needs_rereview = ?".into());
        values.push(Value::Integer(i64::from(flagged)));
    }
    for (op, v, name) in [
        (">=", f.min_confidence, "min_confidence"),
        ("<=", f.max_confidence, "max_confidence"),
    ] {
        if let Some(v) = v {
            if !(0.0..=1.0).contains(&v) {
                return Err(ReviewError::BadInput(format!(
                    "{name} must be a number from 0 to 1, not {v}"
                )));
            }
            clauses.push(format!("json_extract(p.properties, '$.change_confidence') {op} ?"));
            values.push(Value::Real(v));
        }
    }
    match SuppressedFilter::parse(f.suppressed.as_deref())? {
        SuppressedFilter::Hide => clauses.push(format!("{SUPPRESSED_SQL} = 0")),
        SuppressedFilter::Only => clauses.push(format!("{SUPPRESSED_SQL} = 1")),
        SuppressedFilter::Include => {}
    }
    Ok((clauses.join(" AND "), values))
}

/// A patch's change confidence from its stored properties; -1 when it has none, so that it
/// sorts last in `confidence_desc`.
const CONFIDENCE_SQL: &str = "COALESCE(json_extract(p.properties, '$.change_confidence'), -1.0)";

/// 1 when a verdict model suppressed the patch, else 0.
const SUPPRESSED_SQL: &str = "(COALESCE(json_extract(p.properties, '$.suppressed'), 0) = 1)";

/// Which patches the `suppressed` parameter asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SuppressedFilter {
    Hide,
    Only,
    Include,
}

impl SuppressedFilter {
    fn parse(v: Option<&str>) -> ReviewResult<SuppressedFilter> {
        match v.unwrap_or("") {
            "" | "hide" => Ok(SuppressedFilter::Hide),
            "only" => Ok(SuppressedFilter::Only),
            "include" => Ok(SuppressedFilter::Include),
            other => Err(ReviewError::BadInput(format!(
                "suppressed must be hide, only or include, not {other:?}"
            ))),
        }
    }
}

/// The queue's order: by id, or by change confidence with the id breaking ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    Id,
    ConfidenceDesc,
    ConfidenceAsc,
}

impl Sort {
    fn parse(v: Option<&str>) -> ReviewResult<Sort> {
        match v.unwrap_or("") {
            "" | "id" => Ok(Sort::Id),
            "confidence_desc" => Ok(Sort::ConfidenceDesc),
            "confidence_asc" => Ok(Sort::ConfidenceAsc),
            other => Err(ReviewError::BadInput(format!(
                "sort must be id, confidence_desc or confidence_asc, not {other:?}"
            ))),
        }
    }

    /// The cursor condition (rows after patch `?` in this order; `cur` holds that patch's
    /// confidence, and is empty on the first page) and the `ORDER BY` clause, over the `q`
    /// columns.
    fn keyset_sql(self) -> (&'static str, &'static str) {
        match self {
            Sort::Id => ("id > ?", "id"),
            Sort::ConfidenceDesc => (
                "(NOT EXISTS (SELECT 1 FROM cur) OR conf < (SELECT conf FROM cur) OR (conf = (SELECT conf FROM cur) AND id > ?))",
                "conf DESC, id",
            ),
            Sort::ConfidenceAsc => (
                "(NOT EXISTS (SELECT 1 FROM cur) OR conf > (SELECT conf FROM cur) OR (conf = (SELECT conf FROM cur) AND id > ?))",
                "conf ASC, id",
            ),
        }
    }
}

/// The filtered patches with their current status, as SQL for a `WITH q AS (…)` clause:
/// columns `id`, `status`, `subtype`, `needs_rereview` and the patch row as `p_*`.
fn filtered_sql(where_sql: &str) -> String {
    format!(
        "SELECT p.id AS id, COALESCE(c.new_status, 'unreviewed') AS status,
                COALESCE(c.subtype, '') AS subtype, p.needs_rereview AS needs_rereview,
                p.track_id AS p_track_id, p.patch_id AS p_patch_id, p.properties AS p_properties,
                p.xzqdm AS p_xzqdm, p.category AS p_category, p.change_type AS p_change_type,
                p.after_date AS p_after_date, p.area_m2 AS p_area_m2, p.geometry AS p_geometry,
                {CONFIDENCE_SQL} AS conf
         FROM patches p LEFT JOIN current_verdicts c ON c.patch_id = p.id
         WHERE {where_sql}"
    )
}

/// Counts by status (every filter but `status` applied), plus `total` and `needs_rereview`.
fn counts(store: &Store, where_sql: &str, values: &[Value]) -> ReviewResult<std::collections::BTreeMap<String, i64>> {
    let sql = format!(
        "WITH q AS ({}) SELECT status, COUNT(*), SUM(needs_rereview) FROM q GROUP BY status",
        filtered_sql(where_sql)
    );
    let mut out: std::collections::BTreeMap<String, i64> =
        Status::ALL.iter().map(|s| (s.as_str().to_string(), 0)).collect();
    let (mut total, mut flagged) = (0, 0);
    let mut stmt = store.conn().prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(values.iter()), |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    })?;
    for row in rows {
        let (status, n, n_flagged) = row?;
        *out.entry(status).or_insert(0) += n;
        total += n;
        flagged += n_flagged;
    }
    out.insert("total".into(), total);
    out.insert("needs_rereview".into(), flagged);
    Ok(out)
}

/// A page of some list of patches, with what the whole list holds.
struct PageOf<T> {
    items: Vec<T>,
    next_after: Option<i64>,
    counts: std::collections::BTreeMap<String, i64>,
    total: i64,
    limit: u32,
}

/// One page of the filtered list: rows mapped by `row`, and the next page's cursor.
fn page_of<T>(
    store: &Store,
    f: &Filter,
    row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> ReviewResult<PageOf<T>> {
    let page = f.page()?;
    let wanted = f.wanted_status()?;
    let (where_sql, mut values) = filter_sql(f)?;
    let counts = counts(store, &where_sql, &values)?;
    let total = match wanted {
        Some(st) => counts.get(st.as_str()).copied().unwrap_or(0),
        None => counts.get("total").copied().unwrap_or(0),
    };
    let status_sql = if let Some(st) = wanted {
        values.push(Value::Text(st.as_str().to_string()));
        "AND status = ?"
    } else {
        ""
    };
    let sort = Sort::parse(f.sort.as_deref())?;
    let (after_sql, order_sql) = sort.keyset_sql();
    // The cursor patch's confidence, read from the patches table: it may have left the
    // filtered list since the previous page (decided under a status filter).
    values.insert(0, Value::Integer(page.after));
    values.push(Value::Integer(page.after));
    values.push(Value::Integer(i64::from(page.limit) + 1));
    let sql = format!(
        "WITH cur AS (SELECT {CONFIDENCE_SQL} AS conf FROM patches p WHERE p.id = ?),
              q AS ({})
         SELECT * FROM q WHERE 1 = 1 {status_sql} AND {after_sql} ORDER BY {order_sql} LIMIT ?",
        filtered_sql(&where_sql)
    );
    let mut stmt = store.conn().prepare(&sql)?;
    let mut ids_and_items = stmt
        .query_map(params_from_iter(values.iter()), |r| {
            Ok((r.get::<_, i64>("id")?, row(r)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // One row more than the page tells whether there is a next page.
    let more = ids_and_items.len() > page.limit as usize;
    ids_and_items.truncate(page.limit as usize);
    let next_after = more.then(|| ids_and_items.last().map(|(id, _)| *id)).flatten();
    let items = ids_and_items.into_iter().map(|(_, item)| item).collect();
    Ok(PageOf {
        items,
        next_after,
        counts,
        total,
        limit: page.limit,
    })
}

/// One page of the queue for a filter, in id order, with the counts of the whole list.
pub fn queue(store: &Store, f: &Filter) -> ReviewResult<Queue> {
    let page = page_of(store, f, queue_item)?;
    Ok(Queue {
        patches: page.items,
        counts: page.counts,
        total: page.total,
        limit: page.limit,
        next_after: page.next_after,
    })
}

/// One page of the overview's outlines for a filter (the same pages as [`queue`]).
pub fn overview(store: &Store, f: &Filter) -> ReviewResult<Overview> {
    let crs = optional(
        store
            .conn()
            .query_row("SELECT crs FROM runs ORDER BY id DESC LIMIT 1", [], |r| {
                r.get::<_, String>(0)
            }),
    )?
    .unwrap_or_else(|| "lonlat".into());
    let page = page_of(store, f, |r| {
        let status: String = r.get("status")?;
        let geometry: String = r.get("p_geometry")?;
        Ok(OverviewItem {
            id: r.get("id")?,
            status: Status::parse(&status).unwrap_or(Status::Unreviewed),
            needs_rereview: r.get::<_, i64>("needs_rereview")? != 0,
            geometry: serde_json::from_str(&geometry).unwrap_or(serde_json::Value::Null),
        })
    })?;
    Ok(Overview {
        crs,
        patches: page.items,
        total: page.total,
        limit: page.limit,
        next_after: page.next_after,
    })
}

/// Builds a queue line from a row of the query in [`page_of`]. The status column is
/// constrained by the schema, so an unknown value cannot occur; it would read as 未核.
fn queue_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueItem> {
    let props: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&r.get::<_, String>("p_properties")?).unwrap_or_default();
    let text = |k: &str| props.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let status: String = r.get("status")?;
    Ok(QueueItem {
        id: r.get("id")?,
        track_id: r.get("p_track_id")?,
        patch_id: r.get("p_patch_id")?,
        jcbh: text("JCBH"),
        xzqdm: r.get("p_xzqdm")?,
        xzqmc: text("XZQMC"),
        category: r.get("p_category")?,
        change_type: r.get("p_change_type")?,
        tblx: text("TBLX"),
        after_date: r.get("p_after_date")?,
        area_m2: r.get("p_area_m2")?,
        area_mu: props.get("area_mu").and_then(|v| v.as_f64()).unwrap_or(0.0),
        status: Status::parse(&status).unwrap_or(Status::Unreviewed),
        subtype: r.get("subtype")?,
        needs_rereview: r.get::<_, i64>("needs_rereview")? != 0,
        change_confidence: props.get("change_confidence").and_then(|v| v.as_f64()),
        suppressed: props.get("suppressed").and_then(|v| v.as_bool()).unwrap_or(false),
        suppressed_reason: text("suppressed_reason"),
    })
}

/// Whether patch `patch` is flagged for re-review.
pub fn needs_rereview(store: &Store, patch: i64) -> ReviewResult<bool> {
    Ok(store
        .conn()
        .query_row("SELECT needs_rereview <> 0 FROM patches WHERE id = ?1", [patch], |r| {
            r.get(0)
        })?)
}

/// One audit row about a patch other than a verdict (e.g. an import flagging it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PatchEvent {
    /// Audit row id.
    pub id: i64,
    /// When (UTC, ISO 8601).
    pub at: String,
    /// What happened, e.g. `outline_changed`.
    pub kind: String,
    /// The run that caused it, if any.
    pub run_id: Option<i64>,
    /// Details, as recorded.
    pub detail: serde_json::Value,
}

/// The events of a patch, oldest first.
pub fn events(store: &Store, patch: i64) -> ReviewResult<Vec<PatchEvent>> {
    let mut stmt = store
        .conn()
        .prepare("SELECT id, at, kind, run_id, detail FROM patch_events WHERE patch_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([patch], |r| {
        let detail: String = r.get(4)?;
        Ok(PatchEvent {
            id: r.get(0)?,
            at: r.get(1)?,
            kind: r.get(2)?,
            run_id: r.get(3)?,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
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
