//! Per-node profiles of the cached sampler's graphs (benches/pixelcnn.rs `--profile`).

use std::fmt::Write as _;
use std::time::Instant;

use crate::graph::Executor;
use crate::{GpuContext, Result};

use super::{cache_graphs, PixelCnn};

impl PixelCnn {
    /// The `vrow` and `pixel` graphs for a batch of `n`, profiled per node,
    /// with each graph's dispatch count and wall time per replay (zero inputs).
    pub fn cached_profile(&mut self, ctx: &GpuContext, n: usize) -> Result<String> {
        let (cfg, wt) = (&self.cfg, &self.weights);
        let ve = self.vrow.get_or_build(n, || Executor::new(ctx, cache_graphs::vrow_graph(ctx, wt, cfg, n)?))?;
        let mut out = report(ctx, "vrow (once per image row)", ve)?;
        let pe = self.pixel[0].get_or_build(n, || Executor::new(ctx, cache_graphs::pixel_graph(ctx, wt, cfg, n, 0)?))?;
        out += &report(ctx, "pixel, colour R (once per sub-pixel)", pe)?;
        Ok(out)
    }
}

fn report(ctx: &GpuContext, what: &str, e: &mut Executor) -> Result<String> {
    e.run(ctx)?;
    let p = e.profile(ctx, 5)?;
    let dispatches: usize = p.rows.iter().map(|r| r.dispatches).sum();
    let reps = 10;
    let t = Instant::now();
    for _ in 0..reps {
        e.run(ctx)?;
    }
    let wall = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
    let mut s = String::new();
    let _ = writeln!(s, "== {what}: {dispatches} dispatches, {wall:.3} ms per replay (wall clock, submit + wait)\n{p}");
    Ok(s)
}
