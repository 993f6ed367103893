//! The horizontal stack of a gated PixelCNN at one pixel per image, all
//! blocks in one dispatch (kernels/gated_stack.wgsl). PixelCNN's cached
//! sampler runs the stack once per sub-pixel on a single column; as separate
//! ops (window insert, h_conv, gate, h_out per block) that is 100 tiny
//! dispatches, each costing more in driver overhead than its arithmetic.
//!
//! Per block b, from `h` (C channels) and the block's inputs:
//! `hp = h_conv_b(window) + vh_b` (window = `hist_b` with `h` at the centre
//! column kh/2, the layout of `insert_channels`), then
//! `h <- h_out_b(tanh(hp[:C]) sigmoid(hp[C:])) + h`. The sums and epilogues
//! are bit-identical to the conv, gate and insert ops they replace (see the
//! kernel's header).

use crate::gpu::{to_u32, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource};
use crate::{Error, Result, Shape, Tensor};

const THREADS: u32 = 64;
/// Workgroup-array limits of the kernel (MAX_WIN, MAX_C2, MAX_C there).
const MAX_WIN: usize = 1024;
const MAX_C2: usize = 256;
const MAX_C: usize = 128;

pub(crate) const SHADER: ShaderSource = ShaderSource::new("gated_stack", include_str!("../../kernels/gated_stack.wgsl"))
    .params(&[StackUniform::LAYOUT])
    .entries(&[EntryPoint::x("gated_stack", THREADS)])
    .consts(&[("WGS", THREADS), ("MAX_WIN", MAX_WIN as u32), ("MAX_C2", MAX_C2 as u32), ("MAX_C", MAX_C as u32)]);

crate::kernel_params! {
    /// Uniform block of kernels/gated_stack.wgsl.
    pub struct StackUniform = "gated_stack"::"StackParams" {
        n: u32,
        c: u32,
        kh: u32,
        ph: u32,
        blocks: u32,
        c2p: u32,
        cp: u32,
        wblock: u32,
    }
}

/// One block's parameters as in the checkpoint: `h_conv` [2C, C, 1, kh]
/// (flattened, k = ci * kh + kx), `h_out` [C, C, 1, 1] and their biases.
pub struct GatedBlock<'a> {
    pub h_conv: &'a [f32],
    pub h_conv_bias: &'a [f32],
    pub h_out: &'a [f32],
    pub h_out_bias: &'a [f32],
}

/// The stack's weights on the GPU.
pub struct GatedStack {
    w: Tensor,
    bias: Tensor,
    c: usize,
    kh: usize,
    blocks: usize,
}

impl GatedStack {
    /// Whether the kernel's workgroup arrays hold a stack of `c` channels and
    /// width `kh` (otherwise compose the per-block ops).
    pub fn supports(c: usize, kh: usize) -> bool {
        c >= 1 && kh % 2 == 1 && c * kh <= MAX_WIN && (2 * c).next_multiple_of(4) <= MAX_C2 && c <= MAX_C
    }

    pub fn new(ctx: &GpuContext, c: usize, kh: usize, blocks: &[GatedBlock]) -> Result<GatedStack> {
        if !Self::supports(c, kh) {
            return Err(Error::InvalidArgument(format!(
                "gated_stack: {c} channels with a {kh}-wide kernel exceed the kernel's limits \
                 (odd width, C * kh <= {MAX_WIN}, C <= {MAX_C})"
            )));
        }
        if blocks.is_empty() {
            return Err(Error::Shape("gated_stack: no blocks".into()));
        }
        let (k, c2p, cp) = (c * kh, (2 * c).next_multiple_of(4), c.next_multiple_of(4));
        let wblock = k * c2p + c * cp;
        let mut w = vec![0f32; blocks.len() * wblock];
        let mut bias = vec![0f32; blocks.len() * (c2p + cp)];
        for (b, blk) in blocks.iter().enumerate() {
            let sizes = [(blk.h_conv.len(), 2 * c * k), (blk.h_conv_bias.len(), 2 * c), (blk.h_out.len(), c * c), (blk.h_out_bias.len(), c)];
            if sizes.iter().any(|(got, want)| got != want) {
                return Err(Error::Shape(format!(
                    "gated_stack: block {b} has (h_conv, bias, h_out, bias) of {:?} values, expected {:?}",
                    sizes.map(|s| s.0),
                    sizes.map(|s| s.1)
                )));
            }
            // Transposed to [k][output channel] so a lane's 4 channels are one vec4.
            let wb = &mut w[b * wblock..(b + 1) * wblock];
            for o in 0..2 * c {
                for j in 0..k {
                    wb[j * c2p + o] = blk.h_conv[o * k + j];
                }
            }
            for o in 0..c {
                for j in 0..c {
                    wb[k * c2p + j * cp + o] = blk.h_out[o * c + j];
                }
            }
            let bb = &mut bias[b * (c2p + cp)..(b + 1) * (c2p + cp)];
            bb[..2 * c].copy_from_slice(blk.h_conv_bias);
            bb[c2p..c2p + c].copy_from_slice(blk.h_out_bias);
        }
        Ok(GatedStack {
            w: Tensor::from_slice(ctx, Shape::new(1, 1, 1, w.len()), &w)?,
            bias: Tensor::from_slice(ctx, Shape::new(1, 1, 1, bias.len()), &bias)?,
            c,
            kh,
            blocks: blocks.len(),
        })
    }

