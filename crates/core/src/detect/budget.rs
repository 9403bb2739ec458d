//! The memory a detection run will need, checked against a budget before any pixel is read.
//!
//! The streaming pass holds a few strips of both dates (full width, one block row plus its
//! halo), the block outputs of a few strips, and one block's working planes per thread: memory
//! follows the image *width*, not its area. What grows with the area is only the list of
//! blocks. An image too wide for the budget is refused with its size, the estimate and the
//! budget (exit 2) instead of dying of a failed allocation half way through.

use crate::io::raster::RasterInfo;
use crate::model::Model;
use crate::{Error, Result};
use gdal::raster::GdalDataType;

/// Environment variable holding the budget when `--memory-budget` is not given.
pub const BUDGET_ENV: &str = "LANDWATCH_MEMORY_BUDGET";
/// The budget when neither is given and the machine's memory is unknown.
pub const FALLBACK_BUDGET: u64 = 4 << 30;
/// Smallest image side: calibration windows, the correlation that estimates the shift and the
/// neighbourhood operations need room (the model's smallest calibration window is 32 px).
pub const MIN_SIDE: usize = 32;

/// Full-width strips of both dates alive at once: the one being computed, the one waiting in
/// the hand-over, the one the reader is assembling, and the row bands it keeps for the halo
/// (measured: 16384² 4-band UInt16, 1229 MiB peak, of which about 5 strips' worth follows the
/// width).
const STRIPS_HELD: u64 = 5;
/// Strips of block outputs (class and evidence bytes) alive at once: computed, waiting, written.
const OUTPUT_STRIPS: u64 = 3;
/// Bytes per pixel of one block's working planes (f32 bands of both dates, indices, textures,
/// masks, evidence; measured about 240).
const BLOCK_BYTES_PER_PX: u64 = 256;
/// GDAL's block cache during calibration (256 MiB) and what the process holds besides.
const FIXED_BYTES: u64 = 384 << 20;
/// Largest opening/closing radius a model can ask for (see `DetectParams::morphology_px`).
const MAX_MORPHOLOGY_PX: usize = 5;

/// The memory a run may use, and whether it writes chips (whose GDAL block cache is sized
/// from the width too, see [`crate::io::size_block_cache_for_chips`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes the run may use.
    pub bytes: u64,
    /// Whether the run writes chips.
    pub chips: bool,
}

/// What a run over one grid is estimated to need, in bytes, and what it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// Estimated peak bytes of the run.
    pub total: u64,
    /// Rows of one strip with its halo.
    pub strip_rows: usize,
}

/// Estimates the peak memory of detection on a `width` × `height` grid, reading `bands`
/// bands stored as `data_type`, with `threads` worker threads, and writing chips or not.
pub fn estimate(
    width: usize,
    height: usize,
    bands: usize,
    data_type: GdalDataType,
    model: &Model,
    (threads, chips): (usize, bool),
) -> Need {
    let d = &model.detect;
    let halo = (d.match_radius + 2 * MAX_MORPHOLOGY_PX + model.masks.cloud_buffer_px + 3)
        .max(super::texture::halo(&d.texture)) as u64;
    let bs = d.block_size as u64;
    // 8/16-bit samples are held as stored in u16, everything else as f32.
    let held = if matches!(data_type, GdalDataType::UInt8 | GdalDataType::UInt16) {
        2
    } else {
        4
    };
    let (w, h, nb) = (width as u64, height as u64, bands as u64);
    let strip_rows = bs + 2 * halo;
    // Both dates; the after image is read with a few columns of margin for the shift.
    let strip = 2 * (w + 8) * strip_rows * nb * held;
    let outputs = w * bs * 2;
    let block = (bs + 2 * halo).pow(2) * BLOCK_BYTES_PER_PX;
    let block_list = w.div_ceil(bs) * h.div_ceil(bs) * std::mem::size_of::<crate::io::raster::Window>() as u64;
    // The chips' block cache comes on top of what the pass leaves allocated (glibc keeps it).
    let chips_cache = if chips {
        let rows = bs * w * nb * data_type.bytes() as u64 * 2 + (64 << 20);
        rows.clamp(128 << 20, 1 << 30)
    } else {
        0
    };
    let total = STRIPS_HELD
        .saturating_mul(strip)
        .saturating_add(OUTPUT_STRIPS.saturating_mul(outputs))
        .saturating_add((threads as u64).saturating_mul(block))
        .saturating_add(block_list)
        .saturating_add(chips_cache)
        .saturating_add(FIXED_BYTES);
    Need {
        total,
        strip_rows: strip_rows as usize,
    }
}

