//! Reverse-mode gradients of graph ops against central finite differences
//! of naive f64 CPU references.
//!
//! Each case builds a one-op graph (plus its backward nodes) on the GPU,
//! seeds it with a random output gradient `dy` and compares the input
//! gradient with `(f(x + h e_j) - f(x - h e_j)) . dy / 2h` of the f64
//! reference, for every element j. Inputs are random and non-zero; kinks
//! (ReLU at 0, clamp at its bounds) are kept away from by the input ranges.
//! Tolerance: max |gpu - fd| <= 1e-4 * max |fd| (f32 kernels; the f64
//! differences themselves are accurate to ~1e-9 at h = 1e-5). Each case
//! prints its max relative error (`grad_err <op>: ...`) for the notes.

use wgsr::graph::ops::conv::Conv;
use wgsr::graph::ops::flow::Dir;
use wgsr::graph::{Executor, GraphBuilder, TensorId};
use wgsr::ops::conv::{Activation, Conv2dParams};
use wgsr::ops::coupling::GaussianScale;
use wgsr::weights::{HostTensor, WeightStore};
use wgsr::{GpuContext, Shape};

#[path = "kernels/common.rs"]
mod common;
use common::{ctx, Rng};

const TOL: f64 = 1e-4;
const H: f64 = 1e-5;

type Build = Box<dyn Fn(&mut GraphBuilder, &[TensorId]) -> TensorId>;
type Reference = Box<dyn Fn(&[Vec<f64>]) -> Vec<f64>>;

struct Case {
    name: &'static str,
    /// Input shapes and value ranges.
    inputs: Vec<(Shape, f64, f64)>,
    /// Inputs differentiated (the others are data, e.g. latents).
    wrt: Vec<usize>,
    weights: WeightStore,
    build: Build,
    reference: Reference,
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|x| *x as f64).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Run the case; returns the max relative error over its differentiated inputs.
fn check(case: Case, seed: u64) -> f64 {
    let c: &GpuContext = ctx();
    let mut rng = Rng::new(seed);
    let xs: Vec<Vec<f32>> = case.inputs.iter().map(|(s, lo, hi)| rng.vec(s.numel(), *lo, *hi)).collect();
    let mut g = GraphBuilder::with_weights(c, &case.weights);
    g.enable_gradients();
    let ids: Vec<TensorId> = case.inputs.iter().enumerate().map(|(i, (s, _, _))| g.input(&format!("x{i}"), *s).unwrap()).collect();
    let y = (case.build)(&mut g, &ids);
    let ys = g.shape(y).unwrap();
    let dy_id = g.input("dy", ys).unwrap();
    let wrt: Vec<TensorId> = case.wrt.iter().map(|&i| ids[i]).collect();
    let grads = g.backward(&[(y, dy_id)], &wrt).unwrap();
    g.output("y", y).unwrap();
    for (k, t) in grads.iter().enumerate() {
        g.output(&format!("g{k}"), *t).unwrap();
    }
    let mut ex = Executor::new(c, g.build().unwrap()).unwrap();
    let dy = rng.vec(ys.numel(), -1.0, 1.0);
    for (i, x) in xs.iter().enumerate() {
        ex.set_input(c, &format!("x{i}"), x).unwrap();
    }
    ex.set_input(c, "dy", &dy).unwrap();
    ex.run(c).unwrap();
    let x64: Vec<Vec<f64>> = xs.iter().map(|v| f64s(v)).collect();
    let dy64 = f64s(&dy);
    // The forward value itself first: a wrong forward would make any
    // gradient comparison meaningless.
    let y_gpu = ex.read_output(c, "y").unwrap();
    let y_ref = (case.reference)(&x64);
    assert_eq!(y_gpu.len(), y_ref.len(), "{}: forward length", case.name);
    let scale = y_ref.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in y_gpu.iter().zip(&y_ref).enumerate() {
        assert!((*a as f64 - b).abs() <= 1e-5 * scale, "{}: forward element {i} = {a}, reference {b}", case.name);
    }
    let mut worst = 0.0f64;
    for (k, &inp) in case.wrt.iter().enumerate() {
        let got = ex.read_output(c, &format!("g{k}")).unwrap();
        let mut fd = vec![0f64; x64[inp].len()];
        for (j, slot) in fd.iter_mut().enumerate() {
            let mut xp = x64.clone();
            let h = H * x64[inp][j].abs().max(1.0);
            xp[inp][j] += h;
            let fp = dot(&(case.reference)(&xp), &dy64);
            xp[inp][j] -= 2.0 * h;
            let fm = dot(&(case.reference)(&xp), &dy64);
            *slot = (fp - fm) / (2.0 * h);
        }
        let big = fd.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(big > 1e-6, "{}: the reference gradient of input {inp} is all zero (a vacuous check)", case.name);
        let err = got.iter().zip(&fd).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs())) / big;
        println!("grad_err {} (input {inp}, n={}): max rel {err:.2e}", case.name, fd.len());
        assert!(err <= TOL, "{}: gradient of input {inp} off by {err:e} relative (tolerance {TOL:e})", case.name);
        worst = worst.max(err);
    }
    worst
}

