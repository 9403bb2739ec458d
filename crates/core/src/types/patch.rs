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
    /// 三调 class name (DLMC) of that parcel.
    pub dlmc: String,
    /// Area on cropland (01xx) parcels, m².
    pub cropland_area_m2: f64,
    /// Area on permanent basic farmland, m².
    pub basic_farmland_area_m2: f64,
    /// Share of the patch covered by approved construction land.
    pub approved_fraction: f64,
    /// Whether the patch touches the ecological red line.
    pub touches_red_line: bool,
    /// Whether the patch lies near village land (07xx).
    pub near_village: bool,
    /// Code of the county the patch lies in.
    pub county_code: String,
    /// Name of that county.
    pub county_name: String,
    /// Whether a land-use layer was given at all.
    pub known: bool,
}

/// One change patch.
#[derive(Debug, Clone)]
pub struct Patch {
    /// Id within the run, `P00001…` in a deterministic order.
    pub id: String,
    /// Outline in the grid's CRS.
    pub shape: geo::MultiPolygon<f64>,
    /// Pixel box of the patch on the before grid.
    pub pixel_box: Window,
    /// Ground area, m².
    pub area_m2: f64,
    /// Feature values the typing model decided on.
    pub features: Features,
    /// Change type the model gave (e.g. `building`, `pond`, `other`).
    pub change_type: String,
    /// The winning rule's score, 0..1.
    pub confidence: f64,
    /// Mean change evidence over the patch's pixels, in multiples of the threshold (3 decimals).
    pub evidence_rel: f64,
    /// How sure detection is that the ground changed, 0..1 (see
    /// [`crate::patches::confidence`]).
    pub change_confidence: f64,
    /// What the land-use layers say about it.
    pub land: LandUse,
    /// 非农化 / 非粮化 category from the land use (empty without layers).
    pub category: String,
    /// Chip paths relative to the run folder.
    pub chips: Option<(String, String)>,
}
