//! Every kernel module in kernels/ must parse and validate with naga as it is
//! compiled: composed with the prelude (see src/gpu/shader.rs), in every
//! storage variant tested (all f32, all f16, two mixed). WGSL has no
//! implicit conversions, so a load not widened to f32 or a store not rounded
//! to the binding's `name_t` fails here in the f16 variants. Each variant is
//! composed for both device traits: with subgroups, and plain, which must
//! validate without naga's subgroup capabilities (what a device without
//! them compiles).

use wgsr::gpu::{binding_classes, compose, compose_for, prelude_text, BindingClass, Storage, Traits, PRELUDE_NAME};
use wgsr::ops::KERNELS;

/// All f32, all f16, and alternating bindings (mixed variants: f16
/// activations with f32 scratch, f16 weights with f32 operands).
const VARIANTS: [Storage; 4] = [Storage::F32, Storage::F16, Storage(0x5555_5555), Storage(0xAAAA_AAAA)];

#[test]
fn every_kernel_file_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap();
        if stem == PRELUDE_NAME {
            continue;
        }
        let shader = KERNELS.iter().find(|k| k.name == stem).unwrap_or_else(|| panic!("{} is not in wgsr::ops::KERNELS", path.display()));
        for storage in VARIANTS {
            for traits in [Traits::ALL, Traits::PLAIN] {
                let src = compose_for(shader, storage, traits).unwrap_or_else(|e| panic!("{}: {e}", path.display())).text;
                let module = naga::front::wgsl::parse_str(&src)
                    .unwrap_or_else(|e| panic!("{} ({storage:?}, {traits:?}): {}", path.display(), e.emit_to_string(&src)));
                let caps = if traits.subgroups { Capabilities::all() } else { no_subgroups() };
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
                    .validate(&module)
                    .unwrap_or_else(|e| panic!("{} ({storage:?}, {traits:?}): {}", path.display(), e.emit_to_string(&src)));
                assert!(!module.entry_points.is_empty(), "{} has no entry points", path.display());
            }
        }
        count += 1;
    }
    assert!(count >= 1, "no kernels found in {}", dir.display());
}

use naga::valid::Capabilities;

fn no_subgroups() -> Capabilities {
    Capabilities::all() - (Capabilities::SUBGROUP | Capabilities::SUBGROUP_BARRIER | Capabilities::SUBGROUP_VERTEX_STAGE)
}

#[test]
fn subgroup_code_needs_the_capability() {
    // The check above is only worth something if naga refuses subgroup code
    // without the capability.
    let src = "@compute @workgroup_size(8) fn main(@builtin(subgroup_invocation_id) sl: u32) { let v = subgroupBroadcast(f32(sl), 0u); }\n";
    let module = naga::front::wgsl::parse_str(src).unwrap();
    assert!(naga::valid::Validator::new(naga::valid::ValidationFlags::all(), no_subgroups()).validate(&module).is_err());
    assert!(naga::valid::Validator::new(naga::valid::ValidationFlags::all(), Capabilities::all()).validate(&module).is_ok());
}

#[test]
fn trait_directives_pick_one_branch() {
    let src = "#import prelude\nconst A: u32 = 0u;\n#if subgroups\nconst B: u32 = 1u;\n#else\nconst B: u32 = 2u;\n#endif\nconst C: u32 = 3u;\n";
    let shader = wgsr::gpu::ShaderSource::new("t", src);
    let on = compose_for(&shader, Storage::F32, Traits::ALL).unwrap().text;
    let off = compose_for(&shader, Storage::F32, Traits::PLAIN).unwrap().text;
    assert!(on.contains("const B: u32 = 1u;") && !on.contains("const B: u32 = 2u;"));
    assert!(off.contains("const B: u32 = 2u;") && !off.contains("const B: u32 = 1u;"));
    for t in [&on, &off] {
        assert!(t.contains("const A: u32 = 0u;") && t.contains("const C: u32 = 3u;") && !t.contains("#if") && !t.contains("#e"));
    }
    // compose / compose_as are the plain composition.
    assert_eq!(compose(&shader).unwrap().text, off);
    for bad in [
        "#if subgroups\n#if subgroups\n#endif\n#endif\n",
        "#if subgroups\n",
        "#if subgroups\n#else\n#else\n#endif\n",
        "#else\n",
        "#endif\n",
        "#if wide_lanes\n#endif\n",
    ] {
        let shader = wgsr::gpu::ShaderSource::new("bad", bad);
        for traits in [Traits::ALL, Traits::PLAIN] {
            assert!(compose_for(&shader, Storage::F32, traits).is_err(), "{bad:?} composed");
        }
    }
}

#[test]
fn prelude_validates_alone() {
    // The prelude with its generated constants is a valid module by itself
    // (no entry points), so an error in it is reported against it.
    let src = prelude_text();
    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("prelude: {}", e.emit_to_string(&src)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("prelude: {}", e.emit_to_string(&src)));
}

#[test]
fn composing_rejects_unknown_directives() {
    let bad = wgsr::gpu::ShaderSource::new("bad", "#import other\n@compute @workgroup_size(1) fn main() {}\n");
    assert!(compose(&bad).is_err());
    let twice = wgsr::gpu::ShaderSource::new("twice", "#import prelude\n#import prelude\n");
    assert!(compose(&twice).is_err());
}

#[test]
fn binding_classes_follow_the_declared_types() {
    let src = "@group(0) @binding(1) var<storage, read> x: array<x_t>;\n\
               @group(0) @binding(2) var<storage, read> w: array<vec4<w_t>>;\n\
               @group(0) @binding(3) var<storage, read> taps: array<u32>;\n\
               @group(0) @binding(4) var<storage, read_write> y: array<f32>;\n";
    let c = binding_classes(src);
    let classes: Vec<(u32, &str, BindingClass)> = c.iter().map(|(k, n, c)| (*k, n.as_str(), *c)).collect();
    assert_eq!(
        classes,
        vec![(1, "x", BindingClass::Typed), (2, "w", BindingClass::Typed), (3, "taps", BindingClass::Fixed), (4, "y", BindingClass::Fixed)]
    );
    // Every registered kernel's storage bindings are all found (none missed
    // by the parser): as many as `var<storage` declarations in the file.
    for k in KERNELS {
        let declared = k.source.matches("var<storage").count();
        assert_eq!(binding_classes(k.source).len(), declared, "kernels/{}.wgsl", k.name);
    }
}
