//! Layout ops: HCFlow squeeze / unsqueeze (= torch pixel_unshuffle /
//! pixel_shuffle), HCFlow's Haar down/up sampling, channel slicing and
//! concatenation, and nearest upsampling.
//!
//! Orderings, checked against the official code:
//! - HCFlow `squeeze2d(x, f)` is `view(B, C, H/f, f, W/f, f).permute(0, 1, 3, 5, 2, 4)`,
//!   i.e. out channel = `c*f*f + dy*f + dx`. That is exactly torch's
//!   `pixel_unshuffle(x, f)`, and `unsqueeze2d` is exactly `pixel_shuffle`;
//!   both names are provided and run the same kernel. (TensorFlow Glow's NHWC
//!   squeeze orders channels `(dy*f + dx)*C + c` instead; that order is not
//!   what HCFlow uses.)
//! - HCFlow `HaarDownsampling`: per channel a stride-2 conv with 4 fixed 2x2
//!   filters, divided by 4, then channels reordered band-major
//!   (out channel = `band*C + c`). The reverse undoes the reorder and applies
//!   the transposed conv with the same filters and no scaling.

use std::sync::Arc;

use crate::gpu::{grid_1d, to_u32, wg_entries, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource, WG};
use crate::{Error, Result, Shape, Tensor};

const ENTRIES: [EntryPoint; 9] =
    wg_entries(["space_to_depth", "depth_to_space", "haar_down", "haar_up", "copy_channels", "copy_block", "upsample2", "space_to_depth2", "depth_to_space2"]);
pub(crate) const SHADER: ShaderSource = ShaderSource::new("reshape", include_str!("../../kernels/reshape.wgsl"))
    .params(&[ReshapeUniform::LAYOUT])
    .entries(&ENTRIES);

crate::kernel_params! {
    /// Uniform block shared by every entry of kernels/reshape.wgsl (copy_block
    /// reuses some fields as strides and offsets, see there).
    pub struct ReshapeUniform = "reshape"::"Params" {
        n: u32,
        c_in: u32,
        h_in: u32,
        w_in: u32,
        c_out: u32,
        h_out: u32,
        w_out: u32,
        f: u32,
        in_start: u32,
        in_step: u32,
        out_start: u32,
        out_step: u32,
        count: u32,
    }
}

/// Channel-copy description for `copy_channels` (unused fields 0 elsewhere).
#[derive(Clone, Copy, Default)]
struct ChanCopy {
    in_start: usize,
    in_step: usize,
    out_start: usize,
    out_step: usize,
    count: usize,
}

/// Build one launch of `entry` reading `x` and writing `out` with `n` threads.
#[allow(clippy::too_many_arguments)] // private; every caller passes all fields of the block
fn launch(
    ctx: &GpuContext,
    entry: &str,
    x: &Tensor,
    out: &Tensor,
    n: usize,
    f: usize,
    copy: ChanCopy,
    flops: f64,
    bytes: f64,
) -> Result<Dispatch> {
    let (si, so) = (x.shape(), out.shape());
    let params = ReshapeUniform {
        n: to_u32(n),
        c_in: to_u32(si.c()),
        h_in: to_u32(si.h()),
        w_in: to_u32(si.w()),
        c_out: to_u32(so.c()),
        h_out: to_u32(so.h()),
        w_out: to_u32(so.w()),
        f: to_u32(f),
        in_start: to_u32(copy.in_start),
        in_step: to_u32(copy.in_step),
        out_start: to_u32(copy.out_start),
        out_step: to_u32(copy.out_step),
        count: to_u32(copy.count),
    };
    Ok(ctx
        .dispatch(KernelCall {
            shader: &SHADER,
            entry,
            constants: &[],
            params: Some(&params),
            buffers: &[x.arg(), out.arg_mut()],
            workgroups: grid_1d(n.div_ceil(WG)),
        })?
        .with_cost(flops, bytes))
}

/// The input is read while the output is written in one dispatch, so they
/// must be different buffers (wgpu rejects the aliased binding anyway).
fn no_alias(op: &str, x: &Tensor, out: &Tensor) -> Result<()> {
    if Arc::ptr_eq(x.buffer(), out.buffer()) {
        return Err(Error::InvalidArgument(format!("{op}: the output must not share a buffer with the input")));
    }
    Ok(())
}

fn expect_out(op: &str, x: Shape, out: Shape, want: Shape) -> Result<()> {
    if out != want {
        return Err(Error::Shape(format!("{op}: input {x} needs an output of shape {want}, got {out}")));
    }
    Ok(())
}

