//! `landwatch train`: a learned cascade model from labelled pairs.
//!
//! Training data folders are either dataset folders (`A/`, `B/`, `label/` with matching
//! names, like `../shared/datasets/*`) or georeferenced pairs (`before.tif`, `after.tif` and
//! `truth_labels.tif` as `landwatch synth` writes them, `label.tif`, or change polygons
//! `changes.gpkg|geojson|shp` — a province's enforcement history, or patches reviewers decided,
//! as `landwatch review export` writes them; see [`crate::inputs::read_polygon_label`]). The model file is
//! written to `--out`, its training manifest beside it (`<stem>.manifest.json`); both only
//! once training has succeeded.

use super::fit::{self, ModelMeta, Stage, TrainParams};
use super::manifest;
use super::samples::{self, PairSamples, PairSource};
use crate::datasets::PROFILES;
use crate::inputs::LabelSpec;
use landwatch_core::learn::features::{FeatureSpec, RADII};
use landwatch_core::model::Model;
use landwatch_core::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Train a learned change model (cascade of the rules evidence and boosted trees).
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Training data folder (repeatable): a dataset folder with A/, B/, label/, or a pair folder
    /// with before.tif, after.tif and truth_labels.tif (synth output), label.tif, or change
    /// polygons changes.gpkg / changes.geojson / changes.shp (every polygon is change unless its
    /// `change` field is 0, or its PDJG/NYQK verdict fields say 其他 · 实地未变化).
    #[arg(long = "data", required = true)]
    pub data: Vec<PathBuf>,
    /// The model file to write, e.g. models/cascade-synth-1.0.0.json (the manifest goes beside
    /// it as cascade-synth-1.0.0.manifest.json).
    #[arg(long)]
    pub out: PathBuf,
    /// The licence of the training data, as its source states it (recorded in the model and
    /// the manifest), e.g. "landwatch synthetic scenes, Apache-2.0".
    #[arg(long)]
    pub licence: String,
    /// Model name (default: the output file's stem without its version).
    #[arg(long)]
    pub name: Option<String>,
    /// Model version.
    #[arg(long, default_value = "1.0.0")]
    pub version: String,
    /// One line on what this model is and how its data was made (recorded in the model).
    #[arg(long)]
    pub changelog: Option<String>,
    /// Seed of the pixel sampling and the trees' row subsampling.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Boosting rounds.
    #[arg(long, default_value_t = 200)]
    pub rounds: usize,
    /// Tree depth, fixed (default: chosen among 3 and 4 by cross-validation inside the
    /// training pairs, with the radius and the edge features).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Largest radius (px) of the local statistics, fixed: 1, 3, 7, 15 or 31 (default: chosen
    /// among 15 and 31 by cross-validation inside the training pairs, with the depth).
    #[arg(long)]
    pub max_radius: Option<usize>,
    /// The candidate stage's evidence factor (share of the rules threshold), fixed (default:
    /// the largest of 0.5, 0.35, 0.25 whose candidates hold 95 % of the training pairs' change;
    /// lower factors find more change and take longer at detection).
    #[arg(long)]
    pub candidate_factor: Option<f32>,
    /// Candidate pixels sampled per class and pair.
    #[arg(long, default_value_t = 4000)]
    pub per_class: usize,
    /// Use NIR features (NDVI): every pair must have a NIR band.
    #[arg(long)]
    pub nir: bool,
    /// Leave out the gradient (edge) features: the features models had before them (default:
    /// used or not as cross-validation inside the training pairs chooses, with the depth and
    /// radius).
    #[arg(long, conflicts_with = "edges")]
    pub no_edges: bool,
    /// Always use the gradient (edge) features.
    #[arg(long)]
    pub edges: bool,
    /// Band order of dataset folders without an eval profile, e.g. R,G,B.
    #[arg(long)]
    pub bands: Option<String>,
    /// Pixel size in metres of images without georeferencing.
    #[arg(long)]
    pub pixel_size: Option<f64>,
    /// What the images' stored values are, as `detect --radiometry` (auto, reflectance, dn,
    /// 8bit); the model's features are standardised per image either way.
    #[arg(long, default_value = "auto", value_name = "auto|reflectance|dn|8bit")]
    pub radiometry: landwatch_core::io::radiometry::Radiometry,
    /// Label values meaning change in dataset folders without an eval profile [default: 255,1].
    #[arg(long)]
    pub label_change_values: Option<String>,
    /// The rules model for evidence, calibration and typing (default: the built-in one).
    #[arg(long)]
    pub rules_model: Option<PathBuf>,
    /// With change polygons: what the pixels outside every polygon are — no-change (the
    /// polygons map every change on the image) or ignore (only the polygons teach, e.g. patches
    /// exported from review, where what landwatch never flagged was never checked).
    #[arg(long, value_enum, default_value_t = crate::inputs::Outside::NoChange)]
    pub outside: crate::inputs::Outside,
    /// Also measure the model on pairs it has not seen: K-fold by pair over the training data
    /// (each fold's model trained on the other folds, every choice nested inside them), each
    /// held-out pair detected and scored against its label beside the rules model; the figures
    /// go into the manifest. K + 1 trainings.
    #[arg(long, value_name = "K")]
    pub cv: Option<usize>,
}

