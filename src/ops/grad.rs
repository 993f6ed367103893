//! Reverse-mode gradients (vector-Jacobian products) of the ops whose VJPs
//! need a kernel of their own (kernels/grad.wgsl): a conv epilogue's
//! activation, clamp, the affine coupling and the split-off Gaussian's
//! sample. The rest of a model's backward pass is composed by the graph from
//! existing kernels (transposed convs, elementwise, reshapes).
//!
//! Every function takes the incoming gradient (`dy` / `da`: the gradient of
//! a loss wrt the forward op's output) and what the forward pass saved, and
//! writes the gradient wrt the forward op's inputs. Tensors are NCHW f32;
//! every output must be a buffer of its own, distinct from every input and
//! from the other output (no in-place variants).

use crate::gpu::{grid_1d, to_u32, wg_entries, ActCode, BufArg, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource, WG};
use crate::ops::conv::Activation;
use crate::ops::coupling::GaussianScale;
use crate::ops::flow::same_buffer;
use crate::{Error, Result, Shape, Tensor};

const ENTRIES: [EntryPoint; 4] = wg_entries(["act_grad", "clamp_grad", "affine_coupling_grad", "gaussian_sample_grad"]);
pub(crate) const SHADER: ShaderSource = ShaderSource::new("grad", include_str!("../../kernels/grad.wgsl"))
    .params(&[GradUniform::LAYOUT])
    .entries(&ENTRIES);

crate::kernel_params! {
    /// Uniform block of kernels/grad.wgsl (see its field comments); `a` is
    /// the runtime heat of gaussian_sample_grad ([`set_grad_heat`]).
    pub struct GradUniform = "grad"::"Params" {
        total: u32,
        c: u32,
        hw: u32,
        k: u32,
        a: f32,
        b: f32,
        slope: f32,
        _pad: u32,
    }
}

