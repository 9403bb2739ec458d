//! The content-addressed tile archive and its catalogue.
//!
//! Tiles are stored once, by the SHA-256 of their bytes: `archive/sha256/ab/cdef….tif`. A file
//! only appears there by an atomic rename after its checksum and its readability as a raster were
//! verified, so a crash or a bad download can never leave a corrupt tile under a valid name.
//!
//! The catalogue says which tile (grid id), which acquisition date, which footprint and which
//! source each stored file is. It is a folder of small JSON records,
//! `archive/catalogue/<tile>/<date>.json`, each written atomically. That keeps it safe when several
//! shards of one run write into a shared archive at once (no read-modify-write of one big file),
//! and listing it sorted gives a deterministic order.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use landwatch_core::io::atomic::write_file;
use landwatch_core::{Error, Result};

/// One catalogue record: a tile image stored in the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueEntry {
    /// Tile id.
    pub tile: String,
    /// Acquisition date (`YYYY-MM-DD`).
    pub date: String,
    /// SHA-256 of the file's bytes (its name in the archive).
    pub sha256: String,
    /// File size.
    pub bytes: u64,
    /// Where it was fetched from (URL or local path).
    pub source: String,
    /// GeoJSON geometry in lon/lat, when the source gave one or the raster has a georeference.
    pub footprint: Option<serde_json::Value>,
}

/// A content-addressed archive rooted at a folder.
#[derive(Debug, Clone)]
pub struct Archive {
    root: PathBuf,
}

impl Archive {
    /// Opens (and creates if needed) an archive folder.
    pub fn open(root: &Path) -> Result<Self> {
        for sub in ["sha256", "catalogue", "tmp"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, "creating archive folder", e))?;
        }
        Ok(Archive {
            root: root.to_path_buf(),
        })
    }

    /// The archive at `root` as it is, creating nothing (a dry run must not write): lookups in a
    /// missing archive find nothing.
    pub fn at(root: &Path) -> Self {
        Archive {
            root: root.to_path_buf(),
        }
    }

    /// Opens an existing archive without creating anything (reruns must not fetch or write).
    pub fn open_existing(root: &Path) -> Result<Self> {
        if root.join("catalogue").is_dir() {
            Ok(Archive {
                root: root.to_path_buf(),
            })
        } else {
            Err(Error::input(root, "not a landwatch archive (no catalogue/ folder)"))
        }
    }

    /// The archive's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the stored file for a checksum.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        let (head, rest) = sha256.split_at(2.min(sha256.len()));
        self.root.join("sha256").join(head).join(format!("{rest}.tif"))
    }

    /// Folder for partial downloads; same filesystem as the blobs so the final rename is atomic.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Moves a verified temporary file into its content address. The address already holding a
    /// file of the same size is success, not a conflict: a blob only ever appears there by this
    /// rename after its checksum was verified, so another pipeline sharing the archive stored the
    /// same bytes first. (A different size there is damage, replaced by this rename.)
    pub fn store(&self, tmp: &Path, sha256: &str) -> Result<PathBuf> {
        let dest = self.blob_path(sha256);
        let size = |p: &Path| std::fs::metadata(p).ok().filter(|m| m.is_file()).map(|m| m.len());
        if size(&dest).is_some() && size(&dest) == size(tmp) {
            std::fs::remove_file(tmp).map_err(|e| Error::io(tmp, "removing a temporary file", e))?;
            return Ok(dest);
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, "creating archive folder", e))?;
        }
        std::fs::rename(tmp, &dest).map_err(|e| Error::io(&dest, "storing tile in archive", e))?;
        Ok(dest)
    }

    fn record_path(&self, tile: &str, date: &str) -> PathBuf {
        self.root
            .join("catalogue")
            .join(safe_name(tile))
            .join(format!("{date}.json"))
    }

    /// Writes (or replaces) the catalogue record of a tile image.
    pub fn record(&self, entry: &CatalogueEntry) -> Result<()> {
        let path = self.record_path(&entry.tile, &entry.date);
        let json =
            serde_json::to_vec_pretty(entry).map_err(|e| Error::Other(format!("serialising catalogue record: {e}")))?;
        write_file(&path, &json)
    }

    /// The catalogue record of a tile image, if it is stored and its blob is present.
    pub fn lookup(&self, tile: &str, date: &str) -> Option<CatalogueEntry> {
        let text = std::fs::read(self.record_path(tile, date)).ok()?;
        let entry: CatalogueEntry = serde_json::from_slice(&text).ok()?;
        self.blob_path(&entry.sha256).is_file().then_some(entry)
    }

    /// All records, sorted by tile then date.
    pub fn entries(&self) -> Result<Vec<CatalogueEntry>> {
        let cat = self.root.join("catalogue");
        let mut out = Vec::new();
        for tile_dir in sorted_dir(&cat)? {
            if !tile_dir.is_dir() {
                continue;
            }
            for rec in sorted_dir(&tile_dir)? {
                if rec.extension().is_some_and(|e| e == "json") {
                    let bytes = std::fs::read(&rec).map_err(|e| Error::io(&rec, "reading", e))?;
                    let entry: CatalogueEntry = serde_json::from_slice(&bytes)
                        .map_err(|e| Error::input(&rec, format!("bad catalogue record: {e}")))?;
                    out.push(entry);
                }
            }
        }
        out.sort_by(|a, b| (&a.tile, &a.date).cmp(&(&b.tile, &b.date)));
        Ok(out)
    }
}

