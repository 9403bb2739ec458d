//! `landwatch run`: one nightly run of a pipeline, from listing the source to publishing.
//!
//! Layout under the pipeline's `output`:
//! * `runs/<run_id>/` — published runs (`patches.geojson`, `manifest.json`, `tiles/<pair>/`);
//! * `work/<run_id>/` — the run in progress; each finished pair is a folder `tiles/<pair>/` that
//!   appears by an atomic rename, so after a crash the same run (same plan → same id) skips them;
//! * `shards/<run_id>/shard-I-of-N/` — a shard's finished pairs, for `landwatch merge`;
//! * `state/*.lock` — the one-run-at-a-time locks.
//!
//! The published folder appears by one rename of the work folder: readers see all of a run or
//! nothing of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

use super::archive::{raster_band_count, safe_name, Archive, CatalogueEntry};
use super::config::{Bands, Baseline, DetectParams, Pipeline, Source};
use super::detector::{TileDetector, TileJob};
use super::fetch::FetchError;
use super::manifest::{
    acquisition_datetime, layer_refs, params, FailureKind, Manifest, ModelRef, PipelineRef, RunProperties, TileOutcome,
    TileStatus,
};
use super::patchset::{read_tile_patches, write_collection, Patch};
use super::shard::Shard;
use super::source::{self, Listing, Location, TileRef};
use super::{fetch, seams, tracking};
use landwatch_core::io::atomic::write_file;
use landwatch_core::io::hash::sha256_hex;
use landwatch_core::{Error, Result};

/// How `run` was asked to behave.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// List and plan only: fetch, detect and publish nothing.
    pub dry_run: bool,
    /// Process only this shard's pairs, into a shard folder for `merge`.
    pub shard: Option<Shard>,
    /// Draw progress bars (only sensible on a terminal).
    pub progress: bool,
}

/// What a run ended with.
#[derive(Debug, Clone, PartialEq)]
pub enum RunResult {
    /// Nothing new since the last successful run.
    NothingNew,
    /// A dry run: planned, nothing done.
    DryRun,
    /// A run folder was published.
    Published {
        /// The run's id.
        run_id: String,
        /// The run folder.
        dir: PathBuf,
    },
    /// A shard folder was written (published later by `merge`).
    ShardWritten {
        /// The run's id.
        run_id: String,
        /// The shard folder.
        dir: PathBuf,
    },
    /// Every pair failed: nothing was published (a run without a result must not stand in the
    /// history, where it would change the next run's id), and the run exits non-zero.
    AllFailed {
        /// The run's id.
        run_id: String,
        /// The exit code the process ends with (see [`RunReport::exit_code`]).
        exit_code: i32,
    },
}

/// The run's result plus everything that went wrong, by name.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// How the run ended.
    pub result: RunResult,
    /// Pairs and listing entries that failed, with why.
    pub failed: Vec<(String, String)>,
    /// Patches published.
    pub patches: usize,
}

impl RunReport {
    /// 0 when everything went well, 1 when some tiles or listing entries failed; a run in which
    /// every pair failed says itself (1 or 2, see [`RunResult::AllFailed`]).
    pub fn exit_code(&self) -> i32 {
        match self.result {
            RunResult::AllFailed { exit_code, .. } => exit_code,
            _ => i32::from(!self.failed.is_empty()),
        }
    }
}

/// A before/after pair to detect.
#[derive(Debug, Clone)]
pub struct PairPlan {
    /// The before tile image.
    pub before: TileRef,
    /// The after tile image.
    pub after: TileRef,
}

impl PairPlan {
    /// The pair's checkpoint folder name.
    pub fn key(&self) -> String {
        pair_key(&self.after.tile, &self.after.date)
    }
}

/// The checkpoint folder name of the pair of `tile` whose after image is of `after_date`.
pub fn pair_key(tile: &str, after_date: &str) -> String {
    format!("{}@{after_date}", safe_name(tile))
}

/// What planning made of the listed images.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Pairs to detect, sorted by key.
    pub pairs: Vec<PairPlan>,
    /// "After" images without a baseline image.
    pub orphans: Vec<TileRef>,
    /// Pairs an earlier run already published.
    pub already_done: usize,
}

