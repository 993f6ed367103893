//! Pixel Recursive SR sampling speed at the paper's size (8x8 -> 32x32,
//! 20 gated blocks of 32 channels, 1024 hidden; random masked weights):
//! `cargo bench --bench pixelcnn [-- SAMPLES] [--profile]`.
//!
//! Prints seconds per 32x32 sample for the three exact samplers: cached (a
//! full run), row and naive. The naive sampler re-runs the whole prior for
//! each of the 3072 sub-pixels and the row sampler the whole row; they are
//! timed on prefixes (NAIVE_STEPS sub-pixels; ROW_STEPS = two full rows) and
//! extrapolated (their steps cost the same, the row sampler's per-row pass
//! included), which the output says. The prefixes' samples are checked equal
//! to the cached sampler's. `--profile` first prints the per-node profile of
//! the cached sampler's two graphs; `--profile-only` stops after it.

use std::time::Instant;

use wgsr::models::pixelcnn::{random_weights, PixelCnn, PixelCnnConfig, Sampler};
use wgsr::ops::rng::host_uniform;
use wgsr::GpuContext;

const NAIVE_STEPS: usize = 12;

fn main() {
    let samples: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1);
    let profile_only = std::env::args().any(|a| a == "--profile-only");
    let profile = profile_only || std::env::args().any(|a| a == "--profile");
    let ctx = GpuContext::new().unwrap_or_else(|e| panic!("{e}"));
    let cfg = PixelCnnConfig::default();
    let w = random_weights(&cfg, 1000).unwrap();
    let (h, wd) = (cfg.hr_h(), cfg.hr_w());
    let total = 3 * h * wd;
    let row_steps = 2 * 3 * wd;
    println!("adapter: {}", ctx.info().name);
    println!("model: default size {}x{} -> {}x{}, {} blocks x {} channels, hidden {}, {} sample(s) per batch",
        cfg.lr_h, cfg.lr_w, h, wd, cfg.prior_blocks, cfg.prior_channels, cfg.prior_hidden, samples);
    let t = Instant::now();
    let mut m = PixelCnn::from_parts(&ctx, cfg.clone(), w).unwrap();
    println!("load (weights upload, conditioning graph): {:.2} s", t.elapsed().as_secs_f64());
    if profile {
        print!("{}", m.cached_profile(&ctx, samples).unwrap());
        if profile_only {
            return;
        }
    }
    let lr: Vec<f32> = host_uniform(7, 0, 3 * 64).iter().map(|&x| (x * 255.0).floor()).collect();
    let u = host_uniform(1, 0, samples * total);
    let mut run = |s: Sampler, stop: usize| {
        let t = Instant::now();
        let v = m.sample(&ctx, &lr, &u, samples, 0.8, s, stop, &mut |_, _| {}).unwrap();
        (t.elapsed().as_secs_f64(), v)
    };
    // Warm-up: builds each sampler's graphs and compiles their pipelines.
    let (wc, _) = run(Sampler::Cached, 3);
    let (wr, _) = run(Sampler::Row, 3);
    let (wn, _) = run(Sampler::Naive, 1);
    println!("warm-up (graph build + pipeline compile + a few steps): cached {wc:.2} s, row {wr:.2} s, naive {wn:.2} s");
    let (cached, img) = run(Sampler::Cached, usize::MAX);
    println!("cached exact sampler: {:.2} s per batch, {:.2} s per 32x32 sample, {:.2} ms per sub-pixel step (measured, full run)",
        cached, cached / samples as f64, 1e3 * cached / total as f64);
    let same_prefix = |v: &[u8], steps: usize| {
        // sub-pixel i = (row*W + col)*3 + c of every sample
        (0..samples).all(|s| (0..steps).all(|i| {
            let (p, c) = (i / 3, i % 3);
            let at = ((s * 3 + c) * h + p / wd) * wd + p % wd;
            v[at] == img[at]
        }))
    };
    let (row, rv) = run(Sampler::Row, row_steps);
    let row_per = row / row_steps as f64;
    println!("row sampler: {:.2} ms per sub-pixel step over {row_steps} steps (2 rows) -> {:.1} s per sample (EXTRAPOLATED x{})",
        1e3 * row_per, row_per * total as f64 / samples as f64, total / row_steps);
    let (naive, nv) = run(Sampler::Naive, NAIVE_STEPS);
    let per = naive / NAIVE_STEPS as f64;
    println!("naive sampler: {:.2} ms per sub-pixel step over {NAIVE_STEPS} steps -> {:.1} s per batch, {:.1} s per sample (EXTRAPOLATED x{})",
        1e3 * per, per * total as f64, per * total as f64 / samples as f64, total / NAIVE_STEPS);
    assert!(same_prefix(&rv, row_steps) && same_prefix(&nv, NAIVE_STEPS), "a sampler's prefix differs from the cached sampler's samples");
    println!("prefixes identical to the cached sampler's samples: yes");
    println!("speed-up cached vs naive: {:.1}x, cached vs row: {:.1}x, row vs naive: {:.1}x",
        per * total as f64 / cached, row_per * total as f64 / cached, per / row_per);
}