/// The uniform block for a grid over `s` (the dy / z / da tensor).
fn params(s: Shape, k: usize, a: f32, b: f32, slope: f32) -> GradUniform {
    GradUniform { total: to_u32(s.numel()), c: to_u32(s.c()), hw: to_u32(s.hw()), k: to_u32(k), a, b, slope, _pad: 0 }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn check_same(op: &str, what: &str, t: &Tensor, want: Shape, of: &str) -> Result<()> {
    if t.shape() != want {
        return Err(Error::Shape(format!("{op}: {what} {} must have the shape of {of} {want}", t.shape())));
    }
    Ok(())
}

/// Reject any output that shares a buffer with an input or another output
/// (a buffer may not be bound read-only and read-write in one dispatch).
fn check_outputs(op: &str, inputs: &[(&str, &Tensor)], outputs: &[(&str, &Tensor)]) -> Result<()> {
    for (i, (oname, o)) in outputs.iter().enumerate() {
        for (iname, t) in inputs {
            if same_buffer(t, o) {
                return Err(Error::InvalidArgument(format!("{op}: output {oname} and input {iname} are the same buffer")));
            }
        }
        for (oname2, o2) in &outputs[i + 1..] {
            if same_buffer(o, o2) {
                return Err(Error::InvalidArgument(format!("{op}: outputs {oname} and {oname2} are the same buffer")));
            }
        }
    }
    Ok(())
}

/// `[N, hc, H, W]` for the spatial size of `z`.
fn check_h(op: &str, what: &str, h: &Tensor, z: Shape, hc: usize) -> Result<()> {
    let want = Shape::new(z.n(), hc, z.h(), z.w());
    if h.shape() != want {
        return Err(Error::Shape(format!("{op}: {what} must be {want} for input {z}, got {}", h.shape())));
    }
    Ok(())
}

fn call(
    ctx: &GpuContext,
    entry: &str,
    constants: &[(&str, f64)],
    p: &GradUniform,
    buffers: &[BufArg<'_>],
    threads: usize,
) -> Result<Dispatch> {
    ctx.dispatch(KernelCall { shader: &SHADER, entry, constants, params: Some(p), buffers, workgroups: grid_1d(threads.div_ceil(WG)) })
}

/// Gradient through a conv epilogue `y = alpha * act(pre)`, `pre = (conv + bias) * scale[c]`
/// (no residual), from the saved output `y`: `out = dy * alpha * scale[c] * act'(pre)`,
/// the gradient wrt `conv + bias`. `act'` is recovered from `t = y / alpha`:
/// None 1; Relu `t > 0 ? 1 : 0`; LeakyRelu(s) `t > 0 ? 1 : s` (needs `s >= 0`,
/// so the sign of `t` is the sign of `pre`); Tanh `1 - t^2`; Sigmoid `t (1 - t)`.
/// Swish is refused (its derivative is not a function of its output).
/// `alpha` must be finite and > 0. `scale`: C = `dy.c()` values in any shape
/// (e.g. `[1, C, 1, 1]`), `None` for 1. `dy`, `y`, `out`: one shape.
pub fn act_grad(
    ctx: &GpuContext,
    dy: &Tensor,
    y: &Tensor,
    scale: Option<&Tensor>,
    act: Activation,
    alpha: f32,
    out: &Tensor,
) -> Result<Dispatch> {
    let op = "grad.act_grad";
    let s = dy.shape();
    check_same(op, "saved output y", y, s, "dy")?;
    check_same(op, "output", out, s, "dy")?;
    if let Some(sc) = scale {
        if sc.numel() != s.c() {
            return Err(Error::Shape(format!(
                "{op}: scale {} must hold one value per channel of {s} ({} values)",
                sc.shape(),
                s.c()
            )));
        }
    }
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(Error::InvalidArgument(format!(
            "{op}: alpha {alpha} must be finite and > 0 (act' is recovered from y / alpha)"
        )));
    }
    let (code, slope) = match act {
        Activation::None => (ActCode::None, 0.0),
        Activation::Relu => (ActCode::Relu, 0.0),
        Activation::LeakyRelu(sl) => {
            if !(sl.is_finite() && sl >= 0.0) {
                return Err(Error::InvalidArgument(format!(
                    "{op}: LeakyReLU slope {sl} must be finite and >= 0 (the sign of y must be the sign of pre)"
                )));
            }
            (ActCode::LeakyRelu, sl)
        }
        Activation::Tanh => (ActCode::Tanh, 0.0),
        Activation::Sigmoid => (ActCode::Sigmoid, 0.0),
        Activation::Swish => {
            return Err(Error::InvalidArgument(format!(
                "{op}: Swish's derivative is not recoverable from its output; save the pre-activation instead"
            )))
        }
    };
    let mut inputs = vec![("dy", dy), ("y", y)];
    if let Some(sc) = scale {
        inputs.push(("scale", sc));
    }
    check_outputs(op, &inputs, &[("out", out)])?;
    let p = params(s, 0, alpha, (1.0 / alpha as f64) as f32, slope);
    let third = scale.unwrap_or(y);
    let n = s.numel();
    Ok(call(
        ctx,
        "act_grad",
        &[("ACT", code.constant()), ("HAS_SCALE", flag(scale.is_some()))],
        &p,
        &[dy.arg(), y.arg(), third.arg(), out.arg_mut()],
        n,
    )?
    .with_cost(4.0 * n as f64, 12.0 * n as f64))
}

/// torch.clamp's gradient: `out = (lo <= x && x <= hi) ? dy : 0`, bounds
/// inclusive; a NaN `x` gives 0. `x` is the clamp's input; `dy`, `x`, `out`:
/// one shape. The range must not be empty (`lo <= hi`, infinite bounds allowed).
pub fn clamp_grad(ctx: &GpuContext, dy: &Tensor, x: &Tensor, lo: f32, hi: f32, out: &Tensor) -> Result<Dispatch> {
    let op = "grad.clamp_grad";
    let s = dy.shape();
    check_same(op, "clamp input x", x, s, "dy")?;
    check_same(op, "output", out, s, "dy")?;
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(Error::InvalidArgument(format!("{op}: clamp range [{lo}, {hi}] is empty")));
    }
    check_outputs(op, &[("dy", dy), ("x", x)], &[("out", out)])?;
    let p = params(s, 0, lo, hi, 0.0);
    let n = s.numel();
    Ok(call(ctx, "clamp_grad", &[], &p, &[dy.arg(), x.arg(), x.arg(), out.arg_mut()], n)?.with_cost(2.0 * n as f64, 12.0 * n as f64))
}

