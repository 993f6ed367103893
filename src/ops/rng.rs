//! Counter-based random numbers on the GPU: Philox 4x32-10 (Salmon, Moraes,
//! Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11), in the
//! Random123 form (multipliers 0xD2511F53 / 0xCD9E8D57, Weyl key increments
//! 0x9E3779B9 / 0xBB67AE85), with a bit-exact host twin so a run can be
//! reproduced or checked on the CPU.
//!
//! # The stream
//!
//! A stream is named by `(seed: u64, offset: u64)`. Element `i` (0-based) of
//! the tensor being filled comes from Philox block `b = offset + i / 4`
//! (wrapping u64 addition):
//!
//! ```text
//! key     = [seed as u32, (seed >> 32) as u32]
//! counter = [b as u32, (b >> 32) as u32, 0, 0]
//! word    = philox4x32_10(counter, key)[i % 4]
//! ```
//!
//! So `offset` counts blocks of four elements: the stream of `(seed, k)` is
//! the stream of `(seed, 0)` with its first `4 k` elements dropped. A caller
//! that needs fresh noise per step (diffusion sampling) advances the offset by
//! `ceil(n / 4)` per `n` numbers drawn, or rewrites it with [`set_stream`].
//!
//! * Uniform: `u = (word >> 9) * 2^-23 + 2^-24`, i.e. the top 23 bits mapped to
//!   bin centres, exact in f32 and strictly inside (0, 1)
//!   (min 2^-24, max 1 - 2^-24). 23 rather than 24 bits: with 24 bits the bin
//!   centres above 1/2 are not representable in f32 and the largest rounds
//!   to exactly 1.0.
//! * Normal: Box-Muller on the block's uniform pairs (words 0,1) and (2,3):
//!   `z0 = r cos(2 pi u1)`, `z1 = r sin(2 pi u1)` with `r = sqrt(-2 ln u0)`,
//!   `z2, z3` likewise from `(u2, u3)`. Element `i` takes `z[i % 4]`, so one
//!   block gives four normals and the offset rule above is unchanged. The
//!   output is `mean + std * z`. |z| <= sqrt(48 ln 2) ~ 5.77 by construction.
//!
//! Uniforms are bit-identical between GPU and host. Normals agree to within
//! f32 rounding (measured < 5e-7 absolute for std = 1): the kernel does not
//! trust the builtin `log` near 1 or `sin`/`cos` (Vulkan only bounds their
//! absolute error, ~1e-6 to 5e-4) and evaluates `ln u` for u > 1/2 and the
//! angle by short series instead.

use crate::gpu::{grid_1d, to_u32, wg_entries, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource, WG};
use crate::{Error, Result, Tensor};

const ENTRIES: [EntryPoint; 3] = wg_entries(["rng_uniform", "rng_normal", "philox_blocks"]);
pub(crate) const SHADER: ShaderSource = ShaderSource::new("rng", include_str!("../../kernels/rng.wgsl"))
    .params(&[RngUniform::LAYOUT])
    .entries(&ENTRIES);

crate::kernel_params! {
    /// Uniform block of kernels/rng.wgsl: the stream `(seed, offset)` as
    /// 32-bit halves, plus the normal's mean and std.
    pub struct RngUniform = "rng"::"Params" {
        n: u32,
        seed_lo: u32,
        seed_hi: u32,
        off_lo: u32,
        off_hi: u32,
        mean: f32,
        std_: f32,
        _pad: u32,
    }
}

