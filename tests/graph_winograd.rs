//! Which graph convs run as Winograd convs, and that they compute the conv:
//! a 3x3 conv big enough for it (F(4x4) by default, F(2x2) when asked,
//! direct in a gradient graph or when the builder says None) against an f64 reference, plus
//! the convs that must stay direct (few channels, small maps, stride 2).

#[path = "kernels/common.rs"]
mod common;

use common::*;
use wgsr::graph::ops::conv::Conv;
use wgsr::graph::{Executor, GraphBuilder};
use wgsr::ops::conv::Activation;
use wgsr::ops::winograd::WinogradTile;
use wgsr::weights::{HostTensor, WeightStore};
use wgsr::Shape;

/// 3x3 same-padded conv + bias, LeakyReLU(0.2), + residual, in f64.
fn reference(x: &[f32], s: Shape, w: &[f32], b: &[f32], cout: usize, res: &[f32]) -> Vec<f64> {
    let (h, wd, cin) = (s.h(), s.w(), s.c());
    let mut out = vec![0f64; cout * h * wd];
    for co in 0..cout {
        for y in 0..h {
            for xx in 0..wd {
                let mut acc = b[co] as f64;
                for ci in 0..cin {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (y as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                            if iy >= 0 && ix >= 0 && iy < h as isize && ix < wd as isize {
                                acc += w[((co * cin + ci) * 3 + ky) * 3 + kx] as f64 * x[(ci * h + iy as usize) * wd + ix as usize] as f64;
                            }
                        }
                    }
                }
                let i = (co * h + y) * wd + xx;
                out[i] = if acc < 0.0 { 0.2 * acc } else { acc } + res[i] as f64;
            }
        }
    }
    out
}

/// Build, run and check one conv graph; returns its dump.
fn run(s: Shape, cout: usize, tile: Option<Option<WinogradTile>>, grad: bool, tol: f64) -> String {
    let c = ctx();
    let mut rng = Rng::new(s.numel() as u64 + cout as u64);
    let (cin, os) = (s.c(), Shape::new(1, cout, s.h(), s.w()));
    let w = rng.vec(cout * cin * 9, -0.3, 0.3);
    let b = rng.vec(cout, -0.2, 0.2);
    let (x, r) = (rng.vec(s.numel(), -1.0, 1.0), rng.vec(os.numel(), -1.0, 1.0));
    let mut ws = WeightStore::new();
    ws.insert("c.weight", HostTensor::new(vec![cout, cin, 3, 3], w.clone()).unwrap());
    ws.insert("c.bias", HostTensor::new(vec![cout], b.clone()).unwrap());
    let mut g = GraphBuilder::with_weights(c, &ws);
    if grad {
        g.enable_gradients();
    }
    if let Some(t) = tile {
        g.set_winograd(t);
    }
    let xi = g.input("x", s).unwrap();
    let ri = g.input("r", os).unwrap();
    let y = g.conv2d("conv", xi, "c", Conv::same(3).act(Activation::LeakyRelu(0.2)).residual(ri, 1.0, 1.0)).unwrap();
    g.output("y", y).unwrap();
    let graph = g.build().unwrap();
    let dump = graph.dump();
    let mut ex = Executor::new(c, graph).unwrap();
    ex.set_input(c, "x", &x).unwrap();
    ex.set_input(c, "r", &r).unwrap();
    ex.run(c).unwrap();
    let got = ex.read_output(c, "y").unwrap();
    assert_close(&format!("graph conv3x3 {s} -> {cout} {tile:?} grad={grad}"), &got, &reference(&x, s, &w, &b, cout, &r), tol, 1e-5);
    dump
}

// Bounds: the kernel tests' (tests/kernels/winograd.rs) for K = cin * 9 with
// |x| < 1, |w| < 0.3: direct 1e-5 * sqrt(K) * 0.3, x4 for F(2x2), x32 for F(4x4).
fn tol(cin: usize, growth: f64) -> f64 {
    growth * 1e-5 * ((cin * 9) as f64).sqrt() * 0.3
}

