//! Kernel micro-benchmarks: `cargo bench --bench kernels [-- FILTER...]`.
//! The table starts with the adapter's roofline (multiply-add peak and copy
//! bandwidth from the probe kernels) and gives every row its share of it.
//!
//! Each entry prepares its `Dispatch`es once, then the harness warms up and
//! times repeated submits of the same dispatches (each followed by a full
//! sync) and reports the median time per run. With GPU timestamp queries
//! (when the device has them) the time is that of the compute pass alone;
//! otherwise it is wall clock around submit + sync. The table says which.
//!
//! Entries are grouped by op family (`fn <family>_family`), with shapes taken
//! from the models: HCFlow x4 at a 256x256 HR image (Haar level 1 is
//! `[1, 12, 128, 128]`), SR3 16->128 (64 channels at 128x128, attention at
//! 16x16 with 512 channels) and PixelCNN at 32x32 (`[1, 768, 32, 32]` logits =
//! 3 colours x 256 intensities). Filters are substrings of entry names; every
//! name starts with its family (`norm`, `softmax`, ...), except the original
//! `conv*` entries.
//!
//! `--paired` (`cargo bench --bench kernels -- --paired [FILTER...]`) adds a
//! column for hosts whose speed drifts within a sitting (shared VMs, where
//! run-to-run swings of 2x were seen): every timed run of a row is preceded
//! by a short run of each probe (fma 512 trips, the 64 MiB copy), the row's
//! share of the roofline is computed against those two neighbouring probe
//! runs, and the column gives the median of these per-run shares. The plain
//! `roofline` column divides the row's median by the probes' medians taken
//! once at the start.
//!
//! To add an op family: write a `fn <family>_family(b: &mut Bench)` whose
//! entries go through [`entry`] (it skips unselected ones before allocating
//! anything and times with `bench_costed`, which takes flops/bytes from the
//! dispatches' `with_cost`), and call it from `main`.

use std::time::{Duration, Instant};

use wgsr::gpu::Dispatch;
use wgsr::ops::actnorm::ActNorm;
use wgsr::ops::attention::Attention;
use wgsr::ops::conv::{self, Activation, Conv2dParams, Conv2dWeights, ConvTranspose2dParams, Epilogue};
use wgsr::ops::coupling::{self, GaussianScale};
use wgsr::ops::invconv::InvConv;
use wgsr::ops::matmul::{self, Linear, MatmulOpts};
use wgsr::ops::norm::GroupNorm;
use wgsr::ops::norm_cat::GroupNormCat;
use wgsr::ops::{elementwise, probe, reduce, reshape, rng, softmax};
use wgsr::ops::winograd::{self, WinogradTile, WinogradWeights};
use wgsr::{Dtype, GpuContext, Result, Shape, Tensor};

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
    /// Measured roofline of this adapter (GFLOP/s, GB/s), once probed.
    roof: Option<(f64, f64)>,
    /// (GFLOP/s, GB/s) of the last timed row.
    last: (f64, f64),
    /// `--paired`: short probe runs (fma, copy) timed before every run of a row.
    paired: Option<PairedProbes>,
}

/// The short probes of `--paired` and their costs (flops of the fma probe,
/// bytes of the copy probe) per run.
struct PairedProbes {
    fma: Dispatch,
    copy: Dispatch,
    _keep: Vec<Tensor>,
}

impl Bench {
    fn new(filters: Vec<String>, paired: bool) -> Self {
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
        let paired = paired.then(|| {
            let fma_out = Tensor::empty(&ctx, Shape::new(1, 1, 1 << 16, 4)).unwrap();
            let src = Tensor::filled(&ctx, Shape::new(1, 1, 1 << 22, 4), 1.0).unwrap();
            let dst = Tensor::empty(&ctx, Shape::new(1, 1, 1 << 22, 4)).unwrap();
            PairedProbes {
                fma: probe::fma_peak(&ctx, &fma_out, 512).unwrap(),
                copy: probe::copy_peak(&ctx, &src, &dst).unwrap(),
                _keep: vec![fma_out, src, dst],
            }
        });
        Bench { ctx, ts, filters, roof: None, last: (0.0, 0.0), paired }
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
        // --paired: (share, compute-bound) of each run against the probe runs just before it.
        let mut shares = Vec::new();
        while times.len() < MIN_RUNS || (times.len() < MAX_RUNS && start.elapsed() < TARGET) {
            let probes = self.paired.as_ref().map(|p| {
                let (f, c) = (&p.fma, &p.copy);
                (f.flops / (self.run_once(std::slice::from_ref(f)) * 1e6), c.bytes / (self.run_once(std::slice::from_ref(c)) * 1e6))
            });
            let ms = self.run_once(ds);
            if let Some(roof) = probes {
                shares.push(roof_share(roof, flops, bytes, flops / (ms * 1e6), bytes / (ms * 1e6)));
            }
            times.push(ms);
        }
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        let (gf, gb) = (flops / (ms * 1e6), bytes / (ms * 1e6));
        let roofline = self.roof.map_or("-".into(), |roof| share_label(roof_share(roof, flops, bytes, gf, gb)));
        let paired = if self.paired.is_none() {
            String::new()
        } else if self.roof.is_none() {
            format!(" {:>9}", "-")
        } else {
            shares.sort_by(|a, b| a.0.total_cmp(&b.0));
            format!(" {:>9}", share_label(shares[shares.len() / 2]))
        };
        println!("{name:<28} {shape:<56} {ms:>10.3} {gf:>10.2} {gb:>10.2} {roofline:>9}{paired}   ({} runs)", times.len());
        self.last = (gf, gb);
    }

