//! Convolution nodes in the graph and a model-sized graph: an RRDB stack
//! (ESRGAN's residual-in-residual dense blocks, HCFlow's conditional trunk)
//! checked against a naive f64 CPU reference, with its memory plan and
//! per-node profile (run with `--nocapture` to see them).

#[path = "kernels/common.rs"]
mod common;

use common::*;
use wgsr::graph::ops::conv::Conv;
use wgsr::graph::{Executor, GraphBuilder, TensorId};
use wgsr::ops::conv::{self, Activation, Conv2dParams, Conv2dWeights, ConvTranspose2dParams, Epilogue};
use wgsr::ops::winograd::WinogradTile;
use wgsr::weights::{HostTensor, WeightStore};
use wgsr::{Error, Result, Shape, Tensor};

const SLOPE: f32 = 0.2;

/// Naive 3x3 (or any odd k) stride-1 same-padded conv in f64, NCHW, one sample.
fn conv_ref(x: &[f64], cin: usize, h: usize, w: usize, wt: &[f32], b: &[f32], cout: usize, k: usize) -> Vec<f64> {
    let p = (k / 2) as isize;
    let mut out = vec![0f64; cout * h * w];
    for co in 0..cout {
        for y in 0..h {
            for xx in 0..w {
                let mut acc = b[co] as f64;
                for ci in 0..cin {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = (y as isize + ky as isize - p, xx as isize + kx as isize - p);
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            acc += wt[((co * cin + ci) * k + ky) * k + kx] as f64 * x[(ci * h + iy as usize) * w + ix as usize];
                        }
                    }
                }
                out[(co * h + y) * w + xx] = acc;
            }
        }
    }
    out
}

fn lrelu(v: f64) -> f64 {
    if v < 0.0 {
        v * SLOPE as f64
    } else {
        v
    }
}

struct Dims {
    nf: usize,
    gc: usize,
    blocks: usize,
}

/// Random RRDB-stack weights with torch key names `trunk.{i}.RDB{r}.conv{j}.{weight,bias}`.
fn rrdb_weights(d: &Dims, rng: &mut Rng) -> WeightStore {
    let mut ws = WeightStore::new();
    for i in 0..d.blocks {
        for r in 1..=3 {
            for j in 1..=5 {
                let cin = d.nf + (j - 1) * d.gc;
                let cout = if j == 5 { d.nf } else { d.gc };
                // fan-in scaled so activations stay O(1) through the stack
                let a = (3.0 / (cin * 9) as f64).sqrt();
                let p = format!("trunk.{i}.RDB{r}.conv{j}");
                ws.insert(format!("{p}.weight"), HostTensor::new(vec![cout, cin, 3, 3], rng.vec(cout * cin * 9, -a, a)).unwrap());
                ws.insert(format!("{p}.bias"), HostTensor::new(vec![cout], rng.vec(cout, -0.1, 0.1)).unwrap());
            }
        }
    }
    ws
}

fn rdb(g: &mut GraphBuilder, x: TensorId, p: &str) -> Result<TensorId> {
    let mut feats = vec![x];
    for j in 1..=4 {
        let inp = if feats.len() == 1 { x } else { g.concat(&format!("{p}.cat{j}"), &feats)? };
        let y = g.conv2d(&format!("{p}.conv{j}"), inp, &format!("{p}.conv{j}"), Conv::same(3).act(Activation::LeakyRelu(SLOPE)))?;
        feats.push(y);
    }
    let inp = g.concat(&format!("{p}.cat5"), &feats)?;
    // x5 * 0.2 + x fused into conv5's epilogue
    g.conv2d(&format!("{p}.conv5"), inp, &format!("{p}.conv5"), Conv::same(3).residual(x, 0.2, 1.0))
}

fn rrdb_graph(g: &mut GraphBuilder, s: Shape, blocks: usize) -> Result<()> {
    let x0 = g.input("x", s)?;
    let mut x = x0;
    for i in 0..blocks {
        let p = format!("trunk.{i}");
        let r1 = rdb(g, x, &format!("{p}.RDB1"))?;
        let r2 = rdb(g, r1, &format!("{p}.RDB2"))?;
        let r3 = rdb(g, r2, &format!("{p}.RDB3"))?;
        x = g.axpby(&format!("{p}.res"), r3, x, 0.2, 1.0)?;
    }
    g.output("y", x)
}

