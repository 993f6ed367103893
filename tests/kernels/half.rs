//! f16 storage (`Dtype::F16`): the kernels read f16 tensors, compute in f32
//! and round their stores to f16. Each check feeds f16-rounded random inputs
//! and compares with the f64 reference on exactly those rounded values, so
//! the only error beyond the f32 kernel's own is the final rounding to f16:
//! one f16 ulp, 2^-10 relative (this covers round-to-nearest and truncating
//! conversions alike). Outputs are poisoned with f16 NaN; mixed variants (f16
//! activations with f32 scratch or operands) are covered where the engine
//! uses them.

use crate::common::*;
use crate::conv::{conv_ref, epilogue_ref};
use crate::matmul::{matmul_ref, BiasKind};
use crate::norm::group_norm_ref;
use wgsr::gpu::KernelCall;
use wgsr::ops::conv::{conv2d, Activation, Conv2dParams, Conv2dWeights, Epilogue};
use wgsr::ops::matmul::{matmul, Bias, MatmulOpts};
use wgsr::ops::norm::{GroupNorm, DEFAULT_EPS};
use wgsr::ops::winograd::{conv3x3, scratch_shapes, WinogradTile, WinogradWeights};
use wgsr::ops::{elementwise, reshape, rng as prng};
use wgsr::{Dtype, Shape, Tensor};

/// One f16 ulp relative to the value: the output's own rounding.
const F16_REL: f64 = 1.0 / 1024.0;

fn round16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// Random values in [lo, hi) stored as f16; the host copy is the rounded values.
fn half_tensor(rng: &mut Rng, shape: Shape, lo: f64, hi: f64) -> (Tensor, Vec<f32>) {
    let v = round16(&rng.vec(shape.numel(), lo, hi));
    (Tensor::from_slice_as(ctx(), shape, &v, Dtype::F16).unwrap(), v)
}

fn poisoned16(shape: Shape) -> Tensor {
    Tensor::filled_as(ctx(), shape, f32::NAN, Dtype::F16).unwrap()
}

fn skip_without_f16() -> bool {
    if !ctx().has_f16() {
        println!("adapter has no SHADER_F16: f16 checks skipped");
        return true;
    }
    false
}

#[test]
fn half_tensors_round_trip_and_pad_to_words() {
    if skip_without_f16() {
        return;
    }
    let c = ctx();
    // 7 values: an odd count ends in half a word of padding.
    let v = [0.1f32, -2.5, 65504.0, 1e-7, -0.0, 3.0e-5, 1.0 / 3.0];
    let t = Tensor::from_slice_as(c, Shape::new(1, 1, 1, 7), &v, Dtype::F16).unwrap();
    assert_eq!((t.dtype(), t.bytes(), t.padded_bytes()), (Dtype::F16, 14, 16));
    assert_exact("f16 upload / download", &t.to_vec(c).unwrap(), &round16(&v));
    // Overflow rounds to infinity (the models then refuse the output).
    let big = Tensor::from_slice_as(c, Shape::new(1, 1, 1, 2), &[1e5, -7e4], Dtype::F16).unwrap();
    assert_eq!(big.to_vec(c).unwrap(), vec![f32::INFINITY, f32::NEG_INFINITY]);
}

/// Direct conv, every CPU and GPU entry: f16 input, weights, residual, output.
fn check_conv16(name: &str, seed: u64, xs: Shape, ws: [usize; 4], p: Conv2dParams, epi: Epilogue, residual: bool) {
    let c = ctx();
    let mut rng = Rng::new(seed);
    let (x, xv) = half_tensor(&mut rng, xs, -1.0, 1.0);
    let wv = round16(&rng.vec(ws.iter().product(), -0.5, 0.5));
    let bias = rng.vec(ws[0], -0.5, 0.5);
    let scale = rng.vec(ws[0], -2.0, 2.0);
    let w = Conv2dWeights::new_as(c, Dtype::F16, &wv, ws, Some(&bias), Some(&scale)).unwrap();
    assert_eq!(w.dtype(), Dtype::F16);
    let o = |i: usize, k: usize, a: usize| (i + 2 * p.padding[a] - p.dilation[a] * (k - 1) - 1) / p.stride[a] + 1;
    let os = Shape::new(xs.n(), ws[0], o(xs.h(), ws[2], 0), o(xs.w(), ws[3], 1));
    let res = residual.then(|| half_tensor(&mut rng, os, -1.0, 1.0));
    let out = poisoned16(os);
    let got = run_and_read(conv2d(c, &x, &w, &p, &epi, res.as_ref().map(|r| &r.0), &out).unwrap(), &out);
    let mut want = conv_ref(&xv, xs, &wv, ws, &p, os);
    epilogue_ref(&mut want, os, &bias, &scale, &epi, res.as_ref().map(|r| &r.1[..]));
    // The f32 conv tests' bound (1e-5 sqrt(K) |x| |w| |scale| |alpha|) plus one f16 ulp.
    let k = ws[1] * ws[2] * ws[3];
    let abs = 1e-5 * (k as f64).sqrt() * 0.5 * 2.0 * epi.alpha.abs() as f64;
    assert_close(name, &got, &want, abs, F16_REL);
}

