//! Batched matrix multiply and the `Linear` layer built on it.
//!
//! `matmul` computes `C[b] = alpha * op(A[b]) op(B[b]) (+ bias)` on tensors
//! shaped `[batch, 1, rows, cols]`; `op` optionally transposes an operand in
//! place (no copy). A batch of 1 broadcasts over the other operand's batch.
//! The same kernel also runs on strided views (one head of a fused qkv map)
//! through the crate-internal [`gemm`] used by `attention`.

use std::sync::Arc;

use crate::gpu::{to_u32, BiasMode, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource};
use crate::{Dtype, Error, Result, Shape, Tensor};

/// Output tile of one workgroup (TM/TN in matmul.wgsl, checked by the reflection test).
const TILE: usize = 64;
/// gemm_rows' tile: RM rows x 64 * RN columns, RN = 8, 4 or 2 (an override).
const ROWS_M: usize = 16;

pub(crate) const SHADER: ShaderSource = ShaderSource::new("matmul", include_str!("../../kernels/matmul.wgsl"))
    .params(&[GemmUniform::LAYOUT])
    .entries(&[EntryPoint::new("gemm", [16, 16, 1]), EntryPoint::new("gemm_rows", [64, 1, 1])])
    .consts(&[("TM", TILE as u32), ("TN", TILE as u32), ("RM", ROWS_M as u32)]);

crate::kernel_params! {
    /// Uniform block of kernels/matmul.wgsl: sizes, then per operand its
    /// leading dimension, base offset and batch stride (in floats).
    pub struct GemmUniform = "matmul"::"GemmParams" {
        m: u32,
        n: u32,
        k: u32,
        alpha: f32,
        lda: u32,
        ldb: u32,
        ldc: u32,
        bias_off: u32,
        a_off: u32,
        b_off: u32,
        c_off: u32,
        _pad0: u32,
        a_bs: u32,
        b_bs: u32,
        c_bs: u32,
        _pad1: u32,
    }
}

/// Optional bias added after scaling.
#[derive(Clone, Copy, Debug, Default)]
pub enum Bias<'a> {
    #[default]
    None,
    /// `bias[n]` added to every row of C (the `Linear` layer's bias); `N` values.
    PerColumn(&'a Tensor),
    /// `bias[m]` added to every column of C (a 1x1 conv's bias as `W X`); `M` values.
    PerRow(&'a Tensor),
}

/// Options of [`matmul`].
#[derive(Clone, Copy, Debug)]
pub struct MatmulOpts<'a> {
    /// A is stored `[batch, 1, K, M]` and used transposed.
    pub trans_a: bool,
    /// B is stored `[batch, 1, N, K]` and used transposed.
    pub trans_b: bool,
    pub alpha: f32,
    pub bias: Bias<'a>,
}

impl Default for MatmulOpts<'_> {
    fn default() -> Self {
        MatmulOpts { trans_a: false, trans_b: false, alpha: 1.0, bias: Bias::None }
    }
}

/// One operand of [`gemm`]: a row-major matrix at `off + b * batch_stride`
/// with leading dimension `ld` inside `tensor`'s buffer.
#[derive(Clone, Copy)]
pub(crate) struct MatView<'a> {
    pub tensor: &'a Tensor,
    pub off: usize,
    pub batch_stride: usize,
    pub ld: usize,
}

/// A fully described strided batched GEMM (sizes after `op`).
pub(crate) struct Gemm<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub a: MatView<'a>,
    pub b: MatView<'a>,
    pub c: MatView<'a>,
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f32,
    pub bias: Bias<'a>,
}

fn same_buffer(x: &Tensor, y: &Tensor) -> bool {
    Arc::ptr_eq(x.buffer(), y.buffer())
}

