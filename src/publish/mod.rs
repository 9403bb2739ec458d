//! Stage 5: publishing a run — GeoJSON patches, the change raster, the run manifest.
pub mod geojson;
pub mod manifest;
