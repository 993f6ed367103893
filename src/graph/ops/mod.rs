//! Graph-level ops: adapters from the kernel families in `crate::ops` to the
//! graph's `Op` trait, plus the `GraphBuilder` methods model code calls.

pub mod conv;
pub mod conv_cat;
pub mod conv_channel_bias;
pub mod dense;
pub mod elementwise;
pub mod flow;
pub mod gated_stack;
pub mod reshape;
pub mod sampling;
pub mod winograd;

use crate::graph::op::ParamValues;

/// A scalar attribute that is either fixed at build time or read from a
/// runtime parameter (rewritten in the uniform block between replays).
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Const(f32),
    Param(String),
}

impl Scalar {
    pub fn param(name: &str) -> Self {
        Scalar::Param(name.to_string())
    }
    /// The value now: a constant, or the runtime parameter's current value.
    /// A parameter the graph never declared is an error (never a NaN).
    pub fn value(&self, params: &ParamValues) -> Result<f32> {
        match self {
            Scalar::Const(v) => Ok(*v),
            Scalar::Param(n) => params
                .get(n)
                .map(|v| *v as f32)
                .ok_or_else(|| Error::Graph(format!("runtime parameter '{n}' is read but was never declared (GraphBuilder::param)"))),
        }
    }
    pub(crate) fn param_name(&self) -> Option<String> {
        match self {
            Scalar::Param(n) => Some(n.clone()),
            Scalar::Const(_) => None,
        }
    }
}

impl From<f32> for Scalar {
    fn from(v: f32) -> Self {
        Scalar::Const(v)
    }
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Const(v) => write!(f, "{v}"),
            Scalar::Param(n) => write!(f, "${n}"),
        }
    }
}

use crate::gpu::{Dispatch, GpuContext};
use crate::graph::{GraphBuilder, Op, OutputSpec, TensorId};
use crate::{Error, Result, Shape, Tensor};

pub(crate) type PrepareFn =
    Box<dyn Fn(&GpuContext, &[&Tensor], &[&Tensor], &ParamValues) -> Result<Vec<Dispatch>> + Send + Sync>;

/// An op whose output shapes the builder method already inferred and
/// checked; `prepare` forwards to a kernel-family function. Most graph ops
/// are this: the struct-per-op form is kept for ops with runtime parameters.
pub(crate) struct KernelOp {
    pub kind: &'static str,
    pub attrs: String,
    pub inputs: Vec<Shape>,
    pub outputs: Vec<OutputSpec>,
    pub prepare: PrepareFn,
    /// Runtime parameters read, and how to rewrite the prepared dispatches.
    pub dynamic: Option<(Vec<String>, UpdateFn)>,
}

pub(crate) type UpdateFn =
    Box<dyn Fn(&GpuContext, &[Dispatch], &[&Tensor], &[&Tensor], &ParamValues) -> Result<()> + Send + Sync>;

impl Op for KernelOp {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn describe(&self) -> String {
        self.attrs.clone()
    }
    fn outputs(&self, inputs: &[Shape]) -> Result<Vec<OutputSpec>> {
        if inputs != self.inputs.as_slice() {
            return Err(Error::Shape(format!("{} was built for inputs {:?}, got {:?}", self.kind, self.inputs, inputs)));
        }
        Ok(self.outputs.clone())
    }
    fn prepare(&self, ctx: &GpuContext, i: &[&Tensor], o: &[&Tensor], p: &ParamValues) -> Result<Vec<Dispatch>> {
        (self.prepare)(ctx, i, o, p)
    }
    fn dynamic_params(&self) -> Vec<String> {
        self.dynamic.as_ref().map(|(p, _)| p.clone()).unwrap_or_default()
    }
    fn update(&self, ctx: &GpuContext, d: &[Dispatch], i: &[&Tensor], o: &[&Tensor], p: &ParamValues) -> Result<()> {
        match &self.dynamic {
            Some((_, f)) => f(ctx, d, i, o, p),
            None => Ok(()),
        }
    }
}

impl GraphBuilder<'_> {
    /// Add a `KernelOp` node whose single output shape is `out`.
    pub(crate) fn kernel(
        &mut self,
        name: &str,
        kind: &'static str,
        attrs: String,
        inputs: &[TensorId],
        out: Shape,
        prepare: PrepareFn,
    ) -> Result<TensorId> {
        let outs = self.kernel_multi(name, kind, attrs, inputs, vec![OutputSpec::new(out)], prepare, None)?;
        Ok(outs[0])
    }

    /// Add a `KernelOp` node with several outputs (fresh or aliased) and
    /// optional runtime parameters.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn kernel_multi(
        &mut self,
        name: &str,
        kind: &'static str,
        attrs: String,
        inputs: &[TensorId],
        outputs: Vec<OutputSpec>,
        prepare: PrepareFn,
        dynamic: Option<(Vec<String>, UpdateFn)>,
    ) -> Result<Vec<TensorId>> {
        let shapes = inputs.iter().map(|t| self.shape(*t)).collect::<Result<Vec<_>>>()?;
        let op = KernelOp { kind, attrs, inputs: shapes, outputs, prepare, dynamic };
        self.node(name, Box::new(op), inputs)
    }

    /// Shape-rule failure for a node being added, naming it.
    pub(crate) fn shape_error(&self, name: &str, kind: &str, msg: String) -> Error {
        Error::Graph(format!("{}: {msg}", node_label(name, kind)))
    }
}

/// How errors name a node: context for a failure raised while adding it.
pub(crate) fn node_label(name: &str, kind: &str) -> String {
    format!("node '{name}' ({kind})")
}
