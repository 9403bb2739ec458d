//! Raster input through GDAL: opening with errors that name the file and say what to do,
//! describing a raster's grid, and reading windows as `f32` arrays in reflectance units.

use crate::gdal_messages::gdal_last_error;
use crate::{Error, Result};
use gdal::raster::{GdalDataType, GdalType};
use gdal::{Dataset, GeoTransform};
use ndarray::{s, Array2, Array3, ArrayView3};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A pixel window: column/row of the upper-left corner, width and height. The corner may lie
/// outside the raster (negative or past the edge); reads pad such parts as "not observed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First column (may be negative: off the raster).
    pub x: isize,
    /// First row (may be negative: off the raster).
    pub y: isize,
    /// Width, pixels.
    pub w: usize,
    /// Height, pixels.
    pub h: usize,
}

/// For messages: `columns 0–511, rows 512–1023`.
impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last = |start: isize, len: usize| start + len as isize - 1;
        write!(
            f,
            "columns {}–{}, rows {}–{}",
            self.x,
            last(self.x, self.w),
            self.y,
            last(self.y, self.h)
        )
    }
}

impl Window {
    /// The window of `w` × `h` pixels whose top-left pixel is (`x`, `y`).
    pub fn new(x: isize, y: isize, w: usize, h: usize) -> Self {
        Self { x, y, w, h }
    }

    /// This window grown by `halo` pixels on every side.
    pub fn grow(&self, halo: usize) -> Self {
        let h = halo as isize;
        Self::new(self.x - h, self.y - h, self.w + 2 * halo, self.h + 2 * halo)
    }
}

/// Where a raster sits on the ground, when it is georeferenced.
#[derive(Debug, Clone, PartialEq)]
pub struct Georef {
    /// GDAL's affine geotransform (origin, pixel size, rotation).
    pub geo_transform: GeoTransform,
    /// The CRS as WKT; empty when the file has a geotransform but no CRS.
    pub wkt: String,
}

/// What landwatch needs to know about an input raster.
#[derive(Debug, Clone)]
pub struct RasterInfo {
    /// The file.
    pub path: PathBuf,
    /// Width, pixels.
    pub width: usize,
    /// Height, pixels.
    pub height: usize,
    /// Bands in the file.
    pub band_count: usize,
    /// Sample type of the first band.
    pub data_type: GdalDataType,
    /// Nodata value of each band, if set.
    pub nodata: Vec<Option<f64>>,
    /// `None` for plain images (PNG/JPEG without world file): outputs are in pixel coordinates.
    pub georef: Option<Georef>,
}

impl RasterInfo {
    /// Ground size of a pixel in the raster's units (metres for projected CRSs), if known.
    pub fn pixel_size(&self) -> Option<(f64, f64)> {
        self.georef
            .as_ref()
            .map(|g| (g.geo_transform[1].abs(), g.geo_transform[5].abs()))
    }

    /// Whether both rasters share size, geotransform and CRS (no warp needed).
    pub fn same_grid(&self, other: &RasterInfo) -> bool {
        if self.width != other.width || self.height != other.height {
            return false;
        }
        match (&self.georef, &other.georef) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                let px = a.geo_transform[1].abs().max(1e-12);
                let close = a
                    .geo_transform
                    .iter()
                    .zip(b.geo_transform.iter())
                    .all(|(x, y)| (x - y).abs() <= px * 1e-3);
                close && same_crs(&a.wkt, &b.wkt)
            }
            (Some(_), None) | (None, Some(_)) => false,
        }
    }
}

fn same_crs(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        gdal::spatial_ref::SpatialRef::from_wkt(a),
        gdal::spatial_ref::SpatialRef::from_wkt(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        // A CRS GDAL cannot parse cannot be shown to be the same: the after image is then
        // warped, which names the CRS it cannot use.
        _ => false,
    }
}

/// Opens a raster, turning GDAL's failures into errors that say what is wrong with the file.
pub fn open(path: &Path) -> Result<Dataset> {
    super::init_gdal();
    if !path.exists() {
        return Err(Error::input(path, "file not found; check the path"));
    }
    if path.is_dir() {
        return Err(Error::input(path, "is a folder, expected a raster file"));
    }
    let ds = Dataset::open(path).map_err(|_| {
        Error::input(
            path,
            "not a raster GDAL can read (expected GeoTIFF/COG, PNG, JPEG or another GDAL format)",
        )
    })?;
    if ds.raster_count() == 0 {
        return Err(Error::input(path, "has no raster bands (is it a vector file?)"));
    }
    Ok(ds)
}

