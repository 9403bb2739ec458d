//! Pipeline files: the shipped examples are valid, and bad files get errors that name the file,
//! the key and the line (exit 2).

use std::path::Path;

use landwatch_pipeline::config;

#[test]
fn shipped_demo_pipeline_loads() {
    let p = config::load(Path::new("pipelines/demo.toml")).unwrap();
    assert!(p.output.ends_with("out/demo"));
    assert!(p.layers.landuse.as_ref().unwrap().is_file());
}

/// The production examples point at /srv paths that do not exist here: loading must get past
/// every key and type check and stop only at the first missing path, named with its line.
#[test]
fn shipped_production_examples_are_valid_up_to_their_paths() {
    for (file, key) in [
        ("pipelines/nightly-example.toml", "layers.landuse"),
        ("pipelines/archive-rerun.toml", "source.path"),
    ] {
        let e = config::load(Path::new(file)).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.exit_code(), 2);
        assert!(msg.starts_with(file), "{msg}");
        assert!(
            msg.contains(key) && msg.contains("line ") && msg.contains("does not exist"),
            "{msg}"
        );
    }
}

fn bad(text: &str) -> String {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("bad.toml");
    std::fs::write(&f, text).unwrap();
    let e = config::load(&f).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    e.to_string()
}

const HEAD: &str = "name = \"x\"\noutput = \"out\"\n[source]\nkind = \"local\"\npath = \".\"\n";

#[test]
fn unknown_key_wrong_type_and_missing_path_are_named_with_their_line() {
    let e = bad(&format!("{HEAD}[detect]\nmin_area = 5\n"));
    assert!(
        e.contains("bad.toml") && e.contains("detect.min_area") && e.contains("line 7"),
        "{e}"
    );
    let e = bad(&format!("{HEAD}[detect]\nmin_area_m2 = \"big\"\n"));
    assert!(e.contains("detect.min_area_m2") && e.contains("line 7"), "{e}");
    let e = bad(&format!("{HEAD}[model]\npath = \"missing.toml\"\n"));
    assert!(
        e.contains("model.path") && e.contains("line 7") && e.contains("missing.toml"),
        "{e}"
    );
    let e = bad("name = \"x\"\noutput = \"out\"\n[source]\nkind = \"ftp\"\n");
    assert!(e.contains("source.kind") && e.contains("line 4"), "{e}");
    let e = bad("name = \"x\"\n[source]\nkind = \"local\"\npath = \".\"\n");
    assert!(e.contains("output"), "{e}");
    let e = bad(&format!("{HEAD}[baseline]\ndate = \"2024-13-01\"\n"));
    assert!(e.contains("baseline.date") && e.contains("line 7"), "{e}");
}

/// Every number of the file is range-checked: NaN, infinities, negatives and absurd values are
/// exit 2 naming the key and the line, never a panic later (`timeout_s = inf` used to panic).
#[test]
fn numbers_out_of_range_are_refused_with_key_and_line() {
    let cases = [
        ("[fetch]\ntimeout_s = inf\n", "fetch.timeout_s"),
        ("[fetch]\ntimeout_s = 1e300\n", "fetch.timeout_s"),
        ("[fetch]\ntimeout_s = nan\n", "fetch.timeout_s"),
        ("[fetch]\ntimeout_s = -1.0\n", "fetch.timeout_s"),
        ("[fetch]\nbackoff_ms = 86400000000\n", "fetch.backoff_ms"),
        ("[fetch]\nretries = 4000000\n", "fetch.retries"),
        ("[fetch]\nretries = -1\n", "fetch.retries"),
        ("[fetch]\nconcurrency = 100000\n", "fetch.concurrency"),
        ("[detect]\nmin_area_m2 = inf\n", "detect.min_area_m2"),
        ("[detect]\nmin_area_m2 = -5.0\n", "detect.min_area_m2"),
        ("[detect]\nseam_tolerance_m = 1e300\n", "detect.seam_tolerance_m"),
        ("[detect]\ntrack_overlap = nan\n", "detect.track_overlap"),
        ("[aoi]\nbbox = [100.0, 20.0, inf, 30.0]\n", "aoi.bbox"),
        ("[aoi]\nbbox = [100.0, 20.0, 110.0, 1e300]\n", "aoi.bbox"),
        ("[bands]\nblue = 1\ngreen = 2\nred = 3\nnir = 4000000000\n", "bands.nir"),
    ];
    for (table, key) in cases {
        let e = bad(&format!("{HEAD}{table}"));
        assert!(e.contains(key) && e.contains("line "), "{table}: {e}");
    }
    // The message says what is allowed.
    let e = bad(&format!("{HEAD}[fetch]\nbackoff_ms = 86400000000\n"));
    assert!(e.contains("60000"), "{e}");
}

#[test]
fn output_that_is_a_file_is_refused() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("out"), b"not a folder").unwrap();
    let f = d.path().join("p.toml");
    std::fs::write(&f, HEAD).unwrap();
    let e = config::load(&f).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let msg = e.to_string();
    assert!(
        msg.contains("output") && msg.contains("line 2") && msg.contains("not a folder"),
        "{msg}"
    );
}

#[test]
fn index_urls_must_be_absolute_http() {
    for url in [
        "file:///srv/index.json",
        "imagery.example.gov.cn/index.json",
        "ftp://x/index.json",
    ] {
        let e = bad(&format!(
            "name = \"x\"\noutput = \"out\"\n[source]\nkind = \"http_index\"\nurl = \"{url}\"\n"
        ));
        assert!(e.contains("source.url") && e.contains("line 5"), "{url}: {e}");
    }
    let e = bad("name = \"x\"\noutput = \"out\"\n[source]\nkind = \"stac\"\nurl = \"stac.example/api\"\n");
    assert!(e.contains("source.url"), "{e}");
}

#[test]
fn model_path_must_be_a_model_file() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("models")).unwrap();
    std::fs::write(d.path().join("latin1.toml"), b"name = \"r\xe8gles\"\n").unwrap();
    for (path, why) in [("models", "folder"), ("latin1.toml", "UTF-8")] {
        let f = d.path().join("p.toml");
        std::fs::write(&f, format!("{HEAD}[model]\npath = \"{path}\"\n")).unwrap();
        let e = config::load(&f).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("model.path") && msg.contains("line 7") && msg.contains(why),
            "{msg}"
        );
    }
}

#[test]
fn layer_that_is_not_a_vector_is_refused() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("landuse.gpkg"), b"this is not a GeoPackage").unwrap();
    let f = d.path().join("p.toml");
    std::fs::write(&f, format!("{HEAD}[layers]\nlanduse = \"landuse.gpkg\"\n")).unwrap();
    let e = config::load(&f).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("layers.landuse") && msg.contains("line 7") && msg.contains("vector"),
        "{msg}"
    );
}

#[test]
fn a_tile_listed_twice_is_refused() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.tif"), b"x").unwrap();
    std::fs::write(d.path().join("b.tif"), b"x").unwrap();
    let f = d.path().join("p.toml");
    let text = "name = \"x\"\noutput = \"out\"\n[source]\nkind = \"local\"\npath = \".\"\ntiles = [\n  \
                { file = \"a.tif\", tile = \"t\", date = \"2024-01-01\" },\n  \
                { file = \"b.tif\", tile = \"t\", date = \"2024-01-01\" },\n]\n";
    std::fs::write(&f, text).unwrap();
    let e = config::load(&f).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("source.tiles") && msg.contains("line 8") && msg.contains("twice"),
        "{msg}"
    );
}
