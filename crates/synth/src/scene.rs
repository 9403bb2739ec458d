//! The scene as vectors: land-use regions, field blocks, parcels, villages with houses, forest,
//! orchards, fish ponds and roads, each with its look on the before and after dates.
//!
//! Layout, coarse to fine:
//! * straight main roads (公路用地 1003) cross the scene; every other polygon keeps a verge off them;
//! * a jittered grid of sites makes Voronoi regions (~640 m) that each get a land-use kind;
//! * farmland regions hold a rotated grid of field blocks separated by 4 m field roads, each block
//!   cut into parcels 20–60 m wide (水田 0101 or 旱地 0103), some blocks given over to a village
//!   (农村宅基地 0702) with houses on lots;
//! * forest (乔木林地 0301), orchard (果园 0201, crown rows) and fish-pond (坑塘水面 1104) regions.
//!
//! Each region, block and lot draws from its own random stream keyed by (seed, what, index), so
//! the layout does not depend on iteration or thread order. The polygons that carry a DLBM code
//! are exactly the land-use layer written to `landuse.gpkg`.

use std::f64::consts::FRAC_PI_2;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::geom::{BBox, Band, Frame, HalfPlane, Poly, Pt};
use super::noise::{hash3, key, unit};
use super::spectra::*;

/// Mean spacing of region sites (metres).
const REGION_SPACING: f64 = 640.0;
/// Scene features extend this far beyond the image so edges and blur halos are not empty.
const SCENE_MARGIN: f64 = 40.0;
/// Width of the field roads between field blocks (metres).
const FIELD_ROAD: f64 = 4.0;
/// Verge kept between a road's edge and the land beside it (metres).
const ROAD_VERGE: f64 = 1.5;

/// Land-use class codes of the third national land survey (三调) used in the scene.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dlbm {
    Paddy,
    DryLand,
    Orchard,
    Forest,
    Village,
    Road,
    Pond,
}

impl Dlbm {
    pub fn code(self) -> &'static str {
        match self {
            Dlbm::Paddy => "0101",
            Dlbm::DryLand => "0103",
            Dlbm::Orchard => "0201",
            Dlbm::Forest => "0301",
            Dlbm::Village => "0702",
            Dlbm::Road => "1003",
            Dlbm::Pond => "1104",
        }
    }

    pub fn name_cn(self) -> &'static str {
        match self {
            Dlbm::Paddy => "水田",
            Dlbm::DryLand => "旱地",
            Dlbm::Orchard => "果园",
            Dlbm::Forest => "乔木林地",
            Dlbm::Village => "农村宅基地",
            Dlbm::Road => "公路用地",
            Dlbm::Pond => "坑塘水面",
        }
    }
}

/// Drawing order: later layers paint over earlier ones.
pub mod z {
    pub const GROUND: u8 = 0;
    pub const LAND: u8 = 1;
    pub const WATER: u8 = 2;
    pub const HOUSE_SHADOW: u8 = 3;
    pub const HOUSE: u8 = 4;
    pub const CHANGE_GROUND: u8 = 5;
    pub const CHANGE_DETAIL: u8 = 6;
    pub const CHANGE_SHADOW: u8 = 7;
    pub const CHANGE_HOUSE: u8 = 8;
    pub const ROAD: u8 = 9;
}

/// A rendered polygon and its look on each date (`None`: absent on that date).
#[derive(Clone, Debug)]
pub struct Feature {
    pub poly: Poly,
    pub bbox: BBox,
    pub z: u8,
    pub before: Option<Look>,
    pub after: Option<Look>,
}

/// A polygon of the land-use layer.
#[derive(Clone, Debug)]
pub struct LandParcel {
    pub poly: Poly,
    pub dlbm: Dlbm,
}

/// A crop parcel, with what the change planter needs to know about it.
#[derive(Clone, Debug)]
pub struct CropParcel {
    pub land: usize,
    pub frame: Frame,
    /// The full field rectangle survived clipping (not cut by a region edge or a road).
    pub whole: bool,
}

/// A field block: its rectangle in the farmland frame and its parcels.
#[derive(Clone, Debug)]
pub struct Block {
    pub poly: Poly,
    pub frame: Frame,
    pub parcels: Vec<usize>,
}

