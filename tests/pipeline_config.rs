//! Pipeline files: the shipped examples are valid, and bad files get errors that name the file,
//! the key and the line (exit 2).

use std::path::Path;

use landwatch::pipeline::config;

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