// ------------------------------------------------------------ references

fn idx(s: Shape, n: usize, c: usize, y: usize, x: usize) -> usize {
    ((n * s.c() + c) * s.h() + y) * s.w() + x
}

#[allow(clippy::too_many_arguments)]
fn conv_ref(x: &[f64], s: Shape, w: &[f32], ws: [usize; 4], bias: Option<&[f32]>, scale: Option<&[f32]>, stride: usize, pad: usize, groups: usize, act: Activation, alpha: f64, res: Option<(&[f64], f64)>) -> (Vec<f64>, Shape) {
    let [co, cig, kh, kw] = ws;
    let ho = (s.h() + 2 * pad - kh) / stride + 1;
    let wo = (s.w() + 2 * pad - kw) / stride + 1;
    let os = Shape::new(s.n(), co, ho, wo);
    let cog = co / groups;
    let mut out = vec![0f64; os.numel()];
    for n in 0..s.n() {
        for o in 0..co {
            let gi = o / cog;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = 0.0;
                    for ci in 0..cig {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * stride + ky) as isize - pad as isize;
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if iy < 0 || ix < 0 || iy >= s.h() as isize || ix >= s.w() as isize {
                                    continue;
                                }
                                let wv = w[((o * cig + ci) * kh + ky) * kw + kx] as f64;
                                acc += wv * x[idx(s, n, gi * cig + ci, iy as usize, ix as usize)];
                            }
                        }
                    }
                    let mut v = (acc + bias.map_or(0.0, |b| b[o] as f64)) * scale.map_or(1.0, |sc| sc[o] as f64);
                    v = match act {
                        Activation::None => v,
                        Activation::Relu => v.max(0.0),
                        Activation::LeakyRelu(sl) => {
                            if v > 0.0 {
                                v
                            } else {
                                v * sl as f64
                            }
                        }
                        Activation::Tanh => v.tanh(),
                        Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
                        Activation::Swish => v / (1.0 + (-v).exp()),
                    };
                    let i = idx(os, n, o, oy, ox);
                    out[i] = alpha * v + res.map_or(0.0, |(r, b)| b * r[i]);
                }
            }
        }
    }
    (out, os)
}

/// HCFlow's bounded log-scale; 0.318 is the model's constant, not 1/pi.
#[allow(clippy::approx_constant)]
fn logscale(v: f64) -> f64 {
    0.318 * (2.0 * v).atan()
}

fn invert(a: &[f64], n: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    let mut inv: Vec<f64> = (0..n * n).map(|k| if k / n == k % n { 1.0 } else { 0.0 }).collect();
    for col in 0..n {
        let p = (col..n).max_by(|&i, &j| m[i * n + col].abs().total_cmp(&m[j * n + col].abs())).unwrap();
        for k in 0..n {
            m.swap(col * n + k, p * n + k);
            inv.swap(col * n + k, p * n + k);
        }
        let d = m[col * n + col];
        for k in 0..n {
            m[col * n + k] /= d;
            inv[col * n + k] /= d;
        }
        for r in 0..n {
            if r != col {
                let f = m[r * n + col];
                for k in 0..n {
                    m[r * n + k] -= f * m[col * n + k];
                    inv[r * n + k] -= f * inv[col * n + k];
                }
            }
        }
    }
    inv
}

fn store(items: Vec<(&str, Vec<usize>, Vec<f32>)>) -> WeightStore {
    let mut w = WeightStore::new();
    for (k, s, v) in items {
        w.insert(k, HostTensor::new(s, v).unwrap());
    }
    w
}

