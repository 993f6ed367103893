//! Roofline probes (kernels/probe.wgsl): the adapter's multiply-add peak and
//! copy bandwidth, which the kernel bench reports every kernel against.

use crate::gpu::{grid_1d, to_u32, wg_entries, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource, WG};
use crate::{Error, Result, Tensor};

const ENTRIES: [EntryPoint; 2] = wg_entries(["fma_peak", "copy_peak"]);
pub(crate) const SHADER: ShaderSource =
    ShaderSource::new("probe", include_str!("../../kernels/probe.wgsl")).params(&[ProbeUniform::LAYOUT]).entries(&ENTRIES);

crate::kernel_params! {
    /// Uniform block of kernels/probe.wgsl.
    pub struct ProbeUniform = "probe"::"Params" { n: u32, iters: u32, a: f32, b: f32 }
}

/// Multiply-add chains: one thread per vec4 of `out`, `iters` steps of 8
/// vec4 multiply-adds (64 flops a step; the kernel runs four steps per loop
/// trip, see probe.wgsl). The cost carries the flop count.
pub fn fma_peak(ctx: &GpuContext, out: &Tensor, iters: usize) -> Result<Dispatch> {
    if out.numel() % 4 != 0 {
        return Err(Error::Shape(format!("probe.fma_peak: {} values are not whole vec4s", out.numel())));
    }
    let n = out.numel() / 4;
    // a, b keep the chains bounded (|c| -> b / (1 - a)) so no inf/NaN slows the lanes.
    let p = ProbeUniform { n: to_u32(n), iters: to_u32(iters), a: 0.999, b: 0.001 };
    let d = ctx.dispatch(KernelCall { shader: &SHADER, entry: "fma_peak", constants: &[], params: Some(&p), buffers: &[out.arg_mut()], workgroups: grid_1d(n.div_ceil(WG)) })?;
    Ok(d.with_cost(64.0 * (n * iters) as f64, 16.0 * n as f64))
}

/// `dst = src` in vec4s; the cost carries the bytes moved (read + write).
pub fn copy_peak(ctx: &GpuContext, src: &Tensor, dst: &Tensor) -> Result<Dispatch> {
    if src.numel() != dst.numel() || src.numel() % 4 != 0 {
        return Err(Error::Shape(format!("probe.copy_peak: {} -> {} values (whole vec4s, same size)", src.numel(), dst.numel())));
    }
    let n = src.numel() / 4;
    let p = ProbeUniform { n: to_u32(n), iters: 0, a: 0.0, b: 0.0 };
    let d = ctx.dispatch(KernelCall {
        shader: &SHADER,
        entry: "copy_peak",
        constants: &[],
        params: Some(&p),
        buffers: &[dst.arg_mut(), src.arg()],
        workgroups: grid_1d(n.div_ceil(WG)),
    })?;
    Ok(d.with_cost(0.0, 32.0 * n as f64))
}
