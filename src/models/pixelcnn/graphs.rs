//! Four graphs of Pixel Recursive SR (the cached sampler's two: cache_graphs.rs), each built once per batch size and
//! replayed (op order: tools/PIXELCNN.md):
//!
//! * `cond`:  LR [N,3,h,w] (scaled to [-1,1]) -> A logits [N,768,H,W]
//! * `prior`: HR [N,3,H,W] (scaled) -> B logits [N,768,H,W] (the naive sampler runs it per sub-pixel)
//! * `vert`:  HR -> the vertical stack's contribution to every horizontal block,
//!   `vh{i} = v_to_h(v_conv_i(v_i))` [N,2C,H,W]; row r depends only on rows < r
//! * `row`:   rows r-p..r+p of HR [N,3,kin,W] + row r of every `vh{i}` [N,2C,1,W]
//!   -> B logits of row r [N,768,1,W]
//!
//! `row` performs, per output element, exactly the multiply-adds of `prior`
//! in the same order (same kernels, same full kernels, the rows the masks zero
//! are still fed), so the row sampler's logits are bit-identical to the naive
//! one's and both draw the same samples.
//!
//! The gate tanh(a) * sigmoid(b) of a 2C-channel tensor is one fused
//! elementwise op (`GraphBuilder::gate`).

use crate::graph::ops::conv::Conv;
use crate::graph::{Graph, GraphBuilder, TensorId};
use crate::ops::conv::{Activation, Conv2dParams, ConvTranspose2dParams, Epilogue};
use crate::weights::WeightStore;
use crate::{Result, Shape};

use super::config::{PixelCnnConfig, COLOURS};

fn pad(py: usize, px: usize) -> Conv {
    Conv { params: Conv2dParams { padding: [py, px], ..Default::default() }, ..Default::default() }
}

pub(crate) fn cond_graph(g_ctx: &crate::GpuContext, w: &WeightStore, cfg: &PixelCnnConfig, n: usize) -> Result<Graph> {
    let mut g = GraphBuilder::with_weights(g_ctx, w);
    let x = g.input("lr", Shape::new(n, COLOURS, cfg.lr_h, cfg.lr_w))?;
    let mut h = g.conv2d("cond.conv_in", x, "cond.conv_in", Conv::same(cfg.cond_in_kernel))?;
    let (p, op) = cfg.up_padding();
    for s in 0..=cfg.up_stages() {
        for j in 0..cfg.cond_res_per_stage {
            let b = format!("cond.stages.{s}.{j}");
            let t = g.conv2d(&format!("{b}.conv1"), h, &format!("{b}.conv1"), Conv::same(cfg.cond_kernel).act(Activation::Relu))?;
            h = g.conv2d(&format!("{b}.conv2"), t, &format!("{b}.conv2"), Conv::same(cfg.cond_kernel).residual(h, 1.0, 1.0))?;
        }
        if s < cfg.up_stages() {
            let key = format!("cond.ups.{s}");
            h = g.conv_transpose2d(&key, h, &key, ConvTranspose2dParams::new(2, p, op), Epilogue::act(Activation::Relu))?;
        }
    }
    let a = g.conv2d("cond.conv_out", h, "cond.conv_out", Conv::default())?;
    g.output("a", a)?;
    g.build()
}

/// Vertical stack over the whole image: returns `vh{i}` for every block.
fn vertical(g: &mut GraphBuilder, cfg: &PixelCnnConfig, h0: TensorId) -> Result<Vec<TensorId>> {
    let kv = cfg.prior_v_kernel;
    let mut v = h0;
    let mut out = Vec::with_capacity(cfg.prior_blocks);
    for i in 0..cfg.prior_blocks {
        let b = format!("prior.blocks.{i}");
        let vp = g.conv2d(&format!("{b}.v_conv"), v, &format!("{b}.v_conv"), Conv::same(kv))?;
        out.push(g.conv2d(&format!("{b}.v_to_h"), vp, &format!("{b}.v_to_h"), Conv::default())?);
        if i + 1 < cfg.prior_blocks {
            v = g.gate(&format!("{b}.v_gate"), vp)?;
        }
    }
    Ok(out)
}

