//! HCD collaborative downscaling on the tiny rescaling fixture: what the
//! optimisation promises (a better round trip than plain downscaling, 8-bit
//! output, same seed same LR), patching, and error handling. Parity with
//! the PyTorch reference (tools/hcd_ref.py) is in `hcd_golden` below.

#[path = "kernels/common.rs"]
mod common;

use std::path::PathBuf;

use common::ctx;
use wgsr::image_io::RgbImage;
use wgsr::models::hcflow::hcd::{HcdOptions, HcdStart};
use wgsr::models::hcflow::HcFlow;
use wgsr::weights::ModelDir;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn model(name: &str) -> HcFlow {
    HcFlow::load(ctx(), ModelDir::load(fixture(name)).unwrap()).unwrap()
}

/// A `w` x `h` crop of a natural image (the butterfly).
fn photo(w: usize, h: usize) -> RgbImage {
    RgbImage::load(fixture("metrics/butterfly_hr.png")).unwrap().crop(40, 60, w, h).unwrap()
}

fn mse(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64
}

/// MSE of `wgsr upscale --seed seed` of `lr` against `hr`.
fn round_trip(m: &mut HcFlow, lr: &RgbImage, hr: &RgbImage, seed: u64) -> f64 {
    let up = m.upscale(ctx(), lr, None, seed).unwrap();
    mse(&up.data, &hr.data)
}

#[test]
fn hcd_beats_plain_downscaling_for_the_upscaler_it_targets() {
    let mut m = model("hcflow_rescale_x4_tiny");
    let hr = photo(32, 24);
    let seed = 5;
    let (plain, _) = m.downscale(ctx(), &hr).unwrap();
    let mut calls = 0;
    let opts = HcdOptions { seed, ..Default::default() };
    let r = m.downscale_hcd(ctx(), &hr, &opts, &HcdStart::Random, &mut |d, n| {
        calls += 1;
        assert!(d <= n && n == 32, "{d}/{n}");
    }).unwrap();
    assert_eq!(calls, 32, "one progress call per iteration and per final evaluation");
    assert_eq!((r.lr.width, r.lr.height), (8, 6));
    assert!(r.lr.data.iter().all(|v| (v * 255.0 - (v * 255.0).round()).abs() < 1e-4 && (0.0..=1.0).contains(v)), "8-bit output");
    let before = round_trip(&mut m, &plain, &hr, seed);
    let after = round_trip(&mut m, &r.lr, &hr, seed);
    let t = &r.patches[0];
    assert_eq!((t.loss_hr.len(), t.loss_lr.len()), (16, 16));
    // The last LR-stage loss is the loss of the unquantised final LR; the
    // 8-bit one is what upscale sees, close to it.
    let gain = 10.0 * (before / after).log10();
    println!("tiny model round trip: plain {before:.3e}, HCD {after:.3e} ({gain:+.2} dB); traces hr {:?} lr {:?}", t.loss_hr, t.loss_lr);
    assert!(after < before, "HCD did not improve the round trip: {after} vs plain {before}");
    assert!(t.loss_lr.last().unwrap() < t.loss_hr.first().unwrap());
    assert!(r.plan_bytes > 0);
    // Same seed, same LR; another seed starts elsewhere.
    let again = m.downscale_hcd(ctx(), &hr, &opts, &HcdStart::Random, &mut |_, _| {}).unwrap();
    assert_eq!(again.lr.data, r.lr.data);
    let other = m.downscale_hcd(ctx(), &hr, &HcdOptions { seed: 6, ..opts.clone() }, &HcdStart::Random, &mut |_, _| {}).unwrap();
    assert_ne!(other.lr.data, r.lr.data);
}

#[test]
fn large_images_are_optimised_in_patches() {
    let mut m = model("hcflow_rescale_x4_tiny");
    // LR 20x12 in patches of 8: columns 8, 8, 4 and rows 8, 4.
    let hr = photo(80, 48);
    let opts = HcdOptions { iters: (3, 3), patch: 8, seed: 1, ..Default::default() };
    let mut last = (0, 0);
    let r = m.downscale_hcd(ctx(), &hr, &opts, &HcdStart::Random, &mut |d, n| last = (d, n)).unwrap();
    assert_eq!(r.patches.len(), 6);
    assert_eq!(last, (6 * 8, 6 * 8));
    let rects: Vec<_> = r.patches.iter().map(|p| p.rect).collect();
    assert_eq!(rects[0], (0, 0, 8, 8));
    assert_eq!(rects[5], (16, 8, 4, 4));
    assert_eq!(r.patches.iter().map(|p| p.rect.2 * p.rect.3).sum::<usize>(), 20 * 12, "patches cover the LR exactly");
    assert_eq!((r.lr.width, r.lr.height), (20, 12));
    for p in &r.patches {
        assert!(p.loss_lr.last().unwrap() < p.loss_hr.first().unwrap(), "patch {:?}: {:?} {:?}", p.rect, p.loss_hr, p.loss_lr);
    }
}

