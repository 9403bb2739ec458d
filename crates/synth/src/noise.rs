//! Stateless, position-keyed randomness for pixels.
//!
//! Everything a pixel needs (texture, crown jitter, sensor noise) is a hash of the scene seed and
//! the pixel's *position*, never a draw from a shared stream. That is what makes the output
//! independent of strip size, thread count and scheduling order, and lets the after image sample
//! the same texture at sub-pixel shifted positions (a true misregistration, not new texture).

/// SplitMix64 finaliser: a fast, well-mixed 64-bit hash step.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a key and two lattice coordinates.
#[inline]
pub fn hash3(key: u64, ix: i64, iy: i64) -> u64 {
    mix64(key ^ mix64((ix as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (iy as u64).rotate_left(32)))
}

/// Uniform in [0, 1) from a hash.
#[inline]
pub fn unit(h: u64) -> f32 {
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// Derives an independent key from a seed and a label, so each use of randomness has its own stream.
pub fn key(seed: u64, label: u64) -> u64 {
    mix64(seed.wrapping_add(mix64(label.wrapping_add(0x632B_E59B_D9B4_E019))))
}

#[inline]
fn smoothstep01(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Smooth value noise in [-0.5, 0.5] with lattice spacing `scale` metres, at (x, y) metres.
#[inline]
pub fn value_noise(key: u64, x: f64, y: f64, scale: f64) -> f32 {
    let (xs, ys) = (x / scale, y / scale);
    let (fx, fy) = (xs.floor(), ys.floor());
    let (ix, iy) = (fx as i64, fy as i64);
    let (tx, ty) = (smoothstep01((xs - fx) as f32), smoothstep01((ys - fy) as f32));
    let v00 = unit(hash3(key, ix, iy));
    let v10 = unit(hash3(key, ix + 1, iy));
    let v01 = unit(hash3(key, ix, iy + 1));
    let v11 = unit(hash3(key, ix + 1, iy + 1));
    let top = v00 + (v10 - v00) * tx;
    let bottom = v01 + (v11 - v01) * tx;
    top + (bottom - top) * ty - 0.5
}

/// Four approximately standard-normal numbers from one hash: each is a scaled Irwin–Hall sum of
/// three 16-bit uniforms, taken from the hash and two remixes of it (plenty for sensor noise).
#[inline]
pub fn gauss4(h: u64) -> [f32; 4] {
    let h2 = mix64(h);
    let h3 = mix64(h2);
    let mut out = [0.0f32; 4];
    for (i, o) in out.iter_mut().enumerate() {
        let part = |x: u64| ((x >> (16 * i)) & 0xFFFF) as f32 / 65536.0;
        // Sum of three uniforms: mean 1.5, variance 1/4.
        *o = (part(h) + part(h2) + part(h3) - 1.5) * 2.0;
    }
    out
}

/// Smooth step from 0 at `a` to 1 at `b`.
#[inline]
pub fn smooth(x: f32, a: f32, b: f32) -> f32 {
    smoothstep01(((x - a) / (b - a)).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_noise_is_bounded_and_continuous() {
        let k = key(7, 1);
        let mut prev = value_noise(k, 0.0, 3.3, 10.0);
        for i in 1..2000 {
            let v = value_noise(k, i as f64 * 0.01, 3.3, 10.0);
            assert!((-0.5..=0.5).contains(&v));
            assert!((v - prev).abs() < 0.01, "jump at {i}");
            prev = v;
        }
    }

    #[test]
    fn gauss4_has_unit_variance() {
        let (mut s, mut s2, mut n) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..20000u64 {
            for g in gauss4(mix64(i)) {
                s += g as f64;
                s2 += (g * g) as f64;
                n += 1.0;
            }
        }
        let mean = s / n;
        let var = s2 / n - mean * mean;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    }
}