#[test]
fn half_conv_direct_entries() {
    if skip_without_f16() {
        return;
    }
    let res = |act| Epilogue { activation: act, alpha: 0.75, beta: 1.5 };
    // Rows entry (cout % 4 == 0, many columns), narrow entry (few columns),
    // general entry (odd cout, stride, groups); the tiled GPU kernel under
    // WGSR_CONV_TILED=1 (CI).
    check_conv16("f16 conv rows 8->24 3x3", 1, Shape::new(1, 8, 40, 40), [24, 8, 3, 3], Conv2dParams::new(1, 1), res(Activation::Relu), true);
    // 1x1 on conv2d_rows' vec4 column loads (B_VEC: 36 channels, N = 288, batch 2).
    check_conv16("f16 conv rows vec4 cols 12->36 1x1", 4, Shape::new(2, 12, 12, 12), [36, 12, 1, 1], Conv2dParams::default(), res(Activation::Relu), true);
    check_conv16("f16 conv narrow 40->264 1x1", 2, Shape::new(1, 40, 1, 3), [264, 40, 1, 1], Conv2dParams::default(), res(Activation::Tanh), true);
    let p = Conv2dParams { stride: [2, 1], padding: [2, 1], dilation: [1, 1], groups: 3 };
    check_conv16("f16 conv general 9->15 5x3 s2 g3", 3, Shape::new(2, 9, 17, 13), [15, 3, 5, 3], p, Epilogue { activation: Activation::LeakyRelu(0.2), alpha: 1.0, beta: 0.0 }, false);
}

#[test]
fn half_winograd_keeps_f32_weights_and_scratch() {
    if skip_without_f16() {
        return;
    }
    let c = ctx();
    // Width 16: F(4x4)'s four-tiles-per-thread input transform (vec4 f16 loads).
    for (seed, tile, h, w) in [(11u64, WinogradTile::F2, 13usize, 11usize), (12, WinogradTile::F4, 13, 11), (13, WinogradTile::F4, 9, 16)] {
        let mut rng = Rng::new(seed);
        let (chans, cout) = ([16usize, 8], 20usize);
        let cin: usize = chans.iter().sum();
        let ws = [cout, cin, 3, 3];
        let wv = round16(&rng.vec(cout * cin * 9, -0.5, 0.5));
        let bias = rng.vec(cout, -0.5, 0.5);
        let parts: Vec<_> = chans.iter().map(|&ch| half_tensor(&mut rng, Shape::new(1, ch, h, w), -1.0, 1.0)).collect();
        let xs = Shape::new(1, cin, h, w);
        let xcat: Vec<f32> = parts.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let out = Shape::new(1, cout, h, w);
        let (res, resv) = half_tensor(&mut rng, out, -1.0, 1.0);
        let epi = Epilogue { activation: Activation::LeakyRelu(0.2), alpha: 1.0, beta: 0.5 };
        let mut want = conv_ref(&xcat, xs, &wv, ws, &Conv2dParams::new(1, 1), out);
        epilogue_ref(&mut want, out, &bias, &[], &epi, Some(&resv));
        // U stays f32 in f16 graphs: rounded to f16 it costs growth x 2^-11
        // per output (measured: max abs 4.3e-3 for F(2x2), 3.7e-2 for F(4x4)
        // on this case, ~10 levels), while f16 activations at the transforms'
        // ends cost only their own rounding.
        let ww = WinogradWeights::new(c, &wv, ws, Some(&bias), None, tile).unwrap();
        let (vs, ms) = scratch_shapes(xs, cin, cout, 1, tile).unwrap();
        // V and M are f32 (the graph's scratch): the GEMM is all f32.
        let (v, m, y) = (poisoned(vs), poisoned(ms), poisoned16(out));
        let inputs: Vec<&Tensor> = parts.iter().map(|(t, _)| t).collect();
        let got = run_and_read(conv3x3(c, &inputs, &ww, 1, &epi, Some(&res), &v, &m, &y).unwrap(), &y);
        // The f32 Winograd bound (tests/kernels/winograd.rs) plus one f16 ulp.
        let growth = if tile == WinogradTile::F2 { 4.0 } else { 32.0 };
        let abs = growth * 1e-5 * ((cin * 9) as f64).sqrt() * 0.5;
        assert_close(&format!("f16 winograd {tile:?} {chans:?}->{cout} {h}x{w} + residual"), &got, &want, abs, F16_REL);
    }
}

