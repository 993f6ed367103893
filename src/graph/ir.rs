//! Graph IR: tensors with shapes fixed at build time and nodes in execution
//! (topological) order, as produced by `GraphBuilder`.

use std::collections::BTreeMap;

use crate::graph::op::{Alias, Op};
use crate::{Dtype, Shape};

/// Index of a tensor in `Graph::tensors`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub usize);

/// What a tensor is for the planner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Written by the caller before each run.
    Input(String),
    /// Produced by a node.
    Computed,
}

#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub shape: Shape,
    /// Storage type (the graph's precision; scratch is always f32).
    pub dtype: Dtype,
    pub role: Role,
    /// Node that produced it (None for inputs).
    pub producer: Option<usize>,
    /// Set when the tensor is a named graph output.
    pub output_name: Option<String>,
}

pub struct Node {
    pub op: Box<dyn Op>,
    /// Optional label given by the model (e.g. the weight prefix).
    pub name: String,
    pub inputs: Vec<TensorId>,
    pub outputs: Vec<TensorId>,
    pub aliases: Vec<Alias>,
}

/// A validated graph ready for planning and execution.
pub struct Graph {
    pub tensors: Vec<TensorInfo>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<(String, TensorId)>,
    pub outputs: Vec<(String, TensorId)>,
    /// Runtime scalar parameters with their default values.
    pub params: BTreeMap<String, f64>,
}

impl Graph {
    pub fn shape(&self, t: TensorId) -> Shape {
        self.tensors[t.0].shape
    }

    pub fn dtype(&self, t: TensorId) -> Dtype {
        self.tensors[t.0].dtype
    }

    pub fn input_id(&self, name: &str) -> Option<TensorId> {
        self.inputs.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }

    pub fn output_id(&self, name: &str) -> Option<TensorId> {
        self.outputs.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }

    /// Total floating-point work is reported by the executor's profile; this is
    /// the number of nodes that launch kernels (views launch none).
    pub fn kernel_nodes(&self) -> usize {
        self.nodes.iter().filter(|n| !n.aliases.iter().all(|a| matches!(a, Alias::View(_)))).count()
    }
}
