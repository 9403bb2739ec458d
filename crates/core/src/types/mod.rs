//! Plain data shared by the stages, so that no two stages import each other: the patch and its
//! land use ([`patch`]), the per-patch feature values ([`features`]) and the row-major layout
//! helpers of the pixel planes ([`layout`]).

pub mod features;
pub(crate) mod layout;
pub mod patch;