/// Check that a strided view's last element lies inside its tensor.
fn check_view(op: &str, name: &str, v: &MatView<'_>, rows: usize, cols: usize, batch: usize) -> Result<()> {
    if v.ld < cols {
        return Err(Error::Shape(format!("{op}: {name} has leading dimension {} < {cols} columns", v.ld)));
    }
    let last = v.off + (batch - 1) * v.batch_stride + (rows - 1) * v.ld + cols - 1;
    if last >= v.tensor.numel() {
        return Err(Error::Shape(format!(
            "{op}: {name} view ({batch} x {rows} x {cols}, offset {}, ld {}, batch stride {}) runs past tensor {}",
            v.off,
            v.ld,
            v.batch_stride,
            v.tensor.shape()
        )));
    }
    Ok(())
}

/// Prepare a strided batched GEMM. All views are checked against their
/// tensors, so a wrong stride is an error rather than a silent clamp.
pub(crate) fn gemm(ctx: &GpuContext, g: &Gemm<'_>) -> Result<Dispatch> {
    let op = "matmul";
    if g.m == 0 || g.n == 0 || g.k == 0 || g.batch == 0 {
        return Err(Error::Shape(format!("{op}: empty product (M={}, N={}, K={}, batch={})", g.m, g.n, g.k, g.batch)));
    }
    let (ar, ac) = if g.trans_a { (g.k, g.m) } else { (g.m, g.k) };
    let (br, bc) = if g.trans_b { (g.n, g.k) } else { (g.k, g.n) };
    check_view(op, "A", &g.a, ar, ac, g.batch)?;
    check_view(op, "B", &g.b, br, bc, g.batch)?;
    check_view(op, "C", &g.c, g.m, g.n, g.batch)?;
    for (name, t) in [("A", g.a.tensor), ("B", g.b.tensor)] {
        if same_buffer(t, g.c.tensor) {
            return Err(Error::InvalidArgument(format!("{op}: output may not share its buffer with input {name}")));
        }
    }
    let (bias_t, mode, want) = match g.bias {
        Bias::None => (g.a.tensor, BiasMode::None, 0),
        Bias::PerColumn(t) => (t, BiasMode::PerColumn, g.n),
        Bias::PerRow(t) => (t, BiasMode::PerRow, g.m),
    };
    if mode != BiasMode::None {
        if bias_t.numel() != want {
            return Err(Error::Shape(format!(
                "{op}: bias {} has {} values, expected {want} (one per {})",
                bias_t.shape(),
                bias_t.numel(),
                if mode == BiasMode::PerColumn { "output column" } else { "output row" }
            )));
        }
        if same_buffer(bias_t, g.c.tensor) {
            return Err(Error::InvalidArgument(format!("{op}: output may not share its buffer with the bias")));
        }
    }
    let params = GemmUniform {
        m: to_u32(g.m),
        n: to_u32(g.n),
        k: to_u32(g.k),
        alpha: g.alpha,
        lda: to_u32(g.a.ld),
        ldb: to_u32(g.b.ld),
        ldc: to_u32(g.c.ld),
        a_off: to_u32(g.a.off),
        b_off: to_u32(g.b.off),
        c_off: to_u32(g.c.off),
        a_bs: to_u32(g.a.batch_stride),
        b_bs: to_u32(g.b.batch_stride),
        c_bs: to_u32(g.c.batch_stride),
        ..Default::default()
    };
    let rn = rows_rn(g.n);
    let constants = [
        ("TRANS_A", g.trans_a as u32 as f64),
        ("TRANS_B", g.trans_b as u32 as f64),
        ("BIAS_MODE", mode.constant()),
        ("RN", rn as f64),
    ];
    // CPU adapters take gemm_rows (see matmul.wgsl), a 16 x 512 tile per
    // workgroup; WGSR_CONV_TILED forces the shared-memory kernel there too.
    let rows = ctx.info().device_type == "Cpu" && std::env::var_os("WGSR_CONV_TILED").is_none();
    let grid = if rows { [g.n.div_ceil(64 * rn), g.m.div_ceil(ROWS_M), g.batch] } else { [g.n.div_ceil(TILE), g.m.div_ceil(TILE), g.batch] };
    if grid.iter().any(|&v| v > u32::MAX as usize) {
        return Err(Error::TooLarge(format!("{op}: grid {grid:?} is too large")));
    }
    let flops = 2.0 * (g.m * g.n * g.k * g.batch) as f64;
    let bytes = 4.0 * ((g.m * g.k + g.k * g.n + g.m * g.n) * g.batch) as f64;
    Ok(ctx
        .dispatch(KernelCall {
            shader: &SHADER,
            entry: if rows { "gemm_rows" } else { "gemm" },
            constants: &constants,
            params: Some(&params),
            buffers: &[g.a.tensor.arg(), g.b.tensor.arg(), bias_t.arg(), g.c.tensor.arg_mut()],
            workgroups: [grid[0] as u32, grid[1] as u32, grid[2] as u32],
        })?
        .with_cost(flops, bytes))
}

