//! `landwatch train verdicts`: a verdict model from the decided patches of a review database.
//!
//! Every decided patch whose verdict says what the ground did is a training row: 违法 / 合法
//! (`illegal` / `legal`) = real change (1); 其他 · 实地未变化 = false alarm (0). Other 其他
//! subtypes (设施农用地, 临时用地 …) say nothing about the detector and are skipped, counted.
//! A row is the patch's published properties and statistics of its before and after pixels,
//! re-read through GDAL from the images its run's `run.json` names (checked against the
//! recorded SHA-256), never from the PNG chips ([`landwatch_core::learn::verdict`]).
//!
//! The latest rows by after-date (then verdict time) are held out; the model is fit on the
//! others, its threshold chosen on a later slice of those (the highest probability that loses
//! at most `--max-loss` of that slice's real changes), and the held-out rows measure it.
//! The database is opened read-only; the model and its manifest are written only once
//! everything succeeded, each atomically.

use landwatch_core::learn::booster::{self, BoostParams, Rows};
use landwatch_core::learn::verdict::{self, ImagePair, RunImages, VerdictModel};
use landwatch_core::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Fewest rows of either kind to train on.
pub const MIN_PER_CLASS: usize = 10;

/// Train a verdict model from a review database's decided patches.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainVerdictsArgs {
    /// The review database (opened read-only).
    #[arg(long)]
    pub db: PathBuf,
    /// The model file to write (default: models/verdict-<version>.json); the manifest goes
    /// beside it as <stem>.manifest.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Model version (default: the UTC time, YYYYMMDD-HHMMSS).
    #[arg(long)]
    pub version: Option<String>,
    /// Share of rows held out (the latest by after-date), 0.05 to 0.5.
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// Largest share of real changes the threshold may suppress on its calibration slice.
    #[arg(long, default_value_t = 0.02)]
    pub max_loss: f64,
    /// Seed of the trees' row subsampling.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// One decided patch as read from the database.
#[derive(Debug, Clone)]
pub struct Decided {
    /// Verdict audit row id.
    pub verdict_id: i64,
    /// Patch id in the database.
    pub patch_id: i64,
    /// The run the patch was last published by.
    pub run_id: i64,
    /// That run's folder.
    pub run_dir: PathBuf,
    /// Its published properties.
    pub properties: Map<String, Value>,
    /// Its outline (GeoJSON).
    pub geometry: Value,
    /// After-image date.
    pub after_date: String,
    /// When the verdict was given.
    pub at: String,
    /// Who gave it.
    pub user: String,
    /// 1 real change, 0 false alarm.
    pub label: u8,
    /// `lonlat` or `pixel`.
    pub crs: String,
}

/// What reading the verdicts found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct VerdictCounts {
    /// Decided as real change (legal/illegal).
    pub real_change: usize,
    /// Decided as 其他 · 实地未变化.
    pub false_alarm: usize,
    /// 其他 with another subtype: skipped.
    pub skipped_other_subtype: usize,
}

/// Opens a review database read-only, refusing what is not one (nothing is created or changed).
pub fn open_review_db(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(Error::input(
            path,
            "review database not found (give the file `review serve` uses)",
        ));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| Error::input(path, format!("cannot open the review database: {e}")))?;
    let tables: rusqlite::Result<i64> = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type IN ('table', 'view')
           AND name IN ('patches', 'runs', 'verdicts', 'users', 'current_verdicts')",
        [],
        |r| r.get(0),
    );
    match tables {
        Ok(5) => Ok(conn),
        Ok(_) => Err(Error::input(
            path,
            "is not a landwatch review database (no patches/runs/verdicts tables); give the file `review serve --db` uses",
        )),
        Err(e) => Err(Error::input(path, format!("is not a landwatch review database: {e}"))),
    }
}