/// Pairs every not yet processed "after" image with its baseline.
pub fn plan_pairs(tiles: &[TileRef], baseline: &Baseline, processed: &BTreeSet<String>) -> Plan {
    let mut by_tile: BTreeMap<&str, Vec<&TileRef>> = BTreeMap::new();
    for t in tiles {
        by_tile.entry(&t.tile).or_default().push(t);
    }
    let (mut pairs, mut orphans, mut already_done) = (Vec::new(), Vec::new(), 0);
    for images in by_tile.values_mut() {
        images.sort_by(|a, b| a.date.cmp(&b.date));
        for (i, after) in images.iter().enumerate() {
            let before = match baseline {
                Baseline::Date(d) if after.date.as_str() <= d.as_str() => continue,
                Baseline::Date(d) => images.iter().rev().find(|t| t.date.as_str() <= d.as_str()),
                Baseline::Previous if i == 0 => continue,
                Baseline::Previous => images.get(i - 1),
            };
            if processed.contains(&pair_key(&after.tile, &after.date)) {
                already_done += 1;
                continue;
            }
            match before {
                Some(b) => pairs.push(PairPlan {
                    before: (*b).clone(),
                    after: (*after).clone(),
                }),
                None => orphans.push((*after).clone()),
            }
        }
    }
    pairs.sort_by_key(PairPlan::key);
    Plan {
        pairs,
        orphans,
        already_done,
    }
}

/// A run id that is the same for the same plan on top of the same published runs (so a resumed or
/// sharded run finds its work), and new once any run was published since (a retried plan).
pub fn run_id_for(pairs: &[PairPlan], published: &[(String, PathBuf)]) -> String {
    let last = pairs
        .iter()
        .map(|p| p.after.date.replace('-', ""))
        .max()
        .unwrap_or_default();
    let mut text: String = pairs
        .iter()
        .map(|p| format!("{}<{}\n", p.key(), p.before.date))
        .collect();
    for (id, _) in published {
        text.push_str(id);
        text.push('\n');
    }
    format!("{last}-{}", &sha256_hex(text.as_bytes())[..8])
}

/// Pairs already published in earlier runs (done pairs only: failed ones are retried).
fn processed_pairs(runs: &[(String, PathBuf)]) -> Result<BTreeSet<String>> {
    let mut set = BTreeSet::new();
    for (_, dir) in runs {
        let m = Manifest::read(&dir.join("manifest.json"))?;
        set.extend(
            m.properties
                .tiles
                .into_iter()
                .filter(|t| t.status == TileStatus::Done)
                .map(|t| t.pair),
        );
    }
    Ok(set)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("starting the async runtime: {e}")))
}

fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(|e| Error::io(p, "creating folder", e))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io(to, "renaming into place", e))
}

