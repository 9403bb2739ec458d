//! The committed demo pair in `seeds/demo` is what `landwatch synth --size 512 --seed 7` makes
//! today: same pixels, same truth, same land-use layer, same meta.json. Pixels are compared
//! rather than file bytes so another zlib build does not break the check. If the scene recipe
//! changes on purpose, regenerate the demo (see seeds/demo/README.md).

use std::path::Path;

use gdal::vector::LayerAccess;
use gdal::Dataset;
use landwatch_synth::{generate, SynthParams};

fn pixels(path: &Path) -> Vec<Vec<f64>> {
    let ds = Dataset::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (1..=ds.raster_count())
        .map(|b| {
            ds.rasterband(b)
                .expect("band")
                .read_band_as::<f64>()
                .expect("read")
                .data()
                .to_vec()
        })
        .collect()
}

/// (DLBM, DLMC, TBMJ, WKT) of every land-use polygon, in file order.
fn landuse(path: &Path) -> Vec<(String, String, String, String)> {
    let ds = Dataset::open(path).expect("open gpkg");
    let mut layer = ds.layer_by_name("dltb").expect("dltb");
    layer
        .features()
        .map(|f| {
            let s = |n: &str| {
                f.field_as_string(f.field_index(n).expect(n))
                    .expect(n)
                    .unwrap_or_default()
            };
            let wkt = f.geometry().expect("geometry").wkt().expect("wkt");
            (s("DLBM"), s("DLMC"), s("TBMJ"), wkt)
        })
        .collect()
}

#[test]
fn committed_demo_matches_a_fresh_run() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/demo");
    let fresh = tempfile::tempdir().expect("tmp");
    generate(
        &SynthParams {
            size: 512,
            seed: 7,
            ..SynthParams::default()
        },
        fresh.path(),
    )
    .expect("generate");
    for name in [
        "before.tif",
        "after.tif",
        "truth_labels.tif",
        "truth_ids.tif",
        "clouds.tif",
    ] {
        assert!(
            pixels(&demo.join(name)) == pixels(&fresh.path().join(name)),
            "{name} differs from a fresh run"
        );
    }
    assert_eq!(
        landuse(&demo.join("landuse.gpkg")),
        landuse(&fresh.path().join("landuse.gpkg"))
    );
    for name in ["meta.json", "truth_changes.geojson"] {
        let read = |dir: &Path| std::fs::read_to_string(dir.join(name)).expect(name);
        assert_eq!(read(&demo), read(fresh.path()), "{name}");
    }
}

#[test]
fn demo_has_every_change_type_and_stays_small() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/demo");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo.join("meta.json")).expect("meta")).expect("json");
    for t in [
        "building",
        "pond",
        "orchard_forest",
        "greenhouse",
        "hardened",
        "non_target",
    ] {
        assert!(meta["changes"][t].as_u64().unwrap_or(0) >= 1, "demo lacks {t}");
    }
    let total: u64 = std::fs::read_dir(&demo)
        .expect("demo dir")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    assert!(total < 3_000_000, "seeds/demo is {total} bytes");
}
