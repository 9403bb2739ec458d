//! Pipeline files (`pipelines/*.toml`): what a nightly or archive run works on.
//!
//! A pipeline file is parsed with `deny_unknown_fields` everywhere, so a typo is an error rather
//! than a silently ignored setting. Every error names the file, the dotted key and the line, because
//! these files are edited by operators who read the message in a cron mail, not in an IDE.
//!
//! Relative paths are resolved against the folder holding the pipeline file, so a run started by
//! systemd or cron from any working directory sees the same files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use landwatch_core::io::radiometry::Radiometry;
use landwatch_core::io::toml_location::{self, line_col};
use landwatch_core::{Error, Result};

/// A parsed and checked pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The pipeline file itself (as given).
    pub file: PathBuf,
    /// SHA-256 of the pipeline file's bytes, recorded in every manifest.
    pub file_sha256: String,
    /// Pipeline name (`name`), used in run ids.
    pub name: String,
    /// Root of everything the pipeline writes: `runs/`, `work/`, `shards/`, `reruns/`, `state/`.
    pub output: PathBuf,
    /// Content-addressed tile archive (default `<output>/archive`).
    pub archive: PathBuf,
    /// Area of interest (`aoi.bbox`): west, south, east, north; images outside it are left out.
    pub aoi_bbox: Option<[f64; 4]>,
    /// Where tiles come from (`[source]`).
    pub source: Source,
    /// Band numbers of the source tiles (`[bands]`).
    pub bands: Bands,
    /// What each image is compared with (`[baseline]`).
    pub baseline: Baseline,
    /// Model file (`model`); `None`: the built-in one.
    pub model: Option<PathBuf>,
    /// Verdict model (`model.verdict`): patches it judges likely false alarms are published
    /// with `suppressed: true`; `None`: no verdict model.
    pub verdict_model: Option<PathBuf>,
    /// Vector layers for the overlay (`[layers]`).
    pub layers: Layers,
    /// Run-level detection parameters (`[detect]`).
    pub detect: DetectParams,
    /// Download behaviour (`[fetch]`).
    pub fetch: FetchParams,
    /// Line of each key written in the file (`aoi.bbox`, `bands.nir`, `baseline.date` …), so a
    /// problem found only after listing the source still points at the line to edit.
    pub lines: BTreeMap<String, usize>,
}

impl Pipeline {
    /// A configuration error (exit 2) about `key` of this pipeline file, with its line if written.
    pub fn config_error(&self, key: &str, msg: impl std::fmt::Display) -> Error {
        match self.lines.get(key) {
            Some(line) => Error::config(&self.file, key, format!("line {line}: {msg}")),
            None => Error::config(&self.file, key, msg.to_string()),
        }
    }
}

/// Largest sane values of the pipeline file's numbers (stated in the error messages).
pub mod limits {
    /// Most downloads at once (`fetch.concurrency`).
    pub const CONCURRENCY: usize = 64;
    /// Most retries of one download (`fetch.retries`).
    pub const RETRIES: u32 = 20;
    /// Also the cap of one exponential backoff step and of its jitter.
    pub const BACKOFF_MS: u64 = 60_000;
    /// Longest timeout of one download, seconds (`fetch.timeout_s`).
    pub const TIMEOUT_S: f64 = 3600.0;
    /// Largest minimum mapping unit, m² (`detect.min_area_m2`).
    pub const MIN_AREA_M2: f64 = 1_000_000.0;
    /// Largest seam tolerance, m (`detect.seam_tolerance_m`).
    pub const SEAM_TOLERANCE_M: f64 = 1000.0;
    /// Largest band number (`[bands]`).
    pub const BAND: u32 = 1000;
    /// Most STAC items listed (`source.limit`).
    pub const STAC_LIMIT: usize = 10_000;
}

