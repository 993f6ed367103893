//! Random numbers and categorical sampling in the graph. Seeds, offsets and
//! temperatures can be runtime parameters so a sampler replays one prepared
//! graph with fresh noise each step. (Parameters are f64: seeds and offsets
//! given through them must be integers below 2^53.)

use crate::graph::ops::{Scalar, UpdateFn};
use crate::graph::{GraphBuilder, OutputSpec, ParamValues, TensorId};
use crate::ops::{rng, softmax};
use crate::{Error, Result, Shape};

/// Integer value of a seed/offset scalar.
fn int_of(s: &Scalar, p: &ParamValues) -> Result<u64> {
    let v = match s {
        Scalar::Const(v) => *v as f64,
        Scalar::Param(n) => *p
            .get(n)
            .ok_or_else(|| Error::Graph(format!("runtime parameter '{n}' is read but was never declared (GraphBuilder::param)")))?,
    };
    if !(v >= 0.0 && v.fract() == 0.0 && v < 9.007_199_254_740_992e15) {
        return Err(Error::InvalidArgument(format!("seed/offset {v} must be a non-negative integer below 2^53")));
    }
    Ok(v as u64)
}

/// A seed or offset: an exact integer, or a runtime parameter.
#[derive(Clone, Debug)]
pub enum Counter {
    Const(u64),
    Param(String),
}

impl Counter {
    fn value(&self, p: &ParamValues) -> Result<u64> {
        match self {
            Counter::Const(v) => Ok(*v),
            Counter::Param(n) => int_of(&Scalar::Param(n.clone()), p),
        }
    }
    fn name(&self) -> Option<String> {
        match self {
            Counter::Param(n) => Some(n.clone()),
            Counter::Const(_) => None,
        }
    }
}

impl From<u64> for Counter {
    fn from(v: u64) -> Self {
        Counter::Const(v)
    }
}

impl std::fmt::Display for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Counter::Const(v) => write!(f, "{v}"),
            Counter::Param(n) => write!(f, "${n}"),
        }
    }
}

impl GraphBuilder<'_> {
    fn rng_node(&mut self, name: &str, shape: Shape, seed: Counter, offset: Counter, normal: bool) -> Result<TensorId> {
        let params: Vec<String> = seed.name().into_iter().chain(offset.name()).collect();
        let (s2, o2) = (seed.clone(), offset.clone());
        let update: UpdateFn = Box::new(move |c, d, _, _, p| rng::set_stream(c, &d[0], s2.value(p)?, o2.value(p)?));
        let dynamic = if params.is_empty() { None } else { Some((params, update)) };
        let attrs = format!("seed={seed} offset={offset}");
        let outs = self.kernel_multi(
            name,
            if normal { "rng_normal" } else { "rng_uniform" },
            attrs,
            &[],
            vec![OutputSpec::new(shape)],
            Box::new(move |c, _, o, p| {
                let (s, off) = (seed.value(p)?, offset.value(p)?);
                Ok(vec![if normal { rng::normal(c, o[0], s, off, 0.0, 1.0)? } else { rng::uniform(c, o[0], s, off)? }])
            }),
            dynamic,
        )?;
        Ok(outs[0])
    }

    /// N(0,1) noise from the Philox stream (seed, offset).
    pub fn normal(&mut self, name: &str, shape: Shape, seed: Counter, offset: Counter) -> Result<TensorId> {
        self.rng_node(name, shape, seed, offset, true)
    }

    /// U(0,1) noise from the Philox stream (seed, offset).
    pub fn uniform(&mut self, name: &str, shape: Shape, seed: Counter, offset: Counter) -> Result<TensorId> {
        self.rng_node(name, shape, seed, offset, false)
    }

    /// softmax(x / T) over each group of C/groups channels.
    pub fn softmax(&mut self, name: &str, x: TensorId, temperature: impl Into<Scalar>, groups: usize) -> Result<TensorId> {
        let s = self.shape(x)?;
        if groups == 0 || s.c() % groups != 0 {
            return Err(self.shape_error(name, "softmax", format!("{} channels do not split into {groups} groups", s.c())));
        }
        let t: Scalar = temperature.into();
        let t1 = t.clone();
        let update: UpdateFn = Box::new(move |c, d, _, _, p| softmax::set_temperature(c, &d[0], t1.value(p)?));
        let dynamic = t.param_name().map(|n| (vec![n], update));
        let outs = self.kernel_multi(
            name,
            "softmax",
            format!("T={t} groups={groups}"),
            &[x],
            vec![OutputSpec::new(s)],
            Box::new(move |c, i, o, p| Ok(vec![softmax::softmax(c, i[0], o[0], t.value(p)?, groups)?])),
            dynamic,
        )?;
        Ok(outs[0])
    }

    /// Per group, the index sampled from softmax(logits / T) with the given
    /// uniforms (T = 0: argmax). Output [N, groups, H, W] of indices as f32.
    pub fn sample_categorical(
        &mut self,
        name: &str,
        logits: TensorId,
        uniforms: TensorId,
        groups: usize,
        temperature: impl Into<Scalar>,
    ) -> Result<TensorId> {
        let (s, su) = (self.shape(logits)?, self.shape(uniforms)?);
        let out = Shape::new(s.n(), groups, s.h(), s.w());
        if groups == 0 || s.c() % groups != 0 || su != out {
            return Err(self.shape_error(name, "sample_categorical", format!("logits {s}, uniforms {su}, groups {groups} do not fit")));
        }
        let t: Scalar = temperature.into();
        let t1 = t.clone();
        let update: UpdateFn = Box::new(move |c, d, _, _, p| softmax::set_temperature(c, &d[0], t1.value(p)?));
        let dynamic = t.param_name().map(|n| (vec![n], update));
        let outs = self.kernel_multi(
            name,
            "sample_categorical",
            format!("T={t} groups={groups}"),
            &[logits, uniforms],
            vec![OutputSpec::new(out)],
            Box::new(move |c, i, o, p| Ok(vec![softmax::sample_categorical(c, i[0], i[1], o[0], groups, t.value(p)?)?])),
            dynamic,
        )?;
        Ok(outs[0])
    }
}
