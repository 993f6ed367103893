//! Multi-head spatial self-attention core of SR3's `SelfAttention` block:
//! from the fused qkv map (output of the bias-free 1x1 qkv conv) to the
//! attended values, before the output 1x1 conv.
//!
//! Layout (as the reference's `qkv.view(b, heads, 3*hd, h, w).chunk(3, 2)`):
//! channel `h*3*hd + j` of qkv is query channel j of head h for `j < hd`, key
//! channel `j - hd` for `hd <= j < 2hd`, value channel `j - 2hd` above. Scores
//! are scaled by `1/sqrt(C)` with C the *full* channel count (not head_dim),
//! softmax runs over all H*W key positions, and head h's output lands in
//! channels `h*hd .. (h+1)*hd` of `out`.
//!
//! Three launches: S = (Q^T K) / sqrt(C) and O = V P^T via the strided GEMM
//! (no copies: each head is a strided view of qkv), with a row softmax on S
//! between them. S lives in a caller-provided scratch tensor of
//! [`Attention::scores_shape`] (the graph plans it, live only during the node).

use std::sync::Arc;

use crate::gpu::{grid_1d, to_u32, wg_entries, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource};
use crate::ops::matmul::{gemm, Bias, Gemm, MatView};
use crate::{Error, Result, Shape, Tensor};

const ENTRIES: [EntryPoint; 1] = wg_entries(["softmax_rows"]);
pub(crate) const SHADER: ShaderSource = ShaderSource::new("attention", include_str!("../../kernels/attention.wgsl"))
    .params(&[AttentionUniform::LAYOUT])
    .entries(&ENTRIES);

crate::kernel_params! {
    /// Uniform block of kernels/attention.wgsl (the score-row softmax).
    pub struct AttentionUniform = "attention"::"SoftmaxParams" {
        rows: u32,
        cols: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// Attention for one feature-map shape.
pub struct Attention {
    shape: Shape,
    n_head: usize,
}

impl Attention {
    /// `shape` is the attended output `[N, C, H, W]` (the qkv input is
    /// `[N, 3C, H, W]`); `C` must be divisible by `n_head`.
    pub fn new(ctx: &GpuContext, shape: Shape, n_head: usize) -> Result<Self> {
        let [n, c, h, w] = shape.0;
        if shape.numel() == 0 {
            return Err(Error::Shape(format!("attention: empty shape {shape}")));
        }
        if n_head == 0 || c % n_head != 0 {
            return Err(Error::Shape(format!("attention: {c} channels do not split into {n_head} heads")));
        }
        let hw = h * w;
        let bytes = (n * n_head) as u64 * (hw as u64) * (hw as u64) * 4;
        let max = ctx.max_binding_bytes();
        if bytes > max {
            return Err(Error::TooLarge(format!(
                "attention over {shape} with {n_head} head(s) needs a {} x {hw} x {hw} score matrix \
                 ({:.1} MiB); this device binds at most {} MiB per storage buffer (use a smaller image, \
                 fewer heads or a smaller batch)",
                n * n_head,
                bytes as f64 / (1u64 << 20) as f64,
                max >> 20
            )));
        }
        Ok(Attention { shape, n_head })
    }

    /// The score scratch `[N * n_head, 1, HW, HW]` that `prepare` needs.
    pub fn scores_shape(&self) -> Shape {
        let [n, _, h, w] = self.shape.0;
        Shape::new(n * self.n_head, 1, h * w, h * w)
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }
    pub fn n_head(&self) -> usize {
        self.n_head
    }

    /// Prepare `out = attention(qkv)`: `qkv` `[N, 3C, H, W]`, `out` `[N, C, H, W]`
    /// (the shape given to `new`), `scores` scratch of [`Self::scores_shape`].
    /// The three may not share buffers.
    pub fn prepare(&self, ctx: &GpuContext, qkv: &Tensor, out: &Tensor, scores: &Tensor) -> Result<Vec<Dispatch>> {
        let [n, c, h, w] = self.shape.0;
        let want_qkv = Shape::new(n, 3 * c, h, w);
        if qkv.shape() != want_qkv || out.shape() != self.shape {
            return Err(Error::Shape(format!(
                "attention: built for qkv {want_qkv} -> output {}, got qkv {} -> output {}",
                self.shape,
                qkv.shape(),
                out.shape()
            )));
        }
        if Arc::ptr_eq(qkv.buffer(), out.buffer()) {
            return Err(Error::InvalidArgument("attention: output may not share its buffer with qkv".into()));
        }
        if scores.shape() != self.scores_shape() {
            return Err(Error::Shape(format!("attention: score scratch must be {}, got {}", self.scores_shape(), scores.shape())));
        }
        if Arc::ptr_eq(scores.buffer(), out.buffer()) || Arc::ptr_eq(scores.buffer(), qkv.buffer()) {
            return Err(Error::InvalidArgument("attention: score scratch may not share a buffer with qkv or output".into()));
        }
        let hw = h * w;
        let hd = c / self.n_head;
        let heads = n * self.n_head;
        // Per (sample, head) the q/k/v blocks are [hd, HW] row-major, and
        // consecutive heads (then samples) are 3*hd*HW apart in qkv.
        let head_stride = 3 * hd * hw;
        fn view(tensor: &Tensor, off: usize, batch_stride: usize, ld: usize) -> MatView<'_> {
            MatView { tensor, off, batch_stride, ld }
        }

        // S[i, j] = sum_c q[c, i] k[c, j] / sqrt(C): A = Q stored [K=hd, M=HW].
        let qk = gemm(
            ctx,
            &Gemm {
                m: hw,
                n: hw,
                k: hd,
                batch: heads,
                a: view(qkv, 0, head_stride, hw),
                b: view(qkv, hd * hw, head_stride, hw),
                c: view(scores, 0, hw * hw, hw),
                trans_a: true,
                trans_b: false,
                alpha: 1.0 / (c as f32).sqrt(),
                bias: Bias::None,
            },
        )?;

        let rows = heads * hw;
        let params = AttentionUniform { rows: to_u32(rows), cols: to_u32(hw), ..Default::default() };
        let softmax = ctx
            .dispatch(KernelCall {
                shader: &SHADER,
                entry: "softmax_rows",
                constants: &[],
                params: Some(&params),
                buffers: &[scores.arg_mut()],
                workgroups: grid_1d(rows),
            })?
            .with_cost(5.0 * (rows * hw) as f64, 12.0 * (rows * hw) as f64);

        // O[c, i] = sum_j v[c, j] P[i, j]: A = V [M=hd, K=HW], B = P stored [N=HW, K=HW].
        let values = gemm(
            ctx,
            &Gemm {
                m: hd,
                n: hw,
                k: hw,
                batch: heads,
                a: view(qkv, 2 * hd * hw, head_stride, hw),
                b: view(scores, 0, hw * hw, hw),
                c: view(out, 0, hd * hw, hw),
                trans_a: false,
                trans_b: true,
                alpha: 1.0,
                bias: Bias::None,
            },
        )?;
        Ok(vec![qk, softmax, values])
    }
}
