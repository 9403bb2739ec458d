//! `landwatch_synth` runs: byte-identical output for the same parameters on any number of
//! threads, different output for another seed, and clean errors (no partial files) on bad input.

use std::collections::BTreeMap;
use std::path::Path;

use gdal::Metadata;
use landwatch_synth::{cli_main, generate, SynthArgs, SynthParams};
use sha2::{Digest, Sha256};

/// SHA-256 of every file in a folder, by name.
fn hashes(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            let bytes = std::fs::read(e.path()).expect("read file");
            (
                e.file_name().to_string_lossy().into_owned(),
                hex::encode(Sha256::digest(bytes)),
            )
        })
        .collect()
}

fn run_on_threads(params: &SynthParams, dir: &Path, threads: usize) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    pool.install(|| generate(params, dir)).expect("generate");
}

const FILES: [&str; 8] = [
    "after.tif",
    "before.tif",
    "clouds.tif",
    "landuse.gpkg",
    "meta.json",
    "truth_changes.geojson",
    "truth_ids.tif",
    "truth_labels.tif",
];

#[test]
fn same_seed_gives_identical_files_on_one_or_three_threads() {
    let (a, b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    // 300 is not a multiple of the 256-row strip, so a partial strip is covered too.
    let params = SynthParams {
        size: 300,
        seed: 5,
        ..SynthParams::default()
    };
    run_on_threads(&params, a.path(), 1);
    run_on_threads(&params, b.path(), 3);
    let (ha, hb) = (hashes(a.path()), hashes(b.path()));
    assert_eq!(
        ha.keys().map(String::as_str).collect::<Vec<_>>(),
        FILES,
        "exactly the outputs, no temporaries"
    );
    assert_eq!(ha, hb);
}

/// `--vary` draws each scene's radiometric product (and sensor, haze, season, roofs) from its
/// seed: reproducible on any number of threads, and each image stored as meta.json says.
#[test]
fn a_varied_scene_is_reproducible_and_stored_as_its_drawn_product() {
    let mut kinds = std::collections::BTreeSet::new();
    // Seeds 1, 4, 5 and 7 draw reflectance, 10-bit DN, 8-bit and 12-bit DN products.
    for seed in [1, 4, 5, 7] {
        let (a, b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let params = SynthParams {
            size: 256,
            seed,
            vary: true,
            ..SynthParams::default()
        };
        run_on_threads(&params, a.path(), 1);
        run_on_threads(&params, b.path(), 3);
        assert_eq!(hashes(a.path()), hashes(b.path()), "seed {seed}");
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(a.path().join("meta.json")).expect("meta")).expect("JSON");
        assert_eq!(meta["params"]["vary"], true);
        for (date, product) in ["before", "after"]
            .iter()
            .zip(meta["variety"]["products"].as_array().expect("products"))
        {
            let ds = gdal::Dataset::open(a.path().join(format!("{date}.tif"))).expect("image");
            let band = ds.rasterband(1).expect("band");
            let nbits = band.metadata_item("NBITS", "IMAGE_STRUCTURE");
            let (_, max) = band
                .compute_raster_min_max(false)
                .map(|m| (m.min, m.max))
                .expect("min/max");
            let kind = product["kind"].as_str().expect("kind");
            match kind {
                "reflectance" => assert!(band.band_type() == gdal::raster::GdalDataType::UInt16 && nbits.is_none()),
                "dn" => {
                    let bits = product["bits"].as_u64().expect("bits");
                    assert_eq!(nbits, Some(bits.to_string()), "seed {seed} {date}");
                    assert!(max <= ((1u64 << bits) - 1) as f64, "seed {seed} {date}: {max}");
                }
                "stretched" => assert_eq!(band.band_type(), gdal::raster::GdalDataType::UInt8),
                other => panic!("unknown product {other}"),
            }
            kinds.insert(format!("{kind}{}", product["bits"]));
        }
    }
    assert_eq!(kinds.len(), 4, "every product kind made: {kinds:?}");
}

#[test]
fn another_seed_gives_another_scene() {
    let (a, b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    generate(
        &SynthParams {
            size: 256,
            seed: 1,
            ..SynthParams::default()
        },
        a.path(),
    )
    .expect("seed 1");
    generate(
        &SynthParams {
            size: 256,
            seed: 2,
            ..SynthParams::default()
        },
        b.path(),
    )
    .expect("seed 2");
    let (ha, hb) = (hashes(a.path()), hashes(b.path()));
    assert_ne!(ha["before.tif"], hb["before.tif"]);
    assert_ne!(ha["landuse.gpkg"], hb["landuse.gpkg"]);
}

#[test]
fn rerunning_into_the_same_folder_replaces_the_outputs() {
    let dir = tempfile::tempdir().expect("tmp");
    let params = SynthParams {
        size: 256,
        seed: 9,
        ..SynthParams::default()
    };
    generate(&params, dir.path()).expect("first run");
    let first = hashes(dir.path());
    generate(&params, dir.path()).expect("second run");
    assert_eq!(first, hashes(dir.path()));
}

#[test]
fn size_zero_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let err = generate(
        &SynthParams {
            size: 0,
            ..SynthParams::default()
        },
        dir.path(),
    )
    .expect_err("size 0 must fail");
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("--size 0"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "nothing written"
    );
}

#[test]
fn bad_pixel_size_and_densities_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    for params in [
        SynthParams {
            pixel_m: 0.0,
            ..SynthParams::default()
        },
        SynthParams {
            pixel_m: f64::NAN,
            ..SynthParams::default()
        },
        SynthParams {
            changes_per_km2: -1.0,
            ..SynthParams::default()
        },
        SynthParams {
            cloud_cover: 0.9,
            ..SynthParams::default()
        },
    ] {
        let err = generate(&params, dir.path()).expect_err("must fail");
        assert_eq!(err.exit_code(), 2, "{err}");
    }
}

#[test]
fn output_under_a_regular_file_is_a_clean_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"x").expect("write");
    let out = file.join("scene");
    let err = generate(
        &SynthParams {
            size: 128,
            ..SynthParams::default()
        },
        &out,
    )
    .expect_err("must fail");
    assert_eq!(err.exit_code(), 3);
    assert!(err.to_string().contains("not-a-folder"), "names the path: {err}");
}

#[test]
fn an_output_name_taken_by_a_folder_fails_before_writing_anything() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(dir.path().join("after.tif")).expect("mkdir");
    let err = generate(
        &SynthParams {
            size: 128,
            ..SynthParams::default()
        },
        dir.path(),
    )
    .expect_err("must fail");
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("after.tif"), "{err}");
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["after.tif"], "no partial or temporary files");
}

#[test]
fn cli_rejects_zero_threads_and_runs_with_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let args = |threads| SynthArgs {
        size: 128,
        seed: 3,
        out: dir.path().to_path_buf(),
        pixel_m: 2.0,
        changes_per_km2: 5.0,
        nontarget_per_km2: 1.0,
        cloud_cover: 0.015,
        vary: false,
        threads,
    };
    assert_eq!(cli_main(args(Some(0))).expect_err("0 threads").exit_code(), 2);
    assert_eq!(cli_main(args(Some(1))).expect("one thread"), 0);
    assert!(dir.path().join("meta.json").is_file());
}
