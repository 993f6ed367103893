//! Per-node profile of an executor and text / DOT dumps of a graph.

use std::fmt::Write as _;

use crate::gpu::{GpuContext, TimingSource};
use crate::graph::exec::Executor;
use crate::graph::ir::{Graph, Role};
use crate::graph::op::Alias;
use crate::Result;

#[derive(Clone, Debug)]
pub struct ProfileRow {
    pub node: usize,
    pub name: String,
    pub kind: &'static str,
    pub shapes: String,
    pub dispatches: usize,
    /// Median over the profiled runs, in milliseconds.
    pub ms: f64,
    pub gflops: f64,
    pub gbs: f64,
}

#[derive(Clone, Debug)]
pub struct Profile {
    pub rows: Vec<ProfileRow>,
    pub source: TimingSource,
    pub runs: usize,
}

impl Profile {
    pub fn total_ms(&self) -> f64 {
        self.rows.iter().map(|r| r.ms).sum()
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "profile: median of {} runs, {}", self.runs, self.source)?;
        writeln!(f, "{:>4}  {:<28} {:<14} {:<44} {:>9} {:>9} {:>8}", "node", "name", "op", "shapes", "ms", "GFLOP/s", "GB/s")?;
        for r in &self.rows {
            let name: String = r.name.chars().take(28).collect();
            writeln!(
                f,
                "{:>4}  {:<28} {:<14} {:<44} {:>9.3} {:>9.2} {:>8.2}",
                r.node, name, r.kind, r.shapes, r.ms, r.gflops, r.gbs
            )?;
        }
        write!(f, "total: {:.3} ms over {} nodes", self.total_ms(), self.rows.len())
    }
}

fn shapes_of(g: &Graph, node: usize) -> String {
    let n = &g.nodes[node];
    let ins: Vec<String> = n.inputs.iter().map(|t| format!("{:?}", g.shape(*t).0)).collect();
    let outs: Vec<String> = n.outputs.iter().map(|t| format!("{:?}", g.shape(*t).0)).collect();
    format!("{} -> {}", ins.join(" "), outs.join(" "))
}

impl Executor {
    /// Time every kernel node over `runs` runs (median per node).
    pub fn profile(&mut self, ctx: &GpuContext, runs: usize) -> Result<Profile> {
        self.flush_params(ctx)?;
        let nodes: Vec<usize> = (0..self.dispatches.len()).filter(|&k| !self.dispatches[k].is_empty()).collect();
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); nodes.len()];
        for _ in 0..runs.max(1) {
            let segs: Vec<&[crate::gpu::Dispatch]> = nodes.iter().map(|&k| self.dispatches[k].as_slice()).collect();
            for (i, ms) in ctx.time_segments(&segs)?.into_iter().enumerate() {
                samples[i].push(ms);
            }
        }
        let rows = nodes
            .iter()
            .zip(samples)
            .map(|(&k, mut s)| {
                s.sort_by(|a, b| a.total_cmp(b));
                let ms = s[s.len() / 2];
                let flops: f64 = self.dispatches[k].iter().map(|d| d.flops).sum();
                let bytes: f64 = self.dispatches[k].iter().map(|d| d.bytes).sum();
                let secs = (ms * 1e-3).max(1e-12);
                let node = &self.graph.nodes[k];
                ProfileRow {
                    node: k,
                    name: node.name.clone(),
                    kind: node.op.kind(),
                    shapes: shapes_of(&self.graph, k),
                    dispatches: self.dispatches[k].len(),
                    ms,
                    gflops: flops / secs * 1e-9,
                    gbs: bytes / secs * 1e-9,
                }
            })
            .collect();
        Ok(Profile { rows, source: ctx.timing_source(), runs: runs.max(1) })
    }
}

impl Graph {
    /// One line per tensor input and node: ids, op, attributes, shapes.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for (name, t) in &self.inputs {
            let _ = writeln!(s, "input  %{} '{name}' {}", t.0, self.shape(*t));
        }
        for (k, n) in self.nodes.iter().enumerate() {
            let ins: Vec<String> = n.inputs.iter().map(|t| format!("%{}", t.0)).collect();
            let outs: Vec<String> = n
                .outputs
                .iter()
                .zip(&n.aliases)
                .map(|(t, a)| match a {
                    Alias::None => format!("%{} {}", t.0, self.shape(*t)),
                    Alias::InPlace(i) => format!("%{} {} (in place of input {i})", t.0, self.shape(*t)),
                    Alias::View(i) => format!("%{} {} (view of input {i})", t.0, self.shape(*t)),
                    Alias::Scratch => format!("%{} {} (scratch)", t.0, self.shape(*t)),
                })
                .collect();
            let attrs = n.op.describe();
            let _ = writeln!(
                s,
                "node {k:<4} {:<14} {}{}({}) -> {}",
                n.op.kind(),
                n.name,
                if attrs.is_empty() { String::new() } else { format!(" [{attrs}]") },
                ins.join(", "),
                outs.join(", ")
            );
        }
        for (name, t) in &self.outputs {
            let _ = writeln!(s, "output %{} '{name}' {}", t.0, self.shape(*t));
        }
        s
    }

    /// Graphviz DOT: tensors as edges labelled with their shapes.
    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph wgsr {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n");
        for (name, t) in &self.inputs {
            let _ = writeln!(s, "  t{} [label=\"{name}\\n{}\", shape=ellipse];", t.0, self.shape(*t));
        }
        for (k, n) in self.nodes.iter().enumerate() {
            let _ = writeln!(s, "  n{k} [label=\"{}\\n{}\"];", n.op.kind(), n.name.replace('"', "'"));
        }
        let producer = |t: usize| match (&self.tensors[t].role, self.tensors[t].producer) {
            (Role::Input(_), _) => format!("t{t}"),
            (_, Some(p)) => format!("n{p}"),
            _ => format!("t{t}"),
        };
        for (k, n) in self.nodes.iter().enumerate() {
            for t in &n.inputs {
                let _ = writeln!(s, "  {} -> n{k} [label=\"{:?}\"];", producer(t.0), self.shape(*t).0);
            }
        }
        for (name, t) in &self.outputs {
            let _ = writeln!(s, "  out_{name} [label=\"{name}\\n{}\", shape=ellipse];", self.shape(*t));
            let _ = writeln!(s, "  {} -> out_{name};", producer(t.0));
        }
        s.push_str("}\n");
        s
    }
}
