//! Recognising changes already published.
//!
//! A new building is visible on every later image, so without tracking each night would report it
//! again as a new patch. A patch that overlaps an earlier one (by at least `track_overlap` of the
//! smaller of the two) is the same change: it keeps the earlier `track_id` and is flagged
//! `seen_before: true`. Earlier means a previously published run, or an earlier acquisition date in
//! the same run. New changes get `track_id = <run_id>-<id>`, which is deterministic, so a resumed
//! run, a sharded run and a rerun all name them alike.

use std::path::{Path, PathBuf};

use geo::{Area, BooleanOps, BoundingRect, MultiPolygon};
use rstar::{primitives::GeomWithData, primitives::Rectangle, RTree, AABB};
use serde_json::Value;

use super::archive::sorted_dir;
use super::patchset::{to_multipolygon, Patch};
use landwatch_core::{Error, Result};

/// A patch from an earlier run, as far as tracking needs it.
#[derive(Debug, Clone)]
pub struct Known {
    pub track_id: String,
    pub geom: MultiPolygon<f64>,
}

/// Published runs of a pipeline, oldest first (run ids sort chronologically).
pub fn published_runs(runs_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    Ok(sorted_dir(runs_dir)?
        .into_iter()
        .filter(|p| p.join("manifest.json").is_file())
        .filter_map(|p| {
            let id = p.file_name()?.to_str()?.to_string();
            (!id.starts_with('.')).then_some((id, p))
        })
        .collect())
}

/// Patches of the given published runs (lon/lat ones only).
pub fn load_known(runs: &[(String, PathBuf)]) -> Result<Vec<Known>> {
    let mut out = Vec::new();
    for (_, dir) in runs {
        let path = dir.join("patches.geojson");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, "reading", e))?;
        let fc: Value = serde_json::from_slice(&bytes).map_err(|e| Error::input(&path, format!("not JSON: {e}")))?;
        if fc.get("landwatch:crs").and_then(Value::as_str) == Some("pixel") {
            continue;
        }
        for f in fc.get("features").and_then(Value::as_array).into_iter().flatten() {
            let track = f
                .pointer("/properties/track_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            let geom = f.get("geometry").and_then(to_multipolygon);
            if let (Some(track_id), Some(geom)) = (track, geom) {
                out.push(Known { track_id, geom });
            }
        }
    }
    Ok(out)
}

type Indexed = GeomWithData<Rectangle<[f64; 2]>, usize>;

fn envelope(g: &MultiPolygon<f64>) -> Option<Rectangle<[f64; 2]>> {
    let r = g.bounding_rect()?;
    Some(Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]))
}

/// Sets `track_id` and `seen_before` on patches sorted by (after date, id).
pub fn assign(patches: &mut [Patch], known: Vec<Known>, run_id: &str, min_overlap: f64) {
    let mut pool = known;
    let mut tree: RTree<Indexed> = RTree::bulk_load(
        pool.iter()
            .enumerate()
            .filter_map(|(i, k)| Some(GeomWithData::new(envelope(&k.geom)?, i)))
            .collect(),
    );
    let mut i = 0;
    while i < patches.len() {
        // Patches of one date are matched only against earlier dates, never each other.
        let date = patches[i].after_date.clone();
        let end = (i..patches.len())
            .find(|&j| patches[j].after_date != date)
            .unwrap_or(patches.len());
        for p in &mut patches[i..end] {
            let matched = if p.pixel_crs {
                None
            } else {
                best_match(p, &pool, &tree, min_overlap)
            };
            let id = p.props.get("id").and_then(Value::as_str).unwrap_or_default();
            let (track, seen) = match matched {
                Some(t) => (t, true),
                None => (format!("{run_id}-{id}"), false),
            };
            p.props.insert("track_id".into(), Value::from(track));
            p.props.insert("seen_before".into(), Value::from(seen));
        }
        for p in patches[i..end].iter().filter(|p| !p.pixel_crs) {
            if let (Some(env), Some(track_id)) = (envelope(&p.geom), p.props.get("track_id").and_then(Value::as_str)) {
                tree.insert(GeomWithData::new(env, pool.len()));
                pool.push(Known {
                    track_id: track_id.to_string(),
                    geom: p.geom.clone(),
                });
            }
        }
        i = end;
    }
}

/// The earlier track overlapping this patch most (ties: smallest track id).
fn best_match(p: &Patch, pool: &[Known], tree: &RTree<Indexed>, min_overlap: f64) -> Option<String> {
    let env = envelope(&p.geom)?;
    let env: AABB<[f64; 2]> = rstar::RTreeObject::envelope(&env);
    let area = p.geom.unsigned_area();
    let mut best: Option<(f64, &str)> = None;
    for cand in tree.locate_in_envelope_intersecting(&env) {
        let k = &pool[cand.data];
        let inter = p.geom.intersection(&k.geom).unsigned_area();
        let smaller = area.min(k.geom.unsigned_area());
        if smaller <= 0.0 || inter / smaller < min_overlap || inter <= 0.0 {
            continue;
        }
        let better = match best {
            None => true,
            Some((bi, bt)) => inter > bi || (inter == bi && k.track_id.as_str() < bt),
        };
        if better {
            best = Some((inter, &k.track_id));
        }
    }
    best.map(|(_, t)| t.to_string())
}
