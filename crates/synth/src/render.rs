//! Turns the vector scene into pixels, one strip of rows at a time.
//!
//! For each date a strip is rendered with a small halo: feature ids by scanline fill at the pixel
//! sample positions (shifted by the misregistration on the after date), surface spectra with
//! texture and patterns, crop ridges, then (after date) cloud shadow, cloud, per-band gain/offset
//! and haze, then a Gaussian point-spread blur and signal-dependent sensor noise. Truth and cloud
//! masks come out of the same pass. A strip depends only on the scene and its row range, so strips
//! can be rendered in any order on any number of threads.

use super::changes::{Clouds, TruthChange};
use super::geom::Poly;
use super::noise::{gauss4, hash3, key, smooth, value_noise};
use super::scene::{Feature, Scene};
use super::spectra::*;

/// Extra rows/columns rendered around a block so the blur sees real neighbours.
const HALO: usize = 2;
/// Rows rendered at once inside a strip: bounds the floating-point working set per worker
/// (about 4.5 MB per 1000 columns) independently of the strip height the writer wants.
const BLOCK_ROWS: usize = 64;

/// Which acquisition is being rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Date {
    Before,
    After,
}

impl Date {
    fn look(self, f: &Feature) -> Option<&Look> {
        match self {
            Date::Before => f.before.as_ref(),
            Date::After => f.after.as_ref(),
        }
    }
}

/// Sensor and atmosphere differences of the after image relative to the before image.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Radiometry {
    /// After-image sample offset in pixels (x right, y down): the misregistration.
    pub shift_px: [f64; 2],
    pub gain: [f32; 4],
    pub offset: [f32; 4],
    /// Path radiance added at full haze strength (after: spatially varying; before: 20 %).
    pub haze: [f32; 4],
    pub blur_sigma_px: [f32; 2],
}

/// Everything a strip needs, shared read-only by all workers.
pub struct Renderer<'a> {
    pub scene: &'a Scene,
    pub clouds: &'a Clouds,
    pub truth: &'a [TruthChange],
    pub size: usize,
    pub pixel_m: f64,
    pub radiometry: Radiometry,
    keys: [u64; 8],
}

/// One rendered strip: band-sequential planes of `rows x size` pixels.
pub struct Strip {
    pub r0: usize,
    pub rows: usize,
    pub before: Vec<u16>,
    pub after: Vec<u16>,
    pub labels: Vec<u8>,
    pub ids: Vec<i32>,
    pub clouds: Vec<u8>,
}

/// The fixed noise and texture fields of a pixel sample.
#[derive(Clone, Copy)]
struct Noise {
    fine: f32,
    mid: f32,
    large: f32,
}

impl<'a> Renderer<'a> {
    pub fn new(
        scene: &'a Scene,
        clouds: &'a Clouds,
        truth: &'a [TruthChange],
        size: usize,
        pixel_m: f64,
        radiometry: Radiometry,
    ) -> Self {
        let keys = std::array::from_fn(|i| key(scene.seed, 100 + i as u64));
        Renderer {
            scene,
            clouds,
            truth,
            size,
            pixel_m,
            radiometry,
            keys,
        }
    }

    /// Renders image rows `r0..r1` of both dates, the truth and the cloud mask.
    pub fn strip(&self, r0: usize, r1: usize) -> Strip {
        let (before, _) = self.date(r0, r1, Date::Before);
        let (after, clouds) = self.date(r0, r1, Date::After);
        let (labels, ids) = self.truth_rows(r0, r1);
        Strip {
            r0,
            rows: r1 - r0,
            before,
            after,
            labels,
            ids,
            clouds,
        }
    }

    fn shift(&self, date: Date) -> [f64; 2] {
        match date {
            Date::Before => [0.0, 0.0],
            Date::After => self.radiometry.shift_px,
        }
    }

    /// Scene metres of the sample at grid cell (rr, cc) of a strip starting at image row `top`.
    fn sample_xy(&self, top: i64, rr: usize, cc: usize, shift: [f64; 2]) -> (f64, f64) {
        let c = cc as f64 - HALO as f64 + 0.5 + shift[0];
        let r = top as f64 + rr as f64 + 0.5 + shift[1];
        (c * self.pixel_m, r * self.pixel_m)
    }

