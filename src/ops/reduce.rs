//! Deterministic per-sample reductions (no float atomics: a fixed tree order,
//! so repeated runs are bit-identical) and small in-place updates used for
//! flow log-determinants.
//!
//! A per-sample sum is two passes: a partial pass where each workgroup sums
//! [`CHUNK`] consecutive elements of one sample into `partials[n, chunk]`,
//! then [`finish_partials`], one workgroup per sample. Flow kernels that
//! reduce (coupling logdet, Gaussian log-likelihood) write partials in the
//! same layout and reuse `finish_partials`.

use crate::gpu::{grid_1d, to_u32, wg_entries, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource, WG};
use crate::{Error, Result, Shape, Tensor};

const ENTRIES: [EntryPoint; 3] = wg_entries(["partial_sum", "finish", "add_scalar"]);
pub(crate) const SHADER: ShaderSource = ShaderSource::new("reduce", include_str!("../../kernels/reduce.wgsl"))
    .params(&[ReduceUniform::LAYOUT])
    .entries(&ENTRIES);

crate::kernel_params! {
    /// Uniform block of kernels/reduce.wgsl.
    pub struct ReduceUniform = "reduce"::"Params" {
        n: u32,
        m: u32,
        parts: u32,
        accumulate: u32,
        alpha: f32,
        value: f32,
    }
}

/// Elements per workgroup in every partial-sum pass (WG threads x 4): the
/// prelude's `CHUNK`, used by kernels/reduce.wgsl and kernels/flow.wgsl.
pub const CHUNK: usize = crate::gpu::CHUNK;

/// Number of partial sums per sample for `per_sample` elements.
pub fn parts_per_sample(per_sample: usize) -> usize {
    per_sample.div_ceil(CHUNK).max(1)
}

/// Shape of the scratch for the partial sums of `n` samples of `per_sample`
/// elements each: `[n, 1, 1, parts]`. Callers own it (the graph plans it
/// like any tensor, live only during its node).
pub fn partials_shape(n: usize, per_sample: usize) -> Shape {
    Shape::new(n, 1, 1, parts_per_sample(per_sample))
}

/// Check a caller-provided partial-sum scratch against [`partials_shape`].
pub(crate) fn check_partials(op: &str, partials: &Tensor, n: usize, per_sample: usize) -> Result<usize> {
    let want = partials_shape(n, per_sample);
    if partials.shape() != want {
        return Err(Error::Shape(format!("{op}: partial-sum scratch must be {want}, got {}", partials.shape())));
    }
    Ok(want.w())
}

/// Check that `t` is a per-sample scalar `[n, 1, 1, 1]`.
pub(crate) fn check_per_sample(op: &str, what: &str, t: &Tensor, n: usize) -> Result<()> {
    let want = Shape::new(n, 1, 1, 1);
    if t.shape() != want {
        return Err(Error::Shape(format!("{op}: {what} must be a per-sample tensor {want}, got {}", t.shape())));
    }
    Ok(())
}


/// Complete a per-sample sum from `partials` (`[n, 1, 1, parts]`, as written
/// by a partial pass): `out[n] = alpha * sum` or, with `accumulate`,
/// `out[n] += alpha * sum`. `out` is `[n, 1, 1, 1]` and is bound read-write
/// once, so it may be a running logdet.
pub fn finish_partials(ctx: &GpuContext, partials: &Tensor, out: &Tensor, alpha: f32, accumulate: bool) -> Result<Dispatch> {
    let s = partials.shape();
    if s.c() != 1 || s.h() != 1 {
        return Err(Error::Shape(format!("reduce.finish: partials must be [n, 1, 1, parts], got {s}")));
    }
    check_per_sample("reduce.finish", "output", out, s.n())?;
    if std::sync::Arc::ptr_eq(partials.buffer(), out.buffer()) {
        return Err(Error::InvalidArgument("reduce.finish: partials and output are the same buffer".into()));
    }
    if !alpha.is_finite() {
        return Err(Error::InvalidArgument(format!("reduce.finish: alpha {alpha} is not finite")));
    }
    let (n, parts) = (s.n(), s.w());
    let params = ReduceUniform { n: to_u32(n), parts: to_u32(parts), accumulate: accumulate as u32, alpha, ..Default::default() };
    Ok(ctx
        .dispatch(KernelCall {
            shader: &SHADER,
            entry: "finish",
            constants: &[],
            params: Some(&params),
            buffers: &[out.arg_mut(), partials.arg()],
            workgroups: grid_1d(n),
        })?
        .with_cost((n * parts) as f64, 4.0 * (n * parts + 2 * n) as f64))
}

fn per_sample_sum(ctx: &GpuContext, op: &str, x: &Tensor, out: &Tensor, partials: &Tensor, alpha: f32, accumulate: bool) -> Result<Vec<Dispatch>> {
    let n = x.shape().n();
    check_per_sample(op, "output", out, n)?;
    if std::sync::Arc::ptr_eq(x.buffer(), out.buffer()) {
        return Err(Error::InvalidArgument(format!("{op}: input and output are the same buffer")));
    }
    let m = x.numel() / n;
    let parts = check_partials(op, partials, n, m)?;
    let params = ReduceUniform { n: to_u32(n), m: to_u32(m), parts: to_u32(parts), alpha: 1.0, ..Default::default() };
    let partial = ctx
        .dispatch(KernelCall {
            shader: &SHADER,
            entry: "partial_sum",
            constants: &[],
            params: Some(&params),
            buffers: &[partials.arg_mut(), x.arg()],
            workgroups: grid_1d(n * parts),
        })?
        .with_cost(x.numel() as f64, 4.0 * (x.numel() + n * parts) as f64);
    Ok(vec![partial, finish_partials(ctx, partials, out, alpha, accumulate)?])
}

/// `out[n] = sum of x[n, ...]` for every sample of `x` (`out`: `[N, 1, 1, 1]`;
/// `partials`: scratch of [`partials_shape`]`(N, C*H*W)`).
pub fn sum_per_sample(ctx: &GpuContext, x: &Tensor, out: &Tensor, partials: &Tensor) -> Result<Vec<Dispatch>> {
    per_sample_sum(ctx, "reduce.sum_per_sample", x, out, partials, 1.0, false)
}

/// `out[n] += alpha * sum of x[n, ...]` (e.g. a logdet update).
pub fn accumulate_sum_per_sample(ctx: &GpuContext, x: &Tensor, out: &Tensor, partials: &Tensor, alpha: f32) -> Result<Vec<Dispatch>> {
    if !alpha.is_finite() {
        return Err(Error::InvalidArgument(format!("reduce.accumulate_sum_per_sample: alpha {alpha} is not finite")));
    }
    per_sample_sum(ctx, "reduce.accumulate_sum_per_sample", x, out, partials, alpha, true)
}

/// `t += value` in place for every element (logdet updates by a constant).
pub fn add_scalar_inplace(ctx: &GpuContext, t: &Tensor, value: f32) -> Result<Dispatch> {
    if !value.is_finite() {
        return Err(Error::InvalidArgument(format!("reduce.add_scalar_inplace: value {value} is not finite")));
    }
    let m = t.numel();
    let params = ReduceUniform { m: to_u32(m), value, ..Default::default() };
    Ok(ctx
        .dispatch(KernelCall {
            shader: &SHADER,
            entry: "add_scalar",
            constants: &[],
            params: Some(&params),
            buffers: &[t.arg_mut()],
            workgroups: grid_1d(m.div_ceil(WG)),
        })?
        .with_cost(m as f64, 8.0 * m as f64))
}