fn rdb_ref(ws: &WeightStore, x: &[f64], d: &Dims, h: usize, w: usize, p: &str) -> Vec<f64> {
    let mut cat = x.to_vec();
    let mut cin = d.nf;
    for j in 1..=5 {
        let wt = ws.get(&format!("{p}.conv{j}.weight"), None).unwrap();
        let b = ws.get(&format!("{p}.conv{j}.bias"), None).unwrap();
        let cout = wt.shape[0];
        let y = conv_ref(&cat, cin, h, w, &wt.data, &b.data, cout, 3);
        if j == 5 {
            return y.iter().zip(x).map(|(a, b)| a * 0.2 + b).collect();
        }
        // channel concat of one sample = append
        cat.extend(y.into_iter().map(lrelu));
        cin += cout;
    }
    unreachable!()
}

fn rrdb_ref(ws: &WeightStore, x: &[f64], d: &Dims, h: usize, w: usize) -> Vec<f64> {
    let mut x = x.to_vec();
    for i in 0..d.blocks {
        let p = format!("trunk.{i}");
        let r1 = rdb_ref(ws, &x, d, h, w, &format!("{p}.RDB1"));
        let r2 = rdb_ref(ws, &r1, d, h, w, &format!("{p}.RDB2"));
        let r3 = rdb_ref(ws, &r2, d, h, w, &format!("{p}.RDB3"));
        x = r3.iter().zip(&x).map(|(a, b)| a * 0.2 + b).collect();
    }
    x
}

#[test]
fn rrdb_stack_matches_reference_and_plan_reuses_memory() {
    let c = ctx();
    let d = Dims { nf: 16, gc: 8, blocks: 2 };
    let s = Shape::new(2, d.nf, 11, 13);
    let mut rng = Rng::new(71);
    let ws = rrdb_weights(&d, &mut rng);
    let xv = rng.vec(s.numel(), -1.0, 1.0);

    let mut g = GraphBuilder::with_weights(c, &ws);
    rrdb_graph(&mut g, s, d.blocks).unwrap();
    assert!(ws.unused().is_empty(), "unused weights: {:?}", ws.unused());
    let graph = g.build().unwrap();
    let mut ex = Executor::new(c, graph).unwrap();
    let plan = ex.plan().clone();
    println!("{plan}");
    assert!(
        plan.peak_bytes * 3 < plan.no_reuse_bytes,
        "peak {} vs no-reuse {}: the planner should reuse most buffers of a long stack",
        plan.peak_bytes,
        plan.no_reuse_bytes
    );

    ex.set_input(c, "x", &xv).unwrap();
    ex.run(c).unwrap();
    let got = ex.read_output(c, "y").unwrap();
    let per = s.numel() / s.n();
    let mut want = Vec::with_capacity(s.numel());
    for n in 0..s.n() {
        let x64: Vec<f64> = xv[n * per..(n + 1) * per].iter().map(|&v| v as f64).collect();
        want.extend(rrdb_ref(&ws, &x64, &d, s.h(), s.w()));
    }
    // 30 chained convs with K up to 16+4*8=48 taps*9: each adds ~1e-6 relative
    // rounding; activations are O(1), so 1e-4 absolute bounds the chain.
    assert_close("graph.rrdb2_nf16", &got, &want, 1e-4, 1e-4);

    let prof = ex.profile(c, 2).unwrap();
    println!("{prof}");
    assert_eq!(prof.rows.iter().filter(|r| r.kind == "conv2d").count(), 2 * 3 * 5);
    assert!(prof.rows.iter().all(|r| r.ms.is_finite() && r.ms >= 0.0));
}

