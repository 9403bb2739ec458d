//! The workspace's layout rules that the compiler does not check by itself.

use std::collections::{BTreeMap, BTreeSet};

/// Server, network and database crates: the review and pipeline crates use them; a library user
/// who only detects change on a pair must not have to build them.
const NOT_IN_CORE: [&str; 8] = [
    "axum",
    "hyper",
    "hyper-util",
    "tokio",
    "reqwest",
    "rusqlite",
    "argon2",
    "tower-http",
];

/// Package name → names of its dependencies, from Cargo.lock (every dependency kind, every
/// feature: a superset of what a build of the package pulls in).
fn lock_graph() -> BTreeMap<String, Vec<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock");
    let text = std::fs::read_to_string(path).expect("Cargo.lock is readable");
    let lock: toml::Table = toml::from_str(&text).expect("Cargo.lock is TOML");
    let packages = lock["package"].as_array().expect("Cargo.lock lists packages");
    packages
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("a package has a name").to_string();
            let deps = p
                .get("dependencies")
                .and_then(|d| d.as_array())
                .map(|d| {
                    // Entries are "name" or "name version" when two versions are locked.
                    let first_word =
                        |v: &toml::Value| v.as_str().unwrap_or("").split(' ').next().unwrap_or("").to_string();
                    d.iter().map(first_word).collect()
                })
                .unwrap_or_default();
            (name, deps)
        })
        .collect()
}

fn closure(graph: &BTreeMap<String, Vec<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_string()];
    while let Some(name) = todo.pop() {
        if seen.insert(name.clone()) {
            todo.extend(graph.get(&name).into_iter().flatten().cloned());
        }
    }
    seen
}

#[test]
fn the_core_crate_pulls_in_no_server_network_or_database_code() {
    let deps = closure(&lock_graph(), "landwatch-core");
    // The walk must reach the core's real dependencies, or the check below proves nothing.
    assert!(deps.contains("gdal") && deps.contains("ndarray"), "{deps:?}");
    let found: Vec<&str> = NOT_IN_CORE.into_iter().filter(|n| deps.contains(*n)).collect();
    assert!(
        found.is_empty(),
        "landwatch-core depends (maybe through another crate) on {found:?}"
    );
}

#[test]
fn the_review_crate_is_where_the_server_and_database_are() {
    // The same walk finds them where they belong: the check above is not vacuous.
    let deps = closure(&lock_graph(), "landwatch-review");
    for name in ["axum", "tokio", "rusqlite", "argon2"] {
        assert!(deps.contains(name), "{name} not found under landwatch-review");
    }
}
