//! Op families. Each module pairs with `kernels/<family>.wgsl` and exposes
//! *prepare* functions: validate shapes, then return the `Dispatch`(es) that
//! write a caller-provided output tensor. Nothing runs until the caller
//! submits them, so the graph executor can record them once and replay.
//! `eager` runs a prepare function immediately for one-off use.

mod flow;
pub mod actnorm;
pub mod attention;
pub mod conv;
pub mod coupling;
pub mod elementwise;
pub mod gated_stack;
pub mod grad;
pub mod invconv;
pub mod matmul;
pub mod norm;
pub mod norm_cat;
pub mod probe;
pub mod reduce;
pub mod reshape;
pub mod rng;
pub mod softmax;
pub mod texel;
pub mod winograd;

use crate::gpu::{Dispatch, GpuContext};
use crate::{Error, Result, Shape, Tensor};

/// Check that all tensors have the same shape.
pub(crate) fn same_shape(op: &str, ts: &[&Tensor]) -> Result<()> {
    let s = ts[0].shape();
    for t in &ts[1..] {
        if t.shape() != s {
            return Err(Error::Shape(format!("{op}: shapes differ: {s} vs {}", t.shape())));
        }
    }
    Ok(())
}

/// Anything a prepare function returns: one dispatch or several.
pub trait IntoDispatches {
    fn into_dispatches(self) -> Vec<Dispatch>;
}
impl IntoDispatches for Dispatch {
    fn into_dispatches(self) -> Vec<Dispatch> {
        vec![self]
    }
}
impl IntoDispatches for Vec<Dispatch> {
    fn into_dispatches(self) -> Vec<Dispatch> {
        self
    }
}

/// Allocate an output of `shape`, prepare the op into it, run it and wait.
/// `eager(ctx, s, |out| elementwise::add(ctx, &a, &b, out))`
pub fn eager<D: IntoDispatches>(
    ctx: &GpuContext,
    shape: Shape,
    prepare: impl FnOnce(&Tensor) -> Result<D>,
) -> Result<Tensor> {
    let out = Tensor::empty(ctx, shape)?;
    let d = prepare(&out)?.into_dispatches();
    ctx.run(&d)?;
    Ok(out)
}

/// Every kernel module with what its Rust side assumes about it (uniform
/// twins, workgroup sizes, tile constants); `tests/kernels/params_reflect.rs`
/// checks each against the composed `kernels/<name>.wgsl`.
pub const KERNELS: &[crate::gpu::ShaderSource] = &[
    attention::SHADER,
    conv::SHADER,
    elementwise::SHADER,
    flow::SHADER,
    gated_stack::SHADER,
    grad::SHADER,
    matmul::SHADER,
    norm::SHADER,
    norm_cat::SHADER,
    probe::SHADER,
    reduce::SHADER,
    reshape::SHADER,
    rng::SHADER,
    softmax::SHADER,
    texel::SHADER,
    winograd::SHADER,
];