    /// Measure the adapter's multiply-add peak and copy bandwidth with the
    /// probe kernels; later rows print their share of that roofline.
    fn probe_roofline(&mut self) {
        let ctx = &self.ctx;
        // Enough threads to fill every lane / core; enough trips to hide launch cost.
        let fma_out = Tensor::empty(ctx, Shape::new(1, 1, 1 << 16, 4)).unwrap();
        let fma = probe::fma_peak(ctx, &fma_out, 4096).unwrap();
        let src = Tensor::filled(ctx, Shape::new(1, 1, 1 << 22, 4), 1.0).unwrap();
        let dst = Tensor::empty(ctx, Shape::new(1, 1, 1 << 22, 4)).unwrap();
        let copy = probe::copy_peak(ctx, &src, &dst).unwrap();
        self.bench_costed("probe fma_peak", "65536 threads x 4096 x 8 vec4 mul-add", std::slice::from_ref(&fma));
        let peak_flops = self.last.0;
        self.bench_costed("probe copy_peak", "64 MiB -> 64 MiB vec4 copy", std::slice::from_ref(&copy));
        let peak_bw = self.last.1;
        self.roof = Some((peak_flops, peak_bw));
        println!("roofline: {peak_flops:.2} GFLOP/s multiply-add peak, {peak_bw:.2} GB/s copy bandwidth, balance {:.2} flop/byte", peak_flops / peak_bw);
    }

    /// `bench` with flops and bytes summed from the dispatches' costs.
    pub fn bench_costed(&mut self, name: &str, shape: &str, ds: &[Dispatch]) {
        let flops = ds.iter().map(|d| d.flops).sum();
        let bytes = ds.iter().map(|d| d.bytes).sum();
        self.bench(name, shape, flops, bytes, ds);
    }
}

/// Share of the roofline bound `roof` = (GFLOP/s, GB/s): of min(peak rate,
/// intensity x bandwidth), with whether the row is compute-bound ("C") or
/// memory-bound ("M", then of the bandwidth).
fn roof_share((pf, pb): (f64, f64), flops: f64, bytes: f64, gf: f64, gb: f64) -> (f64, bool) {
    if flops > 0.0 && bytes > 0.0 && flops / bytes > pf / pb {
        (100.0 * gf / pf, true)
    } else if flops > 0.0 && bytes > 0.0 {
        (100.0 * gf / ((flops / bytes) * pb), false)
    } else {
        (100.0 * gb / pb, false)
    }
}

fn share_label((share, compute): (f64, bool)) -> String {
    format!("{share:.1}% {}", if compute { "C" } else { "M" })
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
    conv_entry_as(b, name, x, w, p, act, Dtype::F32)
}

