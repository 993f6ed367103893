//! The two graphs of the cached sampler (tools/PIXELCNN.md "Exact samplers"),
//! each built once per batch size and replayed:
//!
//! * `vrow`:  one row r of the vertical stack. Input `vhist{i}` [N, C*kv, 1, W]
//!   holds rows r-pv..r-1 of block i's input v_i (channel ci*kv + ky = row
//!   r-pv+ky; zeros for rows above the image and for ky >= pv); row r of v_i
//!   (i >= 1) is computed here from row r of v_{i-1} and inserted at ky = pv.
//!   Outputs: `vh{i}` = v_to_h(v_conv_i(v_i)) at row r [N, 2C, 1, W] and row r
//!   of v_i (`v{i}`, i >= 1), which the host keeps for the next rows.
//! * `pixel`: one sub-pixel (r, q). Inputs: `x_win` [N, 3*kin*kin, 1, 1], the
//!   input conv's window of the scaled image around (r, q); `hist`
//!   [N, blocks*C*kh, 1, 1], per block i the columns q-ph..q-1 of its
//!   horizontal input h_i at row r (channel (i*C + ci)*kh + kx = column
//!   q-ph+kx; zeros left of the image and for kx >= ph), with column q
//!   computed here and inserted at kx = ph; `vh` [N, blocks*2C, 1, 1], column
//!   q of every `vrow` output. Outputs: the B logits of one colour c (the
//!   graph is built per colour: its head is out2's 256 output channels of
//!   colour c, a third of the step's largest conv) [N, 256, 1, 1] and column
//!   q of every h_i (`hs`, [N, blocks*C, 1, 1]), final once the pixel's last
//!   colour is drawn. The horizontal stack is one `gated_stack` node (one
//!   dispatch for all blocks) where its kernel holds the sizes, else the
//!   per-block ops (window insert, h_conv, gate, h_out): the same bits.
//!
//! Bit-identical to the `prior` graph: a window laid out as channels in the
//! conv's k order (ci, ky, kx) with the kernel flattened the same way gives
//! each output the same products summed in the same order (the conv kernel
//! accumulates in k order whatever the output size or entry point). Where
//! the prior's window holds values the masks zero (rows below, columns right
//! of the centre), these graphs feed zeros: a zero product added to a sum
//! that starts at +0 never changes its bits.

use crate::graph::ops::conv::Conv;
use crate::graph::{Graph, GraphBuilder, TensorId};
use crate::ops::conv::{Activation, Conv2dParams};
use crate::ops::gated_stack::GatedStack;
use crate::weights::{HostTensor, WeightStore};
use crate::{GpuContext, Result, Shape};

use super::config::{PixelCnnConfig, COLOURS, LEVELS};

/// Conv `{key}` with its kernel [Cout, Cin, kh, kw] flattened to a 1x1
/// [Cout, Cin*kh*kw] (the same k order) on a window laid out as channels.
fn window_conv(g: &mut GraphBuilder, key: &str, win: TensorId, c: Conv) -> Result<TensorId> {
    let w = g.weight(key, &format!("{key}.weight"), None)?;
    let cout = w.shape[0];
    let flat = HostTensor::new(vec![cout, w.data.len() / cout, 1, 1], w.data.clone())?;
    let bias = g.weight(key, &format!("{key}.bias"), Some(&[cout]))?;
    g.conv2d_with(key, win, &flat, Some(&bias.data), None, c)
}

pub(crate) fn vrow_graph(ctx: &GpuContext, w: &WeightStore, cfg: &PixelCnnConfig, n: usize) -> Result<Graph> {
    let mut g = GraphBuilder::with_weights(ctx, w);
    // The samplers' graphs must give the same bits as each other (the cached
    // sampler recomputes windows, the others whole maps): direct convs only.
    g.set_winograd(None);
    let (c, kv, wd) = (cfg.prior_channels, cfg.prior_v_kernel, cfg.hr_w());
    let pv = kv / 2;
    let mut v = None;
    for i in 0..cfg.prior_blocks {
        let b = format!("prior.blocks.{i}");
        let hist = g.input(&format!("vhist{i}"), Shape::new(n, c * kv, 1, wd))?;
        // Block 0 (mask VA) reads no row r: its window is all history.
        let win = match v {
            Some(v) => g.insert_channels(&format!("{b}.v_window"), hist, v, pv, kv)?,
            None => hist,
        };
        let win = g.reshape(&format!("{b}.v_rows"), win, Shape::new(n, c, kv, wd))?;
        let conv = Conv { params: Conv2dParams { padding: [0, pv], ..Default::default() }, ..Default::default() };
        let vp = g.conv2d(&format!("{b}.v_conv"), win, &format!("{b}.v_conv"), conv)?;
        let vh = g.conv2d(&format!("{b}.v_to_h"), vp, &format!("{b}.v_to_h"), Conv::default())?;
        g.output(&format!("vh{i}"), vh)?;
        if i + 1 < cfg.prior_blocks {
            let next = g.gate(&format!("{b}.v_gate"), vp)?;
            g.output(&format!("v{}", i + 1), next)?;
            v = Some(next);
        }
    }
    g.build()
}