/// Where tiles come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A local folder; tiles listed explicitly, by an `index.json` in the folder, or by file
    /// names `<tile>_<YYYY-MM-DD>.tif`.
    Local {
        /// The folder.
        path: PathBuf,
        /// Tiles listed in the pipeline file (empty: found in the folder).
        tiles: Vec<LocalTile>,
    },
    /// An HTTP JSON tile index (a list of `{id, date, url, footprint, sha256?}`).
    HttpIndex {
        /// URL of the index.
        url: String,
    },
    /// A STAC API; items are searched with `POST {url}/search`.
    Stac {
        /// The STAC API's root URL.
        url: String,
        /// Collections searched.
        collections: Vec<String>,
        /// Asset key of the image in each item.
        asset: String,
        /// Datetime filter of the search (`datetime`), if any.
        datetime: Option<String>,
        /// Item property that holds the tile id.
        tile_property: String,
        /// Most items listed.
        limit: usize,
    },
    /// An existing landwatch archive (its catalogue); nothing is fetched.
    Archive {
        /// The archive's root folder.
        path: PathBuf,
    },
}

/// One explicitly listed local tile.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalTile {
    /// The image file.
    pub file: PathBuf,
    /// Tile id.
    pub tile: String,
    /// Acquisition date (`YYYY-MM-DD`).
    pub date: String,
}

/// 1-based band numbers of blue, green, red and near-infrared in the source tiles, and what
/// their stored values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bands {
    /// Band number of blue.
    pub blue: u32,
    /// Band number of green.
    pub green: u32,
    /// Band number of red.
    pub red: u32,
    /// Band number of near-infrared.
    pub nir: u32,
    /// What the stored values are (DN, reflectance, 8-bit stretched): `detect --radiometry`.
    #[serde(default)]
    pub radiometry: Radiometry,
}

impl Default for Bands {
    fn default() -> Self {
        Bands {
            blue: 1,
            green: 2,
            red: 3,
            nir: 4,
            radiometry: Radiometry::Auto,
        }
    }
}

impl Bands {
    /// True when the tiles are already in landwatch's B,G,R,NIR order.
    pub fn is_identity(&self) -> bool {
        let d = Bands::default();
        [self.blue, self.green, self.red, self.nir] == [d.blue, d.green, d.red, d.nir]
    }

    /// The engine's `--bands` form: one name per source band, `_` for bands not used
    /// (blue = 3, green = 2, red = 1, nir = 5 → `R,G,B,_,NIR`).
    pub fn engine_order(&self) -> String {
        let named = [(self.blue, "B"), (self.green, "G"), (self.red, "R"), (self.nir, "NIR")];
        let n = named.iter().map(|(b, _)| *b).max().unwrap_or(0);
        (1..=n)
            .map(|i| named.iter().find(|(b, _)| *b == i).map_or("_", |(_, name)| *name))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// How an image is paired with the one it is compared to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Baseline {
    /// The latest image of the same tile on or before this date; later images are "after" images.
    Date(String),
    /// Each image is compared with the previous image of the same tile.
    Previous,
}

/// Optional vector layers handed to the detection engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Layers {
    /// Land-use baseline (三调 parcels with a DLBM field).
    pub landuse: Option<PathBuf>,
    /// Permanent basic farmland polygons.
    pub basic_farmland: Option<PathBuf>,
    /// Approved construction land polygons.
    pub approved: Option<PathBuf>,
    /// County boundaries.
    pub counties: Option<PathBuf>,
    /// Ecological red line (生态保护红线).
    pub red_line: Option<PathBuf>,
    /// Accept a land-use layer with no parcel over a tile (sea, a border): the engine refuses
    /// one otherwise, as a wrong file or extent, and the pair fails.
    pub allow_empty_landuse: bool,
}

/// Run-level detection parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectParams {
    /// Patches smaller than this (m²) are dropped from the published run (minimum mapping unit).
    pub min_area_m2: f64,
    /// Patches from different tiles closer than this (m) are one patch split by a tile seam. The
    /// engine loses about a pixel at each tile border, so this must exceed two pixels (default 8).
    pub seam_tolerance_m: f64,
    /// Share of the smaller patch that must overlap an earlier patch to be "the same change".
    pub track_overlap: f64,
}

