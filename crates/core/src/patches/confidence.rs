//! A patch's change confidence: how sure detection is that something changed here, in 0..1.
//!
//! `confidence` (the typing rule's score) says how clearly a patch is a *building* or a *pond*;
//! it says nothing about whether the ground changed at all. The change confidence weighs what
//! the detector measured:
//!
//! - **evidence** (weight 0.5): the mean change evidence over the patch's pixels in multiples of
//!   the run's threshold (each pixel capped at 4), mapped linearly from 0.5 thresholds (0) to
//!   3 thresholds (1);
//! - **typing** (weight 0.3): the best typing rule's score (for `other` and `crop_cycle`, the
//!   score of the change-of-use rule that came closest);
//! - **size** (weight 0.2): `1 − exp(−area / (5 · minimum mapping unit))`: a patch at the
//!   minimum mapping unit scores 0.18, one five times larger 0.63.
//!
//! Rounded to 3 decimals, so the same inputs give the same bytes.

/// Weights of evidence, typing and size; they sum to 1, so the result stays in 0..1.
const WEIGHTS: (f64, f64, f64) = (0.5, 0.3, 0.2);

/// Mean evidence (in thresholds) scoring 0, and the span over which it rises to 1.
const EVIDENCE_FLOOR: f64 = 0.5;
const EVIDENCE_SPAN: f64 = 2.5;

/// Change confidence of a patch (see the module docs). `rule_strength` is in 0..1;
/// `min_area_m2` is the model's minimum mapping unit (a non-positive unit counts as 1 m²).
pub fn change_confidence(mean_evidence_rel: f64, rule_strength: f64, area_m2: f64, min_area_m2: f64) -> f64 {
    let evidence = clamp01((mean_evidence_rel - EVIDENCE_FLOOR) / EVIDENCE_SPAN);
    let typing = clamp01(rule_strength);
    let size = clamp01(1.0 - (-area_m2.max(0.0) / (5.0 * min_area_m2.max(1.0))).exp());
    let c = WEIGHTS.0 * evidence + WEIGHTS.1 * typing + WEIGHTS.2 * size;
    (clamp01(c) * 1000.0).round() / 1000.0
}

/// The typing rule's strength for change: the winning rule's score for a change of use; for
/// `other` and `crop_cycle` (whose `confidence` is how clearly *no* change-of-use rule held)
/// its complement.
pub fn rule_strength(change_type: &str, confidence: f64) -> f64 {
    match change_type {
        "other" | "crop_cycle" => 1.0 - confidence,
        _ => confidence,
    }
}

/// `x` in 0..1; NaN counts as 0.
fn clamp01(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_unit_range_for_any_input() {
        for e in [f64::NAN, -1.0, 0.0, 0.5, 1.0, 3.0, 4.0, 1e9, f64::INFINITY] {
            for r in [f64::NAN, -1.0, 0.0, 0.5, 1.0, 2.0] {
                for a in [f64::NAN, -5.0, 0.0, 200.0, 1e12] {
                    let c = change_confidence(e, r, a, 200.0);
                    assert!((0.0..=1.0).contains(&c), "{e} {r} {a} -> {c}");
                }
            }
        }
    }

    #[test]
    fn grows_with_evidence_typing_and_size() {
        let base = change_confidence(1.0, 0.5, 400.0, 200.0);
        assert!(change_confidence(2.0, 0.5, 400.0, 200.0) > base);
        assert!(change_confidence(1.0, 0.9, 400.0, 200.0) > base);
        assert!(change_confidence(1.0, 0.5, 4000.0, 200.0) > base);
        assert_eq!(change_confidence(3.0, 1.0, 1e12, 200.0), 1.0);
        assert_eq!(change_confidence(0.5, 0.0, 0.0, 200.0), 0.0);
    }

    #[test]
    fn other_and_crop_cycle_take_the_complement() {
        assert_eq!(rule_strength("building", 0.8), 0.8);
        assert!((rule_strength("other", 0.8) - 0.2).abs() < 1e-12);
        assert!((rule_strength("crop_cycle", 0.7) - 0.3).abs() < 1e-12);
    }
}
