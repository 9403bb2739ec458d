//! Human-readable output of eval: the one-pair summary and the Markdown accuracy table that
//! goes into the README.

use super::datasets::Report;
use super::metrics::{Counts, Scores};
use std::fmt::Write;

/// A ratio with three decimals, or `–` when undefined.
pub fn ratio(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into())
}

/// The summary printed by `landwatch eval --pred … --label …`.
pub fn pair_text(pred: &str, label: &str, c: &Counts) -> String {
    let s = c.scores();
    let (p, q) = (&c.pixel, &c.patch);
    format!(
        "landwatch eval: {pred} vs {label}\n\
         \x20 pixels:  precision {}  recall {}  F1 {}  IoU {}  (TP {} FP {} FN {} TN {}; {} unlabelled ignored)\n\
         \x20 patches: precision {} ({} of {} predicted correct)  recall {} ({} of {} true found)\n",
        ratio(s.precision),
        ratio(s.recall),
        ratio(s.f1),
        ratio(s.iou),
        p.tp,
        p.fp,
        p.fn_,
        p.tn,
        p.ignored,
        ratio(s.patch_precision),
        q.pred_correct,
        q.pred_patches,
        ratio(s.patch_recall),
        q.found,
        q.true_patches,
    )
}

fn scores_cells(s: &Scores) -> String {
    format!(
        "{} | {} | {} | {} | {} | {}",
        ratio(s.precision),
        ratio(s.recall),
        ratio(s.f1),
        ratio(s.iou),
        ratio(s.patch_precision),
        ratio(s.patch_recall)
    )
}

/// What the accuracy table's figures rest on: the scoring rules, the baseline and the protocol.
pub const PROTOCOL_NOTE: &str = "px = pixel level, counts summed over a dataset's pairs; patch = \
coverage rule (a true patch is found when ≥ 50 % of it is predicted, a predicted patch is correct \
when ≥ 50 % of its labelled pixels are change). landwatch runs with keep_all (crop-cycle and \
off-cropland patches kept).\n\n\
¹ **In-sample: parameters tuned on these pairs.** The built-in rules model's parameters, its \
RGB ones in particular, were chosen by measuring them on these very pairs, so its figures are \
in-sample and overstate what to expect on imagery it was not tuned on. (A model given with \
--model is in-sample too if it was tuned on them.)\n\n\
² **Baseline, no tuned parameters:** every band of each image standardised over its valid pixels \
(mean/std, nodata ignored), change-vector magnitude over the bands, Otsu threshold, 3×3 binary \
opening; no co-registration, masks or minimum area. It reads every band of the files: on the \
6-band Landsat pair that includes the two SWIR bands landwatch does not read.\n";

/// The accuracy table plus the settings each dataset ran with.
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Accuracy on labelled pairs ({})\n", r.model);
    let _ = writeln!(
        out,
        "| dataset | pairs | px P¹ | px R¹ | px F1¹ | px IoU¹ | patch P¹ | patch R¹ | baseline² px P | baseline² px R | baseline² px F1 | baseline² patch R |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for d in &r.datasets {
        let b = &d.baseline_scores;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            d.dataset,
            d.pairs,
            scores_cells(&d.landwatch_scores),
            ratio(b.precision),
            ratio(b.recall),
            ratio(b.f1),
            ratio(b.patch_recall)
        );
    }
    let _ = writeln!(out, "\n{PROTOCOL_NOTE}");
    learned_table(&mut out, r);
    settings_table(&mut out, r);
    out
}

/// For how many scored pairs the model chose the edge features, e.g. `3 / 7`.
fn edges_chosen(l: &crate::cv::LearnedResult) -> String {
    if l.per_pair.is_empty() {
        return "–".into();
    }
    let with = l.per_pair.iter().filter(|p| p.chosen.edges).count();
    format!("{with} / {}", l.per_pair.len())
}