/// Describes an opened raster.
pub fn describe(ds: &Dataset, path: &Path) -> Result<RasterInfo> {
    let (width, height) = ds.raster_size();
    let band_count = ds.raster_count();
    let first = ds
        .rasterband(1)
        .map_err(|e| Error::gdal(path, "cannot read band 1", e))?;
    let data_type = first.band_type();
    let mut nodata = Vec::with_capacity(band_count);
    for b in 1..=band_count {
        let band = ds
            .rasterband(b)
            .map_err(|e| Error::gdal(path, format!("cannot read band {b}"), e))?;
        nodata.push(band.no_data_value());
    }
    Ok(RasterInfo {
        path: path.to_path_buf(),
        width,
        height,
        band_count,
        data_type,
        nodata,
        georef: georef_of(ds),
    })
}

fn georef_of(ds: &Dataset) -> Option<Georef> {
    let gt = ds.geo_transform().ok()?;
    if gt == [0.0, 1.0, 0.0, 0.0, 0.0, 1.0] {
        return None;
    }
    Some(Georef {
        geo_transform: gt,
        wkt: ds.projection(),
    })
}

/// A multi-band window in reflectance units, band-major `(band, row, col)`, with a mask of the
/// pixels that were observed (inside the raster and not nodata in any band).
pub struct Pixels {
    /// Reflectance, `(band, row, col)`.
    pub bands: Array3<f32>,
    /// Observed pixels.
    pub valid: Array2<bool>,
}

/// Reads `bands` (1-based GDAL band numbers, in the order wanted) over `win`, scaled by `scale`.
pub fn read_window(ds: &Dataset, info: &RasterInfo, bands: &[usize], win: Window, scale: f32) -> Result<Pixels> {
    let (mut out, valid) = read_padded::<f32>(ds, info, bands, win)?;
    out.mapv_inplace(|v| v * scale);
    Ok(Pixels { bands: out, valid })
}

/// `bands` over `win` as type `T`, band-sequential, with the valid mask: pixels outside the
/// raster are 0 and not valid, nodata (and non-finite floats) not valid.
fn read_padded<T: GdalType + Copy + Default + Into<f64>>(
    ds: &Dataset,
    info: &RasterInfo,
    bands: &[usize],
    win: Window,
) -> Result<(Array3<T>, Array2<bool>)> {
    let mut out = Array3::<T>::default((bands.len(), win.h, win.w));
    let mut valid = Array2::<bool>::from_elem((win.h, win.w), false);
    if let Some(inner) = clip(win, info.width, info.height) {
        let (ox, oy) = ((inner.x - win.x) as usize, (inner.y - win.y) as usize);
        let buf = out
            .as_slice_mut()
            .expect("a new array is contiguous in row-major order");
        raster_io_into(ds, info, bands, inner, (buf, win.w, win.h), (ox, oy))?;
        let (rows, cols) = (oy..oy + inner.h, ox..ox + inner.w);
        let mut inner_valid = valid.slice_mut(s![rows.clone(), cols.clone()]);
        inner_valid.fill(true);
        mark_invalid(inner_valid, out.slice(s![.., rows, cols]), info, bands);
    }
    Ok((out, valid))
}

