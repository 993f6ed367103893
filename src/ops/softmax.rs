//! Softmax family over the channel axis of `[N, C, H, W]`, per pixel:
//! `softmax(x / T)`, `log_softmax(x)`, greedy `argmax` and inverse-CDF
//! `sample_categorical`. All take `groups` G: the channel axis is split into
//! G groups of K = C / G consecutive channels (channel = g * K + k) that are
//! normalised independently, e.g. PixelCNN's 3 colours x 256 intensities.
//! `groups = 1` normalises over all C channels.
//!
//! Everything is max-subtracted, so logits of any magnitude are safe. The
//! temperature lives in the uniform block; [`set_temperature`] rewrites it in a
//! prepared dispatch before a replay.

use crate::gpu::{grid_1d, to_u32, wg_entries, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource, SoftmaxMode, WG};
use crate::{Error, Result, Shape, Tensor};

const ENTRIES: [EntryPoint; 3] = wg_entries(["softmax_rows", "argmax_rows", "sample_rows"]);
pub(crate) const SHADER: ShaderSource = ShaderSource::new("softmax", include_str!("../../kernels/softmax.wgsl"))
    .params(&[SoftmaxUniform::LAYOUT])
    .entries(&ENTRIES);

crate::kernel_params! {
    /// Uniform block of kernels/softmax.wgsl; `temp` is the runtime parameter.
    pub struct SoftmaxUniform = "softmax"::"Params" {
        hw: u32,
        k: u32,
        groups: u32,
        tiles: u32,
        total: u32,
        temp: f32,
    }
}

/// Threads cooperating on one row: a power of two giving each about 8 or
/// more channels, at most 32 so a workgroup still spans >= 8 neighbouring
/// pixels (coalesced loads).
fn threads_per_row(k: usize) -> usize {
    let target = (k / 8).clamp(1, 32);
    1 << (usize::BITS - 1 - target.leading_zeros())
}

fn check_temperature(op: &str, t: f32) -> Result<()> {
    if !(t.is_finite() && t >= 0.0) {
        return Err(Error::InvalidArgument(format!("{op}: temperature {t} must be finite and >= 0")));
    }
    Ok(())
}

/// Validated geometry of one launch.
struct Rows {
    shape: Shape,
    g: usize,
    k: usize,
    tpr: usize,
}

impl Rows {
    fn new(op: &str, x: Shape, groups: usize) -> Result<Self> {
        let c = x.c();
        if groups == 0 || !c.is_multiple_of(groups) {
            return Err(Error::Shape(format!("{op}: {groups} groups do not divide the {c} channels of logits {x}")));
        }
        let k = c / groups;
        Ok(Rows { shape: x, g: groups, k, tpr: threads_per_row(k) })
    }

    /// Shape of per-row tensors (uniforms, samples): `[N, G, H, W]`.
    fn row_shape(&self) -> Shape {
        let [n, _, h, w] = self.shape.0;
        Shape::new(n, self.g, h, w)
    }

    fn expect(&self, op: &str, what: &str, t: &Tensor, want: Shape) -> Result<()> {
        if t.shape() != want {
            return Err(Error::Shape(format!(
                "{op}: {what} is {} but logits {} with {} groups need {want}",
                t.shape(),
                self.shape,
                self.g
            )));
        }
        Ok(())
    }