/// Download behaviour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FetchParams {
    /// Downloads at once.
    pub concurrency: usize,
    /// Retries of a failed download.
    pub retries: u32,
    /// Base backoff between retries, ms (grows exponentially, with jitter).
    pub backoff_ms: u64,
    /// Timeout of one download, seconds.
    pub timeout_s: f64,
}

impl Default for FetchParams {
    fn default() -> Self {
        FetchParams {
            concurrency: 4,
            retries: 4,
            backoff_ms: 500,
            timeout_s: 60.0,
        }
    }
}

// ---- raw serde types (spans kept for error messages) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
    output: Spanned<PathBuf>,
    archive: Option<Spanned<PathBuf>>,
    aoi: Option<RawAoi>,
    source: Spanned<RawSource>,
    bands: Option<RawBands>,
    baseline: Option<RawBaseline>,
    model: Option<RawModel>,
    layers: Option<RawLayers>,
    detect: Option<RawDetect>,
    fetch: Option<RawFetch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAoi {
    bbox: Spanned<[f64; 4]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBands {
    blue: Option<Spanned<u32>>,
    green: Option<Spanned<u32>>,
    red: Option<Spanned<u32>>,
    nir: Option<Spanned<u32>>,
    radiometry: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum SourceKind {
    Local,
    HttpIndex,
    Stac,
    Archive,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: SourceKind,
    path: Option<Spanned<PathBuf>>,
    url: Option<Spanned<String>>,
    tiles: Option<Vec<Spanned<LocalTile>>>,
    collections: Option<Vec<String>>,
    asset: Option<String>,
    datetime: Option<String>,
    tile_property: Option<String>,
    limit: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBaseline {
    date: Option<Spanned<String>>,
    previous: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    path: Option<Spanned<PathBuf>>,
    verdict: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayers {
    landuse: Option<Spanned<PathBuf>>,
    basic_farmland: Option<Spanned<PathBuf>>,
    approved: Option<Spanned<PathBuf>>,
    counties: Option<Spanned<PathBuf>>,
    red_line: Option<Spanned<PathBuf>>,
    allow_empty_landuse: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetect {
    min_area_m2: Option<Spanned<f64>>,
    seam_tolerance_m: Option<Spanned<f64>>,
    track_overlap: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFetch {
    concurrency: Option<Spanned<usize>>,
    retries: Option<Spanned<u32>>,
    backoff_ms: Option<Spanned<u64>>,
    timeout_s: Option<Spanned<f64>>,
}

/// Reads, parses and checks a pipeline file.
pub fn load(file: &Path) -> Result<Pipeline> {
    let bytes = std::fs::read(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::input(file, "pipeline file not found"),
        _ => Error::io(file, "reading the pipeline file", e),
    })?;
    let text =
        String::from_utf8(bytes.clone()).map_err(|_| Error::input(file, "the pipeline file is not UTF-8 text"))?;
    let raw: RawPipeline =
        toml::from_str(&text).map_err(|e| toml_location::parse_error(file, &text, e.message(), e.span()))?;
    let ctx = Ctx {
        file,
        text: &text,
        base: file.parent().unwrap_or(Path::new(".")).to_path_buf(),
        lines: Default::default(),
    };
    build(&ctx, raw, landwatch_core::io::hash::sha256_hex(&bytes))
}

/// What the checks need to resolve paths and point at lines.
struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    base: PathBuf,
    /// Lines of the keys seen so far (see [`Pipeline::lines`]).
    lines: std::cell::RefCell<BTreeMap<String, usize>>,
}

use toml_location::Span;

impl Ctx<'_> {
    fn err(&self, key: &str, span: Option<Span>, msg: &str) -> Error {
        toml_location::error_at(self.file, self.text, key, span.as_ref(), msg)
    }

    /// Remembers where `key` is written, for errors found after loading.
    fn note(&self, key: &str, span: &Span) {
        let (line, _) = line_col(self.text, span.start);
        self.lines.borrow_mut().insert(key.to_string(), line);
    }

    /// Absolute, with `.` and `..` removed, so manifests and messages show plain paths.
    fn resolve(&self, p: &Path) -> PathBuf {
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        };
        let abs = std::path::absolute(&joined).unwrap_or(joined);
        let mut out = PathBuf::new();
        for c in abs.components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    out.pop();
                }
                other => out.push(other),
            }
        }
        out
    }

    /// Resolves a path that must exist when the run starts.
    fn existing(&self, key: &str, p: &Spanned<PathBuf>) -> Result<PathBuf> {
        self.note(key, &p.span());
        let resolved = self.resolve(p.get_ref());
        if resolved.exists() {
            Ok(resolved)
        } else {
            Err(self.err(
                key,
                Some(p.span()),
                &format!("path does not exist: {}", resolved.display()),
            ))
        }
    }

    /// A number that must satisfy `ok`; `expected` says which values are (NaN never is).
    fn number<T: Copy>(&self, key: &str, v: &Spanned<T>, ok: impl Fn(T) -> bool, expected: &str) -> Result<T> {
        self.note(key, &v.span());
        if ok(*v.get_ref()) {
            Ok(*v.get_ref())
        } else {
            Err(self.err(key, Some(v.span()), &format!("must be {expected}")))
        }
    }
}