#[test]
fn hcd_refuses_bad_models_options_and_inputs() {
    let mut sr = model("hcflow_sr_x4_tiny");
    let hr = photo(32, 32);
    let e = sr.downscale_hcd(ctx(), &hr, &HcdOptions::default(), &HcdStart::Random, &mut |_, _| {}).unwrap_err().to_string();
    assert!(e.contains("rescaling model"), "{e}");
    let mut m = model("hcflow_rescale_x4_tiny");
    for bad in [
        HcdOptions { eps: f64::NAN, ..Default::default() },
        HcdOptions { step: -1.0, ..Default::default() },
        HcdOptions { patch: 0, ..Default::default() },
        HcdOptions { iters: (1001, 1), ..Default::default() },
    ] {
        let e = m.downscale_hcd(ctx(), &hr, &bad, &HcdStart::Random, &mut |_, _| {}).unwrap_err();
        assert!(matches!(e, wgsr::Error::InvalidArgument(_)), "{bad:?}: {e}");
    }
    let odd = photo(30, 32);
    let e = m.downscale_hcd(ctx(), &odd, &HcdOptions::default(), &HcdStart::Random, &mut |_, _| {}).unwrap_err().to_string();
    assert!(e.contains("multiples of 4"), "{e}");
    let given = HcdStart::Given { hr: vec![0.0; 5], lr: vec![0.0; 3], eps: vec![] };
    let e = m.downscale_hcd(ctx(), &hr, &HcdOptions::default(), &given, &mut |_, _| {}).unwrap_err().to_string();
    assert!(e.contains("start perturbations"), "{e}");
}

// ------------------------------------------------ parity with PyTorch
// tests/fixtures/hcflow_rescale_x4_tiny/hcd_golden.safetensors, from
// tools/make_hcd_fixtures.py (tools/hcd_ref.py in f64): gradients of both
// stages at a fixed point (PyTorch autograd), and a whole 15 + 15 run from
// given start perturbations and latents.

mod hcd_golden {
    use super::*;
    use std::collections::BTreeMap;
    use wgsr::models::hcflow::graph::HcdStage;
    use wgsr::weights::read_safetensors_f64;
    use wgsr::Shape;

    type Golden = BTreeMap<String, (Vec<usize>, Vec<f64>)>;

    fn golden() -> Golden {
        read_safetensors_f64(fixture("hcflow_rescale_x4_tiny").join("hcd_golden.safetensors")).unwrap()
    }