fn check_factor(op: &str, f: usize) -> Result<()> {
    if f == 0 {
        return Err(Error::InvalidArgument(format!("{op}: factor must be >= 1, got 0")));
    }
    Ok(())
}

/// Output shape of `space_to_depth(x, f)`, or why it has none.
fn s2d_shape(op: &str, s: Shape, f: usize) -> Result<Shape> {
    check_factor(op, f)?;
    if !s.h().is_multiple_of(f) || !s.w().is_multiple_of(f) {
        return Err(Error::Shape(format!("{op}: height and width of {s} must be divisible by the factor {f}")));
    }
    Ok(Shape::new(s.n(), s.c() * f * f, s.h() / f, s.w() / f))
}

/// Output shape of `depth_to_space(x, f)`, or why it has none.
fn d2s_shape(op: &str, s: Shape, f: usize) -> Result<Shape> {
    check_factor(op, f)?;
    if !s.c().is_multiple_of(f * f) {
        return Err(Error::Shape(format!("{op}: channels of {s} must be divisible by factor^2 = {}", f * f)));
    }
    Ok(Shape::new(s.n(), s.c() / (f * f), s.h() * f, s.w() * f))
}

// Output shapes, stated once: the prepare functions check `out` against
// them and the graph builder infers its node shapes from them.

/// `squeeze` / `pixel_unshuffle` by `f`: [n,c,h,w] -> [n,c*f*f,h/f,w/f].
pub fn space_to_depth_shape(s: Shape, f: usize) -> Result<Shape> {
    s2d_shape("space_to_depth", s, f)
}

/// `unsqueeze` / `pixel_shuffle` by `f`: [n,c,h,w] -> [n,c/(f*f),h*f,w*f].
pub fn depth_to_space_shape(s: Shape, f: usize) -> Result<Shape> {
    d2s_shape("depth_to_space", s, f)
}

/// [`haar_down`]: [n,c,h,w] -> [n,4c,h/2,w/2].
pub fn haar_down_shape(s: Shape) -> Result<Shape> {
    if !s.h().is_multiple_of(2) || !s.w().is_multiple_of(2) {
        return Err(Error::Shape(format!("haar_down: height and width of {s} must be even")));
    }
    Ok(Shape::new(s.n(), 4 * s.c(), s.h() / 2, s.w() / 2))
}

/// [`haar_up`]: [n,4c,h,w] -> [n,c,2h,2w].
pub fn haar_up_shape(s: Shape) -> Result<Shape> {
    if !s.c().is_multiple_of(4) {
        return Err(Error::Shape(format!("haar_up: channels of {s} must be divisible by 4 (4 Haar bands)")));
    }
    Ok(Shape::new(s.n(), s.c() / 4, s.h() * 2, s.w() * 2))
}

/// [`slice_channels`]: `count` channels `start, start+step, ...` of `s`.
pub fn slice_channels_shape(s: Shape, start: usize, step: usize, count: usize) -> Result<Shape> {
    let op = "slice_channels";
    if count == 0 {
        return Err(Error::InvalidArgument(format!("{op}: channel count must be >= 1")));
    }
    if step == 0 {
        return Err(Error::InvalidArgument(format!("{op}: channel step must be >= 1")));
    }
    let last = start.checked_add((count - 1).saturating_mul(step)).filter(|&l| l < s.c());
    if last.is_none() {
        return Err(Error::Shape(format!("{op}: channels {start}+{step}k (k < {count}) are out of range for input {s}")));
    }
    Ok(Shape::new(s.n(), count, s.h(), s.w()))
}

/// [`concat_channels`] of inputs with these shapes.
pub fn concat_shape(shapes: &[Shape]) -> Result<Shape> {
    let first = *shapes.first().ok_or_else(|| Error::InvalidArgument("concat_channels: no inputs".into()))?;
    if shapes.iter().any(|s| (s.n(), s.h(), s.w()) != (first.n(), first.h(), first.w())) {
        let list: Vec<String> = shapes.iter().map(|s| s.to_string()).collect();
        return Err(Error::Shape(format!("concat_channels: inputs differ outside the channel axis: {}", list.join(", "))));
    }
    Ok(Shape::new(first.n(), shapes.iter().map(|s| s.c()).sum(), first.h(), first.w()))
}

