//! How an image's stored values become the reflectance-like units (0..1) that the kernels and the
//! model's absolute thresholds (cloud brightness, water, bright roofs, film) are written in.
//!
//! GF-1/2/6 and ZY-3 deliveries come three ways: raw 10/12-bit digital numbers in 16-bit files,
//! 16-bit reflectance × 10000, or 8-bit stretched RGB. Read with the wrong factor, the relative
//! evidence still works (both dates are standardised against each other) but every absolute
//! threshold misfires silently — clouds are never masked on DN read as reflectance × 10000 — so
//! the factor is chosen on purpose, recorded in the manifest, and checked against the pixels
//! (see [`check_plausible`]).

use super::raster::RasterInfo;
use crate::{Error, Result};
use gdal::raster::GdalDataType;
use gdal::{Dataset, Metadata};
use serde::{Deserialize, Serialize};

/// What an image's stored values are (`--radiometry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Radiometry {
    /// The band scale the file declares (GDAL scale/offset metadata) when it has one; else raw
    /// DN when the file declares a sensor bit depth (`NBITS` under 16 in an integer file:
    /// reflectance × 10000 needs 14 bits and is never written so); else by storage type:
    /// 8-bit ÷ 255, 16/32-bit integers ÷ 10000, floats as reflectance.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// Reflectance: integers are reflectance × 10000 (or the file's declared band scale), floats
    /// reflectance.
    #[serde(rename = "reflectance")]
    Reflectance,
    /// Raw digital numbers of an n-bit sensor (GF-1/2/6, ZY-3: 10 or 12 bit), divided by full
    /// scale 2ⁿ − 1; n from the file's `NBITS` or, without it, from the largest value.
    #[serde(rename = "dn")]
    Dn,
    /// An 8-bit stretched (display) product: ÷ 255.
    #[serde(rename = "8bit")]
    EightBit,
}

impl Radiometry {
    /// Every mode, in the order the help lists them.
    const ALL: [Radiometry; 4] = [
        Radiometry::Auto,
        Radiometry::Reflectance,
        Radiometry::Dn,
        Radiometry::EightBit,
    ];

    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Radiometry::Auto => "auto",
            Radiometry::Reflectance => "reflectance",
            Radiometry::Dn => "dn",
            Radiometry::EightBit => "8bit",
        }
    }
}

impl std::str::FromStr for Radiometry {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Radiometry::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("`{s}`: expected auto, reflectance, dn or 8bit"))
    }
}

/// The factor that turned one image's stored values into reflectance-like units, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gain {
    /// Reflectance-like value = stored value × `factor`.
    pub factor: f32,
    /// How the factor was chosen (for the manifest), e.g. `12-bit DN (NBITS)`.
    pub basis: String,
    /// The bit depth, when it was guessed from the largest value rather than declared.
    #[serde(skip)]
    guessed_bits: Option<u32>,
    /// What the stored values were taken to be (never `Auto`): `auto` resolves per image.
    #[serde(skip)]
    read_as: Radiometry,
}

impl Gain {
    fn new(factor: f32, basis: impl Into<String>, read_as: Radiometry) -> Self {
        Self {
            factor,
            basis: basis.into(),
            guessed_bits: None,
            read_as,
        }
    }

    fn dn_bits(bits: u32, basis: String, guessed: bool) -> Self {
        Self {
            factor: 1.0 / ((1u64 << bits) - 1) as f32,
            basis,
            guessed_bits: guessed.then_some(bits),
            read_as: Radiometry::Dn,
        }
    }
}

