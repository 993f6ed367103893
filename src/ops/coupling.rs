//! HCFlow couplings and the split-off conditional Gaussian. The coupling
//! nets (FCN / DenseBlock) and the Gaussian's `Conv2dZeros` run elsewhere;
//! these ops take their output `h`.
//!
//! Channel layouts (official `AffineCouplings.py`, `ConditionalFlow.py`,
//! `thops.split_feature`):
//! - `AffineCoupling`: `z1 = z[:, :C/2]` (floor), `z2 = z[:, C/2:]`;
//!   `h = f(z1 [, cond])` has `2 * (C - C/2)` channels and
//!   `shift = h[:, 0::2]`, `scale = h[:, 1::2]`; use [`affine_forward`] with
//!   `split = C / 2`.
//! - `AffineCoupling3shift`, even step (`LRvsothers`): same with `split = 3`.
//! - `AffineCoupling3shift`, odd step: `z[:, :3] += f(z[:, 3:])`, no logdet;
//!   use [`additive_forward`] with a 3-channel `shift`.
//! - Split-off Gaussian: `mean = h[:, 0::2]`, second half of the cross split
//!   is `logs` (SR) or `scale` with `logs = 0.318 * atan(2 * scale)`
//!   (rescaling); see [`GaussianScale`].

use crate::gpu::{grid_1d, Dispatch, GpuContext, WG};
use crate::ops::flow::{self, FlowParams, FlowUniform};
use crate::ops::reduce;
use crate::{Error, Result, Tensor};

