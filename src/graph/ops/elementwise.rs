//! Elementwise ops and shape views in the graph.

use crate::gpu::{Dispatch, GpuContext};
use crate::graph::ops::Scalar;
use crate::graph::{Alias, GraphBuilder, Op, OutputSpec, ParamValues, TensorId};
use crate::ops::elementwise::{self as ew, ElementwiseUniform};
use crate::ops::grad;
use crate::{Error, Result, Shape, Tensor};

fn same(inputs: &[Shape], op: &str) -> Result<Shape> {
    if inputs.iter().any(|s| *s != inputs[0]) {
        let v: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        return Err(Error::Shape(format!("{op}: input shapes differ: {}", v.join(" vs "))));
    }
    Ok(inputs[0])
}

fn params_of(a: &Scalar, b: &Scalar) -> Vec<String> {
    a.param_name().into_iter().chain(b.param_name()).collect()
}

/// out = alpha * a + beta * b
struct Axpby {
    alpha: Scalar,
    beta: Scalar,
}

impl Op for Axpby {
    fn kind(&self) -> &'static str {
        "axpby"
    }
    fn describe(&self) -> String {
        format!("alpha={} beta={}", self.alpha, self.beta)
    }
    fn outputs(&self, inputs: &[Shape]) -> Result<Vec<OutputSpec>> {
        if inputs.len() != 2 {
            return Err(Error::Graph(format!("axpby takes 2 inputs, got {}", inputs.len())));
        }
        Ok(vec![OutputSpec::new(same(inputs, "axpby")?)])
    }
    fn prepare(&self, ctx: &GpuContext, i: &[&Tensor], o: &[&Tensor], p: &ParamValues) -> Result<Vec<Dispatch>> {
        Ok(vec![ew::axpby(ctx, i[0], i[1], o[0], self.alpha.value(p)?, self.beta.value(p)?)?])
    }
    fn dynamic_params(&self) -> Vec<String> {
        params_of(&self.alpha, &self.beta)
    }
    fn update(&self, ctx: &GpuContext, d: &[Dispatch], _: &[&Tensor], _: &[&Tensor], p: &ParamValues) -> Result<()> {
        let (alpha, beta) = (self.alpha.value(p)?, self.beta.value(p)?);
        d[0].update(ctx, |u: &mut ElementwiseUniform| (u.alpha, u.beta) = (alpha, beta))
    }
}

/// out = alpha * a * b
struct Mul {
    alpha: Scalar,
}

impl Op for Mul {
    fn kind(&self) -> &'static str {
        "mul"
    }
    fn describe(&self) -> String {
        format!("alpha={}", self.alpha)
    }
    fn outputs(&self, inputs: &[Shape]) -> Result<Vec<OutputSpec>> {
        if inputs.len() != 2 {
            return Err(Error::Graph(format!("mul takes 2 inputs, got {}", inputs.len())));
        }
        Ok(vec![OutputSpec::new(same(inputs, "mul")?)])
    }
    fn prepare(&self, ctx: &GpuContext, i: &[&Tensor], o: &[&Tensor], p: &ParamValues) -> Result<Vec<Dispatch>> {
        Ok(vec![ew::mul(ctx, i[0], i[1], o[0], self.alpha.value(p)?)?])
    }
    fn dynamic_params(&self) -> Vec<String> {
        self.alpha.param_name().into_iter().collect()
    }
    fn update(&self, ctx: &GpuContext, d: &[Dispatch], _: &[&Tensor], _: &[&Tensor], p: &ParamValues) -> Result<()> {
        let alpha = self.alpha.value(p)?;
        d[0].update(ctx, |u: &mut ElementwiseUniform| u.alpha = alpha)
    }
}

/// out = alpha * x + beta, or clamp(x, alpha, beta)
struct Unary {
    clamp: bool,
    alpha: Scalar,
    beta: Scalar,
}

impl Op for Unary {
    fn kind(&self) -> &'static str {
        if self.clamp {
            "clamp"
        } else {
            "affine"
        }
    }
    fn describe(&self) -> String {
        format!("{} {}", self.alpha, self.beta)
    }
    fn outputs(&self, inputs: &[Shape]) -> Result<Vec<OutputSpec>> {
        if inputs.len() != 1 {
            return Err(Error::Graph(format!("{} takes 1 input, got {}", self.kind(), inputs.len())));
        }
        Ok(vec![OutputSpec::new(inputs[0])])
    }
    fn prepare(&self, ctx: &GpuContext, i: &[&Tensor], o: &[&Tensor], p: &ParamValues) -> Result<Vec<Dispatch>> {
        let (a, b) = (self.alpha.value(p)?, self.beta.value(p)?);
        Ok(vec![if self.clamp { ew::clamp(ctx, i[0], o[0], a, b)? } else { ew::affine(ctx, i[0], o[0], a, b)? }])
    }
    fn dynamic_params(&self) -> Vec<String> {
        params_of(&self.alpha, &self.beta)
    }
    fn update(&self, ctx: &GpuContext, d: &[Dispatch], _: &[&Tensor], _: &[&Tensor], p: &ParamValues) -> Result<()> {
        let (alpha, beta) = (self.alpha.value(p)?, self.beta.value(p)?);
        d[0].update(ctx, |u: &mut ElementwiseUniform| (u.alpha, u.beta) = (alpha, beta))
    }
}