fn build(ctx: &Ctx, raw: RawPipeline, file_sha256: String) -> Result<Pipeline> {
    let output = output_folder(ctx, "output", &raw.output)?;
    let archive = match &raw.archive {
        Some(a) => output_folder(ctx, "archive", a)?,
        None => output.join("archive"),
    };
    let aoi_bbox = raw.aoi.map(|a| check_bbox(ctx, a.bbox)).transpose()?;
    let source = build_source(ctx, raw.source)?;
    let bands = build_bands(ctx, raw.bands)?;
    let baseline = build_baseline(ctx, raw.baseline)?;
    let (model_path, verdict) = raw.model.map(|m| (m.path, m.verdict)).unwrap_or_default();
    let model = model_path.map(|m| check_model(ctx, &m)).transpose()?;
    let verdict_model = verdict.map(|v| check_verdict_model(ctx, &v)).transpose()?;
    let layers = match raw.layers {
        Some(l) => Layers {
            landuse: layer(ctx, "layers.landuse", &l.landuse)?,
            basic_farmland: layer(ctx, "layers.basic_farmland", &l.basic_farmland)?,
            approved: layer(ctx, "layers.approved", &l.approved)?,
            counties: layer(ctx, "layers.counties", &l.counties)?,
            red_line: layer(ctx, "layers.red_line", &l.red_line)?,
            allow_empty_landuse: l.allow_empty_landuse.unwrap_or(false),
        },
        None => Layers::default(),
    };
    let detect = build_detect(ctx, raw.detect)?;
    let fetch = build_fetch(ctx, raw.fetch)?;
    Ok(Pipeline {
        file: ctx.file.to_path_buf(),
        file_sha256,
        name: raw.name,
        output,
        archive,
        aoi_bbox,
        source,
        bands,
        baseline,
        model,
        verdict_model,
        layers,
        detect,
        fetch,
        lines: ctx.lines.take(),
    })
}

/// `output` / `archive`: a folder of its own, which may not exist yet. An existing file there, or
/// the file system root, would have every run write next to unrelated files.
fn output_folder(ctx: &Ctx, key: &str, p: &Spanned<PathBuf>) -> Result<PathBuf> {
    ctx.note(key, &p.span());
    let resolved = ctx.resolve(p.get_ref());
    if resolved.parent().is_none() {
        return Err(ctx.err(
            key,
            Some(p.span()),
            &format!(
                "`{}` is the file system root; give a folder of its own, e.g. /srv/landwatch/<name>",
                resolved.display()
            ),
        ));
    }
    if resolved.exists() && !resolved.is_dir() {
        return Err(ctx.err(
            key,
            Some(p.span()),
            &format!(
                "{} is a file, not a folder; give a folder (it is created if missing)",
                resolved.display()
            ),
        ));
    }
    Ok(resolved)
}

