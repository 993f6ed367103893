//! Convolution nodes: torch `Conv2d` / `ConvTranspose2d` with the fused
//! epilogue of `ops::conv` (bias, per-channel scale, activation, residual).

use std::sync::Arc;

use crate::graph::autodiff::VjpArgs;
use crate::graph::{GraphBuilder, TensorId};
use crate::ops::grad;
use crate::{Shape, Tensor};
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
        // Winograd convs keep only their transformed weights on the GPU; the
        // direct path packs its weights once, here.
        let tile = self.winograd_tile(xs, shape, &c.params).filter(|_| xs.c() == shape[1]);
        let (direct, out) = match tile {
            Some(_) => (None, Shape::new(xs.n(), shape[0], xs.h() + 2 * c.params.padding[0] - 2, xs.w() + 2 * c.params.padding[1] - 2)),
            None => {
                let w = Conv2dWeights::new_as(self.ctx(), self.storage, &weight.data, shape, bias, scale).with_context(|| node_label(name, KIND))?;
                let out = conv::conv2d_out_shape(xs, &w, &c.params).with_context(|| node_label(name, KIND))?;
                (Some(w), out)
            }
        };
        let mut inputs = vec![x];
        if let Some(r) = c.residual {
            let rs = self.shape(r)?;
            if rs != out {
                return Err(self.shape_error(name, KIND, format!("residual {rs} does not match the output {out}")));
            }
            inputs.push(r);
        }
        let attrs = describe(shape, &c.params.stride, &c.params.padding, c.params.groups, &c.epilogue, bias.is_some(), scale.is_some(), c.residual.is_some());
        let y = if let (Some(tile), None) = (tile, &direct) {
            self.conv2d_winograd(name, KIND, &inputs, 1, weight, shape, bias, scale, c.params.padding[0], c.epilogue, tile, out, attrs)?
        } else {
            let w = match direct {
                Some(w) => w,
                None => Conv2dWeights::new_as(self.ctx(), self.storage, &weight.data, shape, bias, scale).with_context(|| node_label(name, KIND))?,
            };
            let (w, p, epi) = (Arc::new(w), c.params, c.epilogue);
            self.kernel(
                name,
                KIND,
                attrs,
                &inputs,
                out,
                Box::new(move |ctx, i, o, _| Ok(vec![conv::conv2d(ctx, i[0], &w, &p, &epi, i.get(1).copied(), o[0])?])),
            )?
        };
        if self.gradients_enabled() {
            let vjp = ConvVjp { weight: Arc::new(weight.data.clone()), shape, params: c.params, epilogue: c.epilogue, scale: scale.map(<[f32]>::to_vec), x: xs, y };
            self.vjp(move |g, v| vjp.apply(g, v));
        }
        Ok(y)
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

/// What the gradient of a conv node needs: its host weights (the input
/// gradient is the transposed conv with the same weights), geometry,
/// epilogue and output (the activation's derivative is read from it).
/// `conv2d_cat` keeps one per input part (its weight slice and input shape).
pub(crate) struct ConvVjp {
    pub(crate) weight: Arc<Vec<f32>>,
    pub(crate) shape: [usize; 4],
    pub(crate) params: Conv2dParams,
    pub(crate) epilogue: Epilogue,
    pub(crate) scale: Option<Vec<f32>>,
    pub(crate) x: Shape,
    pub(crate) y: TensorId,
}

impl ConvVjp {
    /// y = alpha * act((conv(x) + b) * s) + beta * r:
    /// dr = beta * dy; dpre = alpha * s * act'(.) * dy; dx = conv^T(dpre).
    fn apply(&self, g: &mut GraphBuilder<'_>, v: &VjpArgs) -> Result<Vec<Option<TensorId>>> {
        let dy = v.dy0()?;
        let e = self.epilogue;
        let has_res = v.needs.len() > 1;
        let dpre = self.pre_grad(g, v, dy, has_res)?;
        let mut dx = Vec::with_capacity(v.needs.len());
        if v.needs[0] {
            dx.push(Some(self.input_grad(g, v, dpre)?));
        } else {
            dx.push(None);
        }
        if has_res {
            dx.push(if v.needs[1] { Some(if e.beta == 1.0 { dy } else { g.affine(&v.node("res"), dy, e.beta, 0.0)? }) } else { None });
        }
        Ok(dx)
    }

    /// The gradient of the epilogue's input, alpha * s * act'(.) * dy (dy itself when that is the identity).
    pub(crate) fn pre_grad(&self, g: &mut GraphBuilder<'_>, v: &VjpArgs, dy: TensorId, has_res: bool) -> Result<TensorId> {
        const KIND: &str = "conv2d";
        let e = self.epilogue;
        if has_res && e.activation != Activation::None {
            return Err(g.shape_error(v.name, KIND, "no gradient for an activation followed by a residual (the output does not give the activation's input)".into()));
        }
        Ok(if e.activation == Activation::None && self.scale.is_none() && e.alpha == 1.0 {
            dy
        } else {
            let scale = match &self.scale {
                Some(s) => Some(Arc::new(Tensor::from_slice(g.ctx(), Shape::new(1, s.len(), 1, 1), s)?)),
                None => None,
            };
            let (act, alpha, ys) = (e.activation, e.alpha, g.shape(self.y)?);
            g.kernel(
                &v.node("pre"),
                "act_grad",
                format!("{act:?} alpha={alpha}"),
                &[dy, self.y],
                ys,
                Box::new(move |c, i, o, _| Ok(vec![grad::act_grad(c, i[0], i[1], scale.as_deref(), act, alpha, o[0])?])),
            )?
        })
    }

