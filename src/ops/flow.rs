//! Shared plumbing of the flow family (kernels/flow.wgsl), used by
//! [`super::actnorm`], [`super::invconv`] and [`super::coupling`].

use std::sync::Arc;

use crate::gpu::{to_u32, wg_entries, BufArg, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource};
use crate::{Error, Result, Tensor};

const ENTRIES: [EntryPoint; 10] = wg_entries(["actnorm", "actnorm4", "invconv", "invconv4", "affine", "affine4", "additive", "gaussian_sample", "gaussian_normalize", "gaussian_logp"]);
pub(crate) const SHADER: ShaderSource = ShaderSource::new("flow", include_str!("../../kernels/flow.wgsl"))
    .params(&[FlowUniform::LAYOUT])
    .entries(&ENTRIES);

crate::kernel_params! {
    /// Uniform block of kernels/flow.wgsl (see its field comments); `a` is
    /// the runtime heat of gaussian_sample.
    pub struct FlowUniform = "flow"::"Params" {
        n: u32,
        c: u32,
        hw: u32,
        k: u32,
        parts: u32,
        total: u32,
        a: f32,
        _pad: u32,
    }
}

/// What the flow wrappers know of a launch; [`FlowParams::uniform`] fills the
/// kernel's block from it (`total` is derived).
pub(crate) struct FlowParams {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub k: usize,
    pub parts: usize,
    pub a: f32,
}

impl FlowParams {
    pub fn uniform(&self) -> FlowUniform {
        FlowUniform {
            n: to_u32(self.n),
            c: to_u32(self.c),
            hw: to_u32(self.hw),
            k: to_u32(self.k),
            parts: to_u32(self.parts),
            total: to_u32(self.n * self.c * self.hw),
            a: self.a,
            _pad: 0,
        }
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
    let params = p.uniform();
    ctx.dispatch(KernelCall { shader: &SHADER, entry, constants, params: Some(&params), buffers, workgroups })
}
