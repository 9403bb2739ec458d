//! `landwatch eval verdicts`: replays a period's verdicts through a verdict model (and a
//! baseline model) before it is promoted: how many false alarms it would have kept out of the
//! default queue, how many real changes it would have hidden — overall, per county (XZQDM)
//! and per change type. The database is opened read-only; rows are built as in training.

use crate::verdict_train::{build_rows, open_review_db, read_decided, Suppression};
use landwatch_core::learn::verdict::VerdictModel;
use landwatch_core::{Error, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// What one model does to the replayed verdicts.
struct Replay {
    id: String,
    threshold: f64,
    overall: Suppression,
    by_county: BTreeMap<String, Suppression>,
    by_type: BTreeMap<String, Suppression>,
}

/// Runs `landwatch eval verdicts`; returns the exit code.
pub fn cli_main(db: &Path, model: &Path, baseline: Option<&Path>, since: Option<&str>, as_json: bool) -> Result<i32> {
    if let Some(s) = since {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| Error::Usage(format!("--since {s}: expected a date as YYYY-MM-DD")))?;
    }
    let new = VerdictModel::load(model)?;
    let base = baseline.map(VerdictModel::load).transpose()?;
    let conn = open_review_db(db)?;
    let (mut decided, _) = read_decided(&conn, db)?;
    if let Some(s) = since {
        decided.retain(|d| d.after_date.as_str() >= s);
    }
    if decided.is_empty() {
        return Err(Error::input(
            db,
            format!(
                "no patch decided 违法/合法 or 其他 · 实地未变化{} to replay",
                since
                    .map(|s| format!(" with an after-date on or after {s}"))
                    .unwrap_or_default()
            ),
        ));
    }
    let data = build_rows(decided)?;
    for (run, (why, n)) in &data.skipped_runs {
        eprintln!("skipped {n} verdicts of run {run}: {why}");
    }
    if data.used.is_empty() {
        return Err(Error::input(
            db,
            "no verdict could be replayed: the inputs of every run are gone",
        ));
    }
    let replays: Vec<Replay> = std::iter::once(&new)
        .chain(base.as_ref())
        .map(|m| replay(m, &data))
        .collect();
    if as_json {
        let v: Vec<Value> = replays.iter().map(replay_json).collect();
        println!("{}", json!({"verdicts": data.used.len(), "since": since, "models": v}));
    } else {
        println!(
            "replayed {} verdicts{}",
            data.used.len(),
            since.map(|s| format!(" with after-dates from {s}")).unwrap_or_default()
        );
        for r in &replays {
            print_replay(r);
        }
    }
    Ok(0)
}

fn replay(m: &VerdictModel, data: &crate::verdict_train::Dataset) -> Replay {
    let mut r = Replay {
        id: m.id.clone(),
        threshold: m.threshold,
        overall: Suppression::default(),
        by_county: BTreeMap::new(),
        by_type: BTreeMap::new(),
    };
    for (d, row) in data.used.iter().zip(&data.rows) {
        let scored = [(m.probability(row), d.label)];
        let one = Suppression::measure(&scored, m.threshold);
        let text = |k: &str| d.properties.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let county = Some(text("XZQDM"))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "(none)".into());
        for s in [
            &mut r.overall,
            r.by_county.entry(county).or_default(),
            r.by_type.entry(text("change_type")).or_default(),
        ] {
            add(s, &one);
        }
    }
    r
}

fn add(s: &mut Suppression, o: &Suppression) {
    s.false_alarms += o.false_alarms;
    s.false_alarms_removed += o.false_alarms_removed;
    s.real_changes += o.real_changes;
    s.real_changes_lost += o.real_changes_lost;
}

fn line(name: &str, s: &Suppression) -> String {
    format!(
        "  {name:<20} false alarms avoided {:>5} / {:<5} ({:>5.1} %)   true changes lost {:>5} / {:<5} ({:>5.1} %)",
        s.false_alarms_removed,
        s.false_alarms,
        100.0 * s.removed_share(),
        s.real_changes_lost,
        s.real_changes,
        100.0 * s.lost_share()
    )
}

fn print_replay(r: &Replay) {
    println!("model {} (threshold {:.3})", r.id, r.threshold);
    println!("{}", line("all", &r.overall));
    println!(" per county (XZQDM):");
    for (k, s) in &r.by_county {
        println!("{}", line(k, s));
    }
    println!(" per change type:");
    for (k, s) in &r.by_type {
        println!("{}", line(k, s));
    }
}

fn replay_json(r: &Replay) -> Value {
    json!({"model": r.id, "threshold": r.threshold, "overall": r.overall,
           "false_alarms_avoided_share": r.overall.removed_share(), "true_changes_lost_share": r.overall.lost_share(),
           "by_county": r.by_county, "by_change_type": r.by_type})
}