/// The model file must be a readable, valid model now, not when the first tile is detected.
/// `Model::load` says what is wrong with the file; a file that is no model at all (a folder,
/// not UTF-8) is also pinned to the pipeline key that names it.
fn check_model(ctx: &Ctx, p: &Spanned<PathBuf>) -> Result<PathBuf> {
    let path = ctx.existing("model.path", p)?;
    match landwatch_core::model::Model::load(&path) {
        Ok(_) => Ok(path),
        Err(Error::Input { path: file, msg }) => {
            Err(ctx.err("model.path", Some(p.span()), &format!("{}: {msg}", file.display())))
        }
        Err(e) => Err(e),
    }
}

/// The verdict model must load now (format, feature set), pinned to `model.verdict`.
fn check_verdict_model(ctx: &Ctx, p: &Spanned<PathBuf>) -> Result<PathBuf> {
    let path = ctx.existing("model.verdict", p)?;
    match landwatch_core::learn::verdict::VerdictModel::load(&path) {
        Ok(_) => Ok(path),
        Err(Error::Input { path: file, msg }) => {
            Err(ctx.err("model.verdict", Some(p.span()), &format!("{}: {msg}", file.display())))
        }
        Err(e) => Err(e),
    }
}

/// A layer must be a vector dataset GDAL reads (a file, or a folder such as a FileGDB).
fn layer(ctx: &Ctx, key: &str, p: &Option<Spanned<PathBuf>>) -> Result<Option<PathBuf>> {
    let Some(spanned) = p else { return Ok(None) };
    let path = ctx.existing(key, spanned)?;
    landwatch_core::io::init_gdal();
    let opened = gdal::Dataset::open_ex(
        &path,
        gdal::DatasetOptions {
            open_flags: gdal::GdalOpenFlags::GDAL_OF_VECTOR | gdal::GdalOpenFlags::GDAL_OF_READONLY,
            ..Default::default()
        },
    );
    let problem = match opened {
        Err(_) => "is not a vector file GDAL can read (GeoPackage, Shapefile, GeoJSON …)",
        Ok(ds) if ds.layer_count() == 0 => "has no vector layer",
        Ok(_) => return Ok(Some(path)),
    };
    Err(ctx.err(key, Some(spanned.span()), &format!("{} {problem}", path.display())))
}

fn check_bbox(ctx: &Ctx, bbox: Spanned<[f64; 4]>) -> Result<[f64; 4]> {
    ctx.note("aoi.bbox", &bbox.span());
    let [w, s, e, n] = *bbox.get_ref();
    let lon = |v: f64| (-180.0..=180.0).contains(&v);
    let lat = |v: f64| (-90.0..=90.0).contains(&v);
    if w < e && s < n && lon(w) && lon(e) && lat(s) && lat(n) {
        Ok([w, s, e, n])
    } else {
        Err(ctx.err(
            "aoi.bbox",
            Some(bbox.span()),
            "expected [west, south, east, north] in degrees (longitudes -180..180, latitudes -90..90) \
             with west < east and south < north",
        ))
    }
}

