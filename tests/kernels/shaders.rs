//! Every kernel module in kernels/ must parse and validate with naga as it is
//! compiled: composed with the prelude (see src/gpu/shader.rs).

use wgsr::gpu::{compose, prelude_text, PRELUDE_NAME};
use wgsr::ops::KERNELS;

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
        let src = compose(shader).unwrap_or_else(|e| panic!("{}: {e}", path.display())).text;
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{} (composed): {}", path.display(), e.emit_to_string(&src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{} (composed): {}", path.display(), e.emit_to_string(&src)));
        assert!(!module.entry_points.is_empty(), "{} has no entry points", path.display());
        count += 1;
    }
    assert!(count >= 1, "no kernels found in {}", dir.display());
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
