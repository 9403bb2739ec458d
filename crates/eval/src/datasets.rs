//! `landwatch eval datasets`: landwatch and the standardised CVA baseline over every labelled pair in
//! `../shared/datasets/`, aggregated per dataset.
//!
//! Each dataset folder holds `A/` (before), `B/` (after) and `label/` with matching names. What
//! the labels mean, the band order and the pixel size differ per dataset and are written in each
//! folder's README; [`PROFILES`] carries those facts. A folder without a profile is skipped and
//! reported, never guessed at.
//!
//! Detection runs with `keep_all` (crop-cycle and off-cropland patches kept), because the labels
//! mark physical change, not enforcement categories. Counts are summed over a dataset's pairs
//! before ratios are formed, so large pairs weigh more than small ones.

use super::baseline;
use super::inputs::{self, Label, LabelSpec};
use super::metrics::{self, Counts, Scores};
use landwatch_core::model::Model;
use landwatch_core::pair::{self, DetectRequest};
use landwatch_core::{Error, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The facts eval needs about one dataset, taken from its README.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub name: &'static str,
    /// Extension of the label files in `label/` (`png` or `tif`).
    pub label_ext: &'static str,
    pub change_values: &'static [f64],
    pub ignore_value: Option<f64>,
    /// `--bands` for detection; `None` = landwatch's default for the band count.
    pub bands: Option<&'static str>,
    /// Metres per pixel for images without georeferencing.
    pub pixel_size: Option<f64>,
    /// Minimum mapping unit; `None` = the model's own.
    pub min_area_m2: Option<f64>,
    pub note: &'static str,
}

/// Every dataset eval knows how to read.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "airchange",
        label_ext: "png",
        change_values: &[255.0],
        ignore_value: None,
        bands: Some("R,G,B"),
        pixel_size: Some(1.5),
        min_area_m2: None,
        note: "aerial RGB 1.5 m, Hungary; label includes fresh ploughing",
    },
    Profile {
        name: "dsifn-cd",
        label_ext: "png",
        change_values: &[255.0],
        ignore_value: None,
        bands: Some("R,G,B"),
        pixel_size: Some(2.0),
        min_area_m2: None,
        note: "Google Earth RGB ~2 m, Xi'an; farmland to buildings, blocky labels",
    },
    Profile {
        name: "levir-cd",
        label_ext: "png",
        change_values: &[255.0],
        ignore_value: None,
        bands: Some("R,G,B"),
        pixel_size: Some(0.5),
        min_area_m2: None,
        note: "Google Earth RGB 0.5 m, Texas; building change only",
    },
    Profile {
        name: "oscd",
        label_ext: "tif",
        change_values: &[1.0],
        ignore_value: None,
        bands: Some("B,G,R,NIR"),
        pixel_size: None,
        min_area_m2: None,
        note: "Sentinel-2 L1C 10 m, EPSG:4326; urban change only",
    },
    Profile {
        name: "landsat-taizhou-nanjing",
        label_ext: "tif",
        change_values: &[1.0],
        ignore_value: Some(255.0),
        bands: Some("B,G,R,NIR,_,_"),
        pixel_size: None,
        min_area_m2: None,
        note: "Landsat-5 TM 30 m, UTM 50N; sparse sample labels (255 = unlabelled, ignored)",
    },
];

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub root: PathBuf,
    /// Model file; `None` = the built-in model.
    pub model: Option<PathBuf>,
    /// Overrides every dataset's minimum mapping unit.
    pub min_area_m2: Option<f64>,
    /// Only these datasets (all when empty).
    pub only: Vec<String>,
    /// Keep each pair's detection output under this folder (else a temp folder is used).
    pub keep_runs: Option<PathBuf>,
    /// Also train and score the learned cascade under this cross-validation protocol.
    pub cv: Option<super::cv::Protocol>,
}

/// One pair's counts, landwatch and baseline, and what calibration found.
#[derive(Debug, Clone, Serialize)]
pub struct PairResult {
    pub pair: String,
    pub landwatch: Counts,
    pub baseline: Counts,
    pub landwatch_scores: Scores,
    pub baseline_scores: Scores,
    pub patches: usize,
    pub shift_px: [f64; 2],
    pub shift_peak: f64,
    pub threshold: f32,
    pub seconds: f64,
}

/// The settings a dataset ran with (for the report's footnotes).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub bands: Option<String>,
    pub pixel_size_m: Option<f64>,
    pub min_area_m2: f64,
    pub label_change_values: Vec<f64>,
    pub label_ignore_value: Option<f64>,
    pub note: String,
}