/// [`upsample_nearest`] by `f`: [n,c,h,w] -> [n,c,h*f,w*f].
pub fn upsample_nearest_shape(s: Shape, f: usize) -> Result<Shape> {
    check_factor("upsample_nearest", f)?;
    Ok(Shape::new(s.n(), s.c(), s.h() * f, s.w() * f))
}

/// cat([a, upsample_nearest(b, f)]) ([`write_channels`] + [`upsample_nearest_into`]).
pub fn concat_upsampled_shape(a: Shape, b: Shape, f: usize) -> Result<Shape> {
    concat_shape(&[a, upsample_nearest_shape(b, f)?])
}

fn space_to_depth(ctx: &GpuContext, op: &str, x: &Tensor, out: &Tensor, f: usize) -> Result<Dispatch> {
    let want = s2d_shape(op, x.shape(), f)?;
    expect_out(op, x.shape(), out.shape(), want)?;
    no_alias(op, x, out)?;
    let n = want.numel();
    if f == 2 && x.shape().w() % 4 == 0 {
        return launch(ctx, "space_to_depth2", x, out, n / 8, f, ChanCopy::default(), 0.0, 8.0 * n as f64);
    }
    launch(ctx, "space_to_depth", x, out, n, f, ChanCopy::default(), 0.0, 8.0 * n as f64)
}

fn depth_to_space(ctx: &GpuContext, op: &str, x: &Tensor, out: &Tensor, f: usize) -> Result<Dispatch> {
    let want = d2s_shape(op, x.shape(), f)?;
    expect_out(op, x.shape(), out.shape(), want)?;
    no_alias(op, x, out)?;
    let n = want.numel();
    if f == 2 && want.w() % 4 == 0 {
        return launch(ctx, "depth_to_space2", x, out, n / 8, f, ChanCopy::default(), 0.0, 8.0 * n as f64);
    }
    launch(ctx, "depth_to_space", x, out, n, f, ChanCopy::default(), 0.0, 8.0 * n as f64)
}

/// HCFlow `squeeze2d(x, factor)`: (B, C, H, W) -> (B, C*f*f, H/f, W/f),
/// out channel = `c*f*f + dy*f + dx`. Identical to [`pixel_unshuffle`].
pub fn squeeze(ctx: &GpuContext, x: &Tensor, factor: usize, out: &Tensor) -> Result<Dispatch> {
    space_to_depth(ctx, "squeeze", x, out, factor)
}

/// HCFlow `unsqueeze2d(x, factor)`: inverse of [`squeeze`]. Identical to [`pixel_shuffle`].
pub fn unsqueeze(ctx: &GpuContext, x: &Tensor, factor: usize, out: &Tensor) -> Result<Dispatch> {
    depth_to_space(ctx, "unsqueeze", x, out, factor)
}

/// torch `pixel_shuffle(x, r)`: (B, C*r*r, H, W) -> (B, C, H*r, W*r),
/// `out[b, c, h*r+dy, w*r+dx] = in[b, c*r*r + dy*r + dx, h, w]`.
pub fn pixel_shuffle(ctx: &GpuContext, x: &Tensor, r: usize, out: &Tensor) -> Result<Dispatch> {
    depth_to_space(ctx, "pixel_shuffle", x, out, r)
}

/// torch `pixel_unshuffle(x, r)`: inverse of [`pixel_shuffle`].
pub fn pixel_unshuffle(ctx: &GpuContext, x: &Tensor, r: usize, out: &Tensor) -> Result<Dispatch> {
    space_to_depth(ctx, "pixel_unshuffle", x, out, r)
}

/// HCFlow `HaarDownsampling` forward: (B, C, H, W) -> (B, 4C, H/2, W/2),
/// out channel = `band*C + c`, bands = average, horizontal, vertical and
/// diagonal differences of each 2x2 block, each divided by 4.
pub fn haar_down(ctx: &GpuContext, x: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let op = "haar_down";
    let s = x.shape();
    let want = haar_down_shape(s)?;
    expect_out(op, s, out.shape(), want)?;
    no_alias(op, x, out)?;
    let n = s.n() * s.c() * want.hw();
    launch(ctx, "haar_down", x, out, n, 2, ChanCopy::default(), 16.0 * n as f64, 32.0 * n as f64)
}

