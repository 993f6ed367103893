//! Reverse-mode differentiation of a graph with respect to its inputs
//! (weights frozen).
//!
//! A builder with gradients enabled ([`GraphBuilder::enable_gradients`])
//! keeps, for every node a differentiable builder method adds, a
//! vector-Jacobian product: a closure that, given the gradients of the
//! node's outputs, adds the nodes computing the gradients of its inputs.
//! Each closure sits in the builder method of its forward op
//! (`graph/ops/*.rs`), so an op's gradient is written next to its forward.
//! [`GraphBuilder::backward`] walks the nodes in reverse order from the
//! seeded outputs and appends the backward nodes to the *same* graph: the
//! planner and executor run forward and backward as one graph, and every
//! forward tensor a backward node reads simply stays live until that node
//! (activations are kept by the memory plan, not recomputed; the plan's peak
//! reports what that costs).
//!
//! A node with no gradient that lies between the differentiated inputs and
//! the seeds is a build-time error naming it, never a silent zero.

use std::collections::HashMap;

use crate::graph::ir::TensorId;
use crate::graph::op::Alias;
use crate::graph::GraphBuilder;
use crate::{Error, Result};

/// What a VJP closure gets: the forward node's name (to name its backward
/// nodes), the gradient of each visible output (`None`: nothing flows back
/// through it) and, per input, whether its gradient is wanted.
pub struct VjpArgs<'a> {
    pub name: &'a str,
    pub dy: &'a [Option<TensorId>],
    pub needs: &'a [bool],
}

impl VjpArgs<'_> {
    /// The gradient of output 0; an error if only another output (a
    /// log-determinant) carries one, which no flow VJP here supports.
    pub fn dy0(&self) -> Result<TensorId> {
        if self.dy.iter().skip(1).any(Option::is_some) {
            return Err(Error::Graph(format!("node '{}': no gradient through its log-determinant output", self.name)));
        }
        self.dy.first().copied().flatten().ok_or_else(|| Error::Graph(format!("node '{}': no gradient for its output", self.name)))
    }

    /// A name for the `what` backward node of this forward node.
    pub fn node(&self, what: &str) -> String {
        format!("{}.grad.{what}", self.name)
    }
}

/// Adds the gradient nodes of one forward node; returns one entry per node
/// input (`None` where the input's gradient is not wanted or is zero).
pub type VjpFn = Box<dyn Fn(&mut GraphBuilder<'_>, &VjpArgs) -> Result<Vec<Option<TensorId>>>>;

impl GraphBuilder<'_> {
    /// Record a VJP for every differentiable node added from now on.
    pub fn enable_gradients(&mut self) {
        self.grad = true;
        // Gradient graphs (HCD) keep direct convs: F(4x4)'s rounding is ~10x
        // the direct conv's (they are held to autograd parity and iterated),
        // and F(2x2) measured slower on their small 32-channel maps (HCD step
        // at LR 32 on lavapipe: 2.79 / 2.23 s with F(2x2) vs 2.43 / 1.51 s direct).
        self.winograd = None;
        // Gradients are held to f64 finite differences and iterated: f32.
        self.precision = crate::Dtype::F32;
        self.storage = crate::Dtype::F32;
    }

    pub fn gradients_enabled(&self) -> bool {
        self.grad
    }

    /// Attach `f` as the VJP of the node added last (no-op unless gradients
    /// are enabled). Called by the builder methods right after their node.
    pub(crate) fn vjp(&mut self, f: impl Fn(&mut GraphBuilder<'_>, &VjpArgs) -> Result<Vec<Option<TensorId>>> + 'static) {
        if self.grad {
            if let Some(last) = self.nodes.len().checked_sub(1) {
                self.vjps.insert(last, Box::new(f));
            }
        }
    }

    /// Append the backward pass: `seeds` pairs a forward tensor with the
    /// gradient of the scalar loss with respect to it (a tensor of the same
    /// shape, built by the caller, e.g. 2 (y - t) / N for a mean squared
    /// error). Returns d loss / d `wrt[i]` for each requested tensor (graph
    /// inputs or any forward tensor). Call once, after the forward nodes.
    pub fn backward(&mut self, seeds: &[(TensorId, TensorId)], wrt: &[TensorId]) -> Result<Vec<TensorId>> {
        if !self.grad {
            return Err(Error::Graph("backward: gradients were not enabled before the forward nodes were added".into()));
        }
        let n_fwd = self.nodes.len();
        let n_tensors = self.tensors.len();
        // needs[t]: t depends on some wrt tensor (forward reachability).
        let mut needs = vec![false; n_tensors];
        for t in wrt {
            self.shape(*t)?;
            needs[t.0] = true;
        }
        for node in &self.nodes {
            if node.inputs.iter().any(|t| needs[t.0]) {
                for o in &node.outputs {
                    needs[o.0] = true;
                }
            }
        }
        let mut grads: HashMap<TensorId, TensorId> = HashMap::new();
        for &(t, g) in seeds {
            let (st, sg) = (self.shape(t)?, self.shape(g)?);
            if st != sg {
                return Err(Error::Graph(format!("backward: seed gradient {sg} does not match tensor {} of shape {st}", t.0)));
            }
            if grads.insert(t, g).is_some() {
                return Err(Error::Graph(format!("backward: tensor {} seeded twice", t.0)));
            }
        }
        let mut vjps = std::mem::take(&mut self.vjps);
        let mut acc = 0usize;
        for idx in (0..n_fwd).rev() {
            let node = &self.nodes[idx];
            let visible: Vec<TensorId> =
                node.outputs.iter().zip(&node.aliases).filter(|(_, a)| **a != Alias::Scratch).map(|(t, _)| *t).collect();
            let dy: Vec<Option<TensorId>> = visible.iter().map(|t| grads.get(t).copied()).collect();
            let need_in: Vec<bool> = node.inputs.iter().map(|t| needs[t.0]).collect();
            if dy.iter().all(Option::is_none) || !need_in.iter().any(|b| *b) {
                continue;
            }
            let (name, kind, inputs) = (node.name.clone(), node.op.kind(), node.inputs.clone());
            let f = vjps.remove(&idx).ok_or_else(|| {
                Error::Graph(format!("node {idx} '{name}' ({kind}) has no gradient, but the loss depends on the inputs through it"))
            })?;
            let dx = f(self, &VjpArgs { name: &name, dy: &dy, needs: &need_in })?;
            if dx.len() != inputs.len() {
                return Err(Error::Graph(format!("node '{name}' ({kind}): VJP returned {} gradients for {} inputs", dx.len(), inputs.len())));
            }
            for ((t, g), need) in inputs.iter().zip(dx).zip(&need_in) {
                let (Some(g), true) = (g, *need) else { continue };
                let (st, sg) = (self.shape(*t)?, self.shape(g)?);
                if st != sg {
                    return Err(Error::Graph(format!("node '{name}' ({kind}): gradient {sg} for an input of shape {st}")));
                }
                let total = match grads.get(t) {
                    Some(&prev) => {
                        acc += 1;
                        self.add(&format!("{name}.grad.acc{acc}"), prev, g)?
                    }
                    None => g,
                };
                grads.insert(*t, total);
            }
        }
        self.vjps = vjps;
        wrt.iter()
            .map(|t| grads.get(t).copied().ok_or_else(|| Error::Graph(format!("backward: the seeded outputs do not depend on tensor {}", t.0))))
            .collect()
    }
}
