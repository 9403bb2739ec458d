//! `synth --vary`: scenes that differ from one another as real pairs do.
//!
//! The default recipe keeps one look (the same sensor gain, haze and roof mix, reflectance ×
//! 10000), so that a seed's scene stays the benchmark it has always been. A model trained only on
//! such scenes learns that look. With `--vary` the seed also draws what differs between real
//! deliveries and places: the product's radiometry (reflectance × 10000, 10/12-bit digital
//! numbers with their own gain and dark level, or an 8-bit stretched display product, each date
//! on its own), the after image's sensor gain, offset, haze strength, blur and misregistration,
//! the share of crop parcels that change with the season (harvest, tillage, ploughing, flooding),
//! and the mix of roof materials (the palette widened to dark tile, brown, orange tile and green
//! steel). Everything is drawn from its own random stream of the seed: the same size, seed and
//! `--vary` give the same files (the season's share also changes which parcels change, so a
//! varied scene's truth differs from the default scene of its seed).

use super::render::Radiometry;
use super::scene::stream;
use super::spectra::{Spectrum, ROOFS, ROOFS_WIDE};
use rand::Rng;

/// The random stream of the variety draws (the scene's other streams are untouched).
const VARIETY_STREAM: u64 = 13;

/// How a scene departs from the default recipe.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Variety {
    /// Share of crop parcels whose state changes between the dates.
    pub seasonal_share: f64,
    /// Roof materials and their shares (pitched or not).
    pub roofs: Vec<(Spectrum, f32, bool)>,
    /// The after image's sensor and geometry differences.
    pub radiometry: Radiometry,
    /// How each date's values are stored (before, after).
    pub products: [Product; 2],
}

/// How an image's values are stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Product {
    /// Surface reflectance × 10000, UInt16 (the default recipe).
    Reflectance,
    /// Raw digital numbers of a `bits`-bit sensor (UInt16 with NBITS): `dn = reflectance ×
    /// gain + dark`, clipped to the sensor's range (bright roofs and clouds saturate).
    Dn { bits: u8, gain: [f32; 4], dark: [f32; 4] },
    /// An 8-bit display product: per band, reflectance from `lo` to `hi` stretched to 0–255 with
    /// a gamma (Byte; what is left below and above is clipped).
    Stretched { lo: [f32; 4], hi: [f32; 4], gamma: f32 },
}

impl Product {
    /// Whether the product is stored as Byte.
    pub fn is_byte(&self) -> bool {
        matches!(self, Product::Stretched { .. })
    }

    /// The sensor's bit depth to declare (NBITS), for digital numbers.
    pub fn nbits(&self) -> Option<u8> {
        match self {
            Product::Dn { bits, .. } => Some(*bits),
            _ => None,
        }
    }

    /// The `SCALE` metadata of the image.
    pub fn label(&self) -> String {
        match self {
            Product::Reflectance => "reflectance*10000".into(),
            Product::Dn { bits, .. } => format!("dn ({bits}-bit)"),
            Product::Stretched { .. } => "8-bit stretched".into(),
        }
    }

    /// The stored value of band `band` for a rendered reflectance × 10000 value.
    pub fn encode(&self, band: usize, reflectance: u16) -> u16 {
        let v = f32::from(reflectance);
        match self {
            Product::Reflectance => reflectance,
            Product::Dn { bits, gain, dark } => {
                let full = f32::from((1u16 << bits) - 1);
                (v / 10_000.0 * gain[band] + dark[band]).round().clamp(1.0, full) as u16
            }
            Product::Stretched { lo, hi, gamma } => {
                let t = ((v - lo[band]) / (hi[band] - lo[band])).clamp(0.0, 1.0);
                (t.powf(*gamma) * 255.0).round() as u16
            }
        }
    }
}

impl Variety {
    /// The draws of scene `seed`.
    pub fn draw(seed: u64) -> Variety {
        let mut rng = stream(seed, VARIETY_STREAM, 0);
        let seasonal_share = round4(rng.random_range(0.1..0.6));
        let roofs = ROOFS_WIDE
            .iter()
            .map(|&(s, _, pitched)| (s, rng.random_range(0.05f32..1.0), pitched))
            .collect();
        let radiometry = draw_radiometry(&mut rng);
        let kind = rng.random_range(0..4u8);
        let products = [0, 1].map(|_| draw_product(&mut rng, kind));
        Variety {
            seasonal_share,
            roofs,
            radiometry,
            products,
        }
    }