fn check_h(op: &str, z: &Tensor, h: &Tensor, hc: usize, what: &str) -> Result<()> {
    let (zs, hs) = (z.shape(), h.shape());
    if hs.n() != zs.n() || hs.h() != zs.h() || hs.w() != zs.w() || hs.c() != hc {
        return Err(Error::Shape(format!(
            "{op}: {what} must be [{}, {hc}, {}, {}] for input {zs}, got {hs}",
            zs.n(),
            zs.h(),
            zs.w()
        )));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn affine(
    ctx: &GpuContext,
    op: &str,
    reverse: bool,
    z: &Tensor,
    h: &Tensor,
    out: &Tensor,
    logdet: Option<&Tensor>,
    partials: &Tensor,
    split: usize,
) -> Result<Vec<Dispatch>> {
    let s = z.shape();
    if split == 0 || split >= s.c() {
        return Err(Error::InvalidArgument(format!(
            "{op}: split point {split} must leave channels on both sides of input {s}"
        )));
    }
    check_h(op, z, h, 2 * (s.c() - split), "net output h (shift/scale interleaved)")?;
    let inplace = flow::check_out(op, z, out)?;
    flow::check_distinct(op, "h", h, out)?;
    if let Some(ld) = logdet {
        reduce::check_per_sample(op, "logdet", ld, s.n())?;
        for (what, t) in [("z", z), ("h", h)] {
            flow::check_distinct(op, what, t, ld)?;
        }
        flow::check_distinct(op, "logdet", ld, out)?;
    }
    let m = s.c() * s.hw();
    let parts = reduce::check_partials(op, partials, s.n(), m)?;
    for (what, t) in [("z", z), ("h", h), ("out", out)] {
        flow::check_distinct(op, what, t, partials)?;
    }
    let p = FlowParams { n: s.n(), c: s.c(), hw: s.hw(), k: split, parts, a: 0.0 };
    let input = if inplace { h.arg() } else { z.arg() };
    let total = s.numel();
    let flags = [("REVERSE", flow::flag(reverse)), ("INPLACE", flow::flag(inplace))];
    // No sum to reduce (no logdet) on whole pixel quads: one vec4 per thread
    // (flow.wgsl affine4), else one partial sum per workgroup.
    let quads = logdet.is_none() && s.hw() % 4 == 0;
    let d = if quads {
        flow::call(ctx, "affine4", &flags, &p, &[input, h.arg(), out.arg_mut()], grid_1d((total / 4).div_ceil(WG)))?
    } else {
        flow::call(ctx, "affine", &flags, &p, &[input, h.arg(), out.arg_mut(), partials.arg_mut()], grid_1d(s.n() * parts))?
    }
    .with_cost(8.0 * total as f64, 4.0 * (3 * total + h.numel()) as f64);
    let mut ds = vec![d];
    if let Some(ld) = logdet {
        ds.push(reduce::finish_partials(ctx, partials, ld, if reverse { -1.0 } else { 1.0 }, true)?);
    }
    Ok(ds)
}

/// Affine coupling, forward: channels `< split` are copied, channels
/// `>= split` become `(z2 + shift) * exp(ls)` with `ls = 0.318 * atan(2 * scale)`,
/// `shift = h[:, 2j]`, `scale = h[:, 2j+1]`; `logdet[n] += sum of ls` over the
/// sample (deterministic two-pass reduction). `h`: `[N, 2 * (C - split), H, W]`.
/// `out` may be `z` (in place). `partials`: scratch of
/// [`reduce::partials_shape`]`(N, C*H*W)`.
pub fn affine_forward(
    ctx: &GpuContext,
    z: &Tensor,
    h: &Tensor,
    out: &Tensor,
    logdet: Option<&Tensor>,
    partials: &Tensor,
    split: usize,
) -> Result<Vec<Dispatch>> {
    affine(ctx, "coupling.affine_forward", false, z, h, out, logdet, partials, split)
}

/// Affine coupling, reverse: `z2 = z2 * exp(-ls) - shift`; `logdet[n] -= sum of ls`
/// when given (the official reverse pass does not track it).
pub fn affine_reverse(
    ctx: &GpuContext,
    z: &Tensor,
    h: &Tensor,
    out: &Tensor,
    logdet: Option<&Tensor>,
    partials: &Tensor,
    split: usize,
) -> Result<Vec<Dispatch>> {
    affine(ctx, "coupling.affine_reverse", true, z, h, out, logdet, partials, split)
}

fn additive(ctx: &GpuContext, op: &str, reverse: bool, z: &Tensor, shift: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let s = z.shape();
    let k = shift.shape().c();
    if k == 0 || k >= s.c() {
        return Err(Error::Shape(format!("{op}: shift {} must have fewer channels than input {s}", shift.shape())));
    }
    check_h(op, z, shift, k, "shift")?;
    let inplace = flow::check_out(op, z, out)?;
    flow::check_distinct(op, "shift", shift, out)?;
    let p = FlowParams { n: s.n(), c: s.c(), hw: s.hw(), k, parts: 0, a: 0.0 };
    let input = if inplace { shift.arg() } else { z.arg() };
    let total = s.numel();
    Ok(flow::call(
        ctx,
        "additive",
        &[("REVERSE", flow::flag(reverse)), ("INPLACE", flow::flag(inplace))],
        &p,
        &[input, shift.arg(), out.arg_mut()],
        grid_1d(total.div_ceil(WG)),
    )?
    .with_cost(shift.numel() as f64, 4.0 * (2 * total + shift.numel()) as f64))
}

/// Additive coupling, forward (odd steps of `AffineCoupling3shift`): the first
/// `K = shift.C` channels become `z + shift`, the rest are copied. No logdet
/// change (volume preserving). `out` may be `z`.
pub fn additive_forward(ctx: &GpuContext, z: &Tensor, shift: &Tensor, out: &Tensor) -> Result<Dispatch> {
    additive(ctx, "coupling.additive_forward", false, z, shift, out)
}

/// Additive coupling, reverse: the first `K` channels become `z - shift`.
pub fn additive_reverse(ctx: &GpuContext, z: &Tensor, shift: &Tensor, out: &Tensor) -> Result<Dispatch> {
    additive(ctx, "coupling.additive_reverse", true, z, shift, out)
}

/// How the second half of the Gaussian's cross split becomes `log(sigma)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaussianScale {
    /// SR models: the conv output is `log(sigma)` itself.
    Logs,
    /// Rescaling model: `log(sigma) = 0.318 * atan(2 * scale)`.
    Atan,
}

impl GaussianScale {
    fn constant(self) -> f64 {
        flow::flag(self == GaussianScale::Atan)
    }
}

fn gaussian_check(op: &str, x: &Tensor, h: &Tensor) -> Result<()> {
    check_h(op, x, h, 2 * x.shape().c(), "mean/scale conv output h")
}

/// Split-off latent in the reverse (sampling) pass: `out = mean + exp(logs) * eps * heat`
/// with `mean = h[:, 0::2]`, `logs` from `h[:, 1::2]` per `scale`. `eps` is
/// standard normal noise with `out`'s shape (`GaussianDiag.sample` with
/// `eps_std = heat`).
pub fn gaussian_sample(
    ctx: &GpuContext,
    mean_logs_h: &Tensor,
    eps: &Tensor,
    heat: f32,
    out: &Tensor,
    scale: GaussianScale,
) -> Result<Dispatch> {
    if !heat.is_finite() {
        return Err(Error::InvalidArgument(format!("coupling.gaussian_sample: heat {heat} is not finite")));
    }
    gaussian_map(ctx, "gaussian_sample", "eps", eps, mean_logs_h, out, scale, heat)
}

/// The rescaling model's forward split-off: `out = (x - mean) * exp(-logs)`.
pub fn gaussian_normalize(ctx: &GpuContext, x: &Tensor, h: &Tensor, out: &Tensor, scale: GaussianScale) -> Result<Dispatch> {
    gaussian_map(ctx, "gaussian_normalize", "x", x, h, out, scale, 0.0)
}

/// One pass of `entry` over `input` [N,C,H,W] and `h` [N,2C,H,W] into `out`
/// (a distinct buffer), with the scalar `a` (the heat of gaussian_sample).
#[allow(clippy::too_many_arguments)]
fn gaussian_map(
    ctx: &GpuContext,
    entry: &str,
    what: &str,
    input: &Tensor,
    h: &Tensor,
    out: &Tensor,
    scale: GaussianScale,
    a: f32,
) -> Result<Dispatch> {
    let op = format!("coupling.{entry}");
    gaussian_check(&op, input, h)?;
    if flow::check_out(&op, input, out)? {
        return Err(Error::InvalidArgument(format!("{op}: {what} and the output are the same buffer")));
    }
    flow::check_distinct(&op, "h", h, out)?;
    let s = out.shape();
    let p = FlowParams { n: s.n(), c: s.c(), hw: s.hw(), k: 0, parts: 0, a };
    let total = s.numel();
    Ok(flow::call(
        ctx,
        entry,
        &[("RESCALE", scale.constant())],
        &p,
        &[input.arg(), h.arg(), out.arg_mut()],
        grid_1d(total.div_ceil(WG)),
    )?
    .with_cost(4.0 * total as f64, 16.0 * total as f64))
}

/// `logdet[n] += sum over (c, h, w) of log N(x; mean, exp(logs)^2)`
/// (`GaussianDiag.logp`): `-0.5 * (2 logs + (x - mean)^2 / exp(2 logs) + log(2 pi))`.
/// `x`: `[N, C, H, W]`, `h`: `[N, 2C, H, W]`, `logdet`: `[N, 1, 1, 1]`.
/// `partials`: scratch of [`reduce::partials_shape`]`(N, C*H*W)`.
pub fn gaussian_logp(ctx: &GpuContext, x: &Tensor, h: &Tensor, logdet: &Tensor, partials: &Tensor, scale: GaussianScale) -> Result<Vec<Dispatch>> {
    let op = "coupling.gaussian_logp";
    gaussian_check(op, x, h)?;
    let s = x.shape();
    reduce::check_per_sample(op, "logdet", logdet, s.n())?;
    flow::check_distinct(op, "x", x, logdet)?;
    flow::check_distinct(op, "h", h, logdet)?;
    let m = s.c() * s.hw();
    let parts = reduce::check_partials(op, partials, s.n(), m)?;
    for (what, t) in [("x", x), ("h", h)] {
        flow::check_distinct(op, what, t, partials)?;
    }
    let p = FlowParams { n: s.n(), c: s.c(), hw: s.hw(), k: 0, parts, a: 0.0 };
    let d = flow::call(
        ctx,
        "gaussian_logp",
        &[("RESCALE", scale.constant())],
        &p,
        &[x.arg(), h.arg(), partials.arg_mut()],
        grid_1d(s.n() * parts),
    )?
    .with_cost(8.0 * s.numel() as f64, 12.0 * s.numel() as f64);
    Ok(vec![d, reduce::finish_partials(ctx, partials, logdet, 1.0, true)?])
}

/// Rewrite the heat of a prepared `gaussian_sample` dispatch whose output
/// has shape `out` (graph replays with a new temperature).
pub fn set_heat(ctx: &GpuContext, d: &Dispatch, out: crate::Shape, heat: f32) -> Result<()> {
    if !heat.is_finite() {
        return Err(Error::InvalidArgument(format!("heat {heat} is not finite")));
    }
    let want = FlowParams { n: out.n(), c: out.c(), hw: out.hw(), k: 0, parts: 0, a: heat }.uniform();
    if let Some(p) = d.uniform::<FlowUniform>() {
        if (p.n, p.c, p.hw) != (want.n, want.c, want.hw) {
            return Err(Error::InvalidArgument(format!("set_heat: {d:?} was prepared for another output than {out}")));
        }
    }
    d.update(ctx, |p: &mut FlowUniform| p.a = heat)
}