/// Runs a pipeline once.
pub fn run(p: &Pipeline, opts: &RunOptions, detector: &dyn TileDetector) -> Result<RunReport> {
    let t0 = Instant::now();
    let lock_name = match &opts.shard {
        Some(s) => format!("shard-{}-of-{}.lock", s.index, s.count),
        None => "run.lock".into(),
    };
    // A dry run writes nothing, not even the lock: it changes nothing another run could trip on.
    let _lock = match opts.dry_run {
        true => None,
        false => Some(super::lock::RunLock::acquire(&p.output.join("state").join(lock_name))?),
    };
    let runs = tracking::published_runs(&p.output.join("runs"))?;
    let processed = processed_pairs(&runs)?;
    let client = fetch::client(&p.fetch)?;
    let rt = runtime()?;
    let listing = rt.block_on(source::list(p, &client))?;
    let listed_s = t0.elapsed().as_secs_f64();
    check_aoi(p, &listing)?;
    let plan = plan_pairs(&listing.tiles, &p.baseline, &processed);
    check_local_bands(p, &plan.pairs)?;
    let mut failed: Vec<(String, String)> = listing.problems.clone();
    for (name, why) in &listing.problems {
        tracing::error!(entry = %name, reason = %why, "unusable source entry");
    }
    for o in &plan.orphans {
        tracing::warn!(tile = %o.key(), "no baseline image for this tile; skipped");
    }
    if plan.pairs.is_empty() {
        return nothing_to_do(p, &listing, &plan, &runs, failed);
    }
    let run_id = run_id_for(&plan.pairs, &runs);
    let orphans = plan.orphans;
    let pairs: Vec<PairPlan> = match &opts.shard {
        Some(s) => plan.pairs.into_iter().filter(|x| s.owns(&x.after.tile)).collect(),
        None => plan.pairs,
    };
    if opts.dry_run {
        print_plan(&run_id, &pairs, &Archive::at(&p.archive), &orphans);
        return Ok(RunReport {
            result: RunResult::DryRun,
            failed,
            patches: 0,
        });
    }
    let archive = Archive::open(&p.archive)?;
    tracing::info!(run_id = %run_id, pairs = pairs.len(), "starting run");
    let work = work_dir(p, &run_id, opts.shard.as_ref())?;
    let tf = Instant::now();
    let inputs = fetch_inputs(&rt, &client, &archive, p, &pairs, opts.progress)?;
    let fetch_s = tf.elapsed().as_secs_f64();
    let td = Instant::now();
    let exec = Exec {
        p,
        detector,
        model: p.model.as_deref(),
        archive: &archive,
    };
    let mut outcomes = exec.detect_all(&work, &inputs, opts.progress)?;
    outcomes.extend(orphans.iter().map(orphan_outcome));
    outcomes.sort_by(|a, b| a.pair.cmp(&b.pair));
    let detect_s = td.elapsed().as_secs_f64();
    failed.extend(failures(&outcomes));
    if let Some(exit_code) = every_pair_failed(&outcomes) {
        tracing::error!(run_id = %run_id, pairs = pairs.len(), "every pair failed; nothing published");
        // No checkpoint in it (none succeeded): the retry starts the same run afresh.
        let _ = std::fs::remove_dir_all(&work);
        return Ok(RunReport {
            result: RunResult::AllFailed { run_id, exit_code },
            failed,
            patches: 0,
        });
    }
    let mut timings = BTreeMap::from([
        ("listing".to_string(), listed_s),
        ("fetch".to_string(), fetch_s),
        ("detect".to_string(), detect_s),
    ]);
    let previous: Vec<String> = runs.iter().map(|r| r.0.clone()).collect();
    let used = used_inputs(&inputs);
    let props = |timings: BTreeMap<String, f64>| -> Result<RunProperties> {
        run_properties(p, &previous, &outcomes, &listing, used.clone(), timings, opts)
    };
    if let Some(shard) = &opts.shard {
        timings.insert("total".into(), t0.elapsed().as_secs_f64());
        let manifest = Manifest::new(&run_id, props(timings)?, p.aoi_bbox);
        let dir = super::shard::publish_shard(p, &run_id, shard, &work, &manifest)?;
        return Ok(RunReport {
            result: RunResult::ShardWritten { run_id, dir },
            failed,
            patches: 0,
        });
    }
    let known = tracking::load_known(&runs)?;
    let tz = Instant::now();
    let stats = finalize(&work, &outcomes, &run_id, &p.detect, known)?;
    timings.insert("finalize".into(), tz.elapsed().as_secs_f64());
    timings.insert("total".into(), t0.elapsed().as_secs_f64());
    let mut manifest = Manifest::new(&run_id, props(timings)?, p.aoi_bbox);
    stats.record(&mut manifest);
    let dir = publish(&work, &p.output.join("runs").join(&run_id), &mut manifest)?;
    tracing::info!(run_id = %run_id, patches = stats.patches, failed = failed.len(), "published");
    Ok(RunReport {
        result: RunResult::Published { run_id, dir },
        failed,
        patches: stats.patches,
    })
}

/// An `[aoi]` that leaves out every listed image is a mistake in the file (swapped or wrong
/// coordinates), not "nothing new".
fn check_aoi(p: &Pipeline, listing: &Listing) -> Result<()> {
    match p.aoi_bbox {
        Some(b) if listing.tiles.is_empty() && listing.outside_aoi > 0 => Err(p.config_error(
            "aoi.bbox",
            format!(
                "nothing to do: {} images listed, 0 inside the aoi [{}, {}, {}, {}] \
                 (west, south, east, north in degrees); check the box",
                listing.outside_aoi, b[0], b[1], b[2], b[3]
            ),
        )),
        _ => Ok(()),
    }
}