#[test]
fn conv_nodes_reject_bad_weights_and_shapes() {
    let c = ctx();
    let mut ws = WeightStore::new();
    ws.insert("a.weight", HostTensor::new(vec![4, 3, 3, 3], vec![0.1; 108]).unwrap());
    ws.insert("a.bias", HostTensor::new(vec![5], vec![0.0; 5]).unwrap());
    ws.insert("flat.weight", HostTensor::new(vec![4, 27], vec![0.1; 108]).unwrap());
    ws.insert("t.weight", HostTensor::new(vec![4, 2, 4, 4], vec![0.1; 128]).unwrap());
    let s = Shape::new(1, 3, 8, 8);

    let err = |f: &dyn Fn(&mut GraphBuilder, TensorId) -> Result<TensorId>| -> Error {
        let mut g = GraphBuilder::with_weights(c, &ws);
        let x = g.input("x", s).unwrap();
        f(&mut g, x).unwrap_err()
    };
    // bias of the wrong length
    let e = err(&|g, x| g.conv2d("c1", x, "a", Conv::same(3)));
    assert!(e.to_string().contains("a.bias"), "{e}");
    // missing weight
    let e = err(&|g, x| g.conv2d("c2", x, "nope", Conv::same(3)));
    assert!(e.to_string().contains("nope.weight") && e.to_string().contains("c2"), "{e}");
    // not 4-D
    let e = err(&|g, x| g.conv2d("c3", x, "flat", Conv::same(3)));
    assert!(e.to_string().contains("c3") && e.to_string().contains("4 dimensions"), "{e}");
    // channel mismatch: transposed weights expect 4 input channels
    let e = err(&|g, x| g.conv_transpose2d("c4", x, "t", ConvTranspose2dParams::new(2, 1, 0), Epilogue::default()));
    assert!(e.to_string().contains("c4") && e.to_string().contains("channels"), "{e}");
    // residual of the wrong shape
    let e = err(&|g, x| {
        let w = HostTensor::new(vec![3, 3, 3, 3], vec![0.1; 81]).unwrap();
        let r = g.input("r", Shape::new(1, 3, 4, 4))?;
        g.conv2d_with("c5", x, &w, None, None, Conv::same(3).residual(r, 1.0, 1.0))
    });
    assert!(e.to_string().contains("c5") && e.to_string().contains("residual"), "{e}");
}

#[test]
fn transposed_conv_node_upsamples() {
    let c = ctx();
    let mut rng = Rng::new(3);
    let (cin, cout) = (5, 3);
    let wv = rng.vec(cin * cout * 16, -0.3, 0.3);
    let bv = rng.vec(cout, -0.1, 0.1);
    let mut ws = WeightStore::new();
    ws.insert("up.weight", HostTensor::new(vec![cin, cout, 4, 4], wv.clone()).unwrap());
    ws.insert("up.bias", HostTensor::new(vec![cout], bv.clone()).unwrap());
    let s = Shape::new(1, cin, 5, 6);
    let mut g = GraphBuilder::with_weights(c, &ws);
    let x = g.input("x", s).unwrap();
    let y = g.conv_transpose2d("up", x, "up", ConvTranspose2dParams::new(2, 1, 0), Epilogue::act(Activation::Relu)).unwrap();
    assert_eq!(g.shape(y).unwrap(), Shape::new(1, cout, 10, 12));
    g.output("y", y).unwrap();
    let mut ex = Executor::new(c, g.build().unwrap()).unwrap();
    let xv = rng.vec(s.numel(), -1.0, 1.0);
    ex.set_input(c, "x", &xv).unwrap();
    ex.run(c).unwrap();
    let got = ex.read_output(c, "y").unwrap();
    // out[o, oy, ox] += x[i, iy, ix] * w[i, o, ky, kx] where oy = 2*iy - 1 + ky
    let (ho, wo) = (10usize, 12usize);
    let mut want = vec![0f64; cout * ho * wo];
    for o in 0..cout {
        for v in &mut want[o * ho * wo..(o + 1) * ho * wo] {
            *v = bv[o] as f64;
        }
    }
    for i in 0..cin {
        for iy in 0..5 {
            for ix in 0..6 {
                for o in 0..cout {
                    for ky in 0..4 {
                        for kx in 0..4 {
                            let (oy, ox) = (2 * iy as isize - 1 + ky as isize, 2 * ix as isize - 1 + kx as isize);
                            if oy < 0 || ox < 0 || oy >= ho as isize || ox >= wo as isize {
                                continue;
                            }
                            want[(o * ho + oy as usize) * wo + ox as usize] +=
                                xv[(i * 5 + iy) * 6 + ix] as f64 * wv[((i * cout + o) * 4 + ky) * 4 + kx] as f64;
                        }
                    }
                }
            }
        }
    }
    let want: Vec<f64> = want.into_iter().map(|v| v.max(0.0)).collect();
    assert_close("graph.conv_transpose_s2", &got, &want, 1e-5, 1e-5);
}