/// Runs `landwatch train`; returns the exit code.
pub fn cli_main(args: TrainArgs) -> Result<i32> {
    landwatch_core::io::init_gdal();
    let started = Instant::now();
    check_args(&args)?;
    let rules = Model::load_or_builtin(args.rules_model.as_ref())?;
    if rules.learned.is_some() {
        return Err(Error::Usage(format!(
            "--rules-model {}: is a learned model; give a rules TOML file",
            rules.source
        )));
    }
    let rules_text = match &args.rules_model {
        Some(p) => std::fs::read_to_string(p).map_err(|e| Error::io(p, "cannot read the rules model", e))?,
        None => landwatch_core::model::BUILTIN_MODEL.to_string(),
    };
    let mut sources = Vec::new();
    for d in &args.data {
        sources.extend(folder_pairs(d, &args)?);
    }
    if let Some(k) = args.cv {
        super::cv::check_folds(k, sources.len())?;
    }
    let spec = FeatureSpec::new(args.nir).with_edges(!args.no_edges);
    let mut params = TrainParams::new(spec, args.seed);
    params.boost.rounds = args.rounds;
    params.fix(args.depth, args.max_radius, args.edges.then_some(true));
    if let Some(f) = args.candidate_factor {
        params.candidate_factors = vec![f];
    }
    params.per_class = args.per_class;
    let rows = sample_all(&sources, &rules, &params)?;
    let meta = ModelMeta {
        name: args.name.clone().unwrap_or_else(|| default_name(&args.out)),
        version: args.version.clone(),
        changelog: args
            .changelog
            .clone()
            .unwrap_or_else(|| format!("trained by landwatch train on {} pairs", sources.len())),
        licence: args.licence.clone(),
        rules_model: rules_text,
    };
    let fits = params.grid.len() * fit::INNER_FOLDS + 1;
    let bar = landwatch_core::progress::bar((fits * args.rounds) as u64, "train", true);
    let source = args.data.first().cloned().unwrap_or_default();
    let (model, report) = fit::fit_cascade(&rows, &params, &meta, &source, &mut |stage, l| {
        bar.inc(1);
        let line = match (stage, l.valid) {
            (Stage::Threshold, Some(v)) => {
                format!(
                    "inner fold (choice and threshold), round {}: train log-loss {:.4}, held-out pairs log-loss {v:.4}",
                    l.round, l.train
                )
            }
            _ => format!("final model, round {}: train log-loss {:.4}", l.round, l.train),
        };
        bar.suspend(|| eprintln!("{line}"));
    })?;
    bar.finish_and_clear();
    // Before anything is written: a cross-validation that fails leaves no model behind.
    let cross_validation = args
        .cv
        .map(|k| super::cv::run(&sources, &rows, &params, &meta, k, args.rules_model.as_deref()))
        .transpose()?;
    let bytes = model.to_bytes()?;
    if let Some(dir) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create the model folder", e))?;
    }
    landwatch_core::io::atomic::write_file(&args.out, &bytes)?;
    let mut m = manifest::Manifest::new(&args, &sources, &rows, &params, &rules, &report, &bytes, started)?;
    m.cross_validation = cross_validation;
    let mpath = manifest::path_for(&args.out);
    landwatch_core::io::atomic::write_file(&mpath, &m.to_bytes()?)?;
    println!(
        "landwatch train: wrote {} ({} pairs, {} rows, probability threshold {:.2}, held-out estimate F1 {:.3}) and {}",
        args.out.display(),
        report.pairs,
        report.rows,
        report.probability_threshold,
        report.threshold_pairs_f1,
        mpath.display()
    );
    if let Some(cv) = &m.cross_validation {
        let num = crate::report::ratio;
        println!(
            "  {}-fold cross-validation over {} pairs, pooled pixel F1: learned {} (P {}, R {}), rules {}",
            cv.folds,
            cv.per_pair.len(),
            num(cv.learned.f1),
            num(cv.learned.precision),
            num(cv.learned.recall),
            num(cv.rules.f1)
        );
    }
    Ok(0)
}