/// One dataset-level read of `bands` over `win` (inside the raster), as `T` (GDAL converts the
/// stored type to it), into a band-sequential buffer of `buf_w × buf_h` planes, the window's
/// upper-left pixel landing at `at` (column, row): GDAL writes each row in place, no copy. GDAL
/// then decodes each pixel-interleaved tile once for all bands, and with `GDAL_NUM_THREADS` set
/// it decodes the tiles of a large request in parallel.
fn raster_io_into<T: GdalType + Copy>(
    ds: &Dataset,
    info: &RasterInfo,
    bands: &[usize],
    win: Window,
    (buf, buf_w, buf_h): (&mut [T], usize, usize),
    at: (usize, usize),
) -> Result<()> {
    let fits = at.0 + win.w <= buf_w && at.1 + win.h <= buf_h;
    if !fits || buf.len() != bands.len() * buf_w * buf_h {
        return Err(Error::Other(format!(
            "{}: read buffer of the wrong size",
            info.path.display()
        )));
    }
    let mut band_map: Vec<i32> = bands.iter().map(|&b| b as i32).collect();
    let size = std::mem::size_of::<T>();
    // SAFETY: `buf` holds `bands × buf_h × buf_w` samples of `T` (checked above), and GDAL is
    // asked for `T`'s own GDAL type (`GdalType`, implemented by the gdal crate for the Rust
    // types of the same layout), `size_of::<T>()` bytes apart; GDAL writes sample (band k, row r, column c) of the window at
    // offset `k·buf_w·buf_h + (at.1 + r)·buf_w + at.0 + c`, inside `buf` since the window fits
    // at `at` (checked above); `band_map` lists `bands.len()` valid band numbers (checked when
    // the band map was chosen); the dataset handle is alive for the call.
    let rv = unsafe {
        gdal_sys::GDALDatasetRasterIOEx(
            ds.c_dataset(),
            gdal_sys::GDALRWFlag::GF_Read,
            win.x as i32,
            win.y as i32,
            win.w as i32,
            win.h as i32,
            buf.as_mut_ptr().add(at.1 * buf_w + at.0).cast(),
            win.w as i32,
            win.h as i32,
            T::gdal_ordinal(),
            band_map.len() as i32,
            band_map.as_mut_ptr(),
            size as i64,
            (size * buf_w) as i64,
            (size * buf_w * buf_h) as i64,
            std::ptr::null_mut(),
        )
    };
    if rv != gdal_sys::CPLErr::CE_None {
        let said = gdal_last_error();
        let why = if said.is_empty() {
            "GDAL gave no reason; the file may be truncated or damaged".to_string()
        } else {
            said
        };
        return Err(Error::input(
            &info.path,
            format!("cannot read the pixels of {win}: {why}"),
        ));
    }
    Ok(())
}

/// A rectangle of pixels read into memory with one request, so that GDAL decodes each
/// compressed tile of it once (in parallel when `GDAL_NUM_THREADS` is set) however many
/// overlapping windows are later cut from it. 8- and 16-bit images are held as stored, at half
/// the memory of `f32`, and scaled when a window is cut.
pub struct HeldPixels {
    /// The rectangle held.
    pub win: Window,
    samples: Samples,
    valid: Array2<bool>,
    scale: f32,
}

/// Band-major samples as held.
enum Samples {
    U16(Array3<u16>),
    F32(Array3<f32>),
}

impl HeldPixels {
    /// Pixels held as stored (8/16-bit), `scale` times them in reflectance units.
    pub fn from_u16(win: Window, samples: Array3<u16>, valid: Array2<bool>, scale: f32) -> Self {
        Self {
            win,
            samples: Samples::U16(samples),
            valid,
            scale,
        }
    }

    /// Reads `bands` (1-based) of `ds` over `win` in one request, held as stored, `scale` times them in reflectance units.
    pub fn read(ds: &Dataset, info: &RasterInfo, bands: &[usize], win: Window, scale: f32) -> Result<Self> {
        if !matches!(info.data_type, GdalDataType::UInt8 | GdalDataType::UInt16) {
            let px = read_window(ds, info, bands, win, scale)?;
            return Ok(Self {
                win,
                samples: Samples::F32(px.bands),
                valid: px.valid,
                scale: 1.0,
            });
        }
        let (samples, valid) = read_padded::<u16>(ds, info, bands, win)?;
        Ok(Self {
            win,
            samples: Samples::U16(samples),
            valid,
            scale,
        })
    }

    /// `win` copied out of the held rectangle in reflectance units: the same arrays
    /// [`read_window`] would return. `None` when `win` is not wholly inside it.
    pub fn window(&self, win: Window) -> Option<Pixels> {
        let inside = intersect(self.win, win) == Some(win);
        inside.then(|| Self::cut(&[self], win))
    }

    /// `win` in reflectance units, assembled from pieces read earlier (row bands of the image,
    /// say): each pixel comes from the piece that holds it; pixels no piece holds are unset.
    pub fn cut(pieces: &[&HeldPixels], win: Window) -> Pixels {
        let c = pieces.first().map_or(0, |p| p.band_count());
        let mut bands = Array3::<f32>::zeros((c, win.h, win.w));
        let mut valid = Array2::<bool>::from_elem((win.h, win.w), false);
        for p in pieces {
            let Some((src, dst)) = overlap(p.win, win) else {
                continue;
            };
            match &p.samples {
                Samples::U16(a) => scale_rows(bands.slice_mut(dst.bands()), a.slice(src.bands()), p.scale),
                Samples::F32(a) => bands.slice_mut(dst.bands()).assign(&a.slice(src.bands())),
            }
            valid.slice_mut(dst.plane()).assign(&p.valid.slice(src.plane()));
        }
        Pixels { bands, valid }
    }

