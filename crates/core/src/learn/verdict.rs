//! The verdict model: a patch classifier trained on reviewers' verdicts (`landwatch train
//! verdicts`) that tells likely false alarms (其他 · 实地未变化) from real changes.
//!
//! A patch's row is its published properties (change confidence, evidence, typing score, type,
//! area and the typing features) and statistics of its before and after pixels inside its
//! outline, re-read through GDAL from the images and converted to reflectance with the factors
//! the run recorded. Training and applying build rows with the same code ([`patch_row`]), and a
//! model names the feature set and every feature it was trained on: a model for another set is
//! refused when loaded, never applied to columns that mean something else.

use crate::io::raster;
use crate::learn::booster::Booster;
use crate::types::features::FEATURE_NAMES;
use crate::{Error, Result};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::Dataset;
use geo::{Contains, CoordsIter, MapCoords};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The feature set this landwatch computes; a model trained on another is refused.
pub const FEATURE_SET: &str = "verdict-patch-v1";
/// The model file's format name.
pub const FORMAT: &str = "landwatch-verdict-model";
/// The model file's format version.
pub const FORMAT_VERSION: u32 = 1;

/// Per-date pixel statistics, in row order after the patch properties.
const PIXEL_STATS: [&str; 7] = ["blue", "green", "red", "nir", "bright", "bright_sd", "vi"];

/// The names of a row's columns, in order.
pub fn feature_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "change_confidence",
        "evidence_rel",
        "confidence",
        "type_code",
        "log_area_m2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.extend(FEATURE_NAMES.iter().map(|f| format!("f_{f}")));
    for date in ["before", "after"] {
        names.extend(PIXEL_STATS.iter().map(|s| format!("px_{s}_{date}")));
    }
    names.extend(PIXEL_STATS.iter().map(|s| format!("px_d_{s}")));
    names.extend(["px_bright_corr", "px_bright_absdiff", "px_log_pixels"].map(String::from));
    names
}

/// Statistics of a patch's pixels on one date (reflectance).
#[derive(Debug, Clone, Copy, Default)]
struct DateStats {
    values: [f64; PIXEL_STATS.len()],
}

/// Statistics of a patch's pixels on both dates.
#[derive(Debug, Clone, Default)]
pub struct PixelStats {
    before: DateStats,
    after: DateStats,
    bright_corr: f64,
    bright_absdiff: f64,
    pixels: usize,
}

/// A patch's row: its properties (as published) and its pixel statistics, in
/// [`feature_names`] order. Missing properties count as 0.
pub fn patch_row(props: &Map<String, Value>, px: &PixelStats) -> Vec<f32> {
    let num = |k: &str| props.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let feats = props.get("features").and_then(Value::as_object);
    let feature = |f: &str| feats.and_then(|m| m.get(f)).and_then(Value::as_f64).unwrap_or(0.0);
    let mut row = vec![
        num("change_confidence"),
        num("evidence_rel"),
        num("confidence"),
        num("type_code"),
        (num("area_m2").max(0.0) + 1.0).ln(),
    ];
    row.extend(FEATURE_NAMES.iter().map(|f| feature(f)));
    row.extend(px.before.values);
    row.extend(px.after.values);
    row.extend(px.after.values.iter().zip(px.before.values).map(|(a, b)| a - b));
    row.extend([px.bright_corr, px.bright_absdiff, (px.pixels as f64 + 1.0).ln()]);
    row.into_iter()
        .map(|v| if v.is_finite() { v as f32 } else { 0.0 })
        .collect()
}

/// Where a run's images are and how to read them, from its `run.json`.
#[derive(Debug, Clone)]
pub struct RunImages {
    /// The before image.
    pub before: PathBuf,
    /// The after image.
    pub after: PathBuf,
    /// 1-based band numbers of blue, green, red and NIR (0: none).
    pub bands: [usize; 4],
    /// Stored value → reflectance factors of the before and after images.
    pub factors: (f64, f64),
}