/// `conv_entry` with input, weights and output stored as `dt` (f16 rows:
/// half the bytes; the arithmetic is f32 either way).
fn conv_entry_as(b: &mut Bench, name: &str, x: Shape, w: [usize; 4], p: Conv2dParams, act: Activation, dt: Dtype) {
    if !b.wants(name) || (dt == Dtype::F16 && !b.ctx().has_f16()) {
        return;
    }
    let ctx = b.ctx();
    let xt = Tensor::from_slice_as(ctx, x, &rand_vec(x.numel(), 1), dt).unwrap();
    let wv: Vec<f32> = rand_vec(w.iter().product(), 2).iter().map(|v| v * 0.1).collect();
    let bias = rand_vec(w[0], 3);
    let wt = Conv2dWeights::new_as(ctx, dt, &wv, w, Some(&bias), None).unwrap();
    let os = conv::conv2d_out_shape(x, &wt, &p).unwrap();
    let out = Tensor::empty_as(ctx, os, dt).unwrap();
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

/// A Winograd conv3x3 (pad 1); GFLOP/s and the roofline share count the
/// direct conv's multiply-adds ("effective"), so the rows compare with conv_entry's.
fn winograd_entry(b: &mut Bench, name: &str, x: Shape, cout: usize, tile: WinogradTile, act: Activation) {
    winograd_entry_as(b, name, x, cout, tile, act, Dtype::F32)
}

/// `winograd_entry` with input and output stored as `dt` (U, V and M stay
/// f32, as in an f16 graph).
fn winograd_entry_as(b: &mut Bench, name: &str, x: Shape, cout: usize, tile: WinogradTile, act: Activation, dt: Dtype) {
    if !b.wants(name) || (dt == Dtype::F16 && !b.ctx().has_f16()) {
        return;
    }
    let ctx = b.ctx();
    let ws = [cout, x.c(), 3, 3];
    let xt = Tensor::from_slice_as(ctx, x, &rand_vec(x.numel(), 1), dt).unwrap();
    let wv: Vec<f32> = rand_vec(ws.iter().product(), 2).iter().map(|v| v * 0.1).collect();
    let bias = rand_vec(cout, 3);
    let wt = WinogradWeights::new(ctx, &wv, ws, Some(&bias), None, tile).unwrap();
    let (vs, ms) = winograd::scratch_shapes(x, x.c(), cout, 1, tile).unwrap();
    let (v, m) = (Tensor::empty(ctx, vs).unwrap(), Tensor::empty(ctx, ms).unwrap());
    let os = Shape::new(x.n(), cout, x.h(), x.w());
    let out = Tensor::empty_as(ctx, os, dt).unwrap();
    let ds = winograd::conv3x3(ctx, &[&xt], &wt, 1, &Epilogue::act(act), None, &v, &m, &out).unwrap();
    let bytes = ds.iter().map(|d| d.bytes).sum();
    let desc = format!("{x} * {cout}x{}x3x3 {tile:?} -> {os} (effective)", x.c());
    b.bench(name, &desc, winograd::direct_flops(os, x.c()), bytes, &ds);
    // Its three stages alone (GEMM rows count the GEMM's own multiply-adds).
    for (d, part) in ds.iter().zip(["  .input transform", "  .gemm", "  .output transform"]) {
        b.bench_costed(part, "", std::slice::from_ref(d));
    }
}

fn conv_family(b: &mut Bench) {
    let p1 = Conv2dParams::new(1, 1);
    conv_entry(b, "conv3x3 64->64", Shape::new(1, 64, 128, 128), [64, 64, 3, 3], p1, Activation::None);
    conv_entry(b, "conv3x3 64->64 relu", Shape::new(1, 64, 64, 64), [64, 64, 3, 3], p1, Activation::Relu);
    conv_entry(b, "conv3x3 96->32 lrelu", Shape::new(1, 96, 128, 128), [32, 96, 3, 3], p1, Activation::LeakyRelu(0.2));
    conv_entry(b, "conv1x1 64->64", Shape::new(1, 64, 128, 128), [64, 64, 1, 1], Conv2dParams::default(), Activation::None);
    conv_entry(b, "conv3x3 3->64", Shape::new(1, 3, 128, 128), [64, 3, 3, 3], p1, Activation::None);
    // HCFlow coupling-net outputs: few, unaligned output channels.
    conv_entry(b, "conv3x3 131->18", Shape::new(1, 131, 64, 64), [18, 131, 3, 3], p1, Activation::None);
    conv_entry(b, "conv3x3 137->3", Shape::new(1, 137, 64, 64), [3, 137, 3, 3], p1, Activation::None);
    conv_entry(b, "conv3x3 64->6", Shape::new(1, 64, 64, 64), [6, 64, 3, 3], p1, Activation::None);
    conv_entry(b, "conv3x3 64->12 128x128", Shape::new(1, 64, 128, 128), [12, 64, 3, 3], p1, Activation::None);
    // PixelCNN's cached sampler: one pixel (conv2d_narrow on CPU adapters).
    conv_entry(b, "conv1x1 1024->256 1px", Shape::new(1, 1024, 1, 1), [256, 1024, 1, 1], Conv2dParams::default(), Activation::None);
    conv_entry(b, "conv1x1 160->64 1px", Shape::new(1, 160, 1, 1), [64, 160, 1, 1], Conv2dParams::default(), Activation::None);
    for (tile, tag) in [(WinogradTile::F2, "wino2"), (WinogradTile::F4, "wino4")] {
        winograd_entry(b, &format!("{tag} conv3x3 64->64"), Shape::new(1, 64, 128, 128), 64, tile, Activation::None);
        winograd_entry(b, &format!("{tag} conv3x3 64->64 relu"), Shape::new(1, 64, 64, 64), 64, tile, Activation::Relu);
        winograd_entry(b, &format!("{tag} conv3x3 96->32 lrelu"), Shape::new(1, 96, 128, 128), 32, tile, Activation::LeakyRelu(0.2));
    }
    winograd_entry(b, "wino6 conv3x3 96->32 lrelu", Shape::new(1, 96, 128, 128), 32, WinogradTile::F6, Activation::LeakyRelu(0.2));
    // HCFlow's RRDB dense-block conv (LR 64x64 features, 256 F(4x4) tiles).
    winograd_entry(b, "wino4 conv3x3 160->32 lrelu 64x64", Shape::new(1, 160, 64, 64), 32, WinogradTile::F4, Activation::LeakyRelu(0.2));
    // The coupling-net outputs above as Winograd (M padded to a multiple of 4 rows).
    winograd_entry(b, "wino4 conv3x3 131->18", Shape::new(1, 131, 64, 64), 18, WinogradTile::F4, Activation::None);
    winograd_entry(b, "wino4 conv3x3 137->3", Shape::new(1, 137, 64, 64), 3, WinogradTile::F4, Activation::None);
    winograd_entry(b, "wino4 conv3x3 64->6", Shape::new(1, 64, 64, 64), 6, WinogradTile::F4, Activation::None);
    winograd_entry(b, "wino4 conv3x3 64->12 128x128", Shape::new(1, 64, 128, 128), 12, WinogradTile::F4, Activation::None);
    // SR3's deepest levels: 16 and 4 tiles, so the GEMM takes conv2d_narrow on CPU adapters.
    conv_entry(b, "conv3x3 512->512 16x16", Shape::new(1, 512, 16, 16), [512, 512, 3, 3], p1, Activation::None);
    conv_entry(b, "conv3x3 512->512 8x8", Shape::new(1, 512, 8, 8), [512, 512, 3, 3], p1, Activation::None);
    winograd_entry(b, "wino4 conv3x3 512->512 16x16", Shape::new(1, 512, 16, 16), 512, WinogradTile::F4, Activation::None);
    winograd_entry(b, "wino4 conv3x3 512->512 8x8", Shape::new(1, 512, 8, 8), 512, WinogradTile::F4, Activation::None);
    winograd_entry(b, "wino2 conv3x3 512->512 16x16", Shape::new(1, 512, 16, 16), 512, WinogradTile::F2, Activation::None);
    winograd_entry(b, "wino2 conv3x3 512->512 8x8", Shape::new(1, 512, 8, 8), 512, WinogradTile::F2, Activation::None);
    winograd_entry(b, "wino4 conv3x3 256->256 32x32", Shape::new(1, 256, 32, 32), 256, WinogradTile::F4, Activation::None);
    // SR3's 64x64 level (256 tiles).
    winograd_entry(b, "wino4 conv3x3 128->128 64x64", Shape::new(1, 128, 64, 64), 128, WinogradTile::F4, Activation::None);
    conv_entry_as(b, "f16 conv3x3 64->64", Shape::new(1, 64, 128, 128), [64, 64, 3, 3], p1, Activation::None, Dtype::F16);
    winograd_entry_as(b, "f16 wino4 conv3x3 64->64", Shape::new(1, 64, 128, 128), 64, WinogradTile::F4, Activation::None, Dtype::F16);
    conv_transposed_entry(b, "convT4x4s2 64->32", Shape::new(1, 64, 64, 64), [64, 32, 4, 4], ConvTranspose2dParams::new(2, 1, 0));
}

/// One benchmark entry: if `name` is selected, `prepare` builds its tensors
/// and dispatches and returns a shape description, the dispatches (run in
/// order, as one timed pass) and whatever must stay alive while they run.
fn entry<K>(b: &mut Bench, name: &str, prepare: impl FnOnce(&GpuContext) -> Result<(String, Vec<Dispatch>, K)>) {
    if !b.wants(name) {
        return;
    }
    let (desc, ds, keep) = prepare(b.ctx()).unwrap_or_else(|e| panic!("bench entry {name:?}: {e}"));
    b.bench_costed(name, &desc, &ds);
    drop(keep);
}

/// A tensor of `shape` with values in [-scale, scale), from `seed`.
/// Partial-sum scratch for per-sample reductions over `t`.
fn partials(ctx: &GpuContext, t: &Tensor) -> Result<Tensor> {
    let n = t.shape().n();
    Tensor::empty(ctx, reduce::partials_shape(n, t.numel() / n))
}

fn rand_tensor(ctx: &GpuContext, shape: Shape, seed: u64, scale: f32) -> Result<Tensor> {
    let v: Vec<f32> = rand_vec(shape.numel(), seed).iter().map(|x| x * scale).collect();
    Tensor::from_slice(ctx, shape, &v)
}

/// SR3's top level: 64 channels at 128x128 (1M elements, 4 MiB per tensor).
const SR3_TOP: Shape = Shape::new(1, 64, 128, 128);
/// HCFlow x4, 256x256 HR: the first Haar level.
const HC_L1: Shape = Shape::new(1, 12, 128, 128);

fn elementwise_family(b: &mut Bench) {
    let s = SR3_TOP;
    // Residual add (SR3 ResBlock skip), then the other binary/unary kernels on the same shape.
    entry(b, "elementwise add", |ctx| {
        let (x, y, o) = (rand_tensor(ctx, s, 10, 1.0)?, rand_tensor(ctx, s, 11, 1.0)?, Tensor::empty(ctx, s)?);
        Ok((format!("{s} + {s}"), vec![elementwise::add(ctx, &x, &y, &o)?], (x, y, o)))
    });
    entry(b, "elementwise axpby", |ctx| {
        let (x, y, o) = (rand_tensor(ctx, s, 12, 1.0)?, rand_tensor(ctx, s, 13, 1.0)?, Tensor::empty(ctx, s)?);
        Ok((format!("0.9*{s} + 0.1*{s}"), vec![elementwise::axpby(ctx, &x, &y, &o, 0.9, 0.1)?], (x, y, o)))
    });
    entry(b, "elementwise mul", |ctx| {
        let (x, y, o) = (rand_tensor(ctx, s, 14, 1.0)?, rand_tensor(ctx, s, 15, 1.0)?, Tensor::empty(ctx, s)?);
        Ok((format!("{s} * {s}"), vec![elementwise::mul(ctx, &x, &y, &o, 1.0)?], (x, y, o)))
    });
    entry(b, "elementwise affine", |ctx| {
        let (x, o) = (rand_tensor(ctx, s, 16, 1.0)?, Tensor::empty(ctx, s)?);
        Ok((format!("2*{s} - 1"), vec![elementwise::affine(ctx, &x, &o, 2.0, -1.0)?], (x, o)))
    });
    entry(b, "elementwise clamp", |ctx| {
        let (x, o) = (rand_tensor(ctx, s, 17, 2.0)?, Tensor::empty(ctx, s)?);
        Ok((format!("clamp({s}, -1, 1)"), vec![elementwise::clamp(ctx, &x, &o, -1.0, 1.0)?], (x, o)))
    });
    entry(b, "elementwise fill", |ctx| {
        let o = Tensor::empty(ctx, s)?;
        Ok((format!("{s} = 0"), vec![elementwise::fill(ctx, &o, 0.0)?], o))
    });
    // The SR3 sampler's per-step update on the 3-channel image: launch-bound.
    let img = Shape::new(1, 3, 128, 128);
    entry(b, "elementwise axpby small", |ctx| {
        let (x, y, o) = (rand_tensor(ctx, img, 18, 1.0)?, rand_tensor(ctx, img, 19, 1.0)?, Tensor::empty(ctx, img)?);
        Ok((format!("0.9*{img} + 0.1*{img}"), vec![elementwise::axpby(ctx, &x, &y, &o, 0.9, 0.1)?], (x, y, o)))
    });
}

fn reshape_family(b: &mut Bench) {
    // HCFlow x4 level 1: the 256x256 HR image <-> [1, 12, 128, 128].
    let hr = Shape::new(1, 3, 256, 256);
    let sq = Shape::new(1, 12, 128, 128);
    entry(b, "reshape squeeze", |ctx| {
        let (x, o) = (rand_tensor(ctx, hr, 20, 1.0)?, Tensor::empty(ctx, sq)?);
        Ok((format!("{hr} f2 -> {sq}"), vec![reshape::squeeze(ctx, &x, 2, &o)?], (x, o)))
    });
    entry(b, "reshape unsqueeze", |ctx| {
        let (x, o) = (rand_tensor(ctx, sq, 21, 1.0)?, Tensor::empty(ctx, hr)?);
        Ok((format!("{sq} f2 -> {hr}"), vec![reshape::unsqueeze(ctx, &x, 2, &o)?], (x, o)))
    });
    entry(b, "reshape haar_down", |ctx| {
        let (x, o) = (rand_tensor(ctx, hr, 22, 1.0)?, Tensor::empty(ctx, sq)?);
        Ok((format!("{hr} -> {sq}"), vec![reshape::haar_down(ctx, &x, &o)?], (x, o)))
    });
    entry(b, "reshape haar_up", |ctx| {
        let (x, o) = (rand_tensor(ctx, sq, 23, 1.0)?, Tensor::empty(ctx, hr)?);
        Ok((format!("{sq} -> {hr}"), vec![reshape::haar_up(ctx, &x, &o)?], (x, o)))
    });
    // SR3 decoder skip concat at the top level: 64 + 64 channels at 128x128.
    entry(b, "reshape concat_channels", |ctx| {
        let (x, y) = (rand_tensor(ctx, SR3_TOP, 24, 1.0)?, rand_tensor(ctx, SR3_TOP, 25, 1.0)?);
        let os = Shape::new(1, 128, 128, 128);
        let o = Tensor::empty(ctx, os)?;
        Ok((format!("2 x {SR3_TOP} -> {os}"), reshape::concat_channels(ctx, &[&x, &y], &o)?, (x, y, o)))
    });
    // SR3 Upsample before its 3x3 conv: 64 channels 64x64 -> 128x128.
    entry(b, "reshape upsample_nearest", |ctx| {
        let xs = Shape::new(1, 64, 64, 64);
        let (x, o) = (rand_tensor(ctx, xs, 26, 1.0)?, Tensor::empty(ctx, SR3_TOP)?);
        Ok((format!("{xs} x2 -> {SR3_TOP}"), vec![reshape::upsample_nearest(ctx, &x, 2, &o)?], (x, o)))
    });
}

fn group_norm_entry(b: &mut Bench, name: &str, s: Shape, groups: usize, swish: bool) {
    group_norm_entry_as(b, name, s, groups, swish, Dtype::F32)
}

fn group_norm_entry_as(b: &mut Bench, name: &str, s: Shape, groups: usize, swish: bool, dt: Dtype) {
    if dt == Dtype::F16 && !b.ctx().has_f16() {
        return;
    }
    entry(b, name, |ctx| {
        let c = s.c();
        let gamma: Vec<f32> = rand_vec(c, 31).iter().map(|v| 1.0 + 0.1 * v).collect();
        let beta: Vec<f32> = rand_vec(c, 32).iter().map(|v| 0.1 * v).collect();
        let gn = GroupNorm::new(ctx, &gamma, &beta, groups, 1e-5)?;
        let x = Tensor::from_slice_as(ctx, s, &rand_tensor(ctx, s, 33, 1.0)?.to_vec(ctx)?, dt)?;
        let o = Tensor::empty_as(ctx, s, dt)?;
        let ds = gn.prepare(ctx, &x, &o, &Tensor::empty(ctx, gn.scratch_shape(x.shape()))?, swish)?;
        Ok((format!("{s} {groups} groups{}", if swish { " +swish" } else { "" }), ds, (gn, x, o)))
    });
}

fn norm_family(b: &mut Bench) {
    // SR3 ResBlocks: GroupNorm(32) then Swish, at 64x64 (128 ch) and 128x128 (64 ch).
    let mid = Shape::new(1, 128, 64, 64);
    group_norm_entry(b, "norm groupnorm", mid, 32, false);
    group_norm_entry(b, "norm groupnorm+swish", mid, 32, true);
    group_norm_entry(b, "norm groupnorm+swish top", SR3_TOP, 32, true);
    group_norm_entry_as(b, "f16 norm groupnorm+swish", mid, 32, true, Dtype::F16);
    // SR3 decoder: GroupNorm + Swish over cat(h, skip) at 64x64, 128 + 128 channels.
    group_norm_cat_entry(b, "norm groupnorm_cat+swish", 128, 64, 34);
    // SR3's 16x16 decoder level, 512 + 512 channels: 256-value planes.
    group_norm_cat_entry(b, "norm groupnorm_cat+swish 16x16", 512, 16, 38);
}

/// GroupNorm(32) + Swish over cat(h, skip), both `ch` channels of `side` x `side`.
fn group_norm_cat_entry(b: &mut Bench, name: &str, ch: usize, side: usize, seed: u64) {
    entry(b, name, move |ctx| {
        let (parts, c) = ([ch, ch], 2 * ch);
        let gamma: Vec<f32> = rand_vec(c, seed).iter().map(|v| 1.0 + 0.1 * v).collect();
        let beta: Vec<f32> = rand_vec(c, seed + 1).iter().map(|v| 0.1 * v).collect();
        let gn = GroupNormCat::new(ctx, &gamma, &beta, 32, 1e-5, &parts)?;
        let s = Shape::new(1, ch, side, side);
        let xs = [rand_tensor(ctx, s, seed + 2, 1.0)?, rand_tensor(ctx, s, seed + 3, 1.0)?];
        let os = [Tensor::empty(ctx, s)?, Tensor::empty(ctx, s)?];
        let sc = Tensor::empty(ctx, gn.scratch_shape(1, side, side))?;
        let ds = gn.prepare(ctx, &[&xs[0], &xs[1]], &[&os[0], &os[1]], &sc, true)?;
        Ok((format!("cat({s}, {s}) 32 groups +swish"), ds, (gn, xs, os, sc)))
    });
}

fn matmul_family(b: &mut Bench) {
    entry(b, "matmul 512^3", |ctx| {
        let s = Shape::new(1, 1, 512, 512);
        let (x, y, o) = (rand_tensor(ctx, s, 40, 1.0)?, rand_tensor(ctx, s, 41, 1.0)?, Tensor::empty(ctx, s)?);
        Ok(("[512x512] @ [512x512]".to_string(), vec![matmul::matmul(ctx, &x, &y, &o, &MatmulOpts::default())?], (x, y, o)))
    });
    let linear = |rows: usize, fin: usize, fout: usize, seed: u64| {
        move |ctx: &GpuContext| -> Result<(String, Vec<Dispatch>, (Linear, Tensor, Tensor))> {
            let w: Vec<f32> = rand_vec(fin * fout, seed).iter().map(|v| v * 0.1).collect();
            let bias = rand_vec(fout, seed + 1);
            let l = Linear::new(ctx, &w, Some(&bias), fout, fin)?;
            let x = rand_tensor(ctx, Shape::new(1, 1, rows, fin), seed + 2, 1.0)?;
            let o = Tensor::empty(ctx, Shape::new(1, 1, rows, fout))?;
            let d = l.prepare(ctx, &x, &o)?;
            Ok((format!("{rows} x {fin} -> {fout} (+bias)"), vec![d], (l, x, o)))
        }
    };
    // SR3's noise-level MLP layer Linear(64 -> 256) on one sample: launch-bound.
    entry(b, "matmul linear 64->256", linear(1, 64, 256, 42));
    // A token-style Linear over every pixel of a 32x32 map with 512 channels.
    entry(b, "matmul linear 512->512", linear(1024, 512, 512, 45));
}

fn attention_entry(b: &mut Bench, name: &str, s: Shape) {
    entry(b, name, |ctx| {
        let att = Attention::new(ctx, s, 1)?;
        let qs = Shape::new(s.n(), 3 * s.c(), s.h(), s.w());
        let (qkv, o) = (rand_tensor(ctx, qs, 50, 1.0)?, Tensor::empty(ctx, s)?);
        let ds = att.prepare(ctx, &qkv, &o, &Tensor::empty(ctx, att.scores_shape())?)?;
        Ok((format!("qkv {qs} 1 head -> {s}"), ds, (att, qkv, o)))
    });
}

fn attention_family(b: &mut Bench) {
    // SR3 16->128 attends at 16x16 (512 channels); 32x32 with 256 channels for comparison.
    attention_entry(b, "attention 16x16 c512", Shape::new(1, 512, 16, 16));
    attention_entry(b, "attention 32x32 c256", Shape::new(1, 256, 32, 32));
}

fn actnorm_family(b: &mut Bench) {
    let s = HC_L1;
    for (name, reverse) in [("actnorm forward", false), ("actnorm reverse", true)] {
        entry(b, name, |ctx| {
            let bias: Vec<f32> = rand_vec(s.c(), 60).iter().map(|v| 0.1 * v).collect();
            let logs: Vec<f32> = rand_vec(s.c(), 61).iter().map(|v| 0.1 * v).collect();
            let an = ActNorm::new(ctx, &bias, &logs)?;
            let (x, o, ld) = (rand_tensor(ctx, s, 62, 1.0)?, Tensor::empty(ctx, s)?, Tensor::filled(ctx, Shape::new(1, 1, 1, 1), 0.0)?);
            let ds = if reverse { an.reverse(ctx, &x, &o, Some(&ld))? } else { an.forward(ctx, &x, &o, Some(&ld))? };
            Ok((format!("{s} +logdet"), ds, (an, x, o, ld)))
        });
    }
}

fn invconv_entry(b: &mut Bench, name: &str, s: Shape, reverse: bool) {
    entry(b, name, |ctx| {
        let c = s.c();
        // Identity plus small noise: well conditioned, so the LU inverse exists.
        let mut w: Vec<f32> = rand_vec(c * c, 70).iter().map(|v| 0.1 * v).collect();
        for i in 0..c {
            w[i * c + i] += 1.0;
        }
        let ic = InvConv::from_weight(ctx, &w, c)?;
        let (x, o, ld) = (rand_tensor(ctx, s, 71, 1.0)?, Tensor::empty(ctx, s)?, Tensor::filled(ctx, Shape::new(1, 1, 1, 1), 0.0)?);
        let ds = if reverse { ic.reverse(ctx, &x, &o, Some(&ld))? } else { ic.forward(ctx, &x, &o, Some(&ld))? };
        Ok((format!("{s} {c}x{c} +logdet"), ds, (ic, x, o, ld)))
    });
}

fn invconv_family(b: &mut Bench) {
    invconv_entry(b, "invconv forward c12", HC_L1, false);
    invconv_entry(b, "invconv reverse c12", HC_L1, true);
    invconv_entry(b, "invconv forward c24", Shape::new(1, 24, 128, 128), false);
}

fn coupling_family(b: &mut Bench) {
    let s = HC_L1;
    let split = s.c() / 2;
    let hs = Shape::new(1, 2 * (s.c() - split), 128, 128);
    let one = Shape::new(1, 1, 1, 1);
    for (name, reverse) in [("coupling affine_forward", false), ("coupling affine_reverse", true)] {
        entry(b, name, |ctx| {
            let (z, h, o) = (rand_tensor(ctx, s, 80, 1.0)?, rand_tensor(ctx, hs, 81, 0.5)?, Tensor::empty(ctx, s)?);
            let ld = Tensor::filled(ctx, one, 0.0)?;
            let ds = if reverse {
                coupling::affine_reverse(ctx, &z, &h, &o, Some(&ld), &partials(ctx, &z)?, split)?
            } else {
                coupling::affine_forward(ctx, &z, &h, &o, Some(&ld), &partials(ctx, &z)?, split)?
            };
            Ok((format!("z {s} h {hs} split {split} +logdet"), ds, (z, h, o, ld)))
        });
    }
    // HCFlow level-1 split: 9 high-frequency channels modelled by a conditional Gaussian.
    let gs = Shape::new(1, 9, 128, 128);
    let gh = Shape::new(1, 18, 128, 128);
    entry(b, "coupling gaussian_sample", |ctx| {
        let (h, eps, o) = (rand_tensor(ctx, gh, 82, 0.5)?, rand_tensor(ctx, gs, 83, 1.0)?, Tensor::empty(ctx, gs)?);
        let d = coupling::gaussian_sample(ctx, &h, &eps, 0.8, &o, GaussianScale::Logs)?;
        Ok((format!("eps {gs} h {gh}"), vec![d], (h, eps, o)))
    });
    entry(b, "coupling gaussian_logp", |ctx| {
        let (x, h, ld) = (rand_tensor(ctx, gs, 84, 1.0)?, rand_tensor(ctx, gh, 85, 0.5)?, Tensor::filled(ctx, one, 0.0)?);
        let ds = coupling::gaussian_logp(ctx, &x, &h, &ld, &partials(ctx, &x)?, GaussianScale::Logs)?;
        Ok((format!("x {gs} h {gh} -> logdet"), ds, (x, h, ld)))
    });
}

fn reduce_family(b: &mut Bench) {
    entry(b, "reduce sum_per_sample", |ctx| {
        let s = SR3_TOP;
        let (x, o) = (rand_tensor(ctx, s, 90, 1.0)?, Tensor::empty(ctx, Shape::new(1, 1, 1, 1))?);
        Ok((format!("{s} -> [1, 1, 1, 1]"), reduce::sum_per_sample(ctx, &x, &o, &partials(ctx, &x)?)?, (x, o)))
    });
}

fn rng_family(b: &mut Bench) {
    // 1M elements (2^20), e.g. SR3's top-level map; Philox4x32-10, 4 values per thread.
    let s = Shape::new(1, 1, 1024, 1024);
    entry(b, "rng uniform", |ctx| {
        let o = Tensor::empty(ctx, s)?;
        Ok((format!("{s} U(0,1)"), vec![rng::uniform(ctx, &o, 7, 0)?], o))
    });
    entry(b, "rng normal", |ctx| {
        let o = Tensor::empty(ctx, s)?;
        Ok((format!("{s} N(0,1)"), vec![rng::normal(ctx, &o, 7, 0, 0.0, 1.0)?], o))
    });
}

fn softmax_family(b: &mut Bench) {
    // PixelCNN logits at 32x32: 3 colour groups of 256 intensities per pixel.
    let s = Shape::new(1, 768, 32, 32);
    let rows = Shape::new(1, 3, 32, 32);
    let g = 3;
    entry(b, "softmax softmax", |ctx| {
        let (x, o) = (rand_tensor(ctx, s, 100, 4.0)?, Tensor::empty(ctx, s)?);
        Ok((format!("{s} {g} groups T=1"), vec![softmax::softmax(ctx, &x, &o, 1.0, g)?], (x, o)))
    });
    entry(b, "softmax log_softmax", |ctx| {
        let (x, o) = (rand_tensor(ctx, s, 101, 4.0)?, Tensor::empty(ctx, s)?);
        Ok((format!("{s} {g} groups"), vec![softmax::log_softmax(ctx, &x, &o, g)?], (x, o)))
    });
    entry(b, "softmax argmax", |ctx| {
        let (x, o) = (rand_tensor(ctx, s, 102, 4.0)?, Tensor::empty(ctx, rows)?);
        Ok((format!("{s} {g} groups -> {rows}"), vec![softmax::argmax(ctx, &x, &o, g)?], (x, o)))
    });
    entry(b, "softmax sample_categorical", |ctx| {
        let x = rand_tensor(ctx, s, 103, 4.0)?;
        // Uniforms strictly inside (0, 1): [0.01, 0.99).
        let uv: Vec<f32> = rand_vec(rows.numel(), 104).iter().map(|v| 0.5 + 0.49 * v).collect();
        let (u, o) = (Tensor::from_slice(ctx, rows, &uv)?, Tensor::empty(ctx, rows)?);
        Ok((format!("{s} {g} groups T=1 -> {rows}"), vec![softmax::sample_categorical(ctx, &x, &u, &o, g, 1.0)?], (x, u, o)))
    });
}

fn main() {
    // cargo passes `--bench`; everything not starting with '-' is a filter.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let paired = std::env::args().any(|a| a == "--paired");
    let mut b = Bench::new(filters, paired);
    let info = b.ctx().info();
    let clock = if b.ts.is_some() { "GPU timestamp queries (compute pass only)" } else { "wall clock (submit + sync)" };
    println!("device: {} ({})", info.name, info.backend);
    println!("timing: median of repeated runs, {clock}");
    if paired {
        println!("paired: each run's share against short probe runs just before it, median (see the module doc)");
    }
    let paired_head = if paired { format!(" {:>9}", "paired") } else { String::new() };
    println!("{:<28} {:<56} {:>10} {:>10} {:>10} {:>9}{paired_head}", "kernel", "shape", "ms", "GFLOP/s", "GB/s", "roofline");
    b.probe_roofline();
    conv_family(&mut b);
    elementwise_family(&mut b);
    reshape_family(&mut b);
    norm_family(&mut b);
    matmul_family(&mut b);
    attention_family(&mut b);
    actnorm_family(&mut b);
    invconv_family(&mut b);
    coupling_family(&mut b);
    reduce_family(&mut b);
    rng_family(&mut b);
    softmax_family(&mut b);
}