#[allow(clippy::too_many_arguments)]
fn conv_case(name: &'static str, s: Shape, ws: [usize; 4], stride: usize, pad: usize, groups: usize, act: Activation, alpha: f32, with_scale: bool, residual: bool, seed: u64) -> Case {
    let mut rng = Rng::new(seed ^ 0xC0);
    let w = rng.vec(ws.iter().product(), -0.5, 0.5);
    let b = rng.vec(ws[0], -0.2, 0.2);
    let sc = with_scale.then(|| rng.vec(ws[0], 0.5, 1.5));
    let (w2, b2, sc2) = (w.clone(), b.clone(), sc.clone());
    let params = Conv2dParams { stride: [stride; 2], padding: [pad; 2], groups, ..Default::default() };
    let (_, os) = conv_ref(&vec![0.0; s.numel()], s, &w, ws, None, None, stride, pad, groups, Activation::None, 1.0, None);
    let mut inputs = vec![(s, -1.0, 1.0)];
    if residual {
        inputs.push((os, -1.0, 1.0));
    }
    let wrt = (0..inputs.len()).collect();
    Case {
        name,
        inputs,
        wrt,
        weights: WeightStore::new(),
        build: Box::new(move |g, x| {
            let mut c = Conv { params, ..Default::default() }.act(act);
            c.epilogue.alpha = alpha;
            if residual {
                c = c.residual(x[1], alpha, 0.7);
            }
            let wt = HostTensor::new(ws.to_vec(), w2.clone()).unwrap();
            g.conv2d_with("conv", x[0], &wt, Some(&b2), sc2.as_deref(), c).unwrap()
        }),
        reference: Box::new(move |x| {
            let res = if residual { Some((x[1].as_slice(), 0.7)) } else { None };
            conv_ref(&x[0], s, &w, ws, Some(&b), sc.as_deref(), stride, pad, groups, act, alpha as f64, res).0
        }),
    }
}

#[test]
fn conv_vjps_match_finite_differences() {
    let s = Shape::new(2, 4, 7, 6);
    let cases = [
        conv_case("conv3x3 (bias)", s, [5, 4, 3, 3], 1, 1, 1, Activation::None, 1.0, false, false, 1),
        conv_case("conv3x3 lrelu0.2", s, [6, 4, 3, 3], 1, 1, 1, Activation::LeakyRelu(0.2), 1.0, false, false, 2),
        conv_case("conv3x3 actnorm-scale relu", s, [5, 4, 3, 3], 1, 1, 1, Activation::Relu, 1.0, true, false, 3),
        conv_case("conv1x1 relu", s, [3, 4, 1, 1], 1, 0, 1, Activation::Relu, 1.0, true, false, 4),
        conv_case("conv3x3 residual 0.2*y+0.7*r", s, [4, 4, 3, 3], 1, 1, 1, Activation::None, 0.2, false, true, 5),
        conv_case("conv3x3 stride2", s, [3, 4, 3, 3], 2, 1, 1, Activation::None, 1.0, false, false, 6),
        conv_case("conv2x2 stride2 depthwise", Shape::new(1, 4, 6, 8), [4, 1, 2, 2], 2, 0, 4, Activation::None, 1.0, false, false, 7),
        conv_case("conv3x3 tanh", s, [3, 4, 3, 3], 1, 1, 1, Activation::Tanh, 1.0, false, false, 8),
        conv_case("conv3x3 sigmoid groups2", s, [4, 2, 3, 3], 1, 1, 2, Activation::Sigmoid, 1.0, false, false, 9),
    ];
    for (k, c) in cases.into_iter().enumerate() {
        check(c, 100 + k as u64);
    }
}

