//! Versioned detection models: the TOML files in `models/`.
//!
//! A model holds every tunable number of the detector and the patch typing rules, so a
//! researcher can copy `models/rules-v1.toml`, change a threshold, and rerun — no code change.
//! Unknown keys are errors (a typo must never be silently ignored), and every value is checked
//! against its valid range when the file is loaded.

use crate::io::toml_location;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The model shipped inside the binary, used when no `--model` is given.
pub const BUILTIN_MODEL: &str = include_str!("../../../models/rules-v1.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// A versioned model file (`models/rules-v1.toml` is built in): every parameter of detection,
/// masking, typing and categories. Loaded and validated by [`Model::load`].
pub struct Model {
    /// Model name, e.g. `rules`.
    pub name: String,
    /// Model version, e.g. `1.0`.
    pub version: String,
    /// One line on what changed in this version.
    pub changelog: String,
    /// Detection parameters.
    pub detect: DetectParams,
    /// Cloud and shadow masking.
    pub masks: MaskParams,
    /// Change-type rules.
    pub typing: TypingParams,
    /// 非农化 / 非粮化 category rules.
    pub categories: CategoryParams,
    /// SHA-256 of the file's bytes, filled in on load (for the run manifest).
    #[serde(skip)]
    pub sha256: String,
    /// Where the model came from (`builtin` or the file path).
    #[serde(skip)]
    pub source: String,
    /// The learned cascade when the file is a learned model ([`crate::learn`]); this struct
    /// then holds the rules model embedded in it.
    #[serde(skip)]
    pub learned: Option<std::sync::Arc<crate::learn::LearnedModel>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
/// How the change threshold is found on the evidence histogram.
pub enum ThresholdMethod {
    /// Otsu: maximises between-class variance of the evidence histogram.
    Otsu,
    /// Kittler–Illingworth minimum error: fits two Gaussians, better for a small change class.
    Kittler,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// The `[detect]` table: blocks, evidence threshold, morphology, minimum size and the paths
/// that catch what plain evidence misses.
pub struct DetectParams {
    /// Side of the square processing blocks, pixels.
    pub block_size: usize,
    /// How the automatic threshold is found.
    pub threshold_method: ThresholdMethod,
    /// The automatic threshold is never below this evidence value (guards nearly unchanged scenes).
    pub threshold_floor: f32,
    /// Multiplies the automatic threshold (>1: fewer, surer detections).
    pub threshold_scale: f32,
    /// The same for imagery without NIR (RGB orthophotos): their evidence lacks the NDVI/NDWI
    /// channels, its histogram is narrower, and the automatic threshold lands relatively high.
    pub threshold_scale_rgb: f32,
    /// Weight of the vegetation/water index differences relative to reflectance differences.
    pub index_weight: f32,
    /// Weight of the vegetation-index texture (3×3 standard deviation) in the evidence.
    #[serde(default)]
    pub texture_weight: f32,
    /// Radius (pixels) over which a pixel may match its counterpart on the other date, absorbing
    /// residual misregistration.
    pub match_radius: usize,
    /// Radius of the opening/closing that removes specks and fills pinholes.
    pub morphology_radius: usize,
    /// When set, the opening/closing radius follows the ground instead: this many metres at
    /// the image's pixel size, at least 1 px (field-road gaps are ~4 m wide whatever the sensor).
    #[serde(default)]
    pub morphology_radius_m: Option<f64>,
    /// Minimum mapping unit in m² (pixels when the input has no georeferencing and no pixel size).
    pub min_area_m2: f64,
    /// Pixels sampled per calibration window side (shift, normalisation, thresholds).
    pub calibration_window: usize,
    /// How many calibration windows, spread evenly over the image.
    pub calibration_windows: usize,
    /// Fraction of calibration pixels, least changed first, taken as pseudo-invariant.
    pub invariant_fraction: f32,
    /// Below this mean correlation of the pseudo-invariant pixels the dates are too different
    /// for a linear radiometric map to be trusted, and the after image is not normalised.
    #[serde(default = "default_normalise_min_correlation")]
    pub normalise_min_correlation: f64,
    /// Simplification tolerance in pixels (topology preserving).
    pub simplify_px: f64,
    /// Per-pixel gate that separates changes of use from crop cycles before components form.
    pub gate: GateParams,
    /// Texture appearance (tree planting), a change-of-use path beside the evidence; off when
    /// the section is absent.
    #[serde(default)]
    pub texture: TextureParams,
    /// Film appearance (greenhouses), a change-of-use path beside the evidence; off when the
    /// section is absent.
    #[serde(default)]
    pub film: FilmParams,
    /// Residual-shift estimation; the shipped values when the section is absent.
    #[serde(default)]
    pub shift: ShiftParams,
}

fn default_normalise_min_correlation() -> f64 {
    0.8
}

/// The residual shift left after warping is estimated by phase correlation of calibration
/// windows (see [`crate::align::shift`]); these decide which estimates are trusted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftParams {
    /// Correlation peaks below this are noise (repetitive field patterns give weak false peaks).
    pub min_peak: f64,
    /// After warping, a residual shift larger than this (px) means a wrong peak, not a real
    /// offset: it is reported and not applied. The after image is read this much wider.
    pub max_px: f64,
    /// Share of a window's pixels that must be valid on both dates for it to estimate the shift.
    pub min_valid_fraction: f64,
}

/// The shipped values (what a model without a `[detect.shift]` section gets).
impl Default for ShiftParams {
    fn default() -> Self {
        Self {
            min_peak: 0.12,
            max_px: 3.0,
            min_valid_fraction: 0.9,
        }
    }
}

/// Plastic greenhouse tunnels are often only a few pixels wide: the evidence finds them, but the
/// opening of the change-of-use mask cuts them below half their area. This path flags pixels that
/// turned much brighter and white-grey (spectrally flat), cleans them with its own small closing
/// and opening, and counts them as change of use (see `film_appeared` in
/// [`crate::detect::stream`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilmParams {
    /// Whether the film path runs.
    pub enabled: bool,
    /// Mean reflectance gain above this … (these two thresholds also decide, path on or off,
    /// which pixels count towards the `film_frac_after` feature)
    pub min_brightening: f32,
    /// … with the after spectrum flatter than this (1 = white-grey).
    pub min_flatness: f32,
    /// Closing then opening radius (px).
    pub close_px: usize,
    /// Opening radius (px), after the closing.
    pub open_px: usize,
}

/// Off, with the shipped thresholds (what a model without a `[detect.film]` section gets).
impl Default for FilmParams {
    fn default() -> Self {
        Self {
            enabled: false,
            min_brightening: 0.2,
            min_flatness: 0.75,
            close_px: 1,
            open_px: 1,
        }
    }
}

/// Newly planted trees (orchards, eucalyptus) are a grid of crowns: the crowns match the green
/// crop before in the evidence and only the gaps change, so the evidence finds plantings in
/// fragments. This path flags pixels whose vegetation index gained crown texture (second
/// differences in every direction, over a `(2·radius+1)²` window: spots, not field edges or
/// ridges) in a vegetated neighbourhood, cleans the mask with its own closing and opening, and
/// counts it as change of use (see [`crate::detect::texture`]). Pixel units: tuned on 2 m imagery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextureParams {
    /// Whether the texture path runs.
    pub enabled: bool,
    /// Window radius (px) of the texture RMS.
    pub radius: usize,
    /// Texture after above this …
    pub min_after: f32,
    /// … and above the texture before by more than this …
    pub min_gain: f32,
    /// … with the 3×3 mean vegetation index after above this.
    pub min_vi_after: f32,
    /// Closing radius (px) that joins the crowns of a planting, then the opening radius (px)
    /// that drops what is narrower than a planting (field edges, ridges).
    pub close_px: usize,
    /// Opening radius (px) that drops what is narrower than a planting.
    pub open_px: usize,
}

