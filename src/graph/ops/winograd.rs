//! Which convolutions run as Winograd convs (`ops::winograd`), and the node
//! that runs one: one input transform per input, the batched GEMM and the
//! output transform, with the two working buffers as scratch outputs.

use std::sync::Arc;

use crate::graph::op::OutputSpec;
use crate::graph::ops::node_label;
use crate::graph::{GraphBuilder, TensorId};
use crate::graph::ops::conv::Conv;
use crate::ops::conv::{Conv2dParams, Epilogue};
use crate::ops::winograd::{self, WinogradTile, WinogradWeights};
use crate::weights::HostTensor;
use crate::{Result, ResultExt, Shape};

/// Fewer input channels than this and the input transform costs more than
/// the direct conv it replaces (a 3->64 input conv). Thin outputs are no
/// bar: U and M pad them to a multiple of 4 rows and their GEMM takes the
/// matching thin tile (measured on lavapipe, paired, direct vs F(4x4):
/// 64->12 at 128x128 14.7-15.1 vs 11.2-14.5 ms, 131->18 at 64x64 10.8-11.2
/// vs 6.4-6.6 ms; in the HCFlow reverse pass 64->12 and 64->6 at 128x128
/// 195 and 167 ms -> 146 and 138 ms over 13 convs each).
const MIN_CHANNELS: usize = 16;
/// Below this many output channels a conv runs as Winograd only on outputs
/// of at least `THIN_MIN_PIXELS`: at 64x64, 137->3 and 64->6 measured
/// within noise of the direct conv (4.9-8.7 vs 5.7-6.0 ms, 3.0-4.5 vs
/// 3.0-3.2 ms), at 128x128 64->6 faster (above).
const THIN_COUT: usize = 8;
const THIN_MIN_PIXELS: usize = 128 * 128;
/// Outputs of fewer pixels per image stay direct (PixelCNN windows): too
/// few tiles. 8x8 already gains (SR3's 512-channel 8x8 level: 2.7x faster,
/// its handful of tiles taking the GEMM kernel for narrow products).
const MIN_PIXELS: usize = 64;
/// Outputs of at most this many pixels per image (SR3's 8x8 level: four
/// F(4x4) tiles) run as F(2x2): there the GEMM is bound by reading U, 36/9
/// of the 3x3 weights for F(4x4) against 16/9 for F(2x2), each used by only
/// 4 (F(4x4)) or 16 (F(2x2)) tiles. Measured on lavapipe, 512->512 at 8x8,
/// kernel bench --paired: F(2x2) 24.6 ms, F(4x4) 35.7 ms, direct 56.0 ms;
/// at 16x16 F(4x4) stays ahead (54.4 against 69.6 ms).
const SMALL_PIXELS: usize = 64;

/// `WGSR_WINOGRAD` (comparison switches for benches and tests): `off` =
/// direct convs only; `f2` / `f4` / `f6` = that tile instead of the graph's
/// (F(4x4); F(6x6) is opt-in: on lavapipe its 16% cheaper GEMM is outweighed
/// by its input transform, which has no four-tile vec4 form, 24.6 against
/// 23.3 ms for 96->32 at 128x128);
/// `all` (e.g. `f4-all`) = every eligible conv whatever its size, so the
/// small model fixtures run their convs through Winograd (CI does).
struct Choice {
    tile: Option<WinogradTile>,
    all: bool,
}

fn env_choice() -> Option<Choice> {
    let v = std::env::var("WGSR_WINOGRAD").unwrap_or_default().to_ascii_lowercase();
    if v == "off" || v == "0" {
        return None;
    }
    let tile = if v.contains("f2") {
        Some(WinogradTile::F2)
    } else if v.contains("f6") {
        Some(WinogradTile::F6)
    } else if v.contains("f4") {
        Some(WinogradTile::F4)
    } else {
        None
    };
    Some(Choice { tile, all: v.contains("all") })
}

