//! Winograd F(2x2) / F(4x4) 3x3 convolutions against the direct f64
//! reference of the conv tests: both tiles, padding 0 / 1 / 2, odd sizes
//! (partial tiles), a batch, two and three concatenated inputs, every
//! epilogue part, each GEMM tile shape.

use crate::common::*;
use crate::conv::{conv_ref, epilogue_ref};
use wgsr::ops::conv::{Activation, Conv2dParams, Epilogue};
use wgsr::ops::winograd::{conv3x3, scratch_shapes, WinogradTile, WinogradWeights};
use wgsr::Shape;

/// Error bound. The direct conv's bound is 1e-5 * sqrt(K) * max|x| * max|w|
/// (tests/kernels/conv.rs); the Winograd transforms add rounding in the
/// transformed domain, whose magnitudes grow with the transform constants:
/// the sums of |entries| of B^T, G and A^T rows reach 4, 1.5, 3 for F(2x2) and
/// 10, 0.5, 18 for F(4x4) (with the 1/24 .. 1/4 of G), 12.5, 1.24, 67 for
/// F(6x6). So the bound is scaled by 4 for F(2x2), by 32 for F(4x4) and,
/// with the same rule (the product of the three row sums, 90 for F(4x4)
/// against 1040), by 32 * 1040 / 90 ~ 370 for F(6x6).
fn tolerance(tile: WinogradTile, k: usize, smax: f64, alpha: f64) -> f64 {
    let growth = match tile {
        WinogradTile::F2 => 4.0,
        WinogradTile::F4 => 32.0,
        WinogradTile::F6 => 370.0,
    };
    growth * 1e-5 * (k as f64).sqrt() * 1.0 * 0.5 * smax * alpha
}

struct Case {
    batch: usize,
    chans: &'static [usize],
    cout: usize,
    h: usize,
    w: usize,
    pad: usize,
    act: Activation,
    scale: bool,
    residual: bool,
    alpha: f32,
}

fn run_case(seed: u64, tile: WinogradTile, c: &Case) {
    let mut rng = Rng::new(seed);
    let cin: usize = c.chans.iter().sum();
    let ws = [c.cout, cin, 3, 3];
    let w = rng.vec(c.cout * cin * 9, -0.5, 0.5);
    let bias = rng.vec(c.cout, -0.5, 0.5);
    let scale = if c.scale { rng.vec(c.cout, -2.0, 2.0) } else { Vec::new() };
    let parts: Vec<_> = c.chans.iter().map(|&ch| rand_tensor(&mut rng, Shape::new(c.batch, ch, c.h, c.w), -1.0, 1.0)).collect();
    // The reference sees the concatenation.
    let xs = Shape::new(c.batch, cin, c.h, c.w);
    let mut xcat = vec![0f32; xs.numel()];
    let hw = c.h * c.w;
    for b in 0..c.batch {
        let mut off = 0;
        for ((_, v), &ch) in parts.iter().zip(c.chans) {
            xcat[(b * cin + off) * hw..][..ch * hw].copy_from_slice(&v[b * ch * hw..][..ch * hw]);
            off += ch;
        }
    }
    let out = Shape::new(c.batch, c.cout, c.h + 2 * c.pad - 2, c.w + 2 * c.pad - 2);
    let epi = Epilogue { activation: c.act, alpha: c.alpha, beta: if c.residual { 0.75 } else { 0.0 } };
    let res = c.residual.then(|| rand_tensor(&mut rng, out, -1.0, 1.0));
    let p = Conv2dParams::new(1, c.pad);
    let mut want = conv_ref(&xcat, xs, &w, ws, &p, out);
    epilogue_ref(&mut want, out, &bias, &scale, &epi, res.as_ref().map(|r| r.1.as_slice()));

    let ww = WinogradWeights::new(ctx(), &w, ws, Some(&bias), c.scale.then_some(scale.as_slice()), tile).unwrap();
    let (vs, ms) = scratch_shapes(xs, cin, c.cout, c.pad, tile).unwrap();
    let (v, m, y) = (poisoned(vs), poisoned(ms), poisoned(out));
    let inputs: Vec<_> = parts.iter().map(|(t, _)| t).collect();
    let d = conv3x3(ctx(), &inputs, &ww, c.pad, &epi, res.as_ref().map(|r| &r.0), &v, &m, &y).unwrap();
    let got = run_and_read(d, &y);
    let smax = scale.iter().fold(1f64, |a, &s| a.max(s.abs() as f64));
    let tol = tolerance(tile, cin * 9, smax, c.alpha.abs() as f64);
    let name = format!("winograd {tile:?} {:?} -> {} {}x{} pad {} {:?}", c.chans, c.cout, c.h, c.w, c.pad, c.act);
    assert_close(&name, &got, &want, tol, 1e-5);
}

