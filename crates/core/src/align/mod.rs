//! Stage 2: put the after image on the before image's grid (warp, then residual sub-pixel
//! shift) and on its radiometry (relative normalisation on pseudo-invariant pixels).
pub(crate) mod normalise;
pub mod shift;
pub(crate) mod warp;