/// The band the `[bands]` table needs most of, with its key: the highest number named, or B,G,R
/// (three bands, read as R,G,B by the engine) when the table is left at its default.
fn needed_bands(b: &Bands) -> (usize, &'static str) {
    if b.is_identity() {
        return (3, "bands");
    }
    let named = [
        (b.blue, "bands.blue"),
        (b.green, "bands.green"),
        (b.red, "bands.red"),
        (b.nir, "bands.nir"),
    ];
    let (n, key) = named.into_iter().max_by_key(|(n, _)| *n).unwrap_or((4, "bands"));
    (n as usize, key)
}

/// The local images of the planned pairs have the bands the pipeline names (a wrong `[bands]`
/// would otherwise fail every pair, one by one). Remote images are checked once fetched.
fn check_local_bands(p: &Pipeline, pairs: &[PairPlan]) -> Result<()> {
    let (need, key) = needed_bands(&p.bands);
    let mut seen = BTreeSet::new();
    let (mut short, mut example) = (0usize, None);
    for t in pairs.iter().flat_map(|x| [&x.before, &x.after]) {
        let Location::File(path) = &t.location else { continue };
        if !seen.insert(path) {
            continue;
        }
        // An unreadable image fails on its own when it is archived; the others go on.
        let Ok(have) = raster_band_count(path) else { continue };
        if have < need {
            short += 1;
            example.get_or_insert((t.key(), path.clone(), have));
        }
    }
    match example {
        None => Ok(()),
        Some((name, path, have)) => Err(p.config_error(
            key,
            format!(
                "{short} of {} images lack band {need}: {name} ({}) has {have} bands; \
                 set [bands] to the images' band numbers",
                seen.len(),
                path.display()
            ),
        )),
    }
}

/// No pair to detect: say why, with counts. When not one image could be paired with a baseline
/// (and none ever was), the baseline setting matches no image: exit 2.
fn nothing_to_do(
    p: &Pipeline,
    listing: &Listing,
    plan: &Plan,
    runs: &[(String, PathBuf)],
    failed: Vec<(String, String)>,
) -> Result<RunReport> {
    let listed = listing.tiles.len();
    let last = runs.last().map_or("none", |r| r.0.as_str());
    let orphans = plan.orphans.len();
    let no_baseline = match &p.baseline {
        Baseline::Date(d) => format!("no baseline image (none on or before {d})"),
        Baseline::Previous => "no baseline image".to_string(),
    };
    if orphans > 0 && plan.already_done == 0 {
        let key = match p.baseline {
            Baseline::Date(_) => "baseline.date",
            Baseline::Previous => "baseline",
        };
        return Err(p.config_error(
            key,
            format!(
                "nothing to do: {listed} images listed, {orphans} images have {no_baseline}, \
                 0 pairs to detect; set the baseline to a date with images"
            ),
        ));
    }
    tracing::info!(
        last_run = last,
        listed,
        orphans,
        "nothing new since the last successful run"
    );
    if orphans == 0 {
        println!("nothing new: {listed} tiles listed, all already processed (last run: {last})");
    } else {
        tracing::warn!(orphans, "{orphans} images have {no_baseline}; skipped");
        println!(
            "nothing new: {listed} tiles listed, {} pairs already processed, {orphans} images have \
             {no_baseline} (last run: {last})",
            plan.already_done
        );
    }
    Ok(RunReport {
        result: RunResult::NothingNew,
        failed,
        patches: 0,
    })
}

/// The exit code of a run in which every detected pair failed (None when one succeeded or
/// there was none): 2 when every failure is the configuration's (e.g. a band the images lack),
/// else 1. (The archive or the disk failing stops the run earlier, with exit 3.)
fn every_pair_failed(outcomes: &[TileOutcome]) -> Option<i32> {
    let tried: Vec<&TileOutcome> = outcomes.iter().filter(|o| o.status != TileStatus::NoBaseline).collect();
    if tried.is_empty() || tried.iter().any(|o| o.status != TileStatus::Failed) {
        return None;
    }
    let all_input = tried.iter().all(|o| o.failure == Some(FailureKind::Input));
    Some(if all_input { 2 } else { 1 })
}

fn orphan_outcome(t: &TileRef) -> TileOutcome {
    TileOutcome {
        pair: pair_key(&t.tile, &t.date),
        tile: t.tile.clone(),
        before_date: None,
        after_date: t.date.clone(),
        before_sha256: None,
        after_sha256: None,
        status: TileStatus::NoBaseline,
        reason: Some("no earlier image of this tile".into()),
        failure: None,
    }
}