/// One dataset's results, summed over its pairs.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetResult {
    pub dataset: String,
    pub pairs: usize,
    pub landwatch: Counts,
    pub baseline: Counts,
    pub landwatch_scores: Scores,
    pub baseline_scores: Scores,
    pub settings: Settings,
    /// Pairs that could not be evaluated, with the reason.
    pub failures: Vec<String>,
    pub per_pair: Vec<PairResult>,
    pub seconds: f64,
    /// The learned cascade under `--cv` (see [`super::cv`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned: Option<super::cv::LearnedResult>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub landwatch_version: String,
    pub model: String,
    pub root: String,
    pub datasets: Vec<DatasetResult>,
    /// Folders under the root that were not evaluated, with the reason.
    pub skipped: Vec<String>,
    pub seconds: f64,
    /// The cross-validation protocol of the learned figures, when `--cv` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cv: Option<String>,
}

impl Report {
    pub fn has_failures(&self) -> bool {
        self.datasets.iter().any(|d| !d.failures.is_empty())
    }
}

/// Runs every dataset under `opts.root` that has a profile.
pub fn run(opts: &Options) -> Result<Report> {
    let started = Instant::now();
    if !opts.root.is_dir() {
        return Err(Error::input(
            &opts.root,
            "dataset root not found (expected folders like dsifn-cd/ with A/, B/, label/)",
        ));
    }
    check_only(opts)?;
    let model = Model::load_or_builtin(opts.model.as_ref())?;
    let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), "cannot create a temp folder", e))?;
    let runs_root = opts.keep_runs.clone().unwrap_or_else(|| scratch.path().join("runs"));
    let mut datasets = Vec::new();
    let mut skipped = Vec::new();
    for dir in sorted_subdirs(&opts.root)? {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !opts.only.is_empty() && !opts.only.contains(&name) {
            continue;
        }
        let Some(profile) = PROFILES.iter().find(|p| p.name == name) else {
            skipped.push(format!(
                "{name}: no eval profile (label meaning, bands and pixel size unknown)"
            ));
            continue;
        };
        let model_path = model_for(&model, opts, profile, scratch.path())?;
        let min_area = opts
            .min_area_m2
            .or(profile.min_area_m2)
            .unwrap_or(model.detect.min_area_m2);
        datasets.push(run_dataset(
            &dir,
            profile,
            &model_path,
            min_area,
            &runs_root.join(&name),
        )?);
    }
    let mut report = Report {
        landwatch_version: env!("CARGO_PKG_VERSION").into(),
        model: format!("{} ({})", model.id(), model.source),
        root: opts.root.display().to_string(),
        datasets,
        skipped,
        seconds: started.elapsed().as_secs_f64(),
        cv: None,
    };
    if let Some(protocol) = opts.cv {
        if model.learned.is_some() {
            return Err(Error::Usage(format!(
                "--cv trains its own learned models on top of a rules model; --model {} is a learned model: give a rules TOML file or no --model",
                model.source
            )));
        }
        super::cv::run(opts, protocol, &mut report, &model)?;
        report.seconds = started.elapsed().as_secs_f64();
    }
    Ok(report)
}