/// HCFlow `HaarDownsampling` reverse: (B, 4C, H, W) -> (B, C, 2H, 2W), the
/// exact inverse of [`haar_down`] (transposed conv with the same filters,
/// unscaled).
pub fn haar_up(ctx: &GpuContext, x: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let op = "haar_up";
    let s = x.shape();
    let want = haar_up_shape(s)?;
    expect_out(op, s, out.shape(), want)?;
    no_alias(op, x, out)?;
    let n = s.n() * want.c() * s.hw();
    launch(ctx, "haar_up", x, out, n, 2, ChanCopy::default(), 12.0 * n as f64, 32.0 * n as f64)
}

/// Per-sample log|det J| of HCFlow's Haar layer for an input of `input`
/// shape (the shape the layer receives in that direction). Each 2x2 block
/// goes through a 4x4 map with |det| = 1/16 forward and 16 in reverse, so
/// forward = `C*H*W/4 * ln(1/16)` and reverse = `C*H*W/4 * ln(16)` with the
/// same element count. This is the official layer's `last_jac`; note that
/// the official `forward` returns `logdet` unchanged (it only stores
/// `last_jac`), so add this value only where the model meant to.
pub fn haar_logdet(input: Shape, reverse: bool) -> f64 {
    let blocks = (input.c() * input.h() * input.w()) as f64 / 4.0;
    let per_block = if reverse { 16f64.ln() } else { (1.0 / 16f64).ln() };
    blocks * per_block
}

/// Validated strided channel copy with nearest upsampling by `f`:
/// `out[b, out_start + k*out_step, y, x] = in[b, in_start + k*in_step, y/f, x/f]`.
fn copy_channels(ctx: &GpuContext, op: &str, x: &Tensor, out: &Tensor, f: usize, c: ChanCopy) -> Result<Dispatch> {
    check_factor(op, f)?;
    let (si, so) = (x.shape(), out.shape());
    if c.count == 0 {
        return Err(Error::InvalidArgument(format!("{op}: channel count must be >= 1")));
    }
    if c.in_step == 0 || c.out_step == 0 {
        return Err(Error::InvalidArgument(format!("{op}: channel step must be >= 1")));
    }
    if si.n() != so.n() {
        return Err(Error::Shape(format!("{op}: batch sizes differ: input {si}, output {so}")));
    }
    if so.h() != si.h() * f || so.w() != si.w() * f {
        return Err(Error::Shape(format!(
            "{op}: output {so} must be {}x{} (input {si} times {f})",
            si.h() * f,
            si.w() * f
        )));
    }
    let last_in = c.in_start + (c.count - 1) * c.in_step;
    if last_in >= si.c() {
        return Err(Error::Shape(format!(
            "{op}: channels {}..={last_in} step {} are out of range for input {si}",
            c.in_start, c.in_step
        )));
    }
    let last_out = c.out_start + (c.count - 1) * c.out_step;
    if last_out >= so.c() {
        return Err(Error::Shape(format!(
            "{op}: channels {}..={last_out} step {} are out of range for output {so}",
            c.out_start, c.out_step
        )));
    }
    no_alias(op, x, out)?;
    let n = si.n() * c.count * so.hw();
    if f == 1 && c.in_step == 1 && c.out_step == 1 {
        return copy_block(ctx, x, out, c);
    }
    if f == 2 && c.in_step == 1 && c.out_step == 1 && si.w() % 2 == 0 {
        let threads = si.n() * c.count * si.hw() / 2;
        return launch(ctx, "upsample2", x, out, threads, f, c, 0.0, 4.0 * (n + si.n() * c.count * si.hw()) as f64);
    }
    launch(ctx, "copy_channels", x, out, n, f, c, 0.0, 4.0 * (n + si.n() * c.count * si.hw()) as f64)
}

/// The contiguous case of `copy_channels`: one block of `count` whole
/// channels per sample (checked by the caller).
fn copy_block(ctx: &GpuContext, x: &Tensor, out: &Tensor, c: ChanCopy) -> Result<Dispatch> {
    let (si, so) = (x.shape(), out.shape());
    let hw = si.hw();
    let len = c.count * hw;
    let vec = if len % 4 == 0 { 4 } else { 1 };
    let threads = si.n() * len / vec;
    // copy_block's reading of the block: batch strides in c_in / c_out,
    // channel offsets in h_in / h_out, the block length in w_out.
    let params = ReshapeUniform {
        n: to_u32(threads),
        c_in: to_u32(si.c() * hw),
        h_in: to_u32(c.in_start * hw),
        c_out: to_u32(so.c() * hw),
        h_out: to_u32(c.out_start * hw),
        w_out: to_u32(len),
        f: 1,
        ..Default::default()
    };
    Ok(ctx
        .dispatch(KernelCall {
            shader: &SHADER,
            entry: "copy_block",
            constants: &[("VEC", vec as f64)],
            params: Some(&params),
            buffers: &[x.arg(), out.arg_mut()],
            workgroups: grid_1d(threads.div_ceil(WG)),
        })?
        .with_cost(0.0, 8.0 * (si.n() * len) as f64))
}

