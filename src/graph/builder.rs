//! `GraphBuilder`: model code adds inputs, nodes and outputs; every shape is
//! inferred and checked as nodes are added, so a malformed model fails at
//! build time with the node's name, never at run time.

use std::collections::{BTreeMap, HashMap};

use crate::graph::autodiff::VjpFn;
use crate::graph::ir::{Graph, Node, Role, TensorId, TensorInfo};
use crate::graph::op::{Alias, Op};
use crate::gpu::GpuContext;
use crate::weights::{HostTensor, WeightStore};
use crate::{Dtype, Error, Result, ResultExt, Shape};

pub struct GraphBuilder<'c> {
    pub(crate) ctx: &'c GpuContext,
    weights: Option<&'c WeightStore>,
    pub(super) tensors: Vec<TensorInfo>,
    pub(super) nodes: Vec<Node>,
    inputs: Vec<(String, TensorId)>,
    outputs: Vec<(String, TensorId)>,
    params: BTreeMap<String, f64>,
    /// Gradients enabled: differentiable builder methods record their VJP.
    pub(super) grad: bool,
    /// VJP of node i (see `autodiff`).
    pub(super) vjps: HashMap<usize, VjpFn>,
    /// The Winograd variant 3x3 convs may run as (`set_winograd`).
    pub(crate) winograd: Option<crate::ops::winograd::WinogradTile>,
    /// The graph's storage type (`set_precision`).
    pub(crate) precision: Dtype,
    /// Storage of the tensors and weights created from now on (`set_storage`).
    pub(crate) storage: Dtype,
}

impl<'c> GraphBuilder<'c> {
    pub fn new(ctx: &'c GpuContext) -> Self {
        GraphBuilder {
            ctx,
            weights: None,
            tensors: Vec::new(),
            nodes: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            params: BTreeMap::new(),
            grad: false,
            vjps: HashMap::new(),
            winograd: Some(crate::ops::winograd::WinogradTile::F4),
            precision: Dtype::F32,
            storage: Dtype::F32,
        }
    }

    /// Store the graph's tensors and weights as `dtype` from here on (f16:
    /// half the memory and bandwidth; every kernel still computes in f32).
    /// Set it before adding inputs and nodes. Gradient graphs stay f32.
    pub fn set_precision(&mut self, dtype: Dtype) -> Result<()> {
        self.ctx.check_dtype(dtype)?;
        if !self.tensors.is_empty() {
            return Err(Error::Graph("set the precision before adding inputs or nodes".into()));
        }
        if self.grad && dtype != Dtype::F32 {
            return Err(Error::Graph(format!("gradient graphs run in f32 only (asked for {dtype})")));
        }
        self.precision = dtype;
        self.storage = dtype;
        Ok(())
    }

    /// Storage type of this graph's tensors and weights.
    pub fn precision(&self) -> Dtype {
        self.precision
    }

    /// Store the tensors and weights created from here on as `dtype`
    /// (returns the previous setting): a model keeps its precision-critical
    /// state in f32 inside an f16 graph (HCFlow's flow tensors), since every
    /// kernel reads and writes any mix of f32 and f16 tensors. Scratch stays
    /// f32 regardless. f16 needs an f16 graph precision.
    pub fn set_storage(&mut self, dtype: Dtype) -> Result<Dtype> {
        if dtype == Dtype::F16 && self.precision != Dtype::F16 {
            return Err(Error::Graph("f16 storage inside a graph whose precision is f32".into()));
        }
        Ok(std::mem::replace(&mut self.storage, dtype))
    }

    /// Storage of the tensors and weights created next.
    pub fn storage(&self) -> Dtype {
        self.storage
    }

    /// A builder whose ops bind their parameters by name from `weights`.
    pub fn with_weights(ctx: &'c GpuContext, weights: &'c WeightStore) -> Self {
        let mut g = Self::new(ctx);
        g.weights = Some(weights);
        g
    }

