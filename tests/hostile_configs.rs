//! Hostile and nonsense HCFlow configs (issue 15's corpus, config part):
//! every one is refused at load with the field named, before any graph is
//! built or anything is allocated for it.

use std::path::PathBuf;

use serde_json::{json, Value};
use wgsr::models::hcflow::HcFlow;
use wgsr::weights::ModelDir;
use wgsr::Error;

fn fixture() -> ModelDir {
    ModelDir::load(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hcflow_sr_x4_tiny")).unwrap()
}

fn refused(edit: impl Fn(&mut Value), needle: &str) {
    let dir = fixture();
    let mut cfg = dir.config.clone();
    edit(&mut cfg);
    let e = HcFlow::from_parts(&cfg, dir.weights).err().unwrap_or_else(|| panic!("config accepted; expected an error naming {needle}"));
    assert!(matches!(e, Error::Weights(_)), "{e:?}");
    let m = e.to_string();
    assert!(m.contains(needle), "{m}");
    assert_eq!(m.matches("model files:").count(), 1, "prefix once: {m}");
    assert!(!m.contains('{'), "no debug text: {m}");
}

#[test]
fn nonsense_hcflow_configs_are_refused_with_the_field_named() {
    // The tiny fixture itself loads.
    let dir = fixture();
    HcFlow::from_parts(&dir.config, dir.weights).unwrap();

    refused(|c| c["K"] = json!([0, 0]), "K.0");
    refused(|c| c["K"] = json!([4]), "K");
    refused(|c| c["split"]["after_flowstep"] = json!([5, 1]), "K.0");
    refused(|c| c["split"]["enable"] = json!(false), "split.enable");
    refused(|c| c["coupling"]["hidden"] = json!(1_000_000_000_000u64), "coupling.hidden");
    refused(|c| c["coupling"]["hidden"] = json!(17), "coupling.hidden");
    refused(|c| c["split_off"]["coupling"]["hidden"] = json!(13), "split_off.coupling.hidden");
    refused(|c| c["rrdb"]["gc"] = json!(5), "rrdb.gc");
    refused(|c| c["rrdb"]["nf"] = json!(1_000_000_000_000u64), "rrdb.nf");
    refused(|c| c["rrdb"]["nb"] = json!([2, 1]), "rrdb.nb.0");
    refused(|c| c["L"] = json!(1_000_000_000_000u64), "L");
    refused(|c| c["L"] = json!(-1), "L");
    refused(|c| c["default_heat"] = json!(1e30), "default_heat");
    refused(|c| c["default_ensemble"] = json!(3), "default_ensemble");
    refused(|c| c["default_ensemble"] = json!(-8), "default_ensemble");
    refused(|c| c["format_version"] = json!(7), "format_version");
    refused(|c| c["coupling"]["hiden"] = json!(16), "coupling.hiden");
    refused(|c| c["levels"][0]["main_layers"] = json!([1, 5]), "levels.0");
    refused(|c| c["levels"][1]["downscale"] = json!(2), "levels.1");
    refused(|c| c["split_off"]["prior"] = json!("gaussian_atan"), "split_off.prior");
    refused(|c| c["rrdb"]["nb"] = json!("many"), "rrdb.nb");
}

#[test]
fn oversized_pixelcnn_and_sr3_configs_are_refused_before_any_allocation() {
    use wgsr::models::pixelcnn::PixelCnnConfig;
    use wgsr::models::sr3::Sr3Config;
    let dir = |n: &str| ModelDir::load(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(n)).unwrap();
    let px = dir("pixelcnn_tiny");
    for (field, v) in [("prior_blocks", json!(1_000_000_000_000u64)), ("cond_res_per_stage", json!(1_000_000_000_000u64)), ("prior_hidden", json!(1u64 << 40))] {
        let mut c = px.config.clone();
        c["model"][field] = v;
        let t = std::time::Instant::now();
        let e = PixelCnnConfig::from_json(&c).err().unwrap_or_else(|| panic!("{field} accepted"));
        assert!(e.to_string().contains(field) && t.elapsed().as_secs() < 1, "{e}");
    }
    let mut c = px.config.clone();
    c["model"]["prior_blok"] = json!(3);
    assert!(PixelCnnConfig::from_json(&c).unwrap_err().to_string().contains("model.prior_blok"));
    let sr = dir("sr3_tiny");
    for (path, v) in [("res_blocks", json!(1u64 << 40)), ("inner_channel", json!(1u64 << 40))] {
        let mut c = sr.config.clone();
        c["unet"][path] = v;
        let e = Sr3Config::from_json(&c).err().unwrap_or_else(|| panic!("{path} accepted"));
        assert!(e.to_string().contains(path), "{e}");
    }
    let mut c = sr.config.clone();
    c["schedule"]["n_timestep"] = json!(u64::MAX);
    assert!(Sr3Config::from_json(&c).unwrap_err().to_string().contains("n_timestep"));
    let mut c = sr.config.clone();
    c["unet"]["attn_rez"] = json!([8]);
    assert!(Sr3Config::from_json(&c).unwrap_err().to_string().contains("unet.attn_rez"));
}
