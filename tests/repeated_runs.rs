//! Repeated runs on one loaded model keep memory flat (issue 15): no GPU
//! storage is created after the first build, and process RSS (device memory
//! is host memory on lavapipe) stays put. One test in its own binary so no
//! other test's memory moves RSS. `WGSR_REPEAT_RUNS` sets the count.

use std::path::PathBuf;

use wgsr::image_io::RgbImage;
use wgsr::models::{registry, UpscaleOptions};
use wgsr::weights::ModelDir;
use wgsr::GpuContext;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn image(seed: u32) -> RgbImage {
    let data = (0..18).map(|i| ((i as u32 * 37 + seed * 11) % 97) as f32 / 96.0).collect();
    RgbImage::new(3, 2, data).unwrap()
}

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn repeated_runs_keep_memory_flat() {
    let ctx = GpuContext::new().unwrap_or_else(|e| panic!("{e}"));
    let mut m = registry::load(&ctx, ModelDir::load(fixture("hcflow_sr_x4_tiny")).unwrap()).unwrap();
    let runs: usize = std::env::var("WGSR_REPEAT_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let x = image(1);
    let opts = UpscaleOptions { temperature: Some(0.9), ..Default::default() };
    for _ in 0..20 {
        m.upscale(&ctx, &x, &opts, &mut |_| {}).unwrap(); // warm-up: graph, pipelines, allocator pools
    }
    let (before, storage) = (rss_kib(), ctx.storage_bytes_created());
    for i in 0..runs {
        let o = UpscaleOptions { seed: i as u64, ..opts.clone() };
        m.upscale(&ctx, &x, &o, &mut |_| {}).unwrap();
    }
    let after = rss_kib();
    // No new GPU storage after the first build: replays allocate nothing.
    assert_eq!(ctx.storage_bytes_created(), storage, "replays allocated storage");
    if let (Some(b), Some(a)) = (before, after) {
        let grown = a.saturating_sub(b);
        println!("{runs} runs: RSS {b} KiB -> {a} KiB (+{grown} KiB)");
        assert!(grown < 32 * 1024, "RSS grew by {grown} KiB over {runs} runs");
    }
}
