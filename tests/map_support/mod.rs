//! Georeferenced before/after images for the map tests: a 4-band UInt16 pair in CGCS2000 /
//! 3-degree Gauss-Kruger CM 108E (EPSG:4545) covering the review fixture's patches
//! (108.30–108.33 E, 22.80–22.82 N), and the run manifest (`run.json`) naming them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::DriverManager;
use serde_json::json;

/// Ground size of one pixel, metres.
pub const PIXEL_M: f64 = 2.0;
/// South-west corner the images start from (lon, lat).
pub const ORIGIN_LONLAT: (f64, f64) = (108.295, 22.795);

/// EPSG:4545 with x = easting, y = northing.
fn gk108() -> SpatialRef {
    let mut s = SpatialRef::from_epsg(4545).expect("EPSG:4545");
    s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    s
}

/// (easting, northing) of a lon/lat point in EPSG:4545.
pub fn to_gk(lon: f64, lat: f64) -> (f64, f64) {
    let mut ll = SpatialRef::from_epsg(4490).expect("EPSG:4490");
    ll.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let t = CoordTransform::new(&ll, &gk108()).expect("transform");
    let (mut x, mut y, mut z) = ([lon], [lat], [0.0]);
    t.transform_coords(&mut x, &mut y, &mut z).expect("to GK");
    (x[0], y[0])
}

/// Writes a `side`² image at `path`: a smooth field pattern; with `bright_box` a bright
/// square (lon/lat box) as a new building. `cog`: Cloud-Optimised GeoTIFF with overviews.
pub fn write_image(path: &Path, side: usize, bright_box: Option<[f64; 4]>, cog: bool) {
    let (x0, y_south) = to_gk(ORIGIN_LONLAT.0, ORIGIN_LONLAT.1);
    let y0 = y_south + side as f64 * PIXEL_M;
    let bright = bright_box.map(|[w, s, e, n]| {
        let (ax, ay) = to_gk(w, s);
        let (bx, by) = to_gk(e, n);
        let col = |x: f64| ((x - x0) / PIXEL_M) as isize;
        let row = |y: f64| ((y0 - y) / PIXEL_M) as isize;
        (col(ax), row(by), col(bx), row(ay))
    });
    let mem = DriverManager::get_driver_by_name("MEM").expect("MEM");
    let mut ds = mem.create_with_band_type::<u16, _>("", side, side, 4).expect("create");
    ds.set_spatial_ref(&gk108()).expect("srs");
    ds.set_geo_transform(&[x0, PIXEL_M, 0.0, y0, 0.0, -PIXEL_M])
        .expect("gt");
    for b in 1..=4 {
        let data: Vec<u16> = (0..side * side)
            .map(|i| {
                let (r, c) = ((i / side) as isize, (i % side) as isize);
                let inside = bright.is_some_and(|(c0, r0, c1, r1)| (c0..=c1).contains(&c) && (r0..=r1).contains(&r));
                if inside {
                    3000
                } else {
                    // Fields of crops, bare soil and water in B, G, R, NIR, with some texture.
                    const FIELDS: [[u16; 4]; 3] = [[300, 520, 330, 1400], [480, 560, 650, 700], [260, 300, 240, 150]];
                    let field = ((r / 40 + c / 40) % 3) as usize;
                    FIELDS[field][b - 1] + ((r * 7 + c * 3) % 50) as u16
                }
            })
            .collect();
        let mut buf = Buffer::new((side, side), data);
        ds.rasterband(b)
            .expect("band")
            .write((0, 0), (side, side), &mut buf)
            .expect("write");
    }
    let (driver, opts) = if cog {
        ("COG", vec!["COMPRESS=DEFLATE", "BLOCKSIZE=256", "OVERVIEWS=AUTO"])
    } else {
        ("GTiff", vec!["TILED=YES", "COMPRESS=DEFLATE"])
    };
    let out = DriverManager::get_driver_by_name(driver).expect("driver");
    let opts = RasterCreationOptions::from_iter(opts);
    ds.create_copy(&out, path, &opts).expect("write image");
}

/// Writes `images/before.tif` and `images/after.tif` under `data` (a new building at the
/// fixture's first patch on the after date) and `run_dir/run.json` naming them.
pub fn write_scene(data: &Path, run_dir: &Path, side: usize) -> (PathBuf, PathBuf) {
    let dir = data.join("images");
    std::fs::create_dir_all(&dir).expect("mkdir images");
    let (before, after) = (dir.join("before.tif"), dir.join("after.tif"));
    write_image(&before, side, None, false);
    write_image(&after, side, Some([108.300, 22.800, 108.301, 22.801]), false);
    write_manifest(run_dir, &before, &after);
    (before, after)
}

/// `run_dir/run.json` with the two input paths as given (B, G, R, NIR bands).
pub fn write_manifest(run_dir: &Path, before: &Path, after: &Path) {
    write_manifest_with_landuse(run_dir, before, after, None);
}

/// Like [`write_manifest`], naming a land-use layer too.
pub fn write_manifest_with_landuse(run_dir: &Path, before: &Path, after: &Path, landuse: Option<&Path>) {
    let layers = match landuse {
        Some(p) => json!({"landuse": {"path": p.display().to_string(), "sha256": ""}}),
        None => json!({}),
    };
    let m = json!({
        "inputs": {"before": {"path": before.display().to_string(), "sha256": ""},
                   "after": {"path": after.display().to_string(), "sha256": ""}, "layers": layers},
        "bands": {"blue": 1, "green": 2, "red": 3, "nir": 4},
    });
    std::fs::write(run_dir.join("run.json"), m.to_string()).expect("write run.json");
}

/// The XYZ tile (x, y) holding lon/lat at zoom `z`.
pub fn tile_of(lon: f64, lat: f64, z: u32) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n).floor();
    let phi = lat.to_radians();
    let y = ((1.0 - (phi.tan() + 1.0 / phi.cos()).ln() / std::f64::consts::PI) / 2.0 * n).floor();
    (x as u32, y as u32)
}

/// Writes `layers/landuse.geojson` under `data`: two parcels in EPSG:4545 (a paddy field
/// 0101 under the first patch and a dry field 0103 east of it), and names it in run.json.
pub fn write_landuse(data: &Path, run_dir: &Path, before: &Path, after: &Path) -> PathBuf {
    let parcel = |w: f64, s: f64, e: f64, n: f64| {
        let ring: Vec<[f64; 2]> = [(w, s), (e, s), (e, n), (w, n), (w, s)]
            .iter()
            .map(|(lon, lat)| {
                let (x, y) = to_gk(*lon, *lat);
                [x, y]
            })
            .collect();
        json!({"type": "Polygon", "coordinates": [ring]})
    };
    let fc = json!({
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4545"}},
        "features": [
            {"type": "Feature", "properties": {"DLBM": "0101", "DLMC": "水田"},
             "geometry": parcel(108.2995, 22.7995, 108.3025, 22.8025)},
            {"type": "Feature", "properties": {"DLBM": "0103", "DLMC": "旱地"},
             "geometry": parcel(108.3025, 22.7995, 108.3055, 22.8025)},
        ]
    });
    let dir = data.join("layers");
    std::fs::create_dir_all(&dir).expect("mkdir layers");
    let path = dir.join("landuse.geojson");
    std::fs::write(&path, fc.to_string()).expect("write landuse");
    write_manifest_with_landuse(run_dir, before, after, Some(&path));
    path
}