    /// The default recipe's roof mix (a scene without `--vary`).
    pub fn default_roofs() -> Vec<(Spectrum, f32, bool)> {
        ROOFS.to_vec()
    }
}

/// Wider sensor and atmosphere differences than the default recipe's: per-band gain 0.75–1.3,
/// offset ±250, haze from none to 2.5× the default, blur 0.4–1.3 px and up to 1.5 px of shift.
fn draw_radiometry(rng: &mut impl Rng) -> Radiometry {
    let (mag, ang): (f64, f64) = (rng.random_range(0.0..1.5), rng.random_range(0.0..std::f64::consts::TAU));
    let haze = rng.random_range(0.0f32..2.5);
    Radiometry {
        shift_px: [round4(mag * ang.cos()), round4(mag * ang.sin())],
        gain: [0; 4].map(|_| rng.random_range(0.75f32..1.3)),
        offset: [0; 4].map(|_| rng.random_range(-250.0f32..250.0)),
        haze: [240.0f32, 170.0, 110.0, 40.0].map(|h| h * haze),
        blur_sigma_px: [0; 2].map(|_| rng.random_range(0.4f32..1.3)),
    }
}

/// One date's product of kind `kind` (0 reflectance, 1 10-bit DN, 2 12-bit DN, 3 8-bit).
fn draw_product(rng: &mut impl Rng, kind: u8) -> Product {
    match kind {
        0 => Product::Reflectance,
        1 | 2 => {
            let bits = if kind == 1 { 10 } else { 12 };
            let full = f32::from((1u16 << bits) - 1);
            // Full scale reached at 45–100 % reflectance; dark level up to 4 % of the range.
            Product::Dn {
                bits,
                gain: [0; 4].map(|_| full / rng.random_range(0.45f32..1.0)),
                dark: [0; 4].map(|_| (rng.random_range(0.0f32..0.04) * full).round()),
            }
        }
        _ => Product::Stretched {
            lo: [0; 4].map(|_| rng.random_range(100.0f32..700.0).round()),
            hi: [0; 4].map(|_| rng.random_range(2500.0f32..6000.0).round()),
            gamma: round4(rng.random_range(0.6..1.0)) as f32,
        },
    }
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draws_are_the_seeds_and_vary_between_seeds() {
        let a = serde_json::to_string(&Variety::draw(7)).unwrap();
        assert_eq!(a, serde_json::to_string(&Variety::draw(7)).unwrap());
        let kinds: std::collections::BTreeSet<String> = (0..40)
            .map(|s| format!("{:?}", Variety::draw(s).products[0]).chars().take(4).collect())
            .collect();
        assert_eq!(
            kinds.len(),
            3,
            "reflectance, DN and 8-bit products all occur: {kinds:?}"
        );
    }

    #[test]
    fn products_store_in_their_range_and_keep_the_order_of_values() {
        let dn = Product::Dn {
            bits: 10,
            gain: [1500.0; 4],
            dark: [20.0; 4],
        };
        assert_eq!(dn.encode(0, 5000), 770);
        assert_eq!(dn.encode(0, 10_000), 1023, "saturates at the sensor's range");
        let byte = Product::Stretched {
            lo: [200.0; 4],
            hi: [4200.0; 4],
            gamma: 1.0,
        };
        assert_eq!(
            (byte.encode(1, 100), byte.encode(1, 2200), byte.encode(1, 9000)),
            (0, 128, 255)
        );
        let curved = Product::Stretched {
            lo: [200.0; 4],
            hi: [4200.0; 4],
            gamma: 0.7,
        };
        let mut last = 0;
        for v in (0..10_000).step_by(97) {
            let e = curved.encode(2, v);
            assert!(e >= last && e <= 255);
            last = e;
        }
        assert_eq!(Product::Reflectance.encode(3, 1234), 1234);
    }
}