/// A village: its ground pieces and empty house lots (where a new house can appear).
#[derive(Clone, Debug)]
pub struct Village {
    pub frame: Frame,
    pub vacant_lots: Vec<Poly>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegionKind {
    Farm,
    FarmVillage,
    Forest,
    Orchard,
    Ponds,
}

/// The whole before-date scene plus crop-state changes; changes are added by `changes`.
pub struct Scene {
    /// Image side in metres.
    pub extent: f64,
    pub seed: u64,
    pub features: Vec<Feature>,
    pub land: Vec<LandParcel>,
    pub crops: Vec<CropParcel>,
    pub blocks: Vec<Block>,
    pub villages: Vec<Village>,
    /// Land-use indices of forest pieces.
    pub forests: Vec<usize>,
    pub roads: Vec<Band>,
    /// Crop parcels whose state differs between the dates (seasonal, not a real change).
    pub seasonal_changes: usize,
    /// Where a house's shadow falls on the before and after dates, in metres per metre of house
    /// height: the sun's azimuth and elevation differ between acquisitions, so village shadows
    /// move a little (a classic false change that is not on cropland).
    pub shadow_dir: [Pt; 2],
    seasonal_share: f64,
    /// Roof materials, their shares and whether they are pitched.
    pub roofs: Vec<(Spectrum, f32, bool)>,
}

/// A random stream private to one purpose and index.
pub fn stream(seed: u64, what: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(hash3(key(seed, what), index as i64, 0))
}

mod streams {
    pub const ROADS: u64 = 1;
    pub const REGION: u64 = 2;
    pub const SITE: u64 = 3;
    pub const GLOBAL: u64 = 4;
}

impl Scene {
    /// Lays out the before scene for an image `extent` metres on a side.
    pub fn build(extent: f64, seed: u64, seasonal_share: f64, roofs: Vec<(Spectrum, f32, bool)>) -> Scene {
        let mut global = stream(seed, streams::GLOBAL, 0);
        // Sun in the south-east: shadows fall north-west, about half the house height long.
        let az: f64 = global.random_range(2.0..2.6);
        let az_after = az + global.random_range(-0.15..0.15);
        let len_after = 0.5 * global.random_range(0.8..1.25);
        let mut scene = Scene {
            extent,
            seed,
            features: Vec::new(),
            land: Vec::new(),
            crops: Vec::new(),
            blocks: Vec::new(),
            villages: Vec::new(),
            forests: Vec::new(),
            roads: Vec::new(),
            seasonal_changes: 0,
            shadow_dir: [
                [-az.sin() * 0.5, -az.cos().abs() * 0.5],
                [-az_after.sin() * len_after, -az_after.cos().abs() * len_after],
            ],
            seasonal_share,
            roofs,
        };
        scene.roads = scene.make_roads();
        let n = (extent / REGION_SPACING).ceil() as i64 + 1;
        for j in -1..=n {
            for i in -1..=n {
                scene.add_region(i, j, n);
            }
        }
        scene.add_roads();
        scene
    }

    /// The box features are generated in: the image plus a margin.
    pub fn build_box(&self) -> Poly {
        let m = SCENE_MARGIN;
        Poly::rect_xy(-m, -m, self.extent + m, self.extent + m)
    }

    /// The image itself.
    pub fn image_box(&self) -> Poly {
        Poly::rect_xy(0.0, 0.0, self.extent, self.extent)
    }

    pub fn add_feature(&mut self, poly: Poly, z: u8, before: Option<Look>, after: Option<Look>) {
        if poly.is_empty() || poly.area() < 1e-3 {
            return;
        }
        let bbox = poly.bbox();
        self.features.push(Feature {
            poly,
            bbox,
            z,
            before,
            after,
        });
    }

    /// A feature that looks the same on both dates.
    fn add_static(&mut self, poly: Poly, z: u8, look: Look) {
        self.add_feature(poly, z, Some(look), Some(look));
    }

    fn add_land(&mut self, poly: Poly, dlbm: Dlbm) -> usize {
        self.land.push(LandParcel { poly, dlbm });
        self.land.len() - 1
    }