fn failures(outcomes: &[TileOutcome]) -> Vec<(String, String)> {
    outcomes
        .iter()
        .filter(|o| o.status == TileStatus::Failed)
        .map(|o| (o.pair.clone(), o.reason.clone().unwrap_or_default()))
        .collect()
}

fn print_plan(run_id: &str, pairs: &[PairPlan], archive: &Archive, orphans: &[TileRef]) {
    println!("dry run: run {run_id} would process {} pairs", pairs.len());
    let mut seen = BTreeSet::new();
    for t in pairs.iter().flat_map(|x| [&x.before, &x.after]) {
        if seen.insert(t.key()) && archive.lookup(&t.tile, &t.date).is_none() {
            println!("  fetch   {}  <- {}", t.key(), t.location.describe());
        }
    }
    for x in pairs {
        println!("  detect  {}  ({} -> {})", x.key(), x.before.date, x.after.date);
    }
    for o in orphans {
        println!("  skip    {}  (no baseline)", o.key());
    }
}

/// Inputs of each pair after fetching: both images archived, or why not.
pub type PairInputs = Vec<(PairPlan, std::result::Result<(CatalogueEntry, CatalogueEntry), String>)>;

/// Fetches the pairs' images. The archive failing to take a file stops the run (exit 3).
fn fetch_inputs(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    archive: &Archive,
    p: &Pipeline,
    pairs: &[PairPlan],
    progress: bool,
) -> Result<PairInputs> {
    let mut wanted: BTreeMap<String, TileRef> = BTreeMap::new();
    for x in pairs {
        wanted.entry(x.before.key()).or_insert_with(|| x.before.clone());
        wanted.entry(x.after.key()).or_insert_with(|| x.after.clone());
    }
    let bar = landwatch_core::progress::bar(wanted.len() as u64, "fetch", progress);
    let fetched = rt.block_on(fetch::fetch_all(
        client,
        archive,
        wanted.into_values().collect(),
        &p.fetch,
        &bar,
    ));
    bar.finish_and_clear();
    let mut got: BTreeMap<String, std::result::Result<CatalogueEntry, String>> = BTreeMap::new();
    for (t, r) in fetched {
        let r = match r {
            Ok(e) => Ok(e),
            Err(FetchError::Tile(why)) => Err(why),
            Err(FetchError::Disk(e)) => return Err(e),
        };
        got.insert(t.key(), r);
    }
    let lookup = |t: &TileRef| match got.get(&t.key()) {
        Some(Ok(e)) => Ok(e.clone()),
        Some(Err(why)) => Err(format!("{}: {why}", t.key())),
        None => Err(format!("{}: not fetched", t.key())),
    };
    Ok(pairs
        .iter()
        .map(|x| {
            let r = lookup(&x.before).and_then(|b| lookup(&x.after).map(|a| (b, a)));
            (x.clone(), r)
        })
        .collect())
}

fn used_inputs(inputs: &PairInputs) -> Vec<CatalogueEntry> {
    let mut m: BTreeMap<(String, String), CatalogueEntry> = BTreeMap::new();
    for (b, a) in inputs.iter().filter_map(|(_, r)| r.as_ref().ok()) {
        for e in [b, a] {
            m.insert((e.tile.clone(), e.date.clone()), e.clone());
        }
    }
    m.into_values().collect()
}

/// The work folder of a run (or shard); a finished shard being re-run is moved back to resume.
fn work_dir(p: &Pipeline, run_id: &str, shard: Option<&Shard>) -> Result<PathBuf> {
    let work = match shard {
        None => p.output.join("work").join(run_id),
        Some(s) => {
            let base = p.output.join("shards").join(run_id);
            let work = base.join(format!(".work-{}", s.dir_name()));
            let done = base.join(s.dir_name());
            super::shard::refuse_two_shard_folders(&done, &work)?;
            if done.is_dir() {
                rename(&done, &work)?;
            }
            work
        }
    };
    mkdir(&work.join("tiles"))?;
    Ok(work)
}

/// Detection of pairs into checkpoint folders.
pub struct Exec<'a> {
    /// The pipeline.
    pub p: &'a Pipeline,
    /// What detects each pair.
    pub detector: &'a dyn TileDetector,
    /// Model file; `None`: the built-in one.
    pub model: Option<&'a Path>,
    /// Where the tile images are.
    pub archive: &'a Archive,
}