/// The decided patches that say what the ground did, oldest after-date first.
pub fn read_decided(conn: &Connection, db: &Path) -> Result<(Vec<Decided>, VerdictCounts)> {
    let sql = "SELECT c.id, p.id, p.run_id, r.run_dir, p.properties, p.geometry, p.after_date, c.at,
                      u.name, c.new_status, c.subtype, r.crs
               FROM current_verdicts c JOIN patches p ON p.id = c.patch_id
               JOIN runs r ON r.id = p.run_id JOIN users u ON u.id = c.user_id
               WHERE c.new_status IN ('legal', 'illegal', 'other')
               ORDER BY p.after_date, c.at, c.id";
    let db_err = |e: rusqlite::Error| Error::input(db, format!("cannot read the verdicts: {e}"));
    let mut stmt = conn.prepare(sql).map_err(db_err)?;
    // The verdict's status and subtype, and the patch with its label still to be decided.
    let rows = stmt
        .query_map([], |r| {
            let decided = Decided {
                verdict_id: r.get(0)?,
                patch_id: r.get(1)?,
                run_id: r.get(2)?,
                run_dir: PathBuf::from(r.get::<_, String>(3)?),
                properties: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                geometry: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or(Value::Null),
                after_date: r.get(6)?,
                at: r.get(7)?,
                user: r.get(8)?,
                label: 0,
                crs: r.get(11)?,
            };
            Ok((r.get::<_, String>(9)?, r.get::<_, String>(10)?, decided))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    let mut counts = VerdictCounts::default();
    for row in rows {
        let (status, subtype, mut decided) = row.map_err(db_err)?;
        decided.label = match (status.as_str(), subtype.as_str()) {
            ("legal" | "illegal", _) => 1,
            ("other", "实地未变化") => 0,
            _ => {
                counts.skipped_other_subtype += 1;
                continue;
            }
        };
        if decided.label == 1 {
            counts.real_change += 1;
        } else {
            counts.false_alarm += 1;
        }
        out.push(decided);
    }
    Ok((out, counts))
}

/// Refuses a training set with too few rows of either kind.
pub fn check_enough(counts: &VerdictCounts, db: &Path, what: &str) -> Result<()> {
    if counts.real_change < MIN_PER_CLASS || counts.false_alarm < MIN_PER_CLASS {
        return Err(Error::input(
            db,
            format!(
                "too few verdicts to train on{what}: {} real changes (违法/合法) and {} false alarms (其他 · 实地未变化); \
                 at least {MIN_PER_CLASS} of each are needed",
                counts.real_change, counts.false_alarm
            ),
        ));
    }
    Ok(())
}

/// The images of a run folder, from its `run.json`, checked against the recorded checksums.
pub fn run_images(run_dir: &Path) -> std::result::Result<RunImages, String> {
    let manifest = run_dir.join("run.json");
    if !run_dir.is_dir() {
        return Err(format!("run folder {} is gone", run_dir.display()));
    }
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        format!(
            "{}: {e} (only `landwatch detect` run folders are supported)",
            manifest.display()
        )
    })?;
    let m: Value = serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", manifest.display()))?;
    let image = |which: &str| -> std::result::Result<PathBuf, String> {
        let entry = &m["inputs"][which];
        let recorded = entry["path"]
            .as_str()
            .ok_or_else(|| format!("{}: no inputs.{which}.path", manifest.display()))?;
        let path = locate(recorded, run_dir)
            .ok_or_else(|| format!("{which} image {recorded} named in {} is gone", manifest.display()))?;
        if let Some(sum) = entry["sha256"].as_str() {
            let now = landwatch_core::io::hash::sha256_file(&path).map_err(|e| e.to_string())?;
            if now != sum {
                return Err(format!(
                    "{which} image {} changed since the run (SHA-256 differs)",
                    path.display()
                ));
            }
        }
        Ok(path)
    };
    let band = |k: &str| m["bands"][k].as_u64().unwrap_or(0) as usize;
    let factor = |which: &str| m["calibration"]["radiometry"][which]["factor"].as_f64().unwrap_or(1.0);
    Ok(RunImages {
        before: image("before")?,
        after: image("after")?,
        bands: [band("blue"), band("green"), band("red"), band("nir")],
        factors: (factor("before"), factor("after")),
    })
}

/// A path as `run.json` recorded it: absolute, or relative to the folder detect ran in —
/// tried from here, then from the run folder and each folder above it.
fn locate(recorded: &str, run_dir: &Path) -> Option<PathBuf> {
    let p = Path::new(recorded);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    if p.is_file() {
        return Some(p.to_path_buf());
    }
    run_dir.ancestors().map(|a| a.join(p)).find(|c| c.is_file())
}

/// Rows of the decided patches whose run inputs are readable; the others are returned by
/// run folder with the reason.
pub struct Dataset {
    /// The patches used, in the order of `rows`.
    pub used: Vec<Decided>,
    /// One row per used patch ([`verdict::feature_names`] order).
    pub rows: Vec<Vec<f32>>,
    /// Run folders skipped, with why, and how many verdicts each held.
    pub skipped_runs: BTreeMap<String, (String, usize)>,
}