fn build_bands(ctx: &Ctx, raw: Option<RawBands>) -> Result<Bands> {
    let Some(raw) = raw else {
        return Ok(Bands::default());
    };
    let max = limits::BAND;
    let expected = format!("a band number from 1 to {max}");
    let d = Bands::default();
    let band = |key: &str, v: &Option<Spanned<u32>>, default: u32| match v {
        Some(v) => ctx.number(key, v, |b| (1..=max).contains(&b), &expected),
        None => Ok(default),
    };
    let b = Bands {
        blue: band("bands.blue", &raw.blue, d.blue)?,
        green: band("bands.green", &raw.green, d.green)?,
        red: band("bands.red", &raw.red, d.red)?,
        nir: band("bands.nir", &raw.nir, d.nir)?,
        radiometry: match &raw.radiometry {
            Some(r) => {
                ctx.note("bands.radiometry", &r.span());
                r.get_ref()
                    .parse()
                    .map_err(|e: String| ctx.err("bands.radiometry", Some(r.span()), &e))?
            }
            None => Radiometry::Auto,
        },
    };
    let mut sorted = [b.blue, b.green, b.red, b.nir];
    sorted.sort_unstable();
    if sorted.windows(2).all(|w| w[0] != w[1]) {
        Ok(b)
    } else {
        let first_written = [&raw.blue, &raw.green, &raw.red, &raw.nir]
            .into_iter()
            .flatten()
            .map(|v| v.span())
            .next();
        Err(ctx.err(
            "bands",
            first_written,
            "band numbers must be distinct (blue, green, red and nir are different bands)",
        ))
    }
}

fn build_source(ctx: &Ctx, raw: Spanned<RawSource>) -> Result<Source> {
    let span = raw.span();
    let raw = raw.into_inner();
    let need_url = |what: &str| match &raw.url {
        Some(u) => check_url(ctx, u),
        None => Err(ctx.err(
            "source.url",
            Some(span.clone()),
            &format!("a {what} source needs `url`"),
        )),
    };
    let need_path = || {
        raw.path.as_ref().ok_or_else(|| {
            ctx.err(
                "source.path",
                Some(span.clone()),
                "a local or archive source needs `path`",
            )
        })
    };
    match raw.kind {
        SourceKind::Local => {
            let path = ctx.existing("source.path", need_path()?)?;
            let tiles = local_tiles(ctx, &path, raw.tiles.as_deref().unwrap_or_default())?;
            Ok(Source::Local { path, tiles })
        }
        SourceKind::Archive => Ok(Source::Archive {
            path: ctx.existing("source.path", need_path()?)?,
        }),
        SourceKind::HttpIndex => Ok(Source::HttpIndex {
            url: need_url("http_index")?,
        }),
        SourceKind::Stac => Ok(Source::Stac {
            url: need_url("stac")?,
            collections: raw.collections.clone().unwrap_or_default(),
            asset: raw.asset.clone().unwrap_or_else(|| "image".into()),
            datetime: raw.datetime.clone(),
            tile_property: raw.tile_property.clone().unwrap_or_else(|| "grid:code".into()),
            limit: match &raw.limit {
                Some(l) => ctx.number(
                    "source.limit",
                    l,
                    |n| (1..=limits::STAC_LIMIT).contains(&n),
                    &format!("from 1 to {} items per page", limits::STAC_LIMIT),
                )?,
                None => 100,
            },
        }),
    }
}

/// Tiles listed in the pipeline file: each file exists and each tile + date is listed once.
fn local_tiles(ctx: &Ctx, dir: &Path, tiles: &[Spanned<LocalTile>]) -> Result<Vec<LocalTile>> {
    let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for t in tiles {
        let (span, tile) = (t.span(), t.get_ref());
        check_date(ctx, "source.tiles.date", &tile.date, Some(span.clone()))?;
        let file = dir.join(&tile.file);
        if !file.is_file() {
            let msg = format!("path does not exist: {}", file.display());
            return Err(ctx.err("source.tiles.file", Some(span), &msg));
        }
        if let Some(first) = seen.insert((&tile.tile, &tile.date), line_col(ctx.text, span.start).0) {
            let msg = format!(
                "tile `{}` on {} is listed twice (also on line {first}); keep one entry",
                tile.tile, tile.date
            );
            return Err(ctx.err("source.tiles", Some(span), &msg));
        }
    }
    Ok(tiles.iter().map(|t| t.get_ref().clone()).collect())
}

