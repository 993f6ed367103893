//! 2-D convolution and transposed convolution (torch `Conv2d` /
//! `ConvTranspose2d` semantics) as an implicit GEMM with a fused epilogue:
//!
//! `out = alpha * act((conv(x) + bias[c]) * scale[c]) + beta * residual`
//!
//! Weights are repacked once on the host into [`Conv2dWeights`] (a k-major
//! matrix so the kernel's weight-tile loads are contiguous, plus a small table
//! of kernel taps); each call then only validates shapes and records one
//! dispatch. See `kernels/conv.wgsl` for the tiling.
//!
//! A conv over a channel concatenation runs as one [`conv2d_pre`] per part
//! (weights split along input channels, see [`Conv2dWeights::split_input`]),
//! each starting from the previous part's raw sums, so the concatenation is
//! never materialised and the result has the bits of the single conv.

use std::sync::Arc;

use crate::gpu::{grid_1d, to_i32, to_u32, ActCode, BufArg, ConvMode, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource};
use crate::{Dtype, Error, Result, Shape, Tensor};

/// Output-tile size of the tiled kernel (BM/BN in conv.wgsl, checked by the reflection test).
const TILE_M: usize = 64;
const TILE_N: usize = 128;
/// Threads of conv2d and conv2d_rows; conv2d_rows covers RWG * RJ columns per workgroup.
const THREADS: u32 = 64;
/// Threads of conv2d_narrow (NWG), which covers 4 * NWG channels of CJ columns per workgroup.
const NARROW_THREADS: u32 = 16;
/// Outputs of at most this many columns (batch * Ho * Wo) take conv2d_narrow on CPU adapters.
const NARROW_MAX_COLS: usize = 32;
/// The same bound where the device has subgroups (conv2d_narrow then loads its columns through them).
const NARROW_MAX_COLS_SUBGROUPS: usize = 64;
/// Columns per conv2d_narrow workgroup (the CJ override, at most 16). Every
/// weight quad a workgroup loads serves CJ columns, and the Winograd GEMMs
/// of SR3's 8x8-32x32 levels (16-64 tiles) are bound by reading U: 16
/// instead of 8 measured 40-50 -> 34 ms on 512->512 at 16x16 (F(4x4)) and
/// GEMM 22-25 -> 16-18 ms on 256->256 at 32x32, paired runs alternated.
const NARROW_CJ: usize = 16;
/// Threads of conv2d_narrow8, the same body for 32-channel groups.
const NARROW8_THREADS: u32 = 8;
/// Columns from which a pointwise conv of whole 32-channel groups takes conv2d_narrow8.
const NARROW8_MIN_COLS: usize = 1024;

pub(crate) const SHADER: ShaderSource = ShaderSource::new("conv", include_str!("../../kernels/conv.wgsl"))
    .params(&[ConvUniform::LAYOUT])
    .entries(&[EntryPoint::x("conv2d", THREADS), EntryPoint::x("conv2d_rows", THREADS), EntryPoint::x("conv2d_narrow", NARROW_THREADS), EntryPoint::x("conv2d_narrow8", NARROW8_THREADS)])
    .consts(&[("BM", TILE_M as u32), ("BN", TILE_N as u32), ("RWG", THREADS), ("NWG", NARROW_THREADS)]);

crate::kernel_params! {
    /// Uniform block of kernels/conv.wgsl (see its field comments).
    pub struct ConvUniform = "conv"::"Params" {
        cin: u32,
        h: u32,
        w: u32,
        hw: u32,
        cout: u32,
        ho: u32,
        wo: u32,
        howo: u32,
        x_gstride: u32,
        cout_g: u32,
        k: u32,
        ntot: u32,
        sy: i32,
        sx: i32,
        py: i32,
        px: i32,
        dy: i32,
        dx: i32,
        a_kstride: u32,
        a_gstride: u32,
        m_tiles: u32,
        alpha: f32,
        beta: f32,
        slope: f32,
    }
}

/// Stride, padding, dilation and groups of a convolution. Default: 1, 0, 1, 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// (sy, sx)
    pub stride: [usize; 2],
    /// (py, px), zero padding on both sides
    pub padding: [usize; 2],
    /// (dy, dx)
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 }
    }
}

impl Conv2dParams {
    /// Square stride / padding, no dilation, one group.
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv2dParams { stride: [stride; 2], padding: [padding; 2], ..Default::default() }
    }
}

/// Parameters of a transposed convolution (torch `ConvTranspose2d`).
/// Default: stride 1, padding 0, output_padding 0, dilation 1, groups 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dParams {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    /// Extra rows/columns added to one side of the output (must be < stride or < dilation).
    pub output_padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for ConvTranspose2dParams {
    fn default() -> Self {
        ConvTranspose2dParams { stride: [1, 1], padding: [0, 0], output_padding: [0, 0], dilation: [1, 1], groups: 1 }
    }
}

