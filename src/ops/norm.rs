//! GroupNorm (torch.nn.GroupNorm semantics: biased variance, per-channel
//! affine) with an optional fused Swish, as SR3's `Block` uses it.
//!
//! Two launches: per-chunk statistics, then a deterministic merge plus the
//! normalisation (see kernels/norm.wgsl). The small partial-statistics
//! buffer is allocated by `prepare` and kept alive by the bind groups.

use std::sync::Arc;

use crate::gpu::{grid_1d, to_u32, wg_entries, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource, WG};
use crate::{Error, Result, Shape, Tensor};

const ENTRIES: [EntryPoint; 4] = wg_entries(["group_stats", "group_normalize", "group_stats4", "group_normalize4"]);
pub(crate) const SHADER: ShaderSource = ShaderSource::new("norm", include_str!("../../kernels/norm.wgsl"))
    .params(&[NormUniform::LAYOUT])
    .entries(&ENTRIES);

crate::kernel_params! {
    /// Uniform block of kernels/norm.wgsl.
    pub struct NormUniform = "norm"::"NormParams" {
        total: u32,
        nchunks: u32,
        chunk: u32,
        group_len: u32,
        groups: u32,
        cpg: u32,
        hw: u32,
        eps: f32,
    }
}

/// Values per workgroup the chunking aims for (64 per thread): each workgroup
/// pays two tree reductions (8 barrier levels, costly on llvmpipe), so 4096
/// values left groupnorm at 14-15% of copy bandwidth and 16384 takes it to
/// 24-28% (kernel bench --paired, [1, 128, 64, 64] and [1, 64, 128, 128]).
const CHUNK_TARGET: usize = 16384;
/// The merge in group_normalize gives one partial to each of its WG threads.
const MAX_CHUNKS: usize = WG;

/// torch.nn.GroupNorm's default epsilon (SR3 uses the default).
pub const DEFAULT_EPS: f32 = 1e-5;

/// Split a group span of `len` values into `(chunk, nchunks)` with no empty
/// chunk; chunks are whole vec4s when `len` is.
fn plan_chunks(len: usize) -> (usize, usize) {
    let n = len.div_ceil(CHUNK_TARGET).clamp(1, MAX_CHUNKS);
    let mut chunk = len.div_ceil(n);
    if len % 4 == 0 {
        chunk = chunk.next_multiple_of(4);
    }
    (chunk, len.div_ceil(chunk))
}

/// GroupNorm parameters: `groups` groups over `gamma.len()` channels.
pub struct GroupNorm {
    /// gamma then beta, `2 * channels` values.
    affine: Tensor,
    channels: usize,
    groups: usize,
    eps: f32,
}

impl GroupNorm {
    /// `gamma` and `beta` are torch's `weight` and `bias` (one per channel).
    pub fn new(ctx: &GpuContext, gamma: &[f32], beta: &[f32], groups: usize, eps: f32) -> Result<Self> {
        let channels = gamma.len();
        if beta.len() != channels {
            return Err(Error::Shape(format!("group_norm: {channels} gamma values but {} beta values", beta.len())));
        }
        if groups == 0 || channels == 0 || !channels.is_multiple_of(groups) {
            return Err(Error::Shape(format!("group_norm: {channels} channels do not split into {groups} groups")));
        }
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(Error::InvalidArgument(format!("group_norm: eps must be finite and >= 0, got {eps}")));
        }
        let mut data = Vec::with_capacity(2 * channels);
        data.extend_from_slice(gamma);
        data.extend_from_slice(beta);
        let affine = Tensor::from_slice(ctx, Shape::new(1, 1, 2, channels), &data)?;
        Ok(GroupNorm { affine, channels, groups, eps })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }
    pub fn groups(&self) -> usize {
        self.groups
    }
    pub fn eps(&self) -> f32 {
        self.eps
    }

    /// Shape of the per-(sample, group, chunk) statistics scratch for input `x`.
    pub fn scratch_shape(&self, x: Shape) -> Shape {
        let len = self.channels / self.groups * x.hw();
        Shape::new(1, 1, x.n() * self.groups * plan_chunks(len).1, 2)
    }

    /// Prepare `out = GroupNorm(x)` (then `out *= sigmoid(out)` if `swish`).
    /// `x` and `out` are `[N, C, H, W]` with C = `channels()`; `out` may not
    /// alias `x`; `partials` is scratch of [`Self::scratch_shape`].
    pub fn prepare(&self, ctx: &GpuContext, x: &Tensor, out: &Tensor, partials: &Tensor, swish: bool) -> Result<Vec<Dispatch>> {
        let s = x.shape();
        if s.c() != self.channels || out.shape() != s {
            return Err(Error::Shape(format!(
                "group_norm: built for {} channels, got input {} and output {} (must match)",
                self.channels,
                s,
                out.shape()
            )));
        }
        if Arc::ptr_eq(x.buffer(), out.buffer()) {
            return Err(Error::InvalidArgument("group_norm: output may not share its buffer with the input".into()));
        }
        let cpg = self.channels / self.groups;
        let len = cpg * s.hw();
        let (chunk, nchunks) = plan_chunks(len);
        let total = s.n() * self.groups * nchunks;
        if partials.shape() != self.scratch_shape(s) {
            return Err(Error::Shape(format!("group_norm: scratch must be {}, got {}", self.scratch_shape(s), partials.shape())));
        }
        if Arc::ptr_eq(partials.buffer(), out.buffer()) || Arc::ptr_eq(partials.buffer(), x.buffer()) {
            return Err(Error::InvalidArgument("group_norm: scratch may not share a buffer with input or output".into()));
        }
        let params = NormUniform {
            total: to_u32(total),
            nchunks: to_u32(nchunks),
            chunk: to_u32(chunk),
            group_len: to_u32(len),
            groups: to_u32(self.groups),
            cpg: to_u32(cpg),
            hw: to_u32(s.hw()),
            eps: self.eps,
        };
        let n = s.numel() as f64;
        // vec4 entries when every vec4 stays in one chunk and one channel.
        let vec4 = len % 4 == 0 && chunk % 4 == 0 && s.hw() % 4 == 0;
        let (stats_entry, norm_entry) = if vec4 { ("group_stats4", "group_normalize4") } else { ("group_stats", "group_normalize") };
        let stats = ctx
            .dispatch(KernelCall {
                shader: &SHADER,
                entry: stats_entry,
                constants: &[],
                params: Some(&params),
                buffers: &[x.arg(), partials.arg_mut()],
                workgroups: grid_1d(total),
            })?
            .with_cost(4.0 * n, 8.0 * n);
        let normalize = ctx
            .dispatch(KernelCall {
                shader: &SHADER,
                entry: norm_entry,
                constants: &[("SWISH", swish as u32 as f64)],
                params: Some(&params),
                buffers: &[x.arg(), self.affine.arg(), partials.arg(), out.arg_mut()],
                workgroups: grid_1d(total),
            })?
            .with_cost(if swish { 8.0 } else { 4.0 } * n, 8.0 * n);
        Ok(vec![stats, normalize])
    }
}