pub(crate) fn pixel_graph(ctx: &GpuContext, w: &WeightStore, cfg: &PixelCnnConfig, n: usize, colour: usize) -> Result<Graph> {
    pixel_graph_as(ctx, w, cfg, n, colour, GatedStack::supports(cfg.prior_channels, cfg.prior_h_kernel))
}

/// `pixel_graph` with the horizontal stack fused (one `gated_stack` node) or
/// as the per-block ops (`fused` false; tests compare the two).
pub(crate) fn pixel_graph_as(ctx: &GpuContext, w: &WeightStore, cfg: &PixelCnnConfig, n: usize, colour: usize, fused: bool) -> Result<Graph> {
    let mut g = GraphBuilder::with_weights(ctx, w);
    // The samplers' graphs must give the same bits as each other (the cached
    // sampler recomputes windows, the others whole maps): direct convs only.
    g.set_winograd(None);
    let (c, kin, kh, nb) = (cfg.prior_channels, cfg.prior_in_kernel, cfg.prior_h_kernel, cfg.prior_blocks);
    let x = g.input("x_win", Shape::new(n, COLOURS * kin * kin, 1, 1))?;
    let hist = g.input("hist", Shape::new(n, nb * c * kh, 1, 1))?;
    let vh = g.input("vh", Shape::new(n, nb * 2 * c, 1, 1))?;
    let h0 = window_conv(&mut g, "prior.conv_in", x, Conv::default())?;
    let (hs, h) = if fused {
        g.gated_stack("prior.h_stack", h0, hist, vh, "prior.blocks.", nb, kh)?
    } else {
        let mut h = h0;
        let mut hs = Vec::with_capacity(nb);
        for i in 0..nb {
            let b = format!("prior.blocks.{i}");
            hs.push(h);
            let hist_i = g.slice_channels(&format!("{b}.hist"), hist, i * c * kh, 1, c * kh)?;
            let vh_i = g.slice_channels(&format!("{b}.vh"), vh, i * 2 * c, 1, 2 * c)?;
            let win = g.insert_channels(&format!("{b}.h_window"), hist_i, h, kh / 2, kh)?;
            let hp = window_conv(&mut g, &format!("{b}.h_conv"), win, Conv::default().residual(vh_i, 1.0, 1.0))?;
            let gated = g.gate(&format!("{b}.h_gate"), hp)?;
            h = g.conv2d(&format!("{b}.h_out"), gated, &format!("{b}.h_out"), Conv::default().residual(h, 1.0, 1.0))?;
        }
        (g.concat("prior.h_cache", &hs)?, h)
    };
    g.output("hs", hs)?;
    let hid = g.conv2d("prior.out1", h, "prior.out1", Conv::default().act(Activation::Relu))?;
    // Output channels colour*256.. of out2: each channel's sum is its own, so
    // dropping the other colours' channels changes no bit.
    let (w2, b2) = (g.weight("prior.out2", "prior.out2.weight", None)?, g.weight("prior.out2", "prior.out2.bias", None)?);
    let hidden = w2.shape[1];
    let rows = colour * LEVELS..(colour + 1) * LEVELS;
    let w2c = HostTensor::new(vec![LEVELS, hidden, 1, 1], w2.data[rows.start * hidden..rows.end * hidden].to_vec())?;
    let b = g.conv2d_with("prior.out2", hid, &w2c, Some(&b2.data[rows]), None, Conv::default())?;
    g.output("b", b)?;
    g.build()
}
