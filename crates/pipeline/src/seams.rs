//! Merging patches split by tile seams.
//!
//! A change that straddles the edge between two tiles is detected twice, once per tile, as two
//! polygons that touch (or overlap, where tiles overlap). Reviewers must see it once, so patches of
//! the same acquisition date from *different* tiles that lie within `seam_tolerance_m` of each
//! other are joined (union-find over an R-tree of their envelopes) and replaced by the union of
//! their geometries. Patches of one tile are never joined: the engine already separated them.

use geo::{BooleanOps, BoundingRect, Distance, Euclidean, GeodesicArea, MultiPolygon};
use rstar::{primitives::GeomWithData, RTree, AABB};
use serde_json::Value;

use super::patchset::{num, Patch};

/// Metres per degree of latitude; used to turn the tolerance into degrees.
const M_PER_DEG: f64 = 111_320.0;
/// Square metres per 亩.
const M2_PER_MU: f64 = 10_000.0 / 15.0;

/// Joins seam-split patches; the result keeps the input order of each group's first member.
pub fn merge(patches: Vec<Patch>, tolerance_m: f64) -> Vec<Patch> {
    let tol = tolerance_m / M_PER_DEG;
    let groups = touching_groups(&patches, tol);
    let mut slots: Vec<Option<Patch>> = patches.into_iter().map(Some).collect();
    let mut out = Vec::new();
    for group in groups {
        let members: Vec<Patch> = group.iter().filter_map(|&i| slots[i].take()).collect();
        out.push(if members.len() == 1 {
            members.into_iter().next().expect("one member")
        } else {
            join(members, tol)
        });
    }
    out
}

