//! The `landwatch` command line: one subcommand per user task, each composing library stages.

use clap::{Args, Parser, Subcommand};
use landwatch_core::pair::{self, DetectRequest};
use landwatch_core::Result;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "landwatch",
    version,
    about = "Farmland change detection from satellite imagery for 卫片执法"
)]
pub struct Cli {
    /// Log as JSON lines (default when stderr is not a terminal).
    #[arg(long, global = true)]
    pub log_json: bool,
    /// More log output (-v info is default; -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Detect change between a before and an after image.
    Detect(DetectArgs),
    /// Generate a deterministic synthetic before/after pair with ground truth.
    Synth(landwatch_synth::SynthArgs),
    /// Score predictions against labels; `eval datasets` runs every labelled dataset.
    Eval(landwatch_eval::EvalArgs),
    /// Train a learned change model (cascade) from labelled pairs; `train verdicts` trains a
    /// verdict model from a review database.
    Train(TrainCmd),
    /// Run a pipeline file: fetch new tiles, detect, publish (the nightly run).
    Run(landwatch_pipeline::RunArgs),
    /// Recompute a past run or a date range of the archive, without fetching.
    Rerun(landwatch_pipeline::RerunArgs),
    /// Combine shard outputs (`run --shard I/N`) into one run.
    Merge(landwatch_pipeline::MergeArgs),
    /// Promote or roll back the verdict model a pipeline file applies (recorded).
    Model {
        #[command(subcommand)]
        cmd: landwatch_pipeline::promote::ModelCmd,
    },
    /// The review app: serve, import runs, manage users, export verdicts.
    Review {
        #[command(subcommand)]
        cmd: landwatch_review::ReviewCmd,
    },
}

/// `landwatch train`: a learned change model, or with `verdicts` a verdict model.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TrainCmd {
    #[command(subcommand)]
    pub what: Option<TrainWhat>,
    #[command(flatten)]
    pub cascade: Option<landwatch_eval::train::cli::TrainArgs>,
}

/// Subcommands of `landwatch train`.
#[derive(Subcommand, Debug)]
pub enum TrainWhat {
    /// A verdict model from the decided patches of a review database (false alarms vs real change).
    Verdicts(landwatch_review::verdict_train::TrainVerdictsArgs),
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    /// Before (baseline) image: any GDAL raster.
    #[arg(long)]
    pub before: PathBuf,
    /// After (new) image; warped onto the before grid when they differ.
    #[arg(long)]
    pub after: PathBuf,
    /// Output folder (replaced atomically when the run completes).
    #[arg(long)]
    pub out: PathBuf,
    /// Band order of the inputs, e.g. B,G,R,NIR (default for 4+ bands) or R,G,B (default for 3).
    #[arg(long)]
    pub bands: Option<String>,
    /// Model file (default: the built-in models/rules-v1.toml).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Pixel size in metres, for images without georeferencing.
    #[arg(long)]
    pub pixel_size: Option<f64>,
    /// Land-use baseline (三调 parcels with a DLBM field).
    #[arg(long)]
    pub landuse: Option<PathBuf>,
    /// Permanent basic farmland polygons.
    #[arg(long)]
    pub basic_farmland: Option<PathBuf>,
    /// Approved construction land polygons.
    #[arg(long)]
    pub approved: Option<PathBuf>,
    /// County boundaries (code + name fields).
    #[arg(long)]
    pub counties: Option<PathBuf>,
    /// Ecological red line polygons.
    #[arg(long)]
    pub red_line: Option<PathBuf>,
    /// Acquisition date of the before image (YYYY-MM-DD).
    #[arg(long)]
    pub before_date: Option<String>,
    /// Acquisition date of the after image (YYYY-MM-DD).
    #[arg(long)]
    pub after_date: Option<String>,
    /// Keep crop-cycle changes and changes off cropland.
    #[arg(long)]
    pub keep_all: bool,
    /// Accept a land-use layer with no parcel over the image (refused otherwise: every patch
    /// would be dropped as off cropland).
    #[arg(long)]
    pub allow_empty_landuse: bool,
    /// County layer fields holding the code and the name, e.g. XZQDM,XZQMC (default: tries
    /// XZQDM/XZQMC, code/name, PAC/NAME_CN).
    #[arg(long, value_name = "CODE,NAME")]
    pub county_fields: Option<String>,
    /// Text encoding of the exported Shapefile (a .cpg names it).
    #[arg(long, value_enum, default_value = "gbk")]
    pub dbf_encoding: landwatch_core::publish::exports::DbfEncoding,
    /// Do not write before/after PNG chips.
    #[arg(long)]
    pub no_chips: bool,
    /// Memory the run may use, e.g. 8G or 512M (default: LANDWATCH_MEMORY_BUDGET, else three
    /// quarters of the machine's memory); a larger image is refused before it is read.
    #[arg(long, value_name = "SIZE", value_parser = landwatch_core::detect::budget::parse_size)]
    pub memory_budget: Option<u64>,
    /// What the images' stored values are: auto (the file's band scale, else by type: 8-bit ÷ 255,
    /// 16-bit reflectance × 10000, float reflectance), reflectance, dn (raw 10/12-bit digital
    /// numbers, ÷ full scale) or 8bit (a stretched product).
    #[arg(long, default_value = "auto", value_name = "auto|reflectance|dn|8bit")]
    pub radiometry: landwatch_core::io::radiometry::Radiometry,
    /// A verdict model (`landwatch train verdicts`): patches it judges likely false alarms are
    /// published with `suppressed: true` and the reason, not dropped.
    #[arg(long)]
    pub verdict_model: Option<PathBuf>,
}