impl ConvTranspose2dParams {
    /// Square stride / padding / output_padding, no dilation, one group.
    pub fn new(stride: usize, padding: usize, output_padding: usize) -> Self {
        ConvTranspose2dParams {
            stride: [stride; 2],
            padding: [padding; 2],
            output_padding: [output_padding; 2],
            ..Default::default()
        }
    }
}

/// Activation applied in the epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    #[default]
    None,
    Relu,
    /// LeakyReLU with this negative slope.
    LeakyRelu(f32),
    /// Swish / SiLU: x * sigmoid(x).
    Swish,
    Tanh,
    Sigmoid,
}

impl Activation {
    /// The kernel's ACT code and LeakyReLU slope (0 for the others).
    pub(crate) fn code(self) -> (ActCode, f32) {
        match self {
            Activation::None => (ActCode::None, 0.0),
            Activation::Relu => (ActCode::Relu, 0.0),
            Activation::LeakyRelu(s) => (ActCode::LeakyRelu, s),
            Activation::Swish => (ActCode::Swish, 0.0),
            Activation::Tanh => (ActCode::Tanh, 0.0),
            Activation::Sigmoid => (ActCode::Sigmoid, 0.0),
        }
    }
}

/// `out = alpha * act(...) + beta * residual`. Default: no activation,
/// alpha = 1, beta = 0 (beta is only used when a residual is passed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Epilogue {
    pub activation: Activation,
    pub alpha: f32,
    pub beta: f32,
}

impl Default for Epilogue {
    fn default() -> Self {
        Epilogue { activation: Activation::None, alpha: 1.0, beta: 0.0 }
    }
}

impl Epilogue {
    pub fn act(activation: Activation) -> Self {
        Epilogue { activation, ..Default::default() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Conv,
    Transposed { groups: usize },
}

/// Convolution weights repacked for the kernel, with bias and per-channel scale.
/// Built once at load time; cheap to clone (GPU buffers are shared).
#[derive(Clone)]
pub struct Conv2dWeights {
    kind: Kind,
    /// Torch weight shape as given.
    shape: [usize; 4],
    cout: usize,
    k: usize,
    /// Row stride of the packed `Conv` matrix (`Transposed`: unused).
    kstride: usize,
    /// Packed weights: `Conv`: [K][kstride] (Cout padded to a multiple of 4,
    /// so conv2d_rows reads whole vec4 rows even for 3 or 18 channels);
    /// `Transposed`: [groups][K][Cout/groups].
    packed: Arc<wgpu::Buffer>,
    packed_bytes: u64,
    /// Storage type of `packed` (conv.wgsl's `wpk_t`).
    dtype: Dtype,
    /// K entries of `ci << 16 | ky << 8 | kx` (ci within the group).
    taps: Arc<wgpu::Buffer>,
    taps_bytes: u64,
    /// bias[cout] then scale[cout].
    epi: Tensor,
    /// A bias or scale was given (else the kernel skips the table: HAS_EPI).
    has_epi: bool,
}

impl std::fmt::Debug for Conv2dWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conv2dWeights({:?}, {:?})", self.kind, self.shape)
    }
}

fn check_vec(what: &str, v: Option<&[f32]>, n: usize) -> Result<Vec<f32>> {
    match v {
        Some(v) if v.len() != n => Err(Error::Shape(format!("conv weights: {what} has {} values, expected {n}", v.len()))),
        Some(v) => Ok(v.to_vec()),
        None => Ok(Vec::new()),
    }
}

/// The epilogue table every conv form binds: bias[cout] (0 when absent)
/// then scale[cout] (1 when absent), lengths checked.
pub(crate) fn epilogue_table(cout: usize, bias: Option<&[f32]>, scale: Option<&[f32]>) -> Result<Vec<f32>> {
    let (bias, scale) = (check_vec("bias", bias, cout)?, check_vec("scale", scale, cout)?);
    let mut epi = vec![0f32; 2 * cout];
    if !bias.is_empty() {
        epi[..cout].copy_from_slice(&bias);
    }
    if scale.is_empty() {
        epi[cout..].fill(1.0);
    } else {
        epi[cout..].copy_from_slice(&scale);
    }
    Ok(epi)
}

impl Conv2dWeights {
    /// Weights of a `Conv2d`: `weight` in torch layout `[cout, cin_per_group, kh, kw]`,
    /// optional `bias` and per-output-channel `scale` (each `cout` values).
    pub fn new(
        ctx: &GpuContext,
        weight: &[f32],
        shape: [usize; 4],
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
    ) -> Result<Self> {
        Self::new_as(ctx, Dtype::F32, weight, shape, bias, scale)
    }