/// Builds the rows, re-reading every run's images once.
pub fn build_rows(decided: Vec<Decided>) -> Result<Dataset> {
    let mut by_run: BTreeMap<i64, Vec<Decided>> = BTreeMap::new();
    for d in decided {
        by_run.entry(d.run_id).or_default().push(d);
    }
    let mut out = Dataset {
        used: Vec::new(),
        rows: Vec::new(),
        skipped_runs: BTreeMap::new(),
    };
    for (_, ds) in by_run {
        let run_dir = ds[0].run_dir.clone();
        let images = match run_images(&run_dir) {
            Ok(i) => i,
            Err(why) => {
                out.skipped_runs.insert(run_dir.display().to_string(), (why, ds.len()));
                continue;
            }
        };
        let pair = ImagePair::open(&images, ds[0].crs != "pixel")?;
        for d in ds {
            let outline = outline_of(&d.geometry)
                .ok_or_else(|| Error::Other(format!("patch {} has no readable outline in the database", d.patch_id)))?;
            let px = pair.measure(&outline)?;
            out.rows.push(verdict::patch_row(&d.properties, &px));
            out.used.push(d);
        }
    }
    // Back into after-date order (the held-out split is by date).
    let mut order: Vec<usize> = (0..out.used.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&out.used[a], &out.used[b]);
        (&x.after_date, &x.at, x.verdict_id).cmp(&(&y.after_date, &y.at, y.verdict_id))
    });
    out.used = order.iter().map(|&i| out.used[i].clone()).collect();
    out.rows = order.iter().map(|&i| out.rows[i].clone()).collect();
    Ok(out)
}

/// A GeoJSON (Multi)Polygon as a multipolygon.
pub fn outline_of(geometry: &Value) -> Option<geo::MultiPolygon<f64>> {
    let g: geojson::Geometry = serde_json::from_value(geometry.clone()).ok()?;
    let shape = geo::Geometry::<f64>::try_from(&g.value).ok()?;
    match shape {
        geo::Geometry::Polygon(p) => Some(geo::MultiPolygon(vec![p])),
        geo::Geometry::MultiPolygon(m) => Some(m),
        _ => None,
    }
}

/// Suppression measured on some rows at a threshold.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Suppression {
    /// False alarms among the rows.
    pub false_alarms: usize,
    /// Of them, suppressed (probability under the threshold).
    pub false_alarms_removed: usize,
    /// Real changes among the rows.
    pub real_changes: usize,
    /// Of them, suppressed: lost from the default queue.
    pub real_changes_lost: usize,
}

impl Suppression {
    /// Counts over `(probability, label)` pairs at `threshold`.
    pub fn measure(scored: &[(f64, u8)], threshold: f64) -> Suppression {
        let mut s = Suppression::default();
        for &(p, y) in scored {
            let suppressed = p < threshold;
            if y == 1 {
                s.real_changes += 1;
                s.real_changes_lost += usize::from(suppressed);
            } else {
                s.false_alarms += 1;
                s.false_alarms_removed += usize::from(suppressed);
            }
        }
        s
    }

    /// Share of false alarms removed (0 without any).
    pub fn removed_share(&self) -> f64 {
        share(self.false_alarms_removed, self.false_alarms)
    }

    /// Share of real changes lost (0 without any).
    pub fn lost_share(&self) -> f64 {
        share(self.real_changes_lost, self.real_changes)
    }
}

fn share(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 / of as f64
    }
}

/// The highest threshold that suppresses at most `max_loss` of the real changes in `scored`.
pub fn choose_threshold(scored: &[(f64, u8)], max_loss: f64) -> f64 {
    let mut real: Vec<f64> = scored.iter().filter(|(_, y)| *y == 1).map(|(p, _)| *p).collect();
    if real.is_empty() {
        return 0.0;
    }
    real.sort_by(f64::total_cmp);
    // Suppressing the k lowest real changes is allowed for k ≤ max_loss · n.
    let k = (max_loss * real.len() as f64).floor() as usize;
    // A threshold at the (k+1)-th lowest keeps it (probability not under the threshold).
    real[k.min(real.len() - 1)]
}

