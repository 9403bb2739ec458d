//! Land-use overlay on layers made here with GDAL: areas, classes, reprojection, GBK
//! shapefiles, invalid geometries and the errors for bad layers.

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{Feature, FieldDefn, Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType};
use gdal::DriverManager;
use landwatch_core::patches::overlay::{CountyFields, LayerPaths, Overlay};
use landwatch_core::Error;

mod landuse_support;
use std::path::{Path, PathBuf};

const ORIGIN: (f64, f64) = (530_000.0, 2_535_000.0);

fn srs(epsg: u32) -> SpatialRef {
    let mut s = SpatialRef::from_epsg(epsg).unwrap();
    s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    s
}

fn grid_wkt() -> String {
    srs(4545).to_wkt().unwrap()
}

fn bounds() -> [f64; 4] {
    [ORIGIN.0, ORIGIN.1 - 1000.0, ORIGIN.0 + 1000.0, ORIGIN.1]
}

/// A rectangle in the grid CRS, offsets in metres from the origin (y grows north).
fn rect_wkt(x0: f64, y0: f64, x1: f64, y1: f64) -> String {
    let (ox, oy) = ORIGIN;
    let (a, b, c, d) = (ox + x0, oy - 1000.0 + y0, ox + x1, oy - 1000.0 + y1);
    format!("POLYGON (({a} {b},{c} {b},{c} {d},{a} {d},{a} {b}))")
}

fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> geo::MultiPolygon<f64> {
    let g = Geometry::from_wkt(&rect_wkt(x0, y0, x1, y1)).unwrap().to_geo().unwrap();
    match g {
        geo::Geometry::Polygon(p) => geo::MultiPolygon(vec![p]),
        _ => unreachable!(),
    }
}

/// Writes a polygon layer: `fields` names (all text), one `(wkt, values)` per feature.
/// `epsg` None: no CRS. Polygons given in EPSG:4545 are transformed to `epsg`.
fn write_layer(
    path: &Path,
    driver: &str,
    epsg: Option<u32>,
    fields: &[&str],
    feats: &[(String, Vec<&str>)],
    lco: &[&str],
) {
    let drv = DriverManager::get_driver_by_name(driver).unwrap();
    let mut ds = drv.create_vector_only(path).unwrap();
    let target = epsg.map(srs);
    let layer = ds
        .create_layer(LayerOptions {
            name: "dltb",
            srs: target.as_ref(),
            ty: OGRwkbGeometryType::wkbPolygon,
            options: Some(lco),
        })
        .unwrap();
    for f in fields {
        let fd = FieldDefn::new(f, OGRFieldType::OFTString).unwrap();
        fd.set_width(40);
        fd.add_to_layer(&layer).unwrap();
    }
    let ct = target.as_ref().map(|t| CoordTransform::new(&srs(4545), t).unwrap());
    for (wkt, values) in feats {
        let mut g = Geometry::from_wkt(wkt).unwrap();
        if let Some(ct) = &ct {
            g = g.transform(ct).unwrap();
        }
        let mut feat = Feature::new(layer.defn()).unwrap();
        for (i, v) in values.iter().enumerate() {
            feat.set_field_string(i, v).unwrap();
        }
        feat.set_geometry(g).unwrap();
        feat.create(&layer).unwrap();
    }
}

/// Two parcels side by side: 0103 旱地 west of x=100, 0301 乔木林地 east of it; a village
/// (0702) at x 300..400.
fn landuse_feats() -> Vec<(String, Vec<&'static str>)> {
    vec![
        (rect_wkt(0.0, 0.0, 100.0, 1000.0), vec!["0103", "旱地"]),
        (rect_wkt(100.0, 0.0, 300.0, 1000.0), vec!["0301", "乔木林地"]),
        (rect_wkt(300.0, 0.0, 400.0, 1000.0), vec!["0702", "农村宅基地"]),
    ]
}

fn load(paths: &LayerPaths) -> landwatch_core::Result<Overlay> {
    Overlay::load(paths, &CountyFields::default(), &grid_wkt(), bounds())
}

fn landuse_only(p: PathBuf) -> LayerPaths {
    LayerPaths {
        landuse: Some(p),
        ..Default::default()
    }
}