/// The learned cascade beside the baseline and the rules model, when `--cv` ran.
fn learned_table(out: &mut String, r: &Report) {
    let Some(protocol) = &r.cv else { return };
    let _ = writeln!(out, "### Learned cascade, {protocol}\n");
    let _ = writeln!(
        out,
        "| dataset | pairs scored | change in candidates⁴ | edge features chosen³ | baseline² px F1 | rules¹ px F1 | learned³ px P | learned³ px R | learned³ px F1 | learned − rules |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for d in &r.datasets {
        let Some(l) = &d.learned else { continue };
        let gain = match (l.scores.f1, d.landwatch_scores.f1) {
            (Some(a), Some(b)) if l.pairs > 0 => format!("{:+.3}", a - b),
            _ => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            d.dataset,
            l.pairs,
            candidate_shares(&l.candidate_recall),
            edges_chosen(l),
            ratio(d.baseline_scores.f1),
            ratio(d.landwatch_scores.f1),
            ratio(l.scores.precision),
            ratio(l.scores.recall),
            ratio(l.scores.f1),
            gain
        );
    }
    let in_sample = r
        .datasets
        .iter()
        .filter_map(|d| d.learned.as_ref())
        .flat_map(|l| &l.per_pair)
        .any(|p| p.threshold_in_sample);
    let _ = writeln!(
        out,
        "\n³ **Not in-sample:** every pair is scored by a model trained without it ({protocol}); the \
         trees' depth, the local statistics' largest radius, whether the gradient (edge) features are used and the \
         probability threshold are chosen by cross-validation inside that model's training pairs (nested; per pair in \
         the JSON; \"edge features chosen\": for how many of the scored pairs){}. Training data: research-only (these \
         datasets); such models are for evaluation and are never shipped.\n\n⁴ Share of the labelled change \
         inside the candidate stage (the rules evidence above 0.5 / 0.35 / 0.25 of its threshold, dilated 2 px): \
         the learned model's recall cannot exceed it. Each model keeps the largest factor whose candidates hold \
         95 % of its training pairs' change (per pair in the JSON).\n",
        if in_sample {
            " (where a fold had a single training pair, on that pair: marked in the JSON)"
        } else {
            ""
        }
    );
}

/// `0.912 / 0.957 / 0.975` at the candidate factors, or `–`.
fn candidate_shares(shares: &[(f32, f64)]) -> String {
    if shares.is_empty() {
        return "–".into();
    }
    let v: Vec<String> = shares.iter().map(|&(_, s)| format!("{s:.3}")).collect();
    v.join(" / ")
}

fn settings_table(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "| dataset | bands | pixel size | min area | label change / ignore | notes |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for d in &r.datasets {
        let s = &d.settings;
        let px = s
            .pixel_size_m
            .map(|p| format!("{p} m"))
            .unwrap_or_else(|| "georeferenced".into());
        let values: Vec<String> = s.label_change_values.iter().map(|v| v.to_string()).collect();
        let ignore = s
            .label_ignore_value
            .map(|v| v.to_string())
            .unwrap_or_else(|| "–".into());
        let mut notes = s.note.clone();
        if !d.failures.is_empty() {
            let _ = write!(notes, "; FAILED: {}", d.failures.join("; "));
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} m² | {} / {} | {} |",
            d.dataset,
            s.bands.as_deref().unwrap_or("default"),
            px,
            s.min_area_m2,
            values.join(","),
            ignore,
            notes
        );
    }
    for s in &r.skipped {
        let _ = writeln!(out, "\nSkipped: {s}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_ratios_print_as_a_dash() {
        assert_eq!(ratio(None), "–");
        assert_eq!(ratio(Some(0.12345)), "0.123");
    }

    #[test]
    fn pair_text_names_counts() {
        let mut c = Counts::default();
        c.pixel.tp = 3;
        c.pixel.fn_ = 1;
        let t = pair_text("p", "l", &c);
        assert!(t.contains("recall 0.750"), "{t}");
        assert!(t.contains("precision 1.000"), "{t}");
        assert!(t.contains("patches: precision –"), "{t}");
    }
}
