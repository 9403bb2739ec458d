//! Cloud, haze and shadow masks. Masked pixels are "not observed": they never become change,
//! and their area is reported so staff know what the run could not see.
//!
//! * Cloud: a bright, spectrally flat core (high blue, flat B–NIR spectrum), grown by a buffer
//!   to take in thin edges and haze next to it.
//! * Shadow: a pixel much darker on one date than on the other *with the same spectral shape*
//!   (small spectral angle) — the ground did not change, the light did.

use super::indices::{brightness, flatness, row_brightness, spectrum, BLUE, MAX_BANDS};
use super::morphology::dilate;
use crate::model::MaskParams;
use crate::types::layout::{plane_of, row_major};
use ndarray::{Array2, Array3, Zip};

/// Cloud mask of one date.
pub fn clouds(bands: &Array3<f32>, valid: &Array2<bool>, p: &MaskParams) -> Array2<bool> {
    let valid = valid.as_standard_layout();
    let vs = row_major(&valid);
    let mut core = vec![false; vs.len()];
    let mut edge = vec![false; vs.len()];
    let mut any = false;
    let bands = bands.as_standard_layout();
    let all = row_major(&bands);
    let n = vs.len();
    // Every band map names blue (`BandMap::parse` and `default_for` require it).
    let blue = all
        .get(BLUE * n..(BLUE + 1) * n)
        .expect("the canonical bands start with blue");
    let mut px = [0.0f32; MAX_BANDS];
    let bright_enough = p.cloud_edge_brightness.min(p.cloud_blue);
    // Only pixels with a bright blue band can be cloud; their spectra are gathered. The scan
    // for them goes 64 pixels at a time into a bit set (vectorised), most runs having none.
    let candidates = blue.chunks(64).zip(vs.chunks(64)).enumerate().flat_map(|(c, (b, v))| {
        let bits = b.iter().zip(v).enumerate().fold(0u64, |bits, (k, (&b, &v))| {
            bits | (((b > bright_enough) & v) as u64) << k
        });
        BitIndices { bits, base: c * 64 }
    });
    for i in candidates {
        let px = spectrum(all, n, i, &mut px);
        let flat = flatness(px);
        core[i] = px[BLUE] > p.cloud_blue && flat > p.cloud_core_min_flatness;
        edge[i] = brightness(px) > p.cloud_edge_brightness && flat > p.cloud_edge_min_flatness;
        any |= core[i];
    }
    let core = plane_of(valid.dim(), core);
    if !any {
        return core;
    }
    let near = dilate(&core, p.cloud_buffer_px);
    let mut out = core;
    Zip::from(&mut out)
        .and(&near)
        .and(&plane_of(valid.dim(), edge))
        .for_each(|o, &n, &e| {
            *o |= n && e;
        });
    dilate(&out, 1)
}

/// The positions of the set bits of `bits`, lowest first, plus `base`.
struct BitIndices {
    bits: u64,
    base: usize,
}

impl Iterator for BitIndices {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.bits == 0 {
            return None;
        }
        let k = self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        Some(self.base + k)
    }
}

/// Shadow on either date: one date is darker than `shadow_ratio` of the other in brightness (but
/// not darker than `shadow_min_ratio` of it) while the spectral angle between the dates stays
/// under `shadow_max_angle`.
pub fn shadows(a: &Array3<f32>, b: &Array3<f32>, valid: &Array2<bool>, p: &MaskParams) -> Array2<bool> {
    let valid = valid.as_standard_layout();
    let vs = row_major(&valid);
    let (c, h, w) = a.dim();
    let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
    let (asl, bsl) = (row_major(&a), row_major(&b));
    let n = vs.len();
    let mut out = Vec::with_capacity(n);
    let (mut pa, mut pb) = ([0.0f32; MAX_BANDS], [0.0f32; MAX_BANDS]);
    let (mut ba, mut bb) = (vec![0.0f32; w], vec![0.0f32; w]);
    // Row by row: the brightness of both dates and the "darker" test in vectorised sweeps; the
    // spectral angle, which needs both spectra, only for the darker pixels.
    for y in 0..h {
        let at = y * w..(y + 1) * w;
        row_brightness(asl, n, c, at.clone(), &mut ba);
        row_brightness(bsl, n, c, at.clone(), &mut bb);
        out.extend(ba.iter().zip(&bb).zip(&vs[at.clone()]).map(|((&ba, &bb), &v)| {
            let (lo, hi) = (ba.min(bb), ba.max(bb));
            v & (lo < p.shadow_ratio * hi) & (lo >= p.shadow_min_ratio * hi)
        }));
        for (i, o) in out[at].iter_mut().enumerate().filter(|(_, o)| **o) {
            let i = y * w + i;
            *o = spectral_angle(spectrum(asl, n, i, &mut pa), spectrum(bsl, n, i, &mut pb)) < p.shadow_max_angle;
        }
    }
    plane_of(valid.dim(), out)
}