/// gemm_rows' columns per thread for N columns: the widest tile (8, the
/// most work per uniform weight load) that pads at most N/8 idle columns,
/// else the one padding the fewest (N = 256: 4; N = 1100: 2).
fn rows_rn(n: usize) -> usize {
    let pad = |rn: usize| n.div_ceil(64 * rn) * 64 * rn - n;
    [8, 4, 2].into_iter().find(|&rn| pad(rn) <= n / 8).unwrap_or_else(|| [8, 4, 2].into_iter().min_by_key(|&rn| pad(rn)).unwrap_or(8))
}

/// `(batch, rows, cols)` of a tensor used as a batch of matrices `[b, 1, rows, cols]`.
fn as_matrices(op: &str, name: &str, t: &Tensor) -> Result<(usize, usize, usize)> {
    let s = t.shape();
    if s.c() != 1 {
        return Err(Error::Shape(format!("{op}: {name} {s} must be a batch of matrices [batch, 1, rows, cols]")));
    }
    Ok((s.n(), s.h(), s.w()))
}

/// `out[b] = alpha * op(a[b]) op(b[b]) + bias`, with `a` `[Ba,1,M,K]` (or
/// `[Ba,1,K,M]` when `trans_a`), `b` `[Bb,1,K,N]` (or `[Bb,1,N,K]` when
/// `trans_b`) and `out` `[B,1,M,N]`; `Ba` and `Bb` are each `B` or 1
/// (broadcast). `out` may not alias an input.
pub fn matmul(ctx: &GpuContext, a: &Tensor, b: &Tensor, out: &Tensor, opts: &MatmulOpts<'_>) -> Result<Dispatch> {
    let op = "matmul";
    let (ba, ar, ac) = as_matrices(op, "A", a)?;
    let (bb, br, bc) = as_matrices(op, "B", b)?;
    let (bo, or, oc) = as_matrices(op, "output", out)?;
    let (m, ka) = if opts.trans_a { (ac, ar) } else { (ar, ac) };
    let (kb, n) = if opts.trans_b { (bc, br) } else { (br, bc) };
    let desc = || {
        format!(
            "A {}{} x B {}{} -> output {}",
            a.shape(),
            if opts.trans_a { "^T" } else { "" },
            b.shape(),
            if opts.trans_b { "^T" } else { "" },
            out.shape()
        )
    };
    if ka != kb {
        return Err(Error::Shape(format!("{op}: inner dimensions differ ({ka} vs {kb}): {}", desc())));
    }
    if or != m || oc != n {
        return Err(Error::Shape(format!("{op}: output must be [{}, 1, {m}, {n}]: {}", ba.max(bb), desc())));
    }
    let batch = ba.max(bb);
    if (ba != 1 && ba != batch) || (bb != 1 && bb != batch) || bo != batch {
        return Err(Error::Shape(format!("{op}: batch sizes do not broadcast: {}", desc())));
    }
    let stride = |bt: usize, rows: usize, cols: usize| if bt == 1 { 0 } else { rows * cols };
    gemm(
        ctx,
        &Gemm {
            m,
            n,
            k: ka,
            batch,
            a: MatView { tensor: a, off: 0, batch_stride: stride(ba, ar, ac), ld: ac },
            b: MatView { tensor: b, off: 0, batch_stride: stride(bb, br, bc), ld: bc },
            c: MatView { tensor: out, off: 0, batch_stride: m * n, ld: n },
            trans_a: opts.trans_a,
            trans_b: opts.trans_b,
            alpha: opts.alpha,
            bias: opts.bias,
        },
    )
}

