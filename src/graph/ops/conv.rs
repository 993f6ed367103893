//! Convolution nodes: torch `Conv2d` / `ConvTranspose2d` with the fused
//! epilogue of `ops::conv` (bias, per-channel scale, activation, residual).

use std::sync::Arc;

use crate::graph::{GraphBuilder, TensorId};
use crate::ops::conv::{self, Activation, Conv2dParams, Conv2dWeights, ConvTranspose2dParams, Epilogue};
use crate::weights::HostTensor;
use crate::graph::ops::node_label;
use crate::{Result, ResultExt};

/// Geometry and epilogue of a convolution node:
/// `out = alpha * act((conv(x) + bias) * scale) + beta * residual`.
/// `bias` says whether the layer has one (torch's default): then
/// `{prefix}.bias` must be in the weights; a layer built with `bias=False`
/// says so with [`Conv::no_bias`], and a bias in the file is then unused
/// (which the model's unused-weight check reports).
#[derive(Clone, Copy, Debug)]
pub struct Conv {
    pub params: Conv2dParams,
    pub epilogue: Epilogue,
    pub residual: Option<TensorId>,
    pub bias: bool,
}

impl Default for Conv {
    fn default() -> Self {
        Conv { params: Conv2dParams::default(), epilogue: Epilogue::default(), residual: None, bias: true }
    }
}

impl Conv {
    /// Stride 1 with "same" zero padding for an odd square kernel `k`.
    pub fn same(k: usize) -> Self {
        Conv { params: Conv2dParams::new(1, k / 2), ..Default::default() }
    }
    /// Explicit square stride and padding.
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv { params: Conv2dParams::new(stride, padding), ..Default::default() }
    }
    /// A layer without bias (torch `bias=False`).
    pub fn no_bias(mut self) -> Self {
        self.bias = false;
        self
    }
    pub fn act(mut self, a: Activation) -> Self {
        self.epilogue.activation = a;
        self
    }
    /// `alpha * act(..) + beta * r`.
    pub fn residual(mut self, r: TensorId, alpha: f32, beta: f32) -> Self {
        self.residual = Some(r);
        self.epilogue.alpha = alpha;
        self.epilogue.beta = beta;
        self
    }
}

impl GraphBuilder<'_> {
    /// `Conv2d` with weights `{prefix}.weight` ([Cout, Cin/groups, kh, kw]) and,
    /// unless `c.bias` is false, `{prefix}.bias` ([Cout]).
    pub fn conv2d(&mut self, name: &str, x: TensorId, prefix: &str, c: Conv) -> Result<TensorId> {
        let w = self.weight(name, &format!("{prefix}.weight"), None)?;
        let cout = weight4(self, name, "conv2d", w)?[0];
        let b = if c.bias { Some(self.weight(name, &format!("{prefix}.bias"), Some(&[cout]))?) } else { None };
        self.conv2d_with(name, x, w, b.map(|b| b.data.as_slice()), None, c)
    }

    /// `Conv2d` from explicit host weights, bias and per-output-channel scale
    /// (used where a model folds another layer into the epilogue, e.g. a
    /// conv followed by ActNorm: bias = actnorm bias, scale = exp(logs)).
    pub fn conv2d_with(
        &mut self,
        name: &str,
        x: TensorId,
        weight: &HostTensor,
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
        c: Conv,
    ) -> Result<TensorId> {
        const KIND: &str = "conv2d";
        let shape = weight4(self, name, KIND, weight)?;
        let xs = self.shape(x)?;
        let w = Conv2dWeights::new(self.ctx(), &weight.data, shape, bias, scale).with_context(|| node_label(name, KIND))?;
        let out = conv::conv2d_out_shape(xs, &w, &c.params).with_context(|| node_label(name, KIND))?;
        let mut inputs = vec![x];
        if let Some(r) = c.residual {
            let rs = self.shape(r)?;
            if rs != out {
                return Err(self.shape_error(name, KIND, format!("residual {rs} does not match the output {out}")));
            }
            inputs.push(r);
        }
        let attrs = describe(shape, &c.params.stride, &c.params.padding, c.params.groups, &c.epilogue, bias.is_some(), scale.is_some(), c.residual.is_some());
        let (w, p, epi) = (Arc::new(w), c.params, c.epilogue);
        self.kernel(
            name,
            KIND,
            attrs,
            &inputs,
            out,
            Box::new(move |ctx, i, o, _| Ok(vec![conv::conv2d(ctx, i[0], &w, &p, &epi, i.get(1).copied(), o[0])?])),
        )
    }

    /// `ConvTranspose2d` with weights `{prefix}.weight` ([Cin, Cout/groups, kh, kw])
    /// and optional `{prefix}.bias`.
    pub fn conv_transpose2d(
        &mut self,
        name: &str,
        x: TensorId,
        prefix: &str,
        p: ConvTranspose2dParams,
        epilogue: Epilogue,
    ) -> Result<TensorId> {
        const KIND: &str = "conv_transpose2d";
        let weight = self.weight(name, &format!("{prefix}.weight"), None)?;
        let shape = weight4(self, name, KIND, weight)?;
        let cout = shape[1] * p.groups;
        let xs = self.shape(x)?;
        if xs.c() != shape[0] {
            return Err(self.shape_error(name, KIND, format!("input {xs} has {} channels, weight {prefix}.weight expects {}", xs.c(), shape[0])));
        }
        let b = Some(self.weight(name, &format!("{prefix}.bias"), Some(&[cout]))?);
        let w = Conv2dWeights::new_transposed(self.ctx(), &weight.data, shape, p.groups, b.map(|b| b.data.as_slice()), None)
            .with_context(|| node_label(name, KIND))?;
        let out = conv::conv_transpose2d_out_shape(xs, &w, &p).with_context(|| node_label(name, KIND))?;
        let attrs = describe(shape, &p.stride, &p.padding, p.groups, &epilogue, b.is_some(), false, false);
        let w = Arc::new(w);
        self.kernel(
            name,
            KIND,
            attrs,
            &[x],
            out,
            Box::new(move |ctx, i, o, _| Ok(vec![conv::conv_transpose2d(ctx, i[0], &w, &p, &epilogue, None, o[0])?])),
        )
    }
}

fn weight4(g: &GraphBuilder, name: &str, kind: &str, w: &HostTensor) -> Result<[usize; 4]> {
    match w.shape.as_slice() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        s => Err(g.shape_error(name, kind, format!("weight has shape {s:?}, expected 4 dimensions"))),
    }
}

#[allow(clippy::too_many_arguments)]
fn describe(w: [usize; 4], stride: &[usize; 2], pad: &[usize; 2], groups: usize, e: &Epilogue, bias: bool, scale: bool, res: bool) -> String {
    let mut s = format!("w={}x{}x{}x{} s={}x{} p={}x{}", w[0], w[1], w[2], w[3], stride[0], stride[1], pad[0], pad[1]);
    if groups != 1 {
        s += &format!(" g={groups}");
    }
    if bias {
        s += " +bias";
    }
    if scale {
        s += " *scale";
    }
    if e.activation != Activation::None {
        s += &format!(" {:?}", e.activation);
    }
    if res {
        s += &format!(" {}*y+{}*res", e.alpha, e.beta);
    } else if e.alpha != 1.0 {
        s += &format!(" {}*y", e.alpha);
    }
    s
}
