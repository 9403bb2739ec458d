//! Enforcement category (category / `BHLX`) of each patch, from its change type, its land use and the
//! model's `[categories]` parameters.
//!
//! The rules, first match wins:
//! 1. no land-use layer was given → [`Category::UnknownLand`] (`未知地类`): nothing can be said
//!    about cropland, so every patch is kept for review;
//! 2. an approval covers at least `approved_min_fraction` → `已批准` (kept, so staff see it);
//! 3. on cropland (01xx share ≥ `cropland_min_fraction`):
//!    * `greenhouse` with house-like signs → `大棚房` (suspicion), a plain greenhouse → `其他`
//!      (设施农业 is not by itself a violation, but it is on cropland so it is kept);
//!    * `building` within `village_distance_m` of a village parcel → `乱占耕地建房`, else `非农化`;
//!    * `hardened` → `非农化`; `pond`, `orchard_forest`, `other` → `非粮化`;
//!    * anything else (e.g. a kept `crop_cycle`) → `其他`;
//! 4. off cropland: `building` → `违法建设` (a candidate: no approval covers it); anything else
//!    → `其他`, which is dropped unless `emit_non_cropland` or `keep_all`.
//!
//! A category is a lead for review, never a legal finding (自然资发〔2023〕258号).

use super::area::AreaCalc;
use super::Patch;
use crate::model::CategoryParams;
use geo::{BoundingRect, Distance, Euclidean};
use std::collections::BTreeMap;

/// The categories a patch can get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    NonAgricultural,
    NonGrain,
    GreenhouseHouse,
    VillageHouseOnCropland,
    IllegalBuilding,
    Approved,
    Other,
    /// No land-use layer: the patch cannot be placed on cropland or off it.
    UnknownLand,
}

impl Category {
    /// The value written into `category` and `BHLX`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::NonAgricultural => "非农化",
            Category::NonGrain => "非粮化",
            Category::GreenhouseHouse => "大棚房",
            Category::VillageHouseOnCropland => "乱占耕地建房",
            Category::IllegalBuilding => "违法建设",
            Category::Approved => "已批准",
            Category::Other => "其他",
            Category::UnknownLand => "未知地类",
        }
    }
}

/// Counts of one categorisation pass (for the log and the run summary).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CategoryCounts {
    pub kept: BTreeMap<&'static str, usize>,
    /// Off-cropland changes in no enforcement category, not emitted.
    pub dropped_off_cropland: usize,
}

/// Whether the patch lies on cropland by the model's fraction.
pub fn on_cropland(p: &Patch, params: &CategoryParams) -> bool {
    p.area_m2 > 0.0 && p.land.cropland_area_m2 / p.area_m2 >= params.cropland_min_fraction
}

/// The category of one patch; `house_signs`: see [`house_like`].
pub fn categorise(p: &Patch, params: &CategoryParams, house_signs: bool) -> Category {
    if !p.land.known {
        return Category::UnknownLand;
    }
    if p.land.approved_fraction >= params.approved_min_fraction && p.land.approved_fraction > 0.0 {
        return Category::Approved;
    }
    let t = p.change_type.as_str();
    if on_cropland(p, params) {
        return match t {
            "greenhouse" if house_signs => Category::GreenhouseHouse,
            "building" if p.land.near_village => Category::VillageHouseOnCropland,
            "building" | "hardened" => Category::NonAgricultural,
            "pond" | "orchard_forest" | "other" => Category::NonGrain,
            _ => Category::Other,
        };
    }
    if t == "building" {
        Category::IllegalBuilding
    } else {
        Category::Other
    }
}

/// House-like signs on a greenhouse patch (大棚房): textured or less film-white roofs, or a
/// building patch next to it. `building_near`: whether a building patch lies within
/// `greenhouse_house_neighbour_m`.
pub fn house_like(p: &Patch, params: &CategoryParams, building_near: bool) -> bool {
    let f = |k: &str| p.features.get(k).copied();
    building_near
        || f("btex_after").is_some_and(|v| v >= params.greenhouse_house_btex_min)
        || f("flat_after").is_some_and(|v| v < params.greenhouse_house_flat_max)
}

