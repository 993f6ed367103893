//! HCD (collaborative downscaling) cost on the shipped rescaling model:
//! `cargo bench --bench hcd [-- LR_SIDE]` (default 32: a 128x128 HR image).
//!
//! Builds both stages' gradient graphs (forward + backward in one graph),
//! prints their plans, then a per-op-kind profile of one replay of each, so
//! the backward's share (transposed convs, gradient kernels) is visible
//! next to the forward ops it mirrors.

use std::collections::BTreeMap;
use std::time::Instant;

use wgsr::graph::{Executor, GraphBuilder};
use wgsr::models::hcflow::graph::{build_hcd, HcdStage};
use wgsr::models::hcflow::HcflowConfig;
use wgsr::weights::ModelDir;
use wgsr::{GpuContext, Shape};

fn main() {
    let side: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(32);
    let ctx = GpuContext::new().unwrap_or_else(|e| panic!("{e}"));
    let dir = ModelDir::load(concat!(env!("CARGO_MANIFEST_DIR"), "/weights/hcflow-rescale-x4-small")).unwrap();
    let cfg = HcflowConfig::from_json(&dir.config).unwrap();
    println!("adapter: {}", ctx.info().name);
    println!("model: hcflow-rescale-x4-small, LR {side}x{side} (HR {0}x{0})", side * cfg.scale);
    let lr = Shape::new(1, 3, side, side);
    for stage in [HcdStage::Hr, HcdStage::Lr] {
        let t = Instant::now();
        let mut g = GraphBuilder::with_weights(&ctx, &dir.weights);
        build_hcd(&mut g, &cfg, stage, lr).unwrap();
        let mut ex = Executor::new(&ctx, g.build().unwrap()).unwrap();
        println!("\n{stage:?} stage: {}; built in {:.2} s", ex.plan(), t.elapsed().as_secs_f64());
        let p = ex.profile(&ctx, 3).unwrap();
        let mut by_kind: BTreeMap<(&str, bool), (usize, f64)> = BTreeMap::new();
        for r in &p.rows {
            let e = by_kind.entry((r.kind, r.name.contains(".grad."))).or_default();
            e.0 += 1;
            e.1 += r.ms;
        }
        println!("{:<24} {:>9} {:>6} {:>10} {:>7}", "op", "pass", "nodes", "ms", "share");
        let total = p.total_ms();
        let mut rows: Vec<_> = by_kind.into_iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        for ((kind, grad), (n, ms)) in rows {
            println!("{kind:<24} {:>9} {n:>6} {ms:>10.2} {:>6.1}%", if grad { "backward" } else { "forward" }, 100.0 * ms / total);
        }
        println!("total: {total:.1} ms per step ({})", p.source);
        let mut slow: Vec<_> = p.rows.iter().collect();
        slow.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        println!("slowest nodes:");
        for r in slow.iter().take(8) {
            println!("  {:>8.2} ms {:>7.2} GFLOP/s  {:<40} {:<18} {}", r.ms, r.gflops, r.name, r.kind, r.shapes);
        }
    }
}