    /// Splits a polygon off every road (with verge): the pieces that remain land.
    fn off_roads(&self, poly: Poly) -> Vec<Poly> {
        self.roads.iter().fold(vec![poly], |pieces, road| {
            pieces.iter().flat_map(|p| road.split_off(p, ROAD_VERGE)).collect()
        })
    }

    /// Main roads: about one per 3 km in each direction, at least one.
    fn make_roads(&self) -> Vec<Band> {
        let mut rng = stream(self.seed, streams::ROADS, 0);
        let per_axis = (self.extent / 3000.0).round() as usize;
        let mut roads = Vec::new();
        for (axis, count) in [(0, per_axis.max(1)), (1, per_axis)] {
            for _ in 0..count {
                let angle = rng.random_range(-0.15..0.15) + if axis == 0 { 0.0 } else { FRAC_PI_2 };
                let (nx, ny) = (-f64::sin(angle), f64::cos(angle));
                let at = rng.random_range(0.12..0.88) * self.extent;
                let p = if axis == 0 {
                    [self.extent / 2.0, at]
                } else {
                    [at, self.extent / 2.0]
                };
                roads.push(Band {
                    nx,
                    ny,
                    c: nx * p[0] + ny * p[1],
                    half_width: rng.random_range(2.5..4.0),
                });
            }
        }
        roads
    }

    /// Road surfaces (drawn on top) and their land-use pieces (no overlaps at crossings).
    fn add_roads(&mut self) {
        let mut rng = stream(self.seed, streams::ROADS, 1);
        let (bbox, image) = (self.build_box().bbox(), self.image_box());
        for k in 0..self.roads.len() {
            let road = self.roads[k];
            let surface = if rng.random_bool(0.5) {
                ASPHALT
            } else {
                scale(CONCRETE, 0.85)
            };
            let look = Look::plain(scale(surface, rng.random_range(0.9..1.15)), Texture::Road);
            let poly = road.polygon(&bbox);
            self.add_static(poly.intersect(&self.build_box()), z::ROAD, look);
            let earlier = &self.roads[..k];
            let pieces = earlier.iter().fold(vec![poly.intersect(&image)], |ps, r| {
                ps.iter().flat_map(|p| r.split_off(p, 0.0)).collect()
            });
            for piece in pieces.into_iter().filter(|p| p.area() > 1.0) {
                self.add_land(piece, Dlbm::Road);
            }
        }
    }

    /// The site of region (i, j): a jittered grid point, the same whichever region asks.
    fn site(&self, i: i64, j: i64) -> Pt {
        let h = hash3(key(self.seed, streams::SITE), i, j);
        let jx = unit(h) as f64 - 0.5;
        let jy = unit(h.rotate_left(24)) as f64 - 0.5;
        [
            (i as f64 + 0.5 + 0.7 * jx) * REGION_SPACING,
            (j as f64 + 0.5 + 0.7 * jy) * REGION_SPACING,
        ]
    }

    /// The Voronoi cell of site (i, j), clipped to the build box.
    fn region_polygon(&self, i: i64, j: i64) -> Poly {
        let s = self.site(i, j);
        let r = 2.0 * REGION_SPACING;
        let mut cell = Poly::rect_xy(s[0] - r, s[1] - r, s[0] + r, s[1] + r);
        for dj in -2..=2 {
            for di in -2..=2 {
                if di == 0 && dj == 0 {
                    continue;
                }
                let t = self.site(i + di, j + dj);
                let (a, b) = (t[0] - s[0], t[1] - s[1]);
                let c = (t[0] * t[0] + t[1] * t[1] - s[0] * s[0] - s[1] * s[1]) / 2.0;
                cell = cell.clip(&HalfPlane { a, b, c });
            }
        }
        cell.intersect(&self.build_box())
    }