/// Index and STAC URLs are fetched over HTTP(S); anything else is refused now rather than
/// failing five retries later.
fn check_url(ctx: &Ctx, url: &Spanned<String>) -> Result<String> {
    ctx.note("source.url", &url.span());
    let bad = |msg: String| Err(ctx.err("source.url", Some(url.span()), &msg));
    match reqwest::Url::parse(url.get_ref()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(url.get_ref().clone()),
        Ok(u) if u.scheme() == "file" => bad(format!(
            "`{}`: file URLs are not fetched; for a folder on this machine use kind = \"local\" and path = \"…\"",
            url.get_ref()
        )),
        Ok(u) => bad(format!(
            "`{}`: scheme `{}` is not supported; give an http:// or https:// URL",
            url.get_ref(),
            u.scheme()
        )),
        Err(e) => bad(format!(
            "`{}` is not an absolute URL ({e}); give it with its scheme, e.g. https://host/index.json",
            url.get_ref()
        )),
    }
}

fn build_baseline(ctx: &Ctx, raw: Option<RawBaseline>) -> Result<Baseline> {
    let Some(raw) = raw else {
        return Ok(Baseline::Previous);
    };
    match (raw.date, raw.previous) {
        (Some(_), Some(true)) => Err(ctx.err("baseline", None, "give either `date` or `previous = true`, not both")),
        (Some(d), _) => {
            ctx.note("baseline.date", &d.span());
            check_date(ctx, "baseline.date", d.get_ref(), Some(d.span()))?;
            Ok(Baseline::Date(d.into_inner()))
        }
        (None, _) => Ok(Baseline::Previous),
    }
}

fn build_detect(ctx: &Ctx, raw: Option<RawDetect>) -> Result<DetectParams> {
    let raw = raw.unwrap_or(RawDetect {
        min_area_m2: None,
        seam_tolerance_m: None,
        track_overlap: None,
    });
    let between = |key: &str, v: &Option<Spanned<f64>>, max: f64, unit: &str, default: f64| -> Result<f64> {
        match v {
            Some(s) => ctx.number(
                key,
                s,
                |x| (0.0..=max).contains(&x),
                &format!("a number from 0 to {max}{unit}"),
            ),
            None => Ok(default),
        }
    };
    Ok(DetectParams {
        min_area_m2: between("detect.min_area_m2", &raw.min_area_m2, limits::MIN_AREA_M2, " m²", 0.0)?,
        seam_tolerance_m: between(
            "detect.seam_tolerance_m",
            &raw.seam_tolerance_m,
            limits::SEAM_TOLERANCE_M,
            " m",
            8.0,
        )?,
        track_overlap: between("detect.track_overlap", &raw.track_overlap, 1.0, "", 0.3)?,
    })
}

fn build_fetch(ctx: &Ctx, raw: Option<RawFetch>) -> Result<FetchParams> {
    let d = FetchParams::default();
    let Some(raw) = raw else { return Ok(d) };
    let concurrency = match &raw.concurrency {
        Some(c) => ctx.number(
            "fetch.concurrency",
            c,
            |n| (1..=limits::CONCURRENCY).contains(&n),
            &format!("from 1 to {} downloads at a time", limits::CONCURRENCY),
        )?,
        None => d.concurrency,
    };
    let retries = match &raw.retries {
        Some(r) => ctx.number(
            "fetch.retries",
            r,
            |n| n <= limits::RETRIES,
            &format!("from 0 to {} retries", limits::RETRIES),
        )?,
        None => d.retries,
    };
    let backoff_ms = match &raw.backoff_ms {
        Some(b) => ctx.number(
            "fetch.backoff_ms",
            b,
            |n| n <= limits::BACKOFF_MS,
            &format!(
                "from 0 to {} ms (each retry waits at most that long plus as much jitter)",
                limits::BACKOFF_MS
            ),
        )?,
        None => d.backoff_ms,
    };
    let timeout_s = match &raw.timeout_s {
        Some(t) => ctx.number(
            "fetch.timeout_s",
            t,
            |x| x > 0.0 && x <= limits::TIMEOUT_S,
            &format!("a number of seconds > 0 and at most {}", limits::TIMEOUT_S),
        )?,
        None => d.timeout_s,
    };
    Ok(FetchParams {
        concurrency,
        retries,
        backoff_ms,
        timeout_s,
    })
}