    /// dx = conv^T(dpre) with this conv's weights.
    pub(crate) fn input_grad(&self, g: &mut GraphBuilder<'_>, v: &VjpArgs, dpre: TensorId) -> Result<TensorId> {
        const KIND: &str = "conv2d";
        let p = self.params;
        if p.dilation != [1, 1] {
            return Err(g.shape_error(v.name, KIND, "no gradient for a dilated convolution".into()));
        }
        let [cout, cin_g, kh, kw] = self.shape;
        let ds = g.shape(dpre)?;
        if p.stride == [1, 1] && p.padding[0] < kh && p.padding[1] < kw {
            // Stride 1: the adjoint is a plain conv with the kernel flipped
            // and its channel roles swapped, padded k - 1 - p, which runs on
            // the (faster) direct conv path: W'[g*cin_g + ci][o][kh-1-y][kw-1-x]
            // = W[g*cout_g + o][ci][y][x].
            let groups = p.groups;
            let cout_g = cout / groups;
            let mut wf = vec![0f32; self.weight.len()];
            for gi in 0..groups {
                for o in 0..cout_g {
                    for ci in 0..cin_g {
                        for y in 0..kh {
                            for x in 0..kw {
                                let src = (((gi * cout_g + o) * cin_g + ci) * kh + y) * kw + x;
                                let dst = (((gi * cin_g + ci) * cout_g + o) * kh + (kh - 1 - y)) * kw + (kw - 1 - x);
                                wf[dst] = self.weight[src];
                            }
                        }
                    }
                }
            }
            let wt = HostTensor::new(vec![groups * cin_g, cout_g, kh, kw], wf)?;
            let params = Conv2dParams { stride: [1, 1], padding: [kh - 1 - p.padding[0], kw - 1 - p.padding[1]], dilation: [1, 1], groups };
            let c = Conv { params, bias: false, ..Default::default() };
            let dx = g.conv2d_with(&v.node("x"), dpre, &wt, None, None, c)?;
            let got = g.shape(dx)?;
            if got != self.x {
                return Err(g.shape_error(v.name, KIND, format!("input gradient {got} differs from the input {}", self.x)));
            }
            return Ok(dx);
        }
        // The transposed conv maps the output grid back onto the input; the
        // rows/columns a strided conv never reached come back as output padding.
        let mut out_pad = [0; 2];
        for (d, (full, (o, k))) in [(self.x.h(), (ds.h(), kh)), (self.x.w(), (ds.w(), kw))].into_iter().enumerate() {
            let reach = (o - 1) * p.stride[d] + k;
            out_pad[d] = (full + 2 * p.padding[d]).checked_sub(reach).filter(|r| *r < p.stride[d].max(1)).ok_or_else(|| {
                g.shape_error(v.name, KIND, format!("cannot map the output {ds} back onto the input {}", self.x))
            })?;
        }
        // torch Conv2d weights [Cout, Cin/g, kh, kw] are exactly the
        // ConvTranspose2d weights [Cin_t = Cout, Cout_t/g = Cin/g, kh, kw]
        // of its adjoint.
        let wt = Conv2dWeights::new_transposed(g.ctx(), &self.weight, self.shape, p.groups, None, None).with_context(|| node_label(v.name, KIND))?;
        let tp = ConvTranspose2dParams { stride: p.stride, padding: p.padding, output_padding: out_pad, dilation: [1, 1], groups: p.groups };
        let out = conv::conv_transpose2d_out_shape(ds, &wt, &tp).with_context(|| node_label(v.name, KIND))?;
        if out != self.x {
            return Err(g.shape_error(v.name, KIND, format!("input gradient {out} differs from the input {}", self.x)));
        }
        let w = Arc::new(wt);
        g.kernel(
            &v.node("x"),
            "conv_transpose2d",
            format!("adjoint of {}", v.name),
            &[dpre],
            out,
            Box::new(move |ctx, i, o, _| Ok(vec![conv::conv_transpose2d(ctx, i[0], &w, &tp, &Epilogue::default(), None, o[0])?])),
        )
    }
}

pub(crate) fn weight4(g: &GraphBuilder, name: &str, kind: &str, w: &HostTensor) -> Result<[usize; 4]> {
    match w.shape.as_slice() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        s => Err(g.shape_error(name, kind, format!("weight has shape {s:?}, expected 4 dimensions"))),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn describe(w: [usize; 4], stride: &[usize; 2], pad: &[usize; 2], groups: usize, e: &Epilogue, bias: bool, scale: bool, res: bool) -> String {
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
