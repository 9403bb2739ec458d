//! Land-use overlay: what was on the ground before, by the official layers, under each patch.
//!
//! The 三调 baseline (parcels with a `DLBM` code) and the optional layers — permanent basic
//! farmland (永久基本农田), approved construction land, county boundaries, ecological red line
//! (生态保护红线) — are read onto the image grid ([`super::layer`]). For each patch the overlay
//! fills [`LandUse`]: the dominant class, cropland and basic-farmland areas, the county, the
//! approved fraction, red-line contact and whether a village parcel is near. Intersections are
//! computed with `geo`'s boolean operations in the grid CRS; areas are the patch's own m² area
//! times the intersected fraction, so they are right on projected and geographic grids alike.

use super::area::AreaCalc;
use super::dlbm;
use super::layer::{self, GridFrame, LoadStats, PolygonLayer};
use super::{LandUse, Patch};
use crate::{Error, Result};
use gdal::vector::LayerAccess;
use geo::{Area, BooleanOps, BoundingRect, Distance, Euclidean, Intersects};
use rayon::prelude::*;
use rstar::AABB;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layer files given for a run (all optional).
#[derive(Debug, Clone, Default)]
pub struct LayerPaths {
    /// Land-use baseline (三调 parcels with a DLBM field).
    pub landuse: Option<PathBuf>,
    /// Permanent basic farmland polygons.
    pub basic_farmland: Option<PathBuf>,
    /// Approved construction land polygons.
    pub approved: Option<PathBuf>,
    /// County boundaries.
    pub counties: Option<PathBuf>,
    /// Ecological red line polygons.
    pub red_line: Option<PathBuf>,
    /// Accept a land-use layer with no parcel over the image (otherwise refused: it would
    /// drop every patch as off cropland).
    pub allow_empty_landuse: bool,
}

impl LayerPaths {
    /// Whether any layer is given.
    pub fn any(&self) -> bool {
        [
            &self.landuse,
            &self.basic_farmland,
            &self.approved,
            &self.counties,
            &self.red_line,
        ]
        .iter()
        .any(|p| p.is_some())
    }
}

/// Which fields of the county layer hold the code and the name. `None` tries the usual names:
/// `XZQDM`/`XZQMC` (国土调查 XZQ layers), then `code`/`name`, `PAC`/`NAME`, `adcode`.
#[derive(Debug, Clone, Default)]
pub struct CountyFields {
    /// Field holding the county code.
    pub code: Option<String>,
    /// Field holding the county name.
    pub name: Option<String>,
}

impl CountyFields {
    /// Parses `CODE,NAME` (as given to `--county-fields`).
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        match parts.as_slice() {
            [c, n] if !c.is_empty() && !n.is_empty() => Ok(Self {
                code: Some(c.to_string()),
                name: Some(n.to_string()),
            }),
            _ => Err(Error::Usage(format!(
                "--county-fields '{s}': expected CODE_FIELD,NAME_FIELD, e.g. XZQDM,XZQMC"
            ))),
        }
    }
}

const COUNTY_CODE_FIELDS: [&str; 5] = ["XZQDM", "code", "PAC", "adcode", "XZQHDM"];
const COUNTY_NAME_FIELDS: [&str; 4] = ["XZQMC", "name", "NAME_CN", "XZQHMC"];

/// One 三调 parcel's attributes.
#[derive(Debug, Clone)]
pub struct Parcel {
    /// 三调 class code (DLBM).
    pub dlbm: String,
    /// From the layer when it has a readable `DLMC`, else the built-in name, else empty.
    pub dlmc: String,
    /// Whether the parcel is village land (07xx).
    pub village: bool,
}

/// The loaded layers, ready to answer per-patch questions.
pub struct Overlay {
    landuse: Option<PolygonLayer<Parcel>>,
    farmland: Option<PolygonLayer<()>>,
    approved: Option<PolygonLayer<()>>,
    counties: Option<PolygonLayer<(String, String)>>,
    red_line: Option<PolygonLayer<()>>,
}

impl Overlay {
    /// Loads every given layer onto the grid (CRS `grid_wkt`, extent `bounds`).
    pub fn load(paths: &LayerPaths, county_fields: &CountyFields, grid_wkt: &str, bounds: [f64; 4]) -> Result<Self> {
        Self::check_grid(paths, grid_wkt)?;
        let grid = GridFrame::new(grid_wkt, bounds)?;
        Ok(Self {
            landuse: paths
                .landuse
                .as_deref()
                .map(|p| load_landuse(p, &grid, paths.allow_empty_landuse))
                .transpose()?,
            farmland: paths
                .basic_farmland
                .as_deref()
                .map(|p| load_plain(p, "basic farmland", &grid))
                .transpose()?,
            approved: paths
                .approved
                .as_deref()
                .map(|p| load_plain(p, "approved land", &grid))
                .transpose()?,
            counties: paths
                .counties
                .as_deref()
                .map(|p| load_counties(p, county_fields, &grid))
                .transpose()?,
            red_line: paths
                .red_line
                .as_deref()
                .map(|p| load_plain(p, "red line", &grid))
                .transpose()?,
        })
    }