/// Off, with the shipped thresholds (what a model without a `[detect.texture]` section gets).
impl Default for TextureParams {
    fn default() -> Self {
        Self {
            enabled: false,
            radius: 2,
            min_after: 0.06,
            min_gain: 0.045,
            min_vi_after: 0.15,
            close_px: 1,
            open_px: 2,
        }
    }
}

/// A changed pixel counts as a candidate change of use only when its after state looks like
/// something crops never are: artificial (flat, bright, not green), open water, newly textured
/// (tree crowns), or much brighter (film, concrete). Everything else is a crop cycle (harvest,
/// tillage, flooding, green-up) and is kept apart so it cannot merge with real changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateParams {
    /// Whether the gate runs (off: every change is change of use).
    pub enabled: bool,
    /// Artificial: spectral flatness above this with the vegetation index below `artificial_max_vi`.
    pub artificial_min_flatness: f32,
    /// Largest vegetation index of an artificial pixel.
    pub artificial_max_vi: f32,
    /// Water: NDWI above this and brightness below `water_max_brightness`.
    pub water_min_ndwi: f32,
    /// Largest brightness of a water pixel.
    pub water_max_brightness: f32,
    /// Texture: 3×3 std of the vegetation index after, and its gain over before.
    pub texture_min: f32,
    /// Smallest gain of that texture over before.
    pub texture_min_gain: f32,
    /// Brightening: mean reflectance gain.
    pub brighten_min: f32,
    /// Gate mask growth (px) so mixed edge pixels of an object stay with it.
    pub grow_px: usize,
}

