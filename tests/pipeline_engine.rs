//! The pipeline with the real detection engine on small synthetic tiles: a change that straddles
//! two tiles is published once, and a second run has nothing new.

mod pipeline_common;

use landwatch_pipeline::run::{run, RunOptions, RunResult};
use landwatch_pipeline::{config, EngineDetector};
use pipeline_common::*;

#[test]
fn engine_run_publishes_seam_merged_patches_then_nothing_new() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    standard_scene(&src, ["t0", "t1", "t2", "t3"]);
    let p = config::load(&local_pipeline(d.path(), &src, "")).unwrap();
    let report = run(&p, &RunOptions::default(), &EngineDetector).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let RunResult::Published { dir, .. } = &report.result else {
        panic!("{:?}", report.result)
    };
    let feats = features(&dir.join("patches.geojson"));
    // The engine finds the t0|t1 change on both tiles, a pixel short of the seam on each side;
    // the pipeline joins the two into one polygon. t2's change stays separate.
    assert_eq!(feats.len(), 2, "{feats:#?}");
    assert_eq!(feats[0]["geometry"]["type"], "Polygon");
    let joined = feats[0]["properties"]["area_m2"].as_f64().unwrap();
    let truth = 50.0 * 96.0 * PX * PX;
    assert!(
        (joined - truth).abs() / truth < 0.15,
        "seam patch {joined} m² vs {truth} m²"
    );
    assert!(feats[0]["properties"]["JCBH"].as_str().unwrap().ends_with("0001"));
    let again = run(&p, &RunOptions::default(), &EngineDetector).unwrap();
    assert_eq!(again.result, RunResult::NothingNew);
}

/// A land-use layer of one parcel (旱地) over tile column 0 only, in the tiles' CRS.
fn landuse_over_first_tile(path: &std::path::Path) {
    use gdal::spatial_ref::SpatialRef;
    use gdal::vector::{Feature, FieldDefn, Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType};
    let drv = gdal::DriverManager::get_driver_by_name("GPKG").unwrap();
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
    for f in ["DLBM", "DLMC"] {
        FieldDefn::new(f, OGRFieldType::OFTString)
            .unwrap()
            .add_to_layer(&layer)
            .unwrap();
    }
    let (x1, y0) = (X0 + SIZE as f64 * PX, Y0 - SIZE as f64 * PX);
    let wkt = format!("POLYGON(({X0} {y0},{x1} {y0},{x1} {Y0},{X0} {Y0},{X0} {y0}))");
    let mut parcel = Feature::new(layer.defn()).unwrap();
    parcel.set_field_string(0, "0103").unwrap();
    parcel.set_field_string(1, "旱地").unwrap();
    parcel.set_geometry(Geometry::from_wkt(&wkt).unwrap()).unwrap();
    parcel.create(&layer).unwrap();
}

/// In a province some tiles (sea, a border) have no land-use parcel: the engine refuses such a
/// layer, so by default the pair fails with a message naming the pipeline key that accepts it;
/// with `[layers] allow_empty_landuse = true` every pair is detected.
#[test]
fn a_tile_without_land_use_parcels_fails_unless_the_pipeline_allows_it() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // Tile `a` under the layer, tile `b` three tiles east of it, far from any parcel.
    for (tile, col) in [("a", 0), ("b", 3)] {
        make_tile(&src.join(format!("{tile}_2024-01-10.tif")), col, &[]);
        make_tile(
            &src.join(format!("{tile}_2024-05-10.tif")),
            col,
            &[(100, 150, 100, 150)],
        );
    }
    let layer = d.path().join("landuse.gpkg");
    landuse_over_first_tile(&layer);
    for allow in [false, true] {
        let root = d.path().join(format!("allow-{allow}"));
        std::fs::create_dir_all(&root).unwrap();
        let layers = format!(
            "[layers]\nlanduse = \"{}\"\n{}",
            layer.display(),
            if allow { "allow_empty_landuse = true\n" } else { "" }
        );
        let p = config::load(&local_pipeline(&root, &src, &layers)).unwrap();
        let report = run(&p, &RunOptions::default(), &EngineDetector).unwrap();
        assert!(
            matches!(report.result, RunResult::Published { .. }),
            "{:?}",
            report.result
        );
        if allow {
            assert!(report.failed.is_empty(), "{:?}", report.failed);
            continue;
        }
        assert_eq!(report.exit_code(), 1);
        let failed: Vec<&str> = report.failed.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(failed, ["b@2024-05-10"], "{:?}", report.failed);
        let why = &report.failed[0].1;
        assert!(why.contains("no parcel lies over the image"), "{why}");
        assert!(
            why.contains("allow_empty_landuse = true") && why.contains("[layers]"),
            "names the pipeline key: {why}"
        );
    }
}