impl RngUniform {
    /// Point the block at the stream `(seed, offset)`.
    pub fn set_stream(&mut self, seed: u64, offset: u64) {
        self.seed_lo = seed as u32;
        self.seed_hi = (seed >> 32) as u32;
        self.off_lo = offset as u32;
        self.off_hi = (offset >> 32) as u32;
    }
}

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox 4x32 with 10 rounds, exactly as Random123's `philox4x32_R(10, ..)`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for r in 0..10 {
        if r > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = M0 as u64 * c[0] as u64;
        let p1 = M1 as u64 * c[2] as u64;
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Host view of the stream for one seed (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Philox {
    key: [u32; 2],
}

impl Philox {
    pub fn new(seed: u64) -> Self {
        Philox { key: [seed as u32, (seed >> 32) as u32] }
    }
    /// The four words of block `b`.
    pub fn block(&self, b: u64) -> [u32; 4] {
        philox4x32_10([b as u32, (b >> 32) as u32, 0, 0], self.key)
    }
    /// Raw words of elements `0..n` of the stream at `offset`.
    pub fn words(&self, offset: u64, n: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(n);
        let mut b = offset;
        while out.len() < n {
            let w = self.block(b);
            out.extend_from_slice(&w[..(n - out.len()).min(4)]);
            b = b.wrapping_add(1);
        }
        out
    }
}

/// The uniform a stream word maps to (exactly what the GPU computes).
pub fn word_to_uniform(x: u32) -> f32 {
    (x >> 9) as f32 * (1.0 / 8_388_608.0) + (1.0 / 16_777_216.0)
}

/// Elements `0..n` of the uniform stream `(seed, offset)`; bit-identical to [`uniform`].
pub fn host_uniform(seed: u64, offset: u64, n: usize) -> Vec<f32> {
    Philox::new(seed).words(offset, n).into_iter().map(word_to_uniform).collect()
}

/// Elements `0..n` of `mean + std * N(0,1)` for the stream `(seed, offset)`,
/// the host twin of [`normal`]: Box-Muller evaluated in f64 on the same f32
/// uniforms and rounded once, so it differs from the GPU only by the kernel's
/// f32 rounding (its ln / cos / sin are accurate to about an ulp).
pub fn host_normal(seed: u64, offset: u64, n: usize, mean: f32, std: f32) -> Vec<f32> {
    let ph = Philox::new(seed);
    let mut out = Vec::with_capacity(n);
    let mut b = offset;
    while out.len() < n {
        let u = ph.block(b).map(word_to_uniform);
        let mut z = [0.0f64; 4];
        for pair in 0..2 {
            let r = (-2.0 * (u[2 * pair] as f64).ln()).sqrt();
            let theta = std::f64::consts::TAU * u[2 * pair + 1] as f64;
            z[2 * pair] = r * theta.cos();
            z[2 * pair + 1] = r * theta.sin();
        }
        for &zj in &z[..(n - out.len()).min(4)] {
            out.push((mean as f64 + std as f64 * zj) as f32);
        }
        b = b.wrapping_add(1);
    }
    out
}

fn stream_params(n: usize, seed: u64, offset: u64, mean: f32, std: f32) -> RngUniform {
    let mut p = RngUniform { n: to_u32(n), mean, std_: std, ..Default::default() };
    p.set_stream(seed, offset);
    p
}

fn fill(ctx: &GpuContext, entry: &str, out: &Tensor, params: &RngUniform, flops_per: f64) -> Result<Dispatch> {
    let n = out.numel();
    let threads = n.div_ceil(4);
    Ok(ctx
        .dispatch(KernelCall {
            shader: &SHADER,
            entry,
            constants: &[],
            params: Some(params),
            buffers: &[out.arg_mut()],
            workgroups: grid_1d(threads.div_ceil(WG)),
        })?
        .with_cost(flops_per * n as f64, 4.0 * n as f64))
}

/// Fill `out` (any shape, in flat NCHW order) with U(0,1) from stream `(seed, offset)`.
pub fn uniform(ctx: &GpuContext, out: &Tensor, seed: u64, offset: u64) -> Result<Dispatch> {
    // ~10 rounds x 2 multiplies (4 16-bit products each) per block of 4.
    fill(ctx, "rng_uniform", out, &stream_params(out.numel(), seed, offset, 0.0, 1.0), 30.0)
}

/// Fill `out` with `mean + std * N(0,1)` from stream `(seed, offset)`.
pub fn normal(ctx: &GpuContext, out: &Tensor, seed: u64, offset: u64, mean: f32, std: f32) -> Result<Dispatch> {
    if !mean.is_finite() || !std.is_finite() {
        return Err(Error::InvalidArgument(format!("rng::normal: mean {mean} and std {std} must be finite")));
    }
    fill(ctx, "rng_normal", out, &stream_params(out.numel(), seed, offset, mean, std), 60.0)
}

/// Point a prepared [`uniform`] / [`normal`] dispatch at another stream
/// before replaying it (the element count, mean and std are kept). Refuses a
/// dispatch that does not carry an [`RngUniform`].
pub fn set_stream(ctx: &GpuContext, d: &Dispatch, seed: u64, offset: u64) -> Result<()> {
    d.update(ctx, |p: &mut RngUniform| p.set_stream(seed, offset))
}

/// Raw Philox on the GPU: `input` holds rows of six u32 words
/// `(ctr0, ctr1, ctr2, ctr3, key0, key1)` stored as f32 bit patterns
/// (`f32::from_bits`); `out` receives four words per row, read back with
/// `f32::to_bits`. For known-answer tests of the kernel's arithmetic.
pub fn philox_blocks(ctx: &GpuContext, input: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let (ni, no) = (input.numel(), out.numel());
    if ni % 6 != 0 || no != ni / 6 * 4 {
        return Err(Error::Shape(format!(
            "rng::philox_blocks: input {} must hold 6 words per row and out {} 4 words per row",
            input.shape(),
            out.shape()
        )));
    }
    let rows = ni / 6;
    let params = stream_params(rows, 0, 0, 0.0, 0.0);
    Ok(ctx
        .dispatch(KernelCall {
            shader: &SHADER,
            entry: "philox_blocks",
            constants: &[],
            params: Some(&params),
            buffers: &[out.arg_mut(), input.arg()],
            workgroups: grid_1d(rows.div_ceil(WG)),
        })?
        .with_cost(120.0 * rows as f64, 40.0 * rows as f64))
}