    /// Input shapes for a batch of `n`: (h0, hist, vh) = [N, C], [N, blocks*C*kh], [N, blocks*2C] (as 1x1 maps).
    pub fn input_shapes(&self, n: usize) -> [Shape; 3] {
        let (c, b) = (self.c, self.blocks);
        [Shape::new(n, c, 1, 1), Shape::new(n, b * c * self.kh, 1, 1), Shape::new(n, b * 2 * c, 1, 1)]
    }

    /// Output shapes: (hs, h) = h entering every block [N, blocks*C], h leaving the last [N, C].
    pub fn output_shapes(&self, n: usize) -> [Shape; 2] {
        [Shape::new(n, self.blocks * self.c, 1, 1), Shape::new(n, self.c, 1, 1)]
    }

    /// Prepare the stack on `h0`, `hist` and `vh` into `hs` and `h`.
    pub fn prepare(&self, ctx: &GpuContext, h0: &Tensor, hist: &Tensor, vh: &Tensor, hs: &Tensor, h: &Tensor) -> Result<Dispatch> {
        let n = h0.shape().n();
        let want_in = self.input_shapes(n);
        let want_out = self.output_shapes(n);
        let got = [h0.shape(), hist.shape(), vh.shape(), hs.shape(), h.shape()];
        if got[..3] != want_in || got[3..] != want_out {
            return Err(Error::Shape(format!(
                "gated_stack: (h0, hist, vh, hs, h) are {got:?}, expected {:?} for a batch of {n}",
                [want_in.as_slice(), want_out.as_slice()].concat()
            )));
        }
        if n > 65535 {
            return Err(Error::TooLarge(format!("gated_stack: a batch of {n} images (one workgroup each, at most 65535)")));
        }
        let bufs = [h0, hist, vh, hs, h].map(|t| t.buffer().clone());
        if (3..5).any(|i| (0..5).any(|j| i != j && std::sync::Arc::ptr_eq(&bufs[i], &bufs[j]))) {
            return Err(Error::InvalidArgument("gated_stack: the outputs may not share a buffer with each other or an input".into()));
        }
        let (c, k) = (self.c, self.c * self.kh);
        let (c2p, cp) = ((2 * c).next_multiple_of(4), c.next_multiple_of(4));
        let params = StackUniform {
            n: to_u32(n),
            c: to_u32(c),
            kh: to_u32(self.kh),
            ph: to_u32(self.kh / 2),
            blocks: to_u32(self.blocks),
            c2p: to_u32(c2p),
            cp: to_u32(cp),
            wblock: to_u32((k * c2p + c * cp) / 4),
        };
        let d = ctx.dispatch(KernelCall {
            shader: &SHADER,
            entry: "gated_stack",
            constants: &[],
            params: Some(&params),
            buffers: &[h0.arg(), hist.arg(), vh.arg(), self.w.arg(), self.bias.arg(), hs.arg_mut(), h.arg_mut()],
            workgroups: [to_u32(n), 1, 1],
        })?;
        let flops = 2.0 * (n * self.blocks * (2 * c * k + c * c)) as f64;
        let bytes = [&self.w, &self.bias, h0, hist, vh, hs, h].iter().map(|t| t.bytes()).sum::<u64>() as f64;
        Ok(d.with_cost(flops, bytes))
    }
}
