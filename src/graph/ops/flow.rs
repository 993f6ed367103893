//! Normalizing-flow layers in the graph: ActNorm, invertible 1x1 conv,
//! couplings, split-off Gaussians, and per-sample log-determinant updates.
//!
//! A log-determinant is a `[N, 1, 1, 1]` tensor threaded through the layers;
//! each layer that changes it returns a new id that aliases the old storage
//! (`Alias::InPlace`), so the whole flow accumulates into one buffer.

use std::sync::Arc;

use crate::graph::ops::{Scalar, UpdateFn};
use crate::graph::{Alias, GraphBuilder, OutputSpec, TensorId};
use crate::ops::actnorm::ActNorm;
use crate::ops::coupling::{self, GaussianScale};
use crate::ops::invconv::InvConv;
use crate::ops::grad;
use crate::ops::reduce;
use crate::graph::autodiff::VjpArgs;
use crate::{Error, Result, ResultExt, Shape};

/// Direction of a flow layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Forward,
    Reverse,
}

fn outputs_with_logdet(y: Shape, logdet: Option<TensorId>, logdet_input: usize) -> Vec<OutputSpec> {
    let mut o = vec![OutputSpec::new(y)];
    if logdet.is_some() {
        o.push(OutputSpec { shape: Shape::new(y.n(), 1, 1, 1), alias: Alias::InPlace(logdet_input) });
    }
    o
}

/// Gradients of a flow layer's inputs [x, logdet?]: dx, and none for the
/// log-determinant (never differentiated).
fn vjp_flow_inputs(v: &VjpArgs, dx: TensorId) -> Vec<Option<TensorId>> {
    let mut g = vec![Some(dx)];
    g.resize(v.needs.len(), None);
    g
}

fn split_outs(outs: Vec<TensorId>) -> (TensorId, Option<TensorId>) {
    (outs[0], outs.get(1).copied())
}

