//! Shared test helpers: one GPU context per test binary, a seeded RNG,
//! poisoned outputs and tolerance checks that report the measured error.
#![allow(dead_code)]

use std::sync::OnceLock;

use wgsr::gpu::Dispatch;
use wgsr::{GpuContext, Shape, Tensor};

/// A scratch tensor of `shape` for ops that take caller-owned scratch.
pub fn scratch(c: &GpuContext, shape: Shape) -> Tensor {
    Tensor::empty(c, shape).unwrap()
}

/// Partial-sum scratch for per-sample reductions over `t` (`reduce::partials_shape`).
pub fn partials_for(c: &GpuContext, t: &Tensor) -> Tensor {
    let n = t.shape().n();
    scratch(c, wgsr::ops::reduce::partials_shape(n, t.numel() / n))
}

/// One context for the whole binary (creating devices on lavapipe is slow).
pub fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| GpuContext::new().unwrap_or_else(|e| panic!("{e}")))
}

/// Small deterministic RNG (splitmix64) so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi), never exactly zero (non-zero inputs catch
    /// kernels that ignore a term).
    pub fn range(&mut self, lo: f64, hi: f64) -> f32 {
        loop {
            let v = (lo + (hi - lo) * self.uniform()) as f32;
            if v != 0.0 {
                return v;
            }
        }
    }
    pub fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n).map(|_| self.range(lo, hi)).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Upload random values in [lo, hi) as a tensor; returns host copy too.
pub fn rand_tensor(rng: &mut Rng, shape: Shape, lo: f64, hi: f64) -> (Tensor, Vec<f32>) {
    let v = rng.vec(shape.numel(), lo, hi);
    (Tensor::from_slice(ctx(), shape, &v).unwrap(), v)
}

/// An output tensor pre-filled with NaN.
pub fn poisoned(shape: Shape) -> Tensor {
    Tensor::filled(ctx(), shape, f32::NAN).unwrap()
}

/// Submit, wait and download `out`.
pub fn run_and_read(d: impl wgsr::ops::IntoDispatches, out: &Tensor) -> Vec<f32> {
    let d: Vec<Dispatch> = d.into_dispatches();
    ctx().run(&d).unwrap();
    out.to_vec(ctx()).unwrap()
}

/// Compare GPU output to an f64 reference: each element must satisfy
/// |got - want| <= abs + rel * |want|. NaN or a length mismatch fails.
/// Prints the measured max abs / rel error for the closing notes.
pub fn assert_close(name: &str, got: &[f32], want: &[f64], abs: f64, rel: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length {} vs reference {}", got.len(), want.len());
    let mut max_abs = 0.0f64;
    let mut max_rel = 0.0f64;
    let mut worst = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let err = (g - w).abs();
        if !err.is_finite() {
            panic!("{name}: element {i} is {g} (reference {w}): unwritten or non-finite");
        }
        max_abs = max_abs.max(err);
        max_rel = max_rel.max(err / w.abs().max(1e-30));
        if err > abs + rel * w.abs() && worst.is_none() {
            worst = Some((i, g, w));
        }
    }
    println!("max_err {name}: abs {max_abs:.3e} rel {max_rel:.3e} (n={})", got.len());
    if let Some((i, g, w)) = worst {
        panic!("{name}: element {i} = {g}, reference {w} (tolerance abs {abs:e} + rel {rel:e}); max abs err {max_abs:e}");
    }
}

/// Exact equality (for permutations and copies).
pub fn assert_exact(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.to_bits() == w.to_bits(), "{name}: element {i} = {g}, expected {w}");
    }
    println!("max_err {name}: exact (n={})", got.len());
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Build-side helper of the graph tests: run `graph` once with the named
/// inputs and return its output `output` and the graph's dump.
pub fn run_graph(graph: wgsr::graph::Graph, inputs: &[(&str, &[f32])], output: &str) -> (Vec<f32>, String) {
    let c = ctx();
    let dump = graph.dump();
    let mut ex = wgsr::graph::Executor::new(c, graph).unwrap();
    for (name, v) in inputs {
        ex.set_input(c, name, v).unwrap();
    }
    ex.run(c).unwrap();
    (ex.read_output(c, output).unwrap(), dump)
}
