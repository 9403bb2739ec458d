//! GeoPackage/Shapefile exports read back with GDAL, and a small end-to-end detection run with
//! a land-use layer: categories, chips and exports in the output folder.

use gdal::raster::Buffer;
use gdal::spatial_ref::SpatialRef;
use gdal::vector::{Feature, FieldDefn, Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType};
use gdal::{Dataset, DriverManager};
use landwatch_core::io::raster::Window;
use landwatch_core::pair::{self, DetectRequest};
use landwatch_core::publish::exports::{self, DbfEncoding, ExportCrs, Row};
use landwatch_core::publish::geojson::{self, RunFacts};
use landwatch_core::types::patch::{LandUse, Patch};
use ndarray::Array2;
use std::path::Path;

const X0: f64 = 530_000.0;
const Y0: f64 = 2_535_000.0;

fn square(x: f64, y: f64, side: f64) -> geo::MultiPolygon<f64> {
    geo::MultiPolygon(vec![geo::Polygon::new(
        geo::LineString::from(vec![(x, y), (x + side, y), (x + side, y - side), (x, y - side), (x, y)]),
        vec![],
    )])
}

fn sample_patch() -> Patch {
    Patch {
        id: "P00001".into(),
        shape: square(X0 + 100.0, Y0 - 100.0, 20.0),
        pixel_box: Window::new(50, 50, 10, 10),
        area_m2: 400.0,
        features: [("vi_after".to_string(), 0.1)].into_iter().collect(),
        change_type: "building".into(),
        confidence: 0.8,
        evidence_rel: 1.5,
        change_confidence: 0.7,
        land: LandUse {
            dlbm: "0101".into(),
            dlmc: "水田".into(),
            cropland_area_m2: 350.0,
            county_code: "450103".into(),
            county_name: "青秀区".into(),
            known: true,
            ..Default::default()
        },
        category: "乱占耕地建房".into(),
        chips: Some(("chips/P00001_before.png".into(), "chips/P00001_after.png".into())),
    }
}

fn wkt(epsg: u32) -> String {
    SpatialRef::from_epsg(epsg).unwrap().to_wkt().unwrap()
}

fn export(dir: &Path, grid_epsg: u32, enc: DbfEncoding) {
    let p = sample_patch();
    let facts = RunFacts {
        model: "rules@1.0.0".into(),
        before_date: Some("2024-03-01".into()),
        after_date: Some("2024-09-01".into()),
    };
    let props = geojson::properties(&p, (108.3, 22.9), &facts);
    exports::write_all(
        dir,
        &[Row {
            patch: &p,
            properties: &props,
        }],
        Some(&wkt(grid_epsg)),
        enc,
    )
    .unwrap();
}

fn text(f: &Feature, name: &str) -> String {
    f.field_as_string(f.field_index(name).unwrap())
        .unwrap()
        .unwrap_or_default()
}

fn real(f: &Feature, name: &str) -> f64 {
    f.field_as_double(f.field_index(name).unwrap()).unwrap().unwrap()
}

#[test]
fn gbk_shapefile_and_gpkg_read_back_with_chinese_text_and_areas() {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path(), 4545, DbfEncoding::Gbk);
    let shp_dir = dir.path().join("patches_shp");
    assert_eq!(std::fs::read_to_string(shp_dir.join("patches.cpg")).unwrap(), "936");
    let dbf = std::fs::read(shp_dir.join("patches.dbf")).unwrap();
    assert!(
        dbf.windows(4).any(|w| w == [0xCB, 0xAE, 0xCC, 0xEF]),
        "水田 stored as GBK bytes"
    );
    for path in [shp_dir.join("patches.shp"), dir.path().join("patches.gpkg")] {
        let ds = Dataset::open(&path).unwrap();
        let mut layer = ds.layer(0).unwrap();
        assert_eq!(layer.feature_count(), 1);
        let srs = layer.spatial_ref().unwrap();
        assert_eq!(
            srs.auth_code()
                .ok()
                .or_else(|| if srs.name().unwrap_or_default().contains("108E") {
                    Some(4545)
                } else {
                    None
                }),
            Some(4545),
            "{}",
            path.display()
        );
        let f = layer.features().next().unwrap();
        assert_eq!(text(&f, "DLMC"), "水田", "{}", path.display());
        assert_eq!(text(&f, "XZQMC"), "青秀区");
        assert_eq!(text(&f, "SFYN"), "否");
        assert_eq!(text(&f, "JCBH"), "4501032024090100001");
        assert!((real(&f, "JCMJ") - 400.0).abs() < 1e-9);
        assert!((real(&f, "GDMJ") - 350.0).abs() < 1e-9);
        assert!((real(&f, "JCMJ_MU") - 0.6).abs() < 1e-9);
        let area = geo::Area::unsigned_area(&f.geometry().unwrap().to_geo().unwrap());
        assert!((area - 400.0).abs() < 1e-6, "outline kept in the GK zone: {area}");
    }
    let ds = Dataset::open(dir.path().join("patches.gpkg")).unwrap();
    let mut layer = ds.layer(0).unwrap();
    let f = layer.features().next().unwrap();
    assert_eq!(text(&f, "category"), "乱占耕地建房");
    assert!(text(&f, "features").contains("vi_after"));
}