#[test]
fn half_mixed_bindings_elementwise() {
    if skip_without_f16() {
        return;
    }
    let c = ctx();
    let mut rng = Rng::new(31);
    let s = Shape::new(2, 3, 5, 7);
    let (a, av) = half_tensor(&mut rng, s, -2.0, 2.0);
    let (b, bv) = rand_tensor(&mut rng, s, -2.0, 2.0);
    let want: Vec<f64> = av.iter().zip(&bv).map(|(&x, &y)| 0.5 * x as f64 - 1.25 * y as f64).collect();
    // f16 + f32 -> f32 (no output rounding) and -> f16.
    let y32 = poisoned(s);
    assert_close("axpby f16 + f32 -> f32", &run_and_read(elementwise::axpby(c, &a, &b, &y32, 0.5, -1.25).unwrap(), &y32), &want, 1e-6, 1e-6);
    let y16 = poisoned16(s);
    assert_close("axpby f16 + f32 -> f16", &run_and_read(elementwise::axpby(c, &a, &b, &y16, 0.5, -1.25).unwrap(), &y16), &want, 1e-6, F16_REL);
    // Converting copy (what an f32 texture into an f16 graph uses): exact f16 rounding.
    let y16 = poisoned16(s);
    let got = run_and_read(elementwise::affine(c, &b, &y16, 1.0, 0.0).unwrap(), &y16);
    let want: Vec<f64> = bv.iter().map(|&v| v as f64).collect();
    assert_close("affine f32 -> f16", &got, &want, 0.0, F16_REL);
}

#[test]
fn half_group_norm_and_matmul() {
    if skip_without_f16() {
        return;
    }
    let c = ctx();
    let mut rng = Rng::new(41);
    // 8x8 maps take the vec4 entries, 5x7 the scalar ones.
    for s in [Shape::new(2, 8, 8, 8), Shape::new(1, 6, 5, 7)] {
        let gamma = rng.vec(s.c(), 0.5, 1.5);
        let beta = rng.vec(s.c(), -0.5, 0.5);
        let gn = GroupNorm::new(c, &gamma, &beta, 2, DEFAULT_EPS).unwrap();
        let (x, xv) = half_tensor(&mut rng, s, 2.0, 4.0);
        let out = poisoned16(s);
        let got = run_and_read(gn.prepare(c, &x, &out, &scratch(c, gn.scratch_shape(s)), true).unwrap(), &out);
        let want = group_norm_ref(&xv, s, 2, &gamma, &beta, DEFAULT_EPS as f64, true);
        assert_close(&format!("f16 group_norm + swish {s}"), &got, &want, 1e-5, F16_REL);
    }
    // Attention's two products: f16 x f16 -> f32 scores, f32 x f16 -> f16.
    let (m, n, k) = (24, 20, 32);
    let (q, qv) = half_tensor(&mut rng, Shape::new(1, 1, m, k), -1.0, 1.0);
    let (kt, kv) = half_tensor(&mut rng, Shape::new(1, 1, n, k), -1.0, 1.0);
    let s32 = poisoned(Shape::new(1, 1, m, n));
    let opts = MatmulOpts { trans_a: false, trans_b: true, alpha: 0.5, bias: Bias::None };
    let got = run_and_read(matmul(c, &q, &kt, &s32, &opts).unwrap(), &s32);
    let want = matmul_ref(&qv, &kv, (1, 1, 1), (m, n, k), (false, true), 0.5, &[], BiasKind::None);
    let abs = 1e-5 * (k as f64).sqrt() / 3.0;
    assert_close("matmul f16 x f16^T -> f32", &got, &want, abs, 1e-5);
    let (v, vv) = half_tensor(&mut rng, Shape::new(1, 1, n, 8), -1.0, 1.0);
    let o16 = poisoned16(Shape::new(1, 1, m, 8));
    let opts = MatmulOpts { trans_a: false, trans_b: false, alpha: 1.0, bias: Bias::None };
    let got = run_and_read(matmul(c, &s32, &v, &o16, &opts).unwrap(), &o16);
    let want = matmul_ref(&s32.to_vec(c).unwrap(), &vv, (1, 1, 1), (m, 8, n), (false, false), 1.0, &[], BiasKind::None);
    assert_close("matmul f32 x f16 -> f16", &got, &want, 1e-5 * (n as f64).sqrt(), F16_REL);
}