/// Groups of patch indices (each sorted, groups ordered by first index) that touch across tiles.
fn touching_groups(patches: &[Patch], tol: f64) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..patches.len()).collect();
    let boxes: Vec<GeomWithData<rstar::primitives::Rectangle<[f64; 2]>, usize>> = patches
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.pixel_crs)
        .filter_map(|(i, p)| {
            let r = p.geom.bounding_rect()?;
            let rect = rstar::primitives::Rectangle::from_corners(
                [r.min().x - tol, r.min().y - tol],
                [r.max().x + tol, r.max().y + tol],
            );
            Some(GeomWithData::new(rect, i))
        })
        .collect();
    let tree = RTree::bulk_load(boxes.clone());
    for b in &boxes {
        let i = b.data;
        let env: AABB<[f64; 2]> = rstar::RTreeObject::envelope(b.geom());
        for other in tree.locate_in_envelope_intersecting(&env) {
            let j = other.data;
            if j <= i || !same_seam_candidates(&patches[i], &patches[j]) {
                continue;
            }
            if Euclidean.distance(&patches[i].geom, &patches[j].geom) <= tol {
                union(&mut parent, i, j);
            }
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..patches.len() {
        groups.entry(find(&mut parent, i)).or_default().push(i);
    }
    let mut v: Vec<Vec<usize>> = groups.into_values().collect();
    v.sort_by_key(|g| g[0]);
    v
}

fn same_seam_candidates(a: &Patch, b: &Patch) -> bool {
    a.tile != b.tile && a.after_date == b.after_date && !a.pixel_crs && !b.pixel_crs
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

/// Union of the members' geometries; hair-line gaps left by reprojection along the seam are
/// closed by a tiny outward-then-inward buffer (only when a plain union leaves pieces).
fn union_geometry(members: &[Patch], tol: f64) -> MultiPolygon<f64> {
    let plain = members
        .iter()
        .skip(1)
        .fold(members[0].geom.clone(), |acc, p| acc.union(&p.geom));
    if plain.0.len() <= 1 || tol <= 0.0 {
        return plain;
    }
    use geo::Buffer;
    let half = tol / 2.0;
    let grown = members
        .iter()
        .map(|p| p.geom.buffer(half))
        .reduce(|a, b| a.union(&b))
        .unwrap_or(plain.clone());
    let closed = grown.buffer(-half);
    if closed.0.is_empty() {
        plain
    } else {
        closed
    }
}

/// One patch from several: geometry = union, areas recomputed, the other properties taken from
/// the largest member (so type, category and chips describe most of the change).
fn join(mut members: Vec<Patch>, tol: f64) -> Patch {
    let geom = union_geometry(&members, tol);
    let sum_area: f64 = members.iter().map(Patch::area_m2).sum();
    let sum = |k: &str| members.iter().map(|p| num(&p.props, k)).sum::<f64>();
    let (crop, basic) = (sum("cropland_area_m2"), sum("basic_farmland_area_m2"));
    let conf_weighted = members
        .iter()
        .map(|p| num(&p.props, "confidence") * p.area_m2())
        .sum::<f64>();
    let any_yes = |k: &str| {
        members
            .iter()
            .any(|p| p.props.get(k).and_then(Value::as_str) == Some("是"))
    };
    let (sfyn, sfhx) = (any_yes("SFYN"), any_yes("SFHX"));
    members.sort_by(|a, b| {
        b.area_m2()
            .total_cmp(&a.area_m2())
            .then_with(|| (&a.pair, &a.source_id).cmp(&(&b.pair, &b.source_id)))
    });
    let mut first = members.swap_remove(0);
    let area = geom.geodesic_area_unsigned();
    let scale = if sum_area > 0.0 { area / sum_area } else { 1.0 };
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    let set = |p: &mut Patch, k: &str, v: f64| {
        if let Some(n) = serde_json::Number::from_f64(v) {
            p.props.insert(k.to_string(), Value::Number(n));
        }
    };
    set(&mut first, "area_m2", round2(area));
    set(&mut first, "JCMJ", round2(area));
    set(&mut first, "area_mu", round2(area / M2_PER_MU));
    set(&mut first, "JCMJ_MU", round2(area / M2_PER_MU));
    set(&mut first, "cropland_area_m2", round2(crop * scale));
    set(&mut first, "GDMJ", round2(crop * scale));
    set(&mut first, "basic_farmland_area_m2", round2(basic * scale));
    set(&mut first, "YJJBNTMJ", round2(basic * scale));
    if sum_area > 0.0 {
        set(&mut first, "confidence", (conf_weighted / sum_area * 1e4).round() / 1e4);
    }
    for (k, yes) in [("SFYN", sfyn), ("SFHX", sfhx)] {
        if first.props.contains_key(k) {
            first.props.insert(k.into(), Value::from(if yes { "是" } else { "否" }));
        }
    }
    if let Some(c) = geo::Centroid::centroid(&geom) {
        set(&mut first, "ZXX", super::archive::round7(c.x()));
        set(&mut first, "ZXY", super::archive::round7(c.y()));
    }
    first.set_geom(geom);
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    fn patch(tile: &str, x0: f64, x1: f64) -> Patch {
        let p = polygon![(x: x0, y: 0.0), (x: x1, y: 0.0), (x: x1, y: 0.001), (x: x0, y: 0.001)];
        let g = MultiPolygon(vec![p]);
        let mut props = serde_json::Map::new();
        props.insert("area_m2".into(), Value::from(g.geodesic_area_unsigned()));
        Patch {
            tile: tile.into(),
            pair: format!("{tile}@2024-05-01"),
            after_date: "2024-05-01".into(),
            source_id: "P0001".into(),
            props,
            geometry_json: serde_json::to_value(geojson::Geometry::from(&g)).unwrap(),
            geom: g,
            pixel_crs: false,
        }
    }

    #[test]
    fn touching_patches_of_adjacent_tiles_become_one() {
        let out = merge(vec![patch("a", 0.0, 0.001), patch("b", 0.001, 0.002)], 0.5);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].geom.0.len(), 1, "one polygon, no seam");
        let want = patch("x", 0.0, 0.002).area_m2();
        assert!((out[0].area_m2() - want).abs() < 1.0, "{} vs {want}", out[0].area_m2());
    }

    #[test]
    fn hairline_gap_is_closed() {
        let out = merge(vec![patch("a", 0.0, 0.001), patch("b", 0.0010000009, 0.002)], 0.5);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].geom.0.len(), 1);
    }

    #[test]
    fn same_tile_or_far_apart_are_kept() {
        assert_eq!(
            merge(vec![patch("a", 0.0, 0.001), patch("a", 0.001, 0.002)], 0.5).len(),
            2
        );
        assert_eq!(
            merge(vec![patch("a", 0.0, 0.001), patch("b", 0.0011, 0.002)], 0.5).len(),
            2
        );
    }
}