/// When cloud and shadow masking runs: `auto` masks when a NIR band is present (calibrated
/// satellite products); orthophotos without NIR are usually cloud-free and saturate on white roofs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskMode {
    /// Mask when the images have a NIR band.
    Auto,
    /// Always mask.
    On,
    /// Never mask.
    Off,
}

fn default_shadow_min_ratio() -> f32 {
    0.0
}

fn default_cloud_core_min_flatness() -> f32 {
    0.75
}

fn default_cloud_edge_min_flatness() -> f32 {
    0.5
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// The `[masks]` table: cloud and shadow masking.
pub struct MaskParams {
    /// When cloud and shadow masking runs.
    pub clouds: MaskMode,
    /// Blue reflectance above which a flat-spectrum pixel is cloud core …
    pub cloud_blue: f32,
    /// … flat meaning a spectral flatness (see [`crate::detect::indices::flatness`]) above this.
    #[serde(default = "default_cloud_core_min_flatness")]
    pub cloud_core_min_flatness: f32,
    /// Mean reflectance above which a flat pixel near a cloud core is cloud edge / haze …
    pub cloud_edge_brightness: f32,
    /// … flat meaning a spectral flatness above this (haze lets some ground colour through).
    #[serde(default = "default_cloud_edge_min_flatness")]
    pub cloud_edge_min_flatness: f32,
    /// Pixels around cloud cores also masked (thin edges), pixels.
    pub cloud_buffer_px: usize,
    /// A pixel darker than this fraction of the other date in every band, with an unchanged
    /// spectral shape, is shadow.
    pub shadow_ratio: f32,
    /// Largest spectral-angle change (radians) still counted as "same material, only darker".
    pub shadow_max_angle: f32,
    /// The darker date keeps at least this share of the brighter one's brightness: diffuse
    /// skylight still lights a cloud shadow, while dark water covered by bright plastic film
    /// (a greenhouse on a flooded paddy) drops far lower and is change, not shadow.
    #[serde(default = "default_shadow_min_ratio")]
    pub shadow_min_ratio: f32,
}

/// A condition on one patch feature: `feature op value`, softened over `scale` so that the
/// confidence falls off smoothly near the threshold instead of jumping.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Feature name (one of [`crate::types::features::FEATURE_NAMES`]).
    pub feature: String,
    /// Comparison.
    pub op: CompareOp,
    /// Threshold.
    pub value: f64,
    /// Width of the soft transition around `value` (same units).
    pub scale: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
/// The comparison of a [`Condition`].
pub enum CompareOp {
    #[serde(rename = ">")]
    /// `>`: the feature is above the value.
    Greater,
    #[serde(rename = "<")]
    /// `<`: the feature is below the value.
    Less,
}

/// The rule for one change type: all conditions must hold; its score is the smallest soft
/// truth value of its conditions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeRule {
    /// Change type the rule gives, e.g. `building`.
    pub change_type: String,
    /// Conditions that must all hold.
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// The `[typing]` table: rules that give each patch a change type from its features.
pub struct TypingParams {
    /// Rules in priority order; the best-scoring rule wins.
    pub rules: Vec<TypeRule>,
    /// Below this score no rule applies and the patch is `other`.
    pub min_score: f64,
    /// Patches that look like a crop-cycle change (harvest, tillage, flooding, green-up) are
    /// kept only when this is true.
    pub keep_crop_cycle: bool,
    /// Patches no rule recognises (`other`) are kept only when this is true.
    pub keep_other: bool,
    /// A patch pixel counts towards the `water_frac_after` feature when its NDWI after is above
    /// this (open water).
    #[serde(default = "default_water_frac_min_ndwi")]
    pub water_frac_min_ndwi: f32,
}

fn default_water_frac_min_ndwi() -> f32 {
    0.1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// The `[categories]` table: how land use decides a patch's 非农化 / 非粮化 category.
pub struct CategoryParams {
    /// A patch is "on cropland" when at least this fraction of it lies on 01xx parcels.
    pub cropland_min_fraction: f64,
    /// A building within this distance (m) of a village parcel (07xx) is 乱占耕地建房.
    pub village_distance_m: f64,
    /// A patch covered by approved construction land at least this fraction is 已批准.
    pub approved_min_fraction: f64,
    /// Emit changes off cropland that fall in no enforcement category.
    pub emit_non_cropland: bool,
    /// 大棚房 suspicion: a greenhouse on cropland whose after-image brightness texture
    /// (`btex_after`) is at least this — plastic film is uniform, roofs and yards are not.
    #[serde(default = "default_house_btex_min")]
    pub greenhouse_house_btex_min: f64,
    /// … or whose spectral flatness (`flat_after`) is below this: less film-white, more roof.
    #[serde(default = "default_house_flat_max")]
    pub greenhouse_house_flat_max: f64,
    /// … or that has a `building` patch within this distance (m).
    #[serde(default = "default_house_neighbour_m")]
    pub greenhouse_house_neighbour_m: f64,
}

fn default_house_btex_min() -> f64 {
    0.03
}

fn default_house_flat_max() -> f64 {
    0.5
}

fn default_house_neighbour_m() -> f64 {
    10.0
}

/// The change types a patch can have.
pub const CHANGE_TYPES: [&str; 7] = [
    "building",
    "hardened",
    "pond",
    "orchard_forest",
    "greenhouse",
    "crop_cycle",
    "other",
];

impl DetectParams {
    /// The opening/closing radius in pixels for pixels `pixel_m` metres wide (if known).
    pub fn morphology_px(&self, pixel_m: Option<f64>) -> usize {
        match (self.morphology_radius_m, pixel_m) {
            (Some(r), Some(p)) if p > 0.0 => ((r / p).round() as usize).clamp(1, 5),
            _ => self.morphology_radius,
        }
    }
}

impl Model {
    /// The model built into the binary (`models/rules-v1.toml`).
    pub fn builtin() -> Result<Self> {
        Self::parse(BUILTIN_MODEL, Path::new("builtin:models/rules-v1.toml"))
    }

    /// Loads and validates a model file.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::input(
                path,
                "model file not found; see models/ for the shipped models",
            ));
        }
        if path.is_dir() {
            return Err(Error::input(
                path,
                "is a folder; --model takes a model file such as models/rules-v1.toml",
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, "cannot read the model file", e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::input(
                path,
                format!(
                    "is not UTF-8 text (invalid byte at offset {}); a model is a TOML file, see models/rules-v1.toml",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        if text.trim_start().starts_with('{') {
            return Self::parse_learned(&text, path);
        }
        Self::parse(&text, path)
    }

    /// A learned model file: its embedded rules model, with the cascade attached and the
    /// learned model's name, version and checksum.
    fn parse_learned(text: &str, path: &Path) -> Result<Self> {
        let learned = crate::learn::LearnedModel::parse(text, path)?;
        let mut model = Self::parse(&learned.rules_model, path)?;
        model.name = learned.name.clone();
        model.version = learned.version.clone();
        model.changelog = learned.changelog.clone();
        model.sha256 = crate::io::hash::sha256_hex(text.as_bytes());
        model.learned = Some(std::sync::Arc::new(learned));
        Ok(model)
    }

    /// The model given on the command line, or the built-in one.
    pub fn load_or_builtin(path: Option<&PathBuf>) -> Result<Self> {
        match path {
            Some(p) => Self::load(p),
            None => Self::builtin(),
        }
    }

    fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut model: Model =
            toml::from_str(text).map_err(|e| toml_location::parse_error(path, text, e.message(), e.span()))?;
        model.validate(&Keys::new(path, text))?;
        model.sha256 = crate::io::hash::sha256_hex(text.as_bytes());
        model.source = path.display().to_string();
        Ok(model)
    }

    /// `name@version`, as written into every patch.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    fn validate(&self, k: &Keys) -> Result<()> {
        let d = &self.detect;
        k.range("detect.block_size", d.block_size as f64, 64.0, 8192.0)?;
        k.range("detect.threshold_floor", d.threshold_floor as f64, 0.0, 10.0)?;
        k.range("detect.threshold_scale", d.threshold_scale as f64, 0.1, 10.0)?;
        k.range("detect.threshold_scale_rgb", d.threshold_scale_rgb as f64, 0.1, 10.0)?;
        k.range("detect.index_weight", d.index_weight as f64, 0.0, 10.0)?;
        k.range("detect.texture_weight", d.texture_weight as f64, 0.0, 10.0)?;
        k.range("detect.match_radius", d.match_radius as f64, 0.0, 3.0)?;
        k.range("detect.morphology_radius", d.morphology_radius as f64, 0.0, 5.0)?;
        if let Some(r) = d.morphology_radius_m {
            k.range("detect.morphology_radius_m", r, 0.0, 100.0)?;
        }
        k.range("detect.min_area_m2", d.min_area_m2, 0.0, 1e7)?;
        k.range("detect.calibration_window", d.calibration_window as f64, 32.0, 2048.0)?;
        k.range("detect.calibration_windows", d.calibration_windows as f64, 1.0, 1024.0)?;
        k.range("detect.invariant_fraction", d.invariant_fraction as f64, 0.05, 0.95)?;
        k.range(
            "detect.normalise_min_correlation",
            d.normalise_min_correlation,
            0.0,
            1.0,
        )?;
        k.range("detect.shift.min_peak", d.shift.min_peak, 0.0, 1.0)?;
        k.range("detect.shift.max_px", d.shift.max_px, 0.0, 16.0)?;
        k.range("detect.shift.min_valid_fraction", d.shift.min_valid_fraction, 0.1, 1.0)?;
        k.range("detect.simplify_px", d.simplify_px, 0.0, 10.0)?;
        k.range("detect.gate.grow_px", d.gate.grow_px as f64, 0.0, 8.0)?;
        k.range(
            "detect.gate.artificial_min_flatness",
            d.gate.artificial_min_flatness as f64,
            0.0,
            1.0,
        )?;
        let g = &d.gate;
        k.range("detect.gate.artificial_max_vi", g.artificial_max_vi as f64, -1.0, 1.0)?;
        k.range("detect.gate.water_min_ndwi", g.water_min_ndwi as f64, -1.0, 1.0)?;
        k.range(
            "detect.gate.water_max_brightness",
            g.water_max_brightness as f64,
            0.0,
            2.0,
        )?;
        k.range("detect.gate.texture_min", g.texture_min as f64, 0.0, 1.0)?;
        k.range("detect.gate.texture_min_gain", g.texture_min_gain as f64, -1.0, 1.0)?;
        k.range("detect.gate.brighten_min", g.brighten_min as f64, -2.0, 2.0)?;
        let t = &d.texture;
        k.range("detect.texture.radius", t.radius as f64, 1.0, 3.0)?;
        k.range("detect.texture.min_after", t.min_after as f64, 0.0, 1.0)?;
        k.range("detect.texture.min_gain", t.min_gain as f64, 0.0, 1.0)?;
        k.range("detect.texture.min_vi_after", t.min_vi_after as f64, -1.0, 1.0)?;
        k.range("detect.texture.close_px", t.close_px as f64, 0.0, 3.0)?;
        k.range("detect.texture.open_px", t.open_px as f64, 0.0, 3.0)?;
        let f = &d.film;
        k.range("detect.film.min_brightening", f.min_brightening as f64, 0.0, 1.0)?;
        k.range("detect.film.min_flatness", f.min_flatness as f64, 0.0, 1.0)?;
        k.range("detect.film.close_px", f.close_px as f64, 0.0, 3.0)?;
        k.range("detect.film.open_px", f.open_px as f64, 0.0, 3.0)?;
        let m = &self.masks;
        k.range("masks.cloud_blue", m.cloud_blue as f64, 0.0, 2.0)?;
        k.range(
            "masks.cloud_core_min_flatness",
            m.cloud_core_min_flatness as f64,
            0.0,
            1.0,
        )?;
        k.range(
            "masks.cloud_edge_min_flatness",
            m.cloud_edge_min_flatness as f64,
            0.0,
            1.0,
        )?;
        k.range("masks.cloud_edge_brightness", m.cloud_edge_brightness as f64, 0.0, 2.0)?;
        k.range("masks.cloud_buffer_px", m.cloud_buffer_px as f64, 0.0, 64.0)?;
        k.range("masks.shadow_ratio", m.shadow_ratio as f64, 0.0, 1.0)?;
        k.range("masks.shadow_max_angle", m.shadow_max_angle as f64, 0.0, 1.6)?;
        k.range(
            "masks.shadow_min_ratio",
            m.shadow_min_ratio as f64,
            0.0,
            m.shadow_ratio as f64,
        )?;
        k.range("typing.min_score", self.typing.min_score, 0.0, 1.0)?;
        k.range(
            "typing.water_frac_min_ndwi",
            self.typing.water_frac_min_ndwi as f64,
            -1.0,
            1.0,
        )?;
        let c = &self.categories;
        k.range("categories.cropland_min_fraction", c.cropland_min_fraction, 0.0, 1.0)?;
        k.range("categories.village_distance_m", c.village_distance_m, 0.0, 10000.0)?;
        k.range("categories.approved_min_fraction", c.approved_min_fraction, 0.0, 1.0)?;
        k.range(
            "categories.greenhouse_house_btex_min",
            c.greenhouse_house_btex_min,
            0.0,
            1.0,
        )?;
        k.range(
            "categories.greenhouse_house_flat_max",
            c.greenhouse_house_flat_max,
            0.0,
            1.0,
        )?;
        k.range(
            "categories.greenhouse_house_neighbour_m",
            c.greenhouse_house_neighbour_m,
            0.0,
            1000.0,
        )?;
        self.validate_rules(k)
    }

    fn validate_rules(&self, k: &Keys) -> Result<()> {
        for (i, rule) in self.typing.rules.iter().enumerate() {
            let field = format!("typing.rules[{i}]");
            if !CHANGE_TYPES.contains(&rule.change_type.as_str()) {
                return Err(k.error(
                    &format!("{field}.change_type"),
                    format!(
                        "unknown change type '{}'; expected one of {}",
                        rule.change_type,
                        CHANGE_TYPES.join(", ")
                    ),
                ));
            }
            for (j, c) in rule.conditions.iter().enumerate() {
                if !crate::types::features::FEATURE_NAMES.contains(&c.feature.as_str()) {
                    return Err(k.error(
                        &format!("{field}.conditions[{j}].feature"),
                        format!(
                            "unknown feature '{}'; expected one of {}",
                            c.feature,
                            crate::types::features::FEATURE_NAMES.join(", ")
                        ),
                    ));
                }
                let cond = format!("{field}.conditions[{j}]");
                k.range(&format!("{cond}.value"), c.value, -MAX_CONDITION, MAX_CONDITION)?;
                if c.scale <= 0.0 {
                    return Err(k.error(&format!("{cond}.scale"), format!("value {} must be > 0", c.scale)));
                }
                k.range(&format!("{cond}.scale"), c.scale, 0.0, MAX_CONDITION)?;
            }
        }
        Ok(())
    }
}

/// Condition values and scales beyond this are typos (features are reflectances, indices,
/// ratios and areas in m²).
const MAX_CONDITION: f64 = 1e9;

/// Where the keys of a model file are, for errors that name the file, the key, its line and
/// column (see [`crate::io::toml_location`]).
struct Keys<'a> {
    path: &'a Path,
    text: &'a str,
    /// Every key written in the file with the byte span of its value.
    spans: Vec<(String, std::ops::Range<usize>)>,
}