#[test]
fn utf8_shapefile_and_non_cgcs_grid_goes_to_4490() {
    let dir = tempfile::tempdir().unwrap();
    // UTM 49N is not CGCS2000: exports are reprojected to EPSG:4490 lon/lat.
    let p = sample_patch();
    let mut utm = p.clone();
    utm.shape = square(800_000.0, 2_540_000.0, 20.0);
    let facts = RunFacts {
        model: "m@1".into(),
        before_date: None,
        after_date: None,
    };
    let props = geojson::properties(&utm, (0.0, 0.0), &facts);
    let crs = ExportCrs::for_grid(Some(&wkt(32649))).unwrap();
    assert_eq!(crs.label, "EPSG:4490");
    exports::write_all(
        dir.path(),
        &[Row {
            patch: &utm,
            properties: &props,
        }],
        Some(&wkt(32649)),
        DbfEncoding::Utf8,
    )
    .unwrap();
    let shp = dir.path().join("patches_shp");
    assert_eq!(std::fs::read_to_string(shp.join("patches.cpg")).unwrap(), "UTF-8");
    let ds = Dataset::open(shp.join("patches.shp")).unwrap();
    let mut layer = ds.layer(0).unwrap();
    let f = layer.features().next().unwrap();
    assert_eq!(text(&f, "BHLX"), "乱占耕地建房");
    let g = f.geometry().unwrap().to_geo().unwrap();
    let c = geo::Centroid::centroid(&g).unwrap();
    assert!(
        (105.0..115.0).contains(&c.x()) && (20.0..25.0).contains(&c.y()),
        "lon/lat {c:?}"
    );
}

/// A 4-band 2 m EPSG:4545 field with a 24 × 24 px bright roof on the after date.
fn write_scene(path: &Path, roof: bool) {
    let (w, h) = (256usize, 256usize);
    let drv = DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = drv.create_with_band_type::<u16, _>(path, w, h, 4).unwrap();
    ds.set_spatial_ref(&SpatialRef::from_epsg(4545).unwrap()).unwrap();
    ds.set_geo_transform(&[X0, 2.0, 0.0, Y0, 0.0, -2.0]).unwrap();
    let field = [500.0, 800.0, 600.0, 3500.0];
    let concrete = [3000.0, 3100.0, 3200.0, 3300.0];
    for (b, (&f, &c)) in field.iter().zip(&concrete).enumerate() {
        let arr = Array2::from_shape_fn((h, w), |(y, x)| {
            // Fields of different brightness (32 px blocks) plus pixel noise, both non-periodic,
            // so the pair's calibration (shift, normalisation) has structure to lock onto.
            let field_gain = 0.6 + 0.8 * hash01(x / 32, y / 32, 0);
            let noise = 200.0 * (hash01(x, y, b + 1) - 0.5);
            let inside = roof && (100..124).contains(&x) && (100..124).contains(&y);
            (if inside { c + noise } else { f * field_gain + noise }).max(1.0) as u16
        });
        let mut buf: Buffer<u16> = arr.into();
        ds.rasterband(b + 1).unwrap().write((0, 0), (w, h), &mut buf).unwrap();
    }
}

