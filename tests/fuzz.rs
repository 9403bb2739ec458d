//! A bounded fuzz of everything landwatch reads from people: pipeline files, model files,
//! land-use layers and the review API's request bodies. Each case is a valid input with one or
//! more values replaced by hostile ones (NaN, ±inf, huge, negative, empty, control characters,
//! wrong types, missing or unknown keys) or plain random bytes. The only property checked is
//! the one that matters at a boundary: a clear error or a result, never a panic (nor a 500 or
//! a dropped connection from the server).
//!
//! `LANDWATCH_FUZZ_CASES` sets the number of cases per target (default 1000, well under a minute in
//! all on 2 cores); failures print the smallest input that still fails.

mod review_support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn cases() -> u32 {
    std::env::var("LANDWATCH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `f`, turning a panic into a failed case that names the input.
fn no_panic<T>(what: &str, input: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        TestCaseError::fail(format!("{what} panicked ({msg}) on:\n{input}"))
    })
}

// ---- values a hostile or careless operator writes ----

fn hostile_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(1e300),
        Just(-1e300),
        Just(0.0),
        Just(-0.0),
        Just(-1.0),
        Just(1e-300),
        Just(4e9),
        any::<f64>(),
        -10.0f64..10.0,
    ]
}

fn hostile_int() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(-1),
        Just(1),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(4_000_000_000),
        Just(u32::MAX as i64 + 1),
        any::<i64>(),
        -5i64..100,
    ]
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("/".to_string()),
        Just("..".to_string()),
        Just("../../../../etc/passwd".to_string()),
        Just("file:///etc/passwd".to_string()),
        Just("http://".to_string()),
        Just("example.com/tiles".to_string()),
        Just("2024-02-30".to_string()),
        Just("9999-99-99".to_string()),
        Just("B,G,R,NIR,NIR".to_string()),
        Just("0101".to_string()),
        Just("\u{0}\u{202e}x".to_string()),
        "\\PC{0,12}",
        any::<String>(),
    ]
}

fn hostile_toml() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        hostile_float().prop_map(toml::Value::Float),
        hostile_int().prop_map(toml::Value::Integer),
        hostile_string().prop_map(toml::Value::String),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(toml::Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

/// One change to a TOML document: replace or remove the value at a key path, or add a key.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, toml::Value),
    Remove(usize),
    Add(usize, String, toml::Value),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        4 => (any::<usize>(), hostile_toml()).prop_map(|(i, v)| Edit::Replace(i, v)),
        1 => any::<usize>().prop_map(Edit::Remove),
        1 => (any::<usize>(), "[a-z_]{1,10}", hostile_toml()).prop_map(|(i, k, v)| Edit::Add(i, k, v)),
    ];
    prop::collection::vec(edit, 1..4)
}

/// Every key path of a TOML table, tables and arrays of tables included.
fn key_paths(table: &toml::Table, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for (k, v) in table {
        let mut path = prefix.to_vec();
        path.push(k.clone());
        out.push(path.clone());
        if let toml::Value::Table(t) = v {
            key_paths(t, &path, out);
        }
    }
}

fn table_at<'a>(root: &'a mut toml::Table, path: &[String]) -> Option<&'a mut toml::Table> {
    path.iter().try_fold(root, |t, k| t.get_mut(k)?.as_table_mut())
}