/// One image opened for reading patch windows.
struct OpenImage {
    path: PathBuf,
    ds: Dataset,
    gt: [f64; 6],
    /// Lon/lat → the image's CRS (`None`: the image has no CRS or outlines are in pixels).
    to_image: Option<CoordTransform>,
    width: usize,
    height: usize,
    factor: f64,
}

/// The before and after images of a run, open for [`ImagePair::measure`].
pub struct ImagePair {
    before: OpenImage,
    after: OpenImage,
    bands: [usize; 4],
}

impl ImagePair {
    /// Opens both images; `lonlat`: outlines come in EPSG:4326 (else in pixel coordinates).
    pub fn open(run: &RunImages, lonlat: bool) -> Result<ImagePair> {
        crate::io::init_gdal();
        Ok(ImagePair {
            before: OpenImage::open(&run.before, run.factors.0, lonlat)?,
            after: OpenImage::open(&run.after, run.factors.1, lonlat)?,
            bands: run.bands,
        })
    }

    /// The statistics of the pixels whose centres lie inside `outline` on both dates.
    pub fn measure(&self, outline: &geo::MultiPolygon<f64>) -> Result<PixelStats> {
        let b = self.before.pixels_inside(outline, &self.bands)?;
        let a = self.after.pixels_inside(outline, &self.bands)?;
        let mut s = PixelStats {
            before: date_stats(&b),
            after: date_stats(&a),
            pixels: b.len().min(a.len()),
            ..Default::default()
        };
        // Pixel-by-pixel comparisons only where both dates share the grid (same pixel count).
        if b.len() == a.len() && !b.is_empty() {
            let (bb, ab): (Vec<f64>, Vec<f64>) = b.iter().zip(&a).map(|(p, q)| (bright(p), bright(q))).unzip();
            s.bright_corr = correlation(&bb, &ab);
            s.bright_absdiff = bb.iter().zip(&ab).map(|(x, y)| (x - y).abs()).sum::<f64>() / bb.len() as f64;
        }
        Ok(s)
    }
}

impl OpenImage {
    fn open(path: &Path, factor: f64, lonlat: bool) -> Result<OpenImage> {
        let ds = raster::open(path)?;
        let info = raster::describe(&ds, path)?;
        let (gt, wkt) = match &info.georef {
            Some(g) => (g.geo_transform, g.wkt.clone()),
            None => ([0.0, 1.0, 0.0, 0.0, 0.0, 1.0], String::new()),
        };
        let to_image = if lonlat && !wkt.is_empty() {
            let mut src = SpatialRef::from_epsg(4326).map_err(|e| Error::gdal(path, "EPSG:4326", e))?;
            src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
            let mut dst = SpatialRef::from_wkt(&wkt).map_err(|e| Error::gdal(path, "CRS", e))?;
            dst.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
            Some(CoordTransform::new(&src, &dst).map_err(|e| Error::gdal(path, "transform from EPSG:4326", e))?)
        } else {
            None
        };
        Ok(OpenImage {
            path: path.to_path_buf(),
            ds,
            gt,
            to_image,
            width: info.width,
            height: info.height,
            factor,
        })
    }

    /// The outline in this image's pixel coordinates.
    fn to_pixels(&self, outline: &geo::MultiPolygon<f64>) -> Result<geo::MultiPolygon<f64>> {
        let projected = match &self.to_image {
            None => outline.clone(),
            Some(ct) => {
                let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = outline.coords_iter().map(|c| (c.x, c.y)).unzip();
                let mut zs = vec![0.0; xs.len()];
                ct.transform_coords(&mut xs, &mut ys, &mut zs)
                    .map_err(|e| Error::gdal(&self.path, "project a patch outline onto the image", e))?;
                let mut it = xs.into_iter().zip(ys).map(|(x, y)| geo::coord! { x: x, y: y });
                let mut ring = |r: &geo::LineString<f64>| geo::LineString(it.by_ref().take(r.0.len()).collect());
                let polygons = outline
                    .0
                    .iter()
                    .map(|p| {
                        let exterior = ring(p.exterior());
                        geo::Polygon::new(exterior, p.interiors().iter().map(&mut ring).collect())
                    })
                    .collect();
                geo::MultiPolygon(polygons)
            }
        };
        let gt = self.gt;
        let det = gt[1] * gt[5] - gt[2] * gt[4];
        if det == 0.0 {
            return Err(Error::input(&self.path, "has a degenerate geotransform"));
        }
        Ok(projected.map_coords(|c| {
            let (dx, dy) = (c.x - gt[0], c.y - gt[3]);
            geo::coord! { x: (gt[5] * dx - gt[2] * dy) / det, y: (gt[1] * dy - gt[4] * dx) / det }
        }))
    }

