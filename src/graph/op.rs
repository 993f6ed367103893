//! The contract between the graph and an op: infer output shapes at build
//! time, then prepare dispatches once against planned buffers.

use std::collections::BTreeMap;

use crate::gpu::{Dispatch, GpuContext};
use crate::{Result, Shape, Tensor};

/// How an output's storage relates to the node's inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alias {
    /// A fresh tensor from the memory plan.
    None,
    /// The op overwrites input `i` (bound once, read-write). Input `i` must
    /// not be read by any later node.
    InPlace(usize),
    /// Same buffer as input `i`, reinterpreted with a new shape; no dispatch.
    View(usize),
    /// Working storage the op needs only while it runs (partial sums, score
    /// matrices). Planned like any tensor, live during its node alone, and
    /// passed to `prepare` after the real outputs; model code never sees it.
    /// Always f32, whatever the graph's precision: it holds accumulations.
    Scratch,
}

/// Shape and storage of one output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    pub shape: Shape,
    pub alias: Alias,
}

impl OutputSpec {
    pub fn new(shape: Shape) -> Self {
        OutputSpec { shape, alias: Alias::None }
    }
    pub fn scratch(shape: Shape) -> Self {
        OutputSpec { shape, alias: Alias::Scratch }
    }
}

/// Values of the graph's runtime scalar parameters (temperature, noise
/// level, RNG offset, ...), by name.
pub type ParamValues = BTreeMap<String, f64>;

/// One graph operation. Implementations hold their (GPU-resident) weights
/// and attributes; `prepare` is called once per executor.
pub trait Op: Send + Sync {
    /// Short op name for dumps and profiles ("conv2d", "actnorm", ...).
    fn kind(&self) -> &'static str;

    /// Attributes for dumps (kernel size, activation, ...).
    fn describe(&self) -> String {
        String::new()
    }

    /// Output specs for the given input shapes; errors name the problem.
    fn outputs(&self, inputs: &[Shape]) -> Result<Vec<OutputSpec>>;

    /// Build the dispatches that compute the outputs from the inputs.
    /// `params` holds the current runtime parameter values.
    fn prepare(&self, ctx: &GpuContext, inputs: &[&Tensor], outputs: &[&Tensor], params: &ParamValues) -> Result<Vec<Dispatch>>;

    /// Names of runtime parameters this op reads (empty for most ops).
    fn dynamic_params(&self) -> Vec<String> {
        Vec::new()
    }

    /// Rewrite the uniform blocks of this op's prepared dispatches for new
    /// parameter values (same tensors as `prepare` got). Called only for ops
    /// whose `dynamic_params` changed.
    fn update(
        &self,
        _ctx: &GpuContext,
        _dispatches: &[Dispatch],
        _inputs: &[&Tensor],
        _outputs: &[&Tensor],
        _params: &ParamValues,
    ) -> Result<()> {
        Ok(())
    }
}
