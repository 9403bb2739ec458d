//! Field check (实地核查): `landwatch review field-export` writes a GeoPackage of patches with
//! their chips; the field app fills `field_results`; `field-import` brings photos, notes and
//! field verdicts back as evidence, shown by the server and kept in the audit trail.

mod review_support;

use std::path::Path;

use clap::Parser;
use gdal::vector::{Feature, Geometry, LayerAccess};
use gdal::{Dataset, DatasetOptions, GdalOpenFlags};
use landwatch_review::{cli_main, ReviewCmd, Store};
use review_support::*;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: ReviewCmd,
}

fn run(args: &[&str]) -> Result<i32, landwatch_core::Error> {
    let cli = Cli::try_parse_from(std::iter::once("landwatch-review").chain(args.iter().copied()))
        .map_err(|e| landwatch_core::Error::Usage(e.to_string()))?;
    cli_main(cli.cmd)
}

fn png_photo() -> Vec<u8> {
    let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 120]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("png");
    out.into_inner()
}

/// Adds one result to the package's field_results, as the field app does.
fn add_result(gpkg: &Path, patch: i64, verdict: &str, note: &str, photo: &[u8]) {
    let ds = Dataset::open_ex(
        gpkg,
        DatasetOptions {
            open_flags: GdalOpenFlags::GDAL_OF_UPDATE | GdalOpenFlags::GDAL_OF_VECTOR,
            ..Default::default()
        },
    )
    .expect("open the package for writing");
    let layer = ds.layer_by_name("field_results").expect("field_results");
    let mut f = Feature::new(layer.defn()).expect("feature");
    let idx = |n: &str| f.field_index(n).expect(n);
    let (ip, iv, inote, iphoto, iname, it) = (
        idx("patch"),
        idx("verdict"),
        idx("note"),
        idx("photo"),
        idx("photo_name"),
        idx("taken_at"),
    );
    f.set_field_integer64(ip, patch).expect("patch");
    f.set_field_string(iv, verdict).expect("verdict");
    f.set_field_string(inote, note).expect("note");
    f.set_field_string(iname, "IMG_0001.png").expect("name");
    f.set_field_string(it, "2026-10-12T09:30:00+08:00").expect("time");
    // SAFETY: valid feature handle; OGR copies the bytes.
    unsafe {
        gdal_sys::OGR_F_SetFieldBinary(f.c_feature(), iphoto as i32, photo.len() as i32, photo.as_ptr().cast());
    }
    f.set_geometry(Geometry::from_wkt("POINT (108.3004 22.8006)").expect("point"))
        .expect("geometry");
    f.create(&layer).expect("write result");
}

fn count(db: &Path, sql: &str) -> i64 {
    Store::open(db)
        .expect("db")
        .conn()
        .query_row(sql, [], |r| r.get(0))
        .expect("count")
}