/// conv2d_cat over parts of `chans` channels (shape `s` otherwise), all
/// inputs differentiated; the reference is the conv of their concatenation.
#[allow(clippy::too_many_arguments)]
fn conv_cat_case(name: &'static str, s: Shape, chans: Vec<usize>, cout: usize, k: usize, act: Activation, with_scale: bool, residual: bool, seed: u64) -> Case {
    let mut rng = Rng::new(seed ^ 0xCA7);
    let cin: usize = chans.iter().sum();
    let ws = [cout, cin, k, k];
    let w = rng.vec(ws.iter().product(), -0.5, 0.5);
    let b = rng.vec(cout, -0.2, 0.2);
    let sc = with_scale.then(|| rng.vec(cout, 0.5, 1.5));
    let (w2, b2, sc2) = (w.clone(), b.clone(), sc.clone());
    let pad = k / 2;
    let cat_s = Shape::new(s.n(), cin, s.h(), s.w());
    let mut inputs: Vec<(Shape, f64, f64)> = chans.iter().map(|&c| (Shape::new(s.n(), c, s.h(), s.w()), -1.0, 1.0)).collect();
    let np = chans.len();
    if residual {
        inputs.push((Shape::new(s.n(), cout, s.h(), s.w()), -1.0, 1.0));
    }
    let wrt = (0..inputs.len()).collect();
    let alpha = if residual { 0.2 } else { 1.0 };
    Case {
        name,
        inputs,
        wrt,
        weights: WeightStore::new(),
        build: Box::new(move |g, x| {
            let mut c = Conv::same(k).act(act);
            if residual {
                c = c.residual(x[np], alpha, 0.7);
            }
            let wt = HostTensor::new(ws.to_vec(), w2.clone()).unwrap();
            g.conv2d_cat_with("conv", &x[..np], &wt, Some(&b2), sc2.as_deref(), c).unwrap()
        }),
        reference: Box::new(move |x| {
            let hw = s.h() * s.w();
            let mut cat = Vec::with_capacity(cat_s.numel());
            for n in 0..s.n() {
                for (p, &c) in x[..np].iter().zip(&chans) {
                    cat.extend_from_slice(&p[n * c * hw..(n + 1) * c * hw]);
                }
            }
            let res = if residual { Some((x[np].as_slice(), 0.7)) } else { None };
            conv_ref(&cat, cat_s, &w, ws, Some(&b), sc.as_deref(), 1, pad, 1, act, alpha as f64, res).0
        }),
    }
}

#[test]
fn conv_cat_vjps_match_finite_differences() {
    let s = Shape::new(2, 1, 6, 5);
    let cases = [
        conv_cat_case("conv_cat 2 inputs lrelu0.2", s, vec![3, 2], 4, 3, Activation::LeakyRelu(0.2), false, false, 1),
        conv_cat_case("conv_cat 3 inputs actnorm-scale relu", s, vec![2, 3, 2], 5, 3, Activation::Relu, true, false, 2),
        conv_cat_case("conv_cat 2 inputs residual 0.2*y+0.7*r", s, vec![2, 4], 4, 3, Activation::None, false, true, 3),
        conv_cat_case("conv_cat 3 inputs residual (RDB conv5)", s, vec![4, 2, 2], 4, 3, Activation::None, false, true, 4),
        conv_cat_case("conv_cat 3 inputs 1x1 tanh", s, vec![1, 2, 3], 3, 1, Activation::Tanh, true, false, 5),
    ];
    for (k, c) in cases.into_iter().enumerate() {
        check(c, 150 + k as u64);
    }
}

fn layout_case(name: &'static str, inputs: Vec<Shape>, build: Build, reference: Reference) -> Case {
    let wrt = (0..inputs.len()).collect();
    Case { name, inputs: inputs.into_iter().map(|s| (s, -1.0, 1.0)).collect(), wrt, weights: WeightStore::new(), build, reference }
}

