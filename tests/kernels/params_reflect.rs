//! Rust <-> WGSL agreement, checked by reflecting every composed kernel with
//! naga: each uniform struct against its `kernel_params!` twin (member names,
//! offsets, sizes, scalar types), each entry point's workgroup size against
//! the Rust table, the tile constants the Rust side assumes, and the prelude's
//! code constants against the Rust enums. Changing one side alone fails here.

use std::collections::BTreeSet;

use wgsr::gpu::{codes, compose, ParamsLayout, ScalarKind, ShaderSource, PRELUDE_NAME};
use wgsr::ops::KERNELS;

fn parse(shader: &ShaderSource) -> naga::Module {
    let composed = compose(shader).unwrap_or_else(|e| panic!("{}: {e}", shader.name));
    naga::front::wgsl::parse_str(&composed.text)
        .unwrap_or_else(|e| panic!("kernels/{}.wgsl (composed): {}", shader.name, e.emit_to_string(&composed.text)))
}

fn kernel_files() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("wgsl"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
        .filter(|n| n != PRELUDE_NAME)
        .collect()
}

#[test]
fn every_kernel_file_is_registered_with_its_source() {
    let files = kernel_files();
    let registered: BTreeSet<String> = KERNELS.iter().map(|k| k.name.to_string()).collect();
    assert_eq!(files, registered, "kernels/*.wgsl and wgsr::ops::KERNELS differ");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    for k in KERNELS {
        let disk = std::fs::read_to_string(dir.join(format!("{}.wgsl", k.name))).unwrap();
        assert_eq!(disk, k.source, "{}: compiled-in source differs from the file", k.name);
    }
}

fn scalar_kind(module: &naga::Module, ty: naga::Handle<naga::Type>) -> Option<ScalarKind> {
    match module.types[ty].inner {
        naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Uint, width: 4 }) => Some(ScalarKind::U32),
        naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Sint, width: 4 }) => Some(ScalarKind::I32),
        naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Float, width: 4 }) => Some(ScalarKind::F32),
        _ => None,
    }
}

/// Compare one WGSL struct with its twin; returns the mismatches.
fn compare(module: &naga::Module, ty: naga::Handle<naga::Type>, twin: &ParamsLayout) -> Vec<String> {
    let mut bad = Vec::new();
    let (members, span) = match &module.types[ty].inner {
        naga::TypeInner::Struct { members, span } => (members, *span),
        other => return vec![format!("is not a struct: {other:?}")],
    };
    let who = format!("{}::{} vs {}", twin.module, twin.wgsl_struct, twin.rust_type);
    if members.len() != twin.fields.len() {
        bad.push(format!("{who}: WGSL has {} members, Rust {}", members.len(), twin.fields.len()));
    }
    for (i, (m, f)) in members.iter().zip(twin.fields).enumerate() {
        let name = m.name.as_deref().unwrap_or("?");
        let size = module.types[m.ty].inner.size(module.to_ctx()) as usize;
        let kind = scalar_kind(module, m.ty);
        if name != f.name || m.offset as usize != f.offset || size != f.size || kind != Some(f.kind) {
            bad.push(format!(
                "{who}: member {i} is WGSL `{name}` (offset {}, {size} bytes, {kind:?}) but Rust `{}` (offset {}, {} bytes, {:?})",
                m.offset, f.name, f.offset, f.size, f.kind
            ));
        }
    }
    if span as usize != twin.size {
        bad.push(format!("{who}: WGSL struct is {span} bytes, Rust {}", twin.size));
    }
    bad
}

#[test]
fn uniform_structs_match_their_rust_twins() {
    let mut bad = Vec::new();
    for k in KERNELS {
        let module = parse(k);
        let mut seen = BTreeSet::new();
        for (_, g) in module.global_variables.iter() {
            if g.space != naga::AddressSpace::Uniform {
                continue;
            }
            let sname = module.types[g.ty].name.clone().unwrap_or_default();
            let at = g.binding.as_ref().map(|b| (b.group, b.binding));
            if at != Some((0, 0)) {
                bad.push(format!("{}: uniform `{sname}` is bound at {at:?}, the convention is group 0 binding 0", k.name));
            }
            match k.params.iter().find(|t| t.wgsl_struct == sname) {
                Some(twin) => {
                    assert_eq!(twin.module, k.name, "{} lists a twin of another module", k.name);
                    bad.extend(compare(&module, g.ty, twin));
                    seen.insert(sname);
                }
                None => bad.push(format!("{}: uniform struct `{sname}` has no Rust twin in its ShaderSource", k.name)),
            }
        }
        for twin in k.params {
            if !seen.contains(twin.wgsl_struct) {
                bad.push(format!("{}: Rust twin {} names `{}`, which no uniform uses", k.name, twin.rust_type, twin.wgsl_struct));
            }
        }
    }
    assert!(bad.is_empty(), "uniform blocks disagree:\n{}", bad.join("\n"));
}

#[test]
fn workgroup_sizes_match_the_dispatch_code() {
    let mut bad = Vec::new();
    for k in KERNELS {
        let module = parse(k);
        let wgsl: BTreeSet<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
        let rust: BTreeSet<&str> = k.entries.iter().map(|e| e.name).collect();
        if wgsl != rust {
            bad.push(format!("{}: WGSL entry points {wgsl:?}, Rust table {rust:?}", k.name));
        }
        for e in &module.entry_points {
            if let Some(r) = k.entries.iter().find(|r| r.name == e.name) {
                if e.workgroup_size != r.workgroup_size {
                    bad.push(format!("{}::{}: @workgroup_size {:?}, Rust {:?}", k.name, e.name, e.workgroup_size, r.workgroup_size));
                }
            }
        }
    }
    assert!(bad.is_empty(), "workgroup sizes disagree:\n{}", bad.join("\n"));
}

/// Named u32 module constants of a composed module.
fn u32_constant(module: &naga::Module, name: &str) -> Option<u32> {
    let (_, c) = module.constants.iter().find(|(_, c)| c.name.as_deref() == Some(name))?;
    match module.global_expressions[c.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => Some(v),
        ref other => panic!("constant {name} is not a u32 literal: {other:?}"),
    }
}

#[test]
fn constants_match_rust() {
    let mut bad = Vec::new();
    let shared: Vec<(&str, u32)> =
        codes::PRELUDE_CONSTS.iter().chain(codes::CODE_TABLES.iter().flat_map(|t| t.iter())).copied().collect();
    for k in KERNELS {
        let module = parse(k);
        for &(name, want) in shared.iter().chain(k.consts) {
            match u32_constant(&module, name) {
                Some(v) if v == want => {}
                got => bad.push(format!("{}: WGSL const {name} = {got:?}, Rust {want}", k.name)),
            }
        }
    }
    // The enums behind the override constants, by discriminant.
    use codes::{ActCode, BiasMode, ConvMode, SoftmaxMode};
    let by_value = [
        ("ACT_LRELU", ActCode::LeakyRelu as u32),
        ("ACT_SIGMOID", ActCode::Sigmoid as u32),
        ("CONV_TRANSPOSED", ConvMode::Transposed as u32),
        ("SOFTMAX_LOG", SoftmaxMode::LogSoftmax as u32),
        ("BIAS_PER_ROW", BiasMode::PerRow as u32),
    ];
    let conv = parse(KERNELS.iter().find(|k| k.name == "conv").unwrap());
    for (name, want) in by_value {
        assert_eq!(u32_constant(&conv, name), Some(want), "{name}");
    }
    assert!(bad.is_empty(), "constants disagree:\n{}", bad.join("\n"));
}