    /// Layers can be placed only on a georeferenced grid (`grid_wkt` not empty).
    pub fn check_grid(paths: &LayerPaths, grid_wkt: &str) -> Result<()> {
        if grid_wkt.is_empty() {
            let p = paths.landuse.clone().or(paths.counties.clone()).unwrap_or_default();
            return Err(Error::input(
                p,
                "land-use layers need georeferenced images (the before image has no CRS), so the layers cannot be placed",
            ));
        }
        Ok(())
    }

    /// Load statistics of the land-use layer, if one was given.
    pub fn landuse_stats(&self) -> Option<&LoadStats> {
        self.landuse.as_ref().map(|l| &l.stats)
    }

    /// Fills `land` of every patch. `village_distance_m`: how near a village parcel must be.
    pub fn apply(&self, patches: &mut [Patch], areas: &AreaCalc, village_distance_m: f64) {
        // The scales first, in order: `AreaCalc` holds a GDAL SpatialRef, which is not Sync. The
        // overlays themselves (geometry only) run in parallel.
        let village_dist: Vec<f64> = patches
            .iter()
            .map(|p| village_distance_m / areas.m2_per_grid_unit(&p.shape).sqrt().max(1e-12))
            .collect();
        patches
            .par_iter_mut()
            .zip(village_dist)
            .for_each(|(p, d)| p.land = self.land_use(&p.shape, p.area_m2, d));
    }

    /// What the layers say about one outline (grid CRS) of `area_m2`; `village_dist` is in grid units.
    pub fn land_use(&self, shape: &geo::MultiPolygon<f64>, area_m2: f64, village_dist: f64) -> LandUse {
        let grid_area = shape.unsigned_area();
        let to_m2 = |a: f64| {
            if grid_area > 0.0 {
                (a / grid_area).min(1.0) * area_m2
            } else {
                0.0
            }
        };
        let mut land = LandUse {
            known: self.landuse.is_some(),
            ..Default::default()
        };
        if let Some(lu) = &self.landuse {
            fill_landuse(&mut land, lu, shape, village_dist, &to_m2);
        }
        if let Some(l) = &self.farmland {
            land.basic_farmland_area_m2 = to_m2(overlap_sum(l, shape, |_| true));
        }
        if let Some(l) = &self.approved {
            land.approved_fraction = if grid_area > 0.0 {
                (overlap_sum(l, shape, |_| true) / grid_area).min(1.0)
            } else {
                0.0
            };
        }
        if let Some(l) = &self.red_line {
            land.touches_red_line = candidates(l, shape, 0.0).any(|item| item.geom().intersects(shape));
        }
        if let Some(l) = &self.counties {
            if let Some((code, name)) = largest_overlap(l, shape).map(|i| l.attrs[i].clone()) {
                land.county_code = code;
                land.county_name = name;
            }
        }
        land
    }
}

fn fill_landuse(
    land: &mut LandUse,
    lu: &PolygonLayer<Parcel>,
    shape: &geo::MultiPolygon<f64>,
    village_dist: f64,
    to_m2: &dyn Fn(f64) -> f64,
) {
    // Area per class; the class with most area is the patch's "before" class (ties: lower code).
    let mut per_class: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for item in candidates(lu, shape, 0.0) {
        let a = intersection_area(item.geom(), shape);
        if a > 0.0 {
            let parcel = &lu.attrs[item.data];
            let e = per_class.entry(parcel.dlbm.as_str()).or_insert((0.0, item.data));
            e.0 += a;
        }
    }
    let cropland: f64 = per_class
        .iter()
        .filter(|(c, _)| dlbm::is_cropland(c))
        .map(|(_, (a, _))| a)
        .sum();
    land.cropland_area_m2 = to_m2(cropland);
    if let Some((_, (_, idx))) = per_class
        .iter()
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(b.0.cmp(a.0)))
    {
        land.dlbm = lu.attrs[*idx].dlbm.clone();
        land.dlmc = lu.attrs[*idx].dlmc.clone();
    }
    land.near_village = candidates(lu, shape, village_dist)
        .filter(|item| lu.attrs[item.data].village)
        .any(|item| {
            shape
                .0
                .iter()
                .any(|p| Euclidean.distance(item.geom(), p) <= village_dist)
        });
}

