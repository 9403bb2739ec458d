//! Scale-out: `run --shard I/N` and `merge`.
//!
//! Sharding is left to the cluster's own scheduler (a Kubernetes Indexed Job, a Slurm array):
//! every shard lists the same source and computes the same plan and run id, then keeps the pairs
//! whose tile id hashes to its index. Tiles, not pairs, are split, so all dates of one place stay in
//! one shard. `merge` collects the shards' finished pairs and runs the same final stage as a
//! single run (seams, ids, tracking, publish), so N shards + merge give the same patches as one run.

use std::fmt;
use std::path::{Path, PathBuf};

use super::archive::sorted_dir;
use super::config::Pipeline;
use super::manifest::{Manifest, TileOutcome, TileStatus};
use super::run::{finalize, publish};
use super::tracking;
use landwatch_core::io::hash::sha256_hex;
use landwatch_core::io::ownership::{self, parent_of, OUTPUT_MARKER};
use landwatch_core::{Error, Result};

/// Shard `index` of `count` (0-based index, as Kubernetes and Slurm number them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based shard index.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected I/N, e.g. 0/4"))?;
        let index: u32 = i.trim().parse().map_err(|_| format!("`{s}`: I is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| format!("`{s}`: N is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("`{s}`: need 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether this shard processes a tile: a stable hash of the tile id (not Rust's `Hash`,
    /// which may change between versions), modulo N.
    pub fn owns(&self, tile: &str) -> bool {
        let h = sha256_hex(tile.as_bytes());
        let n = u64::from_str_radix(&h[..12], 16).unwrap_or(0);
        n % u64::from(self.count) == u64::from(self.index)
    }

    /// The shard's folder name, `shard-<index>-of-<count>`.
    pub fn dir_name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

/// Writes the shard's manifest and renames its work folder to `shards/<run_id>/shard-I-of-N`.
pub fn publish_shard(p: &Pipeline, run_id: &str, shard: &Shard, work: &Path, manifest: &Manifest) -> Result<PathBuf> {
    manifest.write(&work.join("shard.json"))?;
    let dest = p.output.join("shards").join(run_id).join(shard.dir_name());
    refuse_two_shard_folders(&dest, work)?;
    std::fs::rename(work, &dest).map_err(|e| Error::io(&dest, "renaming into place", e))?;
    tracing::info!(shard = %shard, dir = %dest.display(), "shard written");
    Ok(dest)
}

/// A shard run resumes its finished folder by moving it back to its work folder, so both exist
/// only when one was put there by hand. Neither is deleted to make room for the other: which
/// one to keep is the operator's call (exit 2).
pub fn refuse_two_shard_folders(done: &Path, work: &Path) -> Result<()> {
    if !done.exists() || !work.exists() {
        return Ok(());
    }
    Err(Error::input(
        done,
        format!(
            "this shard was already written, and an unfinished run of it is in {}; landwatch deletes neither: move one of them away and run the shard again",
            work.display()
        ),
    ))
}

/// Result of a merge: where it went and what failed, by name.
#[derive(Debug, Clone)]
pub struct MergeReport {
    /// The merged run folder.
    pub dir: PathBuf,
    /// Patches published.
    pub patches: usize,
    /// Pairs that failed, with why.
    pub failed: Vec<(String, String)>,
}

/// Combines shard folders into one published run (`out`, default `<output>/runs/<run_id>`).
pub fn merge(shard_dirs: &[PathBuf], out: Option<&Path>) -> Result<MergeReport> {
    let shards = read_shards(shard_dirs)?;
    let first = &shards[0].1;
    let run_id = first.id.clone();
    let output = first.properties.pipeline.output.clone();
    let _lock = super::lock::RunLock::acquire(&output.join("state").join("run.lock"))?;
    let dest = out.map_or_else(|| output.join("runs").join(&run_id), Path::to_path_buf);
    let (scratch, _claim) = scratch_beside(&dest)?;
    let tmp = scratch.path();
    let mut outcomes: Vec<TileOutcome> = Vec::new();
    for (dir, m) in &shards {
        for o in &m.properties.tiles {
            if o.status == TileStatus::Done {
                copy_tree(&dir.join("tiles").join(&o.pair), &tmp.join("tiles").join(&o.pair))?;
            }
        }
        outcomes.extend(m.properties.tiles.iter().cloned());
    }
    std::fs::create_dir_all(tmp.join("tiles")).map_err(|e| Error::io(tmp, "creating", e))?;
    outcomes.sort_by(|a, b| a.pair.cmp(&b.pair));
    outcomes.dedup_by(|a, b| a.pair == b.pair);
    let runs_dir = output.join("runs");
    let previous: Vec<(String, PathBuf)> = first
        .properties
        .previous_runs
        .iter()
        .map(|id| (id.clone(), runs_dir.join(id)))
        .collect();
    let known = tracking::load_known(&previous)?;
    let stats = finalize(tmp, &outcomes, &run_id, &first.properties.detect_params()?, known)?;
    let mut manifest = merged_manifest(&shards, outcomes.clone());
    stats.record(&mut manifest);
    // A published run carries no marker: it is never replaced, by a merge or anything else.
    let marker = tmp.join(OUTPUT_MARKER);
    std::fs::remove_file(&marker).map_err(|e| Error::io(&marker, "removing the staging marker", e))?;
    let dir = publish(tmp, &dest, &mut manifest)?;
    let _ = scratch.keep();
    let failed = outcomes
        .iter()
        .filter(|o| o.status == TileStatus::Failed)
        .map(|o| (o.pair.clone(), o.reason.clone().unwrap_or_default()))
        .chain(first.properties.listing_problems.iter().cloned())
        .collect();
    Ok(MergeReport {
        dir,
        patches: stats.patches,
        failed,
    })
}

/// A folder of its own beside `dest` to build the merged run in, marked as landwatch's and
/// locked while this merge lives: a later merge to `dest` removes it if this one is killed, and
/// nothing else beside `dest` is ever removed.
fn scratch_beside(dest: &Path) -> Result<(tempfile::TempDir, std::fs::File)> {
    let parent = parent_of(dest);
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, "creating folder", e))?;
    let name = dest.file_name().map_or("run".into(), |n| n.to_string_lossy());
    let scratch = tempfile::Builder::new()
        .prefix(&format!(".{name}.staging-"))
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, "creating a folder to merge in", e))?;
    let claim = ownership::claim(scratch.path())?;
    ownership::remove_leftovers(dest)?;
    Ok((scratch, claim))
}