/// A constant-filled tensor (re-filled on every run, so in-place
/// accumulators such as log-determinants restart from it).
struct Fill {
    shape: Shape,
    value: Scalar,
}

impl Op for Fill {
    fn kind(&self) -> &'static str {
        "fill"
    }
    fn describe(&self) -> String {
        format!("value={}", self.value)
    }
    fn outputs(&self, inputs: &[Shape]) -> Result<Vec<OutputSpec>> {
        if !inputs.is_empty() {
            return Err(Error::Graph("fill takes no inputs".into()));
        }
        Ok(vec![OutputSpec::new(self.shape)])
    }
    fn prepare(&self, ctx: &GpuContext, _: &[&Tensor], o: &[&Tensor], p: &ParamValues) -> Result<Vec<Dispatch>> {
        Ok(vec![ew::fill(ctx, o[0], self.value.value(p)?)?])
    }
    fn dynamic_params(&self) -> Vec<String> {
        self.value.param_name().into_iter().collect()
    }
    fn update(&self, ctx: &GpuContext, d: &[Dispatch], _: &[&Tensor], _: &[&Tensor], p: &ParamValues) -> Result<()> {
        let value = self.value.value(p)?;
        d[0].update(ctx, |u: &mut ElementwiseUniform| u.alpha = value)
    }
}

/// Same buffer, new shape: no kernel.
struct Reshape {
    shape: Shape,
}

impl Op for Reshape {
    fn kind(&self) -> &'static str {
        "reshape"
    }
    fn describe(&self) -> String {
        format!("to {}", self.shape)
    }
    fn outputs(&self, inputs: &[Shape]) -> Result<Vec<OutputSpec>> {
        if inputs.len() != 1 || inputs[0].numel() != self.shape.numel() {
            return Err(Error::Shape(format!("cannot reshape {:?} to {}", inputs, self.shape)));
        }
        Ok(vec![OutputSpec { shape: self.shape, alias: Alias::View(0) }])
    }
    fn prepare(&self, _: &GpuContext, _: &[&Tensor], _: &[&Tensor], _: &ParamValues) -> Result<Vec<Dispatch>> {
        Ok(Vec::new())
    }
}

/// `alpha * g` as a gradient node, or `g` itself when alpha is the constant 1.
fn scaled(g: &mut GraphBuilder<'_>, name: String, t: TensorId, alpha: &Scalar) -> Result<TensorId> {
    if *alpha == Scalar::Const(1.0) {
        return Ok(t);
    }
    g.affine(&name, t, alpha.clone(), 0.0)
}