/// VJP of [`crate::ops::coupling::affine_forward`] (`reverse = false`) or
/// [`crate::ops::coupling::affine_reverse`] (`reverse = true`) wrt its input
/// `z` and the net output `h` ([N, 2 * (C - split), H, W], shift = `h[2j]`,
/// scale = `h[2j+1]`, ls = 0.318 * atan(2 * scale), j = ch - split).
/// `dy`: gradient of the coupling's output (z's shape); `z`: the coupling's
/// INPUT. Writes `dz` (z's shape): `dy` for channels < split, `dy * exp(ls)`
/// (forward) / `dy * exp(-ls)` (reverse) for the rest; and `dh` (h's shape):
/// `dh[2j] = dy * exp(ls)` / `-dy`, `dh[2j+1] = dls * 0.636 / (1 + 4 scale^2)`
/// with `dls = dy * (z2 + shift) * exp(ls)` / `-dy * z2 * exp(-ls)`.
/// The logdet output is not differentiated (its gradient wrt h, +-dlogscale
/// per element, is not added to `dh`). One dispatch.
#[allow(clippy::too_many_arguments)]
pub fn affine_coupling_grad(
    ctx: &GpuContext,
    dy: &Tensor,
    z: &Tensor,
    h: &Tensor,
    dz: &Tensor,
    dh: &Tensor,
    split: usize,
    reverse: bool,
) -> Result<Dispatch> {
    let op = "grad.affine_coupling_grad";
    let s = z.shape();
    if split == 0 || split >= s.c() {
        return Err(Error::InvalidArgument(format!(
            "{op}: split point {split} must leave channels on both sides of input {s}"
        )));
    }
    check_same(op, "output gradient dy", dy, s, "z")?;
    check_same(op, "dz", dz, s, "z")?;
    check_h(op, "net output h (shift/scale interleaved)", h, s, 2 * (s.c() - split))?;
    check_same(op, "dh", dh, h.shape(), "h")?;
    check_outputs(op, &[("dy", dy), ("z", z), ("h", h)], &[("dz", dz), ("dh", dh)])?;
    let p = params(s, split, 0.0, 0.0, 0.0);
    let n = s.numel();
    Ok(call(
        ctx,
        "affine_coupling_grad",
        &[("REVERSE", flag(reverse))],
        &p,
        &[dy.arg(), z.arg(), h.arg(), dz.arg_mut(), dh.arg_mut()],
        n,
    )?
    .with_cost(30.0 * n as f64, 4.0 * (3 * n + 2 * h.numel()) as f64))
}

fn check_heat(op: &str, heat: f32) -> Result<()> {
    if !heat.is_finite() {
        return Err(Error::InvalidArgument(format!("{op}: heat {heat} is not finite")));
    }
    Ok(())
}

/// VJP wrt `h` of [`crate::ops::coupling::gaussian_sample`]
/// (`a = mean + exp(logs) * eps * heat`, mean = `h[2c]`, logs from
/// v = `h[2c+1]` per `scale`): `dh[2c] = da`,
/// `dh[2c+1] = da * exp(logs) * eps * heat * dlogs/dv` (Logs: 1; Atan:
/// 0.636 / (1 + 4 v^2)). `da`, `eps`: [N, C, H, W]; `h`, `dh`: [N, 2C, H, W].
/// `heat` must be finite; [`set_grad_heat`] changes it before a replay.
pub fn gaussian_sample_grad(
    ctx: &GpuContext,
    da: &Tensor,
    eps: &Tensor,
    h: &Tensor,
    heat: f32,
    scale: GaussianScale,
    dh: &Tensor,
) -> Result<Dispatch> {
    let op = "grad.gaussian_sample_grad";
    check_heat(op, heat)?;
    let s = da.shape();
    check_same(op, "eps", eps, s, "da")?;
    check_h(op, "mean/scale conv output h", h, s, 2 * s.c())?;
    check_same(op, "dh", dh, h.shape(), "h")?;
    check_outputs(op, &[("da", da), ("eps", eps), ("h", h)], &[("dh", dh)])?;
    let p = params(s, 0, heat, 0.0, 0.0);
    let n = s.numel();
    Ok(call(
        ctx,
        "gaussian_sample_grad",
        &[("RESCALE", flag(scale == GaussianScale::Atan))],
        &p,
        &[da.arg(), eps.arg(), h.arg(), dh.arg_mut()],
        n,
    )?
    .with_cost(8.0 * n as f64, 4.0 * (3 * n + 2 * h.numel()) as f64))
}

/// Rewrite the heat of a prepared [`gaussian_sample_grad`] dispatch (graph
/// replays with a new temperature; mirrors [`crate::ops::coupling::set_heat`]).
/// `out` is the shape of that dispatch's output `dh` ([N, 2C, H, W]); the
/// shape of `da` ([N, C, H, W]) is accepted too. Non-finite heat is an error.
pub fn set_grad_heat(ctx: &GpuContext, d: &Dispatch, out: Shape, heat: f32) -> Result<()> {
    check_heat("grad.set_grad_heat", heat)?;
    if let Some(p) = d.uniform::<GradUniform>() {
        let fits = |c: usize| (to_u32(out.n() * c * out.hw()), to_u32(c), to_u32(out.hw())) == (p.total, p.c, p.hw);
        let as_dh = out.c().is_multiple_of(2) && fits(out.c() / 2);
        if !(as_dh || fits(out.c())) {
            return Err(Error::InvalidArgument(format!(
                "grad.set_grad_heat: {d:?} was prepared for another output than {out}"
            )));
        }
    }
    d.update(ctx, |p: &mut GradUniform| p.a = heat)
}