#[test]
fn layout_and_elementwise_vjps_match_finite_differences() {
    let s = Shape::new(2, 3, 4, 6);
    let s2 = Shape::new(2, 2, 4, 6);
    let cases = vec![
        layout_case(
            "concat",
            vec![s, s2],
            Box::new(|g, x| g.concat("cat", &[x[0], x[1]]).unwrap()),
            Box::new(move |x| {
                let mut out = Vec::new();
                for n in 0..2 {
                    out.extend_from_slice(&x[0][n * s.numel() / 2..(n + 1) * s.numel() / 2]);
                    out.extend_from_slice(&x[1][n * s2.numel() / 2..(n + 1) * s2.numel() / 2]);
                }
                out
            }),
        ),
        layout_case(
            "slice_channels [1..3) of 5",
            vec![Shape::new(2, 5, 3, 4)],
            Box::new(|g, x| g.slice_channels("sl", x[0], 1, 1, 2).unwrap()),
            Box::new(|x| {
                let hw = 12;
                let mut out = Vec::new();
                for n in 0..2 {
                    out.extend_from_slice(&x[0][(n * 5 + 1) * hw..(n * 5 + 3) * hw]);
                }
                out
            }),
        ),
        layout_case(
            "upsample_nearest x2",
            vec![s],
            Box::new(|g, x| g.upsample_nearest("up", x[0], 2).unwrap()),
            Box::new(move |x| {
                let os = Shape::new(2, 3, 8, 12);
                let mut out = vec![0.0; os.numel()];
                for n in 0..2 {
                    for c in 0..3 {
                        for y in 0..8 {
                            for xx in 0..12 {
                                out[idx(os, n, c, y, xx)] = x[0][idx(s, n, c, y / 2, xx / 2)];
                            }
                        }
                    }
                }
                out
            }),
        ),
        layout_case(
            "squeeze2d f=2",
            vec![s],
            Box::new(|g, x| g.squeeze("sq", x[0], 2).unwrap()),
            Box::new(move |x| {
                let os = Shape::new(2, 12, 2, 3);
                let mut out = vec![0.0; os.numel()];
                for n in 0..2 {
                    for c in 0..3 {
                        for y in 0..4 {
                            for xx in 0..6 {
                                out[idx(os, n, c * 4 + (y % 2) * 2 + xx % 2, y / 2, xx / 2)] = x[0][idx(s, n, c, y, xx)];
                            }
                        }
                    }
                }
                out
            }),
        ),
        layout_case(
            "unsqueeze2d f=2",
            vec![Shape::new(2, 8, 2, 3)],
            Box::new(|g, x| g.unsqueeze("usq", x[0], 2).unwrap()),
            Box::new(|x| {
                let is = Shape::new(2, 8, 2, 3);
                let os = Shape::new(2, 2, 4, 6);
                let mut out = vec![0.0; os.numel()];
                for n in 0..2 {
                    for c in 0..2 {
                        for y in 0..4 {
                            for xx in 0..6 {
                                out[idx(os, n, c, y, xx)] = x[0][idx(is, n, c * 4 + (y % 2) * 2 + xx % 2, y / 2, xx / 2)];
                            }
                        }
                    }
                }
                out
            }),
        ),
        layout_case("haar_down", vec![s], Box::new(|g, x| g.haar_down("hd", x[0]).unwrap()), Box::new(move |x| haar_down_ref(&x[0], s))),
        layout_case(
            "haar_up",
            vec![Shape::new(2, 8, 3, 2)],
            Box::new(|g, x| g.haar_up("hu", x[0]).unwrap()),
            Box::new(|x| haar_up_ref(&x[0], Shape::new(2, 8, 3, 2))),
        ),
        layout_case(
            "axpby 0.3a-1.7b",
            vec![s, s],
            Box::new(|g, x| g.axpby("ax", x[0], x[1], 0.3, -1.7).unwrap()),
            Box::new(|x| x[0].iter().zip(&x[1]).map(|(a, b)| 0.3 * a - 1.7 * b).collect()),
        ),
        layout_case(
            "mul 1.5ab",
            vec![s, s],
            Box::new(|g, x| g.mul("mul", x[0], x[1], 1.5).unwrap()),
            Box::new(|x| x[0].iter().zip(&x[1]).map(|(a, b)| 1.5 * a * b).collect()),
        ),
        layout_case(
            "affine -2x+0.5",
            vec![s],
            Box::new(|g, x| g.affine("af", x[0], -2.0, 0.5).unwrap()),
            Box::new(|x| x[0].iter().map(|a| -2.0 * a + 0.5).collect()),
        ),
        layout_case(
            "reshape",
            vec![s],
            Box::new(|g, x| {
                let r = g.reshape("rs", x[0], Shape::new(1, 6, 4, 6)).unwrap();
                g.affine("scale", r, 3.0, 0.0).unwrap()
            }),
            Box::new(|x| x[0].iter().map(|a| 3.0 * a).collect()),
        ),
        // A tensor used twice: gradients from both uses must add up.
        layout_case(
            "fan-out x*x + x",
            vec![s],
            Box::new(|g, x| {
                let sq = g.mul("sq", x[0], x[0], 1.0).unwrap();
                g.add("sum", sq, x[0]).unwrap()
            }),
            Box::new(|x| x[0].iter().map(|a| a * a + a).collect()),
        ),
    ];
    for (k, c) in cases.into_iter().enumerate() {
        check(c, 200 + k as u64);
    }
}