#[test]
fn graph_convs_take_winograd_where_it_applies() {
    // The comparison switch would change what these graphs choose.
    if std::env::var_os("WGSR_WINOGRAD").is_some() {
        eprintln!("WGSR_WINOGRAD is set: skipping the default-choice checks");
        return;
    }
    let s = Shape::new(1, 24, 20, 18);
    let d = run(s, 20, None, false, tol(24, 32.0));
    assert!(d.contains("winograd F4") && d.contains("(scratch)"), "default: F(4x4) with two working buffers\n{d}");
    let d = run(s, 20, None, true, tol(24, 1.0));
    assert!(!d.contains("winograd"), "gradient graph: direct\n{d}");
    let d = run(s, 20, Some(Some(WinogradTile::F2)), false, tol(24, 4.0));
    assert!(d.contains("winograd F2"), "{d}");
    let d = run(s, 20, Some(None), false, tol(24, 1.0));
    assert!(!d.contains("winograd"), "set_winograd(None): direct\n{d}");
    // Too few channels or pixels: direct.
    let d = run(Shape::new(1, 3, 20, 18), 20, None, false, tol(3, 1.0));
    assert!(!d.contains("winograd"), "3 input channels\n{d}");
    let d = run(Shape::new(1, 24, 7, 7), 20, None, false, tol(24, 1.0));
    assert!(!d.contains("winograd"), "49 pixels\n{d}");
    // A handful of F(4x4) tiles (at most 64 output pixels): F(2x2), whose
    // smaller U is what the GEMM there is bound by; more pixels: F(4x4).
    let d = run(Shape::new(1, 24, 8, 8), 20, None, false, tol(24, 4.0));
    assert!(d.contains("winograd F2"), "64 pixels\n{d}");
    let d = run(Shape::new(1, 24, 9, 8), 20, None, false, tol(24, 32.0));
    assert!(d.contains("winograd F4"), "72 pixels\n{d}");
}

#[test]
fn stride_two_and_dilated_convs_stay_direct() {
    let c = ctx();
    let mut ws = WeightStore::new();
    ws.insert("c.weight", HostTensor::new(vec![16, 16, 3, 3], vec![0.01; 16 * 16 * 9]).unwrap());
    ws.insert("c.bias", HostTensor::new(vec![16], vec![0.0; 16]).unwrap());
    let mut g = GraphBuilder::with_weights(c, &ws);
    let x = g.input("x", Shape::new(1, 16, 40, 40)).unwrap();
    let y = g.conv2d("down", x, "c", Conv::new(2, 1)).unwrap();
    g.output("y", y).unwrap();
    let d = g.build().unwrap().dump();
    assert!(!d.contains("winograd"), "{d}");
}