/// out = x[:, start : start + step*count : step] (out has `count` channels).
/// HCFlow `split_feature(x, "split")` is (start 0, step 1, count C/2) and
/// (C/2, 1, C - C/2); `"cross"` is (0, 2, ceil(C/2)) and (1, 2, floor(C/2)).
pub fn slice_channels(
    ctx: &GpuContext,
    x: &Tensor,
    start: usize,
    step: usize,
    count: usize,
    out: &Tensor,
) -> Result<Dispatch> {
    let op = "slice_channels";
    if out.shape().c() != count {
        return Err(Error::Shape(format!("{op}: output {} must have {count} channels", out.shape())));
    }
    expect_out(op, x.shape(), out.shape(), slice_channels_shape(x.shape(), start, step, count)?)?;
    copy_channels(ctx, op, x, out, 1, ChanCopy { in_start: start, in_step: step, out_start: 0, out_step: 1, count })
}

/// Insert: out[:, start + k*step] = x[:, k] for every channel k of x; other
/// channels of `out` are left untouched. Lets producers write straight into
/// a slice of a bigger (concatenated) tensor; step 2 re-interleaves a
/// `"cross"` split.
pub fn write_channels(ctx: &GpuContext, x: &Tensor, out: &Tensor, start: usize, step: usize) -> Result<Dispatch> {
    let count = x.shape().c();
    copy_channels(ctx, "write_channels", x, out, 1, ChanCopy { in_start: 0, in_step: 1, out_start: start, out_step: step, count })
}

/// torch.cat(inputs, dim=1): one copy dispatch per input, each writing its
/// own channel range of `out`.
pub fn concat_channels(ctx: &GpuContext, inputs: &[&Tensor], out: &Tensor) -> Result<Vec<Dispatch>> {
    let op = "concat_channels";
    if inputs.is_empty() {
        return Err(Error::InvalidArgument(format!("{op}: no inputs")));
    }
    let so = out.shape();
    let total: usize = inputs.iter().map(|t| t.shape().c()).sum();
    for t in inputs {
        let s = t.shape();
        if s.n() != so.n() || s.h() != so.h() || s.w() != so.w() {
            return Err(Error::Shape(format!("{op}: input {s} does not match output {so} in batch or size")));
        }
    }
    if total != so.c() {
        let list: Vec<String> = inputs.iter().map(|t| t.shape().to_string()).collect();
        return Err(Error::Shape(format!("{op}: inputs {} have {total} channels, output {so} has {}", list.join(", "), so.c())));
    }
    let mut start = 0;
    let mut ds = Vec::with_capacity(inputs.len());
    for t in inputs {
        let c = t.shape().c();
        ds.push(copy_channels(ctx, op, t, out, 1, ChanCopy { in_start: 0, in_step: 1, out_start: start, out_step: 1, count: c })?);
        start += c;
    }
    Ok(ds)
}

/// torch `F.interpolate(x, scale_factor=factor, mode="nearest")` /
/// `nn.Upsample(scale_factor=factor)` for an integer factor:
/// out[b, c, y, x] = in[b, c, y/f, x/f].
pub fn upsample_nearest(ctx: &GpuContext, x: &Tensor, factor: usize, out: &Tensor) -> Result<Dispatch> {
    let op = "upsample_nearest";
    if out.shape().c() != x.shape().c() {
        return Err(Error::Shape(format!("{op}: input {} and output {} channel counts differ", x.shape(), out.shape())));
    }
    let count = x.shape().c();
    copy_channels(ctx, op, x, out, factor, ChanCopy { in_start: 0, in_step: 1, out_start: 0, out_step: 1, count })
}

/// Nearest upsampling written into channels `start..start + C` of a bigger
/// `out` (fuses HCFlow's `cat([y, interpolate(f, 2)], 1)` second half).
pub fn upsample_nearest_into(ctx: &GpuContext, x: &Tensor, factor: usize, out: &Tensor, start: usize) -> Result<Dispatch> {
    let count = x.shape().c();
    copy_channels(ctx, "upsample_nearest_into", x, out, factor, ChanCopy { in_start: 0, in_step: 1, out_start: start, out_step: 1, count })
}
