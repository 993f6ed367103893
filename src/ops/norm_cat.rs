//! GroupNorm (torch semantics, optional fused Swish) over the channel
//! concatenation of several inputs, one normalised output per input: a
//! group's statistics may straddle inputs, and the concatenation is never
//! materialised (SR3's up-path blocks normalise cat(h, skip)).
//! See kernels/norm_cat.wgsl for the four passes.

use std::sync::Arc;

use crate::gpu::{grid_1d, to_u32, wg_entries, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource, WG};
use crate::{Error, Result, Shape, Tensor};

const ENTRIES: [EntryPoint; 6] =
    wg_entries(["gn_cat_shift", "gn_cat_stats", "gn_cat_merge", "gn_cat_normalize", "gn_cat_stats4", "gn_cat_normalize4"]);
pub(crate) const SHADER: ShaderSource = ShaderSource::new("norm_cat", include_str!("../../kernels/norm_cat.wgsl"))
    .params(&[NormCatUniform::LAYOUT])
    .entries(&ENTRIES);

crate::kernel_params! {
    /// Uniform block of kernels/norm_cat.wgsl (one input per dispatch).
    pub struct NormCatUniform = "norm_cat"::"NormCatParams" {
        total: u32,
        hw: u32,
        chans: u32,
        off: u32,
        groups: u32,
        cpg: u32,
        chunk: u32,
        nchunks: u32,
        slots: u32,
        slot0: u32,
        sc_shift: u32,
        sc_stats: u32,
        eps: f32,
    }
}

/// Values per statistics workgroup: a group's span in one input is cut into
/// chunks of at most this (as norm.rs: fewer, bigger workgroups pay fewer
/// tree reductions, whose barriers dominate on llvmpipe).
const CHUNK_TARGET: usize = 16384;

/// GroupNorm over cat(inputs) with `channels[i]` channels per input.
pub struct GroupNormCat {
    /// gamma then beta, `2 * total channels` values.
    affine: Tensor,
    channels: Vec<usize>,
    groups: usize,
    eps: f32,
}

/// How one input's group portions are cut for the statistics pass.
#[derive(Clone, Copy, Debug)]
struct Portions {
    /// Values per chunk (a multiple of 4 when `hw` is, for the vec4 entry).
    chunk: usize,
    /// Chunks per portion: enough for the longest, min(cpg, chans) planes.
    nchunks: usize,
    /// First of this input's slots among a group's partials.
    slot0: usize,
}

/// The portions of every input for maps of `hw` pixels, and the partial
/// slots per (sample, group) they add up to.
fn portions(channels: &[usize], cpg: usize, hw: usize) -> (Vec<Portions>, usize) {
    let mut slot0 = 0;
    let cuts = channels
        .iter()
        .map(|&c| {
            // (At least 1, so empty maps make no division by zero.)
            let longest = (c.min(cpg) * hw).max(1);
            let mut chunk = longest.div_ceil(longest.div_ceil(CHUNK_TARGET));
            if hw.is_multiple_of(4) {
                chunk = chunk.next_multiple_of(4);
            }
            let p = Portions { chunk, nchunks: longest.div_ceil(chunk), slot0 };
            slot0 += p.nchunks;
            p
        })
        .collect();
    (cuts, slot0)
}