/// An ESRGAN dense block (input in two parts, growth 16, LeakyReLU, conv5
/// with a residual) built with shared Winograd transforms and with one
/// `conv2d_cat` per conv: the same bits, for F(4x4) and F(2x2), batch 2.
#[test]
fn shared_dense_block_transforms_give_the_per_conv_bits() {
    let c = ctx();
    let (n, h, w, gc) = (2, 13, 11, 16);
    let parts = [24usize, 8];
    let cin0: usize = parts.iter().sum();
    let mut rng = Rng::new(77);
    let mut ws = WeightStore::new();
    let mut shapes = Vec::new();
    for j in 1..=5 {
        let cin = cin0 + (j - 1) * gc;
        let cout = if j == 5 { cin0 } else { gc };
        let a = 1.0 / (9.0 * cin as f64).sqrt();
        ws.insert(&format!("b.conv{j}.weight"), HostTensor::new(vec![cout, cin, 3, 3], rng.vec(cout * cin * 9, -a, a)).unwrap());
        ws.insert(&format!("b.conv{j}.bias"), HostTensor::new(vec![cout], rng.vec(cout, -0.1, 0.1)).unwrap());
        shapes.push([cout, cin, 3, 3]);
    }
    let xs: Vec<Vec<f32>> = parts.iter().map(|&ci| rng.vec(n * ci * h * w, -1.0, 1.0)).collect();
    let res = rng.vec(n * cin0 * h * w, -1.0, 1.0);
    let lrelu = || Conv::same(3).act(Activation::LeakyRelu(0.2));
    for tile in [WinogradTile::F4, WinogradTile::F2] {
        let mut outs = Vec::new();
        for shared in [false, true] {
            let mut g = GraphBuilder::with_weights(c, &ws);
            g.set_winograd(Some(tile));
            let ins: Vec<_> = parts.iter().enumerate().map(|(i, &ci)| g.input(&format!("x{i}"), Shape::new(n, ci, h, w)).unwrap()).collect();
            let r = g.input("r", Shape::new(n, cin0, h, w)).unwrap();
            let y = if shared {
                let mut f = g.winograd_features("b.features", ins[0], shapes[4][1], &shapes, 1).unwrap().expect("the block's convs run as Winograd");
                g.winograd_features_push("b.part1", &mut f, ins[1]).unwrap();
                for j in 1..=4 {
                    let y = g.conv2d_features_from(&format!("b.conv{j}"), &f, &format!("b.conv{j}"), lrelu()).unwrap();
                    g.winograd_features_push(&format!("b.x{j}"), &mut f, y).unwrap();
                }
                assert_eq!(f.channels(), shapes[4][1]);
                // A conv over more channels than were pushed is refused.
                assert!(g.conv2d_features_from("bad", &f, "b.conv1", lrelu()).is_err());
                g.conv2d_features_from("b.conv5", &f, "b.conv5", Conv::same(3).residual(r, 0.2, 1.0)).unwrap()
            } else {
                let mut feats = ins.clone();
                for j in 1..=4 {
                    let y = g.conv2d_cat(&format!("b.conv{j}"), &feats, &format!("b.conv{j}"), lrelu()).unwrap();
                    feats.push(y);
                }
                g.conv2d_cat("b.conv5", &feats, "b.conv5", Conv::same(3).residual(r, 0.2, 1.0)).unwrap()
            };
            g.output("y", y).unwrap();
            let graph = g.build().unwrap();
            let d = graph.dump();
            assert_eq!(d.contains("winograd_features"), shared, "{d}");
            assert!(d.contains(&format!("winograd {tile:?}")), "every conv of the block runs as Winograd\n{d}");
            let mut e = Executor::new(c, graph).unwrap();
            for (i, x) in xs.iter().enumerate() {
                e.set_input(c, &format!("x{i}"), x).unwrap();
            }
            e.set_input(c, "r", &res).unwrap();
            e.run(c).unwrap();
            outs.push(e.read_output(c, "y").unwrap());
        }
        assert!(outs[0].iter().all(|v| v.is_finite()) && outs[0].iter().any(|&v| v != 0.0));
        let same = outs[0].iter().zip(&outs[1]).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{tile:?}: shared transforms changed the dense block's output bits");
    }
    // Gradient graphs and convs that would not run as Winograd get None (build them with conv2d_cat).
    let mut g = GraphBuilder::with_weights(c, &ws);
    g.enable_gradients();
    let x = g.input("x", Shape::new(1, cin0, h, w)).unwrap();
    assert!(g.winograd_features("f", x, shapes[4][1], &shapes, 1).unwrap().is_none());
    let mut g = GraphBuilder::with_weights(c, &ws);
    g.set_winograd(None);
    let x = g.input("x", Shape::new(1, cin0, h, w)).unwrap();
    assert!(g.winograd_features("f", x, shapes[4][1], &shapes, 1).unwrap().is_none());
}