/// f64 conv over the channel concatenation of `parts` (one sample each),
/// then bias, activation and optional residual r * 0.2 + y.
#[allow(clippy::too_many_arguments)]
fn cat_conv_ref(parts: &[&[f32]], chans: &[usize], n: usize, h: usize, w: usize, wt: &[f32], b: &[f32], cout: usize, act: Activation, res: Option<&[f32]>) -> Vec<f64> {
    let cin: usize = chans.iter().sum();
    let mut out = Vec::new();
    for s in 0..n {
        let mut x = Vec::with_capacity(cin * h * w);
        for (p, &c) in parts.iter().zip(chans) {
            x.extend(p[s * c * h * w..(s + 1) * c * h * w].iter().map(|&v| v as f64));
        }
        out.extend(conv_ref(&x, cin, h, w, wt, b, cout, 3).into_iter().map(|v| match act {
            Activation::LeakyRelu(_) => lrelu(v),
            _ => v,
        }));
    }
    if let Some(r) = res {
        for (o, r) in out.iter_mut().zip(r) {
            *o = *o * 0.2 + *r as f64;
        }
    }
    out
}

/// conv2d_cat over 2, 3 and 4 inputs (partial sums accumulated in place in
/// the output) equals concat + conv2d: both against
/// the f64 reference, the bits of the direct conv kernel over the
/// materialised concatenation, and a smaller plan.
#[test]
fn conv2d_cat_equals_concat_then_conv() {
    let c = ctx();
    let (n, h, w, cout) = (2, 9, 11, 8);
    for (case, chans) in [vec![16usize, 8], vec![5, 8, 3], vec![16, 8, 8, 8]].into_iter().enumerate() {
        let mut rng = Rng::new(90 + case as u64);
        let cin: usize = chans.iter().sum();
        let wt = rng.vec(cout * cin * 9, -0.2, 0.2);
        let b = rng.vec(cout, -0.1, 0.1);
        let mut ws = WeightStore::new();
        ws.insert("conv.weight", HostTensor::new(vec![cout, cin, 3, 3], wt.clone()).unwrap());
        ws.insert("conv.bias", HostTensor::new(vec![cout], b.clone()).unwrap());
        let xs: Vec<Vec<f32>> = chans.iter().map(|&ci| rng.vec(n * ci * h * w, -1.0, 1.0)).collect();
        let rv = rng.vec(n * cout * h * w, -1.0, 1.0);
        // Even cases: LeakyReLU, odd: a residual (the RDB's conv5).
        let residual = case % 2 == 1;
        let act = if residual { Activation::None } else { Activation::LeakyRelu(SLOPE) };
        let run = |cat: bool| {
            let mut g = GraphBuilder::with_weights(c, &ws);
            // Direct convs (the bits of the direct kernel, checked below).
            g.set_winograd(None);
            let ids: Vec<TensorId> = chans.iter().enumerate().map(|(i, &ci)| g.input(&format!("x{i}"), Shape::new(n, ci, h, w)).unwrap()).collect();
            let r = g.input("r", Shape::new(n, cout, h, w)).unwrap();
            let mut conv = Conv::same(3).act(act);
            if residual {
                conv = conv.residual(r, 0.2, 1.0);
            }
            let y = if cat {
                g.conv2d_cat("conv", &ids, "conv", conv).unwrap()
            } else {
                let x = g.concat("cat", &ids).unwrap();
                g.conv2d("conv", x, "conv", conv).unwrap()
            };
            g.output("y", y).unwrap();
            let mut ex = Executor::new(c, g.build().unwrap()).unwrap();
            for (i, x) in xs.iter().enumerate() {
                ex.set_input(c, &format!("x{i}"), x).unwrap();
            }
            ex.set_input(c, "r", &rv).unwrap();
            ex.run(c).unwrap();
            (ex.read_output(c, "y").unwrap(), ex.plan().peak_bytes)
        };
        let (got, peak_cat) = run(true);
        let (concat, peak_concat) = run(false);
        let parts: Vec<&[f32]> = xs.iter().map(|v| v.as_slice()).collect();
        let want = cat_conv_ref(&parts, &chans, n, h, w, &wt, &b, cout, act, residual.then_some(&rv[..]));
        let name = format!("graph.conv2d_cat_{}in", chans.len());
        assert_close(&name, &got, &want, 1e-5, 1e-5);
        assert_close(&format!("{name} (concat + conv2d)"), &concat, &want, 1e-5, 1e-5);
        // The direct kernel (eager) on the host concatenation: same bits.
        let cin_s = Shape::new(n, cin, h, w);
        let xcat: Vec<f32> = (0..n).flat_map(|s| xs.iter().zip(&chans).flat_map(move |(v, &ci)| v[s * ci * h * w..(s + 1) * ci * h * w].to_vec())).collect();
        let xt = Tensor::from_slice(c, cin_s, &xcat).unwrap();
        let rt = Tensor::from_slice(c, Shape::new(n, cout, h, w), &rv).unwrap();
        let full = Conv2dWeights::new(c, &wt, [cout, cin, 3, 3], Some(&b), None).unwrap();
        let epi = if residual { Epilogue { activation: act, alpha: 0.2, beta: 1.0 } } else { Epilogue::act(act) };
        let out = poisoned(Shape::new(n, cout, h, w));
        let d = conv::conv2d(c, &xt, &full, &Conv2dParams::new(1, 1), &epi, residual.then_some(&rt), &out).unwrap();
        assert_exact(&format!("{name} == conv2d(cat) kernel"), &got, &run_and_read(d, &out));
        println!("{name}: plan peak {peak_cat} bytes vs {peak_concat} with the concat");
        assert!(peak_cat < peak_concat, "{name}: plan peak {peak_cat} vs {peak_concat} with the concat");
    }
}

