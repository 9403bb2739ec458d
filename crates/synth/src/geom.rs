//! Planar geometry for the scene, in metres from the image's upper-left corner (x east, y south).
//!
//! Every polygon the synthesiser builds is convex: Voronoi cells, rotated field rectangles, the
//! two sides of a straight road. Convex polygons clip against half-planes exactly
//! (Sutherland–Hodgman), which lets the scene stay a set of clean polygons that double as the
//! land-use layer, with no general polygon boolean library. Rasterisation is an even-odd scanline
//! fill at pixel centres, so raster and vector agree pixel for pixel.

/// A point in scene metres: `[x east, y south]`.
pub type Pt = [f64; 2];

/// A convex polygon (ring without the closing point, either orientation).
#[derive(Clone, Debug, PartialEq)]
pub struct Poly {
    pub pts: Vec<Pt>,
}

/// The half-plane `a*x + b*y <= c`.
#[derive(Clone, Copy, Debug)]
pub struct HalfPlane {
    pub a: f64,
    pub b: f64,
    pub c: f64,
}

impl HalfPlane {
    fn side(&self, p: Pt) -> f64 {
        self.a * p[0] + self.b * p[1] - self.c
    }
}

/// Axis-aligned bounding box `[xmin, ymin, xmax, ymax]`.
pub type BBox = [f64; 4];

impl Poly {
    pub fn new(pts: Vec<Pt>) -> Self {
        Poly { pts }
    }

    /// An axis-aligned box.
    pub fn rect_xy(x0: f64, y0: f64, x1: f64, y1: f64) -> Self {
        Poly::new(vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    }

    /// A `w` x `h` rectangle centred on `c`, its `w` side along the angle `theta`.
    pub fn rect(c: Pt, w: f64, h: f64, theta: f64) -> Self {
        let frame = Frame::new(c, theta);
        let (hw, hh) = (w / 2.0, h / 2.0);
        Poly::new(vec![
            frame.to_world(-hw, -hh),
            frame.to_world(hw, -hh),
            frame.to_world(hw, hh),
            frame.to_world(-hw, hh),
        ])
    }

    pub fn is_empty(&self) -> bool {
        self.pts.len() < 3
    }

    /// Signed shoelace area (positive when counter-clockwise in x-east/y-north terms).
    fn signed_area(&self) -> f64 {
        let n = self.pts.len();
        (0..n)
            .map(|i| {
                let (p, q) = (self.pts[i], self.pts[(i + 1) % n]);
                p[0] * q[1] - q[0] * p[1]
            })
            .sum::<f64>()
            / 2.0
    }

    pub fn area(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            self.signed_area().abs()
        }
    }

    pub fn bbox(&self) -> BBox {
        self.pts.iter().fold([f64::MAX, f64::MAX, f64::MIN, f64::MIN], |b, p| {
            [b[0].min(p[0]), b[1].min(p[1]), b[2].max(p[0]), b[3].max(p[1])]
        })
    }

    pub fn centroid(&self) -> Pt {
        let n = self.pts.len().max(1) as f64;
        let s = self.pts.iter().fold([0.0, 0.0], |s, p| [s[0] + p[0], s[1] + p[1]]);
        [s[0] / n, s[1] / n]
    }

    pub fn translate(&self, d: Pt) -> Poly {
        Poly::new(self.pts.iter().map(|p| [p[0] + d[0], p[1] + d[1]]).collect())
    }

    /// The part of the polygon inside the half-plane (Sutherland–Hodgman, one edge).
    pub fn clip(&self, hp: &HalfPlane) -> Poly {
        let n = self.pts.len();
        let mut out = Vec::with_capacity(n + 1);
        for i in 0..n {
            let (p, q) = (self.pts[i], self.pts[(i + 1) % n]);
            let (sp, sq) = (hp.side(p), hp.side(q));
            if sp <= 0.0 {
                out.push(p);
            }
            if (sp < 0.0 && sq > 0.0) || (sp > 0.0 && sq < 0.0) {
                let t = sp / (sp - sq);
                out.push([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]);
            }
        }
        Poly::new(dedup_ring(out))
    }