impl Exec<'_> {
    /// Detects every pair not already checkpointed in `work/tiles/`.
    pub fn detect_all(&self, work: &Path, inputs: &PairInputs, progress: bool) -> Result<Vec<TileOutcome>> {
        clear_leftovers(&work.join("tiles"))?;
        let bar = landwatch_core::progress::bar(inputs.len() as u64, "detect", progress);
        let mut detected_here = 0usize;
        let mut outcomes = Vec::new();
        for (plan, input) in inputs {
            let dir = work.join("tiles").join(plan.key());
            let outcome = if let Some(done) = read_checkpoint(&dir) {
                tracing::info!(pair = %plan.key(), "already done (checkpoint), skipped");
                done
            } else {
                let o = self.detect_one(work, plan, input)?;
                if o.status == TileStatus::Done {
                    detected_here += 1;
                }
                o
            };
            outcomes.push(outcome);
            bar.inc(1);
            crate::test_hooks::pairs_detected(detected_here);
        }
        bar.finish_and_clear();
        Ok(outcomes)
    }

    /// Detects one pair into `tiles/.tmp-<pair>` and renames it to `tiles/<pair>` when complete.
    fn detect_one(
        &self,
        work: &Path,
        plan: &PairPlan,
        input: &std::result::Result<(CatalogueEntry, CatalogueEntry), String>,
    ) -> Result<TileOutcome> {
        let mut outcome = TileOutcome {
            pair: plan.key(),
            tile: plan.after.tile.clone(),
            before_date: Some(plan.before.date.clone()),
            after_date: plan.after.date.clone(),
            before_sha256: None,
            after_sha256: None,
            status: TileStatus::Failed,
            reason: None,
            failure: Some(FailureKind::Fetch),
        };
        let (before, after) = match input {
            Ok(x) => x,
            Err(why) => {
                outcome.reason = Some(why.clone());
                return Ok(outcome);
            }
        };
        outcome.before_sha256 = Some(before.sha256.clone());
        outcome.after_sha256 = Some(after.sha256.clone());
        if let Err(why) = self.check_bands(plan, before, after) {
            tracing::error!(pair = %plan.key(), error = %why, "images lack the configured bands");
            outcome.reason = Some(why);
            outcome.failure = Some(FailureKind::Input);
            return Ok(outcome);
        }
        let tmp = work.join("tiles").join(format!(".tmp-{}", plan.key()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, "clearing leftover", e))?;
        }
        mkdir(&tmp)?;
        match self.run_detector(&tmp, before, after) {
            Ok(()) => {
                outcome.status = TileStatus::Done;
                outcome.failure = None;
                write_checkpoint(&tmp, &outcome)?;
                rename(&tmp, &work.join("tiles").join(plan.key()))?;
                tracing::info!(pair = %plan.key(), "pair detected");
            }
            Err(DetectFailure::Stop(e)) => {
                tracing::error!(pair = %plan.key(), error = %e, "cannot write the results; stopping the run");
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
            Err(DetectFailure::Pair(why, kind)) => {
                tracing::error!(pair = %plan.key(), error = %why, "detection failed");
                outcome.reason = Some(why);
                outcome.failure = Some(kind);
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        Ok(outcome)
    }

    /// Images fetched from elsewhere have the bands `[bands]` names (local ones were checked
    /// before the run).
    fn check_bands(
        &self,
        plan: &PairPlan,
        before: &CatalogueEntry,
        after: &CatalogueEntry,
    ) -> std::result::Result<(), String> {
        let (need, key) = needed_bands(&self.p.bands);
        for (t, e) in [(&plan.before, before), (&plan.after, after)] {
            let have = raster_band_count(&self.archive.blob_path(&e.sha256)).map_err(|e| e.to_string())?;
            if have < need {
                let line = self.p.lines.get(key).map_or(String::new(), |l| format!(" (line {l})"));
                return Err(format!(
                    "{} has {have} bands; {key}{line} of {} needs band {need}",
                    t.key(),
                    self.p.file.display()
                ));
            }
        }
        Ok(())
    }

    fn run_detector(
        &self,
        out: &Path,
        before: &CatalogueEntry,
        after: &CatalogueEntry,
    ) -> std::result::Result<(), DetectFailure> {
        let (b, a) = (
            self.archive.blob_path(&before.sha256),
            self.archive.blob_path(&after.sha256),
        );
        let job = TileJob {
            before: &b,
            after: &a,
            out_dir: out,
            before_date: &before.date,
            after_date: &after.date,
            model: self.model,
            verdict_model: self.p.verdict_model.as_deref(),
            layers: &self.p.layers,
            bands: &self.p.bands,
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.detector.detect(&job)));
        let pair = |why: String| DetectFailure::Pair(why, FailureKind::Detect);
        match r {
            Ok(Ok(())) if out.join("patches.geojson").is_file() => Ok(()),
            Ok(Ok(())) => Err(pair("the detector wrote no patches.geojson".into())),
            Ok(Err(e)) if stops_the_run(&e) => Err(DetectFailure::Stop(e)),
            Ok(Err(e)) if e.exit_code() == 2 => {
                Err(DetectFailure::Pair(self.in_pipeline_terms(&e), FailureKind::Input))
            }
            Ok(Err(e)) => Err(pair(e.to_string())),
            Err(_) => Err(pair("the detector panicked".into())),
        }
    }

    /// The engine's advice names its command-line flags; in a pipeline the same switch is a key
    /// of the pipeline file.
    fn in_pipeline_terms(&self, e: &Error) -> String {
        e.to_string().replace(
            "pass --allow-empty-landuse",
            &format!(
                "set allow_empty_landuse = true under [layers] in {}",
                self.p.file.display()
            ),
        )
    }
}