    fn add_region(&mut self, i: i64, j: i64, n: i64) {
        let cell = self.region_polygon(i, j);
        if cell.area() < 100.0 {
            return;
        }
        let index = ((j + 1) * (n + 2) + (i + 1)) as u64;
        let mut rng = stream(self.seed, streams::REGION, index);
        let kind = pick(
            &mut rng,
            &[
                (RegionKind::Farm, 0.50),
                (RegionKind::FarmVillage, 0.22),
                (RegionKind::Forest, 0.14),
                (RegionKind::Orchard, 0.07),
                (RegionKind::Ponds, 0.07),
            ],
        );
        let site = self.site(i, j);
        let frame = Frame::new(site, rng.random_range(-0.7..0.7));
        let inner = cell.inset(1.0);
        let ground = match kind {
            RegionKind::Ponds => mix(&[(GRASS, 0.5), (SOIL_BROWN, 0.5)]),
            _ => mix(&[(GRASS, 0.45), (SOIL_BROWN, 0.35), (CONCRETE, 0.2)]),
        };
        let ground = scale(ground, rng.random_range(0.9..1.1));
        self.add_static(cell, z::GROUND, Look::plain(ground, Texture::Soil));
        match kind {
            RegionKind::Farm => self.add_farmland(&inner, frame, &mut rng, false),
            RegionKind::FarmVillage => self.add_farmland(&inner, frame, &mut rng, true),
            RegionKind::Forest => self.add_forest(&inner, &mut rng),
            RegionKind::Orchard => self.add_orchards(&inner, frame, &mut rng),
            RegionKind::Ponds => self.add_ponds(&inner, frame, &mut rng),
        }
    }

    /// Field blocks on a rotated grid, split into parcels; optionally a village over a few blocks.
    fn add_farmland(&mut self, inner: &Poly, frame: Frame, rng: &mut ChaCha8Rng, village: bool) {
        let paddy_region = rng.random_bool(0.55);
        let (bu, bv) = (rng.random_range(80.0..180.0), rng.random_range(100.0..240.0));
        let village_blocks = village.then(|| {
            let (i0, j0) = (rng.random_range(-1..=0), rng.random_range(-1..=0));
            (i0, i0 + rng.random_range(1..=2), j0, j0 + rng.random_range(1..=2))
        });
        let (umin, vmin, umax, vmax) = local_bounds(inner, &frame);
        let half_gap = FIELD_ROAD / 2.0;
        for jb in (vmin / bv).floor() as i64..=(vmax / bv).floor() as i64 {
            for ib in (umin / bu).floor() as i64..=(umax / bu).floor() as i64 {
                if let Some((i0, i1, j0, j1)) = village_blocks {
                    if (i0..i1).contains(&ib) && (j0..j1).contains(&jb) {
                        continue;
                    }
                }
                let (u0, u1) = (ib as f64 * bu + half_gap, (ib + 1) as f64 * bu - half_gap);
                let (v0, v1) = (jb as f64 * bv + half_gap, (jb + 1) as f64 * bv - half_gap);
                self.add_block(inner, frame, [u0, u1, v0, v1], paddy_region, rng);
            }
        }
        if let Some((i0, i1, j0, j1)) = village_blocks {
            let uv = [
                i0 as f64 * bu + half_gap,
                i1 as f64 * bu - half_gap,
                j0 as f64 * bv + half_gap,
                j1 as f64 * bv - half_gap,
            ];
            self.add_village(inner, frame, uv, rng);
        }
    }

    /// One field block: parcels 20–60 m wide across it, sometimes split once along it.
    fn add_block(
        &mut self,
        inner: &Poly,
        frame: Frame,
        [u0, u1, v0, v1]: [f64; 4],
        paddy_region: bool,
        rng: &mut ChaCha8Rng,
    ) {
        let block_poly = frame.rect(u0, u1, v0, v1);
        if block_poly.intersect(inner).area() < 30.0 {
            return;
        }
        let block = self.blocks.len();
        self.blocks.push(Block {
            poly: block_poly,
            frame,
            parcels: Vec::new(),
        });
        let k = ((u1 - u0) / rng.random_range(20.0..60.0)).round().max(1.0) as usize;
        let step = (u1 - u0) / k as f64;
        let mut edges: Vec<f64> = (0..=k).map(|e| u0 + e as f64 * step).collect();
        for e in edges.iter_mut().take(k).skip(1) {
            *e += rng.random_range(-0.2..0.2) * step;
        }
        let split = rng
            .random_bool(0.5)
            .then(|| v0 + rng.random_range(0.35..0.65) * (v1 - v0));
        let rows: Vec<(f64, f64)> = match split {
            Some(vs) => vec![(v0, vs), (vs, v1)],
            None => vec![(v0, v1)],
        };
        for w in edges.windows(2) {
            for &(va, vb) in &rows {
                let paddy = paddy_region ^ rng.random_bool(0.12);
                let rect = frame.rect(w[0], w[1], va, vb);
                let pieces = self.off_roads(rect.intersect(inner));
                let whole = pieces.len() == 1 && (pieces[0].area() - rect.area()).abs() < 0.5;
                for piece in pieces.into_iter().filter(|p| p.area() > 30.0) {
                    self.add_crop_parcel(piece, frame, block, whole, paddy, rng);
                }
            }
        }
    }

