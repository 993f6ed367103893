//! GroupNorm, Linear and self-attention in the graph (SR3's U-Net blocks).

use std::sync::Arc;

use crate::graph::{GraphBuilder, OutputSpec, TensorId};
use crate::ops::attention::Attention;
use crate::ops::matmul::Linear;
use crate::ops::norm::GroupNorm;
use crate::ops::norm_cat::GroupNormCat;
use crate::graph::ops::node_label;
use crate::{Result, ResultExt, Shape};

impl GraphBuilder<'_> {
    /// GroupNorm with weights `{prefix}.weight` / `{prefix}.bias` ([C]), optional fused Swish.
    pub fn group_norm(&mut self, name: &str, x: TensorId, prefix: &str, groups: usize, eps: f32, swish: bool) -> Result<TensorId> {
        let s = self.shape(x)?;
        let c = s.c();
        let gamma = self.weight(name, &format!("{prefix}.weight"), Some(&[c]))?;
        let beta = self.weight(name, &format!("{prefix}.bias"), Some(&[c]))?;
        let gn = GroupNorm::new(self.ctx(), &gamma.data, &beta.data, groups, eps)
            .with_context(|| node_label(name, "group_norm"))?;
        let scratch = OutputSpec::scratch(gn.scratch_shape(s));
        let gn = Arc::new(gn);
        let outs = self.kernel_multi(
            name,
            "group_norm",
            format!("groups={groups} eps={eps} swish={swish}"),
            &[x],
            vec![OutputSpec::new(s), scratch],
            Box::new(move |c, i, o, _| gn.prepare(c, i[0], o[0], o[1], swish)),
            None,
        )?;
        Ok(outs[0])
    }

    /// GroupNorm over cat(`xs`, channels) (weights over the concatenated
    /// channels), one normalised output per input, so no concatenation is
    /// built: the parts then feed `conv2d_cat`. One input is `group_norm`.
    pub fn group_norm_cat(&mut self, name: &str, xs: &[TensorId], prefix: &str, groups: usize, eps: f32, swish: bool) -> Result<Vec<TensorId>> {
        const KIND: &str = "group_norm_cat";
        match xs {
            [] => return Err(self.shape_error(name, KIND, "no inputs".into())),
            [x] => return Ok(vec![self.group_norm(name, *x, prefix, groups, eps, swish)?]),
            _ => {}
        }
        let shapes = xs.iter().map(|t| self.shape(*t)).collect::<Result<Vec<Shape>>>()?;
        let s0 = shapes[0];
        if let Some((i, s)) = shapes.iter().enumerate().find(|(_, s)| (s.n(), s.h(), s.w()) != (s0.n(), s0.h(), s0.w())) {
            return Err(self.shape_error(name, KIND, format!("input {i} {s} differs from input 0 {s0} in batch or size")));
        }
        let chans: Vec<usize> = shapes.iter().map(|s| s.c()).collect();
        let c: usize = chans.iter().sum();
        let gamma = self.weight(name, &format!("{prefix}.weight"), Some(&[c]))?;
        let beta = self.weight(name, &format!("{prefix}.bias"), Some(&[c]))?;
        let gn = GroupNormCat::new(self.ctx(), &gamma.data, &beta.data, groups, eps, &chans).with_context(|| node_label(name, KIND))?;
        let mut outs: Vec<OutputSpec> = shapes.iter().map(|s| OutputSpec::new(*s)).collect();
        outs.push(OutputSpec::scratch(gn.scratch_shape(s0.n(), s0.h(), s0.w())));
        let (gn, n) = (Arc::new(gn), xs.len());
        self.kernel_multi(
            name,
            KIND,
            format!("groups={groups} eps={eps} swish={swish} {n} inputs"),
            xs,
            outs,
            Box::new(move |c, i, o, _| gn.prepare(c, i, &o[..n], o[n], swish)),
            None,
        )
    }

    /// Linear layer from `{prefix}.weight` [out, in] and optional `{prefix}.bias` [out].
    /// `x` is a batch of row vectors ([N,in,1,1] or [N,1,1,in]); output [N,out,1,1].
    pub fn linear(&mut self, name: &str, x: TensorId, prefix: &str) -> Result<TensorId> {
        let s = self.shape(x)?;
        let w = self.weight(name, &format!("{prefix}.weight"), None)?;
        if w.shape.len() != 2 {
            return Err(self.shape_error(name, "linear", format!("weight {prefix}.weight has shape {:?}, expected [out, in]", w.shape)));
        }
        let (out_f, in_f) = (w.shape[0], w.shape[1]);
        if s.c() * s.hw() != in_f {
            return Err(self.shape_error(name, "linear", format!("input {s} does not hold {in_f}-vectors")));
        }
        let b = Some(self.weight(name, &format!("{prefix}.bias"), Some(&[out_f]))?);
        let lin = Arc::new(Linear::new_as(self.ctx(), self.storage, &w.data, b.map(|b| b.data.as_slice()), out_f, in_f)?);
        self.kernel(
            name,
            "linear",
            format!("{in_f}->{out_f}"),
            &[x],
            Shape::new(s.n(), out_f, 1, 1),
            Box::new(move |c, i, o, _| Ok(vec![lin.prepare(c, i[0], o[0])?])),
        )
    }

    /// softmax(q^T k / sqrt(C)) v over all positions, SR3's qkv layout: [N,3C,H,W] -> [N,C,H,W].
    pub fn attention(&mut self, name: &str, qkv: TensorId, n_head: usize) -> Result<TensorId> {
        let s = self.shape(qkv)?;
        if s.c() % 3 != 0 {
            return Err(self.shape_error(name, "attention", format!("qkv {s} does not have 3*C channels")));
        }
        let out = Shape::new(s.n(), s.c() / 3, s.h(), s.w());
        let att = Arc::new(Attention::new(self.ctx(), out, n_head).with_context(|| node_label(name, "attention"))?);
        let outs = self.kernel_multi(
            name,
            "attention",
            format!("heads={n_head}"),
            &[qkv],
            vec![OutputSpec::new(out), OutputSpec::scratch(att.scores_shape())],
            Box::new(move |c, i, o, _| att.prepare(c, i[0], o[0], o[1])),
            None,
        )?;
        Ok(outs[0])
    }
}