const CASES: &[Case] = &[
    Case { batch: 1, chans: &[16], cout: 16, h: 12, w: 12, pad: 1, act: Activation::None, scale: false, residual: false, alpha: 1.0 },
    Case { batch: 2, chans: &[24], cout: 20, h: 13, w: 9, pad: 1, act: Activation::LeakyRelu(0.2), scale: false, residual: false, alpha: 1.0 },
    Case { batch: 1, chans: &[64], cout: 64, h: 17, w: 19, pad: 1, act: Activation::Relu, scale: true, residual: true, alpha: 0.5 },
    Case { batch: 1, chans: &[8], cout: 12, h: 10, w: 11, pad: 0, act: Activation::Swish, scale: false, residual: false, alpha: 1.0 },
    Case { batch: 1, chans: &[8], cout: 8, h: 7, w: 6, pad: 2, act: Activation::Tanh, scale: true, residual: false, alpha: 1.0 },
    Case { batch: 1, chans: &[32, 16], cout: 16, h: 15, w: 14, pad: 1, act: Activation::LeakyRelu(0.2), scale: false, residual: false, alpha: 1.0 },
    Case { batch: 2, chans: &[12, 8, 4], cout: 24, h: 9, w: 10, pad: 1, act: Activation::Sigmoid, scale: false, residual: true, alpha: 0.2 },
    // Enough tiles for the wider GEMM column tiles (F(4x4): 256 tiles, 4
    // columns per thread; F(2x2): 1056, 8), 40 outputs = two row tiles.
    Case { batch: 1, chans: &[8], cout: 40, h: 64, w: 66, pad: 1, act: Activation::None, scale: false, residual: false, alpha: 1.0 },
    // Two parts and a batch with partial tile rows at the bottom; a width of
    // exactly 4 (F(4x4)) or 8 (F(2x2)) tiles.
    Case { batch: 2, chans: &[16, 8], cout: 16, h: 13, w: 32, pad: 1, act: Activation::LeakyRelu(0.2), scale: false, residual: true, alpha: 1.0 },
    Case { batch: 1, chans: &[20], cout: 8, h: 16, w: 16, pad: 1, act: Activation::None, scale: true, residual: false, alpha: 1.0 },
    // Output channels that are not a multiple of 4 (U and M padded to the
    // next one, the padding rows never stored): 3, 6 and 22, with enough
    // tiles (F(4x4): 256+) for the wide column tiles, a residual and a batch.
    Case { batch: 1, chans: &[24], cout: 3, h: 64, w: 64, pad: 1, act: Activation::None, scale: true, residual: false, alpha: 1.0 },
    Case { batch: 2, chans: &[16, 5], cout: 6, h: 33, w: 32, pad: 1, act: Activation::Relu, scale: false, residual: true, alpha: 0.5 },
    Case { batch: 1, chans: &[17], cout: 22, h: 19, w: 23, pad: 0, act: Activation::LeakyRelu(0.2), scale: true, residual: false, alpha: 1.0 },
    Case { batch: 1, chans: &[8], cout: 1, h: 7, w: 9, pad: 1, act: Activation::None, scale: false, residual: true, alpha: 1.0 },
    // 64+ tiles that are not whole 16-tile blocks of V and M (the padding
    // tiles zero, their columns never read back): F(4x4) 108 -> 112 tiles
    // on the four-tiles-per-thread input transform, F(2x2) 408 -> 416; then
    // a batch on the one-tile transform, F(4x4) 156 -> 160, F(2x2) 550 ->
    // 560, F(6x6) 72 -> 80.
    Case { batch: 1, chans: &[12, 8], cout: 20, h: 34, w: 48, pad: 1, act: Activation::Relu, scale: false, residual: true, alpha: 1.0 },
    Case { batch: 2, chans: &[9], cout: 12, h: 21, w: 50, pad: 1, act: Activation::None, scale: true, residual: false, alpha: 1.0 },
];

#[test]
fn winograd_f2_matches_direct_conv() {
    for (i, c) in CASES.iter().enumerate() {
        run_case(100 + i as u64, WinogradTile::F2, c);
    }
}

#[test]
fn winograd_f4_matches_direct_conv() {
    for (i, c) in CASES.iter().enumerate() {
        run_case(200 + i as u64, WinogradTile::F4, c);
    }
}

#[test]
fn winograd_f6_matches_direct_conv() {
    for (i, c) in CASES.iter().enumerate() {
        run_case(300 + i as u64, WinogradTile::F6, c);
    }
}

