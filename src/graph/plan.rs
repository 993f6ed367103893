//! Static memory plan: liveness over the node order, then greedy-by-size
//! assignment of storages to shared buffers (largest first, each into the
//! first buffer whose live intervals it does not overlap).

use crate::graph::builder::storage_roots;
use crate::graph::ir::{Graph, Role};
use crate::graph::op::Alias;

/// Where every tensor lives.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// Size in bytes of each shared buffer.
    pub buffer_sizes: Vec<u64>,
    /// Buffer index for each tensor id.
    pub tensor_buffer: Vec<usize>,
    /// Sum of the shared buffers: the memory the graph really allocates.
    pub peak_bytes: u64,
    /// What one buffer per node output would cost (views excluded): the
    /// baseline the plan is measured against.
    pub no_reuse_bytes: u64,
}

impl std::fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        write!(
            f,
            "memory plan: {} buffers, peak {:.2} MiB vs {:.2} MiB without reuse ({:.1}% saved)",
            self.buffer_sizes.len(),
            mib(self.peak_bytes),
            mib(self.no_reuse_bytes),
            100.0 * (1.0 - self.peak_bytes as f64 / self.no_reuse_bytes.max(1) as f64)
        )
    }
}

/// Live interval [first, last] in node steps; inputs start at step 0 and
/// outputs end after the last node.
#[derive(Clone, Copy, Debug)]
struct Interval(usize, usize);

impl Interval {
    fn overlaps(&self, o: &Interval) -> bool {
        self.0 <= o.1 && o.0 <= self.1
    }
}

pub fn plan_memory(g: &Graph) -> MemoryPlan {
    let nt = g.tensors.len();
    let roots = storage_roots(&g.tensors, &g.nodes);
    // Steps: node k runs at step k + 1; inputs are written at step 0; inputs
    // and outputs stay live through step nodes + 1.
    let end_step = g.nodes.len() + 1;
    let mut live: Vec<Option<Interval>> = vec![None; nt];
    let touch = |live: &mut Vec<Option<Interval>>, r: usize, step: usize| {
        live[r] = Some(match live[r] {
            None => Interval(step, step),
            Some(Interval(a, b)) => Interval(a.min(step), b.max(step)),
        });
    };
    for (t, info) in g.tensors.iter().enumerate() {
        if let Role::Input(_) = info.role {
            // Inputs keep their buffer for the whole run and across replays:
            // a value set once stays valid until the caller sets it again.
            touch(&mut live, roots[t], 0);
            touch(&mut live, roots[t], end_step);
        }
        if info.output_name.is_some() {
            touch(&mut live, roots[t], end_step);
        }
    }
    for (k, node) in g.nodes.iter().enumerate() {
        for t in node.inputs.iter().chain(&node.outputs) {
            touch(&mut live, roots[t.0], k + 1);
        }
    }

    // Whole words: wgpu sizes buffers in multiples of 4 bytes.
    let size_of = |r: usize| g.tensors[r].shape.bytes_as(g.tensors[r].dtype).next_multiple_of(4);
    let mut storages: Vec<usize> = (0..nt).filter(|&t| roots[t] == t && live[t].is_some()).collect();
    storages.sort_by(|a, b| size_of(*b).cmp(&size_of(*a)).then(a.cmp(b)));

    let mut buffers: Vec<(u64, Vec<Interval>)> = Vec::new();
    let mut storage_buffer = vec![usize::MAX; nt];
    for r in storages {
        let iv = live[r].unwrap();
        let size = size_of(r);
        let slot = buffers.iter().position(|(cap, ivs)| *cap >= size && ivs.iter().all(|o| !o.overlaps(&iv)));
        let slot = slot.unwrap_or_else(|| {
            buffers.push((size, Vec::new()));
            buffers.len() - 1
        });
        buffers[slot].1.push(iv);
        storage_buffer[r] = slot;
    }

    let tensor_buffer: Vec<usize> = (0..nt).map(|t| storage_buffer[roots[t]]).collect();
    let no_reuse_bytes = g
        .tensors
        .iter()
        .enumerate()
        .filter(|(t, _)| {
            // Count inputs and every non-view node output once.
            !g.nodes.iter().any(|n| n.outputs.iter().zip(&n.aliases).any(|(o, a)| o.0 == *t && matches!(a, Alias::View(_))))
        })
        .map(|(_, info)| info.shape.bytes_as(info.dtype))
        .sum();
    let buffer_sizes: Vec<u64> = buffers.iter().map(|(s, _)| *s).collect();
    MemoryPlan { peak_bytes: buffer_sizes.iter().sum(), buffer_sizes, tensor_buffer, no_reuse_bytes }
}
