//! The patch (图斑) as it travels from the patch stage to publishing and review, with what the
//! land-use layers say about it.

use crate::io::raster::Window;
use crate::types::features::Features;
use serde::Serialize;

/// What the land-use layers say about a patch (filled by the overlay; empty without layers).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LandUse {
    /// 三调 class code and name of the parcel covering most of the patch.
    pub dlbm: String,
    pub dlmc: String,
    pub cropland_area_m2: f64,
    pub basic_farmland_area_m2: f64,
    pub approved_fraction: f64,
    pub touches_red_line: bool,
    pub near_village: bool,
    pub county_code: String,
    pub county_name: String,
    /// Whether a land-use layer was given at all.
    pub known: bool,
}

/// One change patch.
#[derive(Debug, Clone)]
pub struct Patch {
    pub id: String,
    /// Outline in the grid's CRS.
    pub shape: geo::MultiPolygon<f64>,
    pub pixel_box: Window,
    pub area_m2: f64,
    pub features: Features,
    pub change_type: String,
    pub confidence: f64,
    pub land: LandUse,
    pub category: String,
    /// Chip paths relative to the run folder.
    pub chips: Option<(String, String)>,
}
