//! What happens between the dates: clouds with their shadows, and the planted changes that are the
//! ground truth.
//!
//! Target changes (codes 1–5) are placed only on crop parcels, away from any cloud or cloud shadow
//! and at least 10 m from each other, so every truth object is observable and separate:
//! 1 building (new house(s) on a hardened yard), 2 pond (a parcel dug into a fish pond with a
//! fresh embankment), 3 orchard_forest (a parcel planted with trees in rows), 4 greenhouse (plastic
//! film strips), 5 hardened (bare, hardened or construction ground, possibly across several
//! parcels of one block). Code 9 marks non-target changes off cropland: forest clear-cuts and new
//! houses on vacant village lots — real changes an enforcement pipeline must not report.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::geom::{bbox_grow, bbox_overlap, bbox_touches_disc, BBox, Frame, Poly, Pt};
use super::scene::{jitter4, pick, roof_look, stream, z, Dlbm, Scene};
use super::spectra::*;

/// Change type codes written to `truth_labels.tif` and `truth_changes.geojson`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeType {
    /// New building on cropland (新增建筑).
    Building = 1,
    /// Pond dug on cropland (挖塘).
    Pond = 2,
    /// Orchard or forest planted on cropland (种植果树/林木).
    OrchardForest = 3,
    /// Greenhouse on cropland (大棚).
    Greenhouse = 4,
    /// Hardened or bulldozed ground on cropland (硬化/推土).
    Hardened = 5,
    /// A change off cropland (not reportable).
    NonTarget = 9,
}

impl ChangeType {
    /// The reportable types, planted on cropland.
    pub const TARGETS: [ChangeType; 5] = [
        ChangeType::Building,
        ChangeType::Pond,
        ChangeType::OrchardForest,
        ChangeType::Greenhouse,
        ChangeType::Hardened,
    ];

    /// Code in `truth_labels.tif`.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Name in `truth_changes.geojson` (snake case).
    pub fn name(self) -> &'static str {
        match self {
            ChangeType::Building => "building",
            ChangeType::Pond => "pond",
            ChangeType::OrchardForest => "orchard_forest",
            ChangeType::Greenhouse => "greenhouse",
            ChangeType::Hardened => "hardened",
            ChangeType::NonTarget => "non_target",
        }
    }

    /// Chinese name.
    pub fn name_cn(self) -> &'static str {
        match self {
            ChangeType::Building => "新增建筑",
            ChangeType::Pond => "挖塘",
            ChangeType::OrchardForest => "种植果树/林木",
            ChangeType::Greenhouse => "大棚",
            ChangeType::Hardened => "硬化/推土",
            ChangeType::NonTarget => "非耕地变化(非目标)",
        }
    }

    /// Share of target changes of this type.
    fn share(self) -> f64 {
        match self {
            ChangeType::Building => 0.30,
            ChangeType::Pond => 0.15,
            ChangeType::OrchardForest => 0.20,
            ChangeType::Greenhouse => 0.15,
            ChangeType::Hardened => 0.20,
            ChangeType::NonTarget => 0.0,
        }
    }
}

/// One truth object.
#[derive(Clone, Debug)]
pub struct TruthChange {
    pub poly: Poly,
    pub kind: ChangeType,
    pub dlbm_before: Dlbm,
}

/// One Gaussian puff of a cloud.
#[derive(Clone, Copy, Debug)]
pub struct Puff {
    pub c: Pt,
    pub r: f64,
    pub density: f32,
}

/// The after date's clouds; shadows are the same puffs displaced by `shadow_offset`.
#[derive(Clone, Debug)]
pub struct Clouds {
    pub puffs: Vec<Puff>,
    pub shadow_offset: Pt,
    /// Discs that contain every cloudy or shadowed point, for keeping changes clear of them.
    pub keep_out: Vec<(Pt, f64)>,
}