#[test]
fn half_copies_are_exact_and_rng_rounds_once() {
    if skip_without_f16() {
        return;
    }
    let c = ctx();
    let mut rng = Rng::new(51);
    // Nearest upsampling and space-to-depth move f16 values unchanged
    // (vector entries: even / multiple-of-4 widths; general: odd widths).
    for s in [Shape::new(1, 3, 6, 8), Shape::new(2, 2, 5, 7)] {
        let (x, xv) = half_tensor(&mut rng, s, -2.0, 2.0);
        let out = poisoned16(Shape::new(s.n(), s.c(), 2 * s.h(), 2 * s.w()));
        let got = run_and_read(reshape::upsample_nearest(c, &x, 2, &out).unwrap(), &out);
        let mut want = Vec::new();
        for bc in 0..s.n() * s.c() {
            for y in 0..2 * s.h() {
                for xx in 0..2 * s.w() {
                    want.push(xv[(bc * s.h() + y / 2) * s.w() + xx / 2]);
                }
            }
        }
        assert_exact(&format!("f16 upsample x2 {s}"), &got, &want);
    }
    let s = Shape::new(1, 4, 8, 8);
    let (x, _) = half_tensor(&mut rng, s, -2.0, 2.0);
    let d = poisoned16(reshape::space_to_depth_shape(s, 2).unwrap());
    ctx().run(&[reshape::squeeze(c, &x, 2, &d).unwrap()]).unwrap();
    let back = poisoned16(s);
    let got = run_and_read(reshape::unsqueeze(c, &d, 2, &back).unwrap(), &back);
    assert_exact("f16 squeeze -> unsqueeze", &got, &x.to_vec(c).unwrap());
    // Philox normals: the f32 draw, rounded to f16 once.
    let s = Shape::new(1, 1, 33, 31);
    let (z32, z16) = (poisoned(s), poisoned16(s));
    let a = run_and_read(prng::normal(c, &z32, 7, 3, 0.5, 2.0).unwrap(), &z32);
    let b = run_and_read(prng::normal(c, &z16, 7, 3, 0.5, 2.0).unwrap(), &z16);
    assert_close("rng normal f16 vs f32", &b, &to_f64(&a), 0.0, F16_REL);
}

#[test]
fn half_into_an_f32_only_binding_is_a_clear_error() {
    if skip_without_f16() {
        return;
    }
    let c = ctx();
    // Attention's score rows are f32 scratch in every variant: an f16 tensor
    // there is refused before any pipeline is built, naming the binding.
    let shader = wgsr::ops::KERNELS.iter().find(|k| k.name == "attention").unwrap();
    let s = Tensor::filled_as(c, Shape::new(1, 1, 4, 4), 1.0, Dtype::F16).unwrap();
    let call = KernelCall { shader, entry: "softmax_rows", constants: &[], params: None, buffers: &[s.arg()], workgroups: [1, 1, 1] };
    let msg = c.dispatch(call).expect_err("f16 scores must be refused").to_string();
    assert!(msg.contains("binding 1 (s)") && msg.contains("f16") && msg.contains("f32 only"), "{msg}");
}
