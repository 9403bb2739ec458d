//! The per-pixel values the streaming pass sums over each patch's changed pixels; the patch
//! stage turns the sums into features ([`crate::types::features::summarise`]).

use super::indices::{brightness, flatness, nd, vegetation, water, BLUE, RED};
use crate::model::FilmParams;
use crate::types::features::PIXEL_VALUES;

/// The values of one patch pixel whose means make the patch's features: vegetation index,
/// brightness, flatness and NDWI before and after, open water after, blue/red after, and the
/// 3×3 texture of the vegetation index and of brightness before and after, and the crown texture
/// of the vegetation index before and after (tree crowns, not field edges or ridges; see
/// [`crate::detect::texture`]), and whether the pixel turned to plastic film by the film path's
/// thresholds (`film`; counts towards `film_frac_after`). Open water after is NDWI after above
/// `water_min_ndwi` (counts towards `water_frac_after`). `b` and `a` are the pixel's band
/// vectors; NDWI entries are 0 without NIR. Last, the pixel's change evidence relative to the
/// threshold (`evidence_rel`, capped at [`EVIDENCE_REL_CAP`]), which is no typing feature: its
/// mean makes the patch's change confidence ([`crate::patches::confidence`]).
#[allow(clippy::too_many_arguments)]
pub fn pixel_values(
    b: &[f32],
    a: &[f32],
    vtex: (f32, f32),
    btex: (f32, f32),
    ctex: (f32, f32),
    film: &FilmParams,
    water_min_ndwi: f32,
    evidence_rel: f32,
) -> [f32; PIXEL_VALUES] {
    // Without NIR there is no NDWI: its entries are 0 and `summarise` leaves the NDWI and
    // open-water features out (a missing feature, not a value of 0 for the rules to read).
    let ndwi_a = water(a).unwrap_or(0.0);
    let (bright_b, bright_a, flat_a) = (brightness(b), brightness(a), flatness(a));
    [
        vegetation(b),
        vegetation(a),
        bright_b,
        bright_a,
        flatness(b),
        flat_a,
        water(b).unwrap_or(0.0),
        ndwi_a,
        if ndwi_a > water_min_ndwi { 1.0 } else { 0.0 },
        nd(a[BLUE], a[RED]),
        vtex.0,
        vtex.1,
        btex.0,
        btex.1,
        ctex.0,
        ctex.1,
        if bright_a - bright_b > film.min_brightening && flat_a > film.min_flatness {
            1.0
        } else {
            0.0
        },
        // NaN (never expected) counts as no evidence rather than poisoning the mean.
        if evidence_rel.is_nan() {
            0.0
        } else {
            evidence_rel.clamp(0.0, EVIDENCE_REL_CAP)
        },
    ]
}

/// Evidence beyond this many thresholds adds nothing to a patch's confidence (and one very
/// bright pixel cannot dominate a patch's mean).
pub const EVIDENCE_REL_CAP: f32 = 4.0;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::features::{summarise, PixelSums, FEATURE_NAMES};

    /// The shipped `typing.water_frac_min_ndwi`.
    const WATER: f32 = 0.1;

    #[test]
    fn a_new_roof_on_a_field_reads_as_brighter_flatter_and_less_green() {
        let field = [0.033f32, 0.068, 0.038, 0.43];
        let roof = [0.23f32, 0.205, 0.15, 0.165];
        let mut sums = PixelSums::default();
        for _ in 0..16 {
            sums.add(&pixel_values(
                &field,
                &roof,
                (0.01, 0.01),
                (0.0, 0.02),
                (0.0, 0.0),
                &FilmParams::default(),
                WATER,
                1.0,
            ));
        }
        let f = summarise(&sums, true, 64.0, std::f64::consts::PI / 4.0);
        assert!(f["d_vi"] < -0.5 && f["d_bright"] > 0.03, "{f:?}");
        assert!(f["blue_red_after"] > 0.1, "blue steel roof");
        assert!((f["d_btex"] - 0.02).abs() < 1e-6);
        assert!(f["d_ctex"].abs() < 1e-6);
        assert!(f.contains_key("ndwi_after"));
        assert!((f["compactness"] - std::f64::consts::PI / 4.0).abs() < 1e-6);
        for name in f.keys() {
            assert!(FEATURE_NAMES.contains(&name.as_str()), "{name} not declared");
        }
        let rgb = summarise(&sums, false, 64.0, 0.5);
        assert!(!rgb.contains_key("ndwi_after") && !rgb.contains_key("water_frac_after"));
    }

    #[test]
    fn merged_sums_give_the_mean_of_all_pixels() {
        let (mut a, mut b) = (PixelSums::default(), PixelSums::default());
        a.add(&pixel_values(
            &[0.1, 0.1, 0.1, 0.5],
            &[0.1, 0.1, 0.1, 0.5],
            (0.0, 0.0),
            (0.0, 0.0),
            (0.0, 0.0),
            &FilmParams::default(),
            WATER,
            1.0,
        ));
        b.add(&pixel_values(
            &[0.3, 0.3, 0.3, 0.3],
            &[0.3, 0.3, 0.3, 0.3],
            (0.0, 0.0),
            (0.0, 0.0),
            (0.0, 0.0),
            &FilmParams::default(),
            WATER,
            1.0,
        ));
        a.merge(&b);
        let f = summarise(&a, true, 1.0, 1.0);
        assert!((f["bright_before"] - 0.25).abs() < 1e-6);
    }

    #[test]
    fn a_new_planting_gains_crown_texture_and_a_field_edge_does_not() {
        use crate::detect::texture::CrownLayers;
        use ndarray::Array2;
        let (soil, crown, green) = (
            [0.11f32, 0.13, 0.19, 0.24],
            [0.03f32, 0.06, 0.03, 0.38],
            [0.04f32, 0.07, 0.05, 0.4],
        );
        let n = 16;
        let planted = |y: usize, x: usize| if y % 3 == 1 && x % 3 == 1 { crown } else { soil };
        let half_green = |_: usize, x: usize| if x >= n / 2 { green } else { soil };
        let patch = |after: &dyn Fn(usize, usize) -> [f32; 4]| {
            let vi_b = Array2::from_elem((n, n), vegetation(&soil));
            let vi_a = Array2::from_shape_fn((n, n), |(y, x)| vegetation(&after(y, x)));
            let c = CrownLayers::new(&vi_b, &vi_a, 2);
            let mut sums = PixelSums::default();
            for y in 2..n - 2 {
                for x in 2..n - 2 {
                    let ctex = (c.before[(y, x)], c.after[(y, x)]);
                    sums.add(&pixel_values(
                        &soil,
                        &after(y, x),
                        (0.0, 0.0),
                        (0.0, 0.0),
                        ctex,
                        &FilmParams::default(),
                        WATER,
                        1.0,
                    ));
                }
            }
            summarise(&sums, true, 576.0, 0.8)
        };
        let (p, e) = (patch(&planted), patch(&half_green));
        assert!(p["d_ctex"] > 0.1 && p["ctex_before"] < 1e-4, "{p:?}");
        assert!(e["d_ctex"] < 0.01, "field edge {}", e["d_ctex"]);
    }
}
