//! Pixel Recursive SR against the PyTorch reference (tools/pixelcnn_ref.py,
//! fixture from tools/make_pixelcnn_fixtures.py): logits within 1e-4, the
//! sampler's draws exactly the reference sampler's for a fixed uniform
//! stream, every sampler (naive, row, cached) bit-identical to the naive one
//! (tiny fixture and the paper's architecture, batch > 1, T = 0 and > 0),
//! T -> 0 == greedy, and clear errors for bad input.

#[path = "kernels/common.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use wgsr::image_io::RgbImage;
use wgsr::models::pixelcnn::{random_weights, PixelCnn, PixelCnnConfig, PixelCnnOptions, Sampler};
use wgsr::ops::rng::host_uniform;
use wgsr::weights::{read_safetensors_f64, HostTensor, ModelDir, WeightStore};
use wgsr::Error;

type Golden = BTreeMap<String, (Vec<usize>, Vec<f64>)>;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pixelcnn_tiny")
}

fn golden() -> Golden {
    read_safetensors_f64(dir().join("golden.safetensors")).unwrap()
}

fn g32(g: &Golden, k: &str) -> Vec<f32> {
    g.get(k).unwrap_or_else(|| panic!("golden has no '{k}'")).1.iter().map(|&v| v as f32).collect()
}

fn model() -> PixelCnn {
    PixelCnn::load(ctx(), ModelDir::load(dir()).unwrap()).unwrap()
}

/// Image n of a [N, ...] golden tensor.
fn item(v: &[f32], n: usize, count: usize) -> Vec<f32> {
    let per = v.len() / count;
    v[n * per..(n + 1) * per].to_vec()
}

#[test]
fn logits_match_reference() {
    let g = golden();
    let mut m = model();
    let a = m.cond_logits(ctx(), &g32(&g, "lr"), 2).unwrap();
    assert_close("cond logits A", &a, &g["cond_logits"].1, 1e-4, 0.0);
    let b = m.prior_logits(ctx(), &g32(&g, "hr"), 2).unwrap();
    assert_close("prior logits B (partial HR)", &b, &g["prior_logits"].1, 1e-4, 0.0);
}

