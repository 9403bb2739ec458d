//! Stage 4: from traced change components to enforcement patches (图斑) — features, change
//! type, land-use overlay and 非农化 / 非粮化 category.

pub mod area;
pub mod category;
pub mod dlbm;
pub mod features;
pub mod label;
pub mod layer;
pub mod overlay;
pub mod typing;
pub mod vectorise;

use crate::detect::scene::Scene;
use crate::io::raster::Window;
use crate::model::Model;
use crate::Result;
use area::AreaCalc;
use features::Features;
use geo::{Area, Euclidean, Length};
use rayon::prelude::*;
use serde::Serialize;
use vectorise::Traced;

/// What the land-use layers say about a patch (filled by the overlay; empty without layers).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LandUse {
    /// 三调 class code and name of the parcel covering most of the patch.
    pub dlbm: String,
    pub dlmc: String,
    pub cropland_area_m2: f64,
    pub basic_farmland_area_m2: f64,
    pub approved_fraction: f64,
    pub touches_red_line: bool,
    pub near_village: bool,
    pub county_code: String,
    pub county_name: String,
    /// Whether a land-use layer was given at all.
    pub known: bool,
}

/// One change patch.
#[derive(Debug, Clone)]
pub struct Patch {
    pub id: String,
    /// Outline in the grid's CRS.
    pub shape: geo::MultiPolygon<f64>,
    pub pixel_box: Window,
    pub area_m2: f64,
    pub features: Features,
    pub change_type: String,
    pub confidence: f64,
    pub land: LandUse,
    pub category: String,
    /// Chip paths relative to the run folder.
    pub chips: Option<(String, String)>,
}

/// Turns traced components into typed patches, in a deterministic order with ids `P00001…`.
/// Components under `min_area_m2` are dropped.
pub fn build(
    scene: &Scene,
    traced: Vec<Traced>,
    model: &Model,
    areas: &AreaCalc,
    min_area_m2: f64,
) -> Result<Vec<Patch>> {
    let mut kept: Vec<(Traced, f64)> = traced
        .into_iter()
        .filter(|t| !t.shape.0.is_empty())
        .map(|t| {
            let a = areas.area_m2(&t.shape, t.grid_area);
            (t, a)
        })
        .filter(|(_, a)| *a >= min_area_m2)
        .collect();
    kept.sort_by(|(a, aa), (b, ba)| {
        (a.pixel_box.y, a.pixel_box.x, a.pixel_box.h, a.pixel_box.w)
            .cmp(&(b.pixel_box.y, b.pixel_box.x, b.pixel_box.h, b.pixel_box.w))
            .then(aa.total_cmp(ba))
    });
    kept.into_par_iter()
        .enumerate()
        .map(|(i, (t, area_m2))| -> Result<Patch> {
            let features = describe(scene, &t, area_m2);
            let typed = typing::classify(&model.typing, &features);
            Ok(Patch {
                id: format!("P{:05}", i + 1),
                shape: t.shape,
                pixel_box: t.pixel_box,
                area_m2,
                features,
                change_type: typed.change_type,
                confidence: typed.confidence,
                land: LandUse::default(),
                category: String::new(),
                chips: None,
            })
        })
        .collect()
}

/// Summarises a patch from the sums the streaming pass gathered over its pixels.
fn describe(scene: &Scene, t: &Traced, area_m2: f64) -> Features {
    let perimeter: f64 = t.shape.0.iter().map(|p| Euclidean.length(p.exterior())).sum();
    let compactness = if perimeter > 0.0 {
        4.0 * std::f64::consts::PI * t.shape.unsigned_area() / (perimeter * perimeter)
    } else {
        0.0
    };
    features::summarise(&t.sums, scene.has_nir, area_m2, compactness)
}