impl Clouds {
    /// Cloud clusters of 3–7 puffs, about `cover` of the scene in total.
    pub fn generate(seed: u64, extent: f64, cover: f64) -> Clouds {
        let mut rng = stream(seed, 10, 0);
        let km2 = (extent / 1000.0).powi(2);
        // One cluster covers about 0.05 km² on average (measured on generated scenes).
        // Scenes of a km² or so still get one cloud (so masking is always exercised); tiny test
        // scenes get none rather than one that covers them.
        let clusters = if cover <= 0.0 || km2 < 0.5 {
            0
        } else {
            ((cover * km2 / 0.05).round() as usize).max(1)
        };
        let angle: f64 = rng.random_range(2.0..2.6);
        let length = rng.random_range(60.0..100.0);
        let shadow_offset = [-angle.sin() * length, -angle.cos().abs() * length];
        let mut puffs = Vec::new();
        let mut keep_out = Vec::new();
        for _ in 0..clusters {
            let c = [rng.random_range(0.0..extent), rng.random_range(0.0..extent)];
            let big = rng.random_range(50.0..140.0f64).min(extent / 8.0);
            let mut reach: f64 = 0.0;
            for _ in 0..rng.random_range(3..=7) {
                let p = [c[0] + gauss(&mut rng) * big * 0.6, c[1] + gauss(&mut rng) * big * 0.6];
                let r = rng.random_range(0.45..1.0) * big;
                let d = ((p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2)).sqrt();
                reach = reach.max(d + 1.8 * r);
                puffs.push(Puff {
                    c: p,
                    r,
                    density: rng.random_range(0.7..1.3),
                });
            }
            keep_out.push((c, reach + 12.0));
            keep_out.push(([c[0] + shadow_offset[0], c[1] + shadow_offset[1]], reach + 12.0));
        }
        Clouds {
            puffs,
            shadow_offset,
            keep_out,
        }
    }

    pub fn clear_of(&self, b: &BBox) -> bool {
        self.keep_out.iter().all(|&(c, r)| !bbox_touches_disc(b, c, r))
    }
}

fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    (0..4).map(|_| rng.random::<f64>()).sum::<f64>() * 1.732 - 3.464
}

/// Plants the changes into the scene (after-only features) and returns the truth objects, plus
/// the number of changes of each type that found no room.
pub fn plant(
    scene: &mut Scene,
    clouds: &Clouds,
    per_km2: f64,
    nontarget_per_km2: f64,
) -> (Vec<TruthChange>, Vec<(ChangeType, usize)>) {
    let km2 = (scene.extent / 1000.0).powi(2);
    let mut planter = Planter {
        rng: stream(scene.seed, 11, 0),
        clouds,
        extent: scene.extent,
        placed: Vec::new(),
        used: vec![false; scene.crops.len()],
    };
    let wants = allocate((per_km2 * km2).round().max(5.0) as usize);
    let mut unplaced = Vec::new();
    let hardened = wants.iter().find(|w| w.0 == ChangeType::Hardened).map_or(0, |w| w.1);
    let got = planter.plant_hardened(scene, hardened);
    if got < hardened {
        unplaced.push((ChangeType::Hardened, hardened - got));
    }
    let mut rest: Vec<(ChangeType, usize)> = wants.into_iter().filter(|w| w.0 != ChangeType::Hardened).collect();
    planter.plant_on_parcels(scene, &mut rest);
    unplaced.extend(rest.into_iter().filter(|w| w.1 > 0));
    let nontarget = (nontarget_per_km2 * km2)
        .round()
        .max(if nontarget_per_km2 > 0.0 { 1.0 } else { 0.0 }) as usize;
    let missing = planter.plant_nontarget(scene, nontarget);
    if missing > 0 {
        unplaced.push((ChangeType::NonTarget, missing));
    }
    (planter.placed, unplaced)
}