    fn dispatch(
        &self,
        ctx: &GpuContext,
        entry: &str,
        mode: SoftmaxMode,
        temp: f32,
        buffers: &[crate::gpu::BufArg<'_>],
    ) -> Result<Dispatch> {
        let hw = self.shape.hw();
        let pixels_per_wg = WG / self.tpr;
        let tiles = hw.div_ceil(pixels_per_wg);
        let total = self.shape.n() * self.g * tiles;
        let params = SoftmaxUniform {
            hw: to_u32(hw),
            k: to_u32(self.k),
            groups: to_u32(self.g),
            tiles: to_u32(tiles),
            total: to_u32(total),
            temp,
        };
        let n = self.shape.numel() as f64;
        Ok(ctx
            .dispatch(KernelCall {
                shader: &SHADER,
                entry,
                constants: &[("TPR", self.tpr as f64), ("MODE", mode.constant())],
                params: Some(&params),
                buffers,
                workgroups: grid_1d(total),
            })?
            // max, exp, sum, scale per element; every bound buffer read or written once.
            .with_cost(6.0 * n, buffers.iter().map(|b| b.size as f64).sum()))
    }
}

/// `out = softmax(x / temperature)` over each group of K = C / groups channels.
/// `temperature` must be finite and >= 0; 0 gives the T -> 0 limit (one-hot
/// on the maximum, ties sharing the mass equally). `out` may not alias `x`.
pub fn softmax(ctx: &GpuContext, x: &Tensor, out: &Tensor, temperature: f32, groups: usize) -> Result<Dispatch> {
    const OP: &str = "softmax";
    check_temperature(OP, temperature)?;
    let rows = Rows::new(OP, x.shape(), groups)?;
    rows.expect(OP, "out", out, x.shape())?;
    rows.dispatch(ctx, "softmax_rows", SoftmaxMode::Softmax, temperature, &[x.arg(), out.arg_mut()])
}

/// `out = log_softmax(x)` over each group of K = C / groups channels,
/// computed as `(x - max) - ln(sum(exp(x - max)))`. `out` may not alias `x`.
pub fn log_softmax(ctx: &GpuContext, x: &Tensor, out: &Tensor, groups: usize) -> Result<Dispatch> {
    const OP: &str = "log_softmax";
    let rows = Rows::new(OP, x.shape(), groups)?;
    rows.expect(OP, "out", out, x.shape())?;
    rows.dispatch(ctx, "softmax_rows", SoftmaxMode::LogSoftmax, 1.0, &[x.arg(), out.arg_mut()])
}

/// Greedy decode: `out[n, g, h, w] = argmax_k logits[n, g*K + k, h, w]` as
/// f32, ties going to the smallest k. `out` is `[N, groups, H, W]`.
pub fn argmax(ctx: &GpuContext, logits: &Tensor, out: &Tensor, groups: usize) -> Result<Dispatch> {
    const OP: &str = "argmax";
    let rows = Rows::new(OP, logits.shape(), groups)?;
    rows.expect(OP, "out", out, rows.row_shape())?;
    rows.dispatch(ctx, "argmax_rows", SoftmaxMode::Softmax, 0.0, &[logits.arg(), out.arg_mut()])
}

/// Draw one category per (n, g, pixel) from `softmax(logits / temperature)`
/// over the group's K channels, by inverse CDF with the given uniforms:
/// `out = min { k : sum_{j<=k} p_j > u }` (as f32), with `uniforms` and `out`
/// of shape `[N, groups, H, W]` and uniforms in (0, 1) (e.g. from
/// `rng::uniform`). `temperature == 0` is greedy argmax (ties -> smallest k)
/// and ignores the uniforms.
pub fn sample_categorical(
    ctx: &GpuContext,
    logits: &Tensor,
    uniforms: &Tensor,
    out: &Tensor,
    groups: usize,
    temperature: f32,
) -> Result<Dispatch> {
    const OP: &str = "sample_categorical";
    check_temperature(OP, temperature)?;
    let rows = Rows::new(OP, logits.shape(), groups)?;
    rows.expect(OP, "uniforms", uniforms, rows.row_shape())?;
    rows.expect(OP, "out", out, rows.row_shape())?;
    rows.dispatch(ctx, "sample_rows", SoftmaxMode::Softmax, temperature, &[logits.arg(), out.arg_mut(), uniforms.arg()])
}

/// Change the temperature of a prepared [`softmax`] or [`sample_categorical`]
/// dispatch before replaying it (a no-op for log_softmax and argmax, which
/// ignore it). Same rules as at prepare time: finite and >= 0.
pub fn set_temperature(ctx: &GpuContext, d: &Dispatch, temperature: f32) -> Result<()> {
    check_temperature("set_temperature", temperature)?;
    d.update(ctx, |p: &mut SoftmaxUniform| p.temp = temperature)
}