/// Reads and cross-checks the shards: one run id, one N, every index exactly once.
fn read_shards(dirs: &[PathBuf]) -> Result<Vec<(PathBuf, Manifest)>> {
    if dirs.is_empty() {
        return Err(Error::Usage("merge needs at least one shard folder".into()));
    }
    let mut shards = Vec::new();
    for d in expand(dirs)? {
        let m = Manifest::read(&d.join("shard.json"))?;
        shards.push((d, m));
    }
    let spec = |m: &Manifest, d: &Path| -> Result<Shard> {
        m.properties
            .shard
            .as_deref()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::input(d, "shard.json does not say which shard this is"))
    };
    let first_spec = spec(&shards[0].1, &shards[0].0)?;
    let mut seen = vec![false; first_spec.count as usize];
    for (d, m) in &shards {
        let s = spec(m, d)?;
        if m.id != shards[0].1.id || s.count != first_spec.count {
            return Err(Error::input(
                d,
                format!(
                    "belongs to run {} with {} shards, not run {} with {}",
                    m.id, s.count, shards[0].1.id, first_spec.count
                ),
            ));
        }
        if std::mem::replace(&mut seen[s.index as usize], true) {
            return Err(Error::input(d, format!("shard {s} given twice")));
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(Error::Usage(format!(
            "shard {missing}/{} is missing; merge needs all shards of run {}",
            first_spec.count, shards[0].1.id
        )));
    }
    shards.sort_by_key(|(d, m)| (m.properties.shard.clone(), d.clone()));
    Ok(shards)
}

/// A folder that is not itself a shard but holds shard folders (`shards/<run_id>/`) stands for
/// them, so schedulers can pass one path.
fn expand(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for d in dirs {
        if d.join("shard.json").is_file() {
            out.push(d.clone());
            continue;
        }
        let inner: Vec<PathBuf> = sorted_dir(d)?
            .into_iter()
            .filter(|s| s.join("shard.json").is_file())
            .collect();
        if inner.is_empty() {
            return Err(Error::input(d, "not a shard folder (no shard.json) and holds none"));
        }
        out.extend(inner);
    }
    Ok(out)
}

fn merged_manifest(shards: &[(PathBuf, Manifest)], outcomes: Vec<TileOutcome>) -> Manifest {
    let first = &shards[0].1;
    let mut props = first.properties.clone();
    props.shard = None;
    props.tiles = outcomes;
    let mut inputs: Vec<_> = shards
        .iter()
        .flat_map(|(_, m)| m.properties.inputs.iter().cloned())
        .collect();
    inputs.sort_by(|a, b| (&a.tile, &a.date).cmp(&(&b.tile, &b.date)));
    inputs.dedup_by(|a, b| a.tile == b.tile && a.date == b.date);
    props.inputs = inputs;
    props.timings_s = shards
        .iter()
        .flat_map(|(_, m)| {
            let name = m.properties.shard.clone().unwrap_or_default().replace('/', "-of-");
            m.properties
                .timings_s
                .iter()
                .map(move |(k, v)| (format!("shard-{name}.{k}"), *v))
        })
        .collect();
    props.created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Manifest::new(&first.id, props, first.bbox)
}

/// Recursive copy (shard folders may live on another filesystem than the output).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, "creating folder", e))?;
    for entry in sorted_dir(from)? {
        let target = to.join(entry.file_name().unwrap_or_default());
        if entry.is_dir() {
            copy_tree(&entry, &target)?;
        } else {
            std::fs::copy(&entry, &target).map_err(|e| Error::io(&target, "copying", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_tiles() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        for t in ["a", "b", "tile-17", "东兴"] {
            assert_eq!(shards.iter().filter(|s| s.owns(t)).count(), 1);
        }
        assert!("3/3".parse::<Shard>().is_err());
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
    }
}
