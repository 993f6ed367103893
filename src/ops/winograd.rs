//! Winograd F(m x m, 3 x 3) convolution (m = 2, 4 or 6) for 3x3, stride-1,
//! undilated, ungrouped convs: the input and output transforms of
//! `kernels/winograd.wgsl` around a batched GEMM of `ops::matmul`, with the
//! conv's fused epilogue. The weight transform `U = G g G^T` is done once,
//! on the host in f64, when [`WinogradWeights`] are built.
//!
//! The (m+2)^2 GEMMs over channels are one *grouped 1x1 conv* of
//! `ops::conv` (group ab multiplies `U[ab]` by the channel rows of `V[ab]`),
//! so they run on the conv kernels tuned per adapter: conv2d_rows on CPU
//! adapters (measured faster than the matmul kernels there), the tiled
//! conv2d on GPUs.
//!
//! F(6x6) does 5.06x fewer multiply-adds than the direct conv, F(4x4) 4x,
//! F(2x2) 2.25x; the price is rounding: the transforms' constants (up to 8
//! and 1/24 for F(4x4), 32 and 1/90 for F(6x6)) grow the f32 error (stated
//! in tests/kernels/winograd.rs).
//! Several inputs are concatenated for free: each input's transform writes
//! its channel rows of V, and one GEMM reads them all.

use crate::gpu::{grid_1d, to_i32, to_u32, wg_entries, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource, WG};
use crate::ops::conv::{self, Conv2dParams, Conv2dWeights, Epilogue};
use crate::{Error, Result, Shape, Tensor};

const ENTRIES: [EntryPoint; 2] = wg_entries(["wino_input", "wino_output"]);
pub(crate) const SHADER: ShaderSource = ShaderSource::new("winograd", include_str!("../../kernels/winograd.wgsl"))
    .params(&[WinogradUniform::LAYOUT])
    .entries(&ENTRIES);

crate::kernel_params! {
    /// Uniform block of kernels/winograd.wgsl (see its field comments).
    pub struct WinogradUniform = "winograd"::"Params" {
        c: u32,
        h: u32,
        w: u32,
        th: u32,
        tw: u32,
        tiles: u32,
        tiles_p: u32,
        blk: u32,
        ctot: u32,
        c_off: u32,
        pad: i32,
        alpha: f32,
        beta: f32,
        slope: f32,
    }
}

/// Output tile side of a Winograd variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WinogradTile {
    /// F(2x2, 3x3): 16 GEMMs, 2.25x fewer multiply-adds.
    F2,
    /// F(4x4, 3x3): 36 GEMMs, 4x fewer multiply-adds.
    F4,
    /// F(6x6, 3x3): 64 GEMMs, 5.06x fewer multiply-adds, V and M 1.78x the
    /// pixels (2.25x for F(4x4)); points 0, +-1, +-2, +-1/2 (Lavin & Gray).
    F6,
}