    /// Rows `r0..r1` of one date, as band-sequential UInt16 planes, and the cloud mask.
    fn date(&self, r0: usize, r1: usize, date: Date) -> (Vec<u16>, Vec<u8>) {
        let (rows, size) = (r1 - r0, self.size);
        let mut out = vec![0u16; 4 * rows * size];
        let mut mask = Vec::with_capacity(rows * size);
        for b0 in (r0..r1).step_by(BLOCK_ROWS) {
            let b1 = (b0 + BLOCK_ROWS).min(r1);
            let n = (b1 - b0) * size;
            let (pixels, block_mask) = self.date_block(b0, b1, date);
            for band in 0..4 {
                let at = band * rows * size + (b0 - r0) * size;
                out[at..at + n].copy_from_slice(&pixels[band * n..(band + 1) * n]);
            }
            mask.extend(block_mask);
        }
        (out, mask)
    }

    fn date_block(&self, r0: usize, r1: usize, date: Date) -> (Vec<u16>, Vec<u8>) {
        let (h, w) = (r1 - r0 + 2 * HALO, self.size + 2 * HALO);
        let top = r0 as i64 - HALO as i64;
        let shift = self.shift(date);
        let mut fid = vec![0u32; h * w];
        self.paint_features(&mut fid, top, h, w, shift, date);
        let crop = self.crop_flags(date);
        let (dens_cloud, dens_shadow) = match date {
            Date::After => (
                self.cloud_density(top, h, w, shift, [0.0, 0.0]),
                self.cloud_density(top, h, w, shift, self.clouds.shadow_offset),
            ),
            Date::Before => (Vec::new(), Vec::new()),
        };
        let mut planes = vec![vec![0f32; h * w]; 4];
        let mut cloud_mask = vec![0u8; h * w];
        let ground = Look::plain(mix(&[(GRASS, 0.5), (SOIL_BROWN, 0.5)]), Texture::Soil);
        for rr in 0..h {
            for cc in 0..w {
                let k = rr * w + cc;
                let (x, y) = self.sample_xy(top, rr, cc, shift);
                let n = self.noise(x, y);
                let id = fid[k] as usize;
                let look = if id == 0 {
                    &ground
                } else {
                    date.look(&self.scene.features[id - 1]).unwrap_or(&ground)
                };
                let mut s = shade(look, x, y, &n, self.keys[3]);
                if crop[id] && is_ridge(&fid, &crop, k, cc, rr, w, h) {
                    let ridge = mix(&[(GRASS, 0.6), (SOIL_BROWN, 0.4)]);
                    s = [0, 1, 2, 3].map(|b| 0.6 * s[b] + 0.4 * ridge[b]);
                }
                let s = match date {
                    Date::Before => self.atmosphere_before(s),
                    Date::After => {
                        self.atmosphere_after(s, x, y, &n, dens_cloud[k], dens_shadow[k], &mut cloud_mask[k])
                    }
                };
                for b in 0..4 {
                    planes[b][k] = s[b];
                }
            }
        }
        let sigma = self.radiometry.blur_sigma_px[(date == Date::After) as usize];
        let out = self.blur_and_quantise(&planes, h, w, r0, sigma, date);
        let mask = (HALO..h - HALO)
            .flat_map(|rr| cloud_mask[rr * w + HALO..rr * w + HALO + self.size].to_vec())
            .collect();
        (out, mask)
    }

    fn noise(&self, x: f64, y: f64) -> Noise {
        Noise {
            fine: value_noise(self.keys[0], x, y, 2.5),
            mid: value_noise(self.keys[1], x, y, 12.0),
            large: value_noise(self.keys[2], x, y, 100.0),
        }
    }

    /// Which feature ids are crop parcels on this date (index 0: no feature).
    fn crop_flags(&self, date: Date) -> Vec<bool> {
        std::iter::once(false)
            .chain(
                self.scene
                    .features
                    .iter()
                    .map(|f| date.look(f).is_some_and(|l| l.texture == Texture::Crop)),
            )
            .collect()
    }