/// Sets `category` on every patch and drops off-cropland changes in no category (unless
/// `emit_non_cropland` or `keep_all`). Order is preserved.
pub fn assign(patches: &mut Vec<Patch>, params: &CategoryParams, keep_all: bool, areas: &AreaCalc) -> CategoryCounts {
    let near = buildings_near_greenhouses(patches, params.greenhouse_house_neighbour_m, areas);
    let mut counts = CategoryCounts::default();
    let mut keep = Vec::with_capacity(patches.len());
    for (i, p) in patches.iter_mut().enumerate() {
        let house = p.change_type == "greenhouse" && house_like(p, params, near[i]);
        let c = categorise(p, params, house);
        p.category = c.as_str().to_string();
        let dropped =
            c == Category::Other && p.land.known && !on_cropland(p, params) && !(params.emit_non_cropland || keep_all);
        keep.push(!dropped);
        if dropped {
            counts.dropped_off_cropland += 1;
        } else {
            *counts.kept.entry(c.as_str()).or_default() += 1;
        }
    }
    let mut it = keep.into_iter();
    patches.retain(|_| it.next().unwrap_or(true));
    counts
}

/// For each patch: is it a greenhouse with a `building` patch within `dist_m` metres?
fn buildings_near_greenhouses(patches: &[Patch], dist_m: f64, areas: &AreaCalc) -> Vec<bool> {
    let buildings: Vec<&Patch> = patches.iter().filter(|p| p.change_type == "building").collect();
    patches
        .iter()
        .map(|g| {
            if g.change_type != "greenhouse" || buildings.is_empty() {
                return false;
            }
            let d = dist_m / areas.m2_per_grid_unit(&g.shape).sqrt().max(1e-12);
            buildings
                .iter()
                .any(|b| boxes_within(g, b, d) && Euclidean.distance(&g.shape, &b.shape) <= d)
        })
        .collect()
}

