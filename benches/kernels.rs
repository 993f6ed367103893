//! Kernel micro-benchmarks: `cargo bench --bench kernels [-- FILTER...]`.
//!
//! Each entry prepares its `Dispatch`es once, then the harness warms up and
//! times repeated submits of the same dispatches (each followed by a full
//! sync) and reports the median time per run. With GPU timestamp queries
//! (when the device has them) the time is that of the compute pass alone;
//! otherwise it is wall clock around submit + sync. The table says which.
//!
//! To add an op family: write a `fn family(b: &mut Bench)` that builds its
//! tensors and dispatches and calls `b.bench(..)` (or `b.bench_costed(..)`,
//! which takes flops/bytes from the dispatches' `with_cost`), and call it from
//! `main`.

use std::time::{Duration, Instant};

use wgsr::gpu::Dispatch;
use wgsr::ops::conv::{self, Activation, Conv2dParams, Conv2dWeights, ConvTranspose2dParams, Epilogue};
use wgsr::{GpuContext, Shape, Tensor};

/// Timing budget per entry (after warm-up) and run-count bounds.
const TARGET: Duration = Duration::from_millis(1500);
const WARMUP: usize = 2;
const MIN_RUNS: usize = 5;
const MAX_RUNS: usize = 100;

struct Timestamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period: f64,
}

pub struct Bench {
    ctx: GpuContext,
    ts: Option<Timestamps>,
    filters: Vec<String>,
}

impl Bench {
    fn new(filters: Vec<String>) -> Self {
        let ctx = GpuContext::new().unwrap_or_else(|e| panic!("{e}"));
        let ts = ctx.has_timestamps().then(|| Timestamps {
            set: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("bench"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("bench resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("bench readback"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            period: ctx.queue.get_timestamp_period() as f64,
        });
        Bench { ctx, ts, filters }
    }

    pub fn ctx(&self) -> &GpuContext {
        &self.ctx
    }

    /// Whether an entry is selected by the command-line filters (substrings).
    pub fn wants(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }

    /// One timed run of `ds` in milliseconds.
    fn run_once(&self, ds: &[Dispatch]) -> f64 {
        let ctx = &self.ctx;
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bench") });
        {
            let tw = self.ts.as_ref().map(|t| wgpu::ComputePassTimestampWrites {
                query_set: &t.set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            });
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("bench"), timestamp_writes: tw });
            for d in ds {
                d.encode(&mut pass);
            }
        }
        let Some(t) = &self.ts else {
            let start = Instant::now();
            ctx.queue.submit([enc.finish()]);
            ctx.sync().unwrap();
            return start.elapsed().as_secs_f64() * 1e3;
        };
        enc.resolve_query_set(&t.set, 0..2, &t.resolve, 0);
        enc.copy_buffer_to_buffer(&t.resolve, 0, &t.readback, 0, 16);
        ctx.queue.submit([enc.finish()]);
        t.readback.map_async(wgpu::MapMode::Read, .., |r| r.expect("mapping timestamps"));
        ctx.sync().unwrap();
        let ticks: [u64; 2] = {
            let view = t.readback.get_mapped_range(..).expect("timestamp readback");
            let v: &[u64] = bytemuck::cast_slice(&view);
            [v[0], v[1]]
        };
        t.readback.unmap();
        ticks[1].saturating_sub(ticks[0]) as f64 * t.period / 1e6
    }

    /// Time `ds` (warm-up, then repeated runs) and add a table row.
    /// `flops` and `bytes` are per run; `shape` describes the problem.
    pub fn bench(&mut self, name: &str, shape: &str, flops: f64, bytes: f64, ds: &[Dispatch]) {
        for _ in 0..WARMUP {
            self.run_once(ds);
        }
        let start = Instant::now();
        let mut times = Vec::new();
        while times.len() < MIN_RUNS || (times.len() < MAX_RUNS && start.elapsed() < TARGET) {
            times.push(self.run_once(ds));
        }
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        println!(
            "{name:<22} {shape:<56} {ms:>10.3} {:>10.2} {:>10.2}   ({} runs)",
            flops / (ms * 1e6),
            bytes / (ms * 1e6),
            times.len()
        );
    }