#[test]
fn dominant_class_cropland_area_and_village() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lu.gpkg");
    write_layer(&p, "GPKG", Some(4545), &["DLBM", "DLMC"], &landuse_feats(), &[]);
    let ov = load(&landuse_only(p)).unwrap();
    // 40 × 10 m patch: 30 m on 旱地, 10 m on forest → 300 m² cropland of 400.
    let shape = rect(70.0, 500.0, 110.0, 510.0);
    let land = ov.land_use(&shape, 400.0, 50.0);
    assert!(land.known);
    assert_eq!((land.dlbm.as_str(), land.dlmc.as_str()), ("0103", "旱地"));
    assert!(
        (land.cropland_area_m2 - 300.0).abs() < 1e-6,
        "{}",
        land.cropland_area_m2
    );
    assert!(!land.near_village, "village is 190 m away");
    // A patch 30 m from the village parcel is near it.
    let near = ov.land_use(&rect(260.0, 500.0, 270.0, 510.0), 100.0, 50.0);
    assert!(near.near_village);
    assert_eq!(near.dlbm, "0301");
    assert_eq!(near.cropland_area_m2, 0.0);
}

#[test]
fn layer_in_another_crs_is_reprojected() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lu_4326.geojson");
    write_layer(&p, "GeoJSON", Some(4326), &["DLBM"], &landuse_feats(), &[]);
    let ov = load(&landuse_only(p)).unwrap();
    let land = ov.land_use(&rect(70.0, 500.0, 110.0, 510.0), 400.0, 0.0);
    assert_eq!(land.dlbm, "0103");
    assert_eq!(
        land.dlmc, "旱地",
        "DLMC from the built-in 三调 table when the layer has none"
    );
    assert!((land.cropland_area_m2 - 300.0).abs() < 1.0, "{}", land.cropland_area_m2);
}

#[test]
fn gbk_shapefile_without_cpg_reads_chinese() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dltb.shp");
    // A name unlike the built-in one, so the test sees the layer's own text.
    let mut feats = landuse_feats();
    feats[0].1[1] = "坡旱地";
    write_layer(
        &p,
        "ESRI Shapefile",
        Some(4545),
        &["DLBM", "DLMC"],
        &feats,
        &["ENCODING=CP936"],
    );
    let dbf = std::fs::read(dir.path().join("dltb.dbf")).unwrap();
    let gbk_hanzi = [0xBA, 0xB5, 0xB5, 0xD8]; // 旱地 in GBK
    assert!(dbf.windows(4).any(|w| w == gbk_hanzi), "the DBF really is GBK");
    let _ = std::fs::remove_file(dir.path().join("dltb.cpg"));
    let ov = load(&landuse_only(p)).unwrap();
    let land = ov.land_use(&rect(70.0, 500.0, 110.0, 510.0), 400.0, 0.0);
    assert_eq!(land.dlmc, "坡旱地");
    let stats = ov.landuse_stats().unwrap();
    assert!(stats.read_as_gbk);
    assert!(stats.non_utf8_values >= 3, "{stats:?}");
}

#[test]
fn invalid_geometries_are_repaired_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bowtie.gpkg");
    let (ox, oy) = (ORIGIN.0, ORIGIN.1 - 1000.0);
    // A self-intersecting bow tie over x 0..100: two triangles meeting at (50, 50).
    let bowtie = format!(
        "POLYGON (({ox} {oy},{} {},{} {oy},{ox} {},{ox} {oy}))",
        ox + 100.0,
        oy + 100.0,
        ox + 100.0,
        oy + 100.0
    );
    write_layer(&p, "GPKG", Some(4545), &["DLBM"], &[(bowtie, vec!["0101"])], &[]);
    let ov = load(&landuse_only(p)).unwrap();
    assert_eq!(ov.landuse_stats().unwrap().repaired, 1);
    // make_valid splits it into two triangles; a small square inside the left one (x 0..50,
    // apex at 50,50) is fully cropland.
    let land = ov.land_use(&rect(5.0, 45.0, 15.0, 55.0), 100.0, 0.0);
    assert!(
        (land.cropland_area_m2 - 100.0).abs() < 1e-6,
        "{}",
        land.cropland_area_m2
    );
}