    /// The rows and columns of this rectangle inside `win`, held the same way.
    pub fn crop(&self, win: Window) -> Option<HeldPixels> {
        let (src, _) = overlap(self.win, win)?;
        let common = intersect(self.win, win)?;
        let samples = match &self.samples {
            Samples::U16(a) => Samples::U16(a.slice(src.bands()).to_owned()),
            Samples::F32(a) => Samples::F32(a.slice(src.bands()).to_owned()),
        };
        Some(HeldPixels {
            win: common,
            samples,
            valid: self.valid.slice(src.plane()).to_owned(),
            scale: self.scale,
        })
    }

    fn band_count(&self) -> usize {
        match &self.samples {
            Samples::U16(a) => a.len_of(ndarray::Axis(0)),
            Samples::F32(a) => a.len_of(ndarray::Axis(0)),
        }
    }
}

/// Clears `valid` where any band of `raw` holds its band's nodata value or, for floating-point
/// images, a value that is not finite (integer samples always are: without nodata there is
/// nothing to check).
fn mark_invalid<T: Copy + Into<f64>>(
    mut valid: ndarray::ArrayViewMut2<bool>,
    raw: ArrayView3<T>,
    info: &RasterInfo,
    bands: &[usize],
) {
    let is_float = matches!(info.data_type, GdalDataType::Float32 | GdalDataType::Float64);
    for (&b, band) in bands.iter().zip(raw.outer_iter()) {
        let nodata = info.nodata.get(b - 1).copied().flatten();
        if nodata.is_none() && !is_float {
            continue;
        }
        ndarray::Zip::from(&mut valid).and(&band).for_each(|v, &x| {
            let x: f64 = x.into();
            if !x.is_finite() || nodata.is_some_and(|nd| (x - nd).abs() < 1e-9) {
                *v = false;
            }
        });
    }
}

/// `dst = src × scale`, row by row: each row is a contiguous run in both arrays, so the
/// conversion is one vectorised loop per row instead of a strided three-axis walk.
fn scale_rows(mut dst: ndarray::ArrayViewMut3<f32>, src: ndarray::ArrayView3<u16>, scale: f32) {
    for (mut d_band, s_band) in dst.outer_iter_mut().zip(src.outer_iter()) {
        for (mut d, s) in d_band.rows_mut().into_iter().zip(s_band.rows()) {
            match (d.as_slice_mut(), s.as_slice()) {
                (Some(d), Some(s)) => d.iter_mut().zip(s).for_each(|(d, &x)| *d = x as f32 * scale),
                _ => ndarray::Zip::from(&mut d)
                    .and(&s)
                    .for_each(|d, &x| *d = x as f32 * scale),
            }
        }
    }
}

/// Row and column ranges of an array.
#[derive(Clone)]
struct Span {
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
}

impl Span {
    fn bands(&self) -> ndarray::SliceInfo<[ndarray::SliceInfoElem; 3], ndarray::Ix3, ndarray::Ix3> {
        s![.., self.rows.clone(), self.cols.clone()]
    }

    fn plane(&self) -> ndarray::SliceInfo<[ndarray::SliceInfoElem; 2], ndarray::Ix2, ndarray::Ix2> {
        s![self.rows.clone(), self.cols.clone()]
    }
}

/// Where the overlap of `held` and `win` lies in each: (in `held`, in `win`).
fn overlap(held: Window, win: Window) -> Option<(Span, Span)> {
    let c = intersect(held, win)?;
    let (sy, sx) = ((c.y - held.y) as usize, (c.x - held.x) as usize);
    let (dy, dx) = ((c.y - win.y) as usize, (c.x - win.x) as usize);
    Some((
        Span {
            rows: sy..sy + c.h,
            cols: sx..sx + c.w,
        },
        Span {
            rows: dy..dy + c.h,
            cols: dx..dx + c.w,
        },
    ))
}

/// The overlap of two windows, if any.
pub fn intersect(a: Window, b: Window) -> Option<Window> {
    let (x0, y0) = (a.x.max(b.x), a.y.max(b.y));
    let x1 = (a.x + a.w as isize).min(b.x + b.w as isize);
    let y1 = (a.y + a.h as isize).min(b.y + b.h as isize);
    (x1 > x0 && y1 > y0).then(|| Window::new(x0, y0, (x1 - x0) as usize, (y1 - y0) as usize))
}

