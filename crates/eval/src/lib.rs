//! Accuracy of change detection against labelled pairs: `landwatch eval`.
//!
//! Two commands:
//! * `landwatch eval --pred RUN_DIR|patches.geojson|MASK.tif --label LABEL` scores one
//!   prediction against one label raster, at pixel and patch level ([`metrics`]);
//! * `landwatch eval datasets` runs landwatch and a plain standardised CVA baseline ([`baseline`]) on
//!   every labelled pair under `../shared/datasets/` and prints the accuracy table that goes
//!   into the README ([`datasets`], [`report`]).
//!
//! The metrics are pure functions over counts; reading labels and putting predictions on the
//! label grid (GDAL rasterisation of the patch polygons) lives in [`inputs`].
#![warn(missing_docs)]

pub(crate) mod baseline;
pub(crate) mod cv;
pub(crate) mod datasets;
pub(crate) mod inputs;
pub(crate) mod metrics;
pub(crate) mod report;
pub mod train;

use clap::{Args, Subcommand};
use inputs::LabelSpec;
use landwatch_core::io::atomic;
use landwatch_core::{Error, Result};
use std::path::{Path, PathBuf};

/// `landwatch eval`: score one prediction, or every labelled dataset with `eval datasets`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    /// `eval datasets`; without it, one prediction is scored.
    pub command: Option<EvalCommand>,
    /// Prediction: a detect output folder, its patches.geojson, or a mask raster on the label
    /// grid (nonzero = change; for landwatch's change.tif, class 1).
    #[arg(long, required = true)]
    pub pred: Option<PathBuf>,
    /// Label raster (band 1).
    #[arg(long, required = true)]
    pub label: Option<PathBuf>,
    /// Label values that mean "changed" [default: 255,1 minus --ignore-value].
    #[arg(long)]
    pub label_change_values: Option<String>,
    /// Label value that means "not labelled": such pixels are not scored. The label band's
    /// nodata value is ignored too.
    #[arg(long)]
    pub ignore_value: Option<f64>,
    /// Print the counts and scores as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
/// Subcommands of `landwatch eval`.
pub enum EvalCommand {
    /// Run landwatch and the standardised CVA baseline on every labelled dataset; print the table.
    Datasets(DatasetsArgs),
    /// Replay a review database's verdicts through a verdict model (and a baseline): false
    /// alarms avoided and true changes lost, per county and change type.
    Verdicts(VerdictsArgs),
}