    fn add_crop_parcel(
        &mut self,
        poly: Poly,
        frame: Frame,
        block: usize,
        whole: bool,
        paddy: bool,
        rng: &mut ChaCha8Rng,
    ) {
        let (before, after, changed) = crop_looks(rng, paddy, frame, self.seasonal_share);
        self.seasonal_changes += changed as usize;
        self.add_feature(poly.clone(), z::LAND, Some(before), Some(after));
        let land = self.add_land(poly, if paddy { Dlbm::Paddy } else { Dlbm::DryLand });
        self.blocks[block].parcels.push(self.crops.len());
        self.crops.push(CropParcel { land, frame, whole });
    }

    /// Village ground over the given blocks, with houses on a lot grid and trees between.
    fn add_village(&mut self, inner: &Poly, frame: Frame, [u0, u1, v0, v1]: [f64; 4], rng: &mut ChaCha8Rng) {
        let pieces = self.off_roads(frame.rect(u0, u1, v0, v1).intersect(inner));
        let ground = Look {
            fg: scale(
                mix(&[(CONCRETE, 0.55), (SOIL_BROWN, 0.45)]),
                rng.random_range(0.65..0.85),
            ),
            bg: mix(&[(CANOPY, 0.7), (GRASS, 0.3)]),
            pattern: Pattern::Clumps,
            texture: Texture::Village,
        };
        for piece in pieces.iter().filter(|p| p.area() > 30.0) {
            self.add_static(piece.clone(), z::LAND, ground);
            self.add_land(piece.clone(), Dlbm::Village);
        }
        let lot = rng.random_range(10.0..14.0);
        let mut vacant_lots = Vec::new();
        let mut v = v0;
        while v + lot <= v1 {
            let mut u = u0;
            while u + lot <= u1 {
                let w = rng.random_range(6.0..lot - 1.5);
                let h = rng.random_range(6.0..lot - 1.5);
                let cu = u + rng.random_range(w / 2.0..lot - w / 2.0);
                let cv = v + rng.random_range(h / 2.0..lot - h / 2.0);
                let house = frame.rect(cu - w / 2.0, cu + w / 2.0, cv - h / 2.0, cv + h / 2.0);
                if let Some(piece) = pieces.iter().find(|p| p.contains_poly(&house)) {
                    if rng.random_bool(0.75) {
                        let roof = roof_look(rng, &self.roofs, frame, house.centroid(), w >= h);
                        let height = rng.random_range(5.0..11.0);
                        self.add_house(house, piece, roof, height, [z::HOUSE_SHADOW, z::HOUSE], true);
                    } else {
                        vacant_lots.push(house);
                    }
                }
                u += lot;
            }
            v += lot;
        }
        self.villages.push(Village { frame, vacant_lots });
    }

    /// A house and its cast shadow on each date (clipped to `ground`). `on_both_dates`: false for
    /// a house that is new in the after image.
    pub fn add_house(
        &mut self,
        house: Poly,
        ground: &Poly,
        roof: Look,
        height: f64,
        [z_shadow, z_house]: [u8; 2],
        on_both_dates: bool,
    ) {
        let dark = Look::plain(HOUSE_SHADOW, Texture::Roof);
        let cast = |dir: Pt| house.translate([dir[0] * height, dir[1] * height]).intersect(ground);
        if on_both_dates {
            self.add_feature(cast(self.shadow_dir[0]), z_shadow, Some(dark), None);
        }
        self.add_feature(cast(self.shadow_dir[1]), z_shadow, None, Some(dark));
        let before = on_both_dates.then_some(roof);
        self.add_feature(house, z_house, before, Some(roof));
    }