impl GraphBuilder<'_> {
    /// The Winograd variant later 3x3 convs may run as: F(4x4) by default;
    /// None = direct convs (gradient graphs, and graphs that must give the
    /// same bits as a direct-conv twin).
    pub fn set_winograd(&mut self, tile: Option<WinogradTile>) {
        self.winograd = tile;
    }

    /// The Winograd variant for a conv of these weights on input `x`, or
    /// None when it should run direct: only 3x3, stride 1, undilated,
    /// ungrouped, square padding, enough channels and pixels, working
    /// buffers within the device's binding limit.
    pub(crate) fn winograd_tile(&self, x: Shape, shape: [usize; 4], p: &Conv2dParams) -> Option<WinogradTile> {
        let own = self.winograd?;
        let Choice { tile, all } = env_choice()?;
        // f16 graphs run direct unless WGSR_WINOGRAD forces a tile: their
        // point is memory and bandwidth, and Winograd's U stays f32 (f16 U
        // costs ~10 levels of error, see `conv2d_winograd`) at 4x (F(4x4))
        // the 3x3 weights, plus f32 V / M scratch of 2.25x the conv's input
        // and output: the official SR x4 at 64x64 holds 352 MiB of weights
        // and 61 MiB of plan that way, against 44 and 25 MiB direct.
        if self.precision == crate::Dtype::F16 && tile.is_none() && !all {
            return None;
        }
        let [cout, cin, kh, kw] = shape;
        let pad = p.padding[0];
        let plain = kh == 3 && kw == 3 && p.stride == [1, 1] && p.dilation == [1, 1] && p.groups == 1 && p.padding[1] == pad;
        if !plain || x.h() + 2 * pad < 3 || x.w() + 2 * pad < 3 {
            return None;
        }
        let pixels = (x.h() + 2 * pad - 2) * (x.w() + 2 * pad - 2);
        if !all && (cin < MIN_CHANNELS || pixels < MIN_PIXELS || (cout < THIN_COUT && pixels < THIN_MIN_PIXELS)) {
            return None;
        }
        // SMALL_PIXELS, unless WGSR_WINOGRAD forces a tile or `all` (which
        // keeps the fixtures on F(4x4)).
        let small = !all && own == WinogradTile::F4 && pixels <= SMALL_PIXELS;
        let tile = tile.unwrap_or(if small { WinogradTile::F2 } else { own });
        // Transformed weights and working buffers must each fit one binding
        // (F(4x4) weights of a 1024->1024 conv are 144 MiB): else a smaller
        // tile (F(4x4) 36/64 of F(6x6), F(2x2) 16/36 of F(4x4)), else direct.
        let max = self.ctx().max_binding_bytes();
        let fits = |t: WinogradTile| {
            let Ok((vs, ms)) = winograd::scratch_shapes(x, cin, cout, pad, t) else { return false };
            let weights = (t.a() * t.a() * cout.next_multiple_of(4) * cin * 4) as u64 + (1 << 16);
            vs.bytes() <= max && ms.bytes() <= max && weights <= max
        };
        [tile, WinogradTile::F4, WinogradTile::F2].into_iter().filter(|&t| t.m() <= tile.m()).find(|&t| fits(t))
    }

    /// A conv over the channel concatenation of `xs` as a Winograd node.
    /// `inputs` are the node's inputs (`xs`, then the residual if any).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn conv2d_winograd(
        &mut self,
        name: &str,
        kind: &'static str,
        inputs: &[TensorId],
        parts: usize,
        weight: &HostTensor,
        shape: [usize; 4],
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
        pad: usize,
        epi: Epilogue,
        tile: WinogradTile,
        out: Shape,
        attrs: String,
    ) -> Result<TensorId> {
        let x0 = self.shape(inputs[0])?;
        // U stays f32 whatever the graph's precision: rounded to f16 its error
        // grows with the output transform (F(4x4): ~3.7e-2 abs on unit-scale
        // data, tests/kernels/half.rs), while f16 activations at the
        // transforms' ends cost one rounding each.
        let w = WinogradWeights::new(self.ctx(), &weight.data, shape, bias, scale, tile).with_context(|| node_label(name, kind))?;
        let (vs, ms) = winograd::scratch_shapes(x0, shape[1], shape[0], pad, tile)?;
        let w = Arc::new(w);
        let outs = self.kernel_multi(
            name,
            kind,
            format!("{attrs} winograd {tile:?}"),
            inputs,
            vec![OutputSpec::new(out), OutputSpec::scratch(vs), OutputSpec::scratch(ms)],
            Box::new(move |ctx, i, o, _| winograd::conv3x3(ctx, &i[..parts], &w, pad, &epi, i.get(parts).copied(), o[1], o[2], o[0])),
            None,
        )?;
        Ok(outs[0])
    }
}

