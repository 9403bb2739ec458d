//! Checks that the browser libraries the review page embeds (Leaflet, from the npm registry,
//! pinned in web-vendor/package-lock.json) are installed, and says how to install them.

use std::path::Path;

/// Files `src/web/map.rs` embeds with `include_str!`/`include_bytes!`.
const VENDORED: [&str; 5] = [
    "web-vendor/node_modules/leaflet/dist/leaflet.js",
    "web-vendor/node_modules/leaflet/dist/leaflet.css",
    "web-vendor/node_modules/leaflet/dist/images/layers.png",
    "web-vendor/node_modules/leaflet/dist/images/layers-2x.png",
    "web-vendor/node_modules/leaflet/LICENSE",
];

fn main() {
    println!("cargo:rerun-if-changed=web-vendor/package-lock.json");
    let missing: Vec<&str> = VENDORED.iter().copied().filter(|f| !Path::new(f).is_file()).collect();
    for f in VENDORED {
        println!("cargo:rerun-if-changed={f}");
    }
    if !missing.is_empty() {
        eprintln!(
            "\nlandwatch-review embeds Leaflet (the review page's map), installed from the npm registry.\n\
             Missing: crates/review/{}\n\
             Install it with scripts/setup-debian (it runs `npm ci` in crates/review/web-vendor), or by hand:\n\
             \x20   npm ci --prefix crates/review/web-vendor --ignore-scripts\n",
            missing.join(", crates/review/")
        );
        std::process::exit(1);
    }
}
