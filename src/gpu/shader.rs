//! Kernel modules and their composition with the shared WGSL prelude.
//!
//! A kernel file starts with the line `#import prelude`; [`compose`] replaces
//! it with the constants generated from Rust ([`super::codes`]) followed by
//! `kernels/prelude.wgsl` (index helpers, workgroup reductions, activations,
//! the couplings' log-scale).
//! That is the only directive. The composed text is what naga validates, what
//! wgpu compiles and what the pipeline cache is keyed by (name + hash).

use std::hash::{Hash, Hasher};

use crate::gpu::codes::{CODE_TABLES, PRELUDE_CONSTS, WG};
use crate::gpu::ParamsLayout;
use crate::{Error, Result};

/// The shared WGSL included by `#import prelude`.
pub const PRELUDE: &str = include_str!("../../kernels/prelude.wgsl");
/// File stem of the prelude in `kernels/` (it is not a kernel module itself).
pub const PRELUDE_NAME: &str = "prelude";
const IMPORT: &str = "#import prelude";

/// An entry point and the workgroup size the Rust dispatch code assumes for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryPoint {
    pub name: &'static str,
    pub workgroup_size: [u32; 3],
}

impl EntryPoint {
    pub const fn new(name: &'static str, workgroup_size: [u32; 3]) -> Self {
        EntryPoint { name, workgroup_size }
    }
    /// A 1-D entry of `threads` threads.
    pub const fn x(name: &'static str, threads: u32) -> Self {
        EntryPoint { name, workgroup_size: [threads, 1, 1] }
    }
}

/// The common case: every entry named is 1-D with [`WG`] threads.
pub const fn wg_entries<const N: usize>(names: [&'static str; N]) -> [EntryPoint; N] {
    let mut out = [EntryPoint::x("", WG as u32); N];
    let mut i = 0;
    while i < N {
        out[i] = EntryPoint::x(names[i], WG as u32);
        i += 1;
    }
    out
}

/// A WGSL file compiled into the binary, with what its Rust side assumes
/// about it: the uniform twins, the entry points' workgroup sizes and named
/// module constants (tile sizes). `tests/kernels/params_reflect.rs` checks
/// all three against the composed module. Each op family declares one:
/// `ShaderSource::new("conv", include_str!("../../kernels/conv.wgsl")).params(..).entries(..)`.
#[derive(Clone, Copy, Debug)]
pub struct ShaderSource {
    pub name: &'static str,
    pub source: &'static str,
    pub params: &'static [&'static ParamsLayout],
    pub entries: &'static [EntryPoint],
    pub consts: &'static [(&'static str, u32)],
}

impl ShaderSource {
    pub const fn new(name: &'static str, source: &'static str) -> Self {
        ShaderSource { name, source, params: &[], entries: &[], consts: &[] }
    }
    pub const fn params(self, params: &'static [&'static ParamsLayout]) -> Self {
        ShaderSource { params, ..self }
    }
    pub const fn entries(self, entries: &'static [EntryPoint]) -> Self {
        ShaderSource { entries, ..self }
    }
    pub const fn consts(self, consts: &'static [(&'static str, u32)]) -> Self {
        ShaderSource { consts, ..self }
    }
}

/// A composed module: its WGSL text and a hash of it (part of the cache keys).
#[derive(Debug)]
pub struct Composed {
    pub text: String,
    pub hash: u64,
}

/// The prelude as composed into every kernel: generated constants, then the file.
pub fn prelude_text() -> String {
    let mut s = String::from("// ---- prelude: constants from src/gpu/codes.rs, then kernels/prelude.wgsl ----\n");
    for table in std::iter::once(PRELUDE_CONSTS).chain(CODE_TABLES.iter().copied()) {
        for (name, value) in table {
            s.push_str(&format!("const {name}: u32 = {value}u;\n"));
        }
    }
    s.push_str(PRELUDE);
    s.push_str("// ---- end of prelude ----\n");
    s
}

/// Resolve the `#import prelude` line of a kernel's source.
pub fn compose(shader: &ShaderSource) -> Result<Composed> {
    let mut text = String::with_capacity(shader.source.len() + PRELUDE.len() + 1024);
    let mut imported = false;
    for (i, line) in shader.source.lines().enumerate() {
        let t = line.trim();
        if t == IMPORT && !imported {
            imported = true;
            text.push_str(&prelude_text());
        } else if t.starts_with('#') {
            return Err(Error::Kernel(format!(
                "kernels/{}.wgsl:{}: unknown or repeated directive `{t}` (only one `{IMPORT}` is supported)",
                shader.name,
                i + 1
            )));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    Ok(Composed { text, hash: h.finish() })
}