/// Winograd input transforms shared by the 3x3 convs that read growing
/// channel concatenations of one list of features (ESRGAN dense blocks:
/// conv j reads cat(x, x1, .., x_{j-1})). Each feature is transformed once
/// into one buffer V with room for `capacity` channels; each conv's GEMM
/// reads the first channels of every group of V. A 64 + 4 x 32 dense
/// block transforms 192 channels instead of 640, and every output has the
/// bits of the per-conv Winograd node (same V values, same GEMM sums in the
/// same order, same output transform).
#[derive(Clone, Copy, Debug)]
pub struct WinogradFeatures {
    v: TensorId,
    channels: usize,
    capacity: usize,
    pad: usize,
    tile: WinogradTile,
    /// Batch and size of the features.
    spatial: Shape,
}

impl WinogradFeatures {
    /// Channels transformed so far (the next conv reads them all).
    pub fn channels(&self) -> usize {
        self.channels
    }
}

impl GraphBuilder<'_> {
    /// Start shared transforms with the feature `x`, for convs of the weight
    /// shapes `convs` (each reading a prefix of at most `capacity` channels,
    /// padding `pad`). None when those convs would not all run as Winograd
    /// with one tile (then build them with `conv2d_cat`), and in gradient graphs.
    pub fn winograd_features(&mut self, name: &str, x: TensorId, capacity: usize, convs: &[[usize; 4]], pad: usize) -> Result<Option<WinogradFeatures>> {
        const KIND: &str = "winograd_features";
        let sx = self.shape(x)?;
        if self.gradients_enabled() || convs.is_empty() || sx.c() > capacity {
            return Ok(None);
        }
        let p = Conv2dParams::new(1, pad);
        let tiles: Vec<Option<WinogradTile>> = convs.iter().map(|&s| self.winograd_tile(Shape::new(sx.n(), s[1], sx.h(), sx.w()), s, &p)).collect();
        let Some(tile) = tiles[0] else { return Ok(None) };
        if tiles.iter().any(|t| *t != Some(tile)) || convs.iter().any(|s| s[1] > capacity) {
            return Ok(None);
        }
        let (vs, _) = winograd::scratch_shapes(sx, capacity, 1, pad, tile).with_context(|| node_label(name, KIND))?;
        if vs.bytes() > self.ctx().max_binding_bytes() {
            return Ok(None);
        }
        // V is f32 in every precision, as the per-conv node's scratch.
        let prev = self.set_storage(crate::Dtype::F32)?;
        let v = self.kernel(
            name,
            KIND,
            format!("capacity={capacity} {tile:?}"),
            &[x],
            vs,
            Box::new(move |ctx, i, o, _| Ok(vec![winograd::input_transform(ctx, i[0], o[0], 0, pad, tile)?])),
        );
        self.set_storage(prev)?;
        Ok(Some(WinogradFeatures { v: v?, channels: sx.c(), capacity, pad, tile, spatial: Shape::new(sx.n(), 1, sx.h(), sx.w()) }))
    }

    /// Transform the next feature `x` into `f` (in place, after the channels already there).
    pub fn winograd_features_push(&mut self, name: &str, f: &mut WinogradFeatures, x: TensorId) -> Result<()> {
        const KIND: &str = "winograd_features_push";
        let sx = self.shape(x)?;
        let s = f.spatial;
        if (sx.n(), sx.h(), sx.w()) != (s.n(), s.h(), s.w()) || f.channels + sx.c() > f.capacity {
            return Err(self.shape_error(
                name,
                KIND,
                format!("feature {sx} after {} of {} channels of {}x{} features (batch {})", f.channels, f.capacity, s.h(), s.w(), s.n()),
            ));
        }
        let (c_off, pad, tile) = (f.channels, f.pad, f.tile);
        let vs = self.shape(f.v)?;
        let outs = self.kernel_multi(
            name,
            KIND,
            format!("at {c_off}"),
            &[f.v, x],
            vec![OutputSpec { shape: vs, alias: crate::graph::op::Alias::InPlace(0) }],
            Box::new(move |ctx, i, o, _| Ok(vec![winograd::input_transform(ctx, i[1], o[0], c_off, pad, tile)?])),
            None,
        )?;
        f.v = outs[0];
        f.channels += sx.c();
        Ok(())
    }

    /// Forget the channels of `f` past the first `channels`: the next push
    /// overwrites them in place. Convs built before it read the old values
    /// (the graph runs its nodes in build order), so one transform of shared
    /// leading channels serves convs whose last channels differ (HCFlow's
    /// split-step couplings: cat(features, z1) with a new z1 each step).
    pub fn winograd_features_truncate(&self, f: &mut WinogradFeatures, channels: usize) -> Result<()> {
        if channels > f.channels {
            return Err(crate::Error::Graph(format!("winograd features: cannot truncate {} channels to {channels}", f.channels)));
        }
        f.channels = channels;
        Ok(())
    }

    /// A 3x3 conv over all channels pushed to `f` so far (weights
    /// `[Cout, f.channels(), 3, 3]`, the padding `f` was started with), as
    /// `conv2d_cat_with` over the features would compute it.
    pub fn conv2d_features(&mut self, name: &str, f: &WinogradFeatures, weight: &HostTensor, bias: Option<&[f32]>, scale: Option<&[f32]>, c: Conv) -> Result<TensorId> {
        const KIND: &str = "conv2d_features";
        let shape = crate::graph::ops::conv::weight4(self, name, KIND, weight)?;
        let s = f.spatial;
        if shape[1] != f.channels || c.params != Conv2dParams::new(1, f.pad) {
            return Err(self.shape_error(
                name,
                KIND,
                format!("weights {shape:?} and {:?} on features of {} channels with padding {}", c.params, f.channels, f.pad),
            ));
        }
        let x = Shape::new(s.n(), f.channels, s.h(), s.w());
        let out = Shape::new(s.n(), shape[0], s.h() + 2 * f.pad - 2, s.w() + 2 * f.pad - 2);
        let mut inputs = vec![f.v];
        if let Some(r) = c.residual {
            let rs = self.shape(r)?;
            if rs != out {
                return Err(self.shape_error(name, KIND, format!("residual {rs} does not match the output {out}")));
            }
            inputs.push(r);
        }
        let w = WinogradWeights::new(self.ctx(), &weight.data, shape, bias, scale, f.tile).with_context(|| node_label(name, KIND))?;
        let (_, ms) = winograd::scratch_shapes(x, shape[1], shape[0], f.pad, f.tile)?;
        let (w, pad, epi) = (Arc::new(w), f.pad, c.epilogue);
        let outs = self.kernel_multi(
            name,
            KIND,
            format!("{shape:?} winograd {:?} over {} of {} channels", f.tile, f.channels, f.capacity),
            &inputs,
            vec![OutputSpec::new(out), OutputSpec::scratch(ms)],
            Box::new(move |ctx, i, o, _| winograd::gemm_output(ctx, i[0], x, &w, pad, &epi, i.get(1).copied(), o[1], o[0], &[])),
            None,
        )?;
        Ok(outs[0])
    }

    /// [`GraphBuilder::conv2d_features`] with weights `{prefix}.weight` and,
    /// unless `c.bias` is false, `{prefix}.bias`.
    pub fn conv2d_features_from(&mut self, name: &str, f: &WinogradFeatures, prefix: &str, c: Conv) -> Result<TensorId> {
        let w = self.weight(name, &format!("{prefix}.weight"), None)?;
        let cout = w.shape.first().copied().unwrap_or(0);
        let b = if c.bias { Some(self.weight(name, &format!("{prefix}.bias"), Some(&[cout]))?) } else { None };
        self.conv2d_features(name, f, w, b.map(|b| b.data.as_slice()), None, c)
    }
}
