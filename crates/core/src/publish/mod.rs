//! Stage 5: publishing a run — GeoJSON patches, the change raster, the run manifest.
pub mod chips;
pub mod exports;
pub mod geojson;
pub mod manifest;
