//! Pixel Recursive SR sampling speed at the paper's size (8x8 -> 32x32,
//! 20 gated blocks of 32 channels, 1024 hidden; random weights):
//! `cargo bench --bench pixelcnn [-- SAMPLES]`.
//!
//! Prints seconds per 32x32 sample for the fast exact sampler (a full run) and
//! the naive one. The naive sampler re-runs the whole prior for each of the
//! 3072 sub-pixels; it is timed on a prefix of NAIVE_STEPS sub-pixels and
//! extrapolated (every step costs the same), which the output says.

use std::time::Instant;

use wgsr::models::pixelcnn::{PixelCnn, PixelCnnConfig};
use wgsr::ops::rng::host_uniform;
use wgsr::weights::{HostTensor, WeightStore};
use wgsr::GpuContext;

const NAIVE_STEPS: usize = 12;

fn main() {
    let samples: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1);
    let ctx = GpuContext::new().unwrap_or_else(|e| panic!("{e}"));
    let cfg = PixelCnnConfig::default();
    let mut w = WeightStore::new();
    for (i, (name, shape)) in cfg.weight_shapes().into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
        let s = (1.0 / fan_in as f64).sqrt() as f32;
        let u = host_uniform(1000 + i as u64, 0, n);
        w.insert(name, HostTensor::new(shape, u.iter().map(|&x| (2.0 * x - 1.0) * s).collect()).unwrap());
    }
    let (h, wd) = (cfg.hr_h(), cfg.hr_w());
    let total = 3 * h * wd;
    println!("adapter: {}", ctx.info().name);
    println!("model: default size {}x{} -> {}x{}, {} blocks x {} channels, hidden {}, {} sample(s) per batch",
        cfg.lr_h, cfg.lr_w, h, wd, cfg.prior_blocks, cfg.prior_channels, cfg.prior_hidden, samples);
    let t = Instant::now();
    let mut m = PixelCnn::from_parts(&ctx, cfg.clone(), w).unwrap();
    println!("load (weights upload, conditioning graph): {:.2} s", t.elapsed().as_secs_f64());
    let lr: Vec<f32> = host_uniform(7, 0, 3 * 64).iter().map(|&x| (x * 255.0).floor()).collect();
    let u = host_uniform(1, 0, samples * total);
    let mut run = |fast: bool, stop: usize| {
        let t = Instant::now();
        m.sample(&ctx, &lr, &u, samples, 0.8, fast, stop, &mut |_, _| {}).unwrap();
        t.elapsed().as_secs_f64()
    };
    // Warm-up: builds each sampler's graphs and compiles their pipelines.
    let wf = run(true, 3);
    let wn = run(false, 1);
    println!("warm-up (graph build + pipeline compile + a few steps): fast {wf:.2} s, naive {wn:.2} s");
    let fast = run(true, usize::MAX);
    println!("fast exact sampler: {:.2} s per batch, {:.2} s per 32x32 sample, {:.2} ms per sub-pixel step (measured, full run)",
        fast, fast / samples as f64, 1e3 * fast / total as f64);
    let naive = run(false, NAIVE_STEPS);
    let per = naive / NAIVE_STEPS as f64;
    println!("naive sampler: {:.2} ms per sub-pixel step over {NAIVE_STEPS} steps -> {:.1} s per batch, {:.1} s per sample (EXTRAPOLATED x{})",
        1e3 * per, per * total as f64, per * total as f64 / samples as f64, total / NAIVE_STEPS);
    println!("speed-up fast vs naive: {:.1}x", per * total as f64 / fast);
}
