//! Gated PixelCNN horizontal stack at one pixel per image, all blocks in one
//! node (`crate::ops::gated_stack`; PixelCNN's cached sampler).

use std::sync::Arc;

use crate::graph::ops::node_label;
use crate::graph::{GraphBuilder, OutputSpec, TensorId};
use crate::ops::gated_stack::{GatedBlock, GatedStack};
use crate::{Result, ResultExt};

impl GraphBuilder<'_> {
    /// The blocks `{prefix}{i}` (i < blocks; weights `.h_conv.*` [2C, C, 1, kh]
    /// and `.h_out.*` [C, C, 1, 1]) on `h0` [N, C, 1, 1], with every block's
    /// window history `hist` [N, blocks*C*kh, 1, 1] and vertical input `vh`
    /// [N, blocks*2C, 1, 1]. Returns (h entering each block [N, blocks*C, 1, 1],
    /// h after the last). Check [`GatedStack::supports`] first.
    #[allow(clippy::too_many_arguments)] // the stack's three inputs and the blocks' key, count and width
    pub fn gated_stack(&mut self, name: &str, h0: TensorId, hist: TensorId, vh: TensorId, prefix: &str, blocks: usize, kh: usize) -> Result<(TensorId, TensorId)> {
        const KIND: &str = "gated_stack";
        let c = self.shape(h0)?.c();
        let keys = |i: usize, part: &str, what: &str| format!("{prefix}{i}.{part}.{what}");
        let mut ws = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let get = |part: &str, what: &str, shape: &[usize]| self.weight(name, &keys(i, part, what), Some(shape)).map(|t| &t.data[..]);
            ws.push(GatedBlock {
                h_conv: get("h_conv", "weight", &[2 * c, c, 1, kh])?,
                h_conv_bias: get("h_conv", "bias", &[2 * c])?,
                h_out: get("h_out", "weight", &[c, c, 1, 1])?,
                h_out_bias: get("h_out", "bias", &[c])?,
            });
        }
        let stack = GatedStack::new(self.ctx(), c, kh, &ws).with_context(|| node_label(name, KIND))?;
        let n = self.shape(h0)?.n();
        let got = [self.shape(h0)?, self.shape(hist)?, self.shape(vh)?];
        if got != stack.input_shapes(n) {
            return Err(self.shape_error(name, KIND, format!("inputs (h0, hist, vh) {got:?}, expected {:?}", stack.input_shapes(n))));
        }
        let outs = stack.output_shapes(n).map(OutputSpec::new).to_vec();
        let stack = Arc::new(stack);
        let o = self.kernel_multi(
            name,
            KIND,
            format!("blocks={blocks} kh={kh}"),
            &[h0, hist, vh],
            outs,
            Box::new(move |c, i, o, _| Ok(vec![stack.prepare(c, i[0], i[1], i[2], o[0], o[1])?])),
            None,
        )?;
        Ok((o[0], o[1]))
    }
}
