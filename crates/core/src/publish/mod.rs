//! Stage 5: publishing a run — GeoJSON patches, GeoPackage/Shapefile exports, image chips (the
//! run manifest is written by [`crate::pair`], with the checksums of [`crate::io::hash`]).
pub(crate) mod chips;
pub mod exports;
pub mod geojson;