/// A fully connected layer `y = x W^T + b` with torch's weight layout.
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    in_features: usize,
    out_features: usize,
}

impl Linear {
    /// `weight` is `[out_features, in_features]` row-major (torch
    /// `nn.Linear.weight`), `bias` has `out_features` values.
    pub fn new(
        ctx: &GpuContext,
        weight: &[f32],
        bias: Option<&[f32]>,
        out_features: usize,
        in_features: usize,
    ) -> Result<Self> {
        Self::new_as(ctx, Dtype::F32, weight, bias, out_features, in_features)
    }

    /// [`Linear::new`] with weight and bias stored as `dtype` (they are
    /// bound like activations: the matmul's operands share one type).
    pub fn new_as(
        ctx: &GpuContext,
        dtype: Dtype,
        weight: &[f32],
        bias: Option<&[f32]>,
        out_features: usize,
        in_features: usize,
    ) -> Result<Self> {
        if out_features == 0 || in_features == 0 {
            return Err(Error::Shape(format!("linear: empty layer {out_features} x {in_features}")));
        }
        if weight.len() != out_features * in_features {
            return Err(Error::Shape(format!(
                "linear: weight has {} values, expected {out_features} x {in_features}",
                weight.len()
            )));
        }
        let weight = Tensor::from_slice_as(ctx, Shape::new(1, 1, out_features, in_features), weight, dtype)?;
        let bias = match bias {
            None => None,
            Some(b) if b.len() == out_features => Some(Tensor::from_slice_as(ctx, Shape::new(1, 1, 1, out_features), b, dtype)?),
            Some(b) => {
                return Err(Error::Shape(format!("linear: bias has {} values, expected {out_features}", b.len())));
            }
        };
        Ok(Linear { weight, bias, in_features, out_features })
    }

    pub fn in_features(&self) -> usize {
        self.in_features
    }
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// `out = x W^T + b` for a batch of row vectors. `x` is `[rows, in]` laid
    /// out as `[N, 1, 1, in]`, `[N, in, 1, 1]` or `[1, 1, N, in]`; `out`
    /// likewise with `out_features` (so `[N, out, 1, 1]` gives per-channel
    /// values ready to broadcast over a feature map).
    pub fn prepare(&self, ctx: &GpuContext, x: &Tensor, out: &Tensor) -> Result<Dispatch> {
        let rows_of = |t: &Tensor, width: usize| -> Option<usize> {
            let s = t.shape();
            if s.c() * s.hw() == width {
                Some(s.n())
            } else if s.n() == 1 && s.c() == 1 && s.w() == width {
                Some(s.h())
            } else {
                None
            }
        };
        let rows = rows_of(x, self.in_features).ok_or_else(|| {
            Error::Shape(format!(
                "linear: input {} is not a batch of {}-vectors ([N,1,1,{0}], [N,{0},1,1] or [1,1,N,{0}])",
                x.shape(),
                self.in_features
            ))
        })?;
        let out_rows = rows_of(out, self.out_features).ok_or_else(|| {
            Error::Shape(format!(
                "linear: output {} is not a batch of {}-vectors ([N,1,1,{0}], [N,{0},1,1] or [1,1,N,{0}])",
                out.shape(),
                self.out_features
            ))
        })?;
        if rows != out_rows {
            return Err(Error::Shape(format!(
                "linear: input {} has {rows} rows but output {} has {out_rows}",
                x.shape(),
                out.shape()
            )));
        }
        gemm(
            ctx,
            &Gemm {
                m: rows,
                n: self.out_features,
                k: self.in_features,
                batch: 1,
                a: MatView { tensor: x, off: 0, batch_stride: 0, ld: self.in_features },
                b: MatView { tensor: &self.weight, off: 0, batch_stride: 0, ld: self.in_features },
                c: MatView { tensor: out, off: 0, batch_stride: 0, ld: self.out_features },
                trans_a: false,
                trans_b: true,
                alpha: 1.0,
                bias: match &self.bias {
                    Some(b) => Bias::PerColumn(b),
                    None => Bias::None,
                },
            },
        )
    }
}