    /// `bench` with flops and bytes summed from the dispatches' costs.
    pub fn bench_costed(&mut self, name: &str, shape: &str, ds: &[Dispatch]) {
        let flops = ds.iter().map(|d| d.flops).sum();
        let bytes = ds.iter().map(|d| d.bytes).sum();
        self.bench(name, shape, flops, bytes, ds);
    }
}

/// Deterministic pseudo-random data in [-1, 1).
fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

fn conv_entry(b: &mut Bench, name: &str, x: Shape, w: [usize; 4], p: Conv2dParams, act: Activation) {
    if !b.wants(name) {
        return;
    }
    let ctx = b.ctx();
    let xt = Tensor::from_slice(ctx, x, &rand_vec(x.numel(), 1)).unwrap();
    let wv: Vec<f32> = rand_vec(w.iter().product(), 2).iter().map(|v| v * 0.1).collect();
    let bias = rand_vec(w[0], 3);
    let wt = Conv2dWeights::new(ctx, &wv, w, Some(&bias), None).unwrap();
    let os = conv::conv2d_out_shape(x, &wt, &p).unwrap();
    let out = Tensor::empty(ctx, os).unwrap();
    let d = conv::conv2d(ctx, &xt, &wt, &p, &Epilogue::act(act), None, &out).unwrap();
    let desc = format!("{x} * {}x{}x{}x{} s{} -> {os}", w[0], w[1], w[2], w[3], p.stride[0]);
    b.bench_costed(name, &desc, &[d]);
}

fn conv_transposed_entry(b: &mut Bench, name: &str, x: Shape, w: [usize; 4], p: ConvTranspose2dParams) {
    if !b.wants(name) {
        return;
    }
    let ctx = b.ctx();
    let xt = Tensor::from_slice(ctx, x, &rand_vec(x.numel(), 4)).unwrap();
    let wv: Vec<f32> = rand_vec(w.iter().product(), 5).iter().map(|v| v * 0.1).collect();
    let wt = Conv2dWeights::new_transposed(ctx, &wv, w, p.groups, None, None).unwrap();
    let os = conv::conv_transpose2d_out_shape(x, &wt, &p).unwrap();
    let out = Tensor::empty(ctx, os).unwrap();
    let d = conv::conv_transpose2d(ctx, &xt, &wt, &p, &Epilogue::default(), None, &out).unwrap();
    let desc = format!("{x} * T{}x{}x{}x{} s{} -> {os}", w[0], w[1], w[2], w[3], p.stride[0]);
    b.bench_costed(name, &desc, &[d]);
}

fn conv_family(b: &mut Bench) {
    let p1 = Conv2dParams::new(1, 1);
    conv_entry(b, "conv3x3 64->64", Shape::new(1, 64, 128, 128), [64, 64, 3, 3], p1, Activation::None);
    conv_entry(b, "conv3x3 64->64 relu", Shape::new(1, 64, 64, 64), [64, 64, 3, 3], p1, Activation::Relu);
    conv_entry(b, "conv1x1 64->64", Shape::new(1, 64, 128, 128), [64, 64, 1, 1], Conv2dParams::default(), Activation::None);
    conv_entry(b, "conv3x3 3->64", Shape::new(1, 3, 128, 128), [64, 3, 3, 3], p1, Activation::None);
    conv_transposed_entry(b, "convT4x4s2 64->32", Shape::new(1, 64, 64, 64), [64, 32, 4, 4], ConvTranspose2dParams::new(2, 1, 0));
}

fn main() {
    // cargo passes `--bench`; everything not starting with '-' is a filter.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let mut b = Bench::new(filters);
    let info = b.ctx().info();
    let clock = if b.ts.is_some() { "GPU timestamp queries (compute pass only)" } else { "wall clock (submit + sync)" };
    println!("device: {} ({})", info.name, info.backend);
    println!("timing: median of repeated runs, {clock}");
    println!("{:<22} {:<56} {:>10} {:>10} {:>10}", "kernel", "shape", "ms", "GFLOP/s", "GB/s");
    conv_family(&mut b);
}
