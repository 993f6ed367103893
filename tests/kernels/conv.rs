use crate::common::*;
use wgsr::ops::conv::{
    conv2d, conv2d_out_shape, conv_transpose2d, conv_transpose2d_out_shape, Activation, Conv2dParams, Conv2dWeights,
    ConvTranspose2dParams, Epilogue,
};
use wgsr::{Shape, Tensor};

// Value ranges of the random data: |x| < 1, |w| < 0.5.
pub(crate) const XMAX: f64 = 1.0;
pub(crate) const WMAX: f64 = 0.5;

pub(crate) fn act_ref(a: Activation, v: f64) -> f64 {
    match a {
        Activation::None => v,
        Activation::Relu => v.max(0.0),
        Activation::LeakyRelu(s) => {
            if v >= 0.0 {
                v
            } else {
                v * s as f64
            }
        }
        Activation::Swish => v / (1.0 + (-v).exp()),
        Activation::Tanh => v.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
    }
}

/// Fused epilogue on f64 accumulators laid out [n][c][h][w].
pub(crate) fn epilogue_ref(acc: &mut [f64], out: Shape, bias: &[f32], scale: &[f32], epi: &Epilogue, res: Option<&[f32]>) {
    let hw = out.hw();
    for (i, v) in acc.iter_mut().enumerate() {
        let c = (i / hw) % out.c();
        let b = if bias.is_empty() { 0.0 } else { bias[c] as f64 };
        let s = if scale.is_empty() { 1.0 } else { scale[c] as f64 };
        let mut r = epi.alpha as f64 * act_ref(epi.activation, (*v + b) * s);
        if let Some(res) = res {
            r += epi.beta as f64 * res[i] as f64;
        }
        *v = r;
    }
}

/// Naive direct convolution in f64, torch Conv2d semantics.
pub(crate) fn conv_ref(x: &[f32], xs: Shape, w: &[f32], ws: [usize; 4], p: &Conv2dParams, out: Shape) -> Vec<f64> {
    let [cout, cin_g, kh, kw] = ws;
    let cout_g = cout / p.groups;
    let mut y = vec![0f64; out.numel()];
    for b in 0..xs.n() {
        for co in 0..cout {
            let g = co / cout_g;
            for oy in 0..out.h() {
                for ox in 0..out.w() {
                    let mut s = 0f64;
                    for ci in 0..cin_g {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * p.stride[0] + ky * p.dilation[0]) as isize - p.padding[0] as isize;
                                let ix = (ox * p.stride[1] + kx * p.dilation[1]) as isize - p.padding[1] as isize;
                                if iy < 0 || ix < 0 || iy >= xs.h() as isize || ix >= xs.w() as isize {
                                    continue;
                                }
                                let xv = x[((b * xs.c() + g * cin_g + ci) * xs.h() + iy as usize) * xs.w() + ix as usize];
                                let wv = w[((co * cin_g + ci) * kh + ky) * kw + kx];
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y[((b * cout + co) * out.h() + oy) * out.w() + ox] = s;
                }
            }
        }
    }
    y
}