/// Refuses an image (the grid detection runs on) that is too small to calibrate or needs more
/// memory than the budget, before anything is read from it.
pub fn check_image(info: &RasterInfo, bands: usize, model: &Model, budget: Budget) -> Result<()> {
    if info.width < MIN_SIDE || info.height < MIN_SIDE {
        return Err(Error::input(
            &info.path,
            format!(
                "image is {} × {} px; landwatch needs at least {MIN_SIDE} × {MIN_SIDE} px",
                info.width, info.height
            ),
        ));
    }
    let need = estimate(
        info.width,
        info.height,
        bands,
        info.data_type,
        model,
        (rayon::current_num_threads(), budget.chips),
    );
    if need.total <= budget.bytes {
        return Ok(());
    }
    Err(Error::input(
        &info.path,
        format!(
            "image is {} × {} px ({bands} bands of {}); detecting change on it needs about {} of memory \
             (it grows with the width: {} px × {bands} bands × {}-row strips of both dates), more than the \
             memory budget of {}; cut it into tiles (e.g. gdal_translate -srcwin) or raise the budget with \
             --memory-budget or {BUDGET_ENV}",
            info.width,
            info.height,
            info.data_type.name(),
            human(need.total),
            info.width,
            need.strip_rows,
            human(budget.bytes),
        ),
    ))
}

/// The budget in bytes: the one given (`--memory-budget`), else `LANDWATCH_MEMORY_BUDGET`,
/// else three quarters of the memory this process may use (the machine's, or its cgroup's
/// limit when lower), else [`FALLBACK_BUDGET`].
pub fn resolve(given: Option<u64>, chips: bool) -> Result<Budget> {
    let bytes = match (given, std::env::var_os(BUDGET_ENV)) {
        (Some(b), _) => b,
        (None, Some(v)) => {
            let text = v.to_string_lossy();
            parse_size(&text).map_err(|e| Error::Usage(format!("{BUDGET_ENV}={text}: {e}")))?
        }
        (None, None) => usable_memory().map_or(FALLBACK_BUDGET, |m| m / 4 * 3),
    };
    Ok(Budget { bytes, chips })
}

/// Parses a memory size such as `4G`, `512M`, `1.5GiB` or `8000000000` (bytes); units are
/// powers of 1024. Sizes under 64 MiB are refused (a missing unit, most likely).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_uppercase();
    let shift = match unit.trim_end_matches('B').trim_end_matches('I') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => {
            return Err(format!(
                "unknown unit '{unit}'; expected a size such as 4G, 512M or 1.5GiB"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{t}' is not a size; expected e.g. 4G, 512M or 1.5GiB"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < (64u64 << 20) as f64 {
        return Err(format!(
            "'{t}' is less than 64 MiB; give a size with its unit, e.g. 4G or 512M"
        ));
    }
    Ok(bytes.min(u64::MAX as f64) as u64)
}

/// A size in bytes for people: `1.2 GiB`, `640 MiB`.
pub fn human(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.0} MiB", b / MIB)
    }
}

/// The memory this process may use: physical memory, or a lower cgroup limit (containers).
fn usable_memory() -> Option<u64> {
    let physical = physical_memory();
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .filter_map(|s| s.trim().parse::<u64>().ok())
    .min();
    match (physical, cgroup) {
        (Some(p), Some(c)) => Some(p.min(c)),
        (p, c) => p.or(c),
    }
}

fn physical_memory() -> Option<u64> {
    #[cfg(unix)]
    {
        // SAFETY: sysconf only reads system configuration values.
        let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
        if pages > 0 && page > 0 {
            return Some(pages as u64 * page as u64);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model::builtin().expect("built-in model")
    }

    #[test]
    fn sizes_parse_with_binary_units_and_refuse_tiny_or_unknown_ones() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size(" 2 gb "), Ok(2 << 30));
        assert_eq!(parse_size("8000000000"), Ok(8_000_000_000));
        for bad in ["4000", "4X", "", "G", "-1G", "nanG"] {
            assert!(parse_size(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_estimate_follows_the_width_not_the_height() {
        let m = model();
        let tall = estimate(1024, 1 << 20, 4, GdalDataType::UInt16, &m, (2, false)).total;
        let square = estimate(1024, 1024, 4, GdalDataType::UInt16, &m, (2, false)).total;
        // The block list is all that grows with the height: 32 bytes per 512² block.
        assert!(tall - square < 1 << 20, "{tall} vs {square}");
        let wide = estimate(1 << 20, 1024, 4, GdalDataType::UInt16, &m, (2, false)).total;
        assert!(wide > 10 * square, "{wide} vs {square}");
        // Chips add their block cache (at least 128 MiB); every thread its block.
        let chips = estimate(1024, 1024, 4, GdalDataType::UInt16, &m, (2, true)).total;
        assert!(chips >= square + (128 << 20), "{chips} vs {square}");
        let threads = estimate(1024, 1024, 4, GdalDataType::UInt16, &m, (3, false)).total;
        assert!(threads > square + (64 << 20), "{threads} vs {square}");
    }

    #[test]
    fn the_readme_pairs_fit_a_few_gib_and_a_two_million_px_wide_image_does_not() {
        let m = model();
        // README: 16384² 4-band UInt16 measured 1229 MiB peak (2 threads, no chips).
        let readme = estimate(16384, 16384, 4, GdalDataType::UInt16, &m, (2, false)).total;
        assert!(readme > 1100 << 20 && readme < 2 << 30, "{}", human(readme));
        let huge = estimate(2_000_000, 2_000_000, 4, GdalDataType::UInt16, &m, (2, true)).total;
        assert!(huge > 64 << 30, "{}", human(huge));
    }
}
