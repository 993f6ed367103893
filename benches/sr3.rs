//! SR3 sampling throughput at full size with random weights:
//! `cargo bench --bench sr3` (official 16->128 architecture, batch 1).
//!
//! Environment: `SR3_BENCH_MODEL` = `sr3_16_128` (default) or `sr3_64_512`
//! (a manifest in tests/fixtures/sr3_full_manifests), `SR3_BENCH_STEPS`
//! (timed steps, default 3, after one warm-up step; 0 = build only), `SR3_BENCH_PROFILE=1`
//! for a per-op-kind time breakdown of one U-Net evaluation, `WGSR_PRECISION`
//! = `f32` (default) or `f16` (storage of activations and weights).
//!
//! Reports graph build time, steps/second, the executor's planned buffer
//! bytes, the weight bytes and the process peak RSS (on a software Vulkan
//! device such as lavapipe, "GPU" memory is host memory, so RSS covers it).

use std::collections::BTreeMap;
use std::time::Instant;

use wgsr::models::sr3::{plan, Sampler, Sr3, Sr3Config, StepNoise};
use wgsr::weights::{HostTensor, WeightStore};
use wgsr::GpuContext;

/// splitmix64 -> uniform [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    // cargo bench passes --bench; nothing else is parsed.
    let model = std::env::var("SR3_BENCH_MODEL").unwrap_or_else(|_| "sr3_16_128".into());
    let steps: usize = std::env::var("SR3_BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let path = format!("{}/tests/fixtures/sr3_full_manifests/{model}.json", env!("CARGO_MANIFEST_DIR"));
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("manifest JSON");
    let cfg = Sr3Config::from_json(&manifest["config"]).expect("config");

    // Random weights: U(-1,1) * sqrt(3 / fan_in) (unit-variance-preserving) for
    // matrices, GroupNorm gamma 1 / beta 0, small biases, so activations stay
    // in a normal range (denormals or overflow would distort CPU timings).
    let mut rng = Rng(42);
    let mut ws = WeightStore::new();
    let mut n_params = 0usize;
    for e in manifest["tensors"].as_array().expect("tensors") {
        let name = e[0].as_str().unwrap().to_string();
        let shape: Vec<usize> = e[1].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let n: usize = shape.iter().product();
        n_params += n;
        let is_norm = name.contains(".norm.") || name.contains("block.0.");
        let data: Vec<f32> = if shape.len() >= 2 {
            let a = (3.0 / (n / shape[0]) as f32).sqrt();
            (0..n).map(|_| rng.next() * a).collect()
        } else if is_norm && name.ends_with("weight") {
            vec![1.0; n]
        } else if is_norm {
            vec![0.0; n]
        } else {
            (0..n).map(|_| rng.next() * 0.05).collect()
        };
        ws.insert(name, HostTensor::new(shape, data).unwrap());
    }

    let ctx = GpuContext::new().unwrap_or_else(|e| panic!("{e}"));
    let info = ctx.info();
    println!("device: {} ({}, {})", info.name, info.backend, info.driver_info);
    println!("model: {model}, {n_params} parameters, batch 1, {}x{} output", cfg.hr_size, cfg.hr_size);
    let t0 = Instant::now();
    let precision = match std::env::var("WGSR_PRECISION").as_deref() {
        Ok("f16") => wgsr::Dtype::F16,
        _ => wgsr::Dtype::F32,
    };
    println!("precision: {precision} storage");
    let mut sr3 = Sr3::new_as(&ctx, cfg.clone(), &ws, 1, precision).unwrap_or_else(|e| panic!("{e}"));
    drop(ws);
    println!("graph build + weight upload: {:.2} s, {} nodes", t0.elapsed().as_secs_f64(), sr3.executor().graph().nodes.len());
    println!("{}", sr3.executor().plan());

    if steps == 0 {
        return;
    }
    let n = sr3.image_numel();
    let cond: Vec<f32> = (0..n).map(|_| rng.next()).collect();
    let x_t = wgsr::ops::rng::host_normal(1, 0, n, 0.0, 1.0);
    // DDPM respaced to warm-up + timed steps: every step but the last draws Philox noise.
    let chain = plan(&cfg.schedule, Sampler::Ddpm, steps + 2).unwrap();
    let mut times = Vec::new();
    let mut last = Instant::now();
    let out = sr3
        .sample(&ctx, &cond, &x_t, &chain[..steps + 1], StepNoise::Philox { seed: 1 }, &mut |d, _| {
            let now = Instant::now();
            times.push((d, (now - last).as_secs_f64()));
            last = now;
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.iter().all(|v| v.is_finite()), "non-finite sample");
    let timed: Vec<f64> = times.iter().skip(1).map(|t| t.1).collect();
    let mean = timed.iter().sum::<f64>() / timed.len() as f64;
    println!(
        "first step (warm-up) {:.3} s; {} timed steps: mean {:.3} s/step = {:.3} steps/s (min {:.3} s, max {:.3} s)",
        times[0].1,
        timed.len(),
        mean,
        1.0 / mean,
        timed.iter().cloned().fold(f64::INFINITY, f64::min),
        timed.iter().cloned().fold(0.0, f64::max)
    );
    let plan_b = sr3.executor().plan().peak_bytes;
    let weights_b = 4 * n_params as u64;
    println!(
        "memory: executor plan {:.1} MiB + weights {:.1} MiB (f32) = {:.1} MiB; process peak RSS {:.1} MiB",
        plan_b as f64 / 1048576.0,
        weights_b as f64 / 1048576.0,
        (plan_b + weights_b) as f64 / 1048576.0,
        peak_rss_mib().unwrap_or(f64::NAN)
    );

    if std::env::var("SR3_BENCH_PROFILE").as_deref() == Ok("1") {
        let prof = sr3.executor_mut().profile(&ctx, 1).unwrap();
        let mut by_kind: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        for r in &prof.rows {
            let e = by_kind.entry(r.kind).or_default();
            e.0 += r.ms;
            e.1 += 1;
        }
        let total = prof.total_ms();
        let mut v: Vec<_> = by_kind.into_iter().collect();
        v.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        println!("profile ({}): {total:.1} ms per U-Net evaluation + step", prof.source);
        for (k, (ms, cnt)) in v {
            println!("  {k:<18} {cnt:>4} nodes {ms:>10.1} ms {:>5.1}%", 100.0 * ms / total);
        }
        // Conv time by kind and shapes (a Winograd node also lists its two
        // working buffers; a conv2d_cat lists its input parts).
        let mut convs: BTreeMap<(&str, &str), (f64, usize)> = BTreeMap::new();
        for r in prof.rows.iter().filter(|r| r.kind == "conv2d" || r.kind == "conv2d_cat") {
            let e = convs.entry((r.kind, r.shapes.as_str())).or_default();
            e.0 += r.ms;
            e.1 += 1;
        }
        let mut v: Vec<_> = convs.into_iter().collect();
        v.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        println!("conv2d and conv2d_cat by shapes:");
        for ((kind, shapes), (ms, cnt)) in v.iter().take(16) {
            println!("  {kind:<10} {shapes:<100} {cnt:>4} {ms:>10.1} ms");
        }
    }
}