/// How detecting one pair went wrong.
enum DetectFailure {
    /// This pair failed (the reason, and its kind); the run goes on.
    Pair(String, FailureKind),
    /// The machine, not the pair: the run stops (exit 3) and publishes nothing.
    Stop(Error),
}

/// Whether an error is the machine's rather than the pair's: the operating system refusing a
/// read or write (disk full, quota, read-only, I/O error), or GDAL reporting one of those while
/// writing. Every later pair would fail the same way, and a run published with those pairs
/// "failed" would change the retry's run id; stopping keeps the checkpoints for the retry.
fn stops_the_run(e: &Error) -> bool {
    const DISK: [&str; 4] = [
        "No space left on device",
        "Disk quota exceeded",
        "Read-only file system",
        "Input/output error",
    ];
    matches!(e, Error::Io { .. }) || DISK.iter().any(|m| e.to_string().contains(m))
}

const CHECKPOINT: &str = "tile.json";

/// Removes half-written pair folders left by a crash: `.tmp-<pair>` and the engine's staging
/// folders beside it, `..tmp-<pair>.staging-*`. Nothing else is landwatch's to remove.
fn clear_leftovers(tiles: &Path) -> Result<()> {
    for entry in super::archive::sorted_dir(tiles)? {
        let half_written = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".tmp-") || n.starts_with("..tmp-"));
        if half_written && entry.is_dir() {
            std::fs::remove_dir_all(&entry).map_err(|e| Error::io(&entry, "removing a crashed run's leftover", e))?;
        }
    }
    Ok(())
}

fn write_checkpoint(dir: &Path, o: &TileOutcome) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(o).map_err(|e| Error::Other(e.to_string()))?;
    write_file(&dir.join(CHECKPOINT), &bytes)
}

