//! Safe concurrent and repeated use (issue 15): the types a game shares are
//! `Send + Sync`, two models on one context run from several threads give
//! exactly the single-threaded results (repeated runs: tests/repeated_runs.rs).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wgsr::image_io::RgbImage;
use wgsr::models::hcflow::HcFlow;
use wgsr::models::pixelcnn::PixelCnn;
use wgsr::models::sr3::Sr3;
use wgsr::models::{registry, Model, UpscaleOptions};
use wgsr::weights::ModelDir;
use wgsr::GpuContext;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn shared_types_are_send_and_sync() {
    assert_send_sync::<GpuContext>();
    assert_send_sync::<HcFlow>();
    assert_send_sync::<Sr3>();
    assert_send_sync::<PixelCnn>();
    assert_send_sync::<wgsr::graph::Executor>();
    assert_send::<Box<dyn Model>>();
}

fn image(seed: u32) -> RgbImage {
    let data = (0..18).map(|i| ((i as u32 * 37 + seed * 11) % 97) as f32 / 96.0).collect();
    RgbImage::new(3, 2, data).unwrap()
}

#[test]
fn two_models_on_one_context_from_several_threads_match_single_threaded() {
    let ctx = Arc::new(GpuContext::new().unwrap_or_else(|e| panic!("{e}")));
    let load = |name: &str| registry::load(&ctx, ModelDir::load(fixture(name)).unwrap()).unwrap();
    let opts = UpscaleOptions { temperature: Some(0.8), seed: 5, ..Default::default() };
    let inputs: Vec<RgbImage> = (0..4).map(image).collect();
    // Single-threaded references.
    let mut sr = load("hcflow_sr_x4_tiny");
    let mut rs = load("hcflow_rescale_x4_tiny");
    let want_sr: Vec<Vec<f32>> = inputs.iter().map(|x| sr.upscale(&ctx, x, &opts, &mut |_| {}).unwrap()[0].data.clone()).collect();
    let want_rs: Vec<Vec<f32>> = inputs.iter().map(|x| rs.upscale(&ctx, x, &opts, &mut |_| {}).unwrap()[0].data.clone()).collect();
    // Four threads share the context and the two models (each behind a mutex,
    // as a game would hold a model it calls from several systems).
    let models = [Arc::new(Mutex::new(sr)), Arc::new(Mutex::new(rs))];
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (ctx, models, inputs, opts) = (ctx.clone(), models.clone(), inputs.clone(), opts.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for round in 0..3 {
                    let k = (t + round) % 4;
                    let which = (t + round) % 2;
                    let mut m = models[which].lock().unwrap();
                    got.push((which, k, m.upscale(&ctx, &inputs[k], &opts, &mut |_| {}).unwrap()[0].data.clone()));
                }
                got
            })
        })
        .collect();
    for h in handles {
        for (which, k, data) in h.join().unwrap() {
            let want = if which == 0 { &want_sr[k] } else { &want_rs[k] };
            assert_eq!(&data, want, "model {which}, input {k}: threaded result differs");
        }
    }
}