/// The part of `win` inside a `width` × `height` raster, or `None` if they do not meet.
pub fn clip(win: Window, width: usize, height: usize) -> Option<Window> {
    intersect(win, Window::new(0, 0, width, height))
}

/// One open `Dataset` per rayon worker: GDAL datasets are `Send` but not `Sync`, and rayon's
/// `map_init` would reopen the file for every job split.
pub struct DatasetPool {
    path: PathBuf,
    slots: Vec<Mutex<Option<Dataset>>>,
}

impl DatasetPool {
    /// A pool for `path`, with a slot per worker thread (opened on first use).
    pub fn new(path: &Path) -> Self {
        let n = rayon::current_num_threads() + 1;
        Self {
            path: path.to_path_buf(),
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// Runs `f` with this worker's dataset, opening it on first use.
    pub fn with<T>(&self, f: impl FnOnce(&Dataset) -> Result<T>) -> Result<T> {
        // Slot 0 is for threads outside the rayon pool.
        let idx = rayon::current_thread_index()
            .map(|i| i + 1)
            .unwrap_or(0)
            .min(self.slots.len() - 1);
        let mut slot = self.slots[idx]
            .lock()
            .map_err(|_| Error::Other("dataset pool poisoned by an earlier panic".into()))?;
        if slot.is_none() {
            *slot = Some(open(&self.path)?);
        }
        match slot.as_ref() {
            Some(ds) => f(ds),
            None => Err(Error::Other("dataset pool slot empty".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_told_as_column_and_row_ranges() {
        assert_eq!(Window::new(0, 512, 512, 256).to_string(), "columns 0–511, rows 512–767");
    }

    /// A 2-band UInt16 raster in memory, sample `(band, row, col)` = `1000·band + 10·row + col`.
    fn mem_u16(w: usize, h: usize) -> Dataset {
        let drv = gdal::DriverManager::get_driver_by_name("MEM").expect("MEM driver");
        let ds = drv.create_with_band_type::<u16, _>("", w, h, 2).expect("create");
        for b in 0..2 {
            let data = (0..w * h).map(|i| (1000 * b + 10 * (i / w) + i % w) as u16).collect();
            let mut buf = gdal::raster::Buffer::new((w, h), data);
            ds.rasterband(b + 1)
                .expect("band")
                .write((0, 0), (w, h), &mut buf)
                .expect("write");
        }
        ds
    }

    #[test]
    fn every_sample_type_reads_the_same_values_padded_outside_the_raster() {
        let ds = mem_u16(5, 4);
        let info = describe(&ds, Path::new("mem.tif")).expect("describe");
        let win = Window::new(-1, 2, 4, 3);
        let want = |b: usize, r: usize, c: usize| -> f64 {
            let (y, x) = (r as isize + win.y, c as isize + win.x);
            if x < 0 || y >= 4 {
                0.0
            } else {
                (1000 * b) as f64 + (10 * y + x) as f64
            }
        };
        let (a16, v16) = read_padded::<u16>(&ds, &info, &[2, 1], win).expect("u16");
        let (a32, v32) = read_padded::<f32>(&ds, &info, &[2, 1], win).expect("f32");
        let (a64, v64) = read_padded::<f64>(&ds, &info, &[2, 1], win).expect("f64");
        let (ai32, _) = read_padded::<i32>(&ds, &info, &[2, 1], win).expect("i32");
        for ((k, r, c), &v) in a16.indexed_iter() {
            let b = 1 - k; // bands asked for as [2, 1]
            assert_eq!(v as f64, want(b, r, c), "u16 at {k},{r},{c}");
            assert_eq!(a32[(k, r, c)] as f64, want(b, r, c), "f32 at {k},{r},{c}");
            assert_eq!(a64[(k, r, c)], want(b, r, c), "f64 at {k},{r},{c}");
            assert_eq!(ai32[(k, r, c)] as f64, want(b, r, c), "i32 at {k},{r},{c}");
        }
        assert_eq!(v16, v32);
        assert_eq!(v32, v64);
        assert_eq!(
            v16.iter().filter(|&&v| v).count(),
            3 * 2,
            "the pixels inside the raster"
        );
    }
}