fn apply(doc: &mut toml::Table, edit: &Edit) {
    let mut paths = Vec::new();
    key_paths(doc, &[], &mut paths);
    if paths.is_empty() {
        return;
    }
    let pick = |i: &usize| paths[i % paths.len()].clone();
    match edit {
        Edit::Replace(i, v) => {
            let p = pick(i);
            if let Some(t) = table_at(doc, &p[..p.len() - 1]) {
                t.insert(p[p.len() - 1].clone(), v.clone());
            }
        }
        Edit::Remove(i) => {
            let p = pick(i);
            if let Some(t) = table_at(doc, &p[..p.len() - 1]) {
                t.remove(&p[p.len() - 1]);
            }
        }
        Edit::Add(i, k, v) => {
            let p = pick(i);
            let parent = if doc.get(&p[0]).is_some_and(toml::Value::is_table) {
                table_at(doc, &p[..1])
            } else {
                Some(doc)
            };
            if let Some(t) = parent {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Either an edited document or raw bytes (truncated, spliced, random).
#[derive(Debug, Clone)]
enum FileCase {
    Edited(Vec<Edit>),
    Bytes(Vec<u8>),
    Truncated(usize),
    /// Values replaced by hostile ones of the same type (see [`TypedEdit`]).
    Typed(Vec<TypedEdit>),
}

/// One value (leaf) replaced by a hostile one of its own TOML type. The file still parses, so
/// the value gets past the parser to the checks behind it, and, where those let it through,
/// to the code that uses it.
#[derive(Debug, Clone)]
struct TypedEdit {
    leaf: usize,
    float: f64,
    int: i64,
    text: String,
}

fn typed_cases() -> impl Strategy<Value = FileCase> {
    let edit = (any::<usize>(), hostile_float(), hostile_int(), hostile_string())
        .prop_map(|(leaf, float, int, text)| TypedEdit { leaf, float, int, text });
    prop::collection::vec(edit, 1..3).prop_map(FileCase::Typed)
}

/// Every value of a document that is not a table, array elements included.
fn leaves(value: &mut toml::Value) -> Vec<&mut toml::Value> {
    match value {
        toml::Value::Table(t) => t.iter_mut().flat_map(|(_, v)| leaves(v)).collect(),
        toml::Value::Array(a) => a.iter_mut().flat_map(leaves).collect(),
        leaf => vec![leaf],
    }
}

fn apply_typed(doc: &mut toml::Value, edit: &TypedEdit) {
    let mut all = leaves(doc);
    if all.is_empty() {
        return;
    }
    let n = all.len();
    let leaf = &mut *all[edit.leaf % n];
    let hostile = match &*leaf {
        toml::Value::Float(_) => toml::Value::Float(edit.float),
        toml::Value::Integer(_) => toml::Value::Integer(edit.int),
        toml::Value::String(_) => toml::Value::String(edit.text.clone()),
        toml::Value::Boolean(b) => toml::Value::Boolean(!b),
        other => other.clone(),
    };
    *leaf = hostile;
}

fn file_cases() -> impl Strategy<Value = FileCase> {
    prop_oneof![
        8 => edits().prop_map(FileCase::Edited),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(FileCase::Bytes),
        1 => any::<usize>().prop_map(FileCase::Truncated),
    ]
}

fn render(base: &toml::Table, case: &FileCase) -> Vec<u8> {
    let text = toml::to_string(base).expect("base document serialises");
    match case {
        FileCase::Edited(edits) => {
            let mut doc = base.clone();
            for e in edits {
                apply(&mut doc, e);
            }
            toml::to_string(&doc).unwrap_or(text).into_bytes()
        }
        FileCase::Bytes(b) => b.clone(),
        FileCase::Truncated(n) => text.as_bytes()[..n % (text.len() + 1)].to_vec(),
        FileCase::Typed(edits) => {
            let mut doc = toml::Value::Table(base.clone());
            for e in edits {
                apply_typed(&mut doc, e);
            }
            toml::to_string(&doc).unwrap_or(text).into_bytes()
        }
    }
}

/// Fuzzes `load` on files made from `base`; each case is written to `file`.
fn fuzz_file<T>(what: &str, base: toml::Table, file: &Path, load: impl Fn(&Path) -> landwatch_core::Result<T>) {
    fuzz_file_checked(what, base, file, (runner(), file_cases()), load, || Ok(()));
}

/// [`fuzz_file`] with a runner and cases of one's own, and `check` run after each case (e.g.
/// that it wrote nothing).
fn fuzz_file_checked<T>(
    what: &str,
    base: toml::Table,
    file: &Path,
    (mut runner, cases): (TestRunner, impl Strategy<Value = FileCase>),
    load: impl Fn(&Path) -> landwatch_core::Result<T>,
    check: impl Fn() -> Result<(), String>,
) {
    let result = runner.run(&cases, |case| {
        let bytes = render(&base, &case);
        std::fs::write(file, &bytes).expect("write case");
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        let outcome = no_panic(what, &shown, || load(file))?;
        if let Err(e) = outcome {
            let code = e.exit_code();
            prop_assert!(code == 2 || code == 3, "{what}: exit code {code} for: {e}\n{shown}");
            prop_assert!(!e.to_string().trim().is_empty(), "{what}: empty message for\n{shown}");
        }
        if let Err(why) = check() {
            return Err(TestCaseError::fail(format!("{what}: {why} on:\n{shown}")));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Every file and folder under `root` but `skip`: path, size and modification time.
fn snapshot(root: &Path, skip: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if path == skip {
                continue;
            }
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.push((path, meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH)));
        }
    }
    out.sort();
    out
}

/// What `landwatch run --dry-run FILE` does before it would start: load the file, list the
/// source, plan, and check everything a run checks first (the fetch settings included).
fn load_and_dry_run(file: &Path) -> landwatch_core::Result<landwatch_pipeline::RunResult> {
    dry_run(&landwatch_pipeline::config::load(file)?)
}

fn dry_run(p: &landwatch_pipeline::config::Pipeline) -> landwatch_core::Result<landwatch_pipeline::RunResult> {
    let dry = landwatch_pipeline::RunOptions {
        dry_run: true,
        ..Default::default()
    };
    Ok(landwatch_pipeline::run::run(p, &dry, &landwatch_pipeline::EngineDetector)?.result)
}

/// Pipeline files that load are also dry-run: a value the loader lets through must not panic
/// later, when the run uses it (`[fetch] timeout_s = inf` once did), and a dry run writes
/// nothing, not even for a hostile file.
#[test]
fn pipeline_files() {
    let dir = tempfile::tempdir().unwrap();
    let base = full_pipeline(dir.path());
    let base_file = dir.path().join("base.toml");
    std::fs::write(&base_file, toml::to_string(&base).unwrap()).unwrap();
    assert_eq!(
        load_and_dry_run(&base_file).expect("the base pipeline file is valid"),
        landwatch_pipeline::RunResult::DryRun
    );
    let file = dir.path().join("p.toml");
    let before = snapshot(dir.path(), &file);
    let wrote_nothing = || match snapshot(dir.path(), &file) {
        now if now == before => Ok(()),
        now => Err(format!("the dry run wrote {:?}", diff(&before, &now))),
    };
    // Half the cases keep the file's shape (hostile values of the right types), so that many
    // get past the loader to the dry run; enough must, or the dry run goes untested.
    let strategy = prop_oneof![file_cases(), typed_cases()];
    let dry_runs = std::sync::atomic::AtomicU32::new(0);
    let load = |f: &Path| {
        let loaded = landwatch_pipeline::config::load(f)?;
        dry_runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        dry_run(&loaded)
    };
    fuzz_file_checked(
        "pipeline load and dry run",
        base,
        &file,
        (runner(), strategy),
        load,
        wrote_nothing,
    );
    let reached = dry_runs.into_inner();
    assert!(
        reached >= cases() / 20,
        "only {reached} of {} cases got to the dry run",
        cases()
    );
}

/// The demo pipeline with every key written out at a valid value (so that each can be replaced
/// by a hostile one) and absolute paths (so it works from `dir` and writes nothing in the repo).
fn full_pipeline(dir: &Path) -> toml::Table {
    let text = std::fs::read_to_string(repo().join("pipelines/demo.toml")).unwrap();
    let mut base: toml::Table = toml::from_str(&text).unwrap();
    let seeds = repo().join("seeds/demo");
    let every_key = format!(
        r#"
        output = "{out}"
        archive = "{archive}"
        [aoi]
        bbox = [108.2, 22.8, 108.4, 23.0]
        [source]
        path = "{seeds}"
        [bands]
        blue = 1
        green = 2
        red = 3
        nir = 4
        [model]
        path = "{model}"
        [layers]
        landuse = "{landuse}"
        allow_empty_landuse = false
        [detect]
        min_area_m2 = 200.0
        seam_tolerance_m = 8.0
        track_overlap = 0.3
        [fetch]
        concurrency = 2
        retries = 4
        backoff_ms = 500
        timeout_s = 60.0
        "#,
        out = dir.join("out").display(),
        archive = dir.join("archive").display(),
        seeds = seeds.display(),
        model = repo().join("models/rules-v1.toml").display(),
        landuse = seeds.join("landuse.gpkg").display(),
    );
    merge_into(&mut base, toml::from_str(&every_key).unwrap());
    base
}

/// Sets every key of `extra` in `base`, table by table.
fn merge_into(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(t)), toml::Value::Table(v)) => merge_into(t, v),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Entries of `after` that are not in `before`, or changed.
fn diff<T: PartialEq + Clone>(before: &[T], after: &[T]) -> Vec<T> {
    after.iter().filter(|e| !before.contains(e)).cloned().collect()
}

#[test]
fn model_files() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("models/rules-v1.toml")).unwrap();
    let base: toml::Table = toml::from_str(&text).unwrap();
    fuzz_file("model::Model::load", base, &dir.path().join("m.toml"), |p| {
        landwatch_core::model::Model::load(p)
    });
}

// ---- land-use layers ----

#[derive(Debug, Clone)]
enum CodeValue {
    Text(String),
    Int(i64),
    Real(f64),
}

#[derive(Debug, Clone)]
struct LayerCase {
    driver: &'static str,
    epsg: Option<u32>,
    field: (&'static str, u8),
    parcels: Vec<(String, CodeValue)>,
}

fn code_value() -> impl Strategy<Value = CodeValue> {
    prop_oneof![
        prop_oneof![
            Just("0101".to_string()),
            Just("101".to_string()),
            Just("011".to_string()),
            Just("05H1".to_string()),
            Just(" 0103 ".to_string()),
            hostile_string()
        ]
        .prop_map(CodeValue::Text),
        hostile_int().prop_map(CodeValue::Int),
        hostile_float().prop_map(CodeValue::Real),
    ]
}

/// Geometries near the test grid, many of them broken.
fn geometry_wkt() -> impl Strategy<Value = String> {
    let (ox, oy) = (530_000.0, 2_534_000.0);
    let coord = prop_oneof![
        8 => (-100.0f64..1100.0).prop_map(|v| v),
        1 => hostile_float(),
    ];
    prop_oneof![
        6 => (coord.clone(), coord.clone(), coord.clone(), coord).prop_map(move |(a, b, c, d)| {
            let (x0, y0, x1, y1) = (ox + a, oy + b, ox + c, oy + d);
            format!("POLYGON (({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))")
        }),
        // Self-intersecting bow tie.
        1 => Just(format!("POLYGON (({ox} {oy},{} {},{} {oy},{ox} {},{ox} {oy}))", ox + 100.0, oy + 100.0, ox + 100.0, oy + 100.0)),
        1 => Just(format!("POINT ({ox} {oy})")),
        1 => Just(format!("LINESTRING ({ox} {oy},{} {})", ox + 10.0, oy + 10.0)),
        1 => Just("POLYGON EMPTY".to_string()),
    ]
}

fn layer_cases() -> impl Strategy<Value = LayerCase> {
    (
        prop_oneof![Just("GPKG"), Just("ESRI Shapefile"), Just("GeoJSON")],
        prop_oneof![4 => Just(Some(4545u32)), 1 => Just(Some(4326u32)), 1 => Just(None)],
        prop_oneof![
            Just(("DLBM", 0u8)),
            Just(("DLBM", 1u8)),
            Just(("DLBM", 2u8)),
            Just(("dlbm", 0u8)),
            Just(("OTHER", 0u8))
        ],
        prop::collection::vec((geometry_wkt(), code_value()), 0..6),
    )
        .prop_map(|(driver, epsg, field, parcels)| LayerCase {
            driver,
            epsg,
            field,
            parcels,
        })
}

fn write_landuse(path: &Path, case: &LayerCase) -> gdal::errors::Result<()> {
    use gdal::vector::{Feature, FieldDefn, Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType};
    let drv = gdal::DriverManager::get_driver_by_name(case.driver)?;
    let mut ds = drv.create_vector_only(path)?;
    let srs = case.epsg.map(gdal::spatial_ref::SpatialRef::from_epsg).transpose()?;
    let layer = ds.create_layer(LayerOptions {
        name: "dltb",
        srs: srs.as_ref(),
        ty: OGRwkbGeometryType::wkbUnknown,
        options: None,
    })?;
    let ty = [
        OGRFieldType::OFTString,
        OGRFieldType::OFTInteger64,
        OGRFieldType::OFTReal,
    ][case.field.1 as usize];
    FieldDefn::new(case.field.0, ty)?.add_to_layer(&layer)?;
    for (wkt, value) in &case.parcels {
        let mut f = Feature::new(layer.defn())?;
        match value {
            CodeValue::Text(s) => f.set_field_string(0, s)?,
            CodeValue::Int(i) => f.set_field_integer64(0, *i)?,
            CodeValue::Real(r) => f.set_field_double(0, *r)?,
        }
        if let Ok(g) = Geometry::from_wkt(wkt) {
            f.set_geometry(g)?;
        }
        // A value the format cannot store is skipped, as a real file could not hold it either.
        let _ = f.create(&layer);
    }
    Ok(())
}

#[test]
fn land_use_layers() {
    use landwatch_core::patches::overlay::{CountyFields, LayerPaths, Overlay};
    let dir = tempfile::tempdir().unwrap();
    let mut srs = gdal::spatial_ref::SpatialRef::from_epsg(4545).unwrap();
    srs.set_axis_mapping_strategy(gdal::spatial_ref::AxisMappingStrategy::TraditionalGisOrder);
    let wkt = srs.to_wkt().unwrap();
    let bounds = [530_000.0, 2_534_000.0, 531_000.0, 2_535_000.0];
    let counter = std::cell::Cell::new(0usize);
    let result = runner().run(&layer_cases(), |case| {
        counter.set(counter.get() + 1);
        let ext = match case.driver {
            "GPKG" => "gpkg",
            "GeoJSON" => "geojson",
            _ => "shp",
        };
        let path = dir.path().join(format!("lu{}.{ext}", counter.get()));
        if write_landuse(&path, &case).is_err() {
            return Ok(());
        }
        let paths = LayerPaths {
            landuse: Some(path.clone()),
            ..Default::default()
        };
        let shown = format!("{case:?}");
        let loaded = no_panic("Overlay::load", &shown, || {
            Overlay::load(&paths, &CountyFields::default(), &wkt, bounds)
        })?;
        if let Err(e) = loaded {
            prop_assert_eq!(e.exit_code(), 2, "a bad layer is bad input: {} for {}", e, shown);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn land_use_files_of_random_bytes() {
    use landwatch_core::patches::overlay::{CountyFields, LayerPaths, Overlay};
    let dir = tempfile::tempdir().unwrap();
    let seed_layer = std::fs::read(repo().join("seeds/demo/landuse.gpkg")).unwrap();
    let strategy = (
        prop_oneof![Just("gpkg"), Just("geojson"), Just("shp"), Just("kml")],
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            // The demo layer with a few bytes flipped.
            prop::collection::vec((any::<usize>(), any::<u8>()), 1..8).prop_map(move |flips| {
                let mut b = seed_layer.clone();
                for (at, v) in flips {
                    let n = b.len();
                    b[at % n] = v;
                }
                b
            }),
        ],
    );
    let result = runner().run(&strategy, |(ext, bytes)| {
        let path = dir.path().join(format!("junk.{ext}"));
        std::fs::write(&path, &bytes).expect("write");
        let paths = LayerPaths {
            landuse: Some(path),
            ..Default::default()
        };
        let wkt = gdal::spatial_ref::SpatialRef::from_epsg(4545)
            .unwrap()
            .to_wkt()
            .unwrap();
        let bounds = [404_000.0, 2_490_000.0, 406_000.0, 2_492_000.0];
        let shown = format!("{ext}: {} bytes", bytes.len());
        let loaded = no_panic("Overlay::load", &shown, || {
            Overlay::load(&paths, &CountyFields::default(), &wkt, bounds)
        })?;
        if let Err(e) = loaded {
            prop_assert_eq!(e.exit_code(), 2, "a broken layer file is bad input: {} ({})", e, shown);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---- the review API ----

fn hostile_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        hostile_int().prop_map(Value::from),
        hostile_float().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        hostile_string().prop_map(Value::String),
        prop_oneof![
            Just("违法"),
            Just("合法"),
            Just("其他"),
            Just("实地未变化"),
            Just("admin"),
            Just("reviewer")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    let key = prop_oneof![
        Just("verdict".to_string()),
        Just("subtype".to_string()),
        Just("note".to_string()),
        Just("name".to_string()),
        Just("role".to_string()),
        Just("password".to_string()),
        Just("disabled".to_string()),
        "[a-z]{1,6}",
    ];
    leaf.prop_recursive(3, 16, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn review_api_bodies() {
    use review_support::{Client, Fixture};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fx = Fixture::new();
    let (admin, pid) = rt.block_on(async {
        let base = fx.start_server().await;
        let admin = Client::login(&base, "boss").await;
        let pid = review_support::row_id(&admin, "P0001").await;
        (admin, pid)
    });
    let targets = [
        format!("/api/patches/{pid}/verdict"),
        format!("/api/patches/{pid}/reopen"),
        "/api/admin/users".to_string(),
        "/api/admin/users/1/disabled".to_string(),
        "/api/patches/999999/verdict".to_string(),
    ];
    let strategy = (
        0..targets.len(),
        prop_oneof![
            6 => hostile_json().prop_map(|v| v.to_string().into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..64),
        ],
    );
    let result = runner().run(&strategy, |(t, body)| {
        let path = &targets[t];
        let request = admin
            .http
            .post(format!("{}{path}", admin.base))
            .header("Cookie", &admin.cookie)
            .header("Origin", &admin.base)
            .header("X-CSRF-Token", &admin.csrf)
            .header("Content-Type", "application/json")
            .body(body.clone());
        let shown = format!("POST {path} {}", String::from_utf8_lossy(&body));
        let answer = rt
            .block_on(request.send())
            .map_err(|e| TestCaseError::fail(format!("no answer ({e}) to {shown}")))?;
        prop_assert!(answer.status().as_u16() < 500, "{} for {}", answer.status(), shown);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Still serving after all that.
    let me = rt.block_on(admin.get("/api/me"));
    assert!(me.status().is_success(), "{}", me.status());
}