fn check_date(ctx: &Ctx, key: &str, date: &str, span: Option<std::ops::Range<usize>>) -> Result<()> {
    if is_date(date) {
        Ok(())
    } else {
        Err(ctx.err(key, span, &format!("`{date}` is not a YYYY-MM-DD date")))
    }
}

/// True for a valid calendar date written `YYYY-MM-DD`.
pub fn is_date(s: &str) -> bool {
    s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("p.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    const OK: &str = "name = \"t\"\noutput = \"out\"\n[source]\nkind = \"local\"\npath = \".\"\n";

    #[test]
    fn band_order_for_the_engine() {
        let b = Bands {
            blue: 3,
            green: 2,
            red: 1,
            nir: 5,
            radiometry: Radiometry::Auto,
        };
        assert_eq!(b.engine_order(), "R,G,B,_,NIR");
        assert_eq!(Bands::default().engine_order(), "B,G,R,NIR");
    }

    #[test]
    fn minimal_file_loads_with_defaults() {
        let d = tempfile::tempdir().unwrap();
        let p = load(&write(d.path(), OK)).unwrap();
        assert_eq!(p.output, d.path().join("out"));
        assert_eq!(p.archive, d.path().join("out/archive"));
        let text = OK.replace("\"out\"", "\"sub/../out2\"");
        assert_eq!(load(&write(d.path(), &text)).unwrap().output, d.path().join("out2"));
        assert_eq!(p.fetch.concurrency, 4);
        assert_eq!(p.baseline, Baseline::Previous);
    }

    #[test]
    fn unknown_key_names_table_key_and_line() {
        let d = tempfile::tempdir().unwrap();
        let text = format!("{OK}[fetch]\nconcurency = 3\n");
        let e = load(&write(d.path(), &text)).unwrap_err().to_string();
        assert!(e.contains("p.toml"), "{e}");
        assert!(e.contains("fetch.concurency"), "{e}");
        assert!(e.contains("line 7"), "{e}");
        assert_eq!(load(&write(d.path(), &text)).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let d = tempfile::tempdir().unwrap();
        let text = format!("{OK}[fetch]\nretries = 2\nconcurrency = \"many\"\n");
        let e = load(&write(d.path(), &text)).unwrap_err().to_string();
        assert!(e.contains("fetch.concurrency"), "{e}");
        assert!(e.contains("line 8"), "{e}");
    }

    #[test]
    fn radiometry_is_read_under_bands_and_a_bad_one_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = load(&write(d.path(), &format!("{OK}[bands]\nradiometry = \"dn\"\n"))).unwrap();
        assert_eq!(p.bands.radiometry, Radiometry::Dn);
        assert!(p.bands.is_identity(), "band numbers default to 1..4");
        let e = load(&write(d.path(), &format!("{OK}[bands]\nradiometry = \"dn12\"\n")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bands.radiometry") && e.contains("line 7") && e.contains("dn or 8bit"),
            "{e}"
        );
    }

    #[test]
    fn missing_path_names_key_and_line() {
        let d = tempfile::tempdir().unwrap();
        let text = format!("{OK}[layers]\nlanduse = \"nope.gpkg\"\n");
        let e = load(&write(d.path(), &text)).unwrap_err().to_string();
        assert!(e.contains("layers.landuse"), "{e}");
        assert!(e.contains("line 7"), "{e}");
        assert!(e.contains("does not exist"), "{e}");
    }
}
