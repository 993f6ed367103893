//! Elementwise arithmetic: fill, y = alpha*a + beta*b, y = alpha*a*b, affine, clamp,
//! quantize, and a per-(sample, channel) bias broadcast over H x W.

use crate::gpu::{grid_1d, to_u32, wg_entries, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource, WG};
use crate::ops::same_shape;
use crate::{Result, Tensor};

const ENTRIES: [EntryPoint; 8] = wg_entries(["axpby", "mul", "fill", "affine", "clamp_range", "quantize", "add_channel_bias", "gate"]);
pub(crate) const SHADER: ShaderSource = ShaderSource::new("elementwise", include_str!("../../kernels/elementwise.wgsl"))
    .params(&[ElementwiseUniform::LAYOUT])
    .entries(&ENTRIES);

crate::kernel_params! {
    /// Uniform block of kernels/elementwise.wgsl. A graph rewrites `alpha` /
    /// `beta` (the runtime scalars) with `Dispatch::update`.
    pub struct ElementwiseUniform = "elementwise"::"Params" {
        n: u32,
        alpha: f32,
        beta: f32,
        /// add_channel_bias: H*W; gate: C*H*W; 0 for the others.
        span: u32,
    }
}

/// The block of the scalar entries: n elements, alpha, beta.
fn scalar_params(n: usize, alpha: f32, beta: f32) -> ElementwiseUniform {
    ElementwiseUniform { n: to_u32(n), alpha, beta, span: 0 }
}

fn binary(ctx: &GpuContext, entry: &str, a: &Tensor, b: &Tensor, out: &Tensor, alpha: f32, beta: f32) -> Result<Dispatch> {
    same_shape(entry, &[a, b, out])?;
    let n = out.numel();
    let params = scalar_params(n, alpha, beta);
    Ok(ctx
        .dispatch(KernelCall {
            shader: &SHADER,
            entry,
            constants: &[],
            params: Some(&params),
            buffers: &[out.arg_mut(), a.arg(), b.arg()],
            workgroups: grid_1d(n.div_ceil(WG)),
        })?
        .with_cost(2.0 * n as f64, 12.0 * n as f64))
}

fn unary(ctx: &GpuContext, entry: &str, x: &Tensor, out: &Tensor, alpha: f32, beta: f32) -> Result<Dispatch> {
    same_shape(entry, &[x, out])?;
    let n = out.numel();
    let params = scalar_params(n, alpha, beta);
    Ok(ctx
        .dispatch(KernelCall {
            shader: &SHADER,
            entry,
            constants: &[],
            params: Some(&params),
            buffers: &[out.arg_mut(), x.arg()],
            workgroups: grid_1d(n.div_ceil(WG)),
        })?
        .with_cost(2.0 * n as f64, 8.0 * n as f64))
}

/// out = alpha * a + beta * b (same shapes). `out` may not alias `a` or `b`.
pub fn axpby(ctx: &GpuContext, a: &Tensor, b: &Tensor, out: &Tensor, alpha: f32, beta: f32) -> Result<Dispatch> {
    binary(ctx, "axpby", a, b, out, alpha, beta)
}