/// Indexed polygons whose boxes come within `grow` of the outline's box.
fn candidates<'a, T>(
    l: &'a PolygonLayer<T>,
    shape: &geo::MultiPolygon<f64>,
    grow: f64,
) -> Box<dyn Iterator<Item = &'a layer::Indexed> + 'a> {
    let Some(r) = shape.bounding_rect() else {
        return Box::new(std::iter::empty());
    };
    let env = AABB::from_corners(
        geo::Point::new(r.min().x - grow, r.min().y - grow),
        geo::Point::new(r.max().x + grow, r.max().y + grow),
    );
    Box::new(l.tree.locate_in_envelope_intersecting(&env))
}

fn intersection_area(p: &geo::Polygon<f64>, shape: &geo::MultiPolygon<f64>) -> f64 {
    p.intersection(shape).unsigned_area()
}

/// Summed intersection area (grid units²) with the polygons whose record passes `keep`.
fn overlap_sum<T>(l: &PolygonLayer<T>, shape: &geo::MultiPolygon<f64>, keep: impl Fn(&T) -> bool) -> f64 {
    candidates(l, shape, 0.0)
        .filter(|i| keep(&l.attrs[i.data]))
        .map(|i| intersection_area(i.geom(), shape))
        .sum()
}

/// The record index overlapping the outline most (ties: the lower index, i.e. file order).
fn largest_overlap<T>(l: &PolygonLayer<T>, shape: &geo::MultiPolygon<f64>) -> Option<usize> {
    let mut per: BTreeMap<usize, f64> = BTreeMap::new();
    for i in candidates(l, shape, 0.0) {
        *per.entry(i.data).or_default() += intersection_area(i.geom(), shape);
    }
    per.into_iter()
        .filter(|(_, a)| *a > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i)
}

/// A parcel's fields as the layer stores them, before its codes are normalised.
struct RawParcel {
    code: String,
    dlmc: String,
    czcsxm: Option<String>,
}

fn load_landuse(path: &Path, grid: &GridFrame, allow_empty: bool) -> Result<PolygonLayer<Parcel>> {
    let what = "land-use";
    let mut stats = LoadStats::default();
    let ds = layer::open(path, what, &mut stats)?;
    let mut lyr = layer::pick_layer(&ds, path, what)?;
    let names = layer::field_names(&lyr);
    let code_idx = layer::require_field(path, &lyr.name(), &names, &["DLBM"], what)?;
    let stored_as_number = layer::is_numeric_field(&lyr, code_idx);
    let name_idx = layer::find_field(&names, &["DLMC"]);
    let czc_idx = layer::find_field(&names, &["CZCSXM"]);
    let raw = layer::read_polygons(path, &mut lyr, what, grid, stats, |f| {
        let code = layer::text(f, code_idx);
        // Numbers come back as `101` or `101.0`; the leading zeros are restored below, once
        // the whole layer shows whether they were lost.
        let as_code = code.strip_suffix(".0").unwrap_or(&code);
        // A number is worth keeping even when short (`9` is 特殊用地 `09`).
        let usable = dlbm::looks_like_code(as_code) || (stored_as_number && !as_code.is_empty());
        if !usable {
            return None;
        }
        Some(RawParcel {
            code,
            dlmc: name_idx.map(|i| layer::text(f, i)).unwrap_or_default(),
            czcsxm: czc_idx.map(|i| layer::text(f, i)),
        })
    })?;
    check_landuse_extent(path, &raw, allow_empty)?;
    let codes: Vec<&str> = raw.attrs.iter().map(|p| p.code.as_str()).collect();
    let lost_zeros = dlbm::lost_leading_zeros(stored_as_number, &codes);
    let mut bad_names = 0usize;
    let attrs = raw
        .attrs
        .into_iter()
        .map(|p| parcel_of(p, lost_zeros, &mut bad_names))
        .collect();
    let loaded = PolygonLayer {
        path: raw.path,
        tree: raw.tree,
        attrs,
        stats: raw.stats,
    };
    check_landuse_codes(path, &loaded, bad_names, lost_zeros)?;
    Ok(loaded)
}