    /// [`Conv2dWeights::new`] with the weight matrix stored as `dtype` (f16:
    /// rounded to nearest even on the host; bias and scale stay f32).
    pub fn new_as(
        ctx: &GpuContext,
        dtype: Dtype,
        weight: &[f32],
        shape: [usize; 4],
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
    ) -> Result<Self> {
        let [cout, cin_g, kh, kw] = shape;
        Self::check_shape("conv2d", weight, shape)?;
        let k = cin_g * kh * kw;
        // A[k][co] = w[co][k]: a row of output channels is contiguous.
        let kstride = cout.next_multiple_of(4);
        let mut packed = vec![0f32; k * kstride];
        for co in 0..cout {
            for kk in 0..k {
                packed[kk * kstride + co] = weight[co * k + kk];
            }
        }
        Self::upload(ctx, dtype, Kind::Conv, shape, cout, cin_g, kstride, &packed, bias, scale)
    }

    /// One `Conv2d` (groups 1) split along its input channels into parts of
    /// `channels[i]` channels, for [`conv2d_pre`] over the parts of a
    /// concatenation: `bias` and `scale` go to the last part, the others get
    /// bias 0 and scale 1 (their raw sums are the next part's `pre`).
    pub fn split_input(
        ctx: &GpuContext,
        weight: &[f32],
        shape: [usize; 4],
        channels: &[usize],
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
    ) -> Result<Vec<Self>> {
        Self::split_input_as(ctx, Dtype::F32, weight, shape, channels, bias, scale)
    }

    /// [`Conv2dWeights::split_input`] stored as `dtype`.
    pub fn split_input_as(
        ctx: &GpuContext,
        dtype: Dtype,
        weight: &[f32],
        shape: [usize; 4],
        channels: &[usize],
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
    ) -> Result<Vec<Self>> {
        Self::check_shape("conv2d", weight, shape)?;
        let total: usize = channels.iter().sum();
        if total != shape[1] || channels.contains(&0) {
            return Err(Error::Shape(format!(
                "conv2d weights {shape:?}: input parts of {channels:?} channels do not split its {} input channels",
                shape[1]
            )));
        }
        let mut start = 0;
        let mut parts = Vec::with_capacity(channels.len());
        for (i, &c) in channels.iter().enumerate() {
            let last = i + 1 == channels.len();
            let (w, ws) = input_slice(weight, shape, start, c)?;
            parts.push(Self::new_as(ctx, dtype, &w, ws, bias.filter(|_| last), scale.filter(|_| last))?);
            start += c;
        }
        Ok(parts)
    }

    /// Weights of a `ConvTranspose2d`: `weight` in torch layout
    /// `[cin, cout_per_group, kh, kw]`, the layer's `groups`, optional `bias`
    /// and `scale` (each `groups * cout_per_group` values).
    pub fn new_transposed(
        ctx: &GpuContext,
        weight: &[f32],
        shape: [usize; 4],
        groups: usize,
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
    ) -> Result<Self> {
        let [cin, cout_g, kh, kw] = shape;
        Self::check_shape("conv_transpose2d", weight, shape)?;
        if groups == 0 || cin % groups != 0 {
            return Err(Error::InvalidArgument(format!(
                "conv_transpose2d weights: {cin} input channels are not divisible by groups = {groups}"
            )));
        }
        let cin_g = cin / groups;
        let khw = kh * kw;
        let k = cin_g * khw;
        // A[g][k][m] = w[g*cin_g + ci][m][ky][kx] with k = (ci, ky, kx).
        let mut packed = vec![0f32; groups * k * cout_g];
        for g in 0..groups {
            for ci in 0..cin_g {
                for m in 0..cout_g {
                    for t in 0..khw {
                        packed[(g * k + ci * khw + t) * cout_g + m] = weight[((g * cin_g + ci) * cout_g + m) * khw + t];
                    }
                }
            }
        }
        Self::upload(ctx, Dtype::F32, Kind::Transposed { groups }, shape, groups * cout_g, cin, cout_g, &packed, bias, scale)
    }