/// Arguments of `landwatch eval verdicts` (run by the review crate, which reads the database).
#[derive(Args, Debug)]
pub struct VerdictsArgs {
    /// The review database (opened read-only).
    #[arg(long)]
    pub db: PathBuf,
    /// The verdict model to evaluate.
    #[arg(long)]
    pub model: PathBuf,
    /// The verdict model in use now, to compare with.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Only verdicts on patches with an after-date on or after this date (YYYY-MM-DD), e.g.
    /// the period after the model's training data.
    #[arg(long)]
    pub since: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
/// Arguments of `landwatch eval datasets`.
pub struct DatasetsArgs {
    /// Folder holding the dataset folders (airchange/, dsifn-cd/, ...).
    #[arg(long, default_value = "../shared/datasets")]
    pub root: PathBuf,
    /// Write accuracy.md and accuracy.json here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the full report (per pair too) as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Model file to evaluate (default: the built-in model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Minimum mapping unit in m² for every dataset (default: the model's).
    #[arg(long)]
    pub min_area_m2: Option<f64>,
    /// Evaluate only this dataset (repeatable).
    #[arg(long = "dataset")]
    pub datasets: Vec<String>,
    /// Keep each pair's detection output under DIR/<dataset>/<pair>.
    #[arg(long)]
    pub keep_runs: Option<PathBuf>,
    /// Also train and score the learned cascade by cross-validation: `kfold[:K]` (by pair within
    /// each dataset, K = 5 by default) or `lodo` (leave one dataset out). No pair is scored by a
    /// model trained on it.
    #[arg(long, value_name = "PROTOCOL")]
    pub cv: Option<String>,
}

/// Runs `landwatch eval`; returns the exit code (1 when some pairs could not be evaluated).
pub fn cli_main(args: EvalArgs) -> Result<i32> {
    match args.command {
        Some(EvalCommand::Datasets(d)) => datasets_main(&d),
        // The binary runs it with the review crate (which reads review databases).
        Some(EvalCommand::Verdicts(_)) => Err(Error::Usage("eval verdicts runs through the landwatch binary".into())),
        None => pair_main(&args),
    }
}

/// The label spec from the flags: change values default to 255 and 1, less the ignore value.
pub fn label_spec(change_values: Option<&str>, ignore_value: Option<f64>) -> Result<LabelSpec> {
    let change_values = match change_values {
        Some(s) => inputs::parse_values(s, "--label-change-values")?,
        None => [255.0, 1.0].into_iter().filter(|v| Some(*v) != ignore_value).collect(),
    };
    Ok(LabelSpec {
        change_values,
        ignore_value,
    })
}

fn pair_main(args: &EvalArgs) -> Result<i32> {
    let (Some(pred_path), Some(label_path)) = (&args.pred, &args.label) else {
        return Err(Error::Usage(
            "eval needs --pred and --label (or the `datasets` subcommand)".into(),
        ));
    };
    landwatch_core::io::init_gdal();
    let spec = label_spec(args.label_change_values.as_deref(), args.ignore_value)?;
    let label = inputs::read_label(label_path, &spec)?;
    let pred = inputs::read_prediction(pred_path, &label)?;
    let counts = metrics::evaluate(&pred.ids, pred.patches, &label.truth)
        .ok_or_else(|| Error::input(pred_path, "is not on the label grid"))?;
    if args.json {
        let v = serde_json::json!({
            "pred": pred_path.display().to_string(),
            "label": label_path.display().to_string(),
            "label_change_values": spec.change_values,
            "ignore_value": spec.ignore_value,
            "counts": counts,
            "scores": counts.scores(),
        });
        println!("{}", to_json(&v)?);
    } else {
        print!(
            "{}",
            report::pair_text(
                &pred_path.display().to_string(),
                &label_path.display().to_string(),
                &counts
            )
        );
    }
    Ok(0)
}

fn datasets_main(args: &DatasetsArgs) -> Result<i32> {
    if let Some(m) = args.min_area_m2 {
        if !(m.is_finite() && m >= 0.0) {
            return Err(Error::Usage(format!(
                "--min-area-m2 {m}: expected a non-negative number"
            )));
        }
    }
    let opts = datasets::Options {
        root: args.root.clone(),
        model: args.model.clone(),
        min_area_m2: args.min_area_m2,
        only: args.datasets.clone(),
        keep_runs: args.keep_runs.clone(),
        cv: args.cv.as_deref().map(cv::Protocol::parse).transpose()?,
    };
    let rep = datasets::run(&opts)?;
    let md = report::markdown(&rep);
    let json = to_json(&rep)?;
    if let Some(out) = &args.out {
        write_outputs(out, &md, &json)?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{md}");
    }
    for d in &rep.datasets {
        for f in &d.failures {
            eprintln!("landwatch eval: {}: {f}", d.dataset);
        }
    }
    Ok(if rep.has_failures() { 1 } else { 0 })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| Error::Other(format!("cannot serialise the report: {e}")))
}

fn write_outputs(out: &Path, md: &str, json: &str) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, "cannot create the output folder", e))?;
    atomic::write_file(&out.join("accuracy.md"), md.as_bytes())?;
    atomic::write_file(&out.join("accuracy.json"), json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_change_values_leave_out_the_ignore_value() {
        assert_eq!(label_spec(None, None).unwrap().change_values, vec![255.0, 1.0]);
        assert_eq!(label_spec(None, Some(255.0)).unwrap().change_values, vec![1.0]);
        assert_eq!(label_spec(Some("2"), None).unwrap().change_values, vec![2.0]);
        assert!(label_spec(Some("x"), None).is_err());
    }
}