/// A deterministic pseudo-random number in 0..1 (splitmix64 of the arguments).
fn hash01(x: usize, y: usize, k: usize) -> f64 {
    let mut z = (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (y as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ (k as u64).wrapping_mul(0x1656_67B1_9E37_79F9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

fn write_landuse(path: &Path) {
    let drv = DriverManager::get_driver_by_name("GPKG").unwrap();
    let mut ds = drv.create_vector_only(path).unwrap();
    let srs = SpatialRef::from_epsg(4545).unwrap();
    let layer = ds
        .create_layer(LayerOptions {
            name: "dltb",
            srs: Some(&srs),
            ty: OGRwkbGeometryType::wkbPolygon,
            options: None,
        })
        .unwrap();
    FieldDefn::new("DLBM", OGRFieldType::OFTString)
        .unwrap()
        .add_to_layer(&layer)
        .unwrap();
    let g = Geometry::from_wkt(&format!(
        "POLYGON(({X0} {Y0},{} {Y0},{} {},{X0} {},{X0} {Y0}))",
        X0 + 512.0,
        X0 + 512.0,
        Y0 - 512.0,
        Y0 - 512.0
    ))
    .unwrap();
    let mut f = Feature::new(layer.defn()).unwrap();
    f.set_field_string(0, "0103").unwrap();
    f.set_geometry(g).unwrap();
    f.create(&layer).unwrap();
}

fn features(out: &Path) -> Vec<serde_json::Value> {
    let fc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("patches.geojson")).unwrap()).unwrap();
    fc["features"].as_array().unwrap().clone()
}

#[test]
fn detect_with_landuse_writes_categories_chips_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_scene(&d.join("before.tif"), false);
    write_scene(&d.join("after.tif"), true);
    write_landuse(&d.join("lu.gpkg"));
    if let Ok(keep) = std::env::var("ENFORCE_KEEP") {
        for n in ["before.tif", "after.tif", "lu.gpkg"] {
            std::fs::copy(d.join(n), Path::new(&keep).join(n)).unwrap();
        }
    }
    let mut req = DetectRequest::new(d.join("before.tif"), d.join("after.tif"), d.join("out"));
    req.landuse = Some(d.join("lu.gpkg"));
    pair::run(&req).unwrap();
    let out = d.join("out");
    let feats = features(&out);
    assert!(!feats.is_empty(), "the roof is detected");
    for f in &feats {
        let p = &f["properties"];
        assert_eq!(p["DLBM"], "0103");
        assert_eq!(p["DLMC"], "旱地");
        assert!(
            ["非农化", "非粮化", "大棚房", "乱占耕地建房", "其他"].contains(&p["category"].as_str().unwrap()),
            "{p}"
        );
        for k in ["chip_before", "chip_after"] {
            let rel = p[k].as_str().unwrap();
            let img = image::open(out.join(rel)).unwrap();
            assert!(img.width() >= 256 && img.width() <= 512, "{rel}: {}", img.width());
        }
    }
    let roof = &feats[0]["properties"];
    assert!(
        (roof["GDMJ"].as_f64().unwrap() - roof["JCMJ"].as_f64().unwrap()).abs() < 1.0,
        "all on cropland: {roof}"
    );
    // The before and after chips differ (the roof shows).
    let rel = |k: &str| out.join(roof[k].as_str().unwrap());
    assert_ne!(
        image::open(rel("chip_before")).unwrap().to_rgb8().into_raw(),
        image::open(rel("chip_after")).unwrap().to_rgb8().into_raw()
    );
    assert_eq!(
        Dataset::open(out.join("patches.gpkg"))
            .unwrap()
            .layer(0)
            .unwrap()
            .feature_count() as usize,
        feats.len()
    );
    assert_eq!(
        Dataset::open(out.join("patches_shp/patches.shp"))
            .unwrap()
            .layer(0)
            .unwrap()
            .feature_count() as usize,
        feats.len()
    );
}

#[test]
fn detect_without_landuse_keeps_patches_as_unknown_land() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_scene(&d.join("before.tif"), false);
    write_scene(&d.join("after.tif"), true);
    let mut req = DetectRequest::new(d.join("before.tif"), d.join("after.tif"), d.join("out"));
    req.no_chips = true;
    pair::run(&req).unwrap();
    let feats = features(&d.join("out"));
    assert!(!feats.is_empty());
    for f in &feats {
        assert_eq!(f["properties"]["category"], "未知地类");
        assert_eq!(f["properties"]["chip_before"], "");
    }
    assert!(!d.join("out/chips").exists() || std::fs::read_dir(d.join("out/chips")).unwrap().next().is_none());
}
