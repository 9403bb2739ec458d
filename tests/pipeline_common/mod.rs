//! Shared helpers for the pipeline integration tests: small synthetic tiles made with GDAL, a small
//! but real detector (changed pixels → one polygon per tile in lon/lat), and pipeline files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::{Dataset, DriverManager};
use landwatch_pipeline::{TileDetector, TileJob};
use ndarray::Array2;

pub const SIZE: usize = 256;
/// Pixel size in metres (EPSG:4545, CGCS2000 / 3-degree GK CM 108E).
pub const PX: f64 = 2.0;
pub const X0: f64 = 500_000.0;
pub const Y0: f64 = 2_500_000.0;

/// A bright rectangle in pixel coordinates of the tile: (row0, row1, col0, col1), exclusive ends.
pub type Rect = (usize, usize, usize, usize);

/// Reflectance ×10⁴ of B, G, R, NIR: green cropland, and the concrete of a new building.
const CROP: [u16; 4] = [400, 700, 500, 3000];
const BUILT: [u16; 4] = [1800, 1900, 2000, 2200];

/// Writes a 256×256 4-band UInt16 GeoTIFF for tile column `col` of a row of adjacent tiles:
/// textured cropland, with a new building's spectrum in the given rectangles.
pub fn make_tile(path: &Path, col: usize, bright: &[Rect]) {
    let drv = DriverManager::get_driver_by_name("GTiff").unwrap();
    let opts = RasterCreationOptions::from_iter(["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128"]);
    let mut ds = drv
        .create_with_band_type_with_options::<u16, _>(path, SIZE, SIZE, 4, &opts)
        .unwrap();
    ds.set_spatial_ref(&SpatialRef::from_epsg(4545).unwrap()).unwrap();
    let x0 = X0 + (col * SIZE) as f64 * PX;
    ds.set_geo_transform(&[x0, PX, 0.0, Y0, 0.0, -PX]).unwrap();
    for b in 1..=4 {
        // Aperiodic texture (a hash of the ground position), the same on both dates.
        let texture = |r: usize, c: usize| {
            let g = ((col * SIZE + c) as u64) << 32 | r as u64;
            let h = g.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (g >> 29);
            (h.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 58) as u16 * 3
        };
        let mut a = Array2::<u16>::from_shape_fn((SIZE, SIZE), |(r, c)| CROP[b - 1] + texture(r, c));
        for &(r0, r1, c0, c1) in bright {
            for r in r0..r1 {
                for c in c0..c1 {
                    a[(r, c)] = BUILT[b - 1] + texture(r, c);
                }
            }
        }
        let mut buf: Buffer<u16> = a.into();
        ds.rasterband(b).unwrap().write((0, 0), (SIZE, SIZE), &mut buf).unwrap();
    }
    ds.flush_cache().unwrap();
}

/// A minimal detector that honours the run-folder contract: pixels brighter by >1000 DN in band 1
/// become one patch (their bounding box) in lon/lat, with chips and the schema's fields.
pub struct BoxDetector {
    /// Sleep per pair, so a test can kill the process mid-run.
    pub delay_ms: u64,
}

