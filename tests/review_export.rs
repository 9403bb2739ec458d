//! GeoPackage and Shapefile export with the reviewer fields, read back through GDAL.

mod review_support;

use gdal::vector::LayerAccess;
use gdal::Dataset;
use landwatch_review::export::{export, ExportFormat};
use landwatch_review::users::user_by_name;
use landwatch_review::verdicts::{record, Status, VerdictInput};
use review_support::*;

/// (id, PDJG, NYQK, BZ) of every feature of the first layer, sorted by id.
fn read_back(path: &std::path::Path, id_field: &str) -> Vec<(String, String, String, String)> {
    let ds = Dataset::open(path).expect("open export");
    let mut layer = ds.layer(0).expect("layer");
    let text = |f: &gdal::vector::Feature, name: &str| {
        let idx = f.field_index(name).expect("field");
        f.field_as_string(idx).expect("read").unwrap_or_default()
    };
    let mut out: Vec<_> = layer
        .features()
        .map(|f| {
            let g = f.geometry().expect("geometry");
            assert!(g.geometry_name().contains("POLYGON"), "{}", g.geometry_name());
            (text(&f, id_field), text(&f, "PDJG"), text(&f, "NYQK"), text(&f, "BZ"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn gpkg_and_shapefile_carry_the_verdicts() {
    let fx = Fixture::new();
    let mut store = fx.store();
    let rev = user_by_name(&store, "rev").unwrap().unwrap();
    let ids: Vec<i64> = {
        let mut stmt = store
            .conn()
            .prepare("SELECT id FROM patches ORDER BY patch_id")
            .unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    };
    let legal = VerdictInput {
        status: Status::Legal,
        subtype: "农转用".into(),
        note: "批文 2026-12".into(),
    };
    record(&mut store, ids[0], &rev, &legal).unwrap();
    let other = VerdictInput {
        status: Status::Other,
        subtype: "实地未变化".into(),
        note: String::new(),
    };
    record(&mut store, ids[1], &rev, &other).unwrap();

    let expected = vec![
        (
            "P0001".to_string(),
            "合法".to_string(),
            "农转用".to_string(),
            "批文 2026-12".to_string(),
        ),
        ("P0002".into(), "其他".into(), "实地未变化".into(), "".into()),
        ("P0003".into(), "".into(), "".into(), "".into()),
    ];
    let gpkg = fx.tmp.path().join("verdicts.gpkg");
    assert_eq!(export(&store, ExportFormat::Gpkg, &gpkg).unwrap(), 3);
    assert_eq!(read_back(&gpkg, "id"), expected);
    // Exporting again replaces the file.
    assert_eq!(export(&store, ExportFormat::Gpkg, &gpkg).unwrap(), 3);
    assert_eq!(read_back(&gpkg, "id"), expected);

    let shp = fx.tmp.path().join("verdicts.shp");
    assert_eq!(export(&store, ExportFormat::Shp, &shp).unwrap(), 3);
    for ext in ["shx", "dbf", "prj"] {
        assert!(shp.with_extension(ext).is_file(), "{ext} written");
    }
    assert_eq!(read_back(&shp, "id"), expected);
    // No temporary folders are left behind.
    let leftovers = std::fs::read_dir(fx.tmp.path()).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".lw-export")
    });
    assert_eq!(leftovers.count(), 0);
}