#[test]
fn layer_without_dlbm_names_file_field_and_fields_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nodlbm.gpkg");
    write_layer(
        &p,
        "GPKG",
        Some(4545),
        &["BSM", "DLMC"],
        &[(rect_wkt(0.0, 0.0, 10.0, 10.0), vec!["1", "旱地"])],
        &[],
    );
    let err = load(&landuse_only(p.clone())).err().expect("must fail");
    let msg = err.to_string();
    assert!(matches!(err, Error::Config { .. }), "{msg}");
    assert_eq!(err.exit_code(), 2);
    assert!(
        msg.contains("nodlbm.gpkg") && msg.contains("DLBM") && msg.contains("BSM, DLMC"),
        "{msg}"
    );
}

#[test]
fn dlbm_field_without_codes_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("names.gpkg");
    write_layer(
        &p,
        "GPKG",
        Some(4545),
        &["DLBM"],
        &[(rect_wkt(0.0, 0.0, 10.0, 10.0), vec!["旱地"])],
        &[],
    );
    let err = load(&landuse_only(p)).err().expect("must fail");
    assert!(
        matches!(err, Error::Config { .. }) && err.to_string().contains("DLBM"),
        "{err}"
    );
}

#[test]
fn missing_and_unreadable_files_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(&landuse_only(dir.path().join("nope.gpkg")))
        .err()
        .expect("must fail");
    assert!(
        matches!(err, Error::Input { .. }) && err.to_string().contains("nope.gpkg"),
        "{err}"
    );
    let junk = dir.path().join("junk.gpkg");
    std::fs::write(&junk, b"not a geopackage").unwrap();
    let err = load(&landuse_only(junk)).err().expect("must fail");
    assert!(matches!(err, Error::Input { .. }), "{err}");
}

#[test]
fn optional_layers_county_approval_farmland_red_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_layer(&d.join("lu.gpkg"), "GPKG", Some(4545), &["DLBM"], &landuse_feats(), &[]);
    let counties = vec![
        (rect_wkt(0.0, 0.0, 80.0, 1000.0), vec!["450102", "兴宁区"]),
        (rect_wkt(80.0, 0.0, 1000.0, 1000.0), vec!["450103", "青秀区"]),
    ];
    write_layer(
        &d.join("xzq.geojson"),
        "GeoJSON",
        Some(4326),
        &["code", "name"],
        &counties,
        &[],
    );
    write_layer(
        &d.join("yjjbnt.gpkg"),
        "GPKG",
        Some(4545),
        &["id"],
        &[(rect_wkt(0.0, 0.0, 80.0, 1000.0), vec!["1"])],
        &[],
    );
    write_layer(
        &d.join("pz.gpkg"),
        "GPKG",
        Some(4545),
        &["id"],
        &[(rect_wkt(100.0, 0.0, 110.0, 1000.0), vec!["1"])],
        &[],
    );
    write_layer(
        &d.join("hx.gpkg"),
        "GPKG",
        Some(4545),
        &["id"],
        &[(rect_wkt(109.0, 0.0, 120.0, 1000.0), vec!["1"])],
        &[],
    );
    let paths = LayerPaths {
        landuse: Some(d.join("lu.gpkg")),
        basic_farmland: Some(d.join("yjjbnt.gpkg")),
        approved: Some(d.join("pz.gpkg")),
        counties: Some(d.join("xzq.geojson")),
        red_line: Some(d.join("hx.gpkg")),
        allow_empty_landuse: false,
    };
    let ov = load(&paths).unwrap();
    // Patch x 70..110: 10 m on farmland (70..80), 10 m approved (100..110), touches red line at 109.
    let land = ov.land_use(&rect(70.0, 500.0, 110.0, 510.0), 400.0, 0.0);
    assert!(
        (land.basic_farmland_area_m2 - 100.0).abs() < 1e-6,
        "{}",
        land.basic_farmland_area_m2
    );
    assert!((land.approved_fraction - 0.25).abs() < 1e-6);
    assert!(land.touches_red_line);
    assert_eq!(
        (land.county_code.as_str(), land.county_name.as_str()),
        ("450103", "青秀区")
    );
    let west = ov.land_use(&rect(10.0, 500.0, 20.0, 510.0), 100.0, 0.0);
    assert!(!west.touches_red_line);
    assert_eq!(west.county_name, "兴宁区");
    // Wrongly named county fields: an error listing the fields.
    let bad = CountyFields::parse("XZQDM,XZQMC").unwrap();
    let err = Overlay::load(&paths, &bad, &grid_wkt(), bounds())
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("code, name"), "{err}");
}

