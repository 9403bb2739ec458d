//! Land-use layers as operators' files really come: here, DLBM stored as integers.

use gdal::spatial_ref::SpatialRef;
use gdal::vector::{Feature, FieldDefn, Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType};
use std::path::Path;

/// Writes a GeoPackage layer `dltb` whose DLBM field holds integers (`0101` → `101`) and that
/// has no DLMC, as a spreadsheet round trip leaves a 三调 layer.
pub fn write_numeric_dlbm(path: &Path, srs: &SpatialRef, parcels: impl IntoIterator<Item = (Geometry, i64)>) {
    let drv = gdal::DriverManager::get_driver_by_name("GPKG").unwrap();
    let mut ds = drv.create_vector_only(path).unwrap();
    let layer = ds
        .create_layer(LayerOptions {
            name: "dltb",
            srs: Some(srs),
            ty: OGRwkbGeometryType::wkbUnknown,
            options: None,
        })
        .unwrap();
    FieldDefn::new("DLBM", OGRFieldType::OFTInteger)
        .unwrap()
        .add_to_layer(&layer)
        .unwrap();
    for (geometry, code) in parcels {
        let mut feat = Feature::new(layer.defn()).unwrap();
        feat.set_field_integer64(0, code).unwrap();
        feat.set_geometry(geometry).unwrap();
        feat.create(&layer).unwrap();
    }
}