impl<'a> Keys<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        let spans = toml_location::value_keys(text);
        Self { path, text, spans }
    }

    /// `v` must be finite and within `lo..=hi`.
    fn range(&self, key: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
        if v.is_finite() && v >= lo && v <= hi {
            Ok(())
        } else {
            Err(self.error(key, format!("value {v} is out of range; expected {lo} to {hi}")))
        }
    }

    /// An error about `key` (a dotted path such as `typing.rules[2].conditions[0].value`),
    /// located when the key is written in the file (not a default).
    fn error(&self, key: &str, msg: impl Into<String>) -> Error {
        let span = self.spans.iter().find(|(k, _)| k == key).map(|(_, span)| span);
        toml_location::error_at(self.path, self.text, key, span, &msg.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every numeric value of the shipped model, as (dotted key, byte span of the value).
    fn numeric_keys(text: &str) -> Vec<(String, std::ops::Range<usize>)> {
        let numeric = |span: &std::ops::Range<usize>| text[span.clone()].trim().parse::<f64>().is_ok();
        let keys = toml_location::value_keys(text);
        assert!(!keys.is_empty(), "shipped model parses");
        keys.into_iter().filter(|(_, span)| numeric(span)).collect()
    }

    #[test]
    fn every_numeric_key_refuses_nan_infinities_and_absurd_values_naming_key_and_line() {
        let text = BUILTIN_MODEL;
        let keys = numeric_keys(text);
        assert!(keys.len() > 60, "found only {} numeric keys", keys.len());
        let path = Path::new("m.toml");
        for (key, span) in keys {
            let (line, _) = toml_location::line_col(text, span.start);
            for bad in ["nan", "inf", "-inf", "1e300", "-1e300", "-4000000000", "4000000000"] {
                let edited = format!("{}{bad}{}", &text[..span.start], &text[span.end..]);
                let err = match Model::parse(&edited, path) {
                    Ok(_) => panic!("{key} = {bad} was accepted"),
                    Err(e) => e,
                };
                let msg = err.to_string();
                assert_eq!(err.exit_code(), 2, "{key} = {bad}: {msg}");
                assert!(
                    msg.contains(&format!("line {line}")),
                    "{key} = {bad}: no line {line} in: {msg}"
                );
                let leaf = key.rsplit('.').next().unwrap_or(&key);
                let leaf = leaf.split('[').next().unwrap_or(leaf);
                assert!(msg.contains(leaf), "{key} = {bad}: key not named in: {msg}");
            }
        }
    }

    #[test]
    fn a_model_without_the_keys_for_the_once_built_in_numbers_gets_the_values_that_were_built_in() {
        let added = [
            "[detect.shift]",
            "min_peak ",
            "max_px ",
            "min_valid_fraction ",
            "normalise_min_correlation ",
            "cloud_core_min_flatness ",
            "cloud_edge_min_flatness ",
            "water_frac_min_ndwi ",
        ];
        let older: Vec<&str> = BUILTIN_MODEL
            .lines()
            .filter(|l| !added.iter().any(|k| l.starts_with(k)))
            .collect();
        assert_eq!(
            older.len() + added.len(),
            BUILTIN_MODEL.lines().count(),
            "each key once"
        );
        let older = Model::parse(&older.join("\n"), Path::new("older.toml")).expect("an older copy loads");
        let shipped = Model::builtin().expect("the built-in model loads");
        let json = |m: &Model| serde_json::to_value(m).expect("serialise");
        assert_eq!(json(&older), json(&shipped));
        assert_eq!(shipped.detect.shift.max_px, 3.0);
    }

    #[test]
    fn the_shipped_model_is_valid() {
        Model::builtin().expect("the built-in model loads");
    }
}