impl GraphBuilder<'_> {
    /// alpha * a + beta * b
    pub fn axpby(&mut self, name: &str, a: TensorId, b: TensorId, alpha: impl Into<Scalar>, beta: impl Into<Scalar>) -> Result<TensorId> {
        let (alpha, beta) = (alpha.into(), beta.into());
        let y = self.node1(name, Box::new(Axpby { alpha: alpha.clone(), beta: beta.clone() }), &[a, b])?;
        self.vjp(move |g, v| {
            let dy = v.dy0()?;
            let da = if v.needs[0] { Some(scaled(g, v.node("a"), dy, &alpha)?) } else { None };
            let db = if v.needs[1] { Some(scaled(g, v.node("b"), dy, &beta)?) } else { None };
            Ok(vec![da, db])
        });
        Ok(y)
    }
    /// a + b
    pub fn add(&mut self, name: &str, a: TensorId, b: TensorId) -> Result<TensorId> {
        self.axpby(name, a, b, 1.0, 1.0)
    }
    /// alpha * a * b
    pub fn mul(&mut self, name: &str, a: TensorId, b: TensorId, alpha: impl Into<Scalar>) -> Result<TensorId> {
        let alpha = alpha.into();
        let y = self.node1(name, Box::new(Mul { alpha: alpha.clone() }), &[a, b])?;
        self.vjp(move |g, v| {
            let dy = v.dy0()?;
            let da = if v.needs[0] { Some(g.mul(&v.node("a"), dy, b, alpha.clone())?) } else { None };
            let db = if v.needs[1] { Some(g.mul(&v.node("b"), dy, a, alpha.clone())?) } else { None };
            Ok(vec![da, db])
        });
        Ok(y)
    }
    /// alpha * x + beta
    pub fn affine(&mut self, name: &str, x: TensorId, alpha: impl Into<Scalar>, beta: impl Into<Scalar>) -> Result<TensorId> {
        let alpha = alpha.into();
        let y = self.node1(name, Box::new(Unary { clamp: false, alpha: alpha.clone(), beta: beta.into() }), &[x])?;
        self.vjp(move |g, v| Ok(vec![Some(scaled(g, v.node("x"), v.dy0()?, &alpha)?)]));
        Ok(y)
    }
    /// clamp(x, lo, hi); its gradient is torch.clamp's (dy inside [lo, hi], else 0).
    pub fn clamp(&mut self, name: &str, x: TensorId, lo: f32, hi: f32) -> Result<TensorId> {
        if !(lo <= hi) {
            return Err(Error::InvalidArgument(format!("{name}: clamp range [{lo}, {hi}] is empty")));
        }
        let y = self.node1(name, Box::new(Unary { clamp: true, alpha: lo.into(), beta: hi.into() }), &[x])?;
        self.vjp(move |g, v| {
            let dy = v.dy0()?;
            let s = g.shape(x)?;
            let dx = g.kernel(&v.node("x"), "clamp_grad", format!("[{lo}, {hi}]"), &[dy, x], s, Box::new(move |c, i, o, _| Ok(vec![grad::clamp_grad(c, i[0], i[1], lo, hi, o[0])?])))?;
            Ok(vec![Some(dx)])
        });
        Ok(y)
    }
    /// round(clamp(x, 0, 1) * levels) / levels (half to even), with the
    /// straight-through gradient of the official `Quantization` (dx = dy).
    pub fn quantize_ste(&mut self, name: &str, x: TensorId, levels: f32) -> Result<TensorId> {
        if !(levels.is_finite() && levels >= 1.0) {
            return Err(Error::InvalidArgument(format!("{name}: quantisation levels {levels} must be >= 1")));
        }
        let s = self.shape(x)?;
        let y = self.kernel(name, "quantize", format!("levels={levels}"), &[x], s, Box::new(move |c, i, o, _| Ok(vec![ew::quantize(c, i[0], o[0], levels)?])))?;
        self.vjp(|_, v| Ok(vec![Some(v.dy0()?)]));
        Ok(y)
    }
    /// A tensor of `shape` filled with `value` at the start of every run.
    pub fn fill(&mut self, name: &str, shape: Shape, value: impl Into<Scalar>) -> Result<TensorId> {
        self.node1(name, Box::new(Fill { shape, value: value.into() }), &[])
    }
    /// x + bias[n, c] broadcast over H x W; `bias` holds N*C values (e.g. [N,C,1,1]).
    pub fn add_channel_bias(&mut self, name: &str, x: TensorId, bias: TensorId) -> Result<TensorId> {
        let (s, sb) = (self.shape(x)?, self.shape(bias)?);
        if sb.numel() != s.n() * s.c() {
            return Err(self.shape_error(name, "add_channel_bias", format!("bias {sb} does not hold one value per (sample, channel) of {s}")));
        }
        self.kernel(name, "add_channel_bias", String::new(), &[x, bias], s, Box::new(|c, i, o, _| Ok(vec![ew::add_channel_bias(c, i[0], i[1], o[0], 1.0)?])))
    }
    /// Gated activation tanh(x[:, :C]) * sigmoid(x[:, C:]) of a 2C-channel tensor.
    pub fn gate(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let s = self.shape(x)?;
        if s.c() % 2 != 0 {
            return Err(self.shape_error(name, "gate", format!("input {s} must have an even channel count")));
        }
        let out = Shape::new(s.n(), s.c() / 2, s.h(), s.w());
        self.kernel(name, "gate", String::new(), &[x], out, Box::new(|c, i, o, _| Ok(vec![ew::gate(c, i[0], o[0])?])))
    }
    /// Reinterpret with a new shape of the same size (no copy).
    pub fn reshape(&mut self, name: &str, x: TensorId, shape: Shape) -> Result<TensorId> {
        let from = self.shape(x)?;
        let y = self.node1(name, Box::new(Reshape { shape }), &[x])?;
        self.vjp(move |g, v| Ok(vec![Some(g.reshape(&v.node("x"), v.dy0()?, from)?)]));
        Ok(y)
    }
}