    /// Paints feature ids (1-based, in drawing order) at the strip's sample positions.
    fn paint_features(&self, fid: &mut [u32], top: i64, h: usize, w: usize, shift: [f64; 2], date: Date) {
        let pm = self.pixel_m;
        let (y_first, y_last) = (
            (top as f64 + 0.5 + shift[1]) * pm,
            ((top + h as i64) as f64 - 0.5 + shift[1]) * pm,
        );
        let mut spans = Vec::new();
        for (i, f) in self.scene.features.iter().enumerate() {
            if date.look(f).is_none() || f.bbox[3] < y_first || f.bbox[1] > y_last {
                continue;
            }
            fill_rows(&f.poly, fid, (i + 1) as u32, top, h, w, shift, pm, &mut spans);
        }
    }

    /// Sum of cloud puff densities at the strip's samples, the puffs displaced by `offset`.
    fn cloud_density(&self, top: i64, h: usize, w: usize, shift: [f64; 2], offset: [f64; 2]) -> Vec<f32> {
        let mut dens = vec![0f32; h * w];
        let pm = self.pixel_m;
        for p in &self.clouds.puffs {
            let (cx, cy, reach) = (p.c[0] + offset[0], p.c[1] + offset[1], 2.5 * p.r);
            let r_lo = (((cy - reach) / pm - shift[1] - 0.5).floor() as i64 - top).max(0);
            let r_hi = (((cy + reach) / pm - shift[1] - 0.5).ceil() as i64 - top).min(h as i64);
            let c_lo = (((cx - reach) / pm - shift[0] - 0.5).floor() as i64 + HALO as i64).max(0);
            let c_hi = (((cx + reach) / pm - shift[0] - 0.5).ceil() as i64 + HALO as i64).min(w as i64);
            let inv_r2 = 1.0 / (p.r * p.r);
            for rr in r_lo..r_hi {
                for cc in c_lo..c_hi {
                    let (x, y) = self.sample_xy(top, rr as usize, cc as usize, shift);
                    let d2 = (x - cx).powi(2) + (y - cy).powi(2);
                    dens[rr as usize * w + cc as usize] += p.density * (-(d2 * inv_r2) as f32).exp();
                }
            }
        }
        dens
    }

    fn atmosphere_before(&self, s: Spectrum) -> Spectrum {
        let hz = self.radiometry.haze;
        [0, 1, 2, 3].map(|b| s[b] + 0.2 * hz[b])
    }

    /// Cloud shadow, cloud, sensor gain/offset and patchy haze; marks the cloud mask.
    #[allow(clippy::too_many_arguments)]
    fn atmosphere_after(
        &self,
        s: Spectrum,
        x: f64,
        y: f64,
        n: &Noise,
        dens_cloud: f32,
        dens_shadow: f32,
        mask: &mut u8,
    ) -> Spectrum {
        let edge = 0.8 + 1.2 * n.large + 0.25 * n.mid;
        let alpha = smooth(dens_cloud * edge, 0.25, 0.9);
        let beta = smooth(dens_shadow * edge, 0.25, 0.6);
        *mask = if alpha > 0.25 {
            1
        } else if beta > 0.25 {
            2
        } else {
            0
        };
        let rad = &self.radiometry;
        let haze = 0.55 + value_noise(self.keys[4], x, y, 1400.0);
        let cloud_tone = 0.95 + 0.1 * n.mid;
        [0, 1, 2, 3].map(|b| {
            let shaded = s[b] * (1.0 - 0.6 * beta);
            let clouded = shaded * (1.0 - alpha) + CLOUD[b] * cloud_tone * alpha;
            clouded * rad.gain[b] + rad.offset[b] + rad.haze[b] * haze
        })
    }