#[test]
fn conv2d_cat_rejects_bad_inputs() {
    let c = ctx();
    let mut ws = WeightStore::new();
    ws.insert("k.weight", HostTensor::new(vec![4, 5, 3, 3], vec![0.1; 180]).unwrap());
    ws.insert("k.bias", HostTensor::new(vec![4], vec![0.0; 4]).unwrap());
    let err = |f: &dyn Fn(&mut GraphBuilder) -> Result<TensorId>| -> String {
        let mut g = GraphBuilder::with_weights(c, &ws);
        f(&mut g).unwrap_err().to_string()
    };
    let e = err(&|g| g.conv2d_cat("none", &[], "k", Conv::same(3)));
    assert!(e.contains("'none'") && e.contains("no inputs"), "{e}");
    // Channels that do not add up to the weight's input channels.
    let e = err(&|g| {
        let a = g.input("a", Shape::new(1, 2, 6, 6))?;
        let b = g.input("b", Shape::new(1, 2, 6, 6))?;
        g.conv2d_cat("chans", &[a, b], "k", Conv::same(3))
    });
    assert!(e.contains("'chans'") && e.contains("expects 5"), "{e}");
    // Parts of different sizes.
    let e = err(&|g| {
        let a = g.input("a", Shape::new(1, 2, 6, 6))?;
        let b = g.input("b", Shape::new(1, 3, 6, 5))?;
        g.conv2d_cat("size", &[a, b], "k", Conv::same(3))
    });
    assert!(e.contains("'size'") && e.contains("batch or size"), "{e}");
    // Groups over several inputs.
    let e = err(&|g| {
        let a = g.input("a", Shape::new(1, 4, 6, 6))?;
        let b = g.input("b", Shape::new(1, 6, 6, 6))?;
        let wt = HostTensor::new(vec![4, 5, 3, 3], vec![0.1; 180])?;
        let mut conv = Conv::same(3);
        conv.params.groups = 2;
        g.conv2d_cat_with("grouped", &[a, b], &wt, None, None, conv)
    });
    assert!(e.contains("'grouped'") && e.contains("groups = 2"), "{e}");
    // A residual of the wrong shape.
    let e = err(&|g| {
        let a = g.input("a", Shape::new(1, 2, 6, 6))?;
        let b = g.input("b", Shape::new(1, 3, 6, 6))?;
        let r = g.input("r", Shape::new(1, 4, 6, 5))?;
        g.conv2d_cat("res", &[a, b], "k", Conv::same(3).residual(r, 1.0, 1.0))
    });
    assert!(e.contains("'res'") && e.contains("residual"), "{e}");
}

