//! Writing the scene's files through GDAL, each to a temporary name in the output folder that is
//! renamed into place only when every file is complete.
//!
//! Rasters are tiled 256x256 DEFLATE GeoTIFFs in EPSG:4545 (CGCS2000 / 3-degree Gauss-Kruger CM
//! 108E); the land-use layer is a GeoPackage in the same CRS; the truth polygons are RFC 7946
//! GeoJSON in EPSG:4326. Nothing written depends on the clock (the GeoPackage's timestamp is pinned)
//! so the same parameters give the same bytes.

use std::path::{Path, PathBuf};

use gdal::raster::{Buffer, GdalType, RasterCreationOptions};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{Feature, FieldDefn, Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType};
use gdal::{Dataset, DriverManager, Metadata};

use super::changes::TruthChange;
use super::geom::Poly;
use super::render::Strip;
use super::scene::LandParcel;
use super::variety::Product;
use landwatch_core::{Error, Result};

/// The projected CRS of every output except the GeoJSON.
pub const EPSG: u32 = 4545;
/// Map coordinates of the image's upper-left corner (near Nanning, Guangxi).
pub const ORIGIN: [f64; 2] = [530_000.0, 2_535_000.0];
/// Fixed timestamp written into the GeoPackage instead of the current time.
const GPKG_DATE: &str = "2024-12-01T00:00:00.000Z";
pub const DATE_BEFORE: &str = "2023-12-08";
pub const DATE_AFTER: &str = "2024-11-23";

/// Output files still under temporary names; removed on drop unless committed.
pub struct Staging {
    dir: PathBuf,
    files: Vec<(PathBuf, PathBuf)>,
    committed: bool,
}

impl Staging {
    pub fn new(dir: &Path) -> Self {
        Staging {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            committed: false,
        }
    }

    /// The temporary path for final file `name` (same folder, same extension, hidden).
    pub fn path(&mut self, name: &str) -> PathBuf {
        let tmp = self.dir.join(format!(".tmp-{}-{}", std::process::id(), name));
        self.files.push((tmp.clone(), self.dir.join(name)));
        tmp
    }

    /// Renames every file into place.
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        for (tmp, dst) in &self.files {
            std::fs::rename(tmp, dst).map_err(|e| Error::io(dst, "moving the finished file into place", e))?;
        }
        self.committed = true;
        Ok(self.files.iter().map(|f| f.1.clone()).collect())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            for (tmp, _) in &self.files {
                let _ = std::fs::remove_file(tmp);
            }
        }
    }
}

fn projected_srs() -> Result<SpatialRef> {
    let mut srs = SpatialRef::from_epsg(EPSG).map_err(|e| Error::Other(format!("EPSG:{EPSG}: {e}")))?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(srs)
}

/// Scene metres (x east, y south from the upper-left corner) to map coordinates.
fn to_map(p: [f64; 2]) -> (f64, f64) {
    (ORIGIN[0] + p[0], ORIGIN[1] - p[1])
}

/// The set of rasters being filled strip by strip.
pub struct RasterSet {
    size: usize,
    before: (Dataset, PathBuf),
    after: (Dataset, PathBuf),
    labels: (Dataset, PathBuf),
    ids: (Dataset, PathBuf),
    clouds: (Dataset, PathBuf),
    /// How the before and after images store their values.
    products: [Product; 2],
    /// Cloud and shadow pixel counts, accumulated as strips arrive.
    pub cloud_px: u64,
    pub shadow_px: u64,
}

/// Everything `RasterSet::create` needs besides the size.
pub struct RasterPaths {
    pub before: PathBuf,
    pub after: PathBuf,
    pub labels: PathBuf,
    pub ids: PathBuf,
    pub clouds: PathBuf,
}