fn check_args(args: &TrainArgs) -> Result<()> {
    if args.rounds == 0 || args.rounds > 5000 {
        return Err(Error::Usage(format!("--rounds {}: expected 1 to 5000", args.rounds)));
    }
    if let Some(d) = args.depth.filter(|&d| d == 0 || d > 12) {
        return Err(Error::Usage(format!("--depth {d}: expected 1 to 12")));
    }
    if let Some(r) = args.max_radius.filter(|r| !RADII.contains(r)) {
        return Err(Error::Usage(format!("--max-radius {r}: expected one of {RADII:?}")));
    }
    if let Some(f) = args.candidate_factor.filter(|f| !(*f > 0.0 && *f <= 10.0)) {
        return Err(Error::Usage(format!(
            "--candidate-factor {f}: expected a number in (0, 10]"
        )));
    }
    if args.per_class == 0 {
        return Err(Error::Usage("--per-class must be at least 1".into()));
    }
    if args.licence.trim().is_empty() {
        return Err(Error::Usage(
            "--licence: state the training data's licence as its source gives it".into(),
        ));
    }
    if args.out.extension().is_none_or(|e| e != "json") {
        return Err(Error::Usage(format!(
            "--out {}: a learned model file ends in .json (e.g. models/cascade-synth-1.0.0.json)",
            args.out.display()
        )));
    }
    Ok(())
}

/// `cascade-synth-1.0.0.json` → `cascade-synth`.
fn default_name(out: &Path) -> String {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, v)) if v.chars().next().is_some_and(|c| c.is_ascii_digit()) => name.to_string(),
        _ => stem,
    }
}

/// The labelled pairs of one training data folder.
fn folder_pairs(dir: &Path, args: &TrainArgs) -> Result<Vec<PairSource>> {
    if !dir.is_dir() {
        return Err(Error::input(dir, "training data folder not found"));
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if dir.join("A").is_dir() {
        let profile = PROFILES.iter().find(|p| p.name == name);
        let spec = match (&args.label_change_values, profile) {
            (Some(v), _) => LabelSpec {
                change_values: crate::inputs::parse_values(v, "--label-change-values")?,
                ignore_value: None,
            },
            (None, Some(p)) => LabelSpec {
                change_values: p.change_values.to_vec(),
                ignore_value: p.ignore_value,
            },
            (None, None) => LabelSpec {
                change_values: vec![255.0, 1.0],
                ignore_value: None,
            },
        };
        let bands = args.bands.as_deref().or(profile.and_then(|p| p.bands));
        let px = args.pixel_size.or(profile.and_then(|p| p.pixel_size));
        let exts: &[&str] = match profile {
            Some(p) => &[p.label_ext],
            None => &["png", "tif"],
        };
        let mut pairs = samples::dataset_pairs(dir, &spec, exts, bands, px)?;
        for p in &mut pairs {
            p.radiometry = args.radiometry;
            p.name = format!("{name}/{}", p.name);
        }
        return Ok(pairs);
    }
    let (before, after) = (dir.join("before.tif"), dir.join("after.tif"));
    let label = ["truth_labels.tif", "label.tif"]
        .iter()
        .chain(crate::inputs::CHANGE_POLYGON_FILES.iter())
        .map(|l| dir.join(l))
        .find(|p| p.is_file());
    match label {
        Some(label) if before.is_file() && after.is_file() => {
            let synth = label.ends_with("truth_labels.tif");
            Ok(vec![PairSource {
                name,
                before,
                after,
                label,
                // Synth truth: 1–5 change of use by type, 9 change off cropland: all change.
                spec: LabelSpec {
                    change_values: if synth {
                        vec![1.0, 2.0, 3.0, 4.0, 5.0, 9.0]
                    } else {
                        vec![255.0, 1.0]
                    },
                    ignore_value: None,
                },
                bands: args.bands.clone(),
                pixel_size: args.pixel_size,
                radiometry: args.radiometry,
                outside: args.outside,
            }])
        }
        _ => Err(Error::input(
            dir,
            "is not training data: expected A/, B/, label/ (a dataset folder) or before.tif, after.tif and \
             truth_labels.tif, label.tif or changes.gpkg/.geojson/.shp (a georeferenced pair)",
        )),
    }
}

fn sample_all(sources: &[PairSource], rules: &Model, p: &TrainParams) -> Result<Vec<PairSamples>> {
    let bar = landwatch_core::progress::bar(sources.len() as u64, "samples", true);
    let mut out = Vec::new();
    for src in sources {
        bar.set_message(src.name.clone());
        out.push(samples::pair_samples(
            src,
            rules,
            p.features,
            &p.candidates,
            &p.candidate_factors,
            p.per_class,
            p.seed,
        )?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}
