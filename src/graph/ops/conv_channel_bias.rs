//! A convolution followed by a per-(sample, channel) bias `t` of shape
//! `[N, Cout, 1, 1]` (SR3's ResnetBlock: block1's conv, then the time
//! embedding's `noise_func`). A conv the graph runs as Winograd adds `t` in
//! its output transform (`ops::winograd` with a per-channel residual), which
//! saves a read and a write of the whole output; other convs are followed by
//! an `add_channel_bias` node. In f32 both give the same bits: the output
//! transform adds `1 * t` to the epilogue's value just as the separate add
//! does to the stored output.

use crate::graph::ops::conv::{describe, weight4, Conv};
use crate::graph::{GraphBuilder, TensorId};
use crate::ops::conv::Epilogue;
use crate::{Dtype, Result, Shape};

impl GraphBuilder<'_> {
    /// [`GraphBuilder::conv2d_cat`] (one or more input parts) with weights
    /// `{prefix}.weight` and, unless `c.bias` is false, `{prefix}.bias`, then
    /// `+ t` per (sample, output channel). `c` must carry no residual.
    pub fn conv2d_cat_channel_bias(&mut self, name: &str, inputs: &[TensorId], prefix: &str, c: Conv, t: TensorId) -> Result<TensorId> {
        const KIND: &str = "conv2d_channel_bias";
        if c.residual.is_some() {
            return Err(self.shape_error(name, KIND, "a conv with a residual takes no channel bias".into()));
        }
        let w = self.weight(name, &format!("{prefix}.weight"), None)?;
        let shape = weight4(self, name, KIND, w)?;
        let shapes = inputs.iter().map(|x| self.shape(*x)).collect::<Result<Vec<Shape>>>()?;
        let (Some(s0), ts) = (shapes.first().copied(), self.shape(t)?) else {
            return Err(self.shape_error(name, KIND, "no inputs".into()));
        };
        let total: usize = shapes.iter().map(|s| s.c()).sum();
        let want_t = Shape::new(s0.n(), shape[0], 1, 1);
        if ts != want_t {
            return Err(self.shape_error(name, KIND, format!("channel bias {ts} is not one value per (sample, output channel) {want_t}")));
        }
        let same_size = shapes.iter().all(|s| (s.n(), s.h(), s.w()) == (s0.n(), s0.h(), s0.w()));
        // f16 graphs keep the separate add: there the fused add would skip
        // the rounding of the conv output, so the bits would differ.
        // Gradient graphs too: the fused node has no VJP.
        let tile = (same_size && total == shape[1] && !self.gradients_enabled() && self.precision == Dtype::F32)
            .then(|| self.winograd_tile(Shape::new(s0.n(), total, s0.h(), s0.w()), shape, &c.params))
            .flatten();
        let Some(tile) = tile else {
            let y = match inputs {
                [x] => self.conv2d(name, *x, prefix, c)?,
                _ => self.conv2d_cat(name, inputs, prefix, c)?,
            };
            return self.add_channel_bias(&format!("{name}.channel_bias"), y, t);
        };
        let b = if c.bias { Some(self.weight(name, &format!("{prefix}.bias"), Some(&[shape[0]]))?) } else { None };
        let pad = c.params.padding[0];
        let out = Shape::new(s0.n(), shape[0], s0.h() + 2 * pad - 2, s0.w() + 2 * pad - 2);
        let mut node_inputs = inputs.to_vec();
        node_inputs.push(t);
        let epi = Epilogue { beta: 1.0, ..c.epilogue };
        let attrs = describe(shape, &c.params.stride, &c.params.padding, 1, &c.epilogue, b.is_some(), false, false) + &format!(" {} inputs + channel bias", inputs.len());
        self.conv2d_winograd(name, KIND, &node_inputs, inputs.len(), w, shape, b.map(|b| b.data.as_slice()), None, pad, epi, tile, out, attrs)
    }
}