/// Target counts per type: shares of `n`, at least one of each when `n >= 5` (largest remainder).
fn allocate(n: usize) -> Vec<(ChangeType, usize)> {
    let types = ChangeType::TARGETS;
    let mut counts: Vec<usize> = types
        .iter()
        .map(|t| ((t.share() * n as f64).floor() as usize).max(1))
        .collect();
    let mut order: Vec<usize> = (0..types.len()).collect();
    order.sort_by(|&a, &b| {
        let fa = types[a].share() * n as f64 - counts[a] as f64;
        let fb = types[b].share() * n as f64 - counts[b] as f64;
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    let mut k = 0;
    while counts.iter().sum::<usize>() < n {
        counts[order[k % order.len()]] += 1;
        k += 1;
    }
    types.iter().copied().zip(counts).collect()
}

struct Planter<'a> {
    rng: ChaCha8Rng,
    clouds: &'a Clouds,
    extent: f64,
    placed: Vec<TruthChange>,
    /// Crop parcels already carrying a change.
    used: Vec<bool>,
}

impl Planter<'_> {
    /// Whether a footprint lies inside the image (by 4 m) and is clear of clouds, shadows and (by
    /// 10 m) every earlier change.
    fn free(&self, poly: &Poly) -> bool {
        let b = poly.bbox();
        let near = bbox_grow(&b, 10.0);
        let inside = b[0] >= 4.0 && b[1] >= 4.0 && b[2] <= self.extent - 4.0 && b[3] <= self.extent - 4.0;
        inside && self.clouds.clear_of(&b) && self.placed.iter().all(|t| !bbox_overlap(&near, &t.poly.bbox()))
    }

    fn record(&mut self, poly: Poly, kind: ChangeType, dlbm_before: Dlbm) {
        self.placed.push(TruthChange {
            poly,
            kind,
            dlbm_before,
        });
    }

    /// Construction / hardened ground: a rectangle inside a whole field block, which may span
    /// several parcels (and so cross their ridges).
    fn plant_hardened(&mut self, scene: &mut Scene, want: usize) -> usize {
        let mut blocks: Vec<usize> = (0..scene.blocks.len())
            .filter(|&b| {
                !scene.blocks[b].parcels.is_empty() && scene.blocks[b].parcels.iter().all(|&p| scene.crops[p].whole)
            })
            .collect();
        blocks.shuffle(&mut self.rng);
        let mut got = 0;
        for b in blocks {
            if got == want {
                break;
            }
            let block = scene.blocks[b].clone();
            let (w, h) = (self.rng.random_range(15.0..45.0), self.rng.random_range(15.0..45.0));
            let c = point_in(&mut self.rng, &block.poly);
            let theta = block.frame.sin.atan2(block.frame.cos) + self.rng.random_range(-0.3..0.3);
            let site = Poly::rect(c, w, h, theta);
            if !block.poly.inset(1.0).contains_poly(&site) || !self.free(&site) {
                continue;
            }
            let touched: Vec<usize> = block
                .parcels
                .iter()
                .copied()
                .filter(|&p| scene.land[scene.crops[p].land].poly.intersect(&site).area() > 0.0)
                .collect();
            if touched.iter().any(|&p| self.used[p]) {
                continue;
            }
            let dlbm = dominant_dlbm(scene, &touched, &site);
            for p in touched {
                self.used[p] = true;
            }
            let look = Look {
                fg: scale(
                    mix(&[(CONCRETE, self.rng.random_range(0.3..0.8)), (SOIL_RED, 0.5)]),
                    self.rng.random_range(0.85..1.1),
                ),
                bg: scale(
                    mix(&[(SOIL_RED, 0.7), (SOIL_BROWN, 0.3)]),
                    self.rng.random_range(0.8..1.05),
                ),
                pattern: Pattern::Blotches,
                texture: Texture::Rough,
            };
            scene.add_feature(site.clone(), z::CHANGE_GROUND, None, Some(look));
            self.record(site, ChangeType::Hardened, dlbm);
            got += 1;
        }
        got
    }

    /// Buildings, ponds, tree planting and greenhouses, one per crop parcel, in random parcel order.
    fn plant_on_parcels(&mut self, scene: &mut Scene, wants: &mut [(ChangeType, usize)]) {
        let mut order: Vec<usize> = (0..scene.crops.len()).collect();
        order.shuffle(&mut self.rng);
        for p in order {
            let open: Vec<(usize, f32)> = wants
                .iter()
                .enumerate()
                .filter(|w| w.1 .1 > 0)
                .map(|(i, w)| (i, w.1 as f32))
                .collect();
            if open.is_empty() {
                break;
            }
            let parcel = scene.land[scene.crops[p].land].poly.clone();
            if self.used[p] || !self.free(&parcel) {
                continue;
            }
            let slot = pick(&mut self.rng, &open);
            let frame = scene.crops[p].frame;
            let dlbm = scene.land[scene.crops[p].land].dlbm;
            let made = match wants[slot].0 {
                ChangeType::Building => self.building(scene, &parcel, frame),
                ChangeType::Pond => self.pond(scene, &parcel),
                ChangeType::OrchardForest => self.planting(scene, &parcel, frame),
                _ => self.greenhouse(scene, &parcel, frame),
            };
            if let Some(footprint) = made {
                self.used[p] = true;
                self.record(footprint, wants[slot].0, dlbm);
                wants[slot].1 -= 1;
            }
        }
    }

    /// New house(s) on a hardened yard inside the parcel. Returns the yard.
    fn building(&mut self, scene: &mut Scene, parcel: &Poly, frame: Frame) -> Option<Poly> {
        let rng = &mut self.rng;
        let n_houses = pick(rng, &[(1usize, 0.6), (2, 0.3), (3, 0.1)]);
        let (w, h, gap) = (
            rng.random_range(6.0..10.0),
            rng.random_range(6.0..11.0),
            rng.random_range(1.0..2.0),
        );
        let m: [f64; 4] = [0; 4].map(|_| rng.random_range(2.0..5.0));
        let yard_w = n_houses as f64 * w + (n_houses - 1) as f64 * gap + m[0] + m[1];
        let yard_h = h + m[2] + m[3];
        let bb = parcel.bbox();
        let theta = frame.sin.atan2(frame.cos);
        let yard = (0..16)
            .map(|_| {
                Poly::rect(
                    [rng.random_range(bb[0]..bb[2]), rng.random_range(bb[1]..bb[3])],
                    yard_w,
                    yard_h,
                    theta,
                )
            })
            .find(|y| parcel.inset(0.5).contains_poly(y))?;
        let c = yard.centroid();
        let local = Frame::new(c, theta);
        let yard_look = Look::plain(
            scale(
                mix(&[(CONCRETE, self.rng.random_range(0.55..1.0)), (SOIL_RED, 0.2)]),
                self.rng.random_range(0.85..1.05),
            ),
            Texture::Road,
        );
        scene.add_feature(yard.clone(), z::CHANGE_GROUND, None, Some(yard_look));
        for i in 0..n_houses {
            let u = -yard_w / 2.0 + m[0] + w / 2.0 + i as f64 * (w + gap);
            let v = -yard_h / 2.0 + m[2] + h / 2.0;
            let house = Poly::rect(local.to_world(u, v), w, h, theta);
            let roof = roof_look(&mut self.rng, &scene.roofs, local, house.centroid(), w >= h);
            let height = self.rng.random_range(5.0..12.0);
            scene.add_house(house, &yard, roof, height, [z::CHANGE_SHADOW, z::CHANGE_HOUSE], false);
        }
        Some(yard)
    }

    /// The parcel dug into a fish pond: fresh earth bank around open water.
    fn pond(&mut self, scene: &mut Scene, parcel: &Poly) -> Option<Poly> {
        let area = parcel.area();
        let water = parcel.inset(2.0);
        if !(150.0..5000.0).contains(&area) || water.area() < 60.0 {
            return None;
        }
        let rng = &mut self.rng;
        let bank = Look::plain(
            scale(mix(&[(SOIL_RED, 0.8), (GRASS, 0.2)]), rng.random_range(0.9..1.1)),
            Texture::Soil,
        );
        let fill = mix(&[(WATER, rng.random_range(0.45..0.8)), (ALGAE, 0.15), (SOIL_BROWN, 0.15)]);
        scene.add_feature(parcel.clone(), z::CHANGE_GROUND, None, Some(bank));
        scene.add_feature(water, z::CHANGE_DETAIL, None, Some(Look::plain(fill, Texture::Water)));
        Some(parcel.clone())
    }

    /// Tree planting: young eucalyptus (dense, small crowns) or fruit trees in wider rows.
    fn planting(&mut self, scene: &mut Scene, parcel: &Poly, frame: Frame) -> Option<Poly> {
        if parcel.area() < 150.0 {
            return None;
        }
        let rng = &mut self.rng;
        let (period, radius, crown) = if rng.random_bool(0.3) {
            (
                rng.random_range(4.0..4.8),
                rng.random_range(1.8..2.4),
                scale(CANOPY, rng.random_range(0.9..1.1)),
            )
        } else {
            (
                rng.random_range(5.2..7.2),
                rng.random_range(1.8..2.8),
                scale(mix(&[(CANOPY, 0.6), (VEG, 0.4)]), rng.random_range(0.9..1.1)),
            )
        };
        let look = Look {
            fg: crown,
            bg: mix(&[(SOIL_RED, rng.random_range(0.5..0.85)), (GRASS, 0.25)]),
            pattern: Pattern::Crowns {
                angle: (frame.sin.atan2(frame.cos) + rng.random_range(-0.05..0.05)) as f32,
                period,
                radius,
                jitter: 0.05,
            },
            texture: Texture::Orchard,
        };
        scene.add_feature(parcel.clone(), z::CHANGE_GROUND, None, Some(look));
        Some(parcel.clone())
    }

    /// Plastic greenhouses: film strips along the parcel with soil paths between.
    fn greenhouse(&mut self, scene: &mut Scene, parcel: &Poly, frame: Frame) -> Option<Poly> {
        let site = parcel.inset(1.0);
        if site.area() < 150.0 {
            return None;
        }
        let rng = &mut self.rng;
        let look = Look {
            fg: scale4(PLASTIC, jitter4(rng, 0.8, 1.02)),
            bg: mix(&[(SOIL_BROWN, 0.6), (GRASS, 0.4)]),
            pattern: Pattern::Strips {
                angle: frame.sin.atan2(frame.cos) as f32,
                period: rng.random_range(8.0..11.0),
                duty: rng.random_range(0.62..0.78),
            },
            texture: Texture::Film,
        };
        scene.add_feature(site.clone(), z::CHANGE_GROUND, None, Some(look));
        Some(site)
    }

    /// Non-target changes off cropland, alternating clear-cuts and village houses. Returns how
    /// many found no place.
    fn plant_nontarget(&mut self, scene: &mut Scene, want: usize) -> usize {
        let mut forests = scene.forests.clone();
        forests.shuffle(&mut self.rng);
        let mut lots: Vec<(usize, usize)> = scene
            .villages
            .iter()
            .enumerate()
            .flat_map(|(v, vil)| (0..vil.vacant_lots.len()).map(move |l| (v, l)))
            .collect();
        lots.shuffle(&mut self.rng);
        let (mut forests, mut lots) = (forests.into_iter(), lots.into_iter());
        let mut missing = 0;
        for k in 0..want {
            // Alternate which kind is tried first; fall back to the other kind.
            let clear_cut_first = k % 2 == 0;
            let mut done = false;
            for attempt in 0..2 {
                done = if (attempt == 0) == clear_cut_first {
                    self.clear_cut(scene, &mut forests)
                } else {
                    self.village_house(scene, &mut lots)
                };
                if done {
                    break;
                }
            }
            missing += (!done) as usize;
        }
        missing
    }

    fn clear_cut(&mut self, scene: &mut Scene, forests: &mut impl Iterator<Item = usize>) -> bool {
        for idx in forests.by_ref() {
            let forest = scene.land[idx].poly.clone();
            for _ in 0..8 {
                let c = point_in(&mut self.rng, &forest);
                let site = Poly::rect(
                    c,
                    self.rng.random_range(30.0..90.0),
                    self.rng.random_range(30.0..90.0),
                    self.rng.random_range(0.0..std::f64::consts::PI),
                );
                if forest.inset(2.0).contains_poly(&site) && self.free(&site) {
                    let look = Look {
                        fg: mix(&[(SOIL_RED, 0.6), (STRAW, 0.4)]),
                        bg: mix(&[(CANOPY, 0.5), (SOIL_BROWN, 0.5)]),
                        pattern: Pattern::Blotches,
                        texture: Texture::Rough,
                    };
                    scene.add_feature(site.clone(), z::CHANGE_GROUND, None, Some(look));
                    self.record(site, ChangeType::NonTarget, Dlbm::Forest);
                    return true;
                }
            }
        }
        false
    }

    fn village_house(&mut self, scene: &mut Scene, lots: &mut impl Iterator<Item = (usize, usize)>) -> bool {
        for (v, l) in lots.by_ref() {
            let house = scene.villages[v].vacant_lots[l].clone();
            if !self.free(&house) {
                continue;
            }
            let frame = scene.villages[v].frame;
            let long_side_u = self.rng.random_bool(0.5);
            let roof = roof_look(&mut self.rng, &scene.roofs, frame, house.centroid(), long_side_u);
            // The shadow may fall on the village ground around the lot.
            let around = grow_rect(&house, 3.0);
            scene.add_house(
                house.clone(),
                &around,
                roof,
                self.rng.random_range(5.0..11.0),
                [z::CHANGE_SHADOW, z::CHANGE_HOUSE],
                false,
            );
            self.record(house, ChangeType::NonTarget, Dlbm::Village);
            return true;
        }
        false
    }
}

