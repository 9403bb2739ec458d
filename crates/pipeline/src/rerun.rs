//! `landwatch rerun`: recompute a past run, or a date range of the archive, without fetching.
//!
//! A rerun of run R takes R's pairs from its manifest (by checksum, so it is exactly the same
//! images), the model given on the command line (or R's), and recognises earlier changes against
//! the same runs R did. With the same model it therefore reproduces R's `patches.geojson` byte for
//! byte — the check that a published result can be recomputed. Reruns go to
//! `<output>/reruns/<id>/` (or `--out`) and never touch the published runs or the archive. The
//! output folder is replaced whole, so only one landwatch wrote (or a new or empty one) is
//! accepted, before any work (see [`landwatch_core::io::ownership`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::archive::{Archive, CatalogueEntry};
use super::config::Pipeline;
use super::detector::TileDetector;
use super::manifest::{
    acquisition_datetime, layer_refs, params, Manifest, ModelRef, PipelineRef, RunProperties, TileStatus,
};
use super::run::{finalize, plan_pairs, Exec, PairInputs, PairPlan};
use super::source::{local::list_archive, Location, TileRef};
use super::tracking;
use landwatch_core::io::atomic::StagingDir;
use landwatch_core::{Error, Result};

/// What to recompute.
#[derive(Debug, Clone)]
pub enum RerunWhat {
    /// One run, by id.
    Run(String),
    /// Every archived pair whose after image was taken between these dates, inclusive.
    Range {
        /// First date (`YYYY-MM-DD`).
        from: String,
        /// Last date (`YYYY-MM-DD`).
        to: String,
    },
}

/// Where a rerun went and what failed.
#[derive(Debug, Clone)]
pub struct RerunReport {
    /// Folder the rerun wrote.
    pub dir: PathBuf,
    /// Patches published.
    pub patches: usize,
    /// Pairs that failed, with why.
    pub failed: Vec<(String, String)>,
}

/// Recomputes; `model` overrides the run's (or the pipeline's) model.
pub fn rerun(
    p: &Pipeline,
    what: &RerunWhat,
    model: Option<&Path>,
    out: Option<&Path>,
    detector: &dyn TileDetector,
) -> Result<RerunReport> {
    let t0 = Instant::now();
    let archive = super::run::archive_of(p)?;
    let (run_id, inputs, previous, model) = match what {
        RerunWhat::Run(id) => from_run(p, &archive, id, model)?,
        RerunWhat::Range { from, to } => from_range(p, &archive, from, to, model)?,
    };
    let model_ref = ModelRef::of(model.as_deref())?;
    let tag = &model_ref.sha256[..8.min(model_ref.sha256.len())];
    let dest = out.map_or_else(
        || p.output.join("reruns").join(format!("{run_id}-model-{tag}")),
        Path::to_path_buf,
    );
    // Before any work: the folder is replaced as a whole, so it must be new, empty or an
    // earlier output of landwatch's that holds none of the rerun's inputs (exit 2 otherwise).
    let read_paths = inputs_read(p, &archive, what, &previous, model.as_deref());
    let read_paths: Vec<&Path> = read_paths.iter().map(PathBuf::as_path).collect();
    let staging = StagingDir::new(&dest, &read_paths)?;
    let work = staging.path().to_path_buf();
    std::fs::create_dir_all(work.join("tiles")).map_err(|e| Error::io(&work, "creating", e))?;
    let exec = Exec {
        p,
        detector,
        model: model.as_deref(),
        archive: &archive,
    };
    let outcomes = exec.detect_all(&work, &inputs, false)?;
    let runs_dir = p.output.join("runs");
    let prev: Vec<(String, PathBuf)> = previous.iter().map(|id| (id.clone(), runs_dir.join(id))).collect();
    let stats = finalize(&work, &outcomes, &run_id, &p.detect, tracking::load_known(&prev)?)?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let props = RunProperties {
        datetime: acquisition_datetime(&outcomes).unwrap_or_else(|| now.clone()),
        created: now,
        version: env!("CARGO_PKG_VERSION").into(),
        pipeline: PipelineRef::of(p),
        model: model_ref,
        layers: layer_refs(p)?,
        params: params(p),
        previous_runs: previous,
        shard: None,
        tiles: outcomes.clone(),
        listing_problems: Vec::new(),
        inputs: used(&inputs),
        counts: Default::default(),
        timings_s: [("total".to_string(), t0.elapsed().as_secs_f64())].into(),
    };
    let mut manifest = Manifest::new(&run_id, props, p.aoi_bbox);
    manifest
        .links
        .push(serde_json::json!({"rel": "derived_from", "href": format!("../../runs/{run_id}/manifest.json")}));
    stats.record(&mut manifest);
    super::run::write_manifest(&work, &mut manifest)?;
    let dir = staging.commit()?;
    let failed = outcomes
        .iter()
        .filter(|o| o.status == TileStatus::Failed)
        .map(|o| (o.pair.clone(), o.reason.clone().unwrap_or_default()))
        .collect();
    Ok(RerunReport {
        dir,
        patches: stats.patches,
        failed,
    })
}