#[tokio::test(flavor = "multi_thread")]
async fn field_check_round_trip_brings_photos_back_as_evidence() {
    let fx = Fixture::new();
    let (db, data) = (fx.db.to_str().expect("db"), fx.data.to_str().expect("data"));
    let gpkg = fx.tmp.path().join("兴宁区.gpkg");
    let out = gpkg.to_str().expect("out");
    assert_eq!(
        run(&[
            "field-export",
            "--db",
            db,
            "--data",
            data,
            "--county",
            "450102",
            "--out",
            out
        ])
        .expect("export"),
        0
    );

    // The package: this county's two patches, with their chips embedded, and an empty results layer.
    let ds = Dataset::open(&gpkg).expect("package");
    let mut patches = ds.layer_by_name("patches").expect("patches layer");
    assert_eq!(patches.feature_count(), 2);
    let f = patches.features().next().expect("a patch");
    let chip = f.field_index("chip_before").expect("chip field");
    let mut n = 0;
    // SAFETY: valid feature handle; the bytes are only measured.
    let p = unsafe { gdal_sys::OGR_F_GetFieldAsBinary(f.c_feature(), chip as i32, &mut n) };
    assert!(!p.is_null() && n > 100, "chip embedded ({n} bytes)");
    assert_eq!(ds.layer_by_name("field_results").expect("results").feature_count(), 0);
    drop(f);
    drop(ds);

    let store = fx.store();
    let p1: i64 = store
        .conn()
        .query_row("SELECT id FROM patches WHERE patch_id = 'P0001'", [], |r| r.get(0))
        .expect("P0001");
    drop(store);
    let photo = png_photo();
    add_result(&gpkg, p1, "illegal", "新建厂房, 未见审批", &photo);
    assert_eq!(run(&["field-import", "--db", db, out]).expect("import"), 0);
    assert_eq!(count(&fx.db, "SELECT COUNT(*) FROM field_evidence"), 1);
    assert_eq!(
        count(&fx.db, "SELECT COUNT(*) FROM patch_events WHERE kind = 'field_check'"),
        1,
        "kept in the audit trail"
    );

    // The page sees it: the evidence and the photo itself.
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let ev = c.get_json(&format!("/api/patches/{p1}/evidence")).await;
    let item = &ev["items"][0];
    assert_eq!(item["evidence"]["verdict"], "illegal");
    assert_eq!(item["evidence"]["note"], "新建厂房, 未见审批");
    assert!((item["evidence"]["position"][0].as_f64().expect("lon") - 108.3004).abs() < 1e-9);
    let url = item["photo_url"].as_str().expect("photo url");
    let r = c.get(url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.expect("photo").as_ref(), photo.as_slice());
    let detail = c.get_json(&format!("/api/patches/{p1}")).await;
    assert!(detail["events"].to_string().contains("field_check"));
}

#[test]
fn bad_field_packages_are_refused_whole() {
    let fx = Fixture::new();
    let (db, data) = (fx.db.to_str().expect("db"), fx.data.to_str().expect("data"));
    let gpkg = fx.tmp.path().join("pkg.gpkg");
    let out = gpkg.to_str().expect("out");
    run(&["field-export", "--db", db, "--data", data, "--ids", "1,2", "--out", out]).expect("export");

    // One good result and one whose photo is not an image: nothing is imported.
    add_result(&gpkg, 1, "legal", "有审批", &png_photo());
    add_result(&gpkg, 2, "other", "", b"GIF89a not really");
    let e = run(&["field-import", "--db", db, out]).expect_err("a bad photo");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("not a JPEG or PNG"), "{e}");
    assert_eq!(
        count(&fx.db, "SELECT COUNT(*) FROM field_evidence"),
        0,
        "nothing half-imported"
    );
    assert_eq!(
        count(&fx.db, "SELECT COUNT(*) FROM patch_events WHERE kind = 'field_check'"),
        0
    );

    // A package from another database.
    let other = fx.tmp.path().join("other.sqlite");
    drop(Store::open(&other).expect("other db"));
    let e = run(&["field-import", "--db", other.to_str().expect("db"), out]).expect_err("foreign package");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("another review database"), "{e}");

    // An unknown verdict, unknown ids, a file that is no package, a format not offered.
    let g2 = fx.tmp.path().join("pkg2.gpkg");
    let out2 = g2.to_str().expect("out");
    run(&["field-export", "--db", db, "--data", data, "--ids", "1", "--out", out2]).expect("export");
    add_result(&g2, 1, "maybe", "", &png_photo());
    let e = run(&["field-import", "--db", db, out2]).expect_err("unknown verdict");
    assert!(e.to_string().contains("verdict \"maybe\""), "{e}");
    let e = run(&[
        "field-export",
        "--db",
        db,
        "--data",
        data,
        "--ids",
        "1,999",
        "--out",
        out2,
    ])
    .expect_err("id");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("999"), "{e}");
    let junk = fx.tmp.path().join("junk.gpkg");
    std::fs::write(&junk, b"not a geopackage").expect("junk");
    assert_eq!(
        run(&["field-import", "--db", db, junk.to_str().expect("junk")])
            .unwrap_err()
            .exit_code(),
        2
    );
    let kmz = fx.tmp.path().join("pkg.kmz");
    let e = run(&[
        "field-export",
        "--db",
        db,
        "--data",
        data,
        "--county",
        "450102",
        "--out",
        kmz.to_str().expect("kmz"),
    ])
    .expect_err("kmz");
    assert_eq!(e.exit_code(), 2);
    assert_eq!(count(&fx.db, "SELECT COUNT(*) FROM field_evidence"), 0);
}