/// A land-use layer whose DLBM field holds integers, in the grid CRS.
fn write_numeric_dlbm(path: &Path, feats: &[(String, i64)]) {
    let parcels = feats
        .iter()
        .map(|(wkt, code)| (Geometry::from_wkt(wkt).unwrap(), *code));
    landuse_support::write_numeric_dlbm(path, &srs(4545), parcels);
}

#[test]
fn dlbm_stored_as_integers_gets_its_leading_zeros_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("numeric.gpkg");
    let feats: Vec<(String, i64)> = landuse_feats()
        .into_iter()
        .map(|(wkt, v)| (wkt, v[0].parse().unwrap()))
        .collect();
    write_numeric_dlbm(&p, &feats);
    let ov = load(&landuse_only(p)).unwrap();
    let land = ov.land_use(&rect(70.0, 500.0, 110.0, 510.0), 400.0, 50.0);
    assert_eq!((land.dlbm.as_str(), land.dlmc.as_str()), ("0103", "旱地"));
    assert!(
        (land.cropland_area_m2 - 300.0).abs() < 1e-6,
        "{}",
        land.cropland_area_m2
    );
    assert!(
        ov.land_use(&rect(310.0, 500.0, 320.0, 510.0), 100.0, 50.0).near_village,
        "0702 read as village"
    );
}

#[test]
fn dlbm_text_that_lost_its_zeros_is_read_as_the_san_diao_code() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lost.gpkg");
    let feats = vec![
        (rect_wkt(0.0, 0.0, 100.0, 1000.0), vec!["103"]),
        (rect_wkt(100.0, 0.0, 300.0, 1000.0), vec!["1006"]),
    ];
    write_layer(&p, "GPKG", Some(4545), &["DLBM"], &feats, &[]);
    let land = load(&landuse_only(p))
        .unwrap()
        .land_use(&rect(10.0, 500.0, 20.0, 510.0), 100.0, 0.0);
    assert_eq!(land.dlbm, "0103");
    assert!(land.cropland_area_m2 > 99.0);
}

#[test]
fn er_diao_codes_stored_as_integers_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("erdiao.gpkg");
    // 二调 011 水田, 021 果园 as integers: no 三调 code whichever way they are padded.
    write_numeric_dlbm(
        &p,
        &[
            (rect_wkt(0.0, 0.0, 100.0, 1000.0), 11),
            (rect_wkt(100.0, 0.0, 300.0, 1000.0), 21),
        ],
    );
    let err = load(&landuse_only(p)).err().expect("must fail");
    assert!(matches!(err, Error::Config { .. }), "{err}");
    assert!(
        err.to_string().contains("DLBM") && err.to_string().contains("erdiao.gpkg"),
        "{err}"
    );
}

#[test]
fn a_layer_without_crs_is_refused_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nocrs.shp");
    write_layer(&p, "ESRI Shapefile", None, &["DLBM"], &landuse_feats(), &[]);
    let err = load(&landuse_only(p)).err().expect("must fail");
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(
        err.to_string().contains("nocrs.shp") && err.to_string().contains("no CRS"),
        "{err}"
    );
}

#[test]
fn a_land_use_layer_with_nothing_over_the_image_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let far = dir.path().join("far.gpkg");
    // 50 km east of the image.
    let elsewhere = vec![(rect_wkt(50_000.0, 0.0, 50_100.0, 1000.0), vec!["0103"])];
    write_layer(&far, "GPKG", Some(4545), &["DLBM"], &elsewhere, &[]);
    let empty = dir.path().join("empty.gpkg");
    write_layer(&empty, "GPKG", Some(4545), &["DLBM"], &[], &[]);
    for p in [far, empty] {
        let err = load(&landuse_only(p.clone())).err().expect("must fail");
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.to_string().contains("no parcel lies over the image"), "{err}");
        let allowed = LayerPaths {
            allow_empty_landuse: true,
            ..landuse_only(p)
        };
        let land = load(&allowed)
            .unwrap()
            .land_use(&rect(0.0, 0.0, 10.0, 10.0), 100.0, 0.0);
        assert_eq!((land.dlbm.as_str(), land.cropland_area_m2), ("", 0.0));
    }
}