/// The factors of a pair's two images. One sensor has one full scale: where both bit depths are
/// guessed from the largest values, the larger guess serves both dates (a darker date would
/// otherwise be read at a smaller depth, i.e. brighter than it is).
pub fn pair_gains(
    before: (&Dataset, &RasterInfo),
    after: (&Dataset, &RasterInfo),
    bands: &[usize],
    mode: Radiometry,
) -> Result<(Gain, Gain)> {
    let (b, a) = (
        gain(before.0, before.1, bands, mode)?,
        gain(after.0, after.1, bands, mode)?,
    );
    match (b.guessed_bits, a.guessed_bits) {
        (Some(bb), Some(ab)) if bb != ab => {
            let bits = bb.max(ab);
            let basis = format!("{bits}-bit DN (largest value of either date)");
            Ok((
                Gain::dn_bits(bits, basis.clone(), true),
                Gain::dn_bits(bits, basis, true),
            ))
        }
        _ => Ok((b, a)),
    }
}

/// Largest plausible median reflectance of a band over the calibration windows: even snow and
/// cloud stay near 1, so a median above this is raw DN read with the wrong factor.
pub const MAX_PLAUSIBLE_MEDIAN: f32 = 1.5;

/// Chooses the factor for `bands` (1-based GDAL numbers) of `info` under `mode`.
fn gain(ds: &Dataset, info: &RasterInfo, bands: &[usize], mode: Radiometry) -> Result<Gain> {
    match mode {
        Radiometry::Auto | Radiometry::Reflectance => match declared_scale(ds, info, bands)? {
            Some(g) => Ok(g),
            None if mode == Radiometry::Auto
                && is_integer(info)
                && declared_bits(ds, bands).is_some_and(|b| b < 16) =>
            {
                dn(ds, info, bands)
            }
            None => by_storage_type(info, mode),
        },
        Radiometry::EightBit => eight_bit(ds, info, bands),
        Radiometry::Dn => dn(ds, info, bands),
    }
}

/// A note for the manifest's warnings when the absolute thresholds rest on an approximation:
/// an image read as digital numbers or as an 8-bit product, whether asked for or found by
/// `auto` (a file declaring `NBITS`, a Byte file).
pub fn caveat(before: &Gain, after: &Gain) -> Option<String> {
    let read_as = |r: Radiometry| before.read_as == r || after.read_as == r;
    let kind = [Radiometry::Dn, Radiometry::EightBit]
        .into_iter()
        .find(|&r| read_as(r))
        .unwrap_or(Radiometry::Reflectance);
    match kind {
        Radiometry::Dn => Some(
            "radiometry dn: digital numbers ÷ full scale stand in for reflectance; the model's absolute \
             thresholds (cloud, water, bright roofs) are approximate — calibrate to reflectance for full accuracy"
                .into(),
        ),
        Radiometry::EightBit => Some(
            "radiometry 8bit: a stretched display product; the model's absolute thresholds (cloud, water, \
             bright roofs) are approximate"
                .into(),
        ),
        Radiometry::Auto | Radiometry::Reflectance => None,
    }
}

/// A warning when an image read as integer reflectance × 10000 never leaves the 12-bit range
/// (`maxima`: per-band largest sampled values after scaling): raw 10/12-bit DN look exactly so,
/// and read as reflectance they leave clouds unmasked and bright roofs dim.
pub fn dn_suspicion(info: &RasterInfo, gain: &Gain, maxima: &[f32]) -> Option<String> {
    let twelve_bit = 4095.0 / 10000.0;
    let read_as_reflectance = is_integer(info) && info.data_type != GdalDataType::UInt8 && gain.factor == 1e-4;
    let all_low = !maxima.is_empty() && maxima.iter().all(|&m| m.is_finite() && m <= twelve_bit);
    (read_as_reflectance && all_low).then(|| {
        format!(
            "{}: read as reflectance × 10000, but no sampled value exceeds 4095 (the 12-bit range); if the file \
             holds raw DN, pass --radiometry dn",
            info.path.display()
        )
    })
}

