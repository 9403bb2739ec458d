//! `landwatch model promote|rollback`: which verdict model a pipeline applies is changed only
//! by these commands, and each change is recorded.
//!
//! `promote` points the pipeline file's `[model] verdict` key at a verdict model (checked to
//! load first); `rollback` points it back at what it named before the promotion that set the
//! current value. The file is edited in place with its comments and layout kept and replaced
//! atomically. Every change appends one JSON line to `<pipeline file>.promotions.jsonl`
//! beside it — who, what, when, the previous value — before the file is replaced, so a change
//! is never made without its record (a record whose change did not happen is told apart by
//! the pipeline's current value, which rollback reads).

use landwatch_core::learn::verdict::VerdictModel;
use landwatch_core::{Error, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `landwatch model …`.
#[derive(Debug, clap::Subcommand)]
pub enum ModelCmd {
    /// Point a pipeline file's `[model] verdict` at a verdict model, recording who did it.
    Promote(PromoteArgs),
    /// Point it back at what it named before the current promotion (recorded too).
    Rollback(RollbackArgs),
}

/// Arguments of `landwatch model promote`.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// The pipeline file to change.
    #[arg(long)]
    pub pipeline: PathBuf,
    /// The verdict model it should apply.
    #[arg(long)]
    pub verdict_model: PathBuf,
    /// Who promotes it (recorded).
    #[arg(long)]
    pub by: String,
}

/// Arguments of `landwatch model rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The pipeline file to change.
    #[arg(long)]
    pub pipeline: PathBuf,
    /// Who rolls back (recorded; default: $USER).
    #[arg(long)]
    pub by: Option<String>,
}

/// Runs `landwatch model …`; returns the exit code.
pub fn cli_main(cmd: ModelCmd) -> Result<i32> {
    match cmd {
        ModelCmd::Promote(a) => promote(&a.pipeline, &a.verdict_model, &a.by).map(|_| 0),
        ModelCmd::Rollback(a) => {
            let by =
                a.by.or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "unknown".into());
            rollback(&a.pipeline, &by).map(|_| 0)
        }
    }
}

/// The promotion log beside a pipeline file.
pub fn log_path(pipeline: &Path) -> PathBuf {
    let name = pipeline
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    pipeline.with_file_name(format!("{name}.promotions.jsonl"))
}

/// Points `pipeline`'s `[model] verdict` at `model`; returns the previous value.
pub fn promote(pipeline: &Path, model: &Path, by: &str) -> Result<Option<String>> {
    check_by(by)?;
    VerdictModel::load(model)?;
    let mut doc = read_pipeline(pipeline)?;
    let value = path_as_written(pipeline, model)?;
    let previous = current(&doc);
    set_verdict(&mut doc, Some(&value));
    record(pipeline, "promote", by, previous.as_deref(), Some(&value))?;
    landwatch_core::io::atomic::write_file(pipeline, doc.to_string().as_bytes())?;
    println!(
        "promoted {value} in {} (was {}); recorded in {}",
        pipeline.display(),
        previous.as_deref().unwrap_or("no verdict model"),
        log_path(pipeline).display()
    );
    Ok(previous)
}

/// Points `pipeline`'s `[model] verdict` back at what it named before the promotion that set
/// the current value; returns the restored value.
pub fn rollback(pipeline: &Path, by: &str) -> Result<Option<String>> {
    check_by(by)?;
    let mut doc = read_pipeline(pipeline)?;
    let now = current(&doc);
    let log = log_path(pipeline);
    let records = read_log(&log)?;
    let set_now = records
        .iter()
        .rev()
        .find(|r| r["action"] == "promote" && r["to"].as_str() == now.as_deref())
        .ok_or_else(|| {
            Error::input(
                &log,
                format!(
                    "no recorded promotion set model.verdict = {} in {}: nothing to roll back to",
                    now.as_deref().unwrap_or("(none)"),
                    pipeline.display()
                ),
            )
        })?;
    let previous = set_now["from"].as_str().map(String::from);
    set_verdict(&mut doc, previous.as_deref());
    record(pipeline, "rollback", by, now.as_deref(), previous.as_deref())?;
    landwatch_core::io::atomic::write_file(pipeline, doc.to_string().as_bytes())?;
    println!(
        "rolled back {} to {}; recorded in {}",
        pipeline.display(),
        previous.as_deref().unwrap_or("no verdict model"),
        log.display()
    );
    Ok(previous)
}