/// Naive transposed convolution in f64 in the scatter form (each input pixel
/// spreads its kernel over the output), independent of the kernel's gather form.
fn conv_transpose_ref(x: &[f32], xs: Shape, w: &[f32], ws: [usize; 4], p: &ConvTranspose2dParams, out: Shape) -> Vec<f64> {
    let [cin, cout_g, kh, kw] = ws;
    let cin_g = cin / p.groups;
    let mut y = vec![0f64; out.numel()];
    for b in 0..xs.n() {
        for ci in 0..cin {
            let g = ci / cin_g;
            for iy in 0..xs.h() {
                for ix in 0..xs.w() {
                    let xv = x[((b * cin + ci) * xs.h() + iy) * xs.w() + ix] as f64;
                    for m in 0..cout_g {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let oy = (iy * p.stride[0] + ky * p.dilation[0]) as isize - p.padding[0] as isize;
                                let ox = (ix * p.stride[1] + kx * p.dilation[1]) as isize - p.padding[1] as isize;
                                if oy < 0 || ox < 0 || oy >= out.h() as isize || ox >= out.w() as isize {
                                    continue;
                                }
                                let wv = w[((ci * cout_g + m) * kh + ky) * kw + kx] as f64;
                                let co = g * cout_g + m;
                                y[((b * out.c() + co) * out.h() + oy as usize) * out.w() + ox as usize] += xv * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

struct Extras {
    bias: bool,
    scale: bool,
    residual: bool,
    epi: Epilogue,
}

impl Extras {
    fn bias(activation: Activation) -> Self {
        Extras { bias: true, scale: false, residual: false, epi: Epilogue::act(activation) }
    }
}

/// Tolerance: each output is a sum of K products in f32. The accumulated
/// rounding error grows like sqrt(K) * eps * |term| for random-sign terms;
/// 1e-5 (~170 f32 ulps) * sqrt(K) * max|x| * max|w| bounds it with margin while a
/// missing or misplaced term (typically ~0.1 * max|x|*max|w| or larger) still
/// fails. The epilogue multiplies errors by |scale| * |alpha|; rel 1e-5 covers
/// the activation and residual rounding.
fn tolerance(k: usize, ex: &Extras, smax: f64) -> f64 {
    1e-5 * (k as f64).sqrt() * XMAX * WMAX * smax * ex.epi.alpha.abs() as f64
}

#[allow(clippy::type_complexity)]
fn extras_data(rng: &mut Rng, cout: usize, out: Shape, ex: &Extras) -> (Vec<f32>, Vec<f32>, Option<(Tensor, Vec<f32>)>, f64) {
    let bias = if ex.bias { rng.vec(cout, -0.5, 0.5) } else { Vec::new() };
    let scale = if ex.scale { rng.vec(cout, -2.0, 2.0) } else { Vec::new() };
    let smax = scale.iter().fold(1f64, |m, &s| m.max(s.abs() as f64));
    let res = ex.residual.then(|| rand_tensor(rng, out, -1.0, 1.0));
    (bias, scale, res, smax)
}

fn check_conv(name: &str, seed: u64, xs: Shape, ws: [usize; 4], p: Conv2dParams, ex: Extras) {
    let c = ctx();
    let mut rng = Rng::new(seed);
    let (x, xv) = rand_tensor(&mut rng, xs, -XMAX, XMAX);
    let wv = rng.vec(ws.iter().product(), -WMAX, WMAX);
    // Output shape from the reference formula, checked against the library's.
    let o = |i: usize, k: usize, a: usize| (i + 2 * p.padding[a] - p.dilation[a] * (k - 1) - 1) / p.stride[a] + 1;
    let os = Shape::new(xs.n(), ws[0], o(xs.h(), ws[2], 0), o(xs.w(), ws[3], 1));
    let (bias, scale, res, smax) = extras_data(&mut rng, ws[0], os, &ex);
    let w = Conv2dWeights::new(
        c,
        &wv,
        ws,
        ex.bias.then_some(&bias[..]),
        ex.scale.then_some(&scale[..]),
    )
    .unwrap();
    assert_eq!(conv2d_out_shape(xs, &w, &p).unwrap(), os, "{name}: output shape");
    let out = poisoned(os);
    let d = conv2d(c, &x, &w, &p, &ex.epi, res.as_ref().map(|r| &r.0), &out).unwrap();
    let k = ws[1] * ws[2] * ws[3];
    assert_eq!(d.flops, 2.0 * os.numel() as f64 * k as f64);
    let got = run_and_read(d, &out);
    let mut want = conv_ref(&xv, xs, &wv, ws, &p, os);
    epilogue_ref(&mut want, os, &bias, &scale, &ex.epi, res.as_ref().map(|r| &r.1[..]));
    assert_close(name, &got, &want, tolerance(k, &ex, smax), 1e-5);
}

fn check_transposed(name: &str, seed: u64, xs: Shape, ws: [usize; 4], p: ConvTranspose2dParams, ex: Extras) {
    let c = ctx();
    let mut rng = Rng::new(seed);
    let (x, xv) = rand_tensor(&mut rng, xs, -XMAX, XMAX);
    let wv = rng.vec(ws.iter().product(), -WMAX, WMAX);
    let o = |i: usize, k: usize, a: usize| {
        (i - 1) * p.stride[a] + p.dilation[a] * (k - 1) + p.output_padding[a] + 1 - 2 * p.padding[a]
    };
    let cout = ws[1] * p.groups;
    let os = Shape::new(xs.n(), cout, o(xs.h(), ws[2], 0), o(xs.w(), ws[3], 1));
    let (bias, scale, res, smax) = extras_data(&mut rng, cout, os, &ex);
    let w = Conv2dWeights::new_transposed(
        c,
        &wv,
        ws,
        p.groups,
        ex.bias.then_some(&bias[..]),
        ex.scale.then_some(&scale[..]),
    )
    .unwrap();
    assert_eq!(conv_transpose2d_out_shape(xs, &w, &p).unwrap(), os, "{name}: output shape");
    let out = poisoned(os);
    let d = conv_transpose2d(c, &x, &w, &p, &ex.epi, res.as_ref().map(|r| &r.0), &out).unwrap();
    let got = run_and_read(d, &out);
    let mut want = conv_transpose_ref(&xv, xs, &wv, ws, &p, os);
    epilogue_ref(&mut want, os, &bias, &scale, &ex.epi, res.as_ref().map(|r| &r.1[..]));
    // K of the gather form (taps that can contribute, before the stride filter).
    let k = ws[0] / p.groups * ws[2] * ws[3];
    assert_close(name, &got, &want, tolerance(k, &ex, smax), 1e-5);
}

fn params(stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], groups: usize) -> Conv2dParams {
    Conv2dParams { stride, padding, dilation, groups }
}

#[test]
fn conv3x3_pad1_odd_channels_batch2() {
    check_conv("conv.3x3_p1_3to13", 1, Shape::new(2, 3, 17, 23), [13, 3, 3, 3], Conv2dParams::new(1, 1), Extras::bias(Activation::None));
}

#[test]
fn conv1x1_pointwise() {
    check_conv("conv.1x1_7to5_relu", 2, Shape::new(2, 7, 17, 23), [5, 7, 1, 1], Conv2dParams::default(), Extras::bias(Activation::Relu));
    // Pointwise path with groups and more than one K chunk and M tile.
    check_conv(
        "conv.1x1_g3_99to204",
        3,
        Shape::new(1, 99, 5, 7),
        [204, 33, 1, 1],
        params([1, 1], [0, 0], [1, 1], 3),
        Extras::bias(Activation::None),
    );
    // Pointwise on conv2d_rows' 32-channel x 256-column tile (CPU adapters):
    // N = 288, so the second workgroup is mostly past N. Batch 2, residual.
    check_conv("conv.1x1_vec_cols_b2", 23, Shape::new(2, 37, 12, 12), [40, 37, 1, 1], Conv2dParams::default(),
        Extras { bias: true, scale: true, residual: true, epi: Epilogue { activation: Activation::LeakyRelu(0.1), alpha: 0.75, beta: 1.5 } });
    // 1x1 with stride 2 and padding takes the general path.
    check_conv(
        "conv.1x1_s2_p1",
        4,
        Shape::new(2, 5, 9, 8),
        [6, 5, 1, 1],
        Conv2dParams::new(2, 1),
        Extras::bias(Activation::None),
    );
}

#[test]
fn conv5x5_stride2_leaky() {
    check_conv(
        "conv.5x5_s2_p2_leaky",
        5,
        Shape::new(2, 4, 17, 23),
        [6, 4, 5, 5],
        Conv2dParams::new(2, 2),
        Extras::bias(Activation::LeakyRelu(0.1)),
    );
}

#[test]
fn conv_dilation2_swish() {
    check_conv(
        "conv.3x3_d2_swish",
        6,
        Shape::new(1, 5, 13, 11),
        [9, 5, 3, 3],
        params([1, 1], [2, 2], [2, 2], 1),
        Extras::bias(Activation::Swish),
    );
}

#[test]
fn conv_asymmetric_kernel_stride_dilation() {
    check_conv(
        "conv.3x2_s21_p01_d12",
        7,
        Shape::new(2, 3, 11, 10),
        [4, 3, 3, 2],
        params([2, 1], [0, 1], [1, 2], 1),
        Extras { bias: false, scale: false, residual: false, epi: Epilogue::default() },
    );
}

#[test]
fn conv_groups_and_depthwise() {
    check_conv(
        "conv.3x3_groups2_tanh",
        8,
        Shape::new(2, 6, 9, 10),
        [10, 3, 3, 3],
        params([1, 1], [1, 1], [1, 1], 2),
        Extras::bias(Activation::Tanh),
    );
    check_conv(
        "conv.3x3_depthwise_sigmoid",
        9,
        Shape::new(2, 8, 9, 10),
        [8, 1, 3, 3],
        params([1, 1], [1, 1], [1, 1], 8),
        Extras::bias(Activation::Sigmoid),
    );
}

#[test]
fn conv_scale_residual_multi_tile() {
    // 70 output channels: two M tiles; K = 360: several K chunks; 2*9*70 pixels: many N tiles.
    check_conv(
        "conv.3x3_40to70_scale_res",
        10,
        Shape::new(2, 40, 9, 70),
        [70, 40, 3, 3],
        Conv2dParams::new(1, 1),
        Extras {
            bias: true,
            scale: true,
            residual: true,
            epi: Epilogue { activation: Activation::Relu, alpha: 0.5, beta: -1.5 },
        },
    );
}

#[test]
fn conv_cpu_row_tiles() {
    // Output channels a multiple of 4: on CPU adapters these take conv2d_rows,
    // one shape per tile config (see conv.rs): 4x8 (>= 4096 columns), 8x4
    // (1024..4096), 8x2 (fewer), each with a partial channel tile.
    let res = |act| Extras { bias: true, scale: true, residual: true, epi: Epilogue { activation: act, alpha: 0.75, beta: 1.5 } };
    check_conv("conv.rows_4x8_8to24", 15, Shape::new(1, 8, 64, 64), [24, 8, 3, 3], Conv2dParams::new(1, 1), res(Activation::Relu));
    check_conv(
        "conv.rows_8x4_g2_12to40",
        16,
        Shape::new(2, 12, 40, 40),
        [40, 6, 3, 3],
        params([1, 1], [1, 1], [1, 1], 2),
        Extras::bias(Activation::None),
    );
    check_conv(
        "conv.rows_8x2_d2_s2_16to36",
        17,
        Shape::new(1, 16, 19, 25),
        [36, 16, 3, 3],
        params([2, 1], [2, 2], [2, 2], 1),
        res(Activation::LeakyRelu(0.2)),
    );
    check_transposed(
        "convT.rows_k4_s2_8to20",
        18,
        Shape::new(1, 8, 20, 20),
        [8, 20, 4, 4],
        ConvTranspose2dParams::new(2, 1, 0),
        Extras::bias(Activation::None),
    );
}

#[test]
fn conv_cpu_narrow_columns() {
    // At most 32 output columns (64 with subgroups), output channels a
    // multiple of 4: on CPU adapters these take conv2d_narrow (lanes along
    // output channels, 16 columns per block); 264 channels span five
    // 64-channel tiles (the last partial); 3 and 12 columns: one block (CJ 3
    // and 12, so with subgroups the upper eight lanes' gather is clamped or
    // partial), 20: a full block and one of 4, 32: two full blocks; 45 and
    // 64 (narrow only with subgroups): three blocks (the last of 13
    // columns) and four.
    let res = |act| Extras { bias: true, scale: true, residual: true, epi: Epilogue { activation: act, alpha: 0.75, beta: 1.5 } };
    check_conv("conv.narrow_1px_40to264", 19, Shape::new(1, 40, 1, 1), [264, 40, 1, 1], Conv2dParams::default(), res(Activation::Relu));
    check_conv("conv.narrow_b3_5x5_g2", 20, Shape::new(3, 8, 5, 5), [12, 4, 5, 5], params([1, 1], [0, 0], [1, 1], 2), Extras::bias(Activation::None));
    check_conv("conv.narrow_12cols_pad", 21, Shape::new(2, 6, 2, 3), [8, 6, 3, 3], Conv2dParams::new(1, 1), res(Activation::Tanh));
    check_conv("conv.narrow_20cols_pad", 26, Shape::new(1, 16, 4, 5), [28, 16, 3, 3], Conv2dParams::new(1, 1), res(Activation::None));
    check_conv("conv.narrow_32cols_pad", 23, Shape::new(1, 8, 4, 8), [20, 8, 3, 3], Conv2dParams::new(1, 1), res(Activation::Sigmoid));
    check_conv("conv.narrow_45cols_b5", 24, Shape::new(5, 12, 3, 3), [72, 12, 3, 3], Conv2dParams::new(1, 1), res(Activation::Relu));
    check_conv("conv.narrow_64cols_1x1", 25, Shape::new(1, 96, 8, 8), [36, 96, 1, 1], Conv2dParams::default(), Extras::bias(Activation::None));
    // Pointwise with whole 64-channel groups: narrow at any width with
    // subgroups (259 columns, 17 blocks, the last of 3; two groups of 64).
    check_conv("conv.narrow_wide_1x1", 27, Shape::new(1, 40, 7, 37), [128, 40, 1, 1], Conv2dParams::default(), res(Activation::Relu));
    check_conv("conv.narrow_wide_1x1_g2", 28, Shape::new(2, 24, 5, 29), [128, 12, 1, 1], params([1, 1], [0, 0], [1, 1], 2), Extras::bias(Activation::None));
    // Pointwise with whole 32-channel groups from 1024 columns: the 8-thread
    // conv2d_narrow8 with subgroups (1155 columns, 73 blocks, the last of 3;
    // then 96-channel groups, three 32-channel tiles each, over a batch of 2).
    check_conv("conv.narrow8_1x1_24to32", 29, Shape::new(1, 24, 33, 35), [32, 24, 1, 1], Conv2dParams::default(), res(Activation::LeakyRelu(0.2)));
    check_conv("conv.narrow8_1x1_g2_96", 30, Shape::new(2, 20, 23, 23), [192, 10, 1, 1], params([1, 1], [0, 0], [1, 1], 2), Extras::bias(Activation::None));
}

/// Each output element is the same products summed in the same order
/// whatever the output size and kernel entry: the conv of an exact input
/// window (zeros where the full conv pads) gives the full conv's bits.
#[test]
fn conv_output_bits_do_not_depend_on_output_size() {
    let c = ctx();
    let mut rng = Rng::new(22);
    let (xs, ws, pad) = (Shape::new(2, 8, 6, 7), [16usize, 8, 3, 5], [1usize, 2]);
    let (x, xv) = rand_tensor(&mut rng, xs, -XMAX, XMAX);
    let wv = rng.vec(ws.iter().product(), -WMAX, WMAX);
    let bias = rng.vec(ws[0], -0.5, 0.5);
    let w = Conv2dWeights::new(c, &wv, ws, Some(&bias), None).unwrap();
    let p = Conv2dParams { padding: pad, ..Default::default() };
    let full_s = conv2d_out_shape(xs, &w, &p).unwrap();
    let out = poisoned(full_s);
    let full = run_and_read(conv2d(c, &x, &w, &p, &Epilogue::default(), None, &out).unwrap(), &out);
    let (kh, kw) = (ws[2], ws[3]);
    for (oy, ox) in [(0usize, 0usize), (2, 3), (5, 6), (5, 0)] {
        // [n, cin, kh, kw] window around (oy, ox), zero outside the image.
        let mut win = vec![0f32; xs.n() * xs.c() * kh * kw];
        for b in 0..xs.n() {
            for ci in 0..xs.c() {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let (iy, ix) = ((oy + ky) as isize - pad[0] as isize, (ox + kx) as isize - pad[1] as isize);
                        if iy >= 0 && ix >= 0 && (iy as usize) < xs.h() && (ix as usize) < xs.w() {
                            win[((b * xs.c() + ci) * kh + ky) * kw + kx] = xv[((b * xs.c() + ci) * xs.h() + iy as usize) * xs.w() + ix as usize];
                        }
                    }
                }
            }
        }
        let wt = Tensor::from_slice(c, Shape::new(xs.n(), xs.c(), kh, kw), &win).unwrap();
        let os = Shape::new(xs.n(), ws[0], 1, 1);
        let o = poisoned(os);
        let got = run_and_read(conv2d(c, &wt, &w, &Conv2dParams::default(), &Epilogue::default(), None, &o).unwrap(), &o);
        for b in 0..xs.n() {
            for co in 0..ws[0] {
                let want = full[((b * ws[0] + co) * full_s.h() + oy) * full_s.w() + ox];
                let g = got[b * ws[0] + co];
                assert_eq!(g.to_bits(), want.to_bits(), "pixel ({oy},{ox}) batch {b} channel {co}: window {g} vs full {want}");
            }
        }
    }
}

#[test]
fn conv_transposed_stride2() {
    check_transposed(
        "convT.k4_s2_p1",
        11,
        Shape::new(2, 6, 9, 7),
        [6, 5, 4, 4],
        ConvTranspose2dParams::new(2, 1, 0),
        Extras::bias(Activation::None),
    );
    check_transposed(
        "convT.k3_s2_p1_op1_relu",
        12,
        Shape::new(1, 5, 8, 11),
        [5, 7, 3, 3],
        ConvTranspose2dParams::new(2, 1, 1),
        Extras::bias(Activation::Relu),
    );
}

#[test]
fn conv_transposed_stride1_groups_and_dilation() {
    check_transposed(
        "convT.k3_s1_p1_groups2",
        13,
        Shape::new(2, 4, 7, 9),
        [4, 3, 3, 3],
        ConvTranspose2dParams { groups: 2, ..ConvTranspose2dParams::new(1, 1, 0) },
        Extras::bias(Activation::None),
    );
    check_transposed(
        "convT.k3_s2_d2_op1_scale_res",
        14,
        Shape::new(2, 3, 5, 6),
        [3, 4, 3, 3],
        ConvTranspose2dParams { dilation: [2, 2], ..ConvTranspose2dParams::new(2, 0, 1) },
        Extras {
            bias: true,
            scale: true,
            residual: true,
            epi: Epilogue { activation: Activation::Swish, alpha: 1.25, beta: 0.5 },
        },
    );
}

#[test]
fn conv_bad_arguments_are_errors() {
    let c = ctx();
    let w = Conv2dWeights::new(c, &[0.5; 6 * 4 * 9], [6, 4, 3, 3], None, None).unwrap();
    let x = Tensor::empty(c, Shape::new(1, 4, 8, 8)).unwrap();
    let out = Tensor::empty(c, Shape::new(1, 6, 8, 8)).unwrap();
    let p = Conv2dParams::new(1, 1);
    let epi = Epilogue::default();
    let msg = |r: wgsr::Result<wgsr::gpu::Dispatch>| r.unwrap_err().to_string();

    // Wrong input channel count.
    let x5 = Tensor::empty(c, Shape::new(1, 5, 8, 8)).unwrap();
    let e = msg(conv2d(c, &x5, &w, &p, &epi, None, &out));
    assert!(e.contains("channels"), "{e}");
    // groups = 2 wants 8 input channels; groups = 4 does not divide 6 outputs.
    let e = msg(conv2d(c, &x, &w, &Conv2dParams { groups: 2, ..p }, &epi, None, &out));
    assert!(e.contains("groups = 2"), "{e}");
    let x16 = Tensor::empty(c, Shape::new(1, 16, 8, 8)).unwrap();
    let e = msg(conv2d(c, &x16, &w, &Conv2dParams { groups: 4, ..p }, &epi, None, &out));
    assert!(e.contains("not divisible"), "{e}");
    let e = msg(conv2d(c, &x, &w, &Conv2dParams { groups: 0, ..p }, &epi, None, &out));
    assert!(e.contains("groups"), "{e}");
    // Residual and output shape mismatches.
    let r = Tensor::empty(c, Shape::new(1, 6, 8, 7)).unwrap();
    let e = msg(conv2d(c, &x, &w, &p, &epi, Some(&r), &out));
    assert!(e.contains("residual"), "{e}");
    let e = msg(conv2d(c, &x, &w, &Conv2dParams::new(2, 1), &epi, None, &out));
    assert!(e.contains("output tensor"), "{e}");
    // Output aliasing an input.
    let e = msg(conv2d(c, &x, &w, &p, &epi, Some(&out), &out));
    assert!(e.contains("alias"), "{e}");
    // Kernel larger than the padded input.
    let tiny = Tensor::empty(c, Shape::new(1, 4, 1, 1)).unwrap();
    assert!(conv2d_out_shape(tiny.shape(), &w, &Conv2dParams::default()).is_err());
    // Bad weight data and bias length.
    assert!(Conv2dWeights::new(c, &[0.5; 10], [6, 4, 3, 3], None, None).is_err());
    assert!(Conv2dWeights::new(c, &[0.5; 6 * 4 * 9], [6, 4, 3, 3], Some(&[0.0; 5]), None).is_err());
    // Transposed: weights of the other kind, group mismatch, bad output_padding.
    let wt = Conv2dWeights::new_transposed(c, &[0.5; 4 * 3 * 16], [4, 3, 4, 4], 1, None, None).unwrap();
    let tp = ConvTranspose2dParams::new(2, 1, 0);
    let tout = Tensor::empty(c, conv_transpose2d_out_shape(x.shape(), &wt, &tp).unwrap()).unwrap();
    assert_eq!(tout.shape(), Shape::new(1, 3, 16, 16));
    assert!(conv2d(c, &x, &wt, &p, &epi, None, &out).is_err());
    assert!(conv_transpose2d(c, &x, &w, &tp, &epi, None, &tout).is_err());
    let e = msg(conv_transpose2d(c, &x, &wt, &ConvTranspose2dParams { groups: 2, ..tp }, &epi, None, &tout));
    assert!(e.contains("groups"), "{e}");
    assert!(conv_transpose2d_out_shape(x.shape(), &wt, &ConvTranspose2dParams::new(2, 1, 2)).is_err());
    assert!(Conv2dWeights::new_transposed(c, &[0.5; 4 * 3 * 16], [4, 3, 4, 4], 3, None, None).is_err());
}