fn haar_down_ref(x: &[f64], s: Shape) -> Vec<f64> {
    let os = Shape::new(s.n(), 4 * s.c(), s.h() / 2, s.w() / 2);
    let mut out = vec![0.0; os.numel()];
    for n in 0..s.n() {
        for c in 0..s.c() {
            for r in 0..os.h() {
                for j in 0..os.w() {
                    let a = x[idx(s, n, c, 2 * r, 2 * j)];
                    let b = x[idx(s, n, c, 2 * r, 2 * j + 1)];
                    let cc = x[idx(s, n, c, 2 * r + 1, 2 * j)];
                    let d = x[idx(s, n, c, 2 * r + 1, 2 * j + 1)];
                    let bands = [a + b + cc + d, a - b + cc - d, a + b - cc - d, a - b - cc + d];
                    for (k, v) in bands.iter().enumerate() {
                        out[idx(os, n, k * s.c() + c, r, j)] = v / 4.0;
                    }
                }
            }
        }
    }
    out
}

fn haar_up_ref(x: &[f64], s: Shape) -> Vec<f64> {
    let c_out = s.c() / 4;
    let os = Shape::new(s.n(), c_out, 2 * s.h(), 2 * s.w());
    let mut out = vec![0.0; os.numel()];
    for n in 0..s.n() {
        for c in 0..c_out {
            for r in 0..s.h() {
                for j in 0..s.w() {
                    let b: Vec<f64> = (0..4).map(|k| x[idx(s, n, k * c_out + c, r, j)]).collect();
                    out[idx(os, n, c, 2 * r, 2 * j)] = b[0] + b[1] + b[2] + b[3];
                    out[idx(os, n, c, 2 * r, 2 * j + 1)] = b[0] - b[1] + b[2] - b[3];
                    out[idx(os, n, c, 2 * r + 1, 2 * j)] = b[0] + b[1] - b[2] - b[3];
                    out[idx(os, n, c, 2 * r + 1, 2 * j + 1)] = b[0] - b[1] - b[2] + b[3];
                }
            }
        }
    }
    out
}

#[test]
fn clamp_and_quantize_gradients() {
    // Random values in [-0.6, 1.6): none within h of a bound (p ~ 1e-5 per
    // element), so the differences never straddle a kink.
    let s = Shape::new(2, 3, 5, 4);
    check(
        Case {
            name: "clamp [0, 1]",
            inputs: vec![(s, -0.6, 1.6)],
            wrt: vec![0],
            weights: WeightStore::new(),
            build: Box::new(|g, x| g.clamp("cl", x[0], 0.0, 1.0).unwrap()),
            reference: Box::new(|x| x[0].iter().map(|v| v.clamp(0.0, 1.0)).collect()),
        },
        300,
    );

    // Quantisation's straight-through gradient is the identity: dx == dy
    // exactly, while the forward value is 8-bit.
    let cx = ctx();
    let mut g = GraphBuilder::new(cx);
    g.enable_gradients();
    let x = g.input("x", s).unwrap();
    let q = g.quantize_ste("q", x, 255.0).unwrap();
    let dy = g.input("dy", s).unwrap();
    let dx = g.backward(&[(q, dy)], &[x]).unwrap()[0];
    g.output("q", q).unwrap();
    g.output("dx", dx).unwrap();
    let mut ex = Executor::new(cx, g.build().unwrap()).unwrap();
    let mut rng = Rng::new(301);
    let xv = rng.vec(s.numel(), -0.2, 1.2);
    let dyv = rng.vec(s.numel(), -1.0, 1.0);
    ex.set_input(cx, "x", &xv).unwrap();
    ex.set_input(cx, "dy", &dyv).unwrap();
    ex.run(cx).unwrap();
    assert_eq!(ex.read_output(cx, "dx").unwrap(), dyv);
    let qv = ex.read_output(cx, "q").unwrap();
    for (a, b) in qv.iter().zip(&xv) {
        assert_eq!(*a, (b.clamp(0.0, 1.0) * 255.0).round_ties_even() / 255.0);
    }
}