    /// Natural forest: crowns of varied size with shaded gaps.
    fn add_forest(&mut self, inner: &Poly, rng: &mut ChaCha8Rng) {
        let crown = scale(CANOPY, rng.random_range(0.9..1.1));
        let look = Look {
            fg: crown,
            bg: scale(CANOPY, 0.45),
            pattern: Pattern::Crowns {
                angle: rng.random_range(0.0..std::f32::consts::PI),
                period: rng.random_range(4.5..5.5),
                radius: rng.random_range(2.3..2.9),
                jitter: 0.45,
            },
            texture: Texture::Forest,
        };
        let mut after = look;
        after.fg = scale4(crown, jitter4(rng, 0.95, 1.05));
        for piece in self.off_roads(inner.clone()) {
            if piece.area() > 30.0 {
                self.add_feature(piece.clone(), z::LAND, Some(look), Some(after));
                let idx = self.add_land(piece, Dlbm::Forest);
                self.forests.push(idx);
            }
        }
    }

    /// Orchard blocks: tree crowns in planted rows over grass and red soil.
    fn add_orchards(&mut self, inner: &Poly, frame: Frame, rng: &mut ChaCha8Rng) {
        let (bu, bv) = (rng.random_range(40.0..90.0), rng.random_range(60.0..140.0));
        let (umin, vmin, umax, vmax) = local_bounds(inner, &frame);
        for jb in (vmin / bv).floor() as i64..=(vmax / bv).floor() as i64 {
            for ib in (umin / bu).floor() as i64..=(umax / bu).floor() as i64 {
                let rect = frame.rect(
                    ib as f64 * bu + 1.0,
                    (ib + 1) as f64 * bu - 1.0,
                    jb as f64 * bv + 1.0,
                    (jb + 1) as f64 * bv - 1.0,
                );
                let crown = scale(CANOPY, rng.random_range(0.9..1.1));
                let look = Look {
                    fg: crown,
                    bg: mix(&[(GRASS, 0.6), (SOIL_RED, 0.4)]),
                    pattern: Pattern::Crowns {
                        angle: frame.sin.atan2(frame.cos) as f32,
                        period: rng.random_range(5.0..7.0),
                        radius: rng.random_range(2.0..2.8),
                        jitter: 0.04,
                    },
                    texture: Texture::Orchard,
                };
                let mut after = look;
                after.fg = scale(crown, rng.random_range(0.92..1.08));
                for piece in self.off_roads(rect.intersect(inner)) {
                    if piece.area() > 30.0 {
                        self.add_feature(piece.clone(), z::LAND, Some(look), Some(after));
                        self.add_land(piece, Dlbm::Orchard);
                    }
                }
            }
        }
    }

    /// Fish ponds in a grid with earth banks; water colour drifts between dates (algae).
    fn add_ponds(&mut self, inner: &Poly, frame: Frame, rng: &mut ChaCha8Rng) {
        let (bu, bv) = (rng.random_range(30.0..60.0), rng.random_range(25.0..50.0));
        let (umin, vmin, umax, vmax) = local_bounds(inner, &frame);
        for jb in (vmin / bv).floor() as i64..=(vmax / bv).floor() as i64 {
            for ib in (umin / bu).floor() as i64..=(umax / bu).floor() as i64 {
                let rect = frame.rect(
                    ib as f64 * bu + 1.5,
                    (ib + 1) as f64 * bu - 1.5,
                    jb as f64 * bv + 1.5,
                    (jb + 1) as f64 * bv - 1.5,
                );
                let bank = Look::plain(
                    scale(mix(&[(GRASS, 0.5), (SOIL_BROWN, 0.5)]), rng.random_range(0.9..1.1)),
                    Texture::Soil,
                );
                let water = mix(&[(WATER, rng.random_range(0.55..0.8)), (ALGAE, 0.2)]);
                let water_before = Look::plain(water, Texture::Water);
                let water_after = Look::plain(scale4(water, jitter4(rng, 0.8, 1.25)), Texture::Water);
                for piece in self.off_roads(rect.intersect(inner)) {
                    if piece.area() > 30.0 {
                        self.add_static(piece.clone(), z::LAND, bank);
                        self.add_feature(piece.inset(1.6), z::WATER, Some(water_before), Some(water_after));
                        self.add_land(piece, Dlbm::Pond);
                    }
                }
            }
        }
    }