fn check_only(opts: &Options) -> Result<()> {
    for n in &opts.only {
        if !PROFILES.iter().any(|p| p.name == n) {
            let known: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
            return Err(Error::Usage(format!(
                "--dataset '{n}': unknown; expected one of {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn sorted_subdirs(root: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(root).map_err(|e| Error::io(root, "cannot list", e))?;
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !is_hidden(p))
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The model file to detect with: the given model, with the minimum mapping unit replaced when
/// an override applies (written as a derived model file, so `run.json` records what ran).
fn model_for(model: &Model, opts: &Options, profile: &Profile, scratch: &Path) -> Result<Option<PathBuf>> {
    let Some(min_area) = opts.min_area_m2.or(profile.min_area_m2) else {
        return Ok(opts.model.clone());
    };
    let mut derived = model.clone();
    derived.detect.min_area_m2 = min_area;
    let text = toml::to_string(&derived).map_err(|e| Error::Other(format!("cannot write a derived model: {e}")))?;
    let path = scratch.join(format!("model-{}.toml", profile.name));
    landwatch_core::io::atomic::write_file(&path, text.as_bytes())?;
    Ok(Some(path))
}

fn run_dataset(
    dir: &Path,
    profile: &Profile,
    model: &Option<PathBuf>,
    min_area: f64,
    runs: &Path,
) -> Result<DatasetResult> {
    let started = Instant::now();
    let mut per_pair = Vec::new();
    let mut failures = Vec::new();
    let pairs = pair_files(&dir.join("A"))?;
    let bar = landwatch_core::progress::bar(pairs.len() as u64, profile.name, true);
    for before in pairs {
        let stem = before
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        bar.set_message(stem.clone());
        match run_pair(dir, &before, &stem, profile, model, runs) {
            Ok(r) => {
                tracing::info!(dataset = profile.name, pair = %stem, f1 = ?r.landwatch_scores.f1, baseline_f1 = ?r.baseline_scores.f1, "pair evaluated");
                per_pair.push(r);
            }
            Err(e) => failures.push(format!("{stem}: {e}")),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (mut lw, mut bl) = (Counts::default(), Counts::default());
    for r in &per_pair {
        lw.add(&r.landwatch);
        bl.add(&r.baseline);
    }
    Ok(DatasetResult {
        dataset: profile.name.into(),
        pairs: per_pair.len(),
        landwatch: lw,
        baseline: bl,
        landwatch_scores: lw.scores(),
        baseline_scores: bl.scores(),
        settings: Settings {
            bands: profile.bands.map(str::to_string),
            pixel_size_m: profile.pixel_size,
            min_area_m2: min_area,
            label_change_values: profile.change_values.to_vec(),
            label_ignore_value: profile.ignore_value,
            note: profile.note.into(),
        },
        failures,
        per_pair,
        seconds: started.elapsed().as_secs_f64(),
        learned: None,
    })
}

/// Extensions of the image files taken as pairs; GDAL side-cars (`.aux.xml`, `.ovr`, world
/// files) are not pairs.
const IMAGE_EXTENSIONS: [&str; 7] = ["tif", "tiff", "png", "jpg", "jpeg", "jp2", "vrt"];

/// Image files in `A/`, sorted by name.
fn pair_files(a_dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(a_dir).map_err(|e| Error::io(a_dir, "cannot list the before images", e))?;
    let is_image = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !is_hidden(p) && is_image(p))
        .collect();
    files.sort();
    Ok(files)
}

pub(crate) fn run_pair(
    dir: &Path,
    before: &Path,
    stem: &str,
    profile: &Profile,
    model: &Option<PathBuf>,
    runs: &Path,
) -> Result<PairResult> {
    let started = Instant::now();
    let name = before.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let after = dir.join("B").join(&name);
    let label_path = dir.join("label").join(format!("{stem}.{}", profile.label_ext));
    let spec = LabelSpec {
        change_values: profile.change_values.to_vec(),
        ignore_value: profile.ignore_value,
    };
    let label = inputs::read_label(&label_path, &spec)?;
    let out_dir = runs.join(stem);
    let req = DetectRequest {
        model_path: model.clone(),
        bands: profile.bands.map(str::to_string),
        pixel_size: profile.pixel_size,
        keep_all: true,
        ..DetectRequest::new(before, &after, &out_dir)
    };
    let summary = pair::run(&req)?;
    let pred = inputs::read_prediction(&out_dir, &label)?;
    let landwatch = counts(&pred.ids, pred.patches, &label)?;
    let base_mask = baseline::standardised_cva(before, &after)?;
    let baseline = metrics::evaluate_mask(&base_mask, &label.truth).ok_or_else(|| shape_error(&label, &after))?;
    let s = &summary.calibration.shift;
    Ok(PairResult {
        pair: stem.into(),
        landwatch_scores: landwatch.scores(),
        baseline_scores: baseline.scores(),
        landwatch,
        baseline,
        patches: pred.patches,
        shift_px: [s.dx, s.dy],
        shift_peak: s.peak,
        threshold: summary.calibration.threshold,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn counts(ids: &ndarray::Array2<u32>, n: usize, label: &Label) -> Result<Counts> {
    metrics::evaluate(ids, n, &label.truth).ok_or_else(|| shape_error(label, &label.path))
}

fn shape_error(label: &Label, other: &Path) -> Error {
    Error::input(
        other,
        format!(
            "is not on the label grid of {} ({}x{})",
            label.path.display(),
            label.width(),
            label.height()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use landwatch_core::detect::scene::BandMap;

    #[test]
    fn every_profile_has_a_parseable_band_map_and_sane_values() {
        for p in PROFILES {
            if let Some(b) = p.bands {
                assert!(BandMap::parse(b).is_ok(), "{}: {b}", p.name);
            }
            assert!(!p.change_values.is_empty(), "{}", p.name);
            assert!(
                !p.ignore_value.is_some_and(|i| p.change_values.contains(&i)),
                "{}",
                p.name
            );
            assert!(p.label_ext == "png" || p.label_ext == "tif", "{}", p.name);
        }
    }

    #[test]
    fn derived_model_round_trips_with_the_new_minimum_area() {
        let model = Model::builtin().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            min_area_m2: Some(37.5),
            ..Default::default()
        };
        let path = model_for(&model, &opts, &PROFILES[0], dir.path()).unwrap().unwrap();
        let back = Model::load(&path).unwrap();
        assert_eq!(back.detect.min_area_m2, 37.5);
        assert_eq!(back.typing.rules.len(), model.typing.rules.len());
    }

    #[test]
    fn unknown_dataset_names_are_refused() {
        let opts = Options {
            only: vec!["nope".into()],
            ..Default::default()
        };
        assert_eq!(check_only(&opts).err().map(|e| e.exit_code()), Some(2));
    }
}
