//! The training manifest written beside a learned model: its inputs with their SHA-256, every
//! parameter and the seed, the rules model it builds on, the rows each pair gave, the held-out
//! validation figures, the data licence as stated, and the time it took.

use super::cli::TrainArgs;
use super::fit::{TrainParams, TrainReport};
use super::samples::{PairSamples, PairSource};
use landwatch_core::io::hash::{sha256_file, sha256_hex};
use landwatch_core::io::radiometry::Radiometry;
use landwatch_core::model::Model;
use landwatch_core::{Error, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct Manifest {
    pub landwatch_version: String,
    pub model: ModelEntry,
    pub training_data_licence: String,
    pub inputs: Vec<InputPair>,
    pub parameters: TrainParams,
    pub rules_model: RulesEntry,
    pub samples: Vec<PairRows>,
    pub validation: TrainReport,
    /// `train --cv K`: the K-fold figures on the training pairs (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<super::cv::CrossValidation>,
    pub trained_at_utc: String,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct ModelEntry {
    pub path: String,
    pub sha256: String,
    pub name: String,
    pub version: String,
}

#[derive(Debug, Serialize)]
pub struct RulesEntry {
    pub id: String,
    pub source: String,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct InputPair {
    pub name: String,
    pub before: FileEntry,
    pub after: FileEntry,
    pub label: FileEntry,
    /// A label raster's values meaning change (absent for change polygons).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_change_values: Option<Vec<f64>>,
    /// Change polygons: what the pixels outside them were taken to be (absent for a raster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_polygons_outside: Option<crate::inputs::Outside>,
    pub bands: Option<String>,
    pub pixel_size_m: Option<f64>,
    pub radiometry: Radiometry,
}

#[derive(Debug, Serialize)]
pub struct PairRows {
    pub pair: String,
    pub rows: usize,
    pub positive_rows: usize,
    pub labelled_change_px: f64,
    pub labelled_change_in_candidates_px: f64,
}

/// Whether the pair's label is change polygons.
fn polygons(s: &PairSource) -> bool {
    crate::inputs::is_polygon_label(&s.label)
}

impl Manifest {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        args: &TrainArgs,
        sources: &[PairSource],
        rows: &[PairSamples],
        params: &TrainParams,
        rules: &Model,
        report: &TrainReport,
        model_bytes: &[u8],
        started: Instant,
    ) -> Result<Self> {
        let inputs = sources
            .iter()
            .map(|s| {
                Ok(InputPair {
                    name: s.name.clone(),
                    before: file_entry(&s.before)?,
                    after: file_entry(&s.after)?,
                    label: file_entry(&s.label)?,
                    label_change_values: (!polygons(s)).then(|| s.spec.change_values.clone()),
                    label_polygons_outside: polygons(s).then_some(s.outside),
                    bands: s.bands.clone(),
                    pixel_size_m: s.pixel_size,
                    radiometry: s.radiometry,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            landwatch_version: env!("CARGO_PKG_VERSION").into(),
            model: ModelEntry {
                path: args.out.display().to_string(),
                sha256: sha256_hex(model_bytes),
                name: args.name.clone().unwrap_or_default(),
                version: args.version.clone(),
            },
            training_data_licence: args.licence.clone(),
            inputs,
            parameters: params.clone(),
            rules_model: RulesEntry {
                id: rules.id(),
                source: rules.source.clone(),
                sha256: rules.sha256.clone(),
            },
            samples: rows
                .iter()
                .map(|r| PairRows {
                    pair: r.name.clone(),
                    rows: r.rows(),
                    positive_rows: r.y.iter().filter(|&&y| y > 0.5).count(),
                    labelled_change_px: r.positives,
                    labelled_change_in_candidates_px: r.positives_in_candidates,
                })
                .collect(),
            validation: report.clone(),
            cross_validation: None,
            trained_at_utc: chrono::Utc::now().to_rfc3339(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Other(format!("cannot serialise the training manifest: {e}")))
    }
}

fn file_entry(p: &Path) -> Result<FileEntry> {
    Ok(FileEntry {
        path: p.display().to_string(),
        sha256: sha256_file(p)?,
    })
}

/// `models/x-1.0.0.json` → `models/x-1.0.0.manifest.json`.
pub fn path_for(model: &Path) -> PathBuf {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    model.with_file_name(format!("{stem}.manifest.json"))
}