    fn check_shape(op: &str, weight: &[f32], shape: [usize; 4]) -> Result<()> {
        if shape.contains(&0) {
            return Err(Error::Shape(format!("{op} weights: shape {shape:?} has a zero dimension")));
        }
        let n: usize = shape.iter().product();
        if weight.len() != n {
            return Err(Error::Shape(format!("{op} weights: {} values given for shape {shape:?} ({n} expected)", weight.len())));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn upload(
        ctx: &GpuContext,
        dtype: Dtype,
        kind: Kind,
        shape: [usize; 4],
        cout: usize,
        cin: usize,
        kstride: usize,
        packed: &[f32],
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
    ) -> Result<Self> {
        let (kh, kw) = (shape[2], shape[3]);
        let cin_g = match kind {
            Kind::Conv => cin,
            Kind::Transposed { groups } => cin / groups,
        };
        let k = cin_g * kh * kw;
        let epi = epilogue_table(cout, bias, scale)?;
        if cin_g > 0xFFFF || kh > 0xFF || kw > 0xFF {
            return Err(Error::InvalidArgument(format!(
                "conv weights {shape:?}: at most 65535 input channels per group and 255x255 kernels are supported"
            )));
        }
        let mut taps = Vec::with_capacity(k);
        for ci in 0..cin_g {
            for ky in 0..kh {
                for kx in 0..kw {
                    taps.push((ci << 16 | ky << 8 | kx) as u32);
                }
            }
        }
        // Padded to whole vec4s (the kernel reads the matrix as array<vec4<f32>>)
        // plus one tile of rows: conv2d_rows reads a whole tile row of weights
        // and only discards the channels past cout.
        let mut packed = packed.to_vec();
        packed.resize(packed.len().next_multiple_of(4) + TILE_M, 0.0);
        let packed_bytes = packed.len() as u64 * dtype.size();
        ctx.check_dtype(dtype)?;
        if packed_bytes > ctx.max_binding_bytes() {
            return Err(Error::TooLarge(format!("conv weights {shape:?} need {packed_bytes} bytes")));
        }
        let make = |label, data: &[u8]| Arc::new(ctx.storage_buffer_init(label, data, wgpu::BufferUsages::STORAGE));
        Ok(Conv2dWeights {
            kind,
            shape,
            cout,
            k,
            kstride,
            packed: make("conv weights", &crate::tensor::encode(&packed, dtype)),
            packed_bytes,
            dtype,
            taps: make("conv taps", bytemuck::cast_slice(&taps)),
            taps_bytes: (taps.len() * 4) as u64,
            epi: Tensor::from_slice(ctx, Shape::new(1, 1, 2, cout), &epi)?,
            has_epi: bias.is_some() || scale.is_some(),
        })
    }

    /// Torch weight shape as given to the constructor.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }
    /// Total output channels.
    pub fn out_channels(&self) -> usize {
        self.cout
    }
    /// Storage type of the weight matrix.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }
    /// Whether these are `ConvTranspose2d` weights.
    pub fn is_transposed(&self) -> bool {
        matches!(self.kind, Kind::Transposed { .. })
    }
}

/// Input channels `start..start + count` of torch `Conv2d` weights `[cout, cin, kh, kw]`
/// (with their shape): the weights a part of a channel concatenation meets.
pub fn input_slice(weight: &[f32], shape: [usize; 4], start: usize, count: usize) -> Result<(Vec<f32>, [usize; 4])> {
    Conv2dWeights::check_shape("conv2d", weight, shape)?;
    let [cout, cin, kh, kw] = shape;
    if count == 0 || start + count > cin {
        return Err(Error::Shape(format!("conv2d weights {shape:?}: no input channels {start}..{}", start + count)));
    }
    let khw = kh * kw;
    let mut w = Vec::with_capacity(cout * count * khw);
    for co in 0..cout {
        let row = (co * cin + start) * khw;
        w.extend_from_slice(&weight[row..row + count * khw]);
    }
    Ok((w, [cout, count, kh, kw]))
}

/// Everything the kernel needs, resolved from shapes and params.
struct Geometry {
    x: Shape,
    out: Shape,
    groups: usize,
    /// Input channels between consecutive groups' first channels (the
    /// channels per group but for [`conv2d_group_strided`]).
    x_gstride: usize,
    cout_g: usize,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

fn conv_out_dim(op: &str, axis: &str, input: usize, k: usize, s: usize, p: usize, d: usize) -> Result<usize> {
    let span = d * (k - 1) + 1;
    if input + 2 * p < span {
        return Err(Error::Shape(format!(
            "{op}: input {axis} = {input} with padding {p} is smaller than the dilated kernel ({span})"
        )));
    }
    Ok((input + 2 * p - span) / s + 1)
}

fn check_common(op: &str, stride: [usize; 2], dilation: [usize; 2], groups: usize) -> Result<()> {
    if stride.contains(&0) || dilation.contains(&0) || groups == 0 {
        return Err(Error::InvalidArgument(format!(
            "{op}: stride {stride:?}, dilation {dilation:?} and groups {groups} must all be >= 1"
        )));
    }
    Ok(())
}

fn conv_geometry(x: Shape, w: &Conv2dWeights, p: &Conv2dParams) -> Result<Geometry> {
    const OP: &str = "conv2d";
    if w.is_transposed() {
        return Err(Error::InvalidArgument(format!("{OP}: given ConvTranspose2d weights {:?}", w.shape)));
    }
    check_common(OP, p.stride, p.dilation, p.groups)?;
    let [cout, cin_g, kh, kw] = w.shape;
    if x.c() != cin_g * p.groups {
        return Err(Error::Shape(format!(
            "{OP}: input {x} has {} channels; weights {:?} with groups = {} expect {}",
            x.c(),
            w.shape,
            p.groups,
            cin_g * p.groups
        )));
    }
    if cout % p.groups != 0 {
        return Err(Error::InvalidArgument(format!(
            "{OP}: {cout} output channels are not divisible by groups = {}",
            p.groups
        )));
    }
    let ho = conv_out_dim(OP, "height", x.h(), kh, p.stride[0], p.padding[0], p.dilation[0])?;
    let wo = conv_out_dim(OP, "width", x.w(), kw, p.stride[1], p.padding[1], p.dilation[1])?;
    Ok(Geometry {
        x,
        out: Shape::new(x.n(), cout, ho, wo),
        groups: p.groups,
        x_gstride: cin_g,
        cout_g: cout / p.groups,
        stride: p.stride,
        padding: p.padding,
        dilation: p.dilation,
    })
}

fn transposed_geometry(x: Shape, w: &Conv2dWeights, p: &ConvTranspose2dParams) -> Result<Geometry> {
    const OP: &str = "conv_transpose2d";
    let wg = match w.kind {
        Kind::Transposed { groups } => groups,
        Kind::Conv => return Err(Error::InvalidArgument(format!("{OP}: given Conv2d weights {:?}", w.shape))),
    };
    check_common(OP, p.stride, p.dilation, p.groups)?;
    if p.groups != wg {
        return Err(Error::InvalidArgument(format!(
            "{OP}: params say groups = {} but the weights were packed for groups = {wg}",
            p.groups
        )));
    }
    let [cin, cout_g, kh, kw] = w.shape;
    if x.c() != cin {
        return Err(Error::Shape(format!("{OP}: input {x} has {} channels; weights {:?} expect {cin}", x.c(), w.shape)));
    }
    for a in 0..2 {
        if p.output_padding[a] >= p.stride[a] && p.output_padding[a] >= p.dilation[a] {
            return Err(Error::InvalidArgument(format!(
                "{OP}: output_padding {:?} must be smaller than stride {:?} or dilation {:?}",
                p.output_padding, p.stride, p.dilation
            )));
        }
    }
    let dim = |axis: &str, i: usize, k: usize, a: usize| -> Result<usize> {
        let full = (i - 1) * p.stride[a] + p.dilation[a] * (k - 1) + p.output_padding[a] + 1;
        if full <= 2 * p.padding[a] {
            return Err(Error::Shape(format!(
                "{OP}: input {axis} = {i}, kernel {k}, stride {}, padding {} gives an empty output",
                p.stride[a], p.padding[a]
            )));
        }
        Ok(full - 2 * p.padding[a])
    };
    let ho = dim("height", x.h(), kh, 0)?;
    let wo = dim("width", x.w(), kw, 1)?;
    Ok(Geometry {
        x,
        out: Shape::new(x.n(), wg * cout_g, ho, wo),
        groups: wg,
        x_gstride: cin / wg,
        cout_g,
        stride: p.stride,
        padding: p.padding,
        dilation: p.dilation,
    })
}

/// Output shape of `conv2d(x, w, p)`, or the reason the combination is invalid.
pub fn conv2d_out_shape(x: Shape, w: &Conv2dWeights, p: &Conv2dParams) -> Result<Shape> {
    Ok(conv_geometry(x, w, p)?.out)
}

/// Output shape of `conv_transpose2d(x, w, p)`:
/// `(H-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1`.
pub fn conv_transpose2d_out_shape(x: Shape, w: &Conv2dWeights, p: &ConvTranspose2dParams) -> Result<Shape> {
    Ok(transposed_geometry(x, w, p)?.out)
}

/// torch `Conv2d` into `out` (shape from [`conv2d_out_shape`]) with the fused
/// epilogue. `residual` (the output's shape) is added as `beta * residual`.
/// `out` must not alias `x` or `residual`.
pub fn conv2d(
    ctx: &GpuContext,
    x: &Tensor,
    w: &Conv2dWeights,
    p: &Conv2dParams,
    epi: &Epilogue,
    residual: Option<&Tensor>,
    out: &Tensor,
) -> Result<Dispatch> {
    conv2d_pre(ctx, x, w, p, epi, residual, None, out)
}

/// [`conv2d`] whose sums start from `pre` (the output's shape) instead of 0:
/// `out = alpha * act((pre + conv(x) + bias) * scale) + beta * residual`.
/// `pre` holds the raw sums (identity epilogue) of the parts of a channel
/// concatenation before `x`; the sum is the same k-order chain as one conv
/// over the concatenation, so the bits are those of that conv. `pre` may be
/// `out` itself (accumulation in place, no second buffer); `out` must not
/// alias `x` or `residual`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_pre(
    ctx: &GpuContext,
    x: &Tensor,
    w: &Conv2dWeights,
    p: &Conv2dParams,
    epi: &Epilogue,
    residual: Option<&Tensor>,
    pre: Option<&Tensor>,
    out: &Tensor,
) -> Result<Dispatch> {
    let geo = conv_geometry(x.shape(), w, p)?;
    let [_, _, kh, kw] = w.shape;
    let pointwise = kh == 1 && kw == 1 && p.stride == [1, 1] && p.padding == [0, 0];
    launch(ctx, "conv2d", &geo, w, if pointwise { ConvMode::Pointwise } else { ConvMode::General }, x, epi, residual, pre, out)
}

/// A grouped 1x1 conv (stride 1, no padding) whose group g reads its
/// `cin_g` input channels (the weights' `[_, cin_g, 1, 1]`) from channel
/// `g * group_stride` of `x`, which has `groups * group_stride` channels:
/// the Winograd GEMM over a transform buffer with room for more channels
/// than this conv reads (`ops::winograd::gemm_output`). Identity epilogue.
pub fn conv2d_group_strided(ctx: &GpuContext, x: &Tensor, w: &Conv2dWeights, groups: usize, group_stride: usize, out: &Tensor) -> Result<Dispatch> {
    const OP: &str = "conv2d_group_strided";
    let [cout, cin_g, kh, kw] = w.shape;
    let s = x.shape();
    if w.is_transposed() || kh != 1 || kw != 1 || groups == 0 || cout % groups != 0 || group_stride < cin_g || s.c() != groups * group_stride {
        return Err(Error::Shape(format!(
            "{OP}: input {s} with 1x1 weights {:?}, {groups} groups every {group_stride} channels \
             (needs 1x1 weights, cout divisible by groups, cin_g <= group stride, groups * stride channels)",
            w.shape
        )));
    }
    let geo = Geometry {
        x: s,
        out: Shape::new(s.n(), cout, s.h(), s.w()),
        groups,
        x_gstride: group_stride,
        cout_g: cout / groups,
        stride: [1, 1],
        padding: [0, 0],
        dilation: [1, 1],
    };
    launch(ctx, OP, &geo, w, ConvMode::Pointwise, x, &Epilogue::default(), None, None, out)
}

/// torch `ConvTranspose2d` into `out` (shape from [`conv_transpose2d_out_shape`])
/// with the fused epilogue. `out` must not alias `x` or `residual`.
pub fn conv_transpose2d(
    ctx: &GpuContext,
    x: &Tensor,
    w: &Conv2dWeights,
    p: &ConvTranspose2dParams,
    epi: &Epilogue,
    residual: Option<&Tensor>,
    out: &Tensor,
) -> Result<Dispatch> {
    let geo = transposed_geometry(x.shape(), w, p)?;
    launch(ctx, "conv_transpose2d", &geo, w, ConvMode::Transposed, x, epi, residual, None, out)
}

#[allow(clippy::too_many_arguments)]
fn launch(
    ctx: &GpuContext,
    op: &str,
    geo: &Geometry,
    w: &Conv2dWeights,
    mode: ConvMode,
    x: &Tensor,
    epi: &Epilogue,
    residual: Option<&Tensor>,
    pre: Option<&Tensor>,
    out: &Tensor,
) -> Result<Dispatch> {
    if out.shape() != geo.out {
        return Err(Error::Shape(format!(
            "{op}: output tensor is {} but input {} with weights {:?} gives {}",
            out.shape(),
            geo.x,
            w.shape,
            geo.out
        )));
    }
    if Arc::ptr_eq(out.buffer(), x.buffer()) {
        return Err(Error::InvalidArgument(format!("{op}: the output may not alias the input")));
    }
    if let Some(r) = residual {
        if r.shape() != geo.out {
            return Err(Error::Shape(format!("{op}: residual {} does not match the output {}", r.shape(), geo.out)));
        }
        if Arc::ptr_eq(out.buffer(), r.buffer()) {
            return Err(Error::InvalidArgument(format!("{op}: the output may not alias the residual")));
        }
    }
    if let Some(s) = pre {
        if s.shape() != geo.out {
            return Err(Error::Shape(format!("{op}: previous partial sums {} do not match the output {}", s.shape(), geo.out)));
        }
    }
    // Sums already in `out`: read them there (binding the buffer twice, read
    // and read-write, is not allowed).
    // (Tensors bind their buffer from offset 0, and the shapes are equal.)
    let in_place = pre.is_some_and(|s| Arc::ptr_eq(out.buffer(), s.buffer()));
    let (act, slope) = epi.activation.code();
    let (xs, os) = (geo.x, geo.out);
    let k = w.k;
    let ntot = os.n() * os.hw();
    let half_m = geo.cout_g <= TILE_M / 2;
    // CPU adapters (llvmpipe/lavapipe) take the row-broadcast variant
    // conv2d_rows (see conv.wgsl), which needs whole vec4 weight rows.
    // WGSR_CONV_TILED set in the environment forces the tiled kernel there
    // too, so CPU-only CI can test the GPU path.
    // A single-group conv has its rows padded to whole vec4s (`kstride`), so
    // it qualifies whatever its channel count.
    let vec_rows = geo.cout_g % 4 == 0 || (geo.groups == 1 && w.kind == Kind::Conv);
    let rows = vec_rows && ctx.info().device_type == "Cpu" && std::env::var_os("WGSR_CONV_TILED").is_none();
    // A few columns only (one pixel or one 32-pixel row of a batch):
    // conv2d_narrow puts the lanes on output channels instead of columns
    // (llvmpipe, 5x5 32->64 conv on a 32-column row: 1.0 ms vs 5.1 ms for
    // conv2d_rows at 8x2, whose 128-column tile is three quarters idle).
    // Same sums, same bits.
    // With subgroups conv2d_narrow loads the CJ columns of a k step in one
    // lane loop, and it also beats conv2d_rows at 8x2 (half of its 128-column
    // tile idle) on up to 64 columns: the GEMM of a Winograd F(4x4) conv at
    // 32x32 (64 tiles), paired share 12.2% -> 16.1% of peak, 3 runs each.
    let narrow_max = if ctx.info().traits.subgroups { NARROW_MAX_COLS_SUBGROUPS } else { NARROW_MAX_COLS };
    // With subgroups, a pointwise conv whose groups are whole 64-channel
    // tiles (every lane live) takes it at any width too: per k step one
    // weight quad and two gathers feed 16 vec4 multiply-adds, against 8
    // weight quads and a vec4 load for 32 in conv2d_rows' (8, 4) tile.
    // Paired runs alternated twice on lavapipe: the Winograd GEMMs of 64->64
    // at 128x128 25-27 -> 16-23 ms, whole 128->128 F(4x4) at 64x64 30 -> 22
    // ms, conv1x1 64->64 at 128x128 11-14 -> 8-10 ms.
    let wide_narrow = ctx.info().traits.subgroups && mode == ConvMode::Pointwise && geo.cout_g % (4 * NARROW_THREADS as usize) == 0;
    // Whole 32-channel groups (HCFlow's dense-block GEMMs) leave half of
    // the 16 lanes idle; the 8-thread entry conv2d_narrow8 runs the same
    // body on them. From 1024 columns (the 128x128 level) it beat
    // conv2d_rows' (8, 4) tile: Winograd F(4x4) 96->32 at 128x128, paired
    // share 23-29% -> 32-33% of peak, alternated three times; at 256 columns
    // (160->32 at 64x64) the runs straddled each other (22-34% vs 27-29%),
    // so those stay on conv2d_rows.
    let narrow8 = rows
        && ctx.info().traits.subgroups
        && mode == ConvMode::Pointwise
        && geo.cout_g % (4 * NARROW8_THREADS as usize) == 0
        && !wide_narrow
        && ntot >= NARROW8_MIN_COLS;
    let narrow = rows && (ntot <= narrow_max || wide_narrow || narrow8);
    let cj = if narrow { ntot.min(NARROW_CJ) } else { 1 };
    // conv2d_rows tile: 4*rq channels x 64*rj columns (rq*rj <= 32). Per k
    // step a thread gathers rj inputs (each a loop over the lanes on
    // llvmpipe) and loads the rq weight quads (one lane loop with subgroups),
    // so 32 channels x 4 columns shares each gather over the most channels:
    // measured faster than 16 x 8 on every conv of the kernel bench once the
    // weights were broadcast (3x3 64->64 at 128x128 39 vs 53 ms, convT 4x4
    // 38 vs 54 ms; min of 3 interleaved runs). Fewer than 256 columns: 2 wide.
    // Few output channels (coupling-net outputs: 3, 18): a channel tile of
    // 4, 8 or 16 multiplies fewer padding rows.
    // Pointwise with whole pixel quads (1x1 convs, the Winograd GEMMs, whose
    // M is padded to a multiple of 4 rows): the B_VEC tile of 4 columns and
    // the fewest channel quads (at most 8) that split cout_g evenly, so a
    // thin output (4, 12, 20 rows) computes no padding quads. One vec4 load instead of 8 gathers per k
    // step: measured on lavapipe, the 137->4 GEMM of a 64x64 F(4x4) conv
    // (rq 1) went from 3.3 ms as (1, 8) to 0.8 ms.
    let bvec_shape = mode == ConvMode::Pointwise && xs.hw() % 4 == 0 && ntot % 4 == 0;
    let (rq, rj) = match ntot {
        n if rows && bvec_shape && n >= 256 && std::env::var_os("WGSR_THIN_WIDE").is_none() => (geo.cout_g.div_ceil(4).div_ceil(geo.cout_g.div_ceil(32)), 4),
        _ if geo.cout_g <= 4 => (1, 8),
        _ if geo.cout_g <= 8 => (2, 8),
        _ if geo.cout_g <= 16 => (4, 8),
        n if n >= 256 => (8, 4),
        _ => (8, 2),
    };
    // Pointwise with whole pixel quads: a thread's four columns are one
    // vec4 of every input row (conv.wgsl B_VEC).
    let b_vec = rows && !narrow && bvec_shape && rj == 4
        && std::env::var_os("WGSR_NO_BVEC").is_none();
    // conv2d_rows holds accumulators for RQ <= 8 channel quads and RJ <= 8
    // columns only: a larger tile would silently leave channels unwritten.
    debug_assert!(rq <= 8 && rj <= 8 && rq * rj <= 32, "conv2d_rows tile ({rq}, {rj})");
    let m_tiles = if narrow8 {
        geo.cout_g.div_ceil(4 * NARROW8_THREADS as usize)
    } else if narrow {
        geo.cout_g.div_ceil(4 * NARROW_THREADS as usize)
    } else if rows {
        geo.cout_g.div_ceil(4 * rq)
    } else {
        geo.cout_g.div_ceil(if half_m { TILE_M / 2 } else { TILE_M })
    };
    let (a_kstride, a_gstride) = match w.kind {
        Kind::Conv => (w.kstride, geo.cout_g),
        Kind::Transposed { .. } => (geo.cout_g, k * geo.cout_g),
    };
    let params = ConvUniform {
        cin: to_u32(xs.c()),
        h: to_u32(xs.h()),
        w: to_u32(xs.w()),
        hw: to_u32(xs.hw()),
        cout: to_u32(os.c()),
        ho: to_u32(os.h()),
        wo: to_u32(os.w()),
        howo: to_u32(os.hw()),
        x_gstride: to_u32(geo.x_gstride),
        cout_g: to_u32(geo.cout_g),
        k: to_u32(k),
        ntot: to_u32(ntot),
        sy: to_i32(geo.stride[0]),
        sx: to_i32(geo.stride[1]),
        py: to_i32(geo.padding[0]),
        px: to_i32(geo.padding[1]),
        dy: to_i32(geo.dilation[0]),
        dx: to_i32(geo.dilation[1]),
        a_kstride: to_u32(a_kstride),
        a_gstride: to_u32(a_gstride),
        m_tiles: to_u32(m_tiles),
        alpha: epi.alpha,
        beta: epi.beta,
        slope,
    };
    let tile_n = if narrow {
        cj
    } else if rows {
        THREADS as usize * rj
    } else {
        TILE_N
    };
    let mut grid = grid_1d(ntot.div_ceil(tile_n));
    let z = geo.groups * m_tiles;
    if z > u32::MAX as usize {
        return Err(Error::TooLarge(format!("{op}: {z} channel tiles")));
    }
    grid[2] = z as u32;
    let (tsy, tsx) = if mode == ConvMode::Transposed { (geo.stride[0] as f64, geo.stride[1] as f64) } else { (1.0, 1.0) };
    let constants = [
        ("MODE", mode.constant()),
        ("ACT", act.constant()),
        ("HAS_RES", if residual.is_some() { 1.0 } else { 0.0 }),
        ("HAS_PRE", if pre.is_some() { 1.0 } else { 0.0 }),
        ("HAS_EPI", if w.has_epi { 1.0 } else { 0.0 }),
        // CPU entries compute taps by constant division (a table load is a
        // loop over the lanes there); the tiled GPU kernel keeps the table.
        ("TAPS_BY_DIVISION", if rows { 1.0 } else { 0.0 }),
        ("KH", if rows { w.shape[2] as f64 } else { 1.0 }),
        ("KW", if rows { w.shape[3] as f64 } else { 1.0 }),
        ("PRE_IN_Y", if in_place { 1.0 } else { 0.0 }),
        ("A_VEC", if geo.cout_g % 4 == 0 { 1.0 } else { 0.0 }),
        ("TSY", tsy),
        ("TSX", tsx),
        ("HALF_M", if half_m { 1.0 } else { 0.0 }),
        ("RQ", rq as f64),
        ("RJ", rj as f64),
        ("CJ", cj as f64),
        ("B_VEC", if b_vec { 1.0 } else { 0.0 }),
        // Four k steps per loop trip (conv.wgsl KU4) except for transposed
        // convs, where it measured slower (convT 4x4 s2 paired share 29% -> 23-25%).
        ("KU4", if mode != ConvMode::Transposed { 1.0 } else { 0.0 }),
    ];
    let res = residual.unwrap_or(x);
    let d = ctx.dispatch(KernelCall {
        shader: &SHADER,
        entry: if narrow8 {
            "conv2d_narrow8"
        } else if narrow {
            "conv2d_narrow"
        } else if rows {
            "conv2d_rows"
        } else {
            "conv2d"
        },
        constants: &constants,
        params: Some(&params),
        buffers: &[
            x.arg(),
            BufArg { buffer: &w.packed, size: w.packed_bytes, read_only: true, dtype: w.dtype },
            BufArg { buffer: &w.taps, size: w.taps_bytes, read_only: true, dtype: Dtype::F32 },
            w.epi.arg(),
            res.arg(),
            pre.filter(|_| !in_place).unwrap_or(x).arg(),
            out.arg_mut(),
            x.arg(),
        ],
        workgroups: grid,
    })?;
    let flops = 2.0 * os.numel() as f64 * k as f64;
    let mut bytes = x.bytes() as f64 + w.packed_bytes as f64 + out.bytes() as f64;
    // (In place, the output is read as well as written.)
    for t in [residual, pre].into_iter().flatten() {
        bytes += t.bytes() as f64;
    }
    Ok(d.with_cost(flops, bytes))
}