/// A 3x3 conv2d_cat the graph runs as Winograd (enough channels and pixels)
/// takes its parts in the Winograd input transforms: the bits of concat +
/// conv2d (also Winograd) and the f64 reference within Winograd's bound.
#[test]
fn conv2d_cat_takes_winograd_with_parts() {
    let c = ctx();
    let (h, w, cout, chans) = (20, 18, 20, [16usize, 8]);
    let cin: usize = chans.iter().sum();
    let mut rng = Rng::new(97);
    let wt = rng.vec(cout * cin * 9, -0.3, 0.3);
    let b = rng.vec(cout, -0.2, 0.2);
    let mut ws = WeightStore::new();
    ws.insert("conv.weight", HostTensor::new(vec![cout, cin, 3, 3], wt.clone()).unwrap());
    ws.insert("conv.bias", HostTensor::new(vec![cout], b.clone()).unwrap());
    let xs: Vec<Vec<f32>> = chans.iter().map(|&ci| rng.vec(ci * h * w, -1.0, 1.0)).collect();
    for (tile, grad, growth) in [(WinogradTile::F4, false, 32.0), (WinogradTile::F2, true, 4.0)] {
        let run = |cat: bool| {
            let mut g = GraphBuilder::with_weights(c, &ws);
            if grad {
                g.enable_gradients();
            }
            g.set_winograd(Some(tile));
            let ids: Vec<TensorId> = chans.iter().enumerate().map(|(i, &ci)| g.input(&format!("x{i}"), Shape::new(1, ci, h, w)).unwrap()).collect();
            let conv = Conv::same(3).act(Activation::LeakyRelu(SLOPE));
            let y = if cat {
                g.conv2d_cat("conv", &ids, "conv", conv).unwrap()
            } else {
                let x = g.concat("cat", &ids).unwrap();
                g.conv2d("conv", x, "conv", conv).unwrap()
            };
            g.output("y", y).unwrap();
            let names: Vec<String> = (0..xs.len()).map(|i| format!("x{i}")).collect();
            let inputs: Vec<(&str, &[f32])> = names.iter().map(String::as_str).zip(xs.iter().map(Vec::as_slice)).collect();
            run_graph(g.build().unwrap(), &inputs, "y")
        };
        let ((got, dump), (concat, _)) = (run(true), run(false));
        if std::env::var_os("WGSR_WINOGRAD").is_none() {
            assert!(dump.contains(&format!("winograd {tile:?}")) && !dump.contains("concat"), "{dump}");
        }
        let parts: Vec<&[f32]> = xs.iter().map(|v| v.as_slice()).collect();
        let want = cat_conv_ref(&parts, &chans, 1, h, w, &wt, &b, cout, Activation::LeakyRelu(SLOPE), None);
        // tests/graph_winograd.rs's bound: direct 1e-5 * sqrt(K) * 0.3, x4 F(2x2), x32 F(4x4).
        let tol = growth * 1e-5 * ((cin * 9) as f64).sqrt() * 0.3;
        let name = format!("graph.conv2d_cat winograd {tile:?}");
        assert_close(&name, &got, &want, tol, 1e-5);
        assert_exact(&format!("{name} == concat + conv2d"), &got, &concat);
    }
}