/// Refuses an image whose scaled pixels cannot be reflectance: `medians` are the per-band medians
/// of its valid calibration-window pixels after scaling.
pub fn check_plausible(info: &RasterInfo, mode: Radiometry, gain: &Gain, medians: &[f32]) -> Result<()> {
    let Some((band, &m)) = medians
        .iter()
        .enumerate()
        .find(|(_, &m)| m.is_finite() && m > MAX_PLAUSIBLE_MEDIAN)
    else {
        return Ok(());
    };
    let hint =
        match mode {
            Radiometry::Dn | Radiometry::EightBit => "check the file: its values exceed the sensor's full scale".into(),
            _ if !is_integer(info) => "these look like digital numbers stored as floats; scale them to reflectance \
                                   (e.g. gdal_translate -scale) or store them as integers and pass --radiometry dn"
                .into(),
            _ => {
                format!(
            "these look like raw digital numbers; pass --radiometry dn (or `radiometry = \"dn\"` under [bands] \
             in a pipeline file){}",
            if info.data_type == GdalDataType::UInt8 { "" } else { ", or 8bit for a stretched product" }
        )
            }
        };
    Err(Error::input(
        &info.path,
        format!(
            "read as {} ({}), band {} has a median value of {m:.2}, which no reflectance has; {hint}",
            mode.name(),
            gain.basis,
            band + 1
        ),
    ))
}

/// GDAL band scale/offset metadata, when the file declares it. One factor serves every band, so
/// differing scales or a non-zero offset are refused rather than half-applied.
fn declared_scale(ds: &Dataset, info: &RasterInfo, bands: &[usize]) -> Result<Option<Gain>> {
    let mut declared = Vec::with_capacity(bands.len());
    for &b in bands {
        let band = ds
            .rasterband(b)
            .map_err(|e| Error::gdal(&info.path, format!("cannot read band {b}"), e))?;
        let (scale, offset) = (band.scale().unwrap_or(1.0), band.offset().unwrap_or(0.0));
        if scale != 1.0 || offset != 0.0 {
            declared.push((b, scale, offset));
        }
    }
    let Some(&(_, scale, _)) = declared.first() else {
        return Ok(None);
    };
    let uniform = declared.len() == bands.len() && declared.iter().all(|&(_, s, o)| s == scale && o == 0.0);
    if !(uniform && scale.is_finite() && scale > 0.0) {
        let listed: Vec<String> = declared
            .iter()
            .map(|(b, s, o)| format!("band {b}: scale {s}, offset {o}"))
            .collect();
        return Err(Error::input(
            &info.path,
            format!(
                "declares band scales/offsets landwatch cannot apply as one factor ({}); convert it to reflectance \
                 first, e.g. gdal_translate -unscale -ot Float32",
                listed.join("; ")
            ),
        ));
    }
    Ok(Some(Gain::new(
        scale as f32,
        format!("band scale {scale} declared in the file"),
        Radiometry::Reflectance,
    )))
}

fn by_storage_type(info: &RasterInfo, mode: Radiometry) -> Result<Gain> {
    let (factor, basis) = match info.data_type {
        GdalDataType::UInt8 if mode == Radiometry::Reflectance => {
            return Err(Error::input(
                &info.path,
                "is 8-bit, which cannot hold reflectance × 10000; pass --radiometry 8bit for a stretched product \
                 or dn for raw digital numbers",
            ))
        }
        GdalDataType::UInt8 => (1.0 / 255.0, "8-bit ÷ 255"),
        GdalDataType::UInt16 | GdalDataType::Int16 | GdalDataType::UInt32 | GdalDataType::Int32 => {
            (1.0 / 10000.0, "integer reflectance × 10000")
        }
        GdalDataType::Float32 | GdalDataType::Float64 => (1.0, "floating-point reflectance"),
        other => return Err(unreadable_type(info, other)),
    };
    let read_as = if info.data_type == GdalDataType::UInt8 {
        Radiometry::EightBit
    } else {
        Radiometry::Reflectance
    };
    Ok(Gain::new(factor, basis, read_as))
}

