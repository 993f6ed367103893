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
use crate::ops::reduce;
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
        Ok(split_outs(outs))
    }

    /// Additive coupling: the first `shift.C` channels of z get +shift (forward) or -shift (reverse).
    pub fn additive_coupling(&mut self, name: &str, z: TensorId, shift: TensorId, dir: Dir) -> Result<TensorId> {
        let (s, ss) = (self.shape(z)?, self.shape(shift)?);
        if ss.c() == 0 || ss.c() >= s.c() || (ss.n(), ss.h(), ss.w()) != (s.n(), s.h(), s.w()) {
            return Err(self.shape_error(name, "additive_coupling", format!("shift {ss} does not fit z {s}")));
        }
        self.kernel(
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
        )
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
            Box::new(move |c, i, o, p| Ok(vec![coupling::gaussian_sample(c, i[0], i[1], heat.value(p)?, o[0], scale)?])),
            dynamic,
        )?;
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