fn flow_store(c: usize, seed: u64) -> (WeightStore, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let bias = rng.vec(c, -0.5, 0.5);
    let logs = rng.vec(c, -0.5, 0.5);
    // A well-conditioned matrix: identity plus a small perturbation.
    let w: Vec<f32> = (0..c * c).map(|k| if k / c == k % c { 1.0 } else { 0.0 } + rng.range(-0.3, 0.3)).collect();
    let st = store(vec![("an.bias", vec![c], bias.clone()), ("an.logs", vec![c], logs.clone()), ("ic.weight", vec![c, c, 1, 1], w.clone())]);
    (st, bias, logs, w)
}

#[test]
fn flow_vjps_match_finite_differences() {
    let s = Shape::new(2, 6, 3, 5);
    let hw = 15;
    for dir in [Dir::Forward, Dir::Reverse] {
        let (st, bias, logs, _) = flow_store(6, 400);
        check(
            Case {
                name: if dir == Dir::Forward { "actnorm forward" } else { "actnorm reverse" },
                inputs: vec![(s, -1.0, 1.0)],
                wrt: vec![0],
                weights: st,
                build: Box::new(move |g, x| g.actnorm("an", x[0], "an", None, dir).unwrap().0),
                reference: Box::new(move |x| {
                    x[0].iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let c = (i / hw) % 6;
                            let (b, l) = (bias[c] as f64, logs[c] as f64);
                            if dir == Dir::Forward {
                                (v + b) * l.exp()
                            } else {
                                v * (-l).exp() - b
                            }
                        })
                        .collect()
                }),
            },
            401,
        );
        let (st, _, _, w) = flow_store(6, 410);
        let w64: Vec<f64> = w.iter().map(|v| *v as f64).collect();
        let m = if dir == Dir::Forward { w64 } else { invert(&w64, 6) };
        check(
            Case {
                name: if dir == Dir::Forward { "invconv forward" } else { "invconv reverse" },
                inputs: vec![(s, -1.0, 1.0)],
                wrt: vec![0],
                weights: st,
                build: Box::new(move |g, x| g.invconv("ic", x[0], "ic", None, dir).unwrap().0),
                reference: Box::new(move |x| {
                    let mut out = vec![0.0; x[0].len()];
                    for n in 0..2 {
                        for o in 0..6 {
                            for p in 0..hw {
                                out[(n * 6 + o) * hw + p] = (0..6).map(|i| m[o * 6 + i] * x[0][(n * 6 + i) * hw + p]).sum();
                            }
                        }
                    }
                    out
                }),
            },
            411,
        );
        for split in [3usize, 2] {
            let sh = Shape::new(2, 2 * (6 - split), 3, 5);
            check(
                Case {
                    name: match (dir, split) {
                        (Dir::Forward, 3) => "affine coupling forward split 3",
                        (Dir::Forward, _) => "affine coupling forward split 2",
                        (_, 3) => "affine coupling reverse split 3",
                        _ => "affine coupling reverse split 2",
                    },
                    inputs: vec![(s, -1.0, 1.0), (sh, -1.0, 1.0)],
                    wrt: vec![0, 1],
                    weights: WeightStore::new(),
                    build: Box::new(move |g, x| g.affine_coupling("ac", x[0], x[1], split, None, dir).unwrap().0),
                    reference: Box::new(move |x| {
                        let (z, h) = (&x[0], &x[1]);
                        let mut out = z.clone();
                        let hc = 2 * (6 - split);
                        for n in 0..2 {
                            for ch in split..6 {
                                let j = ch - split;
                                for p in 0..hw {
                                    let shift = h[(n * hc + 2 * j) * hw + p];
                                    let ls = logscale(h[(n * hc + 2 * j + 1) * hw + p]);
                                    let v = z[(n * 6 + ch) * hw + p];
                                    out[(n * 6 + ch) * hw + p] = if dir == Dir::Forward { (v + shift) * ls.exp() } else { v * (-ls).exp() - shift };
                                }
                            }
                        }
                        out
                    }),
                },
                420 + split as u64,
            );
        }
        let ss = Shape::new(2, 3, 3, 5);
        check(
            Case {
                name: if dir == Dir::Forward { "additive coupling forward" } else { "additive coupling reverse" },
                inputs: vec![(s, -1.0, 1.0), (ss, -1.0, 1.0)],
                wrt: vec![0, 1],
                weights: WeightStore::new(),
                build: Box::new(move |g, x| g.additive_coupling("add", x[0], x[1], dir).unwrap()),
                reference: Box::new(move |x| {
                    let mut out = x[0].clone();
                    for n in 0..2 {
                        for ch in 0..3 {
                            for p in 0..hw {
                                let sv = x[1][(n * 3 + ch) * hw + p];
                                out[(n * 6 + ch) * hw + p] += if dir == Dir::Forward { sv } else { -sv };
                            }
                        }
                    }
                    out
                }),
            },
            430,
        );
    }
    for (scale, name) in [(GaussianScale::Atan, "gaussian sample (atan scale)"), (GaussianScale::Logs, "gaussian sample (log scale)")] {
        let se = Shape::new(2, 3, 3, 5);
        let sh = Shape::new(2, 6, 3, 5);
        check(
            Case {
                name,
                inputs: vec![(sh, -1.0, 1.0), (se, -2.0, 2.0)],
                wrt: vec![0],
                weights: WeightStore::new(),
                build: Box::new(move |g, x| {
                    g.param("heat", 0.8).unwrap();
                    g.gaussian_sample("gs", x[0], x[1], wgsr::graph::ops::Scalar::param("heat"), scale).unwrap()
                }),
                reference: Box::new(move |x| {
                    let (h, e) = (&x[0], &x[1]);
                    let mut out = vec![0.0; e.len()];
                    for n in 0..2 {
                        for c in 0..3 {
                            for p in 0..hw {
                                let mean = h[(n * 6 + 2 * c) * hw + p];
                                let v = h[(n * 6 + 2 * c + 1) * hw + p];
                                let logs = if scale == GaussianScale::Atan { logscale(v) } else { v };
                                out[(n * 3 + c) * hw + p] = mean + logs.exp() * e[(n * 3 + c) * hw + p] * 0.8;
                            }
                        }
                    }
                    out
                }),
            },
            440,
        );
    }
}

