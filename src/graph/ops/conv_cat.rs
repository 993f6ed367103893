//! A convolution over the channel concatenation of several tensors, with no
//! concatenation materialised: one node, one conv dispatch per input part
//! (the weights split along input channels), each part's sums starting from
//! the previous part's raw sums (`ops::conv::conv2d_pre`), the epilogue on
//! the last. The sums are the single conv's, bit for bit. The partial sums
//! accumulate in place in the output, so the node needs no memory beyond
//! its output (an output-sized scratch would cost more than the
//! concatenation itself where Cout > Cin, e.g. SR3's 6 -> 64 input conv).
//! A 3x3 conv the graph runs as Winograd is the Winograd node instead, whose
//! input transforms take the parts.

use std::sync::Arc;

use crate::graph::autodiff::VjpArgs;
use crate::graph::ops::conv::{describe, weight4, Conv, ConvVjp};
use crate::graph::ops::node_label;
use crate::graph::{GraphBuilder, TensorId};
use crate::ops::conv::{self, Conv2dWeights, Epilogue};
use crate::weights::HostTensor;
use crate::{Result, ResultExt, Shape};

const KIND: &str = "conv2d_cat";

impl GraphBuilder<'_> {
    /// `Conv2d` over cat(`inputs`, channels) with weights `{prefix}.weight`
    /// ([Cout, sum of the inputs' channels, kh, kw]) and, unless `c.bias` is
    /// false, `{prefix}.bias`.
    pub fn conv2d_cat(&mut self, name: &str, inputs: &[TensorId], prefix: &str, c: Conv) -> Result<TensorId> {
        let w = self.weight(name, &format!("{prefix}.weight"), None)?;
        let cout = weight4(self, name, KIND, w)?[0];
        let b = if c.bias { Some(self.weight(name, &format!("{prefix}.bias"), Some(&[cout]))?) } else { None };
        self.conv2d_cat_with(name, inputs, w, b.map(|b| b.data.as_slice()), None, c)
    }

    /// [`GraphBuilder::conv2d_cat`] from explicit host weights, bias and
    /// per-output-channel scale (as [`GraphBuilder::conv2d_with`]). The inputs
    /// share batch and size; groups must be 1 for more than one input. One
    /// input is a plain `conv2d_with`.
    pub fn conv2d_cat_with(
        &mut self,
        name: &str,
        inputs: &[TensorId],
        weight: &HostTensor,
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
        c: Conv,
    ) -> Result<TensorId> {
        match inputs {
            [] => return Err(self.shape_error(name, KIND, "no inputs".into())),
            [x] => return self.conv2d_with(name, *x, weight, bias, scale, c),
            _ => {}
        }
        let n = inputs.len();
        let shape = weight4(self, name, KIND, weight)?;
        if c.params.groups != 1 {
            return Err(self.shape_error(name, KIND, format!("groups = {} over {n} inputs: only an ungrouped conv splits by input", c.params.groups)));
        }
        let shapes = inputs.iter().map(|t| self.shape(*t)).collect::<Result<Vec<Shape>>>()?;
        let s0 = shapes[0];
        if let Some((i, s)) = shapes.iter().enumerate().find(|(_, s)| (s.n(), s.h(), s.w()) != (s0.n(), s0.h(), s0.w())) {
            return Err(self.shape_error(name, KIND, format!("input {i} {s} differs from input 0 {s0} in batch or size")));
        }
        let channels: Vec<usize> = shapes.iter().map(|s| s.c()).collect();
        let total: usize = channels.iter().sum();
        if total != shape[1] {
            return Err(self.shape_error(name, KIND, format!("inputs of {channels:?} channels ({total} in all); the weight expects {}", shape[1])));
        }
        // A 3x3 conv the graph runs as Winograd takes the parts in its input
        // transforms (`conv2d_winograd`); the others chain conv2d_pre.
        let tile = self.winograd_tile(Shape::new(s0.n(), total, s0.h(), s0.w()), shape, &c.params);
        let parts = match tile {
            Some(_) => None,
            None => Some(Conv2dWeights::split_input_as(self.ctx(), self.storage, &weight.data, shape, &channels, bias, scale).with_context(|| node_label(name, KIND))?),
        };
        let out = match &parts {
            Some(parts) => conv::conv2d_out_shape(s0, &parts[0], &c.params).with_context(|| node_label(name, KIND))?,
            None => Shape::new(s0.n(), shape[0], s0.h() + 2 * c.params.padding[0] - 2, s0.w() + 2 * c.params.padding[1] - 2),
        };
        let mut node_inputs = inputs.to_vec();
        if let Some(r) = c.residual {
            let rs = self.shape(r)?;
            if rs != out {
                return Err(self.shape_error(name, KIND, format!("residual {rs} does not match the output {out}")));
            }
            node_inputs.push(r);
        }
        let attrs = describe(shape, &c.params.stride, &c.params.padding, 1, &c.epilogue, bias.is_some(), scale.is_some(), c.residual.is_some()) + &format!(" {n} inputs");
        let y = match (tile, parts) {
            (Some(tile), _) => self.conv2d_winograd(name, KIND, &node_inputs, n, weight, shape, bias, scale, c.params.padding[0], c.epilogue, tile, out, attrs)?,
            (None, Some(parts)) => self.conv_cat_direct(name, &node_inputs, parts, c, out, attrs)?,
            (None, None) => return Err(self.shape_error(name, KIND, "neither Winograd nor direct weights".into())),
        };
        if self.gradients_enabled() {
            self.cat_vjp(weight, shape, &shapes, scale, c, y)?;
        }
        Ok(y)
    }

    /// The direct node: one conv2d_pre per part (`inputs`: the parts, then the residual if any).
    fn conv_cat_direct(&mut self, name: &str, inputs: &[TensorId], parts: Vec<Conv2dWeights>, c: Conv, out: Shape, attrs: String) -> Result<TensorId> {
        let n = parts.len();
        let (parts, p, epi) = (Arc::new(parts), c.params, c.epilogue);
        self.kernel(
            name,
            KIND,
            attrs,
            inputs,
            out,
            Box::new(move |ctx, i, o, _| {
                // Part k > 0 starts from the raw sums part k - 1 left in the output.
                (0..n)
                    .map(|k| {
                        let last = k + 1 == n;
                        let e = if last { epi } else { Epilogue::default() };
                        let res = if last { i.get(n).copied() } else { None };
                        conv::conv2d_pre(ctx, i[k], &parts[k], &p, &e, res, (k > 0).then_some(o[0]), o[0])
                    })
                    .collect()
            }),
        )
    }

    /// d input k = the conv VJP with weight slice k, all parts sharing the
    /// epilogue's gradient; d residual = beta * dy.
    fn cat_vjp(&mut self, weight: &HostTensor, shape: [usize; 4], shapes: &[Shape], scale: Option<&[f32]>, c: Conv, y: TensorId) -> Result<()> {
        let mut parts = Vec::with_capacity(shapes.len());
        let mut start = 0;
        for s in shapes {
            let (w, ws) = conv::input_slice(&weight.data, shape, start, s.c())?;
            let scale = scale.map(<[f32]>::to_vec);
            parts.push(ConvVjp { weight: Arc::new(w), shape: ws, params: c.params, epilogue: c.epilogue, scale, x: *s, y });
            start += s.c();
        }
        let (n, has_res, beta) = (shapes.len(), c.residual.is_some(), c.epilogue.beta);
        self.vjp(move |g, v| {
            let dy = v.dy0()?;
            let dpre = parts[0].pre_grad(g, v, dy, has_res)?;
            let mut dx = Vec::with_capacity(v.needs.len());
            for (k, part) in parts.iter().enumerate() {
                dx.push(if v.needs[k] {
                    let pname = format!("{}.in{k}", v.name);
                    Some(part.input_grad(g, &VjpArgs { name: &pname, dy: v.dy, needs: v.needs }, dpre)?)
                } else {
                    None
                });
            }
            if has_res {
                dx.push(if v.needs[n] { Some(if beta == 1.0 { dy } else { g.affine(&v.node("res"), dy, beta, 0.0)? }) } else { None });
            }
            Ok(dx)
        });
        Ok(())
    }
}