impl GraphBuilder<'_> {
    fn check_logdet(&self, name: &str, x: Shape, logdet: Option<TensorId>) -> Result<()> {
        if let Some(l) = logdet {
            let s = self.shape(l)?;
            if s != Shape::new(x.n(), 1, 1, 1) {
                return Err(self.shape_error(name, "logdet", format!("logdet {s} must be [{}, 1, 1, 1]", x.n())));
            }
        }
        Ok(())
    }

    /// A fresh per-sample log-determinant `[n,1,1,1]` set to `value` each run.
    pub fn logdet(&mut self, name: &str, n: usize, value: f32) -> Result<TensorId> {
        self.fill(name, Shape::new(n, 1, 1, 1), value)
    }

    /// logdet += value (a constant known at build time), in place.
    pub fn logdet_add(&mut self, name: &str, logdet: TensorId, value: f64) -> Result<TensorId> {
        let s = self.shape(logdet)?;
        let v = value as f32;
        let outs = self.kernel_multi(
            name,
            "logdet_add",
            format!("{value}"),
            &[logdet],
            vec![OutputSpec { shape: s, alias: Alias::InPlace(0) }],
            Box::new(move |c, i, _, _| Ok(vec![reduce::add_scalar_inplace(c, i[0], v)?])),
            None,
        )?;
        Ok(outs[0])
    }

    /// logdet += alpha * sum over (c, h, w) of x, in place.
    pub fn logdet_add_sum(&mut self, name: &str, logdet: TensorId, x: TensorId, alpha: f32) -> Result<TensorId> {
        let (sl, sx) = (self.shape(logdet)?, self.shape(x)?);
        self.check_logdet(name, sx, Some(logdet))?;
        let outs = self.kernel_multi(
            name,
            "logdet_add_sum",
            format!("alpha={alpha}"),
            &[logdet, x],
            vec![OutputSpec { shape: sl, alias: Alias::InPlace(0) }, OutputSpec::scratch(reduce::partials_shape(sx.n(), sx.numel() / sx.n()))],
            Box::new(move |c, i, o, _| reduce::accumulate_sum_per_sample(c, i[1], i[0], o[1], alpha)),
            None,
        )?;
        Ok(outs[0])
    }

    /// ActNorm with `{prefix}.bias` / `{prefix}.logs` (C values each).
    pub fn actnorm(&mut self, name: &str, x: TensorId, prefix: &str, logdet: Option<TensorId>, dir: Dir) -> Result<(TensorId, Option<TensorId>)> {
        let s = self.shape(x)?;
        self.check_logdet(name, s, logdet)?;
        let b = self.weight(name, &format!("{prefix}.bias"), None)?;
        let l = self.weight(name, &format!("{prefix}.logs"), None)?;
        if b.numel() != s.c() || l.numel() != s.c() {
            return Err(Error::Weights(format!(
                "node '{name}': {prefix}.bias/logs have {}/{} values, input has {} channels",
                b.numel(),
                l.numel(),
                s.c()
            )));
        }
        let an = Arc::new(ActNorm::new(self.ctx(), &b.data, &l.data)?);
        let logs = l.data.clone();
        let mut inputs = vec![x];
        inputs.extend(logdet);
        let outs = self.kernel_multi(
            name,
            "actnorm",
            format!("{dir:?}"),
            &inputs,
            outputs_with_logdet(s, logdet, 1),
            Box::new(move |c, i, o, _| match dir {
                Dir::Forward => an.forward(c, i[0], o[0], i.get(1).copied()),
                Dir::Reverse => an.reverse(c, i[0], o[0], i.get(1).copied()),
            }),
            None,
        )?;
        // Forward y = (x + b) e^logs, reverse y = x e^-logs - b: dx is dy
        // through the same layer without its bias.
        self.vjp(move |g, v| {
            let dy = v.dy0()?;
            let an = Arc::new(ActNorm::new(g.ctx(), &vec![0.0; logs.len()], &logs)?);
            let s = g.shape(dy)?;
            let dx = g.kernel(&v.node("x"), "actnorm", format!("{dir:?} without bias"), &[dy], s, Box::new(move |c, i, o, _| match dir {
                Dir::Forward => an.forward(c, i[0], o[0], None),
                Dir::Reverse => an.reverse(c, i[0], o[0], None),
            }))?;
            Ok(vjp_flow_inputs(v, dx))
        });
        Ok(split_outs(outs))
    }

    /// Invertible 1x1 conv with plain weight `{prefix}.weight` (C*C values, [out][in]).
    pub fn invconv(&mut self, name: &str, x: TensorId, prefix: &str, logdet: Option<TensorId>, dir: Dir) -> Result<(TensorId, Option<TensorId>)> {
        let s = self.shape(x)?;
        self.check_logdet(name, s, logdet)?;
        let w = self.weight(name, &format!("{prefix}.weight"), None)?;
        if w.numel() != s.c() * s.c() {
            return Err(Error::Weights(format!(
                "node '{name}': {prefix}.weight has shape {:?}, expected {}x{}",
                w.shape,
                s.c(),
                s.c()
            )));
        }
        let ic = InvConv::from_weight(self.ctx(), &w.data, s.c()).with_context(|| format!("node '{name}'"))?;
        let ic = Arc::new(ic);
        let c = s.c();
        let wt: Vec<f32> = (0..c * c).map(|k| w.data[(k % c) * c + k / c]).collect();
        let mut inputs = vec![x];
        inputs.extend(logdet);
        let outs = self.kernel_multi(
            name,
            "invconv",
            format!("{dir:?} C={}", s.c()),
            &inputs,
            outputs_with_logdet(s, logdet, 1),
            Box::new(move |c, i, o, _| match dir {
                Dir::Forward => ic.forward(c, i[0], o[0], i.get(1).copied()),
                Dir::Reverse => ic.reverse(c, i[0], o[0], i.get(1).copied()),
            }),
            None,
        )?;
        // Forward y = W x: dx = W^T dy; reverse y = W^-1 x: dx = W^-T dy,
        // the reverse of the layer with weight W^T.
        self.vjp(move |g, v| {
            let dy = v.dy0()?;
            let ict = Arc::new(InvConv::from_weight(g.ctx(), &wt, c).with_context(|| format!("node '{}'", v.name))?);
            let s = g.shape(dy)?;
            let dx = g.kernel(&v.node("x"), "invconv", format!("{dir:?} W^T"), &[dy], s, Box::new(move |c, i, o, _| match dir {
                Dir::Forward => ict.forward(c, i[0], o[0], None),
                Dir::Reverse => ict.reverse(c, i[0], o[0], None),
            }))?;
            Ok(vjp_flow_inputs(v, dx))
        });
        Ok(split_outs(outs))
    }

    /// HCFlow affine coupling: channels [split..] of z transformed by
    /// shift/scale = cross(h); `h` has 2*(C - split) channels.
    pub fn affine_coupling(
        &mut self,
        name: &str,
        z: TensorId,
        h: TensorId,
        split: usize,
        logdet: Option<TensorId>,
        dir: Dir,
    ) -> Result<(TensorId, Option<TensorId>)> {
        let (s, sh) = (self.shape(z)?, self.shape(h)?);
        self.check_logdet(name, s, logdet)?;
        if split == 0 || split >= s.c() || sh != Shape::new(s.n(), 2 * (s.c() - split), s.h(), s.w()) {
            return Err(self.shape_error(name, "affine_coupling", format!("z {s} split at {split} does not fit h {sh}")));
        }
        let mut inputs = vec![z, h];
        inputs.extend(logdet);
        let outs = self.kernel_multi(
            name,
            "affine_coupling",
            format!("{dir:?} split={split}"),
            &inputs,
            [outputs_with_logdet(s, logdet, 2), vec![OutputSpec::scratch(reduce::partials_shape(s.n(), s.numel() / s.n()))]].concat(),
            Box::new(move |c, i, o, _| {
                let partials = o[o.len() - 1];
                match dir {
                    Dir::Forward => coupling::affine_forward(c, i[0], i[1], o[0], i.get(2).copied(), partials, split),
                    Dir::Reverse => coupling::affine_reverse(c, i[0], i[1], o[0], i.get(2).copied(), partials, split),
                }
            }),
            None,
        )?;
        self.vjp(move |g, v| {
            let dy = v.dy0()?;
            let outs = g.kernel_multi(
                &v.node("z_h"),
                "affine_coupling_grad",
                format!("{dir:?} split={split}"),
                &[dy, z, h],
                vec![OutputSpec::new(s), OutputSpec::new(sh)],
                Box::new(move |c, i, o, _| Ok(vec![grad::affine_coupling_grad(c, i[0], i[1], i[2], o[0], o[1], split, dir == Dir::Reverse)?])),
                None,
            )?;
            let mut dx = vec![Some(outs[0]), Some(outs[1])];
            dx.resize(v.needs.len(), None);
            Ok(dx)
        });
        Ok(split_outs(outs))
    }

    /// Additive coupling: the first `shift.C` channels of z get +shift (forward) or -shift (reverse).
    pub fn additive_coupling(&mut self, name: &str, z: TensorId, shift: TensorId, dir: Dir) -> Result<TensorId> {
        let (s, ss) = (self.shape(z)?, self.shape(shift)?);
        if ss.c() == 0 || ss.c() >= s.c() || (ss.n(), ss.h(), ss.w()) != (s.n(), s.h(), s.w()) {
            return Err(self.shape_error(name, "additive_coupling", format!("shift {ss} does not fit z {s}")));
        }
        let y = self.kernel(
            name,
            "additive_coupling",
            format!("{dir:?} k={}", ss.c()),
            &[z, shift],
            s,
            Box::new(move |c, i, o, _| {
                Ok(vec![match dir {
                    Dir::Forward => coupling::additive_forward(c, i[0], i[1], o[0])?,
                    Dir::Reverse => coupling::additive_reverse(c, i[0], i[1], o[0])?,
                }])
            }),
        )?;
        // y[:k] = z[:k] +/- shift: dz = dy, dshift = +/- dy[:k].
        let k = ss.c();
        self.vjp(move |g, v| {
            let dy = v.dy0()?;
            let dshift = if v.needs[1] {
                let t = g.slice_channels(&v.node("shift"), dy, 0, 1, k)?;
                Some(if dir == Dir::Forward { t } else { g.affine(&v.node("shift_neg"), t, -1.0, 0.0)? })
            } else {
                None
            };
            Ok(vec![Some(dy), dshift])
        });
        Ok(y)
    }

    /// Split-off latent: mean + scale(h) * eps * heat, with mean/scale = cross(h).
    pub fn gaussian_sample(&mut self, name: &str, h: TensorId, eps: TensorId, heat: impl Into<Scalar>, scale: GaussianScale) -> Result<TensorId> {
        let (sh, se) = (self.shape(h)?, self.shape(eps)?);
        if sh != Shape::new(se.n(), 2 * se.c(), se.h(), se.w()) {
            return Err(self.shape_error(name, "gaussian_sample", format!("h {sh} must have twice the channels of eps {se}")));
        }
        let heat: Scalar = heat.into();
        let h1 = heat.clone();
        let update: UpdateFn = Box::new(move |c, d, _, o, p| coupling::set_heat(c, &d[0], o[0].shape(), h1.value(p)?));
        let dynamic = heat.param_name().map(|n| (vec![n], update));
        let outs = self.kernel_multi(
            name,
            "gaussian_sample",
            format!("heat={heat} {scale:?}"),
            &[h, eps],
            vec![OutputSpec::new(se)],
            Box::new({
                let heat = heat.clone();
                move |c, i, o, p| Ok(vec![coupling::gaussian_sample(c, i[0], i[1], heat.value(p)?, o[0], scale)?])
            }),
            dynamic,
        )?;
        // a = mean + e^logs * eps * heat: gradient wrt h (mean and scale);
        // the latents eps are data, never differentiated.
        self.vjp(move |g, v| {
            if v.needs[1] {
                return Err(Error::Graph(format!("node '{}': no gradient with respect to the latents", v.name)));
            }
            let da = v.dy0()?;
            let (h2, h3) = (heat.clone(), heat.clone());
            let update: UpdateFn = Box::new(move |c, d, _, o, p| grad::set_grad_heat(c, &d[0], o[0].shape(), h2.value(p)?));
            let dynamic = heat.param_name().map(|n| (vec![n], update));
            let outs = g.kernel_multi(
                &v.node("h"),
                "gaussian_sample_grad",
                format!("heat={heat} {scale:?}"),
                &[da, eps, h],
                vec![OutputSpec::new(sh)],
                Box::new(move |c, i, o, p| Ok(vec![grad::gaussian_sample_grad(c, i[0], i[1], i[2], h3.value(p)?, scale, o[0])?])),
                dynamic,
            )?;
            Ok(vec![Some(outs[0]), None])
        });
        Ok(outs[0])
    }

    /// (x - mean) * exp(-logs): the latent a forward pass splits off.
    pub fn gaussian_normalize(&mut self, name: &str, x: TensorId, h: TensorId, scale: GaussianScale) -> Result<TensorId> {
        let (sx, sh) = (self.shape(x)?, self.shape(h)?);
        if sh != Shape::new(sx.n(), 2 * sx.c(), sx.h(), sx.w()) {
            return Err(self.shape_error(name, "gaussian_normalize", format!("h {sh} must have twice the channels of x {sx}")));
        }
        self.kernel(
            name,
            "gaussian_normalize",
            format!("{scale:?}"),
            &[x, h],
            sx,
            Box::new(move |c, i, o, _| Ok(vec![coupling::gaussian_normalize(c, i[0], i[1], o[0], scale)?])),
        )
    }

    /// logdet += log N(x; mean, scale) summed per sample, in place.
    pub fn gaussian_logp(&mut self, name: &str, x: TensorId, h: TensorId, logdet: TensorId, scale: GaussianScale) -> Result<TensorId> {
        let (sx, sh, sl) = (self.shape(x)?, self.shape(h)?, self.shape(logdet)?);
        self.check_logdet(name, sx, Some(logdet))?;
        if sh != Shape::new(sx.n(), 2 * sx.c(), sx.h(), sx.w()) {
            return Err(self.shape_error(name, "gaussian_logp", format!("h {sh} must have twice the channels of x {sx}")));
        }
        let outs = self.kernel_multi(
            name,
            "gaussian_logp",
            format!("{scale:?}"),
            &[x, h, logdet],
            vec![OutputSpec { shape: sl, alias: Alias::InPlace(2) }, OutputSpec::scratch(reduce::partials_shape(sx.n(), sx.numel() / sx.n()))],
            Box::new(move |c, i, o, _| coupling::gaussian_logp(c, i[0], i[1], i[2], o[1], scale)),
            None,
        )?;
        Ok(outs[0])
    }
}