fn fit(rows: &[Vec<f32>], labels: &[u8], seed: u64) -> booster::Booster {
    let features = verdict::feature_names().len();
    let x: Vec<f32> = rows.iter().flatten().copied().collect();
    let y: Vec<f32> = labels.iter().map(|&l| f32::from(l)).collect();
    // Balanced classes: each kind weighs as much in total.
    let n1 = labels.iter().filter(|&&l| l == 1).count().max(1) as f32;
    let n0 = labels.iter().filter(|&&l| l == 0).count().max(1) as f32;
    let w: Vec<f32> = labels
        .iter()
        .map(|&l| {
            if l == 1 {
                0.5 * labels.len() as f32 / n1
            } else {
                0.5 * labels.len() as f32 / n0
            }
        })
        .collect();
    let params = BoostParams {
        rounds: 150,
        max_depth: 3,
        learning_rate: 0.1,
        min_child_hessian: 1.0,
        row_subsample: 0.8,
        seed,
        ..BoostParams::default()
    };
    booster::fit(
        &Rows {
            x: &x,
            y: &y,
            w: &w,
            features,
        },
        None,
        &params,
        &mut |_| {},
    )
}

fn score(b: &booster::Booster, rows: &[Vec<f32>], labels: &[u8]) -> Vec<(f64, u8)> {
    rows.iter()
        .zip(labels)
        .map(|(r, &l)| (f64::from(b.probability(r)), l))
        .collect()
}