/// `conv2d_cat_channel_bias`: a Winograd conv over two parts adds the
/// per-(sample, channel) bias in its output transform (the dump shows no
/// add node), with the bits of the same Winograd conv followed by
/// `add_channel_bias`; a direct conv (Winograd off) gets the separate node,
/// and both are checked against the f64 reference. A bias of the wrong
/// shape, or a conv with a residual, is refused.
#[test]
fn channel_bias_folds_into_the_winograd_output_transform() {
    let c = ctx();
    let (parts, cout, n, h, w) = ([12usize, 8], 16, 2, 20, 24);
    let cin: usize = parts.iter().sum();
    let mut rng = Rng::new(77);
    let wv = rng.vec(cout * cin * 9, -0.3, 0.3);
    let b = rng.vec(cout, -0.2, 0.2);
    let xs: Vec<Vec<f32>> = parts.iter().map(|&p| rng.vec(n * p * h * w, -1.0, 1.0)).collect();
    let t = rng.vec(n * cout, -1.0, 1.0);
    let mut ws = WeightStore::new();
    ws.insert("c.weight", HostTensor::new(vec![cout, cin, 3, 3], wv.clone()).unwrap());
    ws.insert("c.bias", HostTensor::new(vec![cout], b.clone()).unwrap());
    // fused: conv2d_cat_channel_bias; else conv2d_cat + add_channel_bias.
    let run = |tile: Option<WinogradTile>, fused: bool| -> (Vec<f32>, String) {
        let mut g = GraphBuilder::with_weights(c, &ws);
        g.set_winograd(tile);
        let ins: Vec<_> = parts.iter().enumerate().map(|(i, &p)| g.input(&format!("x{i}"), Shape::new(n, p, h, w)).unwrap()).collect();
        let ti = g.input("t", Shape::new(n, cout, 1, 1)).unwrap();
        let conv = Conv::same(3).act(Activation::LeakyRelu(0.2));
        let y = if fused {
            g.conv2d_cat_channel_bias("conv", &ins, "c", conv, ti).unwrap()
        } else {
            let y = g.conv2d_cat("conv", &ins, "c", conv).unwrap();
            g.add_channel_bias("add", y, ti).unwrap()
        };
        g.output("y", y).unwrap();
        let names: Vec<String> = (0..xs.len()).map(|i| format!("x{i}")).collect();
        let mut inputs: Vec<(&str, &[f32])> = names.iter().map(String::as_str).zip(xs.iter().map(Vec::as_slice)).collect();
        inputs.push(("t", &t));
        run_graph(g.build().unwrap(), &inputs, "y")
    };
    let (fused, dump) = run(Some(WinogradTile::F4), true);
    assert!(dump.contains("winograd F4") && !dump.contains("add_channel_bias"), "{dump}");
    let (separate, dump2) = run(Some(WinogradTile::F4), false);
    assert!(dump2.contains("add_channel_bias"), "{dump2}");
    assert!(fused.iter().zip(&separate).all(|(a, b)| a.to_bits() == b.to_bits()), "fused and separate channel bias differ");
    let (direct, dump3) = run(None, true);
    assert!(!dump3.contains("winograd") && dump3.contains("add_channel_bias"), "{dump3}");
    // Reference: per sample, the conv of the concatenated parts + t.
    let hw = h * w;
    for (got, growth) in [(&fused, 32.0), (&direct, 1.0)] {
        let mut want = Vec::with_capacity(n * cout * hw);
        for s in 0..n {
            let mut x = Vec::with_capacity(cin * hw);
            for (xp, &p) in xs.iter().zip(&parts) {
                x.extend_from_slice(&xp[s * p * hw..][..p * hw]);
            }
            let res: Vec<f32> = (0..cout * hw).map(|i| t[s * cout + i / hw]).collect();
            want.extend(reference(&x, Shape::new(1, cin, h, w), &wv, &b, cout, &res));
        }
        assert_close(&format!("channel bias, growth {growth}"), got, &want, tol(cin, growth), 1e-5);
    }
    // Refused: a bias per sample only, and a conv that already has a residual.
    let mut g = GraphBuilder::with_weights(c, &ws);
    let ins: Vec<_> = parts.iter().enumerate().map(|(i, &p)| g.input(&format!("x{i}"), Shape::new(n, p, h, w)).unwrap()).collect();
    let bad = g.input("bad", Shape::new(n, 1, 1, 1)).unwrap();
    assert!(g.conv2d_cat_channel_bias("conv", &ins, "c", Conv::same(3), bad).is_err());
    let r = g.input("r", Shape::new(n, cout, h, w)).unwrap();
    let ti = g.input("t", Shape::new(n, cout, 1, 1)).unwrap();
    assert!(g.conv2d_cat_channel_bias("conv", &ins, "c", Conv::same(3).residual(r, 1.0, 1.0), ti).is_err());
}