/// A finished pair's outcome (None when the folder is absent or incomplete).
pub fn read_checkpoint(dir: &Path) -> Option<TileOutcome> {
    let bytes = std::fs::read(dir.join(CHECKPOINT)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn run_properties(
    p: &Pipeline,
    previous: &[String],
    outcomes: &[TileOutcome],
    listing: &Listing,
    inputs: Vec<CatalogueEntry>,
    timings_s: BTreeMap<String, f64>,
    opts: &RunOptions,
) -> Result<RunProperties> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(RunProperties {
        datetime: acquisition_datetime(outcomes).unwrap_or_else(|| now.clone()),
        created: now,
        version: env!("CARGO_PKG_VERSION").into(),
        pipeline: PipelineRef::of(p),
        model: ModelRef::of(p.model.as_deref())?,
        layers: layer_refs(p)?,
        params: params(p),
        previous_runs: previous.to_vec(),
        shard: opts.shard.as_ref().map(Shard::to_string),
        tiles: outcomes.to_vec(),
        listing_problems: listing.problems.clone(),
        inputs,
        counts: BTreeMap::new(),
        timings_s,
    })
}

/// Counts of a finalized run.
#[derive(Debug, Clone, Copy, Default)]
pub struct FinalStats {
    /// Patches published.
    pub patches: usize,
    /// Patches already published by an earlier run.
    pub seen_before: usize,
    /// Pairs detected.
    pub tiles_done: usize,
    /// Pairs that failed.
    pub tiles_failed: usize,
}

impl FinalStats {
    /// Writes the counts into the run manifest.
    pub fn record(&self, m: &mut Manifest) {
        let c = &mut m.properties.counts;
        c.insert("patches".into(), self.patches);
        c.insert("patches_new".into(), self.patches - self.seen_before);
        c.insert("patches_seen_before".into(), self.seen_before);
        c.insert("tiles_done".into(), self.tiles_done);
        c.insert("tiles_failed".into(), self.tiles_failed);
    }
}

/// Turns the finished pairs in `dir/tiles/` into the run's `patches.geojson`: minimum mapping
/// unit, seam merging, deterministic ids, tracking against `known`.
pub fn finalize(
    dir: &Path,
    outcomes: &[TileOutcome],
    run_id: &str,
    params: &DetectParams,
    known: Vec<tracking::Known>,
) -> Result<FinalStats> {
    let mut patches = Vec::new();
    for o in outcomes.iter().filter(|o| o.status == TileStatus::Done) {
        let file = dir.join("tiles").join(&o.pair).join("patches.geojson");
        patches.extend(read_tile_patches(&file, &o.tile, &o.pair, &o.after_date)?);
    }
    patches.retain(|x| x.area_m2() >= params.min_area_m2);
    let mut patches = seams::merge(patches, params.seam_tolerance_m);
    patches.sort_by(|a, b| (&a.after_date, &a.pair, &a.source_id).cmp(&(&b.after_date, &b.pair, &b.source_id)));
    renumber(&mut patches);
    tracking::assign(&mut patches, known, run_id, params.track_overlap);
    write_collection(&dir.join("patches.geojson"), &patches)?;
    let seen = patches
        .iter()
        .filter(|p| p.props.get("seen_before") == Some(&Value::Bool(true)))
        .count();
    Ok(FinalStats {
        patches: patches.len(),
        seen_before: seen,
        tiles_done: outcomes.iter().filter(|o| o.status == TileStatus::Done).count(),
        tiles_failed: outcomes.iter().filter(|o| o.status == TileStatus::Failed).count(),
    })
}

/// Run-wide ids `P0001…` and 监测编号 (`JCBH` = county code + after date + the id's number, as
/// the engine forms it), replacing the engine's per-tile numbering, which repeats across tiles.
fn renumber(patches: &mut [Patch]) {
    for (i, p) in patches.iter_mut().enumerate() {
        let seq = format!("{:04}", i + 1);
        p.props.insert("id".into(), Value::from(format!("P{seq}")));
        if p.props.contains_key("JCBH") {
            let s = |k: &str| p.props.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let jcbh = format!("{}{}{seq}", s("XZQDM"), s("HSX"));
            p.props.insert("JCBH".into(), Value::from(jcbh));
        }
    }
}

/// Writes the manifest into the finished folder and renames it to `dest` in one step.
pub fn publish(work: &Path, dest: &Path, manifest: &mut Manifest) -> Result<PathBuf> {
    write_manifest(work, manifest)?;
    if let Some(parent) = dest.parent() {
        mkdir(parent)?;
    }
    if dest.exists() {
        return Err(Error::Other(format!(
            "{} already exists; refusing to overwrite a published run",
            dest.display()
        )));
    }
    rename(work, dest)?;
    Ok(dest.to_path_buf())
}

/// Writes the manifest, with the patches as its asset, into a finished run folder.
pub fn write_manifest(work: &Path, manifest: &mut Manifest) -> Result<()> {
    manifest.add_asset("patches", work, "patches.geojson", "application/geo+json")?;
    manifest.write(&work.join("manifest.json"))
}

/// The archive a pipeline reads tiles from without fetching (for reruns).
pub fn archive_of(p: &Pipeline) -> Result<Archive> {
    match &p.source {
        Source::Archive { path } => Archive::open_existing(path),
        _ => Archive::open_existing(&p.archive),
    }
}