impl DetectArgs {
    pub fn request(&self) -> DetectRequest {
        DetectRequest {
            before: self.before.clone(),
            after: self.after.clone(),
            out_dir: self.out.clone(),
            model_path: self.model.clone(),
            bands: self.bands.clone(),
            pixel_size: self.pixel_size,
            landuse: self.landuse.clone(),
            basic_farmland: self.basic_farmland.clone(),
            approved: self.approved.clone(),
            counties: self.counties.clone(),
            red_line: self.red_line.clone(),
            before_date: self.before_date.clone(),
            after_date: self.after_date.clone(),
            keep_all: self.keep_all,
            allow_empty_landuse: self.allow_empty_landuse,
            progress: true,
            county_fields: self.county_fields.clone(),
            dbf_encoding: self.dbf_encoding,
            no_chips: self.no_chips,
            memory_budget: self.memory_budget,
            radiometry: self.radiometry,
            verdict_model: self.verdict_model.clone(),
        }
    }
}

/// Runs a parsed command; returns the process exit code.
pub fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Detect(args) => detect_main(&args),
        Command::Synth(args) => landwatch_synth::cli_main(args),
        Command::Eval(landwatch_eval::EvalArgs {
            command: Some(landwatch_eval::EvalCommand::Verdicts(a)),
            ..
        }) => {
            landwatch_review::verdict_eval::cli_main(&a.db, &a.model, a.baseline.as_deref(), a.since.as_deref(), a.json)
        }
        Command::Eval(args) => landwatch_eval::cli_main(args),
        Command::Review { cmd } => landwatch_review::cli_main(cmd),
        Command::Model { cmd } => landwatch_pipeline::promote::cli_main(cmd),
        Command::Run(args) => landwatch_pipeline::run_main(args),
        Command::Rerun(args) => landwatch_pipeline::rerun_main(args),
        Command::Merge(args) => landwatch_pipeline::merge_main(args),
        Command::Train(TrainCmd {
            what: Some(TrainWhat::Verdicts(args)),
            ..
        }) => landwatch_review::verdict_train::cli_main(&args),
        Command::Train(TrainCmd {
            cascade: Some(args), ..
        }) => landwatch_eval::train::cli::cli_main(args),
        Command::Train(_) => Err(landwatch_core::Error::Usage(
            "train needs --data and --out (a learned change model) or the `verdicts` subcommand".into(),
        )),
    }
}

fn detect_main(args: &DetectArgs) -> Result<i32> {
    let s = pair::run(&args.request())?;
    let c = &s.calibration;
    println!(
        "landwatch detect: {} patches ({} crop-cycle/unrecognised changes dropped) -> {}",
        s.patches,
        s.dropped_unrecognised,
        s.patches_path.display()
    );
    println!(
        "  shift dx={:+.2} dy={:+.2} px (peak {:.2}); threshold {:.4}; normalisation gain {:?} offset {:?}",
        c.shift.dx, c.shift.dy, c.shift.peak, c.threshold, c.normalisation.gain, c.normalisation.offset
    );
    println!(
        "  {:.1} Mpx in {:.2} s ({:.1} Mpx/s); not observed (cloud/shadow/nodata): {:.0} m²",
        s.pixels.pixels as f64 / 1e6,
        s.seconds,
        s.megapixels_per_second,
        s.unobserved_area_m2
    );
    Ok(0)
}
