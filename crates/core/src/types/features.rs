//! Per-patch features: what the ground looked like inside a patch before and after, summarised
//! as a few numbers the typing model decides on. Means are taken over the patch's changed
//! pixels (all observed on both dates), summed during the streaming pass (the per-pixel values
//! come from [`crate::detect::pixel`]).

use std::collections::BTreeMap;

/// Every feature a model rule may name.
pub const FEATURE_NAMES: [&str; 26] = [
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
    "ctex_before",
    "ctex_after",
    "d_ctex",
    "water_frac_after",
    "film_frac_after",
    "compactness",
    "area_m2",
];

/// Named feature values; absent names (e.g. NDWI without NIR) are simply missing.
pub type Features = BTreeMap<String, f64>;

/// How many per-pixel values [`crate::detect::pixel::pixel_values`] gives.
pub const PIXEL_VALUES: usize = 18;

/// Index of the change evidence relative to the threshold among the per-pixel values.
pub const EVIDENCE_REL: usize = 17;

/// Sums of [`crate::detect::pixel::pixel_values`] over a patch's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelSums {
    /// Pixels summed.
    pub pixels: usize,
    /// Sum of each value.
    pub sums: [f64; PIXEL_VALUES],
}

impl Default for PixelSums {
    fn default() -> Self {
        Self {
            pixels: 0,
            sums: [0.0; PIXEL_VALUES],
        }
    }
}

impl PixelSums {
    /// Adds one pixel's values.
    pub fn add(&mut self, v: &[f32; PIXEL_VALUES]) {
        self.pixels += 1;
        for (s, &x) in self.sums.iter_mut().zip(v) {
            *s += x as f64;
        }
    }

    /// Mean change evidence over the patch's pixels, in thresholds (0 without pixels).
    pub fn mean_evidence_rel(&self) -> f64 {
        if self.pixels == 0 {
            return 0.0;
        }
        self.sums[EVIDENCE_REL] / self.pixels as f64
    }

    /// Adds another patch part's sums (components that meet across blocks).
    pub fn merge(&mut self, o: &PixelSums) {
        self.pixels += o.pixels;
        for (s, &x) in self.sums.iter_mut().zip(&o.sums) {
            *s += x;
        }
    }
}

/// A patch's features from the sums over its pixels (observed on both dates), its area and
/// shape compactness. NDWI features are left out without NIR.
pub fn summarise(s: &PixelSums, has_nir: bool, area_m2: f64, compactness: f64) -> Features {
    let n = s.pixels.max(1) as f64;
    let mean = |i: usize| s.sums[i] / n;
    let mut f = Features::new();
    let mut put = |name: &str, v: f64| {
        f.insert(name.to_string(), round6(v));
    };
    let mut before_after = |name: &str, i: usize| {
        let (vb, va) = (mean(i), mean(i + 1));
        put(&format!("{name}_before"), vb);
        put(&format!("{name}_after"), va);
        put(&format!("d_{name}"), va - vb);
    };
    before_after("vi", 0);
    before_after("bright", 2);
    before_after("flat", 4);
    if has_nir {
        before_after("ndwi", 6);
    }
    before_after("vtex", 10);
    before_after("btex", 12);
    before_after("ctex", 14);
    if has_nir {
        put("water_frac_after", mean(8));
    }
    put("blue_red_after", mean(9));
    put("film_frac_after", mean(16));
    put("compactness", compactness.clamp(0.0, 1.0));
    put("area_m2", area_m2);
    f
}

/// Features are rounded so that outputs are stable across platforms' last-bit differences.
fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}
