//! The fused gated PixelCNN stack (one pixel per image, every block in one
//! dispatch) against an f64 reference of the per-block ops: window insert,
//! h_conv + vh, tanh * sigmoid gate, h_out + residual. (Bit-identity with
//! the unfused ops is tests/pixelcnn.rs's sampler agreement.)

use crate::common::*;
use wgsr::ops::gated_stack::{GatedBlock, GatedStack};
use wgsr::{Shape, Tensor};

struct Block {
    h_conv: Vec<f32>,
    h_conv_bias: Vec<f32>,
    h_out: Vec<f32>,
    h_out_bias: Vec<f32>,
}

fn random_blocks(rng: &mut Rng, c: usize, kh: usize, blocks: usize) -> Vec<Block> {
    // Weights ~ 1/sqrt(fan-in) keep every block's values O(1).
    let (a, b) = (1.0 / ((c * kh) as f64).sqrt(), 1.0 / (c as f64).sqrt());
    (0..blocks)
        .map(|_| Block {
            h_conv: rng.vec(2 * c * c * kh, -a, a),
            h_conv_bias: rng.vec(2 * c, -0.5, 0.5),
            h_out: rng.vec(c * c, -b, b),
            h_out_bias: rng.vec(c, -0.5, 0.5),
        })
        .collect()
}

/// (hs, h) in f64 for image-major inputs.
fn reference(n: usize, c: usize, kh: usize, bl: &[Block], h0: &[f32], hist: &[f32], vh: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let (nb, k) = (bl.len(), c * kh);
    let (mut hs, mut out) = (Vec::new(), Vec::new());
    for s in 0..n {
        let mut h: Vec<f64> = h0[s * c..(s + 1) * c].iter().map(|&v| v as f64).collect();
        for (b, blk) in bl.iter().enumerate() {
            let sb = s * nb + b;
            hs.extend_from_slice(&h);
            let win: Vec<f64> = (0..k).map(|j| if j % kh == kh / 2 { h[j / kh] } else { hist[sb * k + j] as f64 }).collect();
            let hp: Vec<f64> = (0..2 * c)
                .map(|o| {
                    let sum: f64 = (0..k).map(|j| blk.h_conv[o * k + j] as f64 * win[j]).sum();
                    sum + blk.h_conv_bias[o] as f64 + vh[sb * 2 * c + o] as f64
                })
                .collect();
            let g: Vec<f64> = (0..c).map(|i| hp[i].tanh() / (1.0 + (-hp[c + i]).exp())).collect();
            h = (0..c)
                .map(|o| (0..c).map(|j| blk.h_out[o * c + j] as f64 * g[j]).sum::<f64>() + blk.h_out_bias[o] as f64 + h[o])
                .collect();
        }
        out.extend_from_slice(&h);
    }
    (hs, out)
}

fn view(b: &Block) -> GatedBlock<'_> {
    GatedBlock { h_conv: &b.h_conv, h_conv_bias: &b.h_conv_bias, h_out: &b.h_out, h_out_bias: &b.h_out_bias }
}

fn check(seed: u64, n: usize, c: usize, kh: usize, blocks: usize) {
    let ctx = ctx();
    let mut rng = Rng::new(seed);
    let bl = random_blocks(&mut rng, c, kh, blocks);
    let views: Vec<GatedBlock> = bl.iter().map(view).collect();
    let stack = GatedStack::new(ctx, c, kh, &views).unwrap();
    let [s0, s1, s2] = stack.input_shapes(n);
    // Every window entry is non-zero, the centre column too (the kernel must take h there).
    let (h0, h0v) = rand_tensor(&mut rng, s0, -1.0, 1.0);
    let (hist, histv) = rand_tensor(&mut rng, s1, -1.0, 1.0);
    let (vh, vhv) = rand_tensor(&mut rng, s2, -1.0, 1.0);
    let [o0, o1] = stack.output_shapes(n);
    let (hs, h) = (poisoned(o0), poisoned(o1));
    let d = stack.prepare(ctx, &h0, &hist, &vh, &hs, &h).unwrap();
    ctx.run(&[d]).unwrap();
    let (want_hs, want_h) = reference(n, c, kh, &bl, &h0v, &histv, &vhv);
    // f32 sums of up to C*kh products per block, errors carried through the
    // blocks' residuals: 1e-5 absolute + relative per block.
    let tol = 1e-5 * blocks as f64;
    let name = format!("gated_stack n={n} C={c} kh={kh} blocks={blocks}");
    assert_close(&format!("{name} hs"), &hs.to_vec(ctx).unwrap(), &want_hs, tol, tol);
    assert_close(&format!("{name} h"), &h.to_vec(ctx).unwrap(), &want_h, tol, tol);
}

#[test]
fn gated_stack_matches_reference() {
    // The paper's block (C = 32, kh = 5), batch 2.
    check(61, 2, 32, 5, 4);
    // C not a multiple of 4 (padded lanes), odd C, kh = 3, batch 3.
    check(62, 3, 10, 5, 3);
    check(63, 3, 7, 3, 2);
    // The kernel's limits: C = 128 (2C = 256 channels: every lane; C*kh = 896), and one channel.
    check(64, 1, 128, 7, 2);
    check(65, 2, 1, 3, 3);
}

#[test]
fn gated_stack_bad_arguments() {
    let ctx = ctx();
    let mut rng = Rng::new(66);
    assert!(!GatedStack::supports(129, 3) && !GatedStack::supports(64, 17) && !GatedStack::supports(8, 4));
    assert!(GatedStack::supports(128, 7) && GatedStack::supports(32, 5));
    let bl = random_blocks(&mut rng, 4, 3, 2);
    let err = GatedStack::new(ctx, 129, 3, &[view(&bl[0])]).err().expect("over the limits").to_string();
    assert!(err.contains("129 channels"), "{err}");
    let err = GatedStack::new(ctx, 4, 3, &[]).err().expect("no blocks").to_string();
    assert!(err.contains("no blocks"), "{err}");
    let short = GatedBlock { h_out_bias: &bl[0].h_out_bias[..3], ..view(&bl[0]) };
    let err = GatedStack::new(ctx, 4, 3, &[view(&bl[1]), short]).err().expect("short bias").to_string();
    assert!(err.contains("block 1"), "{err}");
    let stack = GatedStack::new(ctx, 4, 3, &[view(&bl[0]), view(&bl[1])]).unwrap();
    let [a, b, c] = stack.input_shapes(2);
    let [d, e] = stack.output_shapes(2);
    let (h0, hist, vh) = (poisoned(a), poisoned(b), poisoned(c));
    let (hs, h) = (poisoned(d), poisoned(e));
    let wrong = Tensor::empty(ctx, Shape::new(2, 5, 1, 1)).unwrap();
    let err = stack.prepare(ctx, &wrong, &hist, &vh, &hs, &h).err().expect("wrong h0").to_string();
    assert!(err.contains("expected"), "{err}");
    let err = stack.prepare(ctx, &h0, &hist, &vh, &hs, &hs).err().map(|e| e.to_string());
    assert!(err.is_some(), "hs given as h (wrong shape or aliasing) must be refused");
    let alias = Tensor::empty(ctx, e).unwrap();
    let err = stack.prepare(ctx, &alias, &hist, &vh, &hs, &alias).err().expect("h aliases h0").to_string();
    assert!(err.contains("share a buffer"), "{err}");
}