/// out = a + b.
pub fn add(ctx: &GpuContext, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Dispatch> {
    axpby(ctx, a, b, out, 1.0, 1.0)
}

/// out = alpha * a * b (same shapes).
pub fn mul(ctx: &GpuContext, a: &Tensor, b: &Tensor, out: &Tensor, alpha: f32) -> Result<Dispatch> {
    binary(ctx, "mul", a, b, out, alpha, 0.0)
}

/// out = alpha * x + beta.
pub fn affine(ctx: &GpuContext, x: &Tensor, out: &Tensor, alpha: f32, beta: f32) -> Result<Dispatch> {
    unary(ctx, "affine", x, out, alpha, beta)
}

/// out = clamp(x, lo, hi).
pub fn clamp(ctx: &GpuContext, x: &Tensor, out: &Tensor, lo: f32, hi: f32) -> Result<Dispatch> {
    if !(lo <= hi) {
        return Err(crate::Error::InvalidArgument(format!("clamp range [{lo}, {hi}] is empty")));
    }
    unary(ctx, "clamp_range", x, out, lo, hi)
}

/// out = round(clamp(x, 0, 1) * levels) / levels (e.g. `levels = 255`: an
/// 8-bit image), rounding half to even like torch.round; a non-finite `x`
/// passes through unchanged (as in [`clamp`]); a zero result is +0 (also for
/// `x = -0`). `levels` must be finite and at least 1; `out` must be a buffer
/// other than `x`'s. The quotient is WGSL's f32 division (correctly rounded
/// on lavapipe; Vulkan allows 2.5 ulp).
pub fn quantize(ctx: &GpuContext, x: &Tensor, out: &Tensor, levels: f32) -> Result<Dispatch> {
    if !(levels.is_finite() && levels >= 1.0) {
        return Err(crate::Error::InvalidArgument(format!("quantize: levels {levels} must be finite and >= 1")));
    }
    if crate::ops::flow::same_buffer(x, out) {
        return Err(crate::Error::InvalidArgument("quantize: x and the output are the same buffer".into()));
    }
    unary(ctx, "quantize", x, out, levels, 0.0)
}

/// out = value everywhere.
pub fn fill(ctx: &GpuContext, out: &Tensor, value: f32) -> Result<Dispatch> {
    let n = out.numel();
    let params = scalar_params(n, value, 0.0);
    Ok(ctx
        .dispatch(KernelCall {
            shader: &SHADER,
            entry: "fill",
            constants: &[],
            params: Some(&params),
            buffers: &[out.arg_mut()],
            workgroups: grid_1d(n.div_ceil(WG)),
        })?
        .with_cost(0.0, 4.0 * n as f64))
}

/// out[n,c,h,w] = x[n,c,h,w] + alpha * bias[n,c]: a per-sample, per-channel
/// bias broadcast over H x W (`bias` holds N*C values, e.g. shape [N,C,1,1]).
/// `out` may not alias `x` or `bias`.
pub fn add_channel_bias(ctx: &GpuContext, x: &Tensor, bias: &Tensor, out: &Tensor, alpha: f32) -> Result<Dispatch> {
    same_shape("add_channel_bias", &[x, out])?;
    let s = x.shape();
    if bias.numel() != s.n() * s.c() {
        return Err(crate::Error::Shape(format!(
            "add_channel_bias: bias {} must hold one value per (sample, channel) of {s} ({} values)",
            bias.shape(),
            s.n() * s.c()
        )));
    }
    let n = out.numel();
    let params = ElementwiseUniform { n: to_u32(n), alpha, beta: 0.0, span: to_u32(s.hw()) };
    Ok(ctx
        .dispatch(KernelCall {
            shader: &SHADER,
            entry: "add_channel_bias",
            constants: &[],
            params: Some(&params),
            buffers: &[out.arg_mut(), x.arg(), bias.arg()],
            workgroups: grid_1d(n.div_ceil(WG)),
        })?
        .with_cost(2.0 * n as f64, 8.0 * n as f64 + 4.0 * bias.numel() as f64))
}

/// Gated activation `tanh(x[:, :C]) * sigmoid(x[:, C:])` of `x` [N, 2C, H, W]
/// into `out` [N, C, H, W] (PixelCNN's gate, one pass instead of three).
pub fn gate(ctx: &GpuContext, x: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let (s, o) = (x.shape(), out.shape());
    if s.c() % 2 != 0 || o != crate::Shape::new(s.n(), s.c() / 2, s.h(), s.w()) {
        return Err(crate::Error::Shape(format!("gate: input {s} must have 2C channels for the output {o}")));
    }
    let n = out.numel();
    let chw = o.c() * o.hw();
    if chw > u32::MAX as usize {
        return Err(crate::Error::TooLarge(format!("gate: {o} has too many elements per sample")));
    }
    let params = ElementwiseUniform { n: to_u32(n), alpha: 0.0, beta: 0.0, span: to_u32(chw) };
    Ok(ctx
        .dispatch(KernelCall {
            shader: &SHADER,
            entry: "gate",
            constants: &[],
            params: Some(&params),
            buffers: &[out.arg_mut(), x.arg()],
            workgroups: grid_1d(n.div_ceil(WG)),
        })?
        .with_cost(30.0 * n as f64, 12.0 * n as f64))
}