impl WinogradTile {
    /// Output tile side m.
    pub fn m(self) -> usize {
        match self {
            WinogradTile::F2 => 2,
            WinogradTile::F4 => 4,
            WinogradTile::F6 => 6,
        }
    }
    /// Input tile side m + 2; the transform has (m + 2)^2 GEMMs.
    pub fn a(self) -> usize {
        self.m() + 2
    }
    /// G (A x 3), the weight transform.
    fn g(self) -> Vec<[f64; 3]> {
        match self {
            WinogradTile::F2 => vec![[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]],
            WinogradTile::F4 => vec![
                [0.25, 0.0, 0.0],
                [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
                [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
                [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
                [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
                [0.0, 0.0, 1.0],
            ],
            WinogradTile::F6 => vec![
                [1.0, 0.0, 0.0],
                [-2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0],
                [-2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0],
                [1.0 / 90.0, 1.0 / 45.0, 2.0 / 45.0],
                [1.0 / 90.0, -1.0 / 45.0, 2.0 / 45.0],
                [32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0],
                [32.0 / 45.0, -16.0 / 45.0, 8.0 / 45.0],
                [0.0, 0.0, 1.0],
            ],
        }
    }
}

/// A 3x3 conv's weights in the Winograd domain, `U[a][b][cout][cin]` packed
/// as the weights of a grouped 1x1 conv (one group per ab), plus bias and
/// per-channel scale (the conv epilogue's). Built once at load.
#[derive(Clone, Debug)]
pub struct WinogradWeights {
    tile: WinogradTile,
    cout: usize,
    /// `cout` rounded up to a multiple of 4: U and M carry that many rows
    /// per group (the padding rows zero, never stored), so the GEMM always
    /// takes the aligned CPU-tuned kernel (conv.wgsl A_VEC) and thin
    /// outputs (a coupling net's 6 or 22 channels) run as Winograd too.
    cout_p: usize,
    cin: usize,
    u: Conv2dWeights,
    /// bias[cout] then scale[cout].
    epi: Tensor,
}

impl WinogradWeights {
    /// From torch `Conv2d` weights `[cout, cin, 3, 3]`, optional `bias` and
    /// per-output-channel `scale` (`cout` values each). U is f32 in every
    /// graph precision: rounded to f16, the output transform amplifies its
    /// error to ~10 8-bit levels (tests/kernels/half.rs); the transforms read
    /// and write f16 activations all the same.
    pub fn new(
        ctx: &GpuContext,
        weight: &[f32],
        shape: [usize; 4],
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
        tile: WinogradTile,
    ) -> Result<Self> {
        let [cout, cin, kh, kw] = shape;
        if kh != 3 || kw != 3 || cout == 0 || cin == 0 {
            return Err(Error::InvalidArgument(format!("winograd conv: weights {shape:?} are not a 3x3 kernel")));
        }
        if weight.len() != cout * cin * 9 {
            return Err(Error::Shape(format!("winograd conv: weights {shape:?} need {} values, got {}", cout * cin * 9, weight.len())));
        }
        let epi = conv::epilogue_table(cout, bias, scale)?;
        let g = tile.g();
        let a = tile.a();
        let cout_p = padded_cout(cout);
        let mut u = vec![0f32; a * a * cout_p * cin];
        for co in 0..cout {
            for ci in 0..cin {
                let k = &weight[(co * cin + ci) * 9..][..9];
                // t = G k (A x 3), then u = t G^T (A x A).
                let mut t = vec![[0f64; 3]; a];
                for (i, gi) in g.iter().enumerate() {
                    for c in 0..3 {
                        t[i][c] = (0..3).map(|r| gi[r] * k[r * 3 + c] as f64).sum();
                    }
                }
                for i in 0..a {
                    for (j, gj) in g.iter().enumerate() {
                        let v: f64 = (0..3).map(|c| t[i][c] * gj[c]).sum();
                        u[((i * a + j) * cout_p + co) * cin + ci] = v as f32;
                    }
                }
            }
        }
        Ok(WinogradWeights {
            tile,
            cout,
            cout_p,
            cin,
            u: Conv2dWeights::new(ctx, &u, [a * a * cout_p, cin, 1, 1], None, None)?,
            epi: Tensor::from_slice(ctx, Shape::new(1, 1, 2, cout), &epi)?,
        })
    }

    pub fn tile(&self) -> WinogradTile {
        self.tile
    }
    pub fn in_channels(&self) -> usize {
        self.cin
    }
    pub fn out_channels(&self) -> usize {
        self.cout
    }
}

/// Output size of a 3x3 stride-1 conv with padding `pad` on `x`.
fn out_hw(op: &str, x: Shape, pad: usize) -> Result<(usize, usize)> {
    if x.h() + 2 * pad < 3 || x.w() + 2 * pad < 3 {
        return Err(Error::Shape(format!("{op}: input {x} with padding {pad} is smaller than the 3x3 kernel")));
    }
    Ok((x.h() + 2 * pad - 2, x.w() + 2 * pad - 2))
}

/// Shapes of the two working buffers of [`conv3x3`] for inputs of spatial
/// shape `x` (batch, -, h, w) with `cin` channels in all, and `cout` outputs:
/// `V` = `[T'/B, A*A*cin, 1, B]` and `M` = `[T'/B, A*A*cout4, 1, B]`, the
/// grouped GEMM's NCHW views: row ab*C + c of T tiles (T = batch * tiles per
/// image) in blocks of B tiles, T' = T rounded up to whole blocks (see
/// [`tile_blocks`] and winograd.wgsl); cout4 = `cout` rounded up to a
/// multiple of 4, see `WinogradWeights`.
pub fn scratch_shapes(x: Shape, cin: usize, cout: usize, pad: usize, tile: WinogradTile) -> Result<(Shape, Shape)> {
    let (ho, wo) = out_hw("winograd conv", x, pad)?;
    let m = tile.m();
    let (blk, tp) = tile_blocks(x.n() * ho.div_ceil(m) * wo.div_ceil(m));
    let aa = tile.a() * tile.a();
    Ok((Shape::new(tp / blk, aa * cin, 1, blk), Shape::new(tp / blk, aa * padded_cout(cout), 1, blk)))
}

/// Tiles per block of V and M, and the tile count padded to whole blocks,
/// for `t` tiles: blocks of 16 (one GEMM workgroup's columns on CPU
/// adapters, whose k rows are then contiguous) from 64 tiles or at a
/// multiple of 16, else one block of all `t` (at most 15 padding tiles on
/// 64+, none below).
pub fn tile_blocks(t: usize) -> (usize, usize) {
    const BLOCK: usize = 16;
    if t >= 4 * BLOCK || t % BLOCK == 0 {
        (BLOCK, t.next_multiple_of(BLOCK))
    } else {
        (t, t)
    }
}

/// Output channels as U and M hold them: a multiple of 4.
fn padded_cout(cout: usize) -> usize {
    cout.next_multiple_of(4)
}

/// torch `Conv2d(k=3, stride=1, padding=pad)` over the channel
/// concatenation of `inputs` (same batch and size; their channel counts sum
/// to the weights' `cin`) into `out`, with the conv epilogue
/// `out = alpha * act((conv + bias) * scale) + beta * residual`, the residual
/// of the output's shape or `[N, Cout, 1, 1]` (one value per sample and
/// channel, added to each of its pixels).
/// `v` and `m` are working buffers of the shapes [`scratch_shapes`] gives.
/// Returns the dispatches in order (one input transform per input, the
/// GEMM, the output transform).
#[allow(clippy::too_many_arguments)]
pub fn conv3x3(
    ctx: &GpuContext,
    inputs: &[&Tensor],
    w: &WinogradWeights,
    pad: usize,
    epi: &Epilogue,
    residual: Option<&Tensor>,
    v: &Tensor,
    m: &Tensor,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "winograd conv";
    let x0 = inputs.first().ok_or_else(|| Error::InvalidArgument(format!("{OP}: no inputs")))?.shape();
    let cin: usize = inputs.iter().map(|x| x.shape().c()).sum();
    if cin != w.cin {
        return Err(Error::Shape(format!("{OP}: inputs have {cin} channels in all, the weights expect {}", w.cin)));
    }
    if inputs.iter().any(|t| std::sync::Arc::ptr_eq(t.buffer(), m.buffer())) {
        return Err(Error::InvalidArgument(format!("{OP}: the output and working buffers must not alias the inputs or each other")));
    }
    let mut ds = Vec::with_capacity(inputs.len() + 2);
    let mut c_off = 0;
    for x in inputs {
        ds.push(input_transform(ctx, x, v, c_off, pad, w.tile)?);
        c_off += x.shape().c();
    }
    let spatial = Shape::new(x0.n(), cin, x0.h(), x0.w());
    ds.extend(gemm_output(ctx, v, spatial, w, pad, epi, residual, m, out, inputs)?);
    Ok(ds)
}

/// The input transform of `x` into channel rows `c_off..c_off + C` of every
/// group of `v`, a transform buffer of [`scratch_shapes`] for `v.c() / A^2`
/// channels in all (so several inputs, or a growing list of features, share
/// one `v`). `x` must fit there and not alias `v`.
pub fn input_transform(ctx: &GpuContext, x: &Tensor, v: &Tensor, c_off: usize, pad: usize, tile: WinogradTile) -> Result<Dispatch> {
    const OP: &str = "winograd input transform";
    let s = x.shape();
    let aa = tile.a() * tile.a();
    let ctot = v.shape().c() / aa;
    let (vs, _) = scratch_shapes(s, ctot, 1, pad, tile)?;
    if v.shape() != vs || c_off + s.c() > ctot {
        return Err(Error::Shape(format!(
            "{OP}: input {s} at channel {c_off} of a transform buffer {} (expected {vs} with room for channels {c_off}..{})",
            v.shape(),
            c_off + s.c()
        )));
    }
    if std::sync::Arc::ptr_eq(x.buffer(), v.buffer()) {
        return Err(Error::InvalidArgument(format!("{OP}: the transform buffer must not alias the input")));
    }
    let (ho, wo) = out_hw(OP, s, pad)?;
    let mt = tile.m();
    let (th, tw) = (ho.div_ceil(mt), wo.div_ceil(mt));
    let tiles = s.n() * th * tw;
    let (blk, tiles_p) = tile_blocks(tiles);
    let params = WinogradUniform {
        c: to_u32(s.c()),
        h: to_u32(s.h()),
        w: to_u32(s.w()),
        th: to_u32(th),
        tw: to_u32(tw),
        tiles: to_u32(tiles),
        tiles_p: to_u32(tiles_p),
        blk: to_u32(blk),
        ctot: to_u32(ctot),
        c_off: to_u32(c_off),
        pad: to_i32(pad),
        ..Default::default()
    };
    // The padding tiles too (written as zeros).
    let n = s.c() * tiles_p;
    let tv = four_tiles(tile, pad, s.w());
    // TV's vec4 of four tiles must not straddle a block.
    debug_assert!(!tv || (tiles % 4 == 0 && blk % 4 == 0), "winograd TV with {tiles} tiles in blocks of {blk}");
    let threads = if tv { n / 4 } else { n };
    let d = ctx.dispatch(KernelCall {
        shader: &SHADER,
        entry: "wino_input",
        constants: &[("WM", mt as f64), ("TV", if tv { 1.0 } else { 0.0 })],
        params: Some(&params),
        // Placeholders at the output's bindings (unused by wino_input).
        buffers: &[x.arg(), x.arg(), x.arg(), v.arg_mut(), v.arg_mut(), x.arg(), v.arg_mut()],
        workgroups: grid_1d(threads.div_ceil(WG)),
    })?;
    Ok(d.with_cost(0.0, x.bytes() as f64 + (n * aa * 4) as f64))
}

/// The GEMM and output transform of a Winograd conv whose input, of the
/// spatial shape and channel count `x` (the weights' `cin`), was transformed
/// into the first `cin` channel rows of every group of `v` (which may hold
/// more: see [`input_transform`]). `inputs` are only checked not to alias
/// `out` (the tensors the transforms read).
#[allow(clippy::too_many_arguments)]
pub fn gemm_output(
    ctx: &GpuContext,
    v: &Tensor,
    x: Shape,
    w: &WinogradWeights,
    pad: usize,
    epi: &Epilogue,
    residual: Option<&Tensor>,
    m: &Tensor,
    out: &Tensor,
    inputs: &[&Tensor],
) -> Result<Vec<Dispatch>> {
    const OP: &str = "winograd conv";
    if x.c() != w.cin {
        return Err(Error::Shape(format!("{OP}: inputs have {} channels in all, the weights expect {}", x.c(), w.cin)));
    }
    let (ho, wo) = out_hw(OP, x, pad)?;
    let want = Shape::new(x.n(), w.cout, ho, wo);
    if out.shape() != want {
        return Err(Error::Shape(format!("{OP}: output is {} but the inputs give {want}", out.shape())));
    }
    let aa = w.tile.a() * w.tile.a();
    let ctot = v.shape().c() / aa;
    let (vs, ms) = scratch_shapes(x, ctot.max(1), w.cout, pad, w.tile)?;
    if v.shape() != vs || ctot < w.cin || m.shape() != ms {
        return Err(Error::Shape(format!(
            "{OP}: working buffers are {} and {}, expected {vs} (at least {} channels per group) and {ms}",
            v.shape(),
            m.shape(),
            w.cin
        )));
    }
    // A residual is the output's shape, or one value per (sample, channel).
    let chan_res = Shape::new(want.n(), want.c(), 1, 1);
    if let Some(r) = residual {
        if r.shape() != want && r.shape() != chan_res {
            return Err(Error::Shape(format!("{OP}: residual {} is neither the output's shape {want} nor one value per (sample, channel) {chan_res}", r.shape())));
        }
    }
    let res_chan = residual.is_some_and(|r| r.shape() != want);
    let bufs: Vec<&Tensor> = inputs.iter().copied().chain(residual).chain([v, m]).collect();
    if bufs.iter().any(|t| std::sync::Arc::ptr_eq(t.buffer(), out.buffer())) || std::sync::Arc::ptr_eq(v.buffer(), m.buffer()) {
        return Err(Error::InvalidArgument(format!("{OP}: the output and working buffers must not alias the inputs or each other")));
    }
    let mt = w.tile.m();
    let (th, tw) = (ho.div_ceil(mt), wo.div_ceil(mt));
    let tiles = x.n() * th * tw;
    let (blk, tiles_p) = tile_blocks(tiles);
    let (act, slope) = epi.activation.code();
    let wm = ("WM", mt as f64);
    // The GEMMs: group ab of a 1x1 conv maps V's rows ab*ctot.. to M's rows ab*cout..
    let gemm = if ctot == w.cin {
        conv::conv2d(ctx, v, &w.u, &Conv2dParams { groups: aa, ..Default::default() }, &Epilogue::default(), None, m)?
    } else {
        conv::conv2d_group_strided(ctx, v, &w.u, aa, ctot, m)?
    };
    let params = WinogradUniform {
        c: to_u32(w.cout),
        ctot: to_u32(w.cout_p),
        h: to_u32(ho),
        w: to_u32(wo),
        th: to_u32(th),
        tw: to_u32(tw),
        tiles: to_u32(tiles),
        tiles_p: to_u32(tiles_p),
        blk: to_u32(blk),
        alpha: epi.alpha,
        beta: epi.beta,
        slope,
        ..Default::default()
    };
    // Without a residual, any activation but the output (HAS_RES is off).
    let res = residual.unwrap_or(v);
    let n = w.cout * tiles;
    let constants = [
        wm,
        ("ACT", act.constant()),
        ("HAS_RES", if residual.is_some() { 1.0 } else { 0.0 }),
        ("RES_CHAN", if res_chan { 1.0 } else { 0.0 }),
    ];
    let d = ctx.dispatch(KernelCall {
        shader: &SHADER,
        entry: "wino_output",
        constants: &constants,
        params: Some(&params),
        // Placeholders at the input's bindings 1, 6 and 7 (unused by wino_output).
        buffers: &[w.epi.arg(), w.epi.arg(), res.arg(), out.arg_mut(), m.arg_mut(), w.epi.arg(), m.arg_mut()],
        workgroups: grid_1d(n.div_ceil(WG)),
    })?;
    let mut bytes = (n * aa * 4) as f64 + out.bytes() as f64;
    if let Some(r) = residual {
        bytes += r.bytes() as f64;
    }
    Ok(vec![gemm, d.with_cost(0.0, bytes)])
}

/// Whether the input transform takes four tiles per thread (winograd.wgsl
/// TV): F(4x4) with padding 1 on images whose width is a multiple of 16, so
/// a tile row holds whole quads of tiles and every row is whole vec4s.
/// `WGSR_NO_TV` set in the environment turns it off (an A/B switch). F(6x6)
/// with two tiles per thread (five vec4 loads per row, vec2 stores) measured
/// slower on lavapipe than one tile per thread (15.7 against 13.8-14.8 ms,
/// 96 channels at 128x128), so F(6x6) has no TV.
fn four_tiles(tile: WinogradTile, pad: usize, w: usize) -> bool {
    tile == WinogradTile::F4 && pad == 1 && w % 16 == 0 && std::env::var_os("WGSR_NO_TV").is_none()
}

/// Multiply-adds of the direct conv a Winograd conv replaces (x2 = FLOPs):
/// benches quote effective GFLOP/s against this.
pub fn direct_flops(out: Shape, cin: usize) -> f64 {
    2.0 * out.numel() as f64 * cin as f64 * 9.0
}