/// A parcel with its code normalised and its name read or, when unreadable, built in.
fn parcel_of(raw: RawParcel, lost_zeros: bool, bad_names: &mut usize) -> Parcel {
    let code = dlbm::normalise(&raw.code, lost_zeros);
    let readable = !raw.dlmc.is_empty() && !raw.dlmc.contains(['\u{FFFD}', '?']);
    *bad_names += usize::from(!raw.dlmc.is_empty() && !readable);
    let dlmc = if readable {
        raw.dlmc
    } else {
        dlbm::name_of(&code).unwrap_or_default().to_string()
    };
    Parcel {
        village: dlbm::is_village(&code, raw.czcsxm.as_deref()),
        dlbm: code,
        dlmc,
    }
}

/// A land-use layer with no parcel over the image (or none at all) would make every patch
/// "not on cropland" and drop it: that is a wrong file or extent, not an answer, unless the
/// operator said an empty layer is expected.
fn check_landuse_extent<T>(path: &Path, l: &PolygonLayer<T>, allow_empty: bool) -> Result<()> {
    let s = &l.stats;
    if s.features > 0 && l.attrs.is_empty() && s.rejected == s.features {
        return Err(Error::config(
            path,
            "DLBM",
            format!(
                "none of the {} parcels near the image has a land-class code like 0101 in DLBM",
                s.features
            ),
        ));
    }
    if s.features == 0 && !allow_empty {
        return Err(Error::input(
            path,
            "land-use layer: no parcel lies over the image (wrong file, wrong area, or an empty layer); every patch would be dropped as off cropland. Check the layer covers the image, or pass --allow-empty-landuse if that is expected",
        ));
    }
    if s.features == 0 {
        tracing::warn!(file = %path.display(), "land-use layer has no parcel over the image; every patch will have an empty DLBM");
    }
    Ok(())
}

/// Codes that are not 三调 codes, even after restoring lost zeros, mean no parcel counts as
/// cropland: refused when none is, reported when some are.
fn check_landuse_codes(path: &Path, l: &PolygonLayer<Parcel>, bad_names: usize, lost_zeros: bool) -> Result<()> {
    let unknown: Vec<&str> = l
        .attrs
        .iter()
        .filter(|p| dlbm::name_of(&p.dlbm).is_none())
        .map(|p| p.dlbm.as_str())
        .collect();
    if !l.attrs.is_empty() && unknown.len() == l.attrs.len() {
        return Err(Error::config(
            path,
            "DLBM",
            format!(
                "none of the {} parcels over the image has a 三调 land-class code (TD/T 1055-2019, e.g. 0101 水田); found e.g. '{}'. Old 二调 codes are not mapped{}",
                l.attrs.len(),
                unknown[0],
                if lost_zeros { "; the codes look stored as numbers, so store DLBM as text with its leading zeros" } else { "" }
            ),
        ));
    }
    if !unknown.is_empty() {
        tracing::warn!(file = %path.display(), unknown = unknown.len(), example = unknown[0], "land-use: {} parcels have a DLBM that is not a 三调 code; they count as non-cropland", unknown.len());
    }
    if lost_zeros {
        tracing::warn!(file = %path.display(), "land-use: DLBM values had lost their leading zeros (stored as numbers?); read e.g. 101 as 0101");
    }
    if bad_names > 0 {
        tracing::warn!(file = %path.display(), bad_names, "land-use: {bad_names} DLMC values are unreadable (encoding); used the built-in 三调 names instead");
    }
    Ok(())
}

fn load_plain(path: &Path, what: &str, grid: &GridFrame) -> Result<PolygonLayer<()>> {
    let mut stats = LoadStats::default();
    let ds = layer::open(path, what, &mut stats)?;
    let mut lyr = layer::pick_layer(&ds, path, what)?;
    layer::read_polygons(path, &mut lyr, what, grid, stats, |_| Some(()))
}

fn load_counties(path: &Path, fields: &CountyFields, grid: &GridFrame) -> Result<PolygonLayer<(String, String)>> {
    let what = "county";
    let mut stats = LoadStats::default();
    let ds = layer::open(path, what, &mut stats)?;
    let mut lyr = layer::pick_layer(&ds, path, what)?;
    let names = layer::field_names(&lyr);
    let lname = lyr.name();
    let code_idx = match &fields.code {
        Some(c) => layer::require_field(path, &lname, &names, &[c.as_str()], what)?,
        None => layer::require_field(path, &lname, &names, &COUNTY_CODE_FIELDS, what)?,
    };
    let name_idx = match &fields.name {
        Some(n) => layer::require_field(path, &lname, &names, &[n.as_str()], what)?,
        None => layer::require_field(path, &lname, &names, &COUNTY_NAME_FIELDS, what)?,
    };
    layer::read_polygons(path, &mut lyr, what, grid, stats, |f| {
        Some((layer::text(f, code_idx), layer::text(f, name_idx)))
    })
}
