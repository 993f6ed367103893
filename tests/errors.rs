//! Errors keep their kind through the graph and model layers: a caller can
//! match `Error::TooLarge` raised deep inside a model graph, and the message
//! still says where it happened. Also the registry's one face for every family.

#[path = "kernels/common.rs"]
mod common;

use std::path::PathBuf;

use common::*;
use wgsr::models::hcflow::HcFlow;
use wgsr::models::registry::{self, Setting};
use wgsr::models::sr3::{Sr3, Sr3Config};
use wgsr::weights::ModelDir;
use wgsr::{Error, Shape};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn too_large_inside_hcflow_graph_stays_too_large() {
    let mut m = HcFlow::load(ctx(), ModelDir::load(fixture("hcflow_sr_x4_tiny")).unwrap()).unwrap();
    // 1024x1024 LR -> a 4096x4096x3 f32 HR buffer (192 MiB): over lavapipe's 128 MiB binding.
    let e = m.profile_reverse(ctx(), Shape::new(1, 3, 1024, 1024), 1).err().expect("must not fit");
    assert!(matches!(e, Error::TooLarge(_)), "{e:?}");
    assert!(e.to_string().contains("MiB"), "{e}");
}

#[test]
fn too_large_inside_sr3_graph_stays_too_large_and_names_the_model() {
    let dir = ModelDir::load(fixture("sr3_tiny")).unwrap();
    let mut cfg = dir.config.clone();
    for key in ["hr_size", "image_size"] {
        cfg[key] = serde_json::json!(4096);
    }
    cfg["lr_size"] = serde_json::json!(1024);
    cfg["unet"]["image_size"] = serde_json::json!(4096);
    let big = ModelDir { path: dir.path.clone(), config: cfg, weights: dir.weights };
    let e = Sr3::load(ctx(), big).err().expect("must not fit");
    assert!(matches!(e, Error::TooLarge(_)), "{e:?}");
    assert!(e.to_string().contains("sr3_tiny"), "context names the model: {e}");
    // Config errors keep the Weights kind and are prefixed once.
    let dir = ModelDir::load(fixture("sr3_tiny")).unwrap();
    let mut bad = dir.config.clone();
    bad["unet"]["res_blocks"] = serde_json::json!(0);
    let e = Sr3Config::from_json(&bad).unwrap_err();
    assert!(matches!(e, Error::Weights(_)), "{e:?}");
    assert_eq!(e.to_string().matches("model files:").count(), 1, "{e}");
}

#[test]
fn error_context_keeps_kind() {
    let e = Error::TooLarge("buffer 3 needs 200 MiB".into()).context("node 'x'").context("model m");
    assert!(matches!(e, Error::TooLarge(_)));
    assert_eq!(e.to_string(), "too large for this device: model m: node 'x': buffer 3 needs 200 MiB");
}

#[test]
fn registry_loads_every_family_with_its_data() {
    let cases = [
        ("hcflow_sr_x4_tiny", "hcflow", 4, None, true, false),
        ("hcflow_rescale_x4_tiny", "hcflow", 4, None, true, true),
        ("sr3_tiny", "sr3", 4, Some((4, 4)), false, false),
        ("pixelcnn_tiny", "pixelcnn", 4, None, true, false),
    ];
    for (name, fam, scale, fixed, temperature, downscale) in cases {
        let m = registry::load(ctx(), ModelDir::load(fixture(name)).unwrap()).unwrap();
        assert_eq!(m.family().name, fam, "{name}");
        assert_eq!(m.scale(), scale, "{name}");
        if fixed.is_some() {
            assert_eq!(m.fixed_lr_size(), fixed, "{name}");
        }
        assert_eq!(m.family().settings.contains(&Setting::Temperature), temperature, "{name}");
        assert_eq!(m.can_downscale(), downscale, "{name}");
    }
    let dir = ModelDir::load(fixture("sr3_tiny")).unwrap();
    let mut cfg = dir.config.clone();
    cfg["arch"] = serde_json::json!("esrgan");
    let e = registry::load(ctx(), ModelDir { path: dir.path, config: cfg, weights: dir.weights }).err().unwrap();
    assert!(matches!(e, Error::Weights(_)) && e.to_string().contains("unknown model family 'esrgan'"), "{e}");
}

#[test]
fn a_missing_bias_is_an_error_not_a_zero() {
    let dir = ModelDir::load(fixture("hcflow_sr_x4_tiny")).unwrap();
    let missing = "flow.level0_condFlow.RRDB_trunk0.0.RDB1.conv1.bias";
    let mut ws = wgsr::weights::WeightStore::new();
    for name in dir.weights.names().filter(|n| *n != missing) {
        ws.insert(name, dir.weights.get(name, None).unwrap().clone());
    }
    let md = ModelDir { path: dir.path.clone(), config: dir.config.clone(), weights: ws };
    let mut m = registry::load(ctx(), md).unwrap();
    let lr = wgsr::image_io::RgbImage::new(3, 2, vec![0.5; 18]).unwrap();
    let e = m.upscale(ctx(), &lr, &Default::default(), &mut |_| {}).err().expect("a model without a bias must not run");
    assert!(matches!(e, Error::Weights(_)), "{e:?}");
    assert!(e.to_string().contains(missing), "{e}");
}

#[test]
fn an_undeclared_runtime_parameter_is_an_error_not_nan() {
    use wgsr::graph::ops::Scalar;
    use wgsr::graph::ParamValues;
    let mut p = ParamValues::new();
    let e = Scalar::param("heat").value(&p).unwrap_err();
    assert!(matches!(e, Error::Graph(_)) && e.to_string().contains("'heat'"), "{e}");
    p.insert("heat".into(), 0.5);
    assert_eq!(Scalar::param("heat").value(&p).unwrap(), 0.5);
    assert_eq!(Scalar::Const(2.0).value(&p).unwrap(), 2.0);
}

#[test]
fn overflowing_weights_are_an_error_not_a_constant_image() {
    // A finite but absurd weight (3e38) overflows inside the graph; the
    // clamp keeps the non-finite value and the model refuses the output.
    let dir = ModelDir::load(fixture("hcflow_sr_x4_tiny")).unwrap();
    let key = "flow.level1_condFlow.conv_first.weight";
    let mut ws = wgsr::weights::WeightStore::new();
    for name in dir.weights.names() {
        let mut t = dir.weights.get(name, None).unwrap().clone();
        if name == key {
            t.data.iter_mut().for_each(|v| *v = 3e38);
        }
        ws.insert(name, t);
    }
    let mut m = registry::load(ctx(), ModelDir { path: dir.path.clone(), config: dir.config.clone(), weights: ws }).unwrap();
    let lr = wgsr::image_io::RgbImage::new(3, 2, (0..18).map(|i| i as f32 / 18.0).collect()).unwrap();
    let opts = wgsr::models::UpscaleOptions { temperature: Some(0.0), ..Default::default() };
    let e = m.upscale(ctx(), &lr, &opts, &mut |_| {}).err().expect("an overflowing model must not give an image");
    assert!(e.to_string().contains("non-finite"), "{e}");
}