impl TileDetector for BoxDetector {
    fn detect(&self, job: &TileJob) -> landwatch_core::Result<()> {
        std::thread::sleep(std::time::Duration::from_millis(self.delay_ms));
        let read = |p: &Path| -> landwatch_core::Result<(Array2<f64>, [f64; 6], SpatialRef)> {
            let ds = Dataset::open(p).map_err(|e| landwatch_core::Error::gdal(p, "open", e))?;
            let band = ds
                .rasterband(1)
                .map_err(|e| landwatch_core::Error::gdal(p, "band", e))?;
            let a = band
                .read_band_as::<f64>()
                .map_err(|e| landwatch_core::Error::gdal(p, "read", e))?
                .to_array()
                .map_err(|e| landwatch_core::Error::gdal(p, "array", e))?;
            let gt = ds
                .geo_transform()
                .map_err(|e| landwatch_core::Error::gdal(p, "gt", e))?;
            let srs = ds.spatial_ref().map_err(|e| landwatch_core::Error::gdal(p, "srs", e))?;
            Ok((a, gt, srs))
        };
        let (b, _, _) = read(job.before)?;
        let (a, gt, mut srs) = read(job.after)?;
        let mut bbox: Option<(usize, usize, usize, usize)> = None;
        let mut count = 0usize;
        for ((r, c), v) in a.indexed_iter() {
            if v - b[(r, c)] > 1000.0 {
                count += 1;
                let e = bbox.get_or_insert((r, r, c, c));
                *e = (e.0.min(r), e.1.max(r), e.2.min(c), e.3.max(c));
            }
        }
        let mut features = Vec::new();
        if let Some((r0, r1, c0, c1)) = bbox {
            srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
            let mut wgs = SpatialRef::from_epsg(4326).unwrap();
            wgs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
            let ct = CoordTransform::new(&srs, &wgs).unwrap();
            let corners = [(c0, r0), (c1 + 1, r0), (c1 + 1, r1 + 1), (c0, r1 + 1), (c0, r0)];
            let mut xs: Vec<f64> = corners
                .iter()
                .map(|(c, r)| gt[0] + *c as f64 * gt[1] + *r as f64 * gt[2])
                .collect();
            let mut ys: Vec<f64> = corners
                .iter()
                .map(|(c, r)| gt[3] + *c as f64 * gt[4] + *r as f64 * gt[5])
                .collect();
            ct.transform_coords(&mut xs, &mut ys, &mut []).unwrap();
            let ring: Vec<[f64; 2]> = xs.iter().zip(&ys).map(|(x, y)| [r7(*x), r7(*y)]).collect();
            let area = count as f64 * PX * PX;
            std::fs::create_dir_all(job.out_dir.join("chips")).unwrap();
            for s in ["before", "after"] {
                std::fs::write(job.out_dir.join(format!("chips/P0001_{s}.png")), s).unwrap();
            }
            let hsx = job.after_date.replace('-', "");
            features.push(serde_json::json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "id": "P0001", "track_id": "P0001", "change_type": "building", "category": "非农化",
                    "confidence": 0.9, "area_m2": area, "area_mu": area / 666.6667,
                    "cropland_area_m2": area / 2.0, "basic_farmland_area_m2": 0.0,
                    "before_date": job.before_date, "after_date": job.after_date, "model": "box@1",
                    "features": {"pixels": count}, "chip_before": "chips/P0001_before.png",
                    "chip_after": "chips/P0001_after.png", "JCBH": format!("450102{hsx}0001"),
                    "XZQDM": "450102", "XZQMC": "兴宁区", "QSX": job.before_date.replace('-', ""), "HSX": hsx,
                    "TBLX": "新增建筑", "DLBM": "0103", "DLMC": "旱地", "JCMJ": area, "JCMJ_MU": area / 666.6667,
                    "GDMJ": area / 2.0, "YJJBNTMJ": 0.0, "SFYN": "否", "SFHX": "否",
                    "ZXX": r7((xs[0] + xs[2]) / 2.0), "ZXY": r7((ys[0] + ys[2]) / 2.0),
                    "NYQK": "", "PDJG": "", "BZ": ""
                }
            }));
        }
        let fc = serde_json::json!({"type": "FeatureCollection", "features": features});
        std::fs::write(
            job.out_dir.join("patches.geojson"),
            serde_json::to_vec_pretty(&fc).unwrap(),
        )
        .map_err(|e| landwatch_core::Error::io(job.out_dir, "write", e))?;
        std::fs::write(job.out_dir.join("run.json"), b"{}").unwrap();
        Ok(())
    }
}

fn r7(v: f64) -> f64 {
    (v * 1e7).round() / 1e7
}

/// Standard scene: tiles t0 and t1 adjacent with a change straddling their seam, t2 with its own
/// change, t3 unchanged. Files named `<tile>_<date>.tif` in `dir`.
pub fn standard_scene(dir: &Path, names: [&str; 4]) {
    std::fs::create_dir_all(dir).unwrap();
    let changes: [Vec<Rect>; 4] = [
        vec![(100, 150, 200, 256)],
        vec![(100, 150, 0, 40)],
        vec![(30, 60, 30, 90)],
        vec![],
    ];
    for (i, name) in names.iter().enumerate() {
        make_tile(&dir.join(format!("{name}_2024-01-10.tif")), i, &[]);
        make_tile(&dir.join(format!("{name}_2024-05-10.tif")), i, &changes[i]);
    }
}

/// Writes a pipeline file for a local folder source.
pub fn local_pipeline(root: &Path, source: &Path, extra: &str) -> PathBuf {
    let p = root.join("pipeline.toml");
    let text = format!(
        "name = \"test\"\noutput = \"{}\"\n{extra}\n[source]\nkind = \"local\"\npath = \"{}\"\n\n[baseline]\ndate = \"2024-02-01\"\n",
        root.join("out").display(),
        source.display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Feature properties of a published patches.geojson.
pub fn features(path: &Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&read(path)).unwrap();
    v["features"].as_array().unwrap().clone()
}