/// Angle (radians) between two spectra; 0 for the same shape at any brightness.
pub fn spectral_angle(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na < 1e-9 || nb < 1e-9 {
        return 0.0;
    }
    (dot / (na * nb)).clamp(-1.0, 1.0).acos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MaskMode, MaskParams};

    fn params() -> MaskParams {
        MaskParams {
            clouds: MaskMode::On,
            cloud_blue: 0.6,
            cloud_core_min_flatness: 0.75,
            cloud_edge_min_flatness: 0.5,
            cloud_edge_brightness: 0.25,
            cloud_buffer_px: 2,
            shadow_ratio: 0.6,
            shadow_max_angle: 0.12,
            shadow_min_ratio: 0.25,
        }
    }

    fn scene(px: [f32; 4]) -> Array3<f32> {
        Array3::from_shape_fn((4, 8, 8), |(k, _, _)| [0.033, 0.068, 0.038, 0.43][k] + 0.0 * px[k])
    }

    #[test]
    fn cloud_core_and_its_edge_are_masked_but_a_greenhouse_is_not() {
        let mut b = scene([0.0; 4]);
        for k in 0..4 {
            b[(k, 2, 2)] = [0.83, 0.825, 0.81, 0.79][k]; // cloud core
            b[(k, 2, 3)] = [0.40, 0.41, 0.40, 0.45][k]; // thin edge next to it
            b[(k, 6, 6)] = [0.52, 0.545, 0.555, 0.565][k]; // plastic film, far from clouds
        }
        let valid = Array2::from_elem((8, 8), true);
        let m = clouds(&b, &valid, &params());
        assert!(m[(2, 2)] && m[(2, 3)]);
        assert!(!m[(6, 6)], "greenhouse taken for cloud");
    }

    #[test]
    fn clouds_are_found_anywhere_in_a_large_window() {
        // Past the first 64 pixels and across run boundaries of the candidate scan.
        let mut b = Array3::from_shape_fn((4, 20, 21), |(k, _, _)| [0.033, 0.068, 0.038, 0.43][k]);
        let cores = [(3, 1), (6, 20), (15, 17), (19, 0)];
        for &(y, x) in &cores {
            for k in 0..4 {
                b[(k, y, x)] = [0.83, 0.825, 0.81, 0.79][k];
            }
        }
        let valid = Array2::from_elem((20, 21), true);
        let m = clouds(&b, &valid, &params());
        for &(y, x) in &cores {
            assert!(m[(y, x)], "cloud core at ({y}, {x}) missed");
        }
        // The buffer is one pixel: nothing farther than that from a core is masked.
        for ((y, x), &v) in m.indexed_iter() {
            let near = cores.iter().any(|&(cy, cx)| y.abs_diff(cy) <= 1 && x.abs_diff(cx) <= 1);
            assert_eq!(v, near, "({y}, {x})");
        }
    }

    #[test]
    fn shadow_is_darker_with_the_same_shape() {
        let a = scene([0.0; 4]);
        let mut b = a.clone();
        let mut c = a.clone();
        for k in 0..4 {
            b[(k, 4, 4)] *= 0.4; // shadowed vegetation
            c[(k, 4, 4)] = [0.062, 0.076, 0.048, 0.026][k]; // vegetation became water: not shadow
        }
        let valid = Array2::from_elem((8, 8), true);
        assert!(shadows(&a, &b, &valid, &params())[(4, 4)]);
        assert!(!shadows(&a, &c, &valid, &params())[(4, 4)]);
        assert!(!shadows(&a, &b, &valid, &params())[(0, 0)]);
        // Flooded paddy covered by plastic film: both spectra flat, but far too bright a change.
        let mut water = a.clone();
        let mut film = a.clone();
        for k in 0..4 {
            water[(k, 4, 4)] = [0.068, 0.083, 0.071, 0.088][k];
            film[(k, 4, 4)] = [0.411, 0.423, 0.387, 0.373][k];
        }
        assert!(!shadows(&water, &film, &valid, &params())[(4, 4)]);
    }

    #[test]
    fn the_shadow_mask_is_its_formula_at_every_pixel() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let a = Array3::from_shape_fn((4, 17, 21), |_| rng.random_range(0.02f32..0.4));
        // The other date: the same spectrum at a random fraction of its light, or a new one.
        let light = Array2::from_shape_fn((17, 21), |_| rng.random_range(0.1f32..1.2));
        let b = Array3::from_shape_fn((4, 17, 21), |(k, y, x)| {
            if (y + x) % 3 == 0 {
                rng.random_range(0.02f32..0.4)
            } else {
                a[(k, y, x)] * light[(y, x)]
            }
        });
        let mut valid = Array2::from_elem((17, 21), true);
        valid[(3, 4)] = false;
        let p = params();
        let got = shadows(&a, &b, &valid, &p);
        let (mut pa, mut pb) = ([0.0f32; MAX_BANDS], [0.0f32; MAX_BANDS]);
        let (sa, sb) = (a.as_slice().unwrap(), b.as_slice().unwrap());
        for (i, &g) in got.iter().enumerate() {
            let (xa, xb) = (spectrum(sa, 17 * 21, i, &mut pa), spectrum(sb, 17 * 21, i, &mut pb));
            let (lo, hi) = (brightness(xa).min(brightness(xb)), brightness(xa).max(brightness(xb)));
            let want = valid.as_slice().unwrap()[i]
                && lo < p.shadow_ratio * hi
                && lo >= p.shadow_min_ratio * hi
                && spectral_angle(xa, xb) < p.shadow_max_angle;
            assert_eq!(g, want, "pixel {i}");
        }
        let set = got.iter().filter(|&&v| v).count();
        assert!(
            set > 10 && set < got.len() / 2,
            "{set} shadow pixels: the test must see both kinds"
        );
    }
}