fn eight_bit(ds: &Dataset, info: &RasterInfo, bands: &[usize]) -> Result<Gain> {
    if info.data_type != GdalDataType::UInt8 {
        let max = largest_value(ds, info, bands)?;
        if max > 255.0 {
            return Err(Error::input(
                &info.path,
                format!(
                    "--radiometry 8bit, but the file stores {} values up to {max}; pass dn or reflectance",
                    info.data_type.name()
                ),
            ));
        }
    }
    Ok(Gain::new(1.0 / 255.0, "8-bit stretched ÷ 255", Radiometry::EightBit))
}

fn is_integer(info: &RasterInfo) -> bool {
    matches!(
        info.data_type,
        GdalDataType::UInt8 | GdalDataType::UInt16 | GdalDataType::Int16 | GdalDataType::UInt32 | GdalDataType::Int32
    )
}

fn dn(ds: &Dataset, info: &RasterInfo, bands: &[usize]) -> Result<Gain> {
    if !is_integer(info) {
        return Err(Error::input(
            &info.path,
            format!(
                "--radiometry dn needs integer digital numbers, but the file stores {}; pass reflectance",
                info.data_type.name()
            ),
        ));
    }
    Ok(match declared_bits(ds, bands) {
        Some(bits) => Gain::dn_bits(bits, format!("{bits}-bit DN (NBITS in the file)"), false),
        None => {
            let max = largest_value(ds, info, bands)?;
            let bits = bits_for(max);
            Gain::dn_bits(bits, format!("{bits}-bit DN (largest value {max})"), true)
        }
    })
}

/// The sensor's bit depth as the file declares it (`NBITS`, e.g. 10 or 12 in a 16-bit file).
fn declared_bits(ds: &Dataset, bands: &[usize]) -> Option<u32> {
    let band = ds.rasterband(*bands.first()?).ok()?;
    let bits: u32 = band.metadata_item("NBITS", "IMAGE_STRUCTURE")?.trim().parse().ok()?;
    (1..=32).contains(&bits).then_some(bits)
}

/// The smallest common sensor bit depth whose full scale holds `max`.
pub fn bits_for(max: f64) -> u32 {
    [8, 10, 11, 12, 14, 16, 32]
        .into_iter()
        .find(|&b| max <= ((1u64 << b) - 1) as f64)
        .unwrap_or(32)
}

/// The largest value of `bands`, approximated by GDAL from a sample of blocks (or an overview);
/// nothing is written beside the file.
fn largest_value(ds: &Dataset, info: &RasterInfo, bands: &[usize]) -> Result<f64> {
    let mut max = f64::MIN;
    for &b in bands {
        let band = ds
            .rasterband(b)
            .map_err(|e| Error::gdal(&info.path, format!("cannot read band {b}"), e))?;
        let mm = band
            .compute_raster_min_max(true)
            .map_err(|e| Error::gdal(&info.path, format!("cannot read the value range of band {b}"), e))?;
        max = max.max(mm.max);
    }
    Ok(max)
}

fn unreadable_type(info: &RasterInfo, other: GdalDataType) -> Error {
    Error::input(
        &info.path,
        format!(
            "stores its pixels as {}, which landwatch cannot read as reflectance; convert it to 16-bit \
             reflectance x 10000 (gdal_translate -ot UInt16) or to Float32 reflectance",
            other.name()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_depth_is_the_smallest_full_scale_holding_the_largest_value() {
        assert_eq!(bits_for(255.0), 8);
        assert_eq!(bits_for(256.0), 10);
        assert_eq!(bits_for(1023.0), 10);
        assert_eq!(bits_for(3987.0), 12);
        assert_eq!(bits_for(16383.0), 14);
        assert_eq!(bits_for(40000.0), 16);
    }

    #[test]
    fn names_round_trip() {
        for r in [
            Radiometry::Auto,
            Radiometry::Reflectance,
            Radiometry::Dn,
            Radiometry::EightBit,
        ] {
            assert_eq!(r.name().parse::<Radiometry>(), Ok(r));
        }
        assert!("DN12".parse::<Radiometry>().is_err());
    }
}
