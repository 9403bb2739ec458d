//! Shared helpers for tests that need the same scene delivered in another radiometry: a raster
//! copied with its values mapped, stored as another type, with creation options and band scales.
#![allow(dead_code)]

use gdal::raster::{Buffer, GdalType, RasterCreationOptions};
use gdal::Dataset;
use std::path::Path;

/// Copies a GeoTIFF as type `T`, each value mapped by `f`, with creation options `co` and
/// per-band `(scale, offset)` metadata.
pub fn rewrite<T: GdalType + Copy>(src: &Path, dst: &Path, f: impl Fn(f64) -> T, co: &[&str], scales: &[(f64, f64)]) {
    let from = Dataset::open(src).unwrap();
    let (w, h) = from.raster_size();
    let drv = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
    let opts = RasterCreationOptions::from_iter(co.iter().copied());
    let mut to = drv
        .create_with_band_type_with_options::<T, _>(dst, w, h, from.raster_count(), &opts)
        .unwrap();
    to.set_geo_transform(&from.geo_transform().unwrap()).unwrap();
    to.set_projection(&from.projection()).unwrap();
    for b in 1..=from.raster_count() {
        let data: Buffer<f64> = from
            .rasterband(b)
            .unwrap()
            .read_as((0, 0), (w, h), (w, h), None)
            .unwrap();
        let mapped: Vec<T> = data.data().iter().map(|&v| f(v)).collect();
        let mut band = to.rasterband(b).unwrap();
        if let Some(&(scale, offset)) = scales.get(b - 1) {
            band.set_scale(scale).unwrap();
            band.set_offset(offset).unwrap();
        }
        band.write((0, 0), (w, h), &mut Buffer::new((w, h), mapped)).unwrap();
    }
}
