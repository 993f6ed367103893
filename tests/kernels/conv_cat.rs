//! Conv over a channel concatenation as a chain of `conv2d_pre` dispatches
//! (one per part, weights from `Conv2dWeights::split_input`) against the f64
//! reference of one conv over the concatenated input, and bit for bit against
//! the single `conv2d` of the materialised concatenation, with the partial
//! sums in separate tensors and in place in the output. Every output is
//! poisoned. On lavapipe the shapes take conv2d_rows or conv2d_narrow;
//! with WGSR_CONV_TILED=1 all take the tiled kernel.

use crate::common::*;
use crate::conv::{conv_ref, epilogue_ref, WMAX, XMAX};
use wgsr::ops::conv::{conv2d, conv2d_out_shape, conv2d_pre, input_slice, Activation, Conv2dParams, Conv2dWeights, Epilogue};
use wgsr::{Shape, Tensor};

struct Case {
    name: &'static str,
    seed: u64,
    /// Batch, height, width of every part, and each part's channels.
    nhw: [usize; 3],
    parts: Vec<usize>,
    /// cout, kh, kw
    kernel: [usize; 3],
    p: Conv2dParams,
    bias: bool,
    scale: bool,
    residual: bool,
    epi: Epilogue,
}

/// Channel concatenation of per-part NCHW host tensors.
fn concat_host(parts: &[Vec<f32>], channels: &[usize], n: usize, hw: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for b in 0..n {
        for (v, &c) in parts.iter().zip(channels) {
            out.extend_from_slice(&v[b * c * hw..(b + 1) * c * hw]);
        }
    }
    out
}

fn check(case: Case) {
    let c = ctx();
    let mut rng = Rng::new(case.seed);
    let [n, h, w] = case.nhw;
    let [cout, kh, kw] = case.kernel;
    let cin: usize = case.parts.iter().sum();
    let xs: Vec<(Tensor, Vec<f32>)> = case.parts.iter().map(|&ci| rand_tensor(&mut rng, Shape::new(n, ci, h, w), -XMAX, XMAX)).collect();
    let ws = [cout, cin, kh, kw];
    let wv = rng.vec(ws.iter().product(), -WMAX, WMAX);
    let bias = if case.bias { rng.vec(cout, -0.5, 0.5) } else { Vec::new() };
    let scale = if case.scale { rng.vec(cout, -2.0, 2.0) } else { Vec::new() };
    let smax = scale.iter().fold(1f64, |m, &s| m.max(s.abs() as f64));
    let (bo, so) = (case.bias.then_some(&bias[..]), case.scale.then_some(&scale[..]));
    let parts = Conv2dWeights::split_input(c, &wv, ws, &case.parts, bo, so).unwrap();
    let full = Conv2dWeights::new(c, &wv, ws, bo, so).unwrap();
    let xcat_s = Shape::new(n, cin, h, w);
    let os = conv2d_out_shape(xcat_s, &full, &case.p).unwrap();
    let res = case.residual.then(|| rand_tensor(&mut rng, os, -1.0, 1.0));

    // The chain: part k starts from part k-1's raw sums; each output poisoned.
    let outs: Vec<Tensor> = (0..parts.len()).map(|_| poisoned(os)).collect();
    let last = parts.len() - 1;
    let ds: Vec<_> = (0..parts.len())
        .map(|k| {
            let e = if k == last { case.epi } else { Epilogue::default() };
            let r = if k == last { res.as_ref().map(|r| &r.0) } else { None };
            let pre = k.checked_sub(1).map(|j| &outs[j]);
            conv2d_pre(c, &xs[k].0, &parts[k], &case.p, &e, r, pre, &outs[k]).unwrap()
        })
        .collect();
    let got = run_and_read(ds, &outs[last]);

    // In place: every part accumulates into one output (part 0 overwrites the poison).
    let acc = poisoned(os);
    let ds: Vec<_> = (0..parts.len())
        .map(|k| {
            let e = if k == last { case.epi } else { Epilogue::default() };
            let r = if k == last { res.as_ref().map(|r| &r.0) } else { None };
            conv2d_pre(c, &xs[k].0, &parts[k], &case.p, &e, r, (k > 0).then_some(&acc), &acc).unwrap()
        })
        .collect();
    assert_exact(&format!("{} in place", case.name), &run_and_read(ds, &acc), &got);

    let hosts: Vec<Vec<f32>> = xs.iter().map(|x| x.1.clone()).collect();
    let xcat = concat_host(&hosts, &case.parts, n, h * w);
    let mut want = conv_ref(&xcat, xcat_s, &wv, ws, &case.p, os);
    epilogue_ref(&mut want, os, &bias, &scale, &case.epi, res.as_ref().map(|r| &r.1[..]));
    let k = cin * kh * kw;
    let tol = 1e-5 * (k as f64).sqrt() * XMAX * WMAX * smax * case.epi.alpha.abs() as f64;
    assert_close(case.name, &got, &want, tol, 1e-5);

    // Same k-order chain as the conv of the materialised concatenation.
    let xt = Tensor::from_slice(c, xcat_s, &xcat).unwrap();
    let single = poisoned(os);
    let one = run_and_read(conv2d(c, &xt, &full, &case.p, &case.epi, res.as_ref().map(|r| &r.0), &single).unwrap(), &single);
    assert_exact(&format!("{} == conv2d(cat)", case.name), &got, &one);
}

fn act_res(activation: Activation) -> Epilogue {
    Epilogue { activation, alpha: 0.75, beta: 1.5 }
}