    /// The half-planes whose intersection is this (convex) polygon, each edge moved inward by `d`.
    fn inner_half_planes(&self, d: f64) -> Vec<HalfPlane> {
        let ccw = self.signed_area() > 0.0;
        let n = self.pts.len();
        (0..n)
            .filter_map(|i| {
                let (p, q) = (self.pts[i], self.pts[(i + 1) % n]);
                let (ex, ey) = (q[0] - p[0], q[1] - p[1]);
                let len = (ex * ex + ey * ey).sqrt();
                if len < 1e-12 {
                    return None;
                }
                // Outward normal: right of the edge for a counter-clockwise ring.
                let (a, b) = if ccw {
                    (ey / len, -ex / len)
                } else {
                    (-ey / len, ex / len)
                };
                Some(HalfPlane {
                    a,
                    b,
                    c: a * p[0] + b * p[1] - d,
                })
            })
            .collect()
    }

    /// Intersection with another convex polygon.
    pub fn intersect(&self, other: &Poly) -> Poly {
        if self.is_empty() || other.is_empty() || !bbox_overlap(&self.bbox(), &other.bbox()) {
            return Poly::new(Vec::new());
        }
        other.inner_half_planes(0.0).iter().fold(
            self.clone(),
            |acc, hp| {
                if acc.is_empty() {
                    acc
                } else {
                    acc.clip(hp)
                }
            },
        )
    }

    /// The polygon shrunk by `d` metres on every side (exact for convex polygons).
    pub fn inset(&self, d: f64) -> Poly {
        if self.is_empty() {
            return self.clone();
        }
        self.inner_half_planes(d)
            .iter()
            .fold(self.clone(), |acc, hp| if acc.is_empty() { acc } else { acc.clip(hp) })
    }

    /// Whether a point lies inside (convex polygon, boundary counts as inside).
    pub fn contains(&self, p: Pt) -> bool {
        !self.is_empty() && self.inner_half_planes(0.0).iter().all(|hp| hp.side(p) <= 1e-9)
    }

    /// Whether `other` lies entirely inside this convex polygon.
    pub fn contains_poly(&self, other: &Poly) -> bool {
        let hps = self.inner_half_planes(0.0);
        !self.is_empty() && other.pts.iter().all(|&p| hps.iter().all(|hp| hp.side(p) <= 1e-9))
    }

    /// Pixel-centre spans of this polygon on one image row: the x interval(s) in metres where the
    /// horizontal line `y` is inside (even-odd rule), sorted.
    pub fn row_spans(&self, y: f64, out: &mut Vec<(f64, f64)>) {
        out.clear();
        let mut xs: Vec<f64> = Vec::with_capacity(4);
        let n = self.pts.len();
        for i in 0..n {
            let (p, q) = (self.pts[i], self.pts[(i + 1) % n]);
            if (p[1] <= y && y < q[1]) || (q[1] <= y && y < p[1]) {
                xs.push(p[0] + (y - p[1]) / (q[1] - p[1]) * (q[0] - p[0]));
            }
        }
        xs.sort_by(f64::total_cmp);
        out.extend(xs.chunks_exact(2).map(|c| (c[0], c[1])));
    }
}

/// Drops consecutive duplicate vertices so degenerate slivers do not survive as polygons.
fn dedup_ring(mut pts: Vec<Pt>) -> Vec<Pt> {
    pts.dedup_by(|a, b| (a[0] - b[0]).abs() < 1e-9 && (a[1] - b[1]).abs() < 1e-9);
    while pts.len() > 1 {
        let (f, l) = (pts[0], pts[pts.len() - 1]);
        if (f[0] - l[0]).abs() < 1e-9 && (f[1] - l[1]).abs() < 1e-9 {
            pts.pop();
        } else {
            break;
        }
    }
    pts
}

pub fn bbox_overlap(a: &BBox, b: &BBox) -> bool {
    a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3]
}

/// Grows a bounding box by `d` on every side.
pub fn bbox_grow(b: &BBox, d: f64) -> BBox {
    [b[0] - d, b[1] - d, b[2] + d, b[3] + d]
}

/// Whether a disc touches a bounding box.
pub fn bbox_touches_disc(b: &BBox, c: Pt, r: f64) -> bool {
    let dx = (b[0] - c[0]).max(0.0).max(c[0] - b[2]);
    let dy = (b[1] - c[1]).max(0.0).max(c[1] - b[3]);
    dx * dx + dy * dy < r * r
}

/// A rotated local frame: `u` along `theta`, `v` perpendicular, origin `o`. Field blocks, parcels,
/// house lots and tree rows are laid out in such a frame.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub o: Pt,
    pub cos: f64,
    pub sin: f64,
}

impl Frame {
    pub fn new(o: Pt, theta: f64) -> Self {
        Frame {
            o,
            cos: theta.cos(),
            sin: theta.sin(),
        }
    }

    pub fn to_world(self, u: f64, v: f64) -> Pt {
        [
            self.o[0] + self.cos * u - self.sin * v,
            self.o[1] + self.sin * u + self.cos * v,
        ]
    }