    /// Separable Gaussian blur (the sensor's point spread), then sensor noise and UInt16.
    fn blur_and_quantise(
        &self,
        planes: &[Vec<f32>],
        h: usize,
        w: usize,
        r0: usize,
        sigma: f32,
        date: Date,
    ) -> Vec<u16> {
        let kernel = gaussian_kernel(sigma);
        let (rows, size) = (h - 2 * HALO, self.size);
        let mut out = vec![0u16; 4 * rows * size];
        let noise_key = self.keys[5 + (date == Date::After) as usize];
        let (base, rel) = match date {
            Date::Before => (10.0, 0.004),
            Date::After => (12.0, 0.005),
        };
        let mut tmp = vec![0f32; h * size];
        let mut blurred = vec![[0f32; 4]; rows * size];
        for (b, plane) in planes.iter().enumerate() {
            for rr in 0..h {
                for c in 0..size {
                    tmp[rr * size + c] = (0..5).map(|t| kernel[t] * plane[rr * w + c + t]).sum();
                }
            }
            for r in 0..rows {
                for c in 0..size {
                    blurred[r * size + c][b] = (0..5).map(|t| kernel[t] * tmp[(r + t) * size + c]).sum();
                }
            }
        }
        for r in 0..rows {
            for c in 0..size {
                let g = gauss4(hash3(noise_key, c as i64, (r0 + r) as i64));
                let v = blurred[r * size + c];
                for b in 0..4 {
                    let noisy = v[b] + g[b] * (base + rel * v[b]);
                    out[b * rows * size + r * size + c] = noisy.round().clamp(1.0, 10000.0) as u16;
                }
            }
        }
        out
    }

    /// Truth labels and object ids on the before (reference) grid.
    fn truth_rows(&self, r0: usize, r1: usize) -> (Vec<u8>, Vec<i32>) {
        let (h, w) = (r1 - r0, self.size);
        let mut ids = vec![0u32; h * w];
        let mut spans = Vec::new();
        let mut scratch = vec![0u32; h * (w + 2 * HALO)];
        for (i, t) in self.truth.iter().enumerate() {
            let b = t.poly.bbox();
            if b[3] < r0 as f64 * self.pixel_m || b[1] > r1 as f64 * self.pixel_m {
                continue;
            }
            fill_rows(
                &t.poly,
                &mut scratch,
                (i + 1) as u32,
                r0 as i64,
                h,
                w + 2 * HALO,
                [0.0, 0.0],
                self.pixel_m,
                &mut spans,
            );
        }
        for r in 0..h {
            ids[r * w..(r + 1) * w].copy_from_slice(&scratch[r * (w + 2 * HALO) + HALO..r * (w + 2 * HALO) + HALO + w]);
        }
        let labels = ids
            .iter()
            .map(|&i| {
                if i == 0 {
                    0
                } else {
                    self.truth[i as usize - 1].kind.code()
                }
            })
            .collect();
        (labels, ids.into_iter().map(|i| i as i32).collect())
    }
}

/// Scanline fill of one polygon into a strip grid whose column 0 is image column `-HALO`.
#[allow(clippy::too_many_arguments)]
fn fill_rows(
    poly: &Poly,
    grid: &mut [u32],
    value: u32,
    top: i64,
    h: usize,
    w: usize,
    shift: [f64; 2],
    pm: f64,
    spans: &mut Vec<(f64, f64)>,
) {
    let b = poly.bbox();
    for rr in 0..h {
        let y = (top as f64 + rr as f64 + 0.5 + shift[1]) * pm;
        if y < b[1] || y > b[3] {
            continue;
        }
        poly.row_spans(y, spans);
        for &(xa, xb) in spans.iter() {
            let first = (xa / pm - 0.5 - shift[0]).ceil() as i64 + HALO as i64;
            let end = (xb / pm - 0.5 - shift[0]).ceil() as i64 + HALO as i64;
            let (first, end) = (first.clamp(0, w as i64) as usize, end.clamp(0, w as i64) as usize);
            if first < end {
                grid[rr * w + first..rr * w + end].fill(value);
            }
        }
    }
}