impl GroupNormCat {
    /// `gamma` / `beta`: torch's weight and bias over the concatenated channels.
    pub fn new(ctx: &GpuContext, gamma: &[f32], beta: &[f32], groups: usize, eps: f32, channels: &[usize]) -> Result<Self> {
        let total: usize = channels.iter().sum();
        if channels.is_empty() || channels.contains(&0) || gamma.len() != total || beta.len() != total {
            return Err(Error::Shape(format!(
                "group_norm_cat: inputs of {channels:?} channels, {} gamma and {} beta values (one per channel of the concatenation)",
                gamma.len(),
                beta.len()
            )));
        }
        if groups == 0 || !total.is_multiple_of(groups) {
            return Err(Error::Shape(format!("group_norm_cat: {total} channels do not split into {groups} groups")));
        }
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(Error::InvalidArgument(format!("group_norm_cat: eps must be finite and >= 0, got {eps}")));
        }
        let affine = Tensor::from_slice(ctx, Shape::new(1, 1, 2, total), &[gamma, beta].concat())?;
        Ok(GroupNormCat { affine, channels: channels.to_vec(), groups, eps })
    }

    fn cpg(&self) -> usize {
        self.channels.iter().sum::<usize>() / self.groups
    }

    /// Scratch layout for inputs of batch `n` and `hw` pixels: (partials, shifts, stats) lengths.
    fn sections(&self, n: usize, hw: usize) -> (usize, usize, usize) {
        let slots = portions(&self.channels, self.cpg(), hw).1;
        (3 * n * self.groups * slots, n * self.groups, 2 * n * self.groups)
    }

    /// Shape of the scratch for inputs of batch `n` and `h` x `w` pixels.
    pub fn scratch_shape(&self, n: usize, h: usize, w: usize) -> Shape {
        let (a, b, c) = self.sections(n, h * w);
        Shape::new(1, 1, 1, a + b + c)
    }

    /// Prepare `outs[i] = GroupNorm(cat(xs))[channels of input i]` (Swish
    /// after if `swish`). Inputs share batch and size; each output has its
    /// input's shape and its own buffer; `scratch` of [`Self::scratch_shape`].
    pub fn prepare(&self, ctx: &GpuContext, xs: &[&Tensor], outs: &[&Tensor], scratch: &Tensor, swish: bool) -> Result<Vec<Dispatch>> {
        if xs.len() != self.channels.len() || outs.len() != xs.len() {
            return Err(Error::Shape(format!(
                "group_norm_cat: built for {} inputs, got {} inputs and {} outputs",
                self.channels.len(),
                xs.len(),
                outs.len()
            )));
        }
        let s0 = xs[0].shape();
        let (n, hw) = (s0.n(), s0.hw());
        for (i, (x, o)) in xs.iter().zip(outs).enumerate() {
            let s = x.shape();
            if s != Shape::new(n, self.channels[i], s0.h(), s0.w()) || o.shape() != s {
                return Err(Error::Shape(format!(
                    "group_norm_cat: input {i} is {s} with output {} (expected {} channels, the batch and size of input 0 {s0})",
                    o.shape(),
                    self.channels[i]
                )));
            }
        }
        let mut bufs: Vec<&Arc<wgpu::Buffer>> = xs.iter().chain(outs).map(|t| t.buffer()).collect();
        bufs.push(scratch.buffer());
        let distinct_outputs = (xs.len()..bufs.len()).all(|i| (0..bufs.len()).all(|j| i == j || !Arc::ptr_eq(bufs[i], bufs[j])));
        if !distinct_outputs {
            return Err(Error::InvalidArgument("group_norm_cat: outputs and scratch may not share a buffer with each other or an input".into()));
        }
        if scratch.shape() != self.scratch_shape(n, s0.h(), s0.w()) {
            return Err(Error::Shape(format!("group_norm_cat: scratch must be {}, got {}", self.scratch_shape(n, s0.h(), s0.w()), scratch.shape())));
        }
        let cpg = self.cpg();
        let (cuts, slots) = portions(&self.channels, cpg, hw);
        let (parts, shifts, _) = self.sections(n, hw);
        let params = |total: usize, chans: usize, off: usize, cut: Portions| NormCatUniform {
            total: to_u32(total),
            hw: to_u32(hw),
            chans: to_u32(chans),
            off: to_u32(off),
            groups: to_u32(self.groups),
            cpg: to_u32(cpg),
            chunk: to_u32(cut.chunk),
            nchunks: to_u32(cut.nchunks),
            slots: to_u32(slots),
            slot0: to_u32(cut.slot0),
            sc_shift: to_u32(parts),
            sc_stats: to_u32(parts + shifts),
            eps: self.eps,
        };
        let call = |entry: &str, p: &NormCatUniform, x: &Tensor, y: &Tensor, groups: usize| {
            ctx.dispatch(KernelCall {
                shader: &SHADER,
                entry,
                constants: &[("SWISH", swish as u32 as f64)],
                params: Some(p),
                buffers: &[x.arg(), self.affine.arg(), scratch.arg_mut(), y.arg_mut()],
                workgroups: grid_1d(groups),
            })
        };
        let ng = n * self.groups;
        let (mut shift, mut stats, mut norm) = (Vec::new(), Vec::new(), Vec::new());
        let mut off = 0;
        for (((x, y), &c), &cut) in xs.iter().zip(outs).zip(&self.channels).zip(&cuts) {
            let v = x.shape().numel() as f64;
            shift.push(call("gn_cat_shift", &params(ng, c, off, cut), x, y, ng.div_ceil(WG))?);
            // Every group gets its slots written, those this input does not
            // hold with count 0 (one store), so the merge needs no geometry.
            let items = ng * cut.nchunks;
            // Whole vec4s per chunk: four values per load (each load is a
            // loop over the lanes on llvmpipe). portions() keeps chunks whole
            // vec4s whenever the planes are.
            let stats_entry = if hw.is_multiple_of(4) { "gn_cat_stats4" } else { "gn_cat_stats" };
            stats.push(call(stats_entry, &params(items, c, off, cut), x, y, items)?.with_cost(4.0 * v, 8.0 * v));
            let elems = n * c * hw;
            // Whole vec4s per channel plane: one statistics / affine load per four values.
            let (entry, items) = if hw.is_multiple_of(4) { ("gn_cat_normalize4", elems / 4) } else { ("gn_cat_normalize", elems) };
            norm.push(call(entry, &params(items, c, off, cut), x, y, items.div_ceil(WG))?.with_cost(if swish { 8.0 } else { 4.0 } * v, 8.0 * v));
            off += c;
        }
        let merge = call("gn_cat_merge", &params(ng, 0, 0, cuts[0]), xs[0], outs[0], ng)?;
        Ok(shift.into_iter().chain(stats).chain([merge]).chain(norm).collect())
    }
}