    /// The band values (reflectance; blue, green, red, NIR — NIR 0 without) of every pixel
    /// whose centre lies inside the outline, row by row.
    fn pixels_inside(&self, outline: &geo::MultiPolygon<f64>, bands: &[usize; 4]) -> Result<Vec<[f64; 4]>> {
        let px = self.to_pixels(outline)?;
        let Some(rect) = geo::BoundingRect::bounding_rect(&px) else {
            return Ok(Vec::new());
        };
        let x0 = rect.min().x.floor().max(0.0) as usize;
        let y0 = rect.min().y.floor().max(0.0) as usize;
        let x1 = (rect.max().x.ceil().max(0.0) as usize).min(self.width);
        let y1 = (rect.max().y.ceil().max(0.0) as usize).min(self.height);
        if x1 <= x0 || y1 <= y0 {
            return Ok(Vec::new());
        }
        let (w, h) = (x1 - x0, y1 - y0);
        let mut planes = Vec::new();
        for &b in bands {
            if b == 0 {
                planes.push(vec![0.0f64; w * h]);
                continue;
            }
            let band = self
                .ds
                .rasterband(b)
                .map_err(|e| Error::input(&self.path, format!("band {b}: {e}")))?;
            let buf = band
                .read_as::<f64>((x0 as isize, y0 as isize), (w, h), (w, h), None)
                .map_err(|e| Error::input(&self.path, format!("band {b} unreadable: {e}")))?;
            planes.push(buf.data().iter().map(|v| v * self.factor).collect());
        }
        let mut out = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let centre = geo::point!(x: (x0 + x) as f64 + 0.5, y: (y0 + y) as f64 + 0.5);
                if px.contains(&centre) {
                    let i = y * w + x;
                    out.push([planes[0][i], planes[1][i], planes[2][i], planes[3][i]]);
                }
            }
        }
        Ok(out)
    }
}

/// The values of band `band` of the raster at `path` at every pixel whose centre lies inside
/// `outline` (in lon/lat when `lonlat`, else in the raster's pixel coordinates).
pub fn values_inside(path: &Path, band: usize, outline: &geo::MultiPolygon<f64>, lonlat: bool) -> Result<Vec<f64>> {
    crate::io::init_gdal();
    let img = OpenImage::open(path, 1.0, lonlat)?;
    Ok(img
        .pixels_inside(outline, &[band, 0, 0, 0])?
        .into_iter()
        .map(|p| p[0])
        .collect())
}

fn bright(p: &[f64; 4]) -> f64 {
    (p[0] + p[1] + p[2]) / 3.0
}

fn date_stats(px: &[[f64; 4]]) -> DateStats {
    if px.is_empty() {
        return DateStats::default();
    }
    let n = px.len() as f64;
    let mean = |k: usize| px.iter().map(|p| p[k]).sum::<f64>() / n;
    let br: Vec<f64> = px.iter().map(bright).collect();
    let mb = br.iter().sum::<f64>() / n;
    let sd = (br.iter().map(|v| (v - mb) * (v - mb)).sum::<f64>() / n).sqrt();
    let (g, r, nir) = (mean(1), mean(2), mean(3));
    // NDVI with NIR, else the visible green–red index (as the detector's vegetation index).
    let vi = if nir > 0.0 { nd(nir, r) } else { nd(g, r) };
    DateStats {
        values: [mean(0), g, r, nir, mb, sd, vi],
    }
}