#[test]
fn winograd_rejects_bad_shapes() {
    let c = ctx();
    let w = vec![0.1f32; 4 * 4 * 9];
    assert!(WinogradWeights::new(c, &w, [4, 4, 1, 9], None, None, WinogradTile::F2).is_err());
    assert!(WinogradWeights::new(c, &w[..10], [4, 4, 3, 3], None, None, WinogradTile::F2).is_err());
    assert!(WinogradWeights::new(c, &w, [4, 4, 3, 3], Some(&[0.0; 3]), None, WinogradTile::F2).is_err());
    let ww = WinogradWeights::new(c, &w, [4, 4, 3, 3], None, None, WinogradTile::F4).unwrap();
    let xs = Shape::new(1, 4, 8, 8);
    let x = poisoned(xs);
    let x3 = poisoned(Shape::new(1, 3, 8, 8));
    let (vs, ms) = scratch_shapes(xs, 4, 4, 1, WinogradTile::F4).unwrap();
    let (v, m, y) = (poisoned(vs), poisoned(ms), poisoned(Shape::new(1, 4, 8, 8)));
    let e = Epilogue::default();
    // Channel count, output shape, working buffers and aliasing are all checked.
    assert!(conv3x3(c, &[&x3], &ww, 1, &e, None, &v, &m, &y).is_err());
    assert!(conv3x3(c, &[&x], &ww, 0, &e, None, &v, &m, &y).is_err());
    let small = poisoned(Shape::new(vs.n(), 1, 4, vs.w() - 1));
    assert!(conv3x3(c, &[&x], &ww, 1, &e, None, &small, &m, &y).is_err());
    assert!(conv3x3(c, &[&x], &ww, 1, &e, None, &v, &m, &x).is_err());
    assert!(conv3x3(c, &[], &ww, 1, &e, None, &v, &m, &y).is_err());
    assert!(conv3x3(c, &[&x], &ww, 1, &e, None, &v, &m, &y).is_ok());
}

/// A residual of one value per (sample, channel), [N, Cout, 1, 1] (SR3's
/// time-embedding add folded into the output transform), against the
/// reference with that value broadcast over the channel's pixels: both
/// tiles, a batch, an activation before the add, blocked and single-block
/// V / M. A residual of any other shape is refused.
#[test]
fn winograd_channel_residual() {
    let c = ctx();
    for (i, &(tile, batch, cin, cout, h, w)) in [
        (WinogradTile::F4, 2, 16, 20, 21, 34),
        (WinogradTile::F2, 1, 24, 8, 9, 13),
        (WinogradTile::F4, 1, 32, 12, 64, 64),
    ]
    .iter()
    .enumerate()
    {
        let mut rng = Rng::new(400 + i as u64);
        let ws = [cout, cin, 3, 3];
        let wv = rng.vec(cout * cin * 9, -0.5, 0.5);
        let bias = rng.vec(cout, -0.5, 0.5);
        let xs = Shape::new(batch, cin, h, w);
        let (x, xv) = rand_tensor(&mut rng, xs, -1.0, 1.0);
        let out = Shape::new(batch, cout, h, w);
        let (t, tv) = rand_tensor(&mut rng, Shape::new(batch, cout, 1, 1), -1.0, 1.0);
        let epi = Epilogue { activation: Activation::LeakyRelu(0.2), alpha: 0.5, beta: 0.75 };
        let full: Vec<f32> = (0..out.numel()).map(|j| tv[j / (h * w)]).collect();
        let mut want = conv_ref(&xv, xs, &wv, ws, &Conv2dParams::new(1, 1), out);
        epilogue_ref(&mut want, out, &bias, &[], &epi, Some(&full));
        let ww = WinogradWeights::new(c, &wv, ws, Some(&bias), None, tile).unwrap();
        let (vs, ms) = scratch_shapes(xs, cin, cout, 1, tile).unwrap();
        let (v, m, y) = (poisoned(vs), poisoned(ms), poisoned(out));
        let d = conv3x3(c, &[&x], &ww, 1, &epi, Some(&t), &v, &m, &y).unwrap();
        let got = run_and_read(d, &y);
        let name = format!("winograd {tile:?} channel residual {batch}x{cin}->{cout} {h}x{w}");
        assert_close(&name, &got, &want, tolerance(tile, cin * 9, 1.0, 0.5), 1e-5);
        // One value per sample only, or per channel of one sample, is refused.
        for bad in [Shape::new(batch, 1, 1, 1), Shape::new(if batch == 1 { 2 } else { 1 }, cout, 1, 1), Shape::new(batch, cout, 1, w)] {
            let r = poisoned(bad);
            assert!(conv3x3(c, &[&x], &ww, 1, &epi, Some(&r), &v, &m, &y).is_err(), "{name}: residual {bad} accepted");
        }
    }
}
