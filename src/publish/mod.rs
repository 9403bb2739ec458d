//! Stage 5: publishing a run — GeoJSON, GeoPackage/Shapefile exports and image chips.
pub mod chips;
pub mod exports;
pub mod geojson;
