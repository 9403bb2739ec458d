//! The provenance record of a run: `RUN_DIR/manifest.json`, a STAC Item.
//!
//! It says exactly what a run did, so that a result can be trusted, audited and recomputed: every
//! input tile with its SHA-256 and origin, the model file's hash, the pipeline file's hash, the
//! parameters, the software version, timings, and the outcome of every tile. `landwatch rerun`
//! reads it back to recompute a run from the archive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::archive::CatalogueEntry;
use super::config::{DetectParams, Pipeline};
use landwatch_core::io::atomic::write_file;
use landwatch_core::io::hash::sha256_file;
use landwatch_core::{Error, Result};

/// What happened to one before/after pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TileStatus {
    Done,
    Failed,
    /// No earlier image of the tile to compare with (not an error).
    NoBaseline,
}

/// One pair's outcome, named by its checkpoint folder (`tiles/<pair>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TileOutcome {
    pub pair: String,
    pub tile: String,
    pub before_date: Option<String>,
    pub after_date: String,
    pub before_sha256: Option<String>,
    pub after_sha256: Option<String>,
    pub status: TileStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What kind of failure it was (not recorded): decides the exit code of a run in which every
    /// pair failed.
    #[serde(skip)]
    pub failure: Option<FailureKind>,
}

/// Where a pair failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// An image could not be fetched (source unreachable, bad checksum, not a raster).
    Fetch,
    /// The inputs do not fit the configuration (e.g. a band number the image lacks).
    Input,
    /// The detector failed on the pair.
    Detect,
}

/// A file a run depended on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRef {
    pub path: Option<PathBuf>,
    pub sha256: Option<String>,
}

impl FileRef {
    pub fn of(path: Option<&Path>) -> Result<FileRef> {
        Ok(FileRef {
            path: path.map(Path::to_path_buf),
            sha256: path.map(sha256_file).transpose()?,
        })
    }
}

/// The model a run used: its file (None = the engine's built-in model), `name@version` and the
/// SHA-256 of its text, so a result names exactly which rules made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    pub path: Option<PathBuf>,
    pub id: String,
    pub sha256: String,
}

impl ModelRef {
    /// Loads the model (as the engine will) to record its identity; a bad model file is exit 2.
    pub fn of(path: Option<&Path>) -> Result<ModelRef> {
        let owned = path.map(Path::to_path_buf);
        let m = landwatch_core::model::Model::load_or_builtin(owned.as_ref())?;
        Ok(ModelRef {
            path: owned,
            id: m.id(),
            sha256: m.sha256.clone(),
        })
    }
}

/// The manifest's `properties`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunProperties {
    pub datetime: String,
    pub created: String,
    #[serde(rename = "landwatch:version")]
    pub version: String,
    pub pipeline: PipelineRef,
    pub model: ModelRef,
    pub layers: BTreeMap<String, FileRef>,
    pub params: serde_json::Value,
    /// Runs whose patches were used to recognise changes seen before.
    pub previous_runs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub tiles: Vec<TileOutcome>,
    /// Source entries that could not be listed: (name, reason).
    pub listing_problems: Vec<(String, String)>,
    pub inputs: Vec<CatalogueEntry>,
    pub counts: BTreeMap<String, usize>,
    pub timings_s: BTreeMap<String, f64>,
}

impl RunProperties {
    /// The run-level detection parameters the run used.
    pub fn detect_params(&self) -> Result<DetectParams> {
        serde_json::from_value(self.params.get("detect").cloned().unwrap_or_default())
            .map_err(|e| Error::Other(format!("manifest params.detect: {e}")))
    }
}

/// The pipeline file a run came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineRef {
    pub name: String,
    pub file: PathBuf,
    pub sha256: String,
    /// The pipeline's output root (where `runs/` lives), absolute.
    pub output: PathBuf,
}

impl PipelineRef {
    pub fn of(p: &Pipeline) -> PipelineRef {
        PipelineRef {
            name: p.name.clone(),
            file: std::path::absolute(&p.file).unwrap_or_else(|_| p.file.clone()),
            sha256: p.file_sha256.clone(),
            output: std::path::absolute(&p.output).unwrap_or_else(|_| p.output.clone()),
        }
    }
}

/// `manifest.json`: a STAC Item describing one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "type")]
    pub kind: String,
    pub stac_version: String,
    pub id: String,
    pub bbox: Option<[f64; 4]>,
    pub geometry: Option<serde_json::Value>,
    pub properties: RunProperties,
    pub assets: BTreeMap<String, serde_json::Value>,
    pub links: Vec<serde_json::Value>,
}

impl Manifest {
    pub fn new(id: &str, properties: RunProperties, bbox: Option<[f64; 4]>) -> Manifest {
        let geometry = bbox.map(|[w, s, e, n]| {
            serde_json::json!({"type": "Polygon",
                "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]})
        });
        Manifest {
            kind: "Feature".into(),
            stac_version: "1.0.0".into(),
            id: id.to_string(),
            bbox,
            geometry,
            properties,
            assets: BTreeMap::new(),
            links: Vec::new(),
        }
    }

    /// Adds an asset with its checksum (a file inside the run folder).
    pub fn add_asset(&mut self, key: &str, run_dir: &Path, rel: &str, media: &str) -> Result<()> {
        let sha = sha256_file(&run_dir.join(rel))?;
        self.assets.insert(
            key.into(),
            serde_json::json!({"href": rel, "type": media, "file:checksum": format!("1220{sha}")}),
        );
        Ok(())
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut bytes =
            serde_json::to_vec_pretty(self).map_err(|e| Error::Other(format!("serialising manifest: {e}")))?;
        bytes.push(b'\n');
        write_file(path, &bytes)
    }

    pub fn read(path: &Path) -> Result<Manifest> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, "reading manifest", e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::input(path, format!("not a landwatch manifest: {e}")))
    }
}

/// STAC `datetime` of a run: its latest acquisition (after) date.
pub fn acquisition_datetime(outcomes: &[TileOutcome]) -> Option<String> {
    outcomes
        .iter()
        .map(|o| o.after_date.as_str())
        .max()
        .map(|d| format!("{d}T00:00:00Z"))
}

/// The layers a pipeline hands to the engine, with their hashes.
pub fn layer_refs(p: &Pipeline) -> Result<BTreeMap<String, FileRef>> {
    let l = &p.layers;
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("landuse", &l.landuse),
        ("basic_farmland", &l.basic_farmland),
        ("approved", &l.approved),
        ("counties", &l.counties),
        ("red_line", &l.red_line),
    ] {
        if v.is_some() {
            m.insert(k.to_string(), FileRef::of(v.as_deref())?);
        }
    }
    Ok(m)
}

/// Parameters that decide the result (recorded so a rerun can say what it changed).
pub fn params(p: &Pipeline) -> serde_json::Value {
    serde_json::json!({
        "detect": p.detect,
        "bands": p.bands,
        "baseline": p.baseline,
    })
}
