//! Per-patch features: what the ground looked like inside a patch before and after, summarised
//! as a few numbers the typing model decides on. Means are taken over the patch's pixels that
//! were observed on both dates.

use crate::detect::indices::{brightness, flatness, vegetation, water, BLUE, RED};
use crate::detect::scene::PairWindow;
use ndarray::{Array2, Axis};
use std::collections::BTreeMap;

/// Every feature a model rule may name.
pub const FEATURE_NAMES: [&str; 22] = [
    "vi_before",
    "vi_after",
    "d_vi",
    "ndwi_before",
    "ndwi_after",
    "d_ndwi",
    "bright_before",
    "bright_after",
    "d_bright",
    "flat_before",
    "flat_after",
    "d_flat",
    "blue_red_after",
    "vtex_before",
    "vtex_after",
    "d_vtex",
    "btex_before",
    "btex_after",
    "d_btex",
    "water_frac_after",
    "compactness",
    "area_m2",
];

/// Named feature values; absent names (e.g. NDWI without NIR) are simply missing.
pub type Features = BTreeMap<String, f64>;

/// Per-pixel layers of one date used for the summaries.
struct DateLayers {
    vi: Array2<f32>,
    ndwi: Option<Array2<f32>>,
    bright: Array2<f32>,
    flat: Array2<f32>,
    blue_red: Array2<f32>,
}

fn layers(bands: &ndarray::Array3<f32>) -> DateLayers {
    let (_, h, w) = bands.dim();
    let has_nir = bands.len_of(Axis(0)) > 3;
    let mut l = DateLayers {
        vi: Array2::zeros((h, w)),
        ndwi: has_nir.then(|| Array2::zeros((h, w))),
        bright: Array2::zeros((h, w)),
        flat: Array2::zeros((h, w)),
        blue_red: Array2::zeros((h, w)),
    };
    crate::detect::indices::for_each_pixel(bands, |i, px| {
        let (y, x) = (i / w, i % w);
        l.vi[(y, x)] = vegetation(px);
        if let (Some(nd), Some(v)) = (l.ndwi.as_mut(), water(px)) {
            nd[(y, x)] = v;
        }
        l.bright[(y, x)] = brightness(px);
        l.flat[(y, x)] = flatness(px);
        l.blue_red[(y, x)] = crate::detect::indices::nd(px[BLUE], px[RED]);
    });
    l
}

use crate::detect::indices::local_std3 as local_std;

fn masked_mean(a: &Array2<f32>, m: &Array2<bool>) -> f64 {
    let (mut s, mut n) = (0.0f64, 0usize);
    for (v, &k) in a.iter().zip(m.iter()) {
        if k {
            s += *v as f64;
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        s / n as f64
    }
}

/// Summarises a patch. `inside` marks the patch's pixels within the pair window.
pub fn summarise(pair: &PairWindow, inside: &Array2<bool>, area_m2: f64, compactness: f64) -> Features {
    let mut m = inside.clone();
    ndarray::Zip::from(&mut m).and(&pair.valid).for_each(|a, &v| *a &= v);
    if !m.iter().any(|&v| v) {
        m = inside.clone();
    }
    let (b, a) = (layers(&pair.before), layers(&pair.after));
    let mut f = Features::new();
    let mut put = |name: &str, v: f64| {
        f.insert(name.to_string(), round6(v));
    };
    let pairs = [
        ("vi", &b.vi, &a.vi),
        ("bright", &b.bright, &a.bright),
        ("flat", &b.flat, &a.flat),
    ];
    for (name, lb, la) in pairs {
        let (vb, va) = (masked_mean(lb, &m), masked_mean(la, &m));
        put(&format!("{name}_before"), vb);
        put(&format!("{name}_after"), va);
        put(&format!("d_{name}"), va - vb);
    }
    if let (Some(nb), Some(na)) = (&b.ndwi, &a.ndwi) {
        let (vb, va) = (masked_mean(nb, &m), masked_mean(na, &m));
        put("ndwi_before", vb);
        put("ndwi_after", va);
        put("d_ndwi", va - vb);
        let wet = na.mapv(|v| if v > 0.1 { 1.0 } else { 0.0 });
        put("water_frac_after", masked_mean(&wet, &m));
    }
    put("blue_red_after", masked_mean(&a.blue_red, &m));
    for (name, lb, la) in [("vtex", &b.vi, &a.vi), ("btex", &b.bright, &a.bright)] {
        let (tb, ta) = (masked_mean(&local_std(lb), &m), masked_mean(&local_std(la), &m));
        put(&format!("{name}_before"), tb);
        put(&format!("{name}_after"), ta);
        put(&format!("d_{name}"), ta - tb);
    }
    put("compactness", compactness.clamp(0.0, 1.0));
    put("area_m2", area_m2);
    f
}

/// Features are rounded so that outputs are stable across platforms' last-bit differences.
fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn a_new_roof_on_a_field_reads_as_brighter_flatter_and_less_green() {
        let field = [0.033f32, 0.068, 0.038, 0.43];
        let roof = [0.23f32, 0.205, 0.15, 0.165];
        let before = Array3::from_shape_fn((4, 6, 6), |(k, _, _)| field[k]);
        let after = Array3::from_shape_fn((4, 6, 6), |(k, y, x)| {
            if (1..5).contains(&y) && (1..5).contains(&x) {
                roof[k]
            } else {
                field[k]
            }
        });
        let inside = Array2::from_shape_fn((6, 6), |(y, x)| (1..5).contains(&y) && (1..5).contains(&x));
        let valid = Array2::from_elem((6, 6), true);
        let pair = PairWindow {
            before,
            after,
            observed: valid.clone(),
            valid,
        };
        let f = summarise(&pair, &inside, 64.0, std::f64::consts::PI / 4.0);
        assert!(f["d_vi"] < -0.5 && f["d_bright"] > 0.03, "{f:?}");
        assert!(f["blue_red_after"] > 0.1, "blue steel roof");
        assert!(f.contains_key("ndwi_after"));
        assert!((f["compactness"] - std::f64::consts::PI / 4.0).abs() < 1e-6);
        for name in f.keys() {
            assert!(FEATURE_NAMES.contains(&name.as_str()), "{name} not declared");
        }
    }
}