/// The polygon's bounding box grown outward by `d`.
fn grow_rect(poly: &Poly, d: f64) -> Poly {
    let b = bbox_grow(&poly.bbox(), d);
    Poly::rect_xy(b[0], b[1], b[2], b[3])
}

/// A random point inside a convex polygon (rejection from its box, centroid as fallback).
fn point_in(rng: &mut ChaCha8Rng, poly: &Poly) -> Pt {
    let b = poly.bbox();
    for _ in 0..32 {
        let p = [
            rng.random_range(b[0]..b[2].max(b[0] + 1e-6)),
            rng.random_range(b[1]..b[3].max(b[1] + 1e-6)),
        ];
        if poly.contains(p) {
            return p;
        }
    }
    poly.centroid()
}

/// The land class covering most of `site` among the given crop parcels.
fn dominant_dlbm(scene: &Scene, parcels: &[usize], site: &Poly) -> Dlbm {
    parcels
        .iter()
        .map(|&p| {
            let land = &scene.land[scene.crops[p].land];
            (land.poly.intersect(site).area(), land.dlbm)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(Dlbm::Paddy, |x| x.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_gives_every_type_and_the_right_total() {
        for n in [5, 6, 12, 21, 335] {
            let a = allocate(n);
            assert_eq!(a.iter().map(|x| x.1).sum::<usize>(), n);
            assert!(a.iter().all(|x| x.1 >= 1));
        }
        let a = allocate(100);
        assert_eq!(a[0], (ChangeType::Building, 30));
    }
}