fn check_by(by: &str) -> Result<()> {
    if by.trim().is_empty() {
        return Err(Error::Usage("--by: name who makes this change (it is recorded)".into()));
    }
    Ok(())
}

fn read_pipeline(pipeline: &Path) -> Result<toml_edit::DocumentMut> {
    let text = std::fs::read_to_string(pipeline)
        .map_err(|e| Error::input(pipeline, format!("cannot read the pipeline file: {e}")))?;
    text.parse::<toml_edit::DocumentMut>()
        .map_err(|e| Error::input(pipeline, format!("is not a TOML pipeline file: {e}")))
}

fn current(doc: &toml_edit::DocumentMut) -> Option<String> {
    doc.get("model")
        .and_then(|m| m.get("verdict"))
        .and_then(|v| v.as_str())
        .map(String::from)
}

fn set_verdict(doc: &mut toml_edit::DocumentMut, value: Option<&str>) {
    match value {
        Some(v) => {
            if !doc.contains_table("model") {
                doc["model"] = toml_edit::table();
            }
            doc["model"]["verdict"] = toml_edit::value(v);
        }
        None => {
            if let Some(t) = doc.get_mut("model").and_then(|m| m.as_table_like_mut()) {
                t.remove("verdict");
            }
        }
    }
}

/// The model path as the pipeline file should name it: relative to the file's folder when
/// the model lies under it (the file stays movable with its models), else absolute.
fn path_as_written(pipeline: &Path, model: &Path) -> Result<String> {
    let abs = model
        .canonicalize()
        .map_err(|e| Error::input(model, format!("verdict model not found: {e}")))?;
    let dir = pipeline
        .canonicalize()
        .map_err(|e| Error::input(pipeline, format!("pipeline file not found: {e}")))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let shown = abs.strip_prefix(&dir).map(Path::to_path_buf).unwrap_or(abs);
    shown
        .to_str()
        .map(String::from)
        .ok_or_else(|| Error::input(model, "the path is not valid UTF-8; rename it"))
}

fn record(pipeline: &Path, action: &str, by: &str, from: Option<&str>, to: Option<&str>) -> Result<()> {
    let log = log_path(pipeline);
    let line = json!({
        "at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "action": action, "by": by, "key": "model.verdict", "from": from, "to": to,
        "pipeline": pipeline.display().to_string(),
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| Error::io(&log, "cannot open the promotion log", e))?;
    writeln!(f, "{line}")
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&log, "cannot append to the promotion log", e))
}

fn read_log(log: &Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(log) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::input(log, format!("cannot read the promotion log: {e}"))),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| Error::input(log, format!("line {}: not a promotion record: {e}", i + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_set_and_removed_with_comments_kept() {
        let mut doc: toml_edit::DocumentMut = "# nightly\nname = \"x\"\n\n[model]\n# rules\npath = \"m.toml\"\n"
            .parse()
            .unwrap();
        set_verdict(&mut doc, Some("models/v1.json"));
        assert_eq!(current(&doc).as_deref(), Some("models/v1.json"));
        let text = doc.to_string();
        assert!(text.contains("# nightly") && text.contains("# rules") && text.contains("path = \"m.toml\""));
        set_verdict(&mut doc, None);
        assert_eq!(current(&doc), None);
        let mut bare: toml_edit::DocumentMut = "name = \"x\"\n".parse().unwrap();
        set_verdict(&mut bare, Some("v.json"));
        assert!(bare.to_string().contains("[model]\nverdict = \"v.json\""), "{bare}");
    }
}
