//! `landwatch review simulate`: decide a run's patches from a truth raster, as a reviewer
//! would in the field, to measure the verdict loop without people (synthetic scenes, labelled
//! datasets). A patch is a real change (违法) when at least `--min-change` of its pixels are
//! labelled change, else a false alarm (其他 · 实地未变化). Only undecided patches are decided.

use crate::store::Store;
use crate::users;
use crate::verdict_train::outline_of;
use crate::verdicts::{self, Status, VerdictInput};
use landwatch_core::learn::verdict::values_inside;
use landwatch_core::{Error, Result};
use std::path::PathBuf;

/// Decide an imported run's patches from a truth raster (simulated review).
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Review database.
    #[arg(long)]
    pub db: PathBuf,
    /// The imported run folder whose patches are decided.
    #[arg(long)]
    pub run: PathBuf,
    /// Truth raster on the run's grid (band 1), e.g. synth's truth_labels.tif.
    #[arg(long)]
    pub truth: PathBuf,
    /// Truth values meaning change (default: synth's 1–5 and 9).
    #[arg(long, value_delimiter = ',', default_values_t = [1.0, 2.0, 3.0, 4.0, 5.0, 9.0])]
    pub change_values: Vec<f64>,
    /// Share of a patch's pixels that must be labelled change for a real change.
    #[arg(long, default_value_t = 0.1)]
    pub min_change: f64,
    /// The reviewer account the verdicts are recorded as (must exist).
    #[arg(long = "as", default_value = "simulator")]
    pub user: String,
}

/// Runs `landwatch review simulate`; returns the exit code.
pub fn cli_main(a: &SimulateArgs) -> Result<i32> {
    let mut store = Store::open(&a.db)?;
    let user = users::user_by_name(&store, &a.user)?.ok_or_else(|| {
        Error::Usage(format!(
            "--as {}: no such user in {}; add one with `landwatch review user add {} --role admin`",
            a.user,
            a.db.display(),
            a.user
        ))
    })?;
    let run = a
        .run
        .canonicalize()
        .map_err(|e| Error::input(&a.run, format!("run folder not found: {e}")))?;
    let patches = undecided_patches(&store, &run)?;
    let (mut real, mut false_alarm) = (0, 0);
    for (id, geometry, lonlat) in patches {
        let outline = outline_of(&geometry).ok_or_else(|| Error::Other(format!("patch {id}: no readable outline")))?;
        let values = values_inside(&a.truth, 1, &outline, lonlat)?;
        let changed = values.iter().filter(|v| a.change_values.contains(v)).count();
        let is_real = !values.is_empty() && changed as f64 >= a.min_change * values.len() as f64;
        let input = if is_real {
            real += 1;
            VerdictInput {
                status: Status::Illegal,
                subtype: String::new(),
                note: format!("simulated: {changed} of {} pixels labelled change", values.len()),
            }
        } else {
            false_alarm += 1;
            VerdictInput {
                status: Status::Other,
                subtype: "实地未变化".into(),
                note: format!("simulated: {changed} of {} pixels labelled change", values.len()),
            }
        };
        verdicts::record(&mut store, id, &user, &input)?;
    }
    println!(
        "simulated review of {}: {real} real changes (违法), {false_alarm} false alarms (其他 · 实地未变化)",
        run.display()
    );
    Ok(0)
}

/// Undecided patches last published by the run in `run_dir`: id, outline, lon/lat or pixel.
fn undecided_patches(store: &Store, run_dir: &std::path::Path) -> Result<Vec<(i64, serde_json::Value, bool)>> {
    let db = |e: rusqlite::Error| Error::Other(format!("review database: {e}"));
    let mut stmt = store
        .conn()
        .prepare(
            "SELECT p.id, p.geometry, r.crs FROM patches p JOIN runs r ON r.id = p.run_id
             LEFT JOIN current_verdicts c ON c.patch_id = p.id
             WHERE r.run_dir = ?1 AND COALESCE(c.new_status, 'unreviewed') = 'unreviewed' ORDER BY p.id",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([run_dir.display().to_string()], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })
        .map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, g, crs) = row.map_err(db)?;
        out.push((id, serde_json::from_str(&g).unwrap_or_default(), crs != "pixel"));
    }
    if out.is_empty() {
        return Err(Error::input(
            run_dir,
            "no undecided patch of this run in the database (import it with `landwatch review import` first)",
        ));
    }
    Ok(out)
}
