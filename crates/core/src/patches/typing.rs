//! Change typing: a patch's features against the model's rules.
//!
//! Each rule is a conjunction of soft conditions. A condition `feature > value` is true to the
//! degree `σ((x − value) / scale)`; a rule scores the minimum over its conditions (fuzzy AND);
//! the best-scoring rule names the type, and its score is the confidence. Conditions on features
//! the image cannot give (NDWI without NIR) are left out rather than failed.

use crate::model::{CompareOp, Condition, TypingParams};
use crate::types::features::Features;

/// The typing decision for one patch.
#[derive(Debug, Clone, PartialEq)]
pub struct Typed {
    pub change_type: String,
    pub confidence: f64,
}

fn soft_truth(c: &Condition, x: f64) -> f64 {
    let z = match c.op {
        CompareOp::Greater => (x - c.value) / c.scale,
        CompareOp::Less => (c.value - x) / c.scale,
    };
    1.0 / (1.0 + (-z).exp())
}

/// The score of one rule, or `None` when none of its features is available.
pub fn rule_score(conditions: &[Condition], f: &Features) -> Option<f64> {
    let scores: Vec<f64> = conditions
        .iter()
        .filter_map(|c| f.get(&c.feature).map(|&x| soft_truth(c, x)))
        .collect();
    scores.into_iter().reduce(f64::min)
}

/// Types a patch; `other` when no rule scores at least `min_score`.
pub fn classify(params: &TypingParams, f: &Features) -> Typed {
    let mut best: Option<(f64, &str)> = None;
    for rule in &params.rules {
        if let Some(s) = rule_score(&rule.conditions, f) {
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, rule.change_type.as_str()));
            }
        }
    }
    match best {
        Some((s, t)) if s >= params.min_score => Typed {
            change_type: t.to_string(),
            confidence: round3(s),
        },
        Some((s, _)) => Typed {
            change_type: "other".into(),
            confidence: round3(1.0 - s),
        },
        None => Typed {
            change_type: "other".into(),
            confidence: 0.5,
        },
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TypeRule;

    fn cond(feature: &str, op: CompareOp, value: f64) -> Condition {
        Condition {
            feature: feature.into(),
            op,
            value,
            scale: 0.02,
        }
    }

    fn params() -> TypingParams {
        TypingParams {
            rules: vec![
                TypeRule {
                    change_type: "pond".into(),
                    conditions: vec![cond("ndwi_after", CompareOp::Greater, 0.1)],
                },
                TypeRule {
                    change_type: "building".into(),
                    conditions: vec![
                        cond("d_vi", CompareOp::Less, -0.3),
                        cond("flat_after", CompareOp::Greater, 0.6),
                    ],
                },
            ],
            min_score: 0.5,
            keep_crop_cycle: false,
            keep_other: false,
            water_frac_min_ndwi: 0.1,
        }
    }

    fn feats(pairs: &[(&str, f64)]) -> Features {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn the_rule_whose_conditions_all_hold_wins() {
        let t = classify(
            &params(),
            &feats(&[("ndwi_after", -0.4), ("d_vi", -0.6), ("flat_after", 0.8)]),
        );
        assert_eq!(t.change_type, "building");
        assert!(t.confidence > 0.9);
    }

    #[test]
    fn one_failed_condition_fails_the_rule() {
        let t = classify(
            &params(),
            &feats(&[("ndwi_after", -0.4), ("d_vi", -0.6), ("flat_after", 0.2)]),
        );
        assert_eq!(t.change_type, "other");
    }

    #[test]
    fn missing_features_are_skipped_not_failed() {
        // No NIR: no ndwi; the building rule still decides.
        let t = classify(&params(), &feats(&[("d_vi", -0.6), ("flat_after", 0.9)]));
        assert_eq!(t.change_type, "building");
        assert_eq!(classify(&params(), &feats(&[])).change_type, "other");
    }
}
