//! Surface materials and how a surface looks on one date.
//!
//! Spectra are surface reflectance x 10000 in the band order B, G, R, NIR, typical of 2–3 m
//! optical sensors (GF-1/GF-2/ZY-3 class) over south China: dense crops and canopy are dark in
//! visible and bright in NIR, red lateritic soil is bright in red, water is dark in NIR, greenhouse
//! film and white roofs are bright everywhere, blue steel roofs have blue > red.

/// Reflectance x 10000 for B, G, R, NIR.
pub type Spectrum = [f32; 4];

pub const VEG: Spectrum = [330.0, 680.0, 380.0, 4300.0];
pub const CANOPY: Spectrum = [260.0, 520.0, 290.0, 3300.0];
pub const GRASS: Spectrum = [450.0, 820.0, 560.0, 3000.0];
pub const SOIL_RED: Spectrum = [1050.0, 1450.0, 2250.0, 2750.0];
pub const SOIL_BROWN: Spectrum = [780.0, 1000.0, 1300.0, 1750.0];
pub const STRAW: Spectrum = [950.0, 1350.0, 1650.0, 2350.0];
pub const WATER: Spectrum = [620.0, 760.0, 480.0, 260.0];
pub const ALGAE: Spectrum = [600.0, 1050.0, 700.0, 600.0];
pub const CONCRETE: Spectrum = [1900.0, 2100.0, 2200.0, 2400.0];
pub const ASPHALT: Spectrum = [780.0, 880.0, 940.0, 1080.0];
pub const ROOF_GREY: Spectrum = [1500.0, 1650.0, 1750.0, 1900.0];
pub const ROOF_RED: Spectrum = [760.0, 880.0, 1750.0, 2050.0];
pub const ROOF_BLUE: Spectrum = [2300.0, 2050.0, 1500.0, 1650.0];
pub const ROOF_WHITE: Spectrum = [3800.0, 3900.0, 3900.0, 4000.0];
pub const PLASTIC: Spectrum = [5200.0, 5450.0, 5550.0, 5650.0];
pub const CLOUD: Spectrum = [8300.0, 8250.0, 8100.0, 7900.0];
/// Cast shadow of a house on built ground: diffuse sky light only.
pub const HOUSE_SHADOW: Spectrum = [420.0, 430.0, 400.0, 520.0];

/// Weighted sum of spectra.
pub fn mix(parts: &[(Spectrum, f32)]) -> Spectrum {
    let mut out = [0.0; 4];
    for (s, w) in parts {
        for b in 0..4 {
            out[b] += s[b] * w;
        }
    }
    out
}

pub fn scale(s: Spectrum, f: f32) -> Spectrum {
    s.map(|v| v * f)
}

/// Multiplies band by band (per-band brightness jitter of a parcel or roof).
pub fn scale4(s: Spectrum, f: [f32; 4]) -> Spectrum {
    [s[0] * f[0], s[1] * f[1], s[2] * f[2], s[3] * f[3]]
}

/// How strongly a surface is textured, as multiplicative noise amplitudes at three scales:
/// fine (~2.5 m: plants, gravel), mid (~12 m: patchiness), large (~100 m: moisture, fertility).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Texture {
    Crop,
    Soil,
    Water,
    Roof,
    Road,
    Forest,
    Orchard,
    Film,
    Village,
    Rough,
}

impl Texture {
    pub fn amplitudes(self) -> [f32; 3] {
        match self {
            Texture::Crop => [0.03, 0.08, 0.09],
            Texture::Soil => [0.04, 0.06, 0.08],
            Texture::Water => [0.015, 0.03, 0.06],
            Texture::Roof => [0.025, 0.0, 0.0],
            Texture::Road => [0.03, 0.02, 0.02],
            Texture::Forest => [0.06, 0.05, 0.05],
            Texture::Orchard => [0.03, 0.03, 0.04],
            Texture::Film => [0.015, 0.02, 0.02],
            Texture::Village => [0.05, 0.05, 0.04],
            Texture::Rough => [0.12, 0.10, 0.08],
        }
    }
}