    fn get<'a>(g: &'a Golden, k: &str) -> &'a (Vec<usize>, Vec<f64>) {
        g.get(k).unwrap_or_else(|| panic!("golden tensor {k} missing"))
    }

    fn f32s(g: &Golden, k: &str) -> Vec<f32> {
        get(g, k).1.iter().map(|v| *v as f32).collect()
    }

    fn shape(g: &Golden, k: &str) -> Shape {
        let s = &get(g, k).0;
        Shape::new(s[0], s[1], s[2], s[3])
    }

    /// ||a - b|| / ||b|| (L2) and max |a - b| / max |b|.
    fn rel(a: &[f32], b: &[f64]) -> (f64, f64) {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - y).powi(2)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        let mx = a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((*x as f64 - y).abs()));
        let bm = b.iter().fold(0.0f64, |m, y| m.max(y.abs()));
        ((num / den).sqrt(), mx / bm)
    }

    fn eps(g: &Golden, p: &str) -> Vec<Vec<f32>> {
        vec![f32s(g, &format!("{p}eps0")), f32s(g, &format!("{p}eps1"))]
    }

    /// Issue 13's bar: the round trip's input gradient within 1e-4 relative
    /// of PyTorch autograd (f64), for both stages and both fixture cases.
    #[test]
    fn round_trip_gradients_match_pytorch_autograd() {
        let g = golden();
        let mut m = model("hcflow_rescale_x4_tiny");
        for p in ["", "wide."] {
            let hr = f32s(&g, &format!("{p}hr"));
            let hs = shape(&g, &format!("{p}hr"));
            let lr_shape = Shape::new(1, 3, hs.h() / 4, hs.w() / 4);
            let heat = get(&g, &format!("{p}heat")).1[0] as f32;
            let e = eps(&g, p);
            let x = f32s(&g, &format!("{p}grad.x"));
            let (sr, grad, q) = m.hcd_gradient(ctx(), HcdStage::Hr, lr_shape, &x, &hr, &e, heat).unwrap();
            // The quantised LR is exact: the fixture keeps z well away
            // from rounding boundaries (margin stored in grad.quant_margin).
            assert_eq!(q.unwrap(), f32s(&g, &format!("{p}grad.zq")), "{p}: quantised LR");
            let (l2, mx) = rel(&sr, &get(&g, &format!("{p}grad.sr")).1);
            assert!(mx < 1e-5, "{p}sr: {l2:e} {mx:e}");
            let (l2, mx) = rel(&grad, &get(&g, &format!("{p}grad.hr_stage")).1);
            println!("{p}HR-stage gradient vs autograd: rel L2 {l2:.2e}, rel max {mx:.2e} (n={})", grad.len());
            assert!(l2 <= 1e-4 && mx <= 1e-4, "{p}: HR-stage gradient {l2:e} / {mx:e}");
            let lr = f32s(&g, &format!("{p}grad.lr"));
            let (_, grad, _) = m.hcd_gradient(ctx(), HcdStage::Lr, lr_shape, &lr, &hr, &e, heat).unwrap();
            let (l2, mx) = rel(&grad, &get(&g, &format!("{p}grad.lr_stage")).1);
            println!("{p}LR-stage gradient vs autograd: rel L2 {l2:.2e}, rel max {mx:.2e} (n={})", grad.len());
            assert!(l2 <= 1e-4 && mx <= 1e-4, "{p}: LR-stage gradient {l2:e} / {mx:e}");
        }
    }

    /// The whole HCD run from the reference's start perturbations: loss
    /// traces within 1e-4 relative, the LR stage's start exact, the final
    /// 8-bit LR within one level (exact where no rounding decision flipped).
    #[test]
    fn hcd_run_matches_the_pytorch_reference() {
        let g = golden();
        let mut m = model("hcflow_rescale_x4_tiny");
        for p in ["", "wide."] {
            let hs = shape(&g, &format!("{p}hr"));
            let hr = RgbImage::new(hs.w(), hs.h(), f32s(&g, &format!("{p}hr"))).unwrap();
            let iters = &get(&g, &format!("{p}hcd.iters")).1;
            let opts = HcdOptions { iters: (iters[0] as usize, iters[1] as usize), eps: get(&g, &format!("{p}hcd.epsilon")).1[0], step: get(&g, &format!("{p}hcd.alpha")).1[0], ..Default::default() };
            let start = HcdStart::Given { hr: f32s(&g, &format!("{p}hcd.delta_hr0")), lr: f32s(&g, &format!("{p}hcd.delta_lr0")), eps: eps(&g, p) };
            let r = m.downscale_hcd(ctx(), &hr, &opts, &start, &mut |_, _| {}).unwrap();
            let t = &r.patches[0];
            for (name, got, key) in [("HR", &t.loss_hr, "hcd.loss_hr"), ("LR", &t.loss_lr, "hcd.loss_lr")] {
                let want = &get(&g, &format!("{p}{key}")).1;
                assert_eq!(got.len(), want.len(), "{p}{name} trace length");
                let worst = got.iter().zip(want).fold(0.0f64, |m, (a, b)| m.max((a - b).abs() / b.abs()));
                println!("{p}{name}-stage loss trace vs reference: max rel {worst:.2e}; {:.6} -> {:.6}", got[0], got[got.len() - 1]);
                assert!(worst <= 1e-4, "{p}{name} trace: {got:?} vs {want:?}");
            }
            let want = f32s(&g, &format!("{p}hcd.lr_final"));
            let levels: Vec<f32> = r.lr.data.iter().zip(&want).map(|(a, b)| ((a - b) * 255.0).abs().round()).collect();
            let max = levels.iter().fold(0.0f32, |m, v| m.max(*v));
            let differ = levels.iter().filter(|v| **v > 0.0).count();
            println!("{p}final LR vs reference: max {max} levels, {differ} of {} values differ", want.len());
            assert!(max <= 1.0, "{p}: final LR off by {max} levels");
        }
    }
}

#[test]
fn a_non_finite_hr_is_refused_before_any_work() {
    let mut m = model("hcflow_rescale_x4_tiny");
    let mut hr = photo(32, 32);
    hr.data[77] = f32::NAN;
    let mut calls = 0;
    let e = m.downscale_hcd(ctx(), &hr, &HcdOptions::default(), &HcdStart::Random, &mut |_, _| calls += 1).unwrap_err();
    assert!(e.to_string().contains("not finite"), "{e}");
    assert_eq!(calls, 0);
}