/// Entries of a folder, sorted by name (missing folder = empty).
pub fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, "listing folder", e)),
    };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// A name usable as one path component, keeping tile ids readable.
pub fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// Checks that a file is a raster GDAL can read completely (every block of every band), so a
/// truncated or non-raster download never enters the archive. Returns its lon/lat footprint.
pub fn verify_raster(path: &Path) -> Result<Option<serde_json::Value>> {
    let ds = gdal::Dataset::open(path).map_err(|e| Error::input(path, format!("not a readable raster: {e}")))?;
    let (w, h) = ds.raster_size();
    if ds.raster_count() == 0 || w == 0 || h == 0 {
        return Err(Error::input(path, "raster has no bands or no pixels"));
    }
    for b in 1..=ds.raster_count() {
        let band = ds
            .rasterband(b)
            .map_err(|e| Error::input(path, format!("band {b}: {e}")))?;
        let (bw, bh) = band.block_size();
        for by in 0..h.div_ceil(bh.max(1)) {
            for bx in 0..w.div_ceil(bw.max(1)) {
                let (x, y) = (bx * bw, by * bh);
                let size = (bw.min(w - x), bh.min(h - y));
                band.read_as::<f64>((x as isize, y as isize), size, size, None)
                    .map_err(|e| Error::input(path, format!("band {b} unreadable: {e}")))?;
            }
        }
    }
    Ok(footprint(&ds))
}

/// The lon/lat outline of a raster file (None when it cannot be opened or has no georeference).
pub fn raster_footprint(path: &Path) -> Option<serde_json::Value> {
    landwatch_core::io::init_gdal();
    footprint(&gdal::Dataset::open(path).ok()?)
}

/// How many bands a raster file has (its header only is read).
pub fn raster_band_count(path: &Path) -> Result<usize> {
    landwatch_core::io::init_gdal();
    let ds = gdal::Dataset::open(path).map_err(|e| Error::input(path, format!("not a readable raster: {e}")))?;
    Ok(ds.raster_count())
}

/// The raster's outline as a lon/lat GeoJSON polygon (None without a georeference).
fn footprint(ds: &gdal::Dataset) -> Option<serde_json::Value> {
    use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
    let gt = ds.geo_transform().ok()?;
    let mut src = ds.spatial_ref().ok()?;
    src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut dst = SpatialRef::from_epsg(4326).ok()?;
    dst.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let ct = CoordTransform::new(&src, &dst).ok()?;
    let (w, h) = ds.raster_size();
    let corners = [(0.0, 0.0), (w as f64, 0.0), (w as f64, h as f64), (0.0, h as f64)];
    let mut xs: Vec<f64> = corners.iter().map(|(c, r)| gt[0] + c * gt[1] + r * gt[2]).collect();
    let mut ys: Vec<f64> = corners.iter().map(|(c, r)| gt[3] + c * gt[4] + r * gt[5]).collect();
    ct.transform_coords(&mut xs, &mut ys, &mut []).ok()?;
    let mut ring: Vec<[f64; 2]> = xs.iter().zip(&ys).map(|(x, y)| [round7(*x), round7(*y)]).collect();
    ring.push(ring[0]);
    Some(serde_json::json!({"type": "Polygon", "coordinates": [ring]}))
}

/// Rounds to 1e-7 degrees (about 1 cm), the precision of landwatch's GeoJSON.
pub fn round7(v: f64) -> f64 {
    (v * 1e7).round() / 1e7
}

#[cfg(test)]
mod tests {
    use super::*;
    use landwatch_core::io::hash::sha256_hex;

    #[test]
    fn blob_path_is_content_addressed() {
        let a = Archive {
            root: PathBuf::from("/a"),
        };
        assert_eq!(a.blob_path("abcdef"), PathBuf::from("/a/sha256/ab/cdef.tif"));
    }

    #[test]
    fn catalogue_roundtrip_sorted() {
        let d = tempfile::tempdir().unwrap();
        let a = Archive::open(d.path()).unwrap();
        for (t, date) in [("t2", "2024-01-02"), ("t1", "2024-01-03"), ("t1", "2024-01-01")] {
            let sha = sha256_hex(format!("{t}{date}").as_bytes());
            let tmp = a.tmp_dir().join("x");
            std::fs::write(&tmp, b"x").unwrap();
            a.store(&tmp, &sha).unwrap();
            a.record(&CatalogueEntry {
                tile: t.into(),
                date: date.into(),
                sha256: sha,
                bytes: 1,
                source: "s".into(),
                footprint: None,
            })
            .unwrap();
        }
        let keys: Vec<_> = a
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| format!("{}@{}", e.tile, e.date))
            .collect();
        assert_eq!(keys, ["t1@2024-01-01", "t1@2024-01-03", "t2@2024-01-02"]);
        assert!(a.lookup("t1", "2024-01-01").is_some());
        assert!(a.lookup("t9", "2024-01-01").is_none());
    }

    #[test]
    fn non_raster_is_rejected() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.tif");
        std::fs::write(&p, b"this is not a tiff").unwrap();
        assert!(verify_raster(&p).is_err());
    }
}