/// The spatial arrangement of a surface's two components `fg` and `bg`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pattern {
    /// Only `fg`.
    Plain,
    /// Tree crowns on a lattice in a rotated frame: `jitter` 0 = planted rows (orchard), near 0.5 =
    /// natural forest. `fg` = crown, `bg` = ground between crowns.
    Crowns {
        angle: f32,
        period: f32,
        radius: f32,
        jitter: f32,
    },
    /// Parallel strips (greenhouse film over soil): `duty` is the film fraction of each period.
    Strips { angle: f32, period: f32, duty: f32 },
    /// Tillage or stubble rows: a faint periodic brightness ripple on `fg`.
    Furrows { angle: f32, period: f32, depth: f32 },
    /// Built village ground (`fg`) with clumps of trees (`bg`).
    Clumps,
    /// Irregular patches of `fg` and `bg` (construction sites, clear-cuts).
    Blotches,
    /// A pitched roof: the half beyond the ridge line (through `centre`, along `angle`) is darker.
    Roof { angle: f32, centre: [f32; 2] },
}

/// How one feature looks on one date.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Look {
    pub fg: Spectrum,
    pub bg: Spectrum,
    pub pattern: Pattern,
    pub texture: Texture,
}

impl Look {
    pub fn plain(fg: Spectrum, texture: Texture) -> Self {
        Look {
            fg,
            bg: fg,
            pattern: Pattern::Plain,
            texture,
        }
    }
}

/// Roof materials of rural Guangxi houses and how common each is.
pub const ROOFS: [(Spectrum, f32, bool); 4] = [
    // (spectrum, share, pitched)
    (ROOF_GREY, 0.55, false),
    (ROOF_RED, 0.25, true),
    (ROOF_BLUE, 0.12, true),
    (ROOF_WHITE, 0.08, false),
];

pub const ROOF_DARK: Spectrum = [520.0, 560.0, 600.0, 700.0];
pub const ROOF_BROWN: Spectrum = [700.0, 820.0, 1050.0, 1350.0];
pub const ROOF_ORANGE: Spectrum = [650.0, 1150.0, 2500.0, 2750.0];
pub const ROOF_GREEN: Spectrum = [900.0, 1350.0, 950.0, 1500.0];

/// Every roof material of `synth --vary` (shares drawn per scene; the shares here are unused).
pub const ROOFS_WIDE: [(Spectrum, f32, bool); 8] = [
    ROOFS[0],
    ROOFS[1],
    ROOFS[2],
    ROOFS[3],
    (ROOF_DARK, 0.0, true),
    (ROOF_BROWN, 0.0, true),
    (ROOF_ORANGE, 0.0, true),
    (ROOF_GREEN, 0.0, false),
];

/// Phenological or management state of a crop parcel on one date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CropState {
    Green,
    Young,
    Bare,
    Stubble,
    Flooded,
}

impl CropState {
    /// States and their shares for paddy (0101) and dry land (0103) in the dry-season window.
    pub fn distribution(paddy: bool) -> &'static [(CropState, f32)] {
        if paddy {
            &[
                (CropState::Green, 0.40),
                (CropState::Flooded, 0.12),
                (CropState::Stubble, 0.28),
                (CropState::Young, 0.20),
            ]
        } else {
            &[
                (CropState::Green, 0.45),
                (CropState::Young, 0.20),
                (CropState::Bare, 0.20),
                (CropState::Stubble, 0.15),
            ]
        }
    }

    /// The parcel's spectrum in this state; `cover` in [0,1] draws where it lies in the state's
    /// range (how green, how wet), `soil` is the parcel's own soil.
    pub fn spectrum(self, cover: f32, soil: Spectrum) -> Spectrum {
        let lerp = |lo: f32, hi: f32| lo + (hi - lo) * cover;
        match self {
            CropState::Green => {
                let f = lerp(0.72, 0.95);
                mix(&[(VEG, f), (soil, 1.0 - f)])
            }
            CropState::Young => {
                let f = lerp(0.25, 0.5);
                mix(&[(VEG, f), (soil, 1.0 - f)])
            }
            CropState::Bare => {
                let f = lerp(0.0, 0.08);
                mix(&[(VEG, f), (soil, 1.0 - f)])
            }
            CropState::Stubble => {
                let f = lerp(0.5, 0.8);
                mix(&[(STRAW, f), (soil, 1.0 - f)])
            }
            CropState::Flooded => {
                let w = lerp(0.55, 0.85);
                mix(&[(WATER, w), (VEG, 0.1), (soil, 0.9 - w)])
            }
        }
    }

    /// Tilled and harvested fields show rows; growing and flooded fields do not at 2 m.
    pub fn has_rows(self) -> bool {
        matches!(self, CropState::Bare | CropState::Stubble)
    }
}
