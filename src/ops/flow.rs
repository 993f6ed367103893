//! Shared plumbing of the flow family (kernels/flow.wgsl), used by
//! [`super::actnorm`], [`super::invconv`] and [`super::coupling`].

use std::sync::Arc;

use crate::gpu::{BufArg, Dispatch, GpuContext, KernelCall, Params, ShaderSource};
use crate::{Error, Result, Tensor};

pub(crate) const SHADER: ShaderSource = ShaderSource::new("flow", include_str!("../../kernels/flow.wgsl"));

/// Uniform block of kernels/flow.wgsl, in field order.
pub(crate) struct FlowParams {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub k: usize,
    pub parts: usize,
    pub a: f32,
}

impl FlowParams {
    pub fn params(&self) -> Params {
        Params::new()
            .u(self.n)
            .u(self.c)
            .u(self.hw)
            .u(self.k)
            .u(self.parts)
            .u(self.n * self.c * self.hw)
            .f(self.a)
            .f(0.0)
    }
}

pub(crate) fn same_buffer(a: &Tensor, b: &Tensor) -> bool {
    Arc::ptr_eq(a.buffer(), b.buffer())
}

/// Output checks for an elementwise-style layer: `out` must have `x`'s shape.
/// Returns whether the op runs in place (`out` is `x`'s buffer).
pub(crate) fn check_out(op: &str, x: &Tensor, out: &Tensor) -> Result<bool> {
    if out.shape() != x.shape() {
        return Err(Error::Shape(format!("{op}: output {} does not match input {}", out.shape(), x.shape())));
    }
    Ok(same_buffer(x, out))
}

/// Reject a tensor that shares its buffer with the output (it would be bound
/// read-only and read-write in one dispatch).
pub(crate) fn check_distinct(op: &str, what: &str, t: &Tensor, out: &Tensor) -> Result<()> {
    if same_buffer(t, out) {
        return Err(Error::InvalidArgument(format!("{op}: {what} and the output are the same buffer")));
    }
    Ok(())
}

pub(crate) fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// One dispatch of a flow.wgsl entry.
pub(crate) fn call(
    ctx: &GpuContext,
    entry: &str,
    constants: &[(&str, f64)],
    p: &FlowParams,
    buffers: &[BufArg<'_>],
    workgroups: [u32; 3],
) -> Result<Dispatch> {
    let params = p.params();
    ctx.dispatch(KernelCall { shader: &SHADER, entry, constants, params: Some(&params), buffers, workgroups })
}