fn values(v: &[u8]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

const SAMPLERS: [Sampler; 3] = [Sampler::Naive, Sampler::Row, Sampler::Cached];

#[test]
fn samplers_draw_the_reference_values() {
    let g = golden();
    let mut m = model();
    let (lr, u) = (g32(&g, "lr"), g32(&g, "uniforms"));
    for (name, t) in [("t1", 1.0f32), ("t0.8", 0.8), ("t0", 0.0)] {
        let want = g32(&g, &format!("samples_{name}"));
        println!("T={t}: reference draw margin {:.3e}", g[&format!("margin_{name}")].1[0]);
        for n in 0..2 {
            let (lr_n, u_n, want_n) = (item(&lr, n, 2), item(&u, n, 2), item(&want, n, 2));
            let naive = m.sample(ctx(), &lr_n, &u_n, 1, t, Sampler::Naive, usize::MAX, &mut |_, _| {}).unwrap();
            assert_exact(&format!("naive sampler T={t} image {n}"), &values(&naive), &want_n);
            for s in [Sampler::Row, Sampler::Cached] {
                let got = m.sample(ctx(), &lr_n, &u_n, 1, t, s, usize::MAX, &mut |_, _| {}).unwrap();
                assert_eq!(got, naive, "{s:?} and naive samplers differ at T={t}, image {n}");
            }
        }
    }
}

#[test]
fn batched_samples_and_low_temperature() {
    let g = golden();
    let mut m = model();
    let (lr, u) = (g32(&g, "lr"), g32(&g, "uniforms"));
    let lr0 = item(&lr, 0, 2);
    for t in [1.0f32, 0.0] {
        // Two samples of one LR in one batch = two separate runs with those uniforms, for every sampler.
        let naive = m.sample(ctx(), &lr0, &u, 2, t, Sampler::Naive, usize::MAX, &mut |_, _| {}).unwrap();
        for s in SAMPLERS {
            let both = m.sample(ctx(), &lr0, &u, 2, t, s, usize::MAX, &mut |_, _| {}).unwrap();
            assert_eq!(both, naive, "{s:?} batch of 2 at T={t} differs from the naive batch");
            for k in 0..2 {
                let one = m.sample(ctx(), &lr0, &item(&u, k, 2), 1, t, s, usize::MAX, &mut |_, _| {}).unwrap();
                assert_eq!(&both[k * one.len()..(k + 1) * one.len()], one.as_slice(), "{s:?} batched sample {k} at T={t}");
            }
        }
        if t > 0.0 {
            assert_ne!(naive[..naive.len() / 2], naive[naive.len() / 2..], "different uniforms gave identical samples");
        }
    }
    // T -> 0 is greedy: the fixture's argmax gaps are >= 1e-3, so T = 1e-5 leaves rivals exp(-100).
    let greedy = item(&g32(&g, "samples_t0"), 0, 2);
    let cold = m.sample(ctx(), &lr0, &item(&u, 0, 2), 1, 1e-5, Sampler::Cached, usize::MAX, &mut |_, _| {}).unwrap();
    assert_exact("T=1e-5 vs greedy", &values(&cold), &greedy);
}

/// The paper's prior (20 gated blocks x 32 channels, 7x7 input, 5x5
/// vertical, 1x5 horizontal, hidden 1024) with random masked weights on a
/// 2x2 -> 8x8 image (the naive sampler is slow at 32x32): the first two rows
/// and two pixels of the third (every colour, both row boundaries, columns at
/// and away from the image edges), batch 2, T = 0 and T = 0.8.
#[test]
fn samplers_agree_on_the_paper_architecture() {
    let cfg = PixelCnnConfig { lr_h: 2, lr_w: 2, ..Default::default() };
    let mut m = PixelCnn::from_parts(ctx(), cfg.clone(), random_weights(&cfg, 1000).unwrap()).unwrap();
    let (h, w) = (cfg.hr_h(), cfg.hr_w());
    let prefix = 3 * (2 * w + 2);
    let lr: Vec<f32> = host_uniform(7, 0, 3 * 4).iter().map(|&x| (x * 255.0).floor()).collect();
    let u = host_uniform(3, 0, 2 * 3 * h * w);
    for t in [0.0f32, 0.8] {
        let naive = m.sample(ctx(), &lr, &u, 2, t, Sampler::Naive, prefix, &mut |_, _| {}).unwrap();
        assert!(naive.iter().any(|&v| v != 0), "the prefix drew only zeros at T={t}");
        for s in [Sampler::Row, Sampler::Cached] {
            let got = m.sample(ctx(), &lr, &u, 2, t, s, prefix, &mut |_, _| {}).unwrap();
            assert_eq!(got, naive, "{s:?} and naive samplers differ on the paper architecture at T={t}");
        }
    }
    // The cached sampler runs the whole image too (and is deterministic).
    let a = m.sample(ctx(), &lr, &u, 2, 0.8, Sampler::Cached, usize::MAX, &mut |_, _| {}).unwrap();
    let b = m.sample(ctx(), &lr, &u, 2, 0.8, Sampler::Cached, usize::MAX, &mut |_, _| {}).unwrap();
    assert_eq!(a, b);
}

/// A stack too wide for the fused `gated_stack` kernel (C = 130 > 128): the
/// cached sampler composes the per-block ops instead, with the same bits.
#[test]
fn samplers_agree_when_the_stack_is_not_fused() {
    let cfg = PixelCnnConfig { lr_h: 1, lr_w: 1, prior_channels: 130, prior_blocks: 2, prior_hidden: 16, ..Default::default() };
    assert!(!wgsr::ops::gated_stack::GatedStack::supports(cfg.prior_channels, cfg.prior_h_kernel));
    let mut m = PixelCnn::from_parts(ctx(), cfg.clone(), random_weights(&cfg, 1001).unwrap()).unwrap();
    let (h, w) = (cfg.hr_h(), cfg.hr_w());
    let lr: Vec<f32> = host_uniform(8, 0, 3).iter().map(|&x| (x * 255.0).floor()).collect();
    let u = host_uniform(4, 0, 2 * 3 * h * w);
    // Row 0 and two pixels of row 1: both row boundaries and the window edge.
    let prefix = 3 * (w + 2);
    let naive = m.sample(ctx(), &lr, &u, 2, 0.8, Sampler::Naive, prefix, &mut |_, _| {}).unwrap();
    assert!(naive.iter().any(|&v| v != 0), "the prefix drew only zeros");
    let cached = m.sample(ctx(), &lr, &u, 2, 0.8, Sampler::Cached, prefix, &mut |_, _| {}).unwrap();
    assert_eq!(cached, naive, "the unfused cached sampler and the naive one differ");
}

#[test]
fn upscale_api_samplers_agree() {
    let g = golden();
    let mut m = model();
    let lr = item(&g32(&g, "lr"), 1, 2);
    let img = RgbImage::new(1, 2, lr.iter().map(|v| v / 255.0).collect()).unwrap();
    let mut calls = Vec::new();
    let opts = PixelCnnOptions { temperature: 0.9, seed: 7, samples: 3, ..Default::default() };
    assert_eq!(opts.sampler, Sampler::Cached, "the cached sampler is the default");
    let fast = m.upscale(ctx(), &img, &opts, &mut |d, t| calls.push((d, t))).unwrap();
    assert_eq!(calls.len(), 96);
    assert_eq!(calls.last(), Some(&(96, 96)));
    assert_eq!(fast.len(), 3);
    for s in [Sampler::Naive, Sampler::Row] {
        let other = m.upscale(ctx(), &img, &PixelCnnOptions { sampler: s, ..opts }, &mut |_, _| {}).unwrap();
        for (k, (f, n)) in fast.iter().zip(&other).enumerate() {
            assert_eq!((f.width, f.height), (4, 8));
            assert_eq!(f, n, "sample {k}: {s:?} and cached differ for the same seed");
            assert!(f.data.iter().all(|&v| (v * 255.0).round() == v * 255.0 && (0.0..=1.0).contains(&v)));
        }
    }
    assert_ne!(fast[0], fast[1], "samples of one batch must differ");
    let again = m.upscale(ctx(), &img, &PixelCnnOptions { samples: 1, ..opts }, &mut |_, _| {}).unwrap();
    assert_eq!(again[0], fast[0], "same seed, same first sample");
    let other = m.upscale(ctx(), &img, &PixelCnnOptions { samples: 1, seed: 8, ..opts }, &mut |_, _| {}).unwrap();
    assert_ne!(other[0], fast[0], "another seed, another sample");
}

fn load_err(config: serde_json::Value, weights: WeightStore) -> String {
    let md = ModelDir { path: dir(), config, weights };
    match PixelCnn::load(ctx(), md) {
        Ok(_) => panic!("a broken model directory loaded"),
        Err(e) => {
            assert!(matches!(e, Error::Weights(_)), "{e:?}");
            e.to_string()
        }
    }
}

fn store_without(skip: &str) -> WeightStore {
    let src = ModelDir::load(dir()).unwrap().weights;
    let mut w = WeightStore::new();
    for n in src.names().filter(|n| *n != skip) {
        w.insert(n, src.get(n, None).unwrap().clone());
    }
    w
}

#[test]
fn bad_inputs_are_clear_errors() {
    let md = ModelDir::load(dir()).unwrap();
    let cfg = md.config.clone();
    // config
    let mut c = cfg.clone();
    c["family"] = "hcflow".into();
    assert!(load_err(c, store_without("")).contains("expected 'pixelcnn'"));
    let mut c = cfg.clone();
    c["model"].as_object_mut().unwrap().remove("prior_blocks");
    assert!(load_err(c, store_without("")).contains("model.prior_blocks is missing"));
    let mut c = cfg.clone();
    c["model"]["prior_v_kernel"] = 4.into();
    assert!(load_err(c, store_without("")).contains("prior_v_kernel must be odd"));
    // weights: missing, unexpected, mis-shaped, all named
    let e = load_err(cfg.clone(), store_without("prior.blocks.2.h_conv.weight"));
    assert!(e.contains("missing tensors (1): prior.blocks.2.h_conv.weight"), "{e}");
    let mut w = store_without("");
    w.insert("prior.extra.weight", HostTensor::new(vec![1], vec![0.0]).unwrap());
    w.insert("prior.out1.bias", HostTensor::new(vec![5], vec![0.0; 5]).unwrap());
    let e = load_err(cfg.clone(), w);
    assert!(e.contains("unexpected tensors (1): prior.extra.weight"), "{e}");
    assert!(e.contains("prior.out1.bias: file [5], expected [12]"), "{e}");
    // LR size, samples, temperature
    let mut m = model();
    let bad = RgbImage::new(2, 2, vec![0.5; 12]).unwrap();
    let e = m.upscale(ctx(), &bad, &PixelCnnOptions::default(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("1x2"), "{e}");
    let ok = RgbImage::new(1, 2, vec![0.5; 6]).unwrap();
    let zero = PixelCnnOptions { samples: 0, ..Default::default() };
    assert!(matches!(m.upscale(ctx(), &ok, &zero, &mut |_, _| {}), Err(Error::InvalidArgument(_))));
    let hot = PixelCnnOptions { temperature: -1.0, ..Default::default() };
    assert!(matches!(m.upscale(ctx(), &ok, &hot, &mut |_, _| {}), Err(Error::InvalidArgument(_))));
}
