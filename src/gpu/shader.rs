//! Kernel modules and their composition with the shared WGSL prelude.
//!
//! A kernel file starts with the line `#import prelude`; [`compose`] replaces
//! it with the constants generated from Rust ([`super::codes`]) followed by
//! `kernels/prelude.wgsl` (index helpers, workgroup reductions, activations,
//! the couplings' log-scale).
//! The only other directives are `#if subgroups` / `#else` / `#endif` (one
//! level): code that needs subgroup operations and its plain twin. Which side
//! is kept is a device trait ([`Traits`]), so one context composes each
//! kernel one way. The composed text is what naga validates, what wgpu
//! compiles and what the pipeline cache is keyed by (name + hash).
//!
//! Storage types: a binding `x` declared `array<x_t>` (or `array<vec4<x_t>>`)
//! is typed: [`compose_as`] defines `x_t` as f32 or f16 (then with
//! `enable f16;`) per binding, from a [`Storage`] mask. Kernels widen on load
//! (`f32(x[i])`) and round on store (`y[i] = y_t(v)`), so arithmetic is f32 in
//! every variant and any mix of f32 and f16 tensors works (f16 activations
//! with f32 scratch, f16 weights with f32 Winograd operands). Every other
//! binding (`array<f32>`, `array<u32>`: per-channel tables, partial sums,
//! indices) is fixed. The dispatch reads each binding's class
//! ([`binding_classes`]) and derives the variant from the tensors it is given.

use std::hash::{Hash, Hasher};

use crate::gpu::codes::{CODE_TABLES, PRELUDE_CONSTS, WG};
use crate::gpu::ParamsLayout;
use crate::tensor::Dtype;
use crate::{Error, Result};

/// Storage variant of a composed kernel: bit k set = binding k holds f16
/// (only typed bindings may). `Storage::F32` is the plain kernel.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Storage(pub u32);

impl Storage {
    pub const F32: Storage = Storage(0);
    /// Every typed binding f16.
    pub const F16: Storage = Storage(u32::MAX);
    pub fn dtype(self, binding: u32) -> Dtype {
        if binding < 32 && self.0 & (1 << binding) != 0 {
            Dtype::F16
        } else {
            Dtype::F32
        }
    }
    pub fn with(self, binding: u32, dtype: Dtype) -> Storage {
        match dtype {
            Dtype::F16 => Storage(self.0 | 1 << binding),
            Dtype::F32 => Storage(self.0 & !(1 << binding)),
        }
    }
}

/// Device traits a kernel's text may depend on (`#if` directives). They
/// are the same for every kernel of one context.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Traits {
    /// Subgroup operations are available and every subgroup has at least 8
    /// lanes (lavapipe: 8 or 16, one per SIMD lane), so a kernel may keep 8
    /// values in one subgroup and broadcast them (`#if subgroups`).
    pub subgroups: bool,
}

impl Traits {
    /// Every trait off: the text any WebGPU device compiles.
    pub const PLAIN: Traits = Traits { subgroups: false };
    /// Every trait on.
    pub const ALL: Traits = Traits { subgroups: true };
}

/// What a storage binding's element type is declared as.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BindingClass {
    /// `array<name_t>`: f32 or f16 per call.
    Typed,
    /// A concrete 32-bit type (f32, u32, vec4<f32>, ...).
    Fixed,
}

/// Class of every `@binding(k) var<storage ...> name: T;` of a kernel
/// source, as (k, name, class).
pub fn binding_classes(source: &str) -> Vec<(u32, String, BindingClass)> {
    let mut out = Vec::new();
    for line in source.lines() {
        let t = line.trim();
        let Some(rest) = t.strip_prefix("@group(0) @binding(") else { continue };
        let Some((k, rest)) = rest.split_once(')') else { continue };
        let Ok(k) = k.trim().parse::<u32>() else { continue };
        if !rest.contains("var<storage") {
            continue;
        }
        let Some((_, decl)) = rest.split_once('>') else { continue };
        let Some((name, ty)) = decl.split_once(':') else { continue };
        let ty = ty.split(';').next().unwrap_or("");
        let name = name.trim();
        let tokens: Vec<&str> = ty.split(|c: char| !c.is_alphanumeric() && c != '_').filter(|s| !s.is_empty()).collect();
        let class = if tokens.contains(&format!("{name}_t").as_str()) { BindingClass::Typed } else { BindingClass::Fixed };
        out.push((k, name.to_string(), class));
    }
    out
}

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

/// Resolve the `#import prelude` line of a kernel's source (f32 storage).
pub fn compose(shader: &ShaderSource) -> Result<Composed> {
    compose_as(shader, Storage::F32)
}

/// Resolve the `#import prelude` line with each typed binding's `name_t`
/// defined for `storage` (f32 where its bit is clear), for a device without
/// optional traits.
pub fn compose_as(shader: &ShaderSource, storage: Storage) -> Result<Composed> {
    compose_for(shader, storage, Traits::PLAIN)
}

/// [`compose_as`] for a device with `traits`: `#if subgroups` blocks are kept
/// when `traits.subgroups`, their `#else` blocks otherwise.
pub fn compose_for(shader: &ShaderSource, storage: Storage, traits: Traits) -> Result<Composed> {
    let mut text = String::with_capacity(shader.source.len() + PRELUDE.len() + 1024);
    let typed: Vec<(u32, String)> =
        binding_classes(shader.source).into_iter().filter(|b| b.2 == BindingClass::Typed).map(|(k, n, _)| (k, n)).collect();
    if typed.iter().any(|(k, _)| storage.dtype(*k) == Dtype::F16) {
        text.push_str("enable f16;\n");
    }
    let mut imported = false;
    // Inside an `#if`: Some((keep the current branch, past its `#else`)).
    let mut cond: Option<(bool, bool)> = None;
    let err = |i: usize, what: &str| Error::Kernel(format!("kernels/{}.wgsl:{}: {what}", shader.name, i + 1));
    for (i, line) in shader.source.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("#if ") {
            if cond.is_some() {
                return Err(err(i, "nested `#if` (one level only)"));
            }
            let keep = match name.trim() {
                "subgroups" => traits.subgroups,
                other => return Err(err(i, &format!("unknown trait `{other}` (known: subgroups)"))),
            };
            cond = Some((keep, false));
            continue;
        }
        if t == "#else" {
            cond = match cond {
                Some((keep, false)) => Some((!keep, true)),
                Some((_, true)) => return Err(err(i, "second `#else` in one `#if`")),
                None => return Err(err(i, "`#else` without `#if`")),
            };
            continue;
        }
        if t == "#endif" {
            cond.take().ok_or_else(|| err(i, "`#endif` without `#if`"))?;
            continue;
        }
        if cond.is_some_and(|(keep, _)| !keep) {
            continue;
        }
        if t == IMPORT && !imported {
            imported = true;
            text.push_str("// storage types of this variant (src/gpu/shader.rs)\n");
            for (k, name) in &typed {
                text.push_str(&format!("alias {name}_t = {};\n", storage.dtype(*k).wgsl()));
            }
            text.push_str(&prelude_text());
        } else if t.starts_with('#') {
            return Err(Error::Kernel(format!(
                "kernels/{}.wgsl:{}: unknown or repeated directive `{t}` (supported: one `{IMPORT}`, and `#if subgroups` / `#else` / `#endif`)",
                shader.name,
                i + 1
            )));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    if cond.is_some() {
        return Err(Error::Kernel(format!("kernels/{}.wgsl: `#if` without `#endif`", shader.name)));
    }
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    Ok(Composed { text, hash: h.finish() })
}