fn nd(a: f64, b: f64) -> f64 {
    if a + b > 0.0 {
        (a - b) / (a + b)
    } else {
        0.0
    }
}

fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx > 0.0 && syy > 0.0 {
        sxy / (sxx * syy).sqrt()
    } else {
        0.0
    }
}

/// A trained verdict model, as stored in its JSON file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictModel {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// Name and version, e.g. `verdict@20261204-1`, published with every patch it judged.
    pub id: String,
    /// The feature set the rows were built with ([`FEATURE_SET`]).
    pub feature_set: String,
    /// Every column's name, in order ([`feature_names`]).
    pub feature_names: Vec<String>,
    /// Patches whose probability of real change is under this are suppressed.
    pub threshold: f64,
    /// The trees.
    pub booster: Booster,
}

impl VerdictModel {
    /// Loads and checks a model file: format, version, feature set and names, trees.
    pub fn load(path: &Path) -> Result<VerdictModel> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::input(path, "verdict model file not found"),
            _ => Error::input(path, format!("cannot read the verdict model: {e}")),
        })?;
        let m: VerdictModel = serde_json::from_str(&text).map_err(|e| {
            Error::input(
                path,
                format!("is not a landwatch verdict model ({e}); train one with `landwatch train verdicts`"),
            )
        })?;
        m.check(path)?;
        Ok(m)
    }

    fn check(&self, path: &Path) -> Result<()> {
        if self.format != FORMAT || self.format_version != FORMAT_VERSION {
            return Err(Error::input(
                path,
                format!(
                    "format {} version {}: this landwatch reads {FORMAT} version {FORMAT_VERSION}",
                    self.format, self.format_version
                ),
            ));
        }
        let names = feature_names();
        if self.feature_set != FEATURE_SET || self.feature_names != names {
            return Err(Error::input(
                path,
                format!(
                    "was trained on feature set {} ({} features); this landwatch computes {FEATURE_SET} ({} features): \
                     retrain it with `landwatch train verdicts`",
                    self.feature_set,
                    self.feature_names.len(),
                    names.len()
                ),
            ));
        }
        if self.booster.features != names.len() {
            return Err(Error::input(
                path,
                "its trees read another number of features than it names",
            ));
        }
        self.booster
            .check()
            .map_err(|e| Error::input(path, format!("malformed trees: {e}")))?;
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(Error::input(
                path,
                format!("threshold {} is not in 0..1", self.threshold),
            ));
        }
        Ok(())
    }

    /// Probability that the patch of `row` is a real change.
    pub fn probability(&self, row: &[f32]) -> f64 {
        f64::from(self.booster.probability(row))
    }

    /// The JSON bytes of the model file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(|e| Error::Other(format!("cannot serialise the verdict model: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_has_one_value_per_feature_name() {
        let props: Map<String, Value> =
            serde_json::from_str(r#"{"change_confidence": 0.5, "area_m2": 400, "features": {"d_vi": -0.3}}"#).unwrap();
        let row = patch_row(&props, &PixelStats::default());
        let names = feature_names();
        assert_eq!(row.len(), names.len());
        let at = |n: &str| row[names.iter().position(|x| x == n).unwrap()];
        assert_eq!(at("change_confidence"), 0.5);
        assert_eq!(at("f_d_vi"), -0.3);
        assert!((at("log_area_m2") - 401f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn statistics_of_a_greening_patch() {
        let before = vec![[0.1, 0.1, 0.1, 0.1]; 4];
        let after = vec![[0.03, 0.06, 0.03, 0.4]; 4];
        let (b, a) = (date_stats(&before), date_stats(&after));
        assert!(a.values[6] > 0.8 && b.values[6].abs() < 1e-9, "{a:?} {b:?}");
    }
}