#[test]
fn conv_cat_pre_chain_with_residual_and_activation() {
    // conv2d_rows 8x2 (960 columns); three parts of odd sizes; every epilogue term.
    check(Case {
        name: "conv_cat.3parts_lrelu_res",
        seed: 31,
        nhw: [1, 24, 40],
        parts: vec![5, 8, 3],
        kernel: [20, 3, 3],
        p: Conv2dParams::new(1, 1),
        bias: true,
        scale: true,
        residual: true,
        epi: act_res(Activation::LeakyRelu(0.2)),
    });
    // Residual without activation (the RDB's conv5), 1x1 pointwise over four parts.
    check(Case {
        name: "conv_cat.1x1_4parts_res",
        seed: 32,
        nhw: [2, 9, 13],
        parts: vec![3, 7, 4, 2],
        kernel: [12, 1, 1],
        p: Conv2dParams::default(),
        bias: true,
        scale: false,
        residual: true,
        epi: Epilogue { activation: Activation::None, alpha: 0.2, beta: 1.0 },
    });
    // 1x1 over three parts on conv2d_rows' vec4 column loads (36 channels, 8x4
    // tile, N = 2 * 12 * 12 = 288, so the second workgroup is mostly past N).
    check(Case {
        name: "conv_cat.1x1_vec_cols",
        seed: 35,
        nhw: [2, 12, 12],
        parts: vec![6, 9, 5],
        kernel: [36, 1, 1],
        p: Conv2dParams::default(),
        bias: true,
        scale: true,
        residual: true,
        epi: act_res(Activation::Relu),
    });
}

#[test]
fn conv_cat_pre_chain_without_residual() {
    // conv2d_rows 4x8 (>= 4096 columns); 70 channels: two tiled M tiles.
    check(Case {
        name: "conv_cat.2parts_swish_70ch",
        seed: 33,
        nhw: [2, 33, 70],
        parts: vec![16, 8],
        kernel: [70, 3, 3],
        p: Conv2dParams::new(1, 1),
        bias: true,
        scale: true,
        residual: false,
        epi: Epilogue::act(Activation::Swish),
    });
    // No bias, no scale, no activation: the last part's epilogue is the identity too.
    // 6 channels (not a multiple of 4), 5x5 stride 2: the general path.
    check(Case {
        name: "conv_cat.5x5_s2_nobias",
        seed: 34,
        nhw: [2, 17, 15],
        parts: vec![4, 6],
        kernel: [6, 5, 5],
        p: Conv2dParams::new(2, 2),
        bias: false,
        scale: false,
        residual: false,
        epi: Epilogue::default(),
    });
}

#[test]
fn conv_cat_pre_chain_narrow_columns() {
    // At most 32 output columns: conv2d_narrow on CPU adapters; 40 channels
    // = one 64-channel tile, partial.
    check(Case {
        name: "conv_cat.narrow_32cols_tanh_res",
        seed: 35,
        nhw: [1, 4, 8],
        parts: vec![8, 6, 2],
        kernel: [40, 3, 3],
        p: Conv2dParams::new(1, 1),
        bias: true,
        scale: true,
        residual: true,
        epi: act_res(Activation::Tanh),
    });
    check(Case {
        name: "conv_cat.narrow_1px_sigmoid",
        seed: 36,
        nhw: [3, 1, 1],
        parts: vec![12, 20],
        kernel: [24, 1, 1],
        p: Conv2dParams::default(),
        bias: true,
        scale: false,
        residual: false,
        epi: Epilogue::act(Activation::Sigmoid),
    });
}

#[test]
fn conv_cat_bad_arguments_are_errors() {
    let c = ctx();
    let wv = vec![0.25f32; 6 * 5 * 9];
    let ws = [6, 5, 3, 3];
    // Parts that do not add up to the weight's input channels, or are empty.
    assert!(Conv2dWeights::split_input(c, &wv, ws, &[2, 2], None, None).is_err());
    assert!(Conv2dWeights::split_input(c, &wv, ws, &[5, 0], None, None).is_err());
    assert!(input_slice(&wv, ws, 3, 3).is_err());
    assert!(input_slice(&wv[1..], ws, 0, 1).is_err());
    let (sl, sls) = input_slice(&wv, ws, 2, 3).unwrap();
    assert_eq!((sl.len(), sls), (6 * 3 * 9, [6, 3, 3, 3]));
    let parts = Conv2dWeights::split_input(c, &wv, ws, &[2, 3], None, None).unwrap();
    let x = Tensor::empty(c, Shape::new(1, 3, 8, 8)).unwrap();
    let out = Tensor::empty(c, Shape::new(1, 6, 8, 8)).unwrap();
    let p = Conv2dParams::new(1, 1);
    let epi = Epilogue::default();
    let bad = Tensor::empty(c, Shape::new(1, 6, 8, 7)).unwrap();
    let e = conv2d_pre(c, &x, &parts[1], &p, &epi, None, Some(&bad), &out).unwrap_err().to_string();
    assert!(e.contains("partial sums"), "{e}");
    // The output itself as the partial sums is accumulation in place; the input is not.
    assert!(conv2d_pre(c, &x, &parts[1], &p, &epi, None, Some(&out), &out).is_ok());
    let e = conv2d_pre(c, &x, &parts[1], &p, &epi, Some(&out), Some(&out), &out).unwrap_err().to_string();
    assert!(e.contains("alias"), "{e}");
    // A part's weights only take that part's channels.
    let e = conv2d_pre(c, &x, &parts[0], &p, &epi, None, None, &out).unwrap_err().to_string();
    assert!(e.contains("channels"), "{e}");
}
