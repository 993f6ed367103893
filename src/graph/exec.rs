//! Executor: allocate the planned buffers, prepare every node's dispatches
//! once (pipelines from the cache, bind groups prebuilt), then replay.
//!
//! wgpu command buffers are single-use, so "record once" means: the list of
//! (pipeline, bind group, grid) is built once, and each run only encodes it
//! into one command buffer and submits it. A run allocates nothing and
//! creates no pipeline or bind group; changing a runtime parameter rewrites a
//! few bytes of uniform data.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::gpu::{Dispatch, GpuContext};
use crate::graph::ir::{Graph, Role, TensorId};
use crate::graph::op::{Alias, ParamValues};
use crate::graph::plan::{plan_memory, MemoryPlan};
use crate::{Error, Result, ResultExt, Tensor};

pub struct Executor {
    pub(crate) graph: Graph,
    plan: MemoryPlan,
    pub(crate) tensors: Vec<Tensor>,
    pub(crate) dispatches: Vec<Vec<Dispatch>>,
    params: ParamValues,
    dirty: BTreeSet<String>,
    runs: u64,
}

impl Executor {
    /// Plan memory, allocate buffers and prepare all dispatches.
    pub fn new(ctx: &GpuContext, graph: Graph) -> Result<Self> {
        let plan = plan_memory(&graph);
        let max = ctx.max_binding_bytes();
        let mut buffers = Vec::with_capacity(plan.buffer_sizes.len());
        for (i, &size) in plan.buffer_sizes.iter().enumerate() {
            if size > max {
                return Err(Error::TooLarge(format!(
                    "graph buffer {i} needs {} MiB; this device binds at most {} MiB per buffer (use a smaller input)",
                    size >> 20,
                    max >> 20
                )));
            }
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
            buffers.push(Arc::new(ctx.storage_buffer("graph buffer", size.max(4), usage)));
        }
        let tensors = graph
            .tensors
            .iter()
            .enumerate()
            .map(|(t, info)| Tensor::from_buffer(buffers[plan.tensor_buffer[t]].clone(), info.shape, info.dtype))
            .collect::<Result<Vec<_>>>()?;
        let params = graph.params.clone();
        let mut dispatches = Vec::with_capacity(graph.nodes.len());
        for (k, node) in graph.nodes.iter().enumerate() {
            let ins: Vec<&Tensor> = node.inputs.iter().map(|t| &tensors[t.0]).collect();
            let outs: Vec<&Tensor> = node.outputs.iter().map(|t| &tensors[t.0]).collect();
            let d = node
                .op
                .prepare(ctx, &ins, &outs, &params)
                .with_context(|| format!("preparing node {k} '{}' ({})", node.name, node.op.kind()))?;
            if node.aliases.iter().all(|a| matches!(a, Alias::View(_))) && !d.is_empty() {
                return Err(Error::Graph(format!("view node {k} '{}' must not dispatch", node.name)));
            }
            dispatches.push(d);
        }
        Ok(Executor { graph, plan, tensors, dispatches, params, dirty: BTreeSet::new(), runs: 0 })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn plan(&self) -> &MemoryPlan {
        &self.plan
    }

    /// Number of runs submitted so far.
    pub fn runs(&self) -> u64 {
        self.runs
    }

    fn input(&self, name: &str) -> Result<TensorId> {
        self.graph.input_id(name).ok_or_else(|| {
            let names: Vec<_> = self.graph.inputs.iter().map(|(n, _)| n.as_str()).collect();
            Error::Graph(format!("no input named '{name}' (inputs: {})", names.join(", ")))
        })
    }

    /// The GPU tensor behind an input, to fill it from other GPU work.
    pub fn input_tensor(&self, name: &str) -> Result<&Tensor> {
        Ok(&self.tensors[self.input(name)?.0])
    }

    /// Upload an input's values (length must match its shape).
    pub fn set_input(&self, ctx: &GpuContext, name: &str, data: &[f32]) -> Result<()> {
        let t = self.input(name)?;
        self.tensors[t.0].write(ctx, data).with_context(|| format!("input '{name}'"))
    }

    /// Set a runtime parameter; takes effect at the next run.
    pub fn set_param(&mut self, name: &str, value: f64) -> Result<()> {
        match self.params.get_mut(name) {
            Some(v) => {
                if *v != value {
                    *v = value;
                    self.dirty.insert(name.to_string());
                }
                Ok(())
            }
            None => {
                let names: Vec<_> = self.params.keys().map(|s| s.as_str()).collect();
                Err(Error::Graph(format!("no runtime parameter '{name}' (parameters: {})", names.join(", "))))
            }
        }
    }

    pub fn param(&self, name: &str) -> Option<f64> {
        self.params.get(name).copied()
    }

    /// Push changed parameters into the affected nodes' uniform blocks.
    pub(crate) fn flush_params(&mut self, ctx: &GpuContext) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        for (k, node) in self.graph.nodes.iter().enumerate() {
            if node.op.dynamic_params().iter().any(|p| self.dirty.contains(p)) {
                let ins: Vec<&Tensor> = node.inputs.iter().map(|t| &self.tensors[t.0]).collect();
                let outs: Vec<&Tensor> = node.outputs.iter().map(|t| &self.tensors[t.0]).collect();
                node.op.update(ctx, &self.dispatches[k], &ins, &outs, &self.params)?;
            }
        }
        self.dirty.clear();
        Ok(())
    }

    /// Encode every dispatch into one compute pass and submit (no wait).
    pub fn submit(&mut self, ctx: &GpuContext) -> Result<()> {
        self.flush_params(ctx)?;
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("graph") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("graph"), timestamp_writes: None });
            for d in self.dispatches.iter().flatten() {
                d.encode(&mut pass);
            }
        }
        ctx.queue.submit([enc.finish()]);
        self.runs += 1;
        Ok(())
    }

    /// Submit and wait for completion.
    pub fn run(&mut self, ctx: &GpuContext) -> Result<()> {
        self.submit(ctx)?;
        ctx.sync()
    }

    /// The GPU tensor behind a named output (valid after a run).
    pub fn output(&self, name: &str) -> Result<&Tensor> {
        let t = self.graph.output_id(name).ok_or_else(|| {
            let names: Vec<_> = self.graph.outputs.iter().map(|(n, _)| n.as_str()).collect();
            Error::Graph(format!("no output named '{name}' (outputs: {})", names.join(", ")))
        })?;
        Ok(&self.tensors[t.0])
    }

    /// Download a named output.
    pub fn read_output(&self, ctx: &GpuContext, name: &str) -> Result<Vec<f32>> {
        self.output(name)?.to_vec(ctx)
    }

    /// Download several named outputs with one wait (see [`Tensor::read_many`]).
    pub fn read_outputs(&self, ctx: &GpuContext, names: &[&str]) -> Result<Vec<Vec<f32>>> {
        let ts = names.iter().map(|n| self.output(n)).collect::<Result<Vec<_>>>()?;
        Tensor::read_many(ctx, &ts)
    }

    /// Bytes held in the planned buffers (inputs and outputs included).
    pub fn allocated_bytes(&self) -> u64 {
        self.plan.peak_bytes
    }

    /// Ids of the tensors that are graph inputs, in declaration order.
    pub fn input_names(&self) -> Vec<String> {
        self.graph.tensors.iter().filter_map(|t| if let Role::Input(n) = &t.role { Some(n.clone()) } else { None }).collect()
    }
}
