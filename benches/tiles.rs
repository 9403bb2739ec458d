//! Criterion benchmark of the review map's tile rendering: one 256² Web Mercator PNG from an
//! 8192² four-band UInt16 Cloud-Optimised GeoTIFF (EPSG:4545, 2 m pixels, with overviews),
//! rendered (GDAL warp of the tile window + stretch + PNG), without the tile cache. The
//! image is written once into target/bench-data and reused.

#[path = "../tests/map_support/mod.rs"]
mod map_support;

use criterion::{criterion_group, criterion_main, Criterion};
use landwatch_review::tiles::{check_tile, Date, RunImagery, RunInputs};
use map_support::{tile_of, write_image, ORIGIN_LONLAT};
use std::hint::black_box;
use std::path::PathBuf;

const SIDE: usize = 8192;

fn cog() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench data folder");
    let path = dir.join(format!("tiles_{SIDE}_cog.tif"));
    if !path.is_file() {
        write_image(&path, SIDE, Some([108.30, 22.80, 108.31, 22.81]), true);
    }
    path
}

fn tiles(c: &mut Criterion) {
    let image = cog().canonicalize().expect("image path");
    let inputs = RunInputs {
        before: image.clone(),
        after: image,
        rgb: [3, 2, 1],
        after_to_before: [(1.0, 0.0); 3],
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let run = RunImagery::prepare(&inputs, scratch.path()).expect("prepare the run's imagery");
    // Inside the image: at zoom 16 a tile spans about 280 image pixels (full resolution);
    // at zoom 12 about 4500, read from the overviews.
    let centre = (ORIGIN_LONLAT.0 + 0.08, ORIGIN_LONLAT.1 + 0.07);
    for z in [16u32, 12] {
        let (x, y) = tile_of(centre.0, centre.1, z);
        let zoom = check_tile(z, x, y).expect("tile in range");
        c.bench_function(&format!("map tile 256² z{z} from an 8192² COG"), |b| {
            b.iter(|| run.render(Date::After, zoom, black_box(x), black_box(y)).expect("tile"))
        });
    }
}

criterion_group!(benches, tiles);
criterion_main!(benches);