fn boxes_within(a: &Patch, b: &Patch, d: f64) -> bool {
    match (a.shape.bounding_rect(), b.shape.bounding_rect()) {
        (Some(r), Some(s)) => {
            r.min().x - d <= s.max().x
                && s.min().x <= r.max().x + d
                && r.min().y - d <= s.max().y
                && s.min().y <= r.max().y + d
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::raster::Window;
    use crate::patches::LandUse;

    fn params() -> CategoryParams {
        crate::model::Model::builtin().unwrap().categories
    }

    fn square(x0: f64, side: f64) -> geo::MultiPolygon<f64> {
        geo::MultiPolygon(vec![geo::Polygon::new(
            geo::LineString::from(vec![
                (x0, 0.0),
                (x0 + side, 0.0),
                (x0 + side, side),
                (x0, side),
                (x0, 0.0),
            ]),
            vec![],
        )])
    }

    fn patch(t: &str, x0: f64, land: LandUse) -> Patch {
        Patch {
            id: String::new(),
            shape: square(x0, 20.0),
            pixel_box: Window::new(0, 0, 10, 10),
            area_m2: 400.0,
            features: Default::default(),
            change_type: t.into(),
            confidence: 0.9,
            evidence_rel: 1.5,
            change_confidence: 0.7,
            land,
            category: String::new(),
            chips: None,
        }
    }

    fn cropland() -> LandUse {
        LandUse {
            known: true,
            cropland_area_m2: 400.0,
            dlbm: "0103".into(),
            ..Default::default()
        }
    }

    fn forest() -> LandUse {
        LandUse {
            known: true,
            dlbm: "0301".into(),
            ..Default::default()
        }
    }

    #[test]
    fn cropland_changes_by_type() {
        let p = params();
        assert_eq!(
            categorise(&patch("building", 0.0, cropland()), &p, false),
            Category::NonAgricultural
        );
        assert_eq!(
            categorise(&patch("hardened", 0.0, cropland()), &p, false),
            Category::NonAgricultural
        );
        assert_eq!(
            categorise(&patch("pond", 0.0, cropland()), &p, false),
            Category::NonGrain
        );
        assert_eq!(
            categorise(&patch("orchard_forest", 0.0, cropland()), &p, false),
            Category::NonGrain
        );
        assert_eq!(
            categorise(&patch("greenhouse", 0.0, cropland()), &p, false),
            Category::Other
        );
        assert_eq!(
            categorise(&patch("greenhouse", 0.0, cropland()), &p, true),
            Category::GreenhouseHouse
        );
        let village = LandUse {
            near_village: true,
            ..cropland()
        };
        assert_eq!(
            categorise(&patch("building", 0.0, village), &p, false),
            Category::VillageHouseOnCropland
        );
    }

    #[test]
    fn approval_unknown_land_and_off_cropland() {
        let p = params();
        let approved = LandUse {
            approved_fraction: 0.8,
            ..cropland()
        };
        assert_eq!(
            categorise(&patch("building", 0.0, approved), &p, false),
            Category::Approved
        );
        assert_eq!(
            categorise(&patch("building", 0.0, LandUse::default()), &p, false),
            Category::UnknownLand
        );
        assert_eq!(
            categorise(&patch("building", 0.0, forest()), &p, false),
            Category::IllegalBuilding
        );
        assert_eq!(categorise(&patch("pond", 0.0, forest()), &p, false), Category::Other);
        // A patch with less cropland than the fraction is off cropland.
        let little = LandUse {
            cropland_area_m2: 100.0,
            ..cropland()
        };
        assert_eq!(categorise(&patch("pond", 0.0, little), &p, false), Category::Other);
    }

    #[test]
    fn assign_drops_uncategorised_off_cropland_unless_asked() {
        let mut p = params();
        let areas = AreaCalc::Projected { unit: 1.0 };
        let make = || {
            vec![
                patch("pond", 0.0, forest()),
                patch("building", 100.0, forest()),
                patch("pond", 200.0, cropland()),
            ]
        };
        let mut ps = make();
        let c = assign(&mut ps, &p, false, &areas);
        assert_eq!(ps.len(), 2);
        assert_eq!(c.dropped_off_cropland, 1);
        assert_eq!(ps[0].category, "违法建设");
        assert_eq!(ps[1].category, "非粮化");
        p.emit_non_cropland = true;
        let mut ps = make();
        assert_eq!(assign(&mut ps, &p, false, &areas).dropped_off_cropland, 0);
        assert_eq!(ps.len(), 3);
        // Without land use everything is kept.
        let mut ps = vec![patch("pond", 0.0, LandUse::default())];
        assign(&mut ps, &params(), false, &areas);
        assert_eq!(ps[0].category, "未知地类");
    }

    #[test]
    fn greenhouse_next_to_a_building_is_a_house_suspicion() {
        let p = params();
        let areas = AreaCalc::Projected { unit: 1.0 };
        let mut gh = patch("greenhouse", 0.0, cropland());
        gh.features.insert("flat_after".into(), 0.8);
        gh.features.insert("btex_after".into(), 0.0);
        // Building 5 m away (square from 25 to 45; greenhouse ends at 20).
        let mut ps = vec![gh.clone(), patch("building", 25.0, cropland())];
        assign(&mut ps, &p, false, &areas);
        assert_eq!(ps[0].category, "大棚房");
        // Building 80 m away: a plain greenhouse.
        let mut ps = vec![gh, patch("building", 100.0, cropland())];
        assign(&mut ps, &p, false, &areas);
        assert_eq!(ps[0].category, "其他");
    }
}
