//! Stage 4: from traced change components to enforcement patches (图斑) — features, change
//! type, land-use overlay and 非农化 / 非粮化 category.

pub(crate) mod area;
pub(crate) mod category;
pub mod confidence;
pub(crate) mod dlbm;
pub(crate) mod label;
pub mod layer;
pub mod overlay;
pub(crate) mod typing;
pub(crate) mod vectorise;

use crate::model::Model;
use crate::types::features::{self, Features};
use crate::Result;
use area::AreaCalc;
use geo::{Area, Euclidean, Length};
use rayon::prelude::*;
use vectorise::Traced;

pub use crate::types::patch::{LandUse, Patch};

/// Turns traced components into typed patches, in a deterministic order with ids `P00001…`.
/// Components under `min_area_m2` are dropped.
pub fn build(
    has_nir: bool,
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
            let features = describe(has_nir, &t, area_m2);
            let typed = typing::classify(&model.typing, &features);
            let evidence_rel = round3(t.sums.mean_evidence_rel());
            let change_confidence = confidence::change_confidence(
                evidence_rel,
                confidence::rule_strength(&typed.change_type, typed.confidence),
                area_m2,
                model.detect.min_area_m2,
            );
            Ok(Patch {
                id: format!("P{:05}", i + 1),
                shape: t.shape,
                pixel_box: t.pixel_box,
                area_m2,
                features,
                change_type: typed.change_type,
                confidence: typed.confidence,
                evidence_rel,
                change_confidence,
                land: LandUse::default(),
                category: String::new(),
                chips: None,
            })
        })
        .collect()
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Summarises a patch from the sums the streaming pass gathered over its pixels.
fn describe(has_nir: bool, t: &Traced, area_m2: f64) -> Features {
    let perimeter: f64 = t.shape.0.iter().map(|p| Euclidean.length(p.exterior())).sum();
    let compactness = if perimeter > 0.0 {
        4.0 * std::f64::consts::PI * t.shape.unsigned_area() / (perimeter * perimeter)
    } else {
        0.0
    };
    features::summarise(&t.sums, has_nir, area_m2, compactness)
}