/// Runs `landwatch train verdicts`; returns the exit code.
pub fn cli_main(args: &TrainVerdictsArgs) -> Result<i32> {
    check_args(args)?;
    let conn = open_review_db(&args.db)?;
    let (decided, counts) = read_decided(&conn, &args.db)?;
    check_enough(&counts, &args.db, "")?;
    let data = build_rows(decided)?;
    for (run, (why, n)) in &data.skipped_runs {
        eprintln!("skipped {n} verdicts of run {run}: {why}");
    }
    let used_counts = VerdictCounts {
        real_change: data.used.iter().filter(|d| d.label == 1).count(),
        false_alarm: data.used.iter().filter(|d| d.label == 0).count(),
        skipped_other_subtype: counts.skipped_other_subtype,
    };
    if data.used.is_empty() {
        return Err(Error::input(
            &args.db,
            format!(
                "no verdict could be used: the inputs of every run are gone ({})",
                data.skipped_runs.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    check_enough(&used_counts, &args.db, " after skipping runs whose inputs are gone")?;
    let labels: Vec<u8> = data.used.iter().map(|d| d.label).collect();
    let n = labels.len();
    let n_held = ((n as f64 * args.holdout).ceil() as usize).clamp(1, n - 1);
    let n_train = n - n_held;
    // Threshold: fit on the earlier part of the training rows, pick on their latest slice.
    let n_fit = (n_train * 3 / 4).max(1);
    let early = fit(&data.rows[..n_fit], &labels[..n_fit], args.seed);
    let calibration = score(&early, &data.rows[n_fit..n_train], &labels[n_fit..n_train]);
    let threshold = if calibration.iter().any(|(_, y)| *y == 1) {
        choose_threshold(&calibration, args.max_loss)
    } else {
        choose_threshold(&score(&early, &data.rows[..n_fit], &labels[..n_fit]), args.max_loss)
    };
    let model_trees = fit(&data.rows[..n_train], &labels[..n_train], args.seed);
    let held = score(&model_trees, &data.rows[n_train..], &labels[n_train..]);
    let held_metrics = Suppression::measure(&held, threshold);
    let version = args
        .version
        .clone()
        .unwrap_or_else(|| chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("models/verdict-{version}.json")));
    refuse_overwrite(&out)?;
    let model = VerdictModel {
        format: verdict::FORMAT.into(),
        format_version: verdict::FORMAT_VERSION,
        id: format!("verdict@{version}"),
        feature_set: verdict::FEATURE_SET.into(),
        feature_names: verdict::feature_names(),
        threshold,
        booster: model_trees,
    };
    let bytes = model.to_bytes()?;
    let manifest = manifest(args, &model, &data, &used_counts, n_train, &held_metrics, &bytes);
    let mpath = manifest_path(&out);
    let mbytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Other(format!("cannot serialise the manifest: {e}")))?;
    // The manifest first: a model file never exists without the record of what made it.
    landwatch_core::io::atomic::write_file(&mpath, &mbytes)?;
    landwatch_core::io::atomic::write_file(&out, &bytes)?;
    println!(
        "landwatch train verdicts: wrote {} ({} from {} verdicts: {} real changes, {} false alarms; threshold {:.3}; \
         held-out {} latest: {:.0} % of false alarms removed, {:.1} % of real changes lost) and {}",
        out.display(),
        model.id,
        n,
        used_counts.real_change,
        used_counts.false_alarm,
        threshold,
        n - n_train,
        100.0 * held_metrics.removed_share(),
        100.0 * held_metrics.lost_share(),
        mpath.display()
    );
    Ok(0)
}

fn check_args(args: &TrainVerdictsArgs) -> Result<()> {
    if !(0.05..=0.5).contains(&args.holdout) {
        return Err(Error::Usage(format!(
            "--holdout {}: expected 0.05 to 0.5",
            args.holdout
        )));
    }
    if !(0.0..=0.5).contains(&args.max_loss) {
        return Err(Error::Usage(format!("--max-loss {}: expected 0 to 0.5", args.max_loss)));
    }
    if let Some(out) = &args.out {
        if out.extension().is_none_or(|e| e != "json") {
            return Err(Error::Usage(format!(
                "--out {}: a verdict model file ends in .json (e.g. models/verdict-1.json)",
                out.display()
            )));
        }
        if out.is_dir() {
            return Err(Error::input(out, "--out is a folder; give the model file's name"));
        }
    }
    Ok(())
}

/// A version names one model: an existing model file (which a pipeline may apply) is never
/// replaced.
fn refuse_overwrite(out: &Path) -> Result<()> {
    if out.exists() {
        return Err(Error::input(
            out,
            "a verdict model of this name exists already; give a new --version or --out (models are never replaced)",
        ));
    }
    Ok(())
}

/// `models/verdict-1.json` → `models/verdict-1.manifest.json`.
pub fn manifest_path(model: &Path) -> PathBuf {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    model.with_file_name(format!("{stem}.manifest.json"))
}

fn manifest(
    args: &TrainVerdictsArgs,
    model: &VerdictModel,
    data: &Dataset,
    counts: &VerdictCounts,
    n_train: usize,
    held: &Suppression,
    bytes: &[u8],
) -> Value {
    let used = &data.used;
    let span = |f: &dyn Fn(&Decided) -> String| {
        let v: BTreeSet<String> = used.iter().map(f).collect();
        json!([v.iter().next(), v.iter().next_back()])
    };
    let reviewers: BTreeSet<&str> = used.iter().map(|d| d.user.as_str()).collect();
    let runs: BTreeSet<i64> = used.iter().map(|d| d.run_id).collect();
    let skipped: Vec<Value> = data
        .skipped_runs
        .iter()
        .map(|(run, (why, n))| json!({"run_dir": run, "verdicts": n, "why": why}))
        .collect();
    json!({
        "model": model.id,
        "sha256": landwatch_core::io::hash::sha256_hex(bytes),
        "landwatch_version": env!("CARGO_PKG_VERSION"),
        "trained_at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "database": args.db.display().to_string(),
        "feature_set": model.feature_set,
        "feature_names": model.feature_names,
        "threshold": model.threshold,
        "labels": "legal/illegal = real change (1); other · 实地未变化 = false alarm (0); other subtypes skipped",
        "counts": counts,
        "skipped_runs": skipped,
        "verdict_ids": used.iter().map(|d| d.verdict_id).collect::<Vec<_>>(),
        "run_ids": runs,
        "reviewers": reviewers.len(),
        "verdict_time_span": span(&|d| d.at.clone()),
        "after_date_span": span(&|d| d.after_date.clone()),
        "split": {
            "kind": "by date: the latest after-dates (then verdict times) held out",
            "train": n_train,
            "held_out": used.len() - n_train,
            "held_out_from_after_date": used.get(n_train).map(|d| d.after_date.clone()),
        },
        "held_out": {
            "counts": held,
            "false_alarms_removed_share": held.removed_share(),
            "real_changes_lost_share": held.lost_share(),
        },
        "parameters": {"holdout": args.holdout, "max_loss": args.max_loss, "seed": args.seed},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_loses_at_most_the_allowed_share_of_real_changes() {
        let scored: Vec<(f64, u8)> = (0..100)
            .map(|i| (i as f64 / 100.0, 1))
            .chain((0..50).map(|i| (i as f64 / 200.0, 0)))
            .collect();
        let t = choose_threshold(&scored, 0.05);
        let s = Suppression::measure(&scored, t);
        assert_eq!(s.real_changes_lost, 5, "t = {t}");
        assert!(s.false_alarms_removed >= 10);
        assert_eq!(choose_threshold(&scored, 0.0), 0.0);
    }
}