type Plan = (String, PairInputs, Vec<String>, Option<PathBuf>);

/// Everything a rerun reads, which its output folder must not hold: the archive, the published
/// runs it recomputes and tracks against, the model, the layers and the pipeline file.
fn inputs_read(
    p: &Pipeline,
    archive: &Archive,
    what: &RerunWhat,
    previous: &[String],
    model: Option<&Path>,
) -> Vec<PathBuf> {
    let runs_dir = p.output.join("runs");
    let mut read = vec![archive.root().to_path_buf(), p.file.clone()];
    if let RerunWhat::Run(id) = what {
        read.push(runs_dir.join(id));
    }
    read.extend(previous.iter().map(|id| runs_dir.join(id)));
    read.extend(model.map(Path::to_path_buf));
    let l = &p.layers;
    read.extend(
        [&l.landuse, &l.basic_farmland, &l.approved, &l.counties, &l.red_line]
            .into_iter()
            .flatten()
            .cloned(),
    );
    read
}

/// The pairs of a published run, by checksum.
fn from_run(p: &Pipeline, archive: &Archive, id: &str, model: Option<&Path>) -> Result<Plan> {
    let path = p.output.join("runs").join(id).join("manifest.json");
    if !path.is_file() {
        return Err(Error::input(&path, format!("no published run `{id}` in this pipeline")));
    }
    let m = Manifest::read(&path)?;
    let find =
        |sha: &Option<String>, date: &Option<String>, tile: &str| -> std::result::Result<CatalogueEntry, String> {
            let sha = sha.clone().ok_or("no input checksum recorded")?;
            if !archive.blob_path(&sha).is_file() {
                return Err(format!("sha256 {sha} is not in the archive"));
            }
            Ok(CatalogueEntry {
                tile: tile.into(),
                date: date.clone().unwrap_or_default(),
                sha256: sha,
                bytes: 0,
                source: "archive".into(),
                footprint: None,
            })
        };
    let mut inputs: PairInputs = Vec::new();
    for t in m.properties.tiles.iter().filter(|t| t.status != TileStatus::NoBaseline) {
        let before = find(&t.before_sha256, &t.before_date, &t.tile);
        let after = find(&t.after_sha256, &Some(t.after_date.clone()), &t.tile);
        let plan = PairPlan {
            before: tile_ref(
                &t.tile,
                t.before_date.as_deref().unwrap_or_default(),
                archive,
                &t.before_sha256,
            ),
            after: tile_ref(&t.tile, &t.after_date, archive, &t.after_sha256),
        };
        inputs.push((plan, before.and_then(|b| after.map(|a| (b, a)))));
    }
    let model = model.map(Path::to_path_buf).or(m.properties.model.path.clone());
    Ok((m.id, inputs, m.properties.previous_runs, model))
}

fn tile_ref(tile: &str, date: &str, archive: &Archive, sha: &Option<String>) -> TileRef {
    TileRef {
        tile: tile.into(),
        date: date.into(),
        location: Location::File(archive.blob_path(sha.as_deref().unwrap_or_default())),
        footprint: None,
        sha256: sha.clone(),
    }
}

/// All archive pairs whose after date is in `from..=to`, paired by the pipeline's baseline rule.
fn from_range(p: &Pipeline, archive: &Archive, from: &str, to: &str, model: Option<&Path>) -> Result<Plan> {
    for d in [from, to] {
        if !super::config::is_date(d) {
            return Err(Error::Usage(format!("`{d}` is not a YYYY-MM-DD date")));
        }
    }
    let listing = list_archive(archive.root())?;
    let pairs: Vec<PairPlan> = plan_pairs(&listing.tiles, &p.baseline, &BTreeSet::new())
        .pairs
        .into_iter()
        .filter(|x| x.after.date.as_str() >= from && x.after.date.as_str() <= to)
        .collect();
    if pairs.is_empty() {
        return Err(Error::Usage(format!(
            "the archive has no image pairs with an after date in {from}..{to}"
        )));
    }
    let entry = |t: &TileRef| {
        archive
            .lookup(&t.tile, &t.date)
            .ok_or_else(|| format!("{} not in archive", t.key()))
    };
    let inputs = pairs
        .iter()
        .map(|x| {
            (
                x.clone(),
                entry(&x.before).and_then(|b| entry(&x.after).map(|a| (b, a))),
            )
        })
        .collect();
    let id = format!("range-{}-{}", from.replace('-', ""), to.replace('-', ""));
    Ok((id, inputs, Vec::new(), model.map(Path::to_path_buf).or(p.model.clone())))
}

fn used(inputs: &PairInputs) -> Vec<CatalogueEntry> {
    let mut v: Vec<CatalogueEntry> = inputs
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flat_map(|(b, a)| [b.clone(), a.clone()])
        .collect();
    v.sort_by(|a, b| (&a.tile, &a.date).cmp(&(&b.tile, &b.date)));
    v.dedup_by(|a, b| a.tile == b.tile && a.date == b.date);
    v
}