    /// Sorts features into drawing order (stable, so equal layers keep creation order).
    pub fn finish(&mut self) {
        self.features.sort_by_key(|f| f.z);
    }
}

/// The polygon's extent in a local frame: (umin, vmin, umax, vmax).
fn local_bounds(poly: &Poly, frame: &Frame) -> (f64, f64, f64, f64) {
    poly.pts.iter().fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |b, &p| {
        let (u, v) = frame.to_local(p);
        (b.0.min(u), b.1.min(v), b.2.max(u), b.3.max(v))
    })
}

/// Draws one item by weight.
pub fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, f32)]) -> T {
    let total: f32 = items.iter().map(|i| i.1).sum();
    let mut r = rng.random::<f32>() * total;
    for &(item, w) in items {
        if r < w {
            return item;
        }
        r -= w;
    }
    items[items.len() - 1].0
}

/// Independent per-band factors in [lo, hi).
pub fn jitter4(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> [f32; 4] {
    [0; 4].map(|_| rng.random_range(lo..hi))
}

/// A roof: material by the scene's shares (`roofs`); pitched roofs (red, blue steel, …) slope
/// along the long side.
pub fn roof_look(
    rng: &mut ChaCha8Rng,
    roofs: &[(Spectrum, f32, bool)],
    frame: Frame,
    centre: Pt,
    long_side_u: bool,
) -> Look {
    let materials: Vec<((Spectrum, bool), f32)> = roofs.iter().map(|&(s, share, p)| ((s, p), share)).collect();
    let (spec, pitched) = pick(rng, &materials);
    let fg = scale(spec, rng.random_range(0.85..1.15));
    let along = frame.sin.atan2(frame.cos) + if long_side_u { 0.0 } else { FRAC_PI_2 };
    let pattern = if pitched {
        Pattern::Roof {
            angle: along as f32,
            centre: [centre[0] as f32, centre[1] as f32],
        }
    } else {
        Pattern::Plain
    };
    Look {
        fg,
        bg: fg,
        pattern,
        texture: Texture::Roof,
    }
}

/// Before and after looks of a crop parcel; a share of parcels change state (harvest, tillage,
/// green-up, flooding) between the dates, which is seasonal and NOT a change to report.
fn crop_looks(rng: &mut ChaCha8Rng, paddy: bool, frame: Frame, share: f64) -> (Look, Look, bool) {
    let soil = scale(if paddy { SOIL_BROWN } else { SOIL_RED }, rng.random_range(0.88..1.12));
    let states = CropState::distribution(paddy);
    let before = pick(rng, states);
    let changed = rng.random_bool(share.clamp(0.0, 1.0));
    let after = if changed {
        let others: Vec<(CropState, f32)> = states.iter().copied().filter(|s| s.0 != before).collect();
        pick(rng, &others)
    } else {
        before
    };
    let cover: f32 = rng.random();
    // Unchanged parcels still drift a little (growth, moisture).
    let cover_after = if changed {
        rng.random()
    } else {
        (cover + rng.random_range(-0.08..0.08)).clamp(0.0, 1.0)
    };
    let row_angle = frame.sin.atan2(frame.cos) as f32
        + if rng.random_bool(0.5) {
            0.0
        } else {
            std::f32::consts::FRAC_PI_2
        };
    let row_period = rng.random_range(5.0..8.0);
    let look = |state: CropState, cover: f32, gain: f32| {
        let fg = scale(state.spectrum(cover, soil), gain);
        let pattern = if state.has_rows() {
            Pattern::Furrows {
                angle: row_angle,
                period: row_period,
                depth: 0.06,
            }
        } else {
            Pattern::Plain
        };
        Look {
            fg,
            bg: fg,
            pattern,
            texture: Texture::Crop,
        }
    };
    let gain = rng.random_range(0.94..1.06);
    let gain_after = gain * rng.random_range(0.97..1.03);
    (look(before, cover, gain), look(after, cover_after, gain_after), changed)
}
