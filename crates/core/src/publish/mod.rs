//! Stage 5: publishing a run — GeoJSON patches, GeoPackage/Shapefile exports, image chips (the
//! run manifest is written by [`crate::pair`], with the checksums of [`crate::io::hash`]).
pub(crate) mod chips;
/// The chips' contrast stretch takes its 2nd and 98th percentiles with this (the review
/// map's tiles use the same rule).
pub use chips::percentile;
pub mod exports;
pub mod geojson;