    pub fn ctx(&self) -> &'c GpuContext {
        self.ctx
    }

    /// Fetch weight `name` (exact `shape` when given) for node `node`.
    pub fn weight(&self, node: &str, name: &str, shape: Option<&[usize]>) -> Result<&'c HostTensor> {
        let w = self
            .weights
            .ok_or_else(|| Error::Graph(format!("node '{node}' needs weight '{name}' but the builder has no weight store")))?;
        w.get(name, shape).with_context(|| format!("node '{node}'"))
    }

    /// Declare a graph input the caller writes before each run.
    pub fn input(&mut self, name: &str, shape: Shape) -> Result<TensorId> {
        if self.inputs.iter().any(|(n, _)| n == name) {
            return Err(Error::Graph(format!("duplicate input name '{name}'")));
        }
        if shape.numel() == 0 {
            return Err(Error::Graph(format!("input '{name}' has an empty shape {shape}")));
        }
        let id = TensorId(self.tensors.len());
        self.tensors.push(TensorInfo { shape, dtype: self.storage, role: Role::Input(name.to_string()), producer: None, output_name: None });
        self.inputs.push((name.to_string(), id));
        Ok(id)
    }

    /// Declare a runtime scalar parameter (temperature, noise level, seed, ...).
    pub fn param(&mut self, name: &str, default: f64) -> Result<()> {
        if self.params.insert(name.to_string(), default).is_some() {
            return Err(Error::Graph(format!("duplicate parameter '{name}'")));
        }
        Ok(())
    }

    pub fn has_param(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }

    pub fn shape(&self, t: TensorId) -> Result<Shape> {
        self.tensors.get(t.0).map(|i| i.shape).ok_or_else(|| Error::Graph(format!("unknown tensor id {}", t.0)))
    }

    /// Add a node; returns its output tensor ids. Shapes are inferred by the op.
    pub fn node(&mut self, name: impl Into<String>, op: Box<dyn Op>, inputs: &[TensorId]) -> Result<Vec<TensorId>> {
        let name = name.into();
        let idx = self.nodes.len();
        let label = format!("node {idx} '{name}' ({})", op.kind());
        let ctx_msg = |m: String| Error::Graph(format!("{label}: {m}"));
        let mut shapes = Vec::with_capacity(inputs.len());
        for t in inputs {
            shapes.push(self.shape(*t).context(&label)?);
        }
        for p in op.dynamic_params() {
            if !self.params.contains_key(&p) {
                return Err(ctx_msg(format!("uses runtime parameter '{p}' that was never declared")));
            }
        }
        let specs = op.outputs(&shapes).context(&label)?;
        let mut outs = Vec::with_capacity(specs.len());
        let mut aliases = Vec::with_capacity(specs.len());
        for spec in &specs {
            let mut dtype = if spec.alias == Alias::Scratch { Dtype::F32 } else { self.storage };
            match spec.alias {
                Alias::None | Alias::Scratch => {}
                Alias::InPlace(i) | Alias::View(i) => {
                    let src = *inputs.get(i).ok_or_else(|| ctx_msg(format!("output aliases missing input {i}")))?;
                    let info = &self.tensors[src.0];
                    dtype = info.dtype;
                    if matches!(spec.alias, Alias::InPlace(_)) {
                        if let Role::Input(n) = &info.role {
                            return Err(ctx_msg(format!("cannot update graph input '{n}' in place")));
                        }
                        if info.shape != spec.shape {
                            return Err(ctx_msg(format!("in-place output {} differs from input {}", spec.shape, info.shape)));
                        }
                    } else if info.shape.numel() != spec.shape.numel() {
                        return Err(ctx_msg(format!("view {} of {} changes the element count", spec.shape, info.shape)));
                    }
                }
            }
            let id = TensorId(self.tensors.len());
            self.tensors.push(TensorInfo { shape: spec.shape, dtype, role: Role::Computed, producer: Some(idx), output_name: None });
            outs.push(id);
            aliases.push(spec.alias);
        }
        // Scratch stays inside the node: callers get the real outputs only.
        let visible = outs.iter().zip(&aliases).filter(|(_, a)| **a != Alias::Scratch).map(|(t, _)| *t).collect();
        self.nodes.push(Node { op, name, inputs: inputs.to_vec(), outputs: outs, aliases });
        Ok(visible)
    }

    /// Add a node with exactly one output.
    pub fn node1(&mut self, name: impl Into<String>, op: Box<dyn Op>, inputs: &[TensorId]) -> Result<TensorId> {
        let name = name.into();
        let outs = self.node(name.clone(), op, inputs)?;
        if outs.len() != 1 {
            return Err(Error::Graph(format!("node '{name}' has {} outputs, expected 1", outs.len())));
        }
        Ok(outs[0])
    }

    /// Mark a tensor as a named output (kept alive to the end, readable after a run).
    pub fn output(&mut self, name: &str, t: TensorId) -> Result<()> {
        self.shape(t)?;
        let scratch = self.nodes.iter().any(|n| n.outputs.iter().zip(&n.aliases).any(|(o, a)| *o == t && *a == Alias::Scratch));
        if scratch {
            return Err(Error::Graph(format!("output '{name}': tensor {} is an op's scratch", t.0)));
        }
        if self.outputs.iter().any(|(n, _)| n == name) {
            return Err(Error::Graph(format!("duplicate output name '{name}'")));
        }
        self.tensors[t.0].output_name = Some(name.to_string());
        self.outputs.push((name.to_string(), t));
        Ok(())
    }

    /// Check global rules and freeze the graph.
    pub fn build(self) -> Result<Graph> {
        if self.outputs.is_empty() {
            return Err(Error::Graph("graph has no outputs".into()));
        }
        // Storage roots: views and in-place outputs share their source's buffer.
        let roots = storage_roots(&self.tensors, &self.nodes);
        // Overwriting a storage in place invalidates every tensor of that
        // storage that existed before: none may be read later or be an output.
        for (n, node) in self.nodes.iter().enumerate() {
            for a in &node.aliases {
                let Alias::InPlace(i) = a else { continue };
                let root = roots[node.inputs[*i].0];
                let stale = |t: TensorId| roots[t.0] == root && self.tensors[t.0].producer.is_none_or(|p| p < n);
                for (t, info) in self.tensors.iter().enumerate() {
                    if let (Some(name), true) = (&info.output_name, stale(TensorId(t))) {
                        return Err(Error::Graph(format!("node {n} '{}' overwrites output '{name}' in place", node.name)));
                    }
                }
                for (m, later) in self.nodes.iter().enumerate().skip(n + 1) {
                    if let Some(t) = later.inputs.iter().find(|t| stale(**t)) {
                        return Err(Error::Graph(format!(
                            "node {m} '{}' reads tensor {} after node {n} '{}' overwrote it in place",
                            later.name, t.0, node.name
                        )));
                    }
                }
            }
        }
        Ok(Graph { tensors: self.tensors, nodes: self.nodes, inputs: self.inputs, outputs: self.outputs, params: self.params })
    }
}

/// For each tensor, the tensor whose buffer it lives in (itself unless it is
/// a view or an in-place output).
pub(crate) fn storage_roots(tensors: &[TensorInfo], nodes: &[Node]) -> Vec<usize> {
    let mut root: Vec<usize> = (0..tensors.len()).collect();
    for node in nodes {
        for (o, a) in node.outputs.iter().zip(&node.aliases) {
            if let Alias::InPlace(i) | Alias::View(i) = a {
                root[o.0] = root[node.inputs[*i].0];
            }
        }
    }
    root
}