/// Horizontal stack and output head on `h0` ([N,C,rows,W]), given each block's `vh`.
fn horizontal(g: &mut GraphBuilder, cfg: &PixelCnnConfig, h0: TensorId, vh: &[TensorId]) -> Result<TensorId> {
    let kh = cfg.prior_h_kernel;
    let mut h = h0;
    for (i, &vhi) in vh.iter().enumerate() {
        let b = format!("prior.blocks.{i}");
        let hp = g.conv2d(&format!("{b}.h_conv"), h, &format!("{b}.h_conv"), pad(0, kh / 2).residual(vhi, 1.0, 1.0))?;
        let gated = g.gate(&format!("{b}.h_gate"), hp)?;
        h = g.conv2d(&format!("{b}.h_out"), gated, &format!("{b}.h_out"), Conv::default().residual(h, 1.0, 1.0))?;
    }
    let hid = g.conv2d("prior.out1", h, "prior.out1", Conv::default().act(Activation::Relu))?;
    g.conv2d("prior.out2", hid, "prior.out2", Conv::default())
}

pub(crate) fn prior_graph(ctx: &crate::GpuContext, w: &WeightStore, cfg: &PixelCnnConfig, n: usize) -> Result<Graph> {
    let mut g = GraphBuilder::with_weights(ctx, w);
    // The samplers' graphs must give the same bits as each other (the cached
    // sampler recomputes windows, the others whole maps): direct convs only.
    g.set_winograd(None);
    let x = g.input("hr", Shape::new(n, COLOURS, cfg.hr_h(), cfg.hr_w()))?;
    let h0 = g.conv2d("prior.conv_in", x, "prior.conv_in", Conv::same(cfg.prior_in_kernel))?;
    let vh = vertical(&mut g, cfg, h0)?;
    let b = horizontal(&mut g, cfg, h0, &vh)?;
    g.output("b", b)?;
    g.build()
}

pub(crate) fn vert_graph(ctx: &crate::GpuContext, w: &WeightStore, cfg: &PixelCnnConfig, n: usize) -> Result<Graph> {
    let mut g = GraphBuilder::with_weights(ctx, w);
    // The samplers' graphs must give the same bits as each other (the cached
    // sampler recomputes windows, the others whole maps): direct convs only.
    g.set_winograd(None);
    let x = g.input("hr", Shape::new(n, COLOURS, cfg.hr_h(), cfg.hr_w()))?;
    let h0 = g.conv2d("prior.conv_in", x, "prior.conv_in", Conv::same(cfg.prior_in_kernel))?;
    for (i, t) in vertical(&mut g, cfg, h0)?.into_iter().enumerate() {
        g.output(&format!("vh{i}"), t)?;
    }
    g.build()
}

pub(crate) fn row_graph(ctx: &crate::GpuContext, w: &WeightStore, cfg: &PixelCnnConfig, n: usize) -> Result<Graph> {
    let mut g = GraphBuilder::with_weights(ctx, w);
    // The samplers' graphs must give the same bits as each other (the cached
    // sampler recomputes windows, the others whole maps): direct convs only.
    g.set_winograd(None);
    let (kin, wd, c2) = (cfg.prior_in_kernel, cfg.hr_w(), 2 * cfg.prior_channels);
    let x = g.input("hr_rows", Shape::new(n, COLOURS, kin, wd))?;
    let vh = (0..cfg.prior_blocks).map(|i| g.input(&format!("vh{i}"), Shape::new(n, c2, 1, wd))).collect::<Result<Vec<_>>>()?;
    // The vh rows are uploaded once per image row and replayed for every
    // sub-pixel of it (graph inputs keep their buffers across runs).
    // The full kin x kin kernel over exactly kin rows: one output row, the same
    // products as the "same"-padded conv of the prior graph at row r.
    let h0 = g.conv2d("prior.conv_in", x, "prior.conv_in", pad(0, kin / 2))?;
    let b = horizontal(&mut g, cfg, h0, &vh)?;
    g.output("b", b)?;
    g.build()
}
