//! Automatic thresholds on a histogram of change evidence.
//!
//! Both methods split a histogram into "unchanged" and "changed":
//! * [Otsu] maximises the between-class variance; robust, but drifts into the unchanged mode when
//!   the changed class is very small.
//! * [Kittler–Illingworth] minimises the error of a two-Gaussian fit; suits a small, wide change
//!   class better.
//!
//! [Otsu]: https://doi.org/10.1109/TSMC.1979.4310076
//! [Kittler–Illingworth]: https://doi.org/10.1016/0031-3203(86)90030-0

use crate::model::ThresholdMethod;

/// A fixed-range histogram of non-negative evidence values.
#[derive(Debug, Clone)]
pub struct Histogram {
    /// Pixels per bin.
    pub counts: Vec<u64>,
    /// Upper edge of the last bin; larger values count in it.
    pub max: f32,
}

impl Histogram {
    /// An empty histogram of `bins` bins over `0..max`.
    pub fn new(bins: usize, max: f32) -> Self {
        Self {
            counts: vec![0; bins.max(2)],
            max: max.max(f32::MIN_POSITIVE),
        }
    }

    /// Adds a value; values past `max` land in the last bin.
    pub fn add(&mut self, v: f32) {
        if !v.is_finite() || v < 0.0 {
            return;
        }
        let n = self.counts.len();
        let i = ((v / self.max) * n as f32) as usize;
        self.counts[i.min(n - 1)] += 1;
    }

    /// Values counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value at the centre of bin `i`.
    pub fn value_of(&self, i: usize) -> f32 {
        (i as f32 + 0.5) * self.max / self.counts.len() as f32
    }

    /// The smallest value below which at least `q` of the mass lies.
    pub fn quantile(&self, q: f64) -> f32 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let want = (q.clamp(0.0, 1.0) * total as f64).ceil() as u64;
        let mut acc = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= want {
                return self.value_of(i);
            }
        }
        self.max
    }
}

/// The threshold chosen by `method`, or `None` for an empty histogram.
pub fn threshold(h: &Histogram, method: ThresholdMethod) -> Option<f32> {
    match method {
        ThresholdMethod::Otsu => otsu(h),
        ThresholdMethod::Kittler => kittler_illingworth(h).or_else(|| otsu(h)),
    }
}

/// Otsu's threshold: the upper edge of the bin that maximises between-class variance.
///
/// ```
/// use landwatch_core::detect::threshold::{otsu, Histogram};
/// let mut h = Histogram::new(100, 1.0);
/// (0..900).for_each(|i| h.add(0.1 + 0.001 * (i % 50) as f32)); // unchanged: 0.10..0.15
/// (0..100).for_each(|i| h.add(0.7 + 0.001 * (i % 50) as f32)); // changed:   0.70..0.75
/// let t = otsu(&h).unwrap();
/// assert!(t >= 0.149 && t <= 0.71); // any split between the two modes
/// ```
pub fn otsu(h: &Histogram) -> Option<f32> {
    let total = h.total() as f64;
    if total == 0.0 {
        return None;
    }
    let sum_all: f64 = h.counts.iter().enumerate().map(|(i, &c)| i as f64 * c as f64).sum();
    let (mut w0, mut sum0) = (0.0, 0.0);
    let (mut best, mut best_i) = (-1.0, 0);
    for (i, &c) in h.counts.iter().enumerate() {
        w0 += c as f64;
        sum0 += i as f64 * c as f64;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0, (sum_all - sum0) / w1);
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_i = i;
        }
    }
    Some(h.value_of(best_i) + 0.5 * h.max / h.counts.len() as f32)
}

/// Kittler–Illingworth minimum-error threshold.
pub fn kittler_illingworth(h: &Histogram) -> Option<f32> {
    let n = h.counts.len();
    let total = h.total() as f64;
    if total == 0.0 {
        return None;
    }
    let p: Vec<f64> = h.counts.iter().map(|&c| c as f64 / total).collect();
    let (mut best, mut best_i) = (f64::INFINITY, None);
    let (mut p0, mut s0, mut q0) = (0.0, 0.0, 0.0);
    let (pt, st, qt) = p.iter().enumerate().fold((0.0, 0.0, 0.0), |(a, b, c), (i, &pi)| {
        (a + pi, b + i as f64 * pi, c + (i * i) as f64 * pi)
    });
    for (i, &pi) in p.iter().enumerate().take(n - 1) {
        p0 += pi;
        s0 += i as f64 * pi;
        q0 += (i * i) as f64 * pi;
        let p1 = pt - p0;
        if p0 < 1e-6 || p1 < 1e-6 {
            continue;
        }
        let (m0, m1) = (s0 / p0, (st - s0) / p1);
        let v0 = q0 / p0 - m0 * m0;
        let v1 = (qt - q0) / p1 - m1 * m1;
        if v0 <= 1e-9 || v1 <= 1e-9 {
            continue;
        }
        let j = 1.0 + 2.0 * (p0 * v0.sqrt().ln() + p1 * v1.sqrt().ln()) - 2.0 * (p0 * p0.ln() + p1 * p1.ln());
        if j < best {
            best = j;
            best_i = Some(i);
        }
    }
    best_i.map(|i| h.value_of(i) + 0.5 * h.max / n as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bimodal(low: f32, high: f32, n_low: usize, n_high: usize) -> Histogram {
        let mut h = Histogram::new(256, 1.0);
        for k in 0..n_low {
            h.add(low + 0.05 * ((k % 11) as f32 / 10.0 - 0.5));
        }
        for k in 0..n_high {
            h.add(high + 0.05 * ((k % 7) as f32 / 6.0 - 0.5));
        }
        h
    }

    #[test]
    fn otsu_splits_two_modes() {
        // The modes span 0.175..0.225 and 0.675..0.725: any threshold between them separates.
        let t = otsu(&bimodal(0.2, 0.7, 5000, 1000)).unwrap();
        assert!(t > 0.225 && t <= 0.676, "threshold {t}");
    }

    #[test]
    fn kittler_splits_a_small_change_class() {
        let t = kittler_illingworth(&bimodal(0.1, 0.6, 20000, 300)).unwrap();
        assert!(t > 0.125 && t <= 0.576, "threshold {t}");
    }

    #[test]
    fn empty_histogram_has_no_threshold() {
        let h = Histogram::new(64, 1.0);
        assert!(otsu(&h).is_none());
        assert!(threshold(&h, ThresholdMethod::Kittler).is_none());
    }

    #[test]
    fn quantile_of_uniform_values() {
        let mut h = Histogram::new(100, 1.0);
        for i in 0..1000 {
            h.add(i as f32 / 1000.0);
        }
        assert!((h.quantile(0.5) - 0.5).abs() < 0.02);
        assert!(h.add_ignores_bad_values());
    }

    impl Histogram {
        fn add_ignores_bad_values(&mut self) -> bool {
            let before = self.total();
            self.add(f32::NAN);
            self.add(-1.0);
            self.total() == before
        }
    }
}