/// A crop pixel next to a different crop parcel (right or below) sits on a field ridge.
fn is_ridge(fid: &[u32], crop: &[bool], k: usize, cc: usize, rr: usize, w: usize, h: usize) -> bool {
    let here = fid[k];
    let differs = |j: usize| fid[j] != here && crop[fid[j] as usize];
    (cc + 1 < w && differs(k + 1)) || (rr + 1 < h && differs(k + w))
}

/// Five-tap normalised Gaussian.
fn gaussian_kernel(sigma: f32) -> [f32; 5] {
    let mut k = [-2.0f32, -1.0, 0.0, 1.0, 2.0].map(|d| (-d * d / (2.0 * sigma * sigma)).exp());
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

/// The surface spectrum of a look at (x, y) metres, before atmosphere and sensor.
fn shade(look: &Look, x: f64, y: f64, n: &Noise, crown_key: u64) -> Spectrum {
    let a = look.texture.amplitudes();
    let m = 1.0 + a[0] * 2.0 * n.fine + a[1] * 2.0 * n.mid + a[2] * 2.0 * n.large;
    let (w_fg, gain) = match look.pattern {
        Pattern::Plain => (1.0, 1.0),
        Pattern::Crowns {
            angle,
            period,
            radius,
            jitter,
        } => (crown_cover(x, y, angle, period, radius, jitter, crown_key), 1.0),
        Pattern::Strips { angle, period, duty } => {
            let u = along(x, y, angle) / period as f64;
            (smooth(duty - u.rem_euclid(1.0) as f32, -0.06, 0.06), 1.0)
        }
        Pattern::Furrows { angle, period, depth } => {
            let u = along(x, y, angle) / period as f64;
            (1.0, 1.0 + depth * (u * std::f64::consts::TAU).sin() as f32)
        }
        Pattern::Clumps => (1.0 - smooth(n.mid + 0.5 * n.large, 0.12, 0.28), 1.0),
        Pattern::Blotches => (smooth(n.mid + 0.6 * n.large + 0.3 * n.fine, -0.08, 0.08), 1.0),
        Pattern::Roof { angle, centre } => {
            let v = across(x - centre[0] as f64, y - centre[1] as f64, angle);
            (1.0, if v >= 0.0 { 1.0 } else { 0.8 })
        }
    };
    let f = m * gain;
    [0, 1, 2, 3].map(|b| (look.fg[b] * w_fg + look.bg[b] * (1.0 - w_fg)) * f)
}

fn along(x: f64, y: f64, angle: f32) -> f64 {
    let (s, c) = (angle as f64).sin_cos();
    c * x + s * y
}

fn across(x: f64, y: f64, angle: f32) -> f64 {
    let (s, c) = (angle as f64).sin_cos();
    -s * x + c * y
}

/// Fraction of crown at (x, y): crowns sit on a lattice of `period` metres in a frame rotated by
/// `angle`, displaced by up to `jitter` periods; each crown is a dome of about `radius` metres.
fn crown_cover(x: f64, y: f64, angle: f32, period: f32, radius: f32, jitter: f32, key: u64) -> f32 {
    let p = period as f64;
    let (u, v) = (along(x, y, angle) / p, across(x, y, angle) / p);
    let (iu, iv) = (u.floor() as i64, v.floor() as i64);
    let mut best = 0f32;
    for dv in -1..=1 {
        for du in -1..=1 {
            let (cu, cv) = (iu + du, iv + dv);
            let h = hash3(key, cu, cv);
            let ju = ((h & 0xFFFF) as f32 / 65536.0 - 0.5) * 2.0 * jitter;
            let jv = (((h >> 16) & 0xFFFF) as f32 / 65536.0 - 0.5) * 2.0 * jitter;
            let r = radius * (0.75 + 0.5 * ((h >> 32) & 0xFFFF) as f32 / 65536.0);
            let du_m = (u - (cu as f64 + 0.5 + ju as f64)) * p;
            let dv_m = (v - (cv as f64 + 0.5 + jv as f64)) * p;
            let d2 = (du_m * du_m + dv_m * dv_m) as f32;
            best = best.max((1.3 * (1.0 - d2 / (r * r))).clamp(0.0, 1.0));
        }
    }
    best
}