#[test]
fn backward_errors_name_the_node() {
    let c = ctx();
    let s = Shape::new(1, 4, 4, 4);
    // No gradients enabled.
    let mut g = GraphBuilder::new(c);
    let x = g.input("x", s).unwrap();
    let y = g.affine("a", x, 2.0, 0.0).unwrap();
    assert!(g.backward(&[(y, y)], &[x]).unwrap_err().to_string().contains("not enabled"));
    // An op without a VJP between input and loss (softmax has none).
    let mut g = GraphBuilder::new(c);
    g.enable_gradients();
    let x = g.input("x", s).unwrap();
    let y = g.softmax("probs", x, 1.0, 1).unwrap();
    let dy = g.input("dy", s).unwrap();
    let e = g.backward(&[(y, dy)], &[x]).unwrap_err().to_string();
    assert!(e.contains("'probs'") && e.contains("no gradient"), "{e}");
    // Seed of the wrong shape.
    let mut g = GraphBuilder::new(c);
    g.enable_gradients();
    let x = g.input("x", s).unwrap();
    let y = g.affine("a", x, 2.0, 0.0).unwrap();
    let dy = g.input("dy", Shape::new(1, 4, 4, 2)).unwrap();
    assert!(g.backward(&[(y, dy)], &[x]).unwrap_err().to_string().contains("does not match"));
    // A loss that does not depend on the input.
    let mut g = GraphBuilder::new(c);
    g.enable_gradients();
    let x = g.input("x", s).unwrap();
    let other = g.input("other", s).unwrap();
    let y = g.affine("a", other, 2.0, 0.0).unwrap();
    let dy = g.input("dy", s).unwrap();
    assert!(g.backward(&[(y, dy)], &[x]).unwrap_err().to_string().contains("do not depend"));
    // Gradient with respect to latents is refused.
    let mut g = GraphBuilder::new(c);
    g.enable_gradients();
    let h = g.input("h", Shape::new(1, 8, 4, 4)).unwrap();
    let e = g.input("eps", s).unwrap();
    let y = g.gaussian_sample("gs", h, e, 1.0, GaussianScale::Atan).unwrap();
    let dy = g.input("dy", s).unwrap();
    assert!(g.backward(&[(y, dy)], &[e]).unwrap_err().to_string().contains("latents"));
}