    pub fn to_local(self, p: Pt) -> (f64, f64) {
        let (x, y) = (p[0] - self.o[0], p[1] - self.o[1]);
        (self.cos * x + self.sin * y, -self.sin * x + self.cos * y)
    }

    /// The world polygon of the local rectangle `[u0,u1] x [v0,v1]`.
    pub fn rect(self, u0: f64, u1: f64, v0: f64, v1: f64) -> Poly {
        Poly::new(vec![
            self.to_world(u0, v0),
            self.to_world(u1, v0),
            self.to_world(u1, v1),
            self.to_world(u0, v1),
        ])
    }
}

/// A straight road band: points with `|n·p - c| < half_width` are road. Parcels keep a verge
/// beyond that, so a road splits any convex polygon into at most two convex pieces.
#[derive(Clone, Copy, Debug)]
pub struct Band {
    pub nx: f64,
    pub ny: f64,
    pub c: f64,
    pub half_width: f64,
}

impl Band {
    /// The parts of `poly` farther than `half_width + verge` from the band's centre line.
    pub fn split_off(&self, poly: &Poly, verge: f64) -> Vec<Poly> {
        let d = self.half_width + verge;
        let below = HalfPlane {
            a: self.nx,
            b: self.ny,
            c: self.c - d,
        };
        let above = HalfPlane {
            a: -self.nx,
            b: -self.ny,
            c: -(self.c + d),
        };
        [poly.clip(&below), poly.clip(&above)]
            .into_iter()
            .filter(|p| p.area() > 1e-6)
            .collect()
    }

    /// The band as a polygon, limited to a box that contains the scene.
    pub fn polygon(&self, extent: &BBox) -> Poly {
        let span = (extent[2] - extent[0]).max(extent[3] - extent[1]) * 2.0;
        let mid = [(extent[0] + extent[2]) / 2.0, (extent[1] + extent[3]) / 2.0];
        // Point on the centre line closest to the middle of the scene.
        let t = self.nx * mid[0] + self.ny * mid[1] - self.c;
        let foot = [mid[0] - t * self.nx, mid[1] - t * self.ny];
        let theta = (-self.nx).atan2(self.ny); // direction along the line
        Poly::rect(foot, span, 2.0 * self.half_width, theta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_and_inset_keep_convex_area_right() {
        let sq = Poly::rect_xy(0.0, 0.0, 10.0, 10.0);
        assert!((sq.area() - 100.0).abs() < 1e-9);
        assert!((sq.inset(1.0).area() - 64.0).abs() < 1e-9);
        let tri = Poly::new(vec![[5.0, -5.0], [15.0, 5.0], [5.0, 15.0]]);
        let i = sq.intersect(&tri);
        assert!((i.area() - 50.0).abs() < 1e-9, "{}", i.area());
        assert!(sq.contains([5.0, 5.0]) && !sq.contains([11.0, 5.0]));
    }

    #[test]
    fn rotated_rect_and_frame_round_trip() {
        let f = Frame::new([3.0, 4.0], 0.4);
        let (u, v) = f.to_local(f.to_world(7.0, -2.0));
        assert!((u - 7.0).abs() < 1e-9 && (v + 2.0).abs() < 1e-9);
        let r = Poly::rect([0.0, 0.0], 20.0, 10.0, 0.7);
        assert!((r.area() - 200.0).abs() < 1e-9);
    }

    #[test]
    fn band_splits_into_two_pieces_leaving_the_road_out() {
        let sq = Poly::rect_xy(0.0, 0.0, 100.0, 100.0);
        let band = Band {
            nx: 0.0,
            ny: 1.0,
            c: 50.0,
            half_width: 3.0,
        };
        let parts = band.split_off(&sq, 1.0);
        assert_eq!(parts.len(), 2);
        let total: f64 = parts.iter().map(Poly::area).sum();
        assert!((total - 100.0 * 92.0).abs() < 1e-6);
        let road = band.polygon(&[0.0, 0.0, 100.0, 100.0]).intersect(&sq);
        assert!((road.area() - 600.0).abs() < 1e-6, "{}", road.area());
    }

    #[test]
    fn row_spans_follow_pixel_centres() {
        let sq = Poly::rect_xy(1.0, 1.0, 5.0, 5.0);
        let mut spans = Vec::new();
        sq.row_spans(3.0, &mut spans);
        assert_eq!(spans, vec![(1.0, 5.0)]);
        sq.row_spans(6.0, &mut spans);
        assert!(spans.is_empty());
    }
}
