//! Criterion benchmarks of the hot per-block kernels on a 512 × 512 block (the default block
//! size), four bands. Whole-run throughput is measured separately (see README "Measured").

use criterion::{criterion_group, criterion_main, Criterion};
use landwatch_core::align::shift;
use landwatch_core::detect::{evidence, indices, morphology, threshold};
use ndarray::{Array2, Array3};
use std::hint::black_box;

const N: usize = 512;

fn block(seed: u64) -> Array3<f32> {
    let mut s = seed;
    Array3::from_shape_fn((4, N, N), |_| {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32 * 0.4
    })
}

fn kernels(c: &mut Criterion) {
    let (a, b) = (block(1), block(2));
    let valid = Array2::from_elem((N, N), true);
    let (ia, ib) = (indices::DateIndices::of(&a), indices::DateIndices::of(&b));
    c.bench_function("indices + evidence planes 512x512x4", |bch| {
        bch.iter(|| {
            let ix = indices::DateIndices::of(black_box(&a));
            let vtex = indices::local_std3(&ix.vi);
            indices::evidence_planes(black_box(&a), &ix, &vtex, 0.1, 1.0)
        })
    });
    let (sa, sb) = (
        indices::evidence_planes(&a, &ia, &indices::local_std3(&ia.vi), 0.1, 0.0),
        indices::evidence_planes(&b, &ib, &indices::local_std3(&ib.vi), 0.1, 0.0),
    );
    let (sa, sb): (Vec<&[f32]>, Vec<&[f32]>) = (sa.iter().map(|p| &**p).collect(), sb.iter().map(|p| &**p).collect());
    c.bench_function("neighbourhood_distance r=1 512x512x6", |bch| {
        bch.iter(|| evidence::distance_of_planes(black_box(&sa), black_box(&sb), &valid, 1))
    });
    c.bench_function("crown texture r=2 512x512", |bch| {
        bch.iter(|| landwatch_core::detect::texture::crown_texture(black_box(&ia.vi), 2))
    });
    c.bench_function("local_std3 512x512", |bch| {
        bch.iter(|| indices::local_std3(black_box(&ia.vi)))
    });
    c.bench_function("date layers 512x512x4", |bch| {
        bch.iter(|| indices::DateLayers::of(black_box(&a), true))
    });
    let model = landwatch_core::model::Model::load_or_builtin(None).expect("built-in model");
    let layers = landwatch_core::detect::gate::BlockLayers::new(&a, &b);
    c.bench_function("block layers 512x512x4", |bch| {
        bch.iter(|| landwatch_core::detect::gate::BlockLayers::new(black_box(&a), black_box(&b)))
    });
    c.bench_function("change-of-use gate 512x512", |bch| {
        bch.iter(|| landwatch_core::detect::gate::change_of_use(black_box(&b), &layers, &model.detect.gate))
    });
    // A block window with its halo cut from two row bands, as the strip reader holds them.
    let band = |y: isize, h: usize| {
        let win = landwatch_core::io::raster::Window::new(0, y, 2048, h);
        let samples = ndarray::Array3::from_shape_fn((4, h, 2048), |(k, r, c)| ((k * 7 + r * 13 + c) % 4096) as u16);
        landwatch_core::io::raster::HeldPixels::from_u16(win, samples, Array2::from_elem((h, 2048), true), 1e-4)
    };
    let (upper, lower) = (band(0, 540), band(540, 540));
    let win = landwatch_core::io::raster::Window::new(500, 526, 540, 540);
    c.bench_function("cut 540x540x4 from two row bands", |bch| {
        bch.iter(|| landwatch_core::io::raster::HeldPixels::cut(black_box(&[&upper, &lower]), win))
    });
    let mask = a.index_axis(ndarray::Axis(0), 0).mapv(|v| v > 0.2);
    c.bench_function("open+close r=1 512x512", |bch| {
        bch.iter(|| morphology::close(&morphology::open(black_box(&mask), 1), 1))
    });
    let mut h = threshold::Histogram::new(4000, 2.0);
    a.iter().for_each(|&v| h.add(v));
    c.bench_function("otsu 4000 bins", |bch| bch.iter(|| threshold::otsu(black_box(&h))));
    let (ba, bb) = (
        a.index_axis(ndarray::Axis(0), 0).to_owned(),
        b.index_axis(ndarray::Axis(0), 0).to_owned(),
    );
    let (ba, bb) = (
        ba.slice(ndarray::s![..256, ..256]).to_owned(),
        bb.slice(ndarray::s![..256, ..256]).to_owned(),
    );
    c.bench_function("phase_correlation 256x256", |bch| {
        bch.iter(|| shift::phase_correlation(black_box(&ba), black_box(&bb)))
    });
}

/// The learned cascade's kernels on a 512 × 512 block with each shipped model's trees: the
/// feature planes and integral images, and the whole per-block decision with three quarters
/// of the pixels candidates at 0.5 × the threshold (more than real scenes have: the worst case
/// of the cascade; 1.1.0's factor 0.25 takes nearly every pixel of this block).
fn learned(c: &mut Criterion) {
    for version in ["1.0.0", "1.1.0"] {
        learned_model(c, version);
    }
}

fn learned_model(c: &mut Criterion, version: &str) {
    use landwatch_core::learn::cascade::Decider;
    use landwatch_core::learn::features::{BlockInput, FeatureBlock, StatsSums};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("models/cascade-synth-{version}.json"));
    let text = std::fs::read_to_string(&path).expect("the shipped learned model");
    let model = landwatch_core::learn::LearnedModel::parse(&text, &path).expect("a valid learned model");
    let (a, b) = (block(1), block(2));
    let valid = Array2::from_elem((N, N), true);
    let mut sums = StatsSums::default();
    sums.add(&a, &b, &valid, model.features.bands());
    let stats = sums.finish().expect("valid pixels");
    let evidence = Array2::from_shape_fn((N, N), |(y, x)| ((x * 7 + y * 13) % 100) as f32 * 0.002);
    let input = BlockInput {
        before: &a,
        after: &b,
        observed: &valid,
        evidence: &evidence,
        threshold: 0.1,
    };
    c.bench_function(
        &format!("learned {version} features 512x512x4 (planes + integral images)"),
        |bch| bch.iter(|| FeatureBlock::new(black_box(&input), model.features, &stats)),
    );
    let decider = Decider {
        booster: &model.booster,
        spec: model.features,
        stats: &stats,
        candidates: &model.candidates,
        clean: &model.clean,
        probability_threshold: model.probability_threshold,
    };
    c.bench_function(&format!("learned {version} cascade decide 512x512"), |bch| {
        bch.iter(|| decider.decide(black_box(&input), model.extra_halo()))
    });
}

criterion_group!(benches, kernels, learned);
criterion_main!(benches);
