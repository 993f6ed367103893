//! HCFlow end to end: `cargo bench --bench hcflow [-- ARCH LR RUNS]`
//! (defaults: sr_x4 64 3). Builds the official architecture from its key
//! manifest with random weights, then times the reverse pass (LR -> HR):
//! the first call (graph build, weight upload, pipeline compilation) and the
//! median of RUNS replays, plus memory and a per-op-kind GPU profile.
//! `WGSR_PRECISION=f16` stores activations and weights as f16.
//! Side-by-side partner: `python3 tools/bench_hcflow.py --arch ARCH --lr LR`.

use std::collections::BTreeMap;
use std::time::Instant;

use wgsr::models::hcflow::HcFlow;
use wgsr::{GpuContext, Shape};

#[path = "../tests/support/hcflow_manifest.rs"]
mod hcflow_manifest;
use hcflow_manifest::{manifest, random_weights};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let arch = args.first().map(String::as_str).unwrap_or("sr_x4").to_string();
    let lr_px: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);

    let (config, keys, _) = manifest(&arch);
    let params: usize = keys.iter().map(|(_, s)| s.iter().product::<usize>()).sum();

    let ctx = GpuContext::new().unwrap_or_else(|e| panic!("{e}"));
    let info = ctx.info();
    let mut m = HcFlow::from_parts(&config, random_weights(&keys, 1)).unwrap();
    let precision = match std::env::var("WGSR_PRECISION").as_deref() {
        Ok("f16") => wgsr::Dtype::F16,
        _ => wgsr::Dtype::F32,
    };
    m.set_precision(&ctx, precision).unwrap_or_else(|e| panic!("{e}"));
    let s = m.scale();
    let lr_shape = Shape::new(1, 3, lr_px, lr_px);
    let lr: Vec<f32> = (0..lr_shape.numel()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let eps = m.sample_eps(lr_shape, 1);
    let heat = m.default_heat();

    println!("device: {} ({})", info.name, info.backend);
    println!("wgsr HCFlow {arch}: {params} parameters, LR {lr_px}x{lr_px} -> HR {}x{}, heat {heat}, {precision} storage", lr_px * s, lr_px * s);
    let t = Instant::now();
    m.reverse(&ctx, &lr, lr_shape, &eps, heat).unwrap();
    let first = t.elapsed().as_secs_f64();
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        m.reverse(&ctx, &lr, lr_shape, &eps, heat).unwrap();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    let all: Vec<String> = times.iter().map(|t| format!("{t:.3}")).collect();
    println!("first call (build + upload + compile + run): {first:.3} s");
    println!("reverse: median {med:.3} s over {runs} runs (all: {}), wall clock incl. upload/readback", all.join(", "));
    // Measured: every storage buffer created so far minus the graph's own
    // (weights as packed for their kernels, Winograd's f32 U included, plus
    // the tables and tensors the runs uploaded).
    let inter_mib = m.graph_bytes() as f64 / (1 << 20) as f64;
    let weight_mib = ctx.storage_bytes_created() as f64 / (1 << 20) as f64 - inter_mib;
    println!("checkpoint: {:.1} MiB as f32", params as f64 * 4.0 / (1 << 20) as f64);
    println!("device memory: weights {weight_mib:.1} MiB ({precision} storage) + graph intermediates {inter_mib:.1} MiB = {:.1} MiB", weight_mib + inter_mib);

    for plan in m.memory_plans() {
        println!("reverse graph {plan}");
    }
    let prof = m.profile_reverse(&ctx, lr_shape, 1).unwrap();
    let mut by_kind: BTreeMap<&str, (usize, f64, f64)> = BTreeMap::new();
    for r in &prof.rows {
        let e = by_kind.entry(r.kind).or_default();
        e.0 += 1;
        e.1 += r.ms;
        e.2 += r.gflops * r.ms / 1e3;
    }
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    println!("GPU profile ({:?}), total {:.1} ms over {} nodes:", prof.source, prof.total_ms(), prof.rows.len());
    println!("{:<22} {:>6} {:>10} {:>7} {:>9}", "op", "nodes", "ms", "share", "GFLOP/s");
    for (k, (n, ms, gf)) in kinds {
        println!("{k:<22} {n:>6} {ms:>10.1} {:>6.1}% {:>9.2}", 100.0 * ms / prof.total_ms(), if ms > 0.0 { gf / (ms / 1e3) } else { 0.0 });
    }
    // Conv time by output size and by direct / Winograd: where the time goes.
    let mut convs: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for r in prof.rows.iter().filter(|r| r.kind.starts_with("conv2d") || r.kind.starts_with("winograd")) {
        let out = format!("{} {}", r.kind, r.shapes);
        let e = convs.entry(out).or_default();
        e.0 += 1;
        e.1 += r.ms;
    }
    let mut convs: Vec<_> = convs.into_iter().collect();
    convs.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    println!("conv and Winograd nodes by kind and shapes (inputs -> outputs, a Winograd node lists its working buffers):");
    for (shape, (n, ms)) in convs.iter().take(16) {
        println!("  {shape:<110} {n:>5} {ms:>10.1} ms");
    }
}