impl RasterSet {
    pub fn create(paths: RasterPaths, size: usize, pixel_m: f64, products: &[Product; 2]) -> Result<RasterSet> {
        let image = |p: &Path, date: &str, product: &Product| -> Result<Dataset> {
            let nbits = product.nbits().map(|b| format!("NBITS={b}"));
            let mut options = vec!["INTERLEAVE=PIXEL"];
            options.extend(nbits.as_deref());
            let mut ds = if product.is_byte() {
                create_tiff::<u8>(p, size, 4, pixel_m, &options)?
            } else {
                create_tiff::<u16>(p, size, 4, pixel_m, &options)?
            };
            for (b, name) in ["B", "G", "R", "NIR"].iter().enumerate() {
                let mut band = ds.rasterband(b + 1).map_err(|e| Error::gdal(p, "opening a band", e))?;
                band.set_description(name)
                    .map_err(|e| Error::gdal(p, "naming a band", e))?;
            }
            let scale = product.label();
            set_meta(&mut ds, p, &[("DATE", date), ("SCALE", &scale), ("BANDS", "B,G,R,NIR")])?;
            Ok(ds)
        };
        let codes = r#"{"0":"none","1":"building","2":"pond","3":"orchard_forest","4":"greenhouse","5":"hardened","9":"non_target"}"#;
        let mut labels = create_tiff::<u8>(&paths.labels, size, 1, pixel_m, &[])?;
        set_meta(&mut labels, &paths.labels, &[("CODES", codes)])?;
        let mut clouds = create_tiff::<u8>(&paths.clouds, size, 1, pixel_m, &[])?;
        set_meta(
            &mut clouds,
            &paths.clouds,
            &[("CODES", r#"{"0":"clear","1":"cloud","2":"shadow"}"#)],
        )?;
        Ok(RasterSet {
            size,
            before: (image(&paths.before, DATE_BEFORE, &products[0])?, paths.before),
            after: (image(&paths.after, DATE_AFTER, &products[1])?, paths.after),
            products: products.clone(),
            labels: (labels, paths.labels),
            ids: (create_tiff::<i32>(&paths.ids, size, 1, pixel_m, &[])?, paths.ids),
            clouds: (clouds, paths.clouds),
            cloud_px: 0,
            shadow_px: 0,
        })
    }

    /// Writes one strip into every raster and flushes, so GDAL's cache holds at most a strip.
    pub fn write(&mut self, s: Strip) -> Result<()> {
        let n = s.rows * self.size;
        for b in 0..4 {
            let [before, after] = &self.products;
            write_image_rows(&mut self.before, before, b, s.r0, s.rows, &s.before[b * n..(b + 1) * n])?;
            write_image_rows(&mut self.after, after, b, s.r0, s.rows, &s.after[b * n..(b + 1) * n])?;
        }
        self.cloud_px += s.clouds.iter().filter(|&&c| c == 1).count() as u64;
        self.shadow_px += s.clouds.iter().filter(|&&c| c == 2).count() as u64;
        write_rows(&mut self.labels, 1, s.r0, s.rows, s.labels)?;
        write_rows(&mut self.ids, 1, s.r0, s.rows, s.ids)?;
        write_rows(&mut self.clouds, 1, s.r0, s.rows, s.clouds)?;
        for (ds, p) in [
            &mut self.before,
            &mut self.after,
            &mut self.labels,
            &mut self.ids,
            &mut self.clouds,
        ] {
            ds.flush_cache().map_err(|e| Error::gdal(&*p, "flushing", e))?;
        }
        Ok(())
    }

    /// Closes every file, reporting the first failure.
    pub fn close(self) -> Result<()> {
        for (ds, p) in [self.before, self.after, self.labels, self.ids, self.clouds] {
            ds.close().map_err(|e| Error::gdal(&p, "closing", e))?;
        }
        Ok(())
    }
}

/// Writes band `b` (0-based) of an image's rows, stored as its product stores them.
fn write_image_rows(
    target: &mut (Dataset, PathBuf),
    product: &Product,
    b: usize,
    r0: usize,
    rows: usize,
    reflectance: &[u16],
) -> Result<()> {
    match product {
        Product::Reflectance => write_rows(target, b + 1, r0, rows, reflectance.to_vec()),
        _ if product.is_byte() => {
            let bytes = reflectance.iter().map(|&v| product.encode(b, v) as u8).collect();
            write_rows(target, b + 1, r0, rows, bytes)
        }
        _ => {
            let dn = reflectance.iter().map(|&v| product.encode(b, v)).collect();
            write_rows(target, b + 1, r0, rows, dn)
        }
    }
}

fn write_rows<T: GdalType + Copy>(
    target: &mut (Dataset, PathBuf),
    band: usize,
    r0: usize,
    rows: usize,
    data: Vec<T>,
) -> Result<()> {
    let (ds, path) = target;
    let width = ds.raster_size().0;
    let mut buf = Buffer::new((width, rows), data);
    let mut b = ds
        .rasterband(band)
        .map_err(|e| Error::gdal(&*path, "opening a band", e))?;
    b.write((0, r0 as isize), (width, rows), &mut buf)
        .map_err(|e| Error::gdal(&*path, "writing rows", e))
}

fn set_meta(ds: &mut Dataset, path: &Path, items: &[(&str, &str)]) -> Result<()> {
    for (k, v) in items {
        ds.set_metadata_item(k, v, "")
            .map_err(|e| Error::gdal(path, "writing metadata", e))?;
    }
    Ok(())
}

/// A tiled, DEFLATE-compressed GeoTIFF on the scene grid. Small scenes (the kind committed to a
/// repository as demo data) get the strongest DEFLATE level; large ones the default level, which
/// is about twice as fast for 2 % bigger files and keeps the single writer thread off the
/// critical path.
fn create_tiff<T: GdalType>(path: &Path, size: usize, bands: usize, pixel_m: f64, extra: &[&str]) -> Result<Dataset> {
    let driver = DriverManager::get_driver_by_name("GTiff").map_err(|e| Error::gdal(path, "GTiff driver", e))?;
    let zlevel = if size <= 1024 { "ZLEVEL=9" } else { "ZLEVEL=6" };
    let mut opts = vec![
        "TILED=YES",
        "BLOCKXSIZE=256",
        "BLOCKYSIZE=256",
        "COMPRESS=DEFLATE",
        "PREDICTOR=2",
        zlevel,
        "BIGTIFF=IF_SAFER",
    ];
    if extra.iter().any(|o| o.starts_with("NBITS=")) {
        // GDAL's horizontal predictor works on whole 8/16/32-bit samples only.
        opts.retain(|o| *o != "PREDICTOR=2");
    }
    opts.extend_from_slice(extra);
    let opts = RasterCreationOptions::from_iter(opts);
    let mut ds = driver
        .create_with_band_type_with_options::<T, _>(path, size, size, bands, &opts)
        .map_err(|e| Error::gdal(path, "creating the raster", e))?;
    ds.set_spatial_ref(&projected_srs()?)
        .map_err(|e| Error::gdal(path, "setting the CRS", e))?;
    ds.set_geo_transform(&[ORIGIN[0], pixel_m, 0.0, ORIGIN[1], 0.0, -pixel_m])
        .map_err(|e| Error::gdal(path, "setting the geotransform", e))?;
    Ok(ds)
}

/// A GDAL polygon from a scene polygon, in map coordinates.
fn polygon(poly: &Poly) -> gdal::errors::Result<Geometry> {
    let mut ring = Geometry::empty(OGRwkbGeometryType::wkbLinearRing)?;
    for &p in poly.pts.iter().chain(poly.pts.first()) {
        ring.add_point_2d(to_map(p));
    }
    let mut g = Geometry::empty(OGRwkbGeometryType::wkbPolygon)?;
    g.add_geometry(ring)?;
    Ok(g)
}

/// The land-use layer `dltb` (BSM, DLBM, DLMC, TBMJ), clipped to the image, in one transaction.
pub fn write_landuse(path: &Path, land: &[LandParcel], image: &Poly) -> Result<usize> {
    let err = |what: &'static str| move |e| Error::gdal(path, what, e);
    gdal::config::set_thread_local_config_option("OGR_CURRENT_DATE", GPKG_DATE)
        .map_err(err("pinning the GeoPackage date"))?;
    let result = (|| -> Result<usize> {
        let driver = DriverManager::get_driver_by_name("GPKG").map_err(err("GPKG driver"))?;
        let mut ds = driver
            .create_vector_only(path)
            .map_err(err("creating the GeoPackage"))?;
        let srs = projected_srs()?;
        let mut txn = ds.start_transaction().map_err(err("starting a transaction"))?;
        let layer = txn
            .create_layer(LayerOptions {
                name: "dltb",
                srs: Some(&srs),
                ty: OGRwkbGeometryType::wkbMultiPolygon,
                options: None,
            })
            .map_err(err("creating layer dltb"))?;
        for (name, ty, width) in [
            ("BSM", OGRFieldType::OFTString, 18),
            ("DLBM", OGRFieldType::OFTString, 5),
            ("DLMC", OGRFieldType::OFTString, 60),
            ("TBMJ", OGRFieldType::OFTReal, 0),
        ] {
            let field = FieldDefn::new(name, ty).map_err(err("defining a field"))?;
            if width > 0 {
                field.set_width(width);
            }
            field.add_to_layer(&layer).map_err(err("adding a field"))?;
        }
        let mut written = 0;
        for parcel in land {
            let clipped = parcel.poly.intersect(image);
            if clipped.area() < 1.0 {
                continue;
            }
            written += 1;
            let mut multi = Geometry::empty(OGRwkbGeometryType::wkbMultiPolygon).map_err(err("building a geometry"))?;
            multi
                .add_geometry(polygon(&clipped).map_err(err("building a geometry"))?)
                .map_err(err("building a geometry"))?;
            let mut f = Feature::new(layer.defn()).map_err(err("creating a feature"))?;
            f.set_field_string(0, &format!("{written:08}"))
                .map_err(err("setting BSM"))?;
            f.set_field_string(1, parcel.dlbm.code()).map_err(err("setting DLBM"))?;
            f.set_field_string(2, parcel.dlbm.name_cn())
                .map_err(err("setting DLMC"))?;
            f.set_field_double(3, (clipped.area() * 100.0).round() / 100.0)
                .map_err(err("setting TBMJ"))?;
            f.set_geometry(multi).map_err(err("setting a geometry"))?;
            f.create(&layer).map_err(err("writing a feature"))?;
        }
        txn.commit().map_err(err("committing"))?;
        ds.close().map_err(err("closing"))?;
        Ok(written)
    })();
    let _ = gdal::config::clear_thread_local_config_option("OGR_CURRENT_DATE");
    result
}

/// The truth polygons as RFC 7946 GeoJSON (EPSG:4326, lon/lat) with their type and areas.
pub fn write_truth_geojson(path: &Path, truth: &[TruthChange]) -> Result<()> {
    let err = |what: &'static str| move |e| Error::gdal(path, what, e);
    let mut wgs84 = SpatialRef::from_epsg(4326).map_err(err("EPSG:4326"))?;
    wgs84.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let to_wgs84 = CoordTransform::new(&projected_srs()?, &wgs84).map_err(err("building the transform"))?;
    let driver = DriverManager::get_driver_by_name("GeoJSON").map_err(err("GeoJSON driver"))?;
    let mut ds = driver.create_vector_only(path).map_err(err("creating the GeoJSON"))?;
    let layer = ds
        .create_layer(LayerOptions {
            name: "truth_changes",
            srs: Some(&wgs84),
            ty: OGRwkbGeometryType::wkbPolygon,
            options: Some(&["RFC7946=YES", "COORDINATE_PRECISION=7", "WRITE_NAME=NO"]),
        })
        .map_err(err("creating the layer"))?;
    let fields = [
        ("id", OGRFieldType::OFTInteger),
        ("type", OGRFieldType::OFTString),
        ("type_code", OGRFieldType::OFTInteger),
        ("type_cn", OGRFieldType::OFTString),
        ("dlbm_before", OGRFieldType::OFTString),
        ("area_m2", OGRFieldType::OFTReal),
        ("area_mu", OGRFieldType::OFTReal),
    ];
    layer.create_defn_fields(&fields).map_err(err("adding fields"))?;
    for (i, t) in truth.iter().enumerate() {
        let area = t.poly.area();
        let geom = polygon(&t.poly)
            .and_then(|g| g.transform(&to_wgs84))
            .map_err(err("reprojecting a polygon"))?;
        let mut f = Feature::new(layer.defn()).map_err(err("creating a feature"))?;
        f.set_field_integer(0, i as i32 + 1).map_err(err("setting id"))?;
        f.set_field_string(1, t.kind.name()).map_err(err("setting type"))?;
        f.set_field_integer(2, t.kind.code() as i32)
            .map_err(err("setting type_code"))?;
        f.set_field_string(3, t.kind.name_cn())
            .map_err(err("setting type_cn"))?;
        f.set_field_string(4, t.dlbm_before.code())
            .map_err(err("setting dlbm_before"))?;
        f.set_field_double(5, (area * 10.0).round() / 10.0)
            .map_err(err("setting area_m2"))?;
        f.set_field_double(6, (area / 666.667 * 1000.0).round() / 1000.0)
            .map_err(err("setting area_mu"))?;
        f.set_geometry(geom).map_err(err("setting a geometry"))?;
        f.create(&layer).map_err(err("writing a feature"))?;
    }
    ds.close().map_err(err("closing"))
}

/// Writes a small text file (meta.json) to its temporary path.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, "writing", e))
}
