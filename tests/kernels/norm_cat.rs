//! GroupNorm over a channel concatenation, one output per input, against
//! the f64 GroupNorm of the materialised concatenation; groups straddling
//! two and three inputs, portions over one chunk and chunks past short
//! portions, shifted data, Swish.

use crate::common::*;
use crate::norm::group_norm_ref;
use wgsr::ops::norm::DEFAULT_EPS;
use wgsr::ops::norm_cat::GroupNormCat;
use wgsr::{Error, Shape, Tensor};

fn check(seed: u64, n: usize, chans: &[usize], h: usize, w: usize, groups: usize, offset: f64, spread: f64, swish: bool) {
    let c = ctx();
    let mut rng = Rng::new(seed);
    let total: usize = chans.iter().sum();
    let gamma = rng.vec(total, 0.5, 1.5);
    let beta = rng.vec(total, -0.5, 0.5);
    let gn = GroupNormCat::new(c, &gamma, &beta, groups, DEFAULT_EPS, chans).unwrap();
    let xs: Vec<(Tensor, Vec<f32>)> = chans.iter().map(|&ci| rand_tensor(&mut rng, Shape::new(n, ci, h, w), offset - spread, offset + spread)).collect();
    let outs: Vec<Tensor> = chans.iter().map(|&ci| poisoned(Shape::new(n, ci, h, w))).collect();
    let sc = Tensor::filled(c, gn.scratch_shape(n, h, w), f32::NAN).unwrap();
    let xr: Vec<&Tensor> = xs.iter().map(|x| &x.0).collect();
    let or: Vec<&Tensor> = outs.iter().collect();
    let d = gn.prepare(c, &xr, &or, &sc, swish).unwrap();
    ctx().run(&d).unwrap();
    // Reference: GroupNorm of the concatenation, then split per input.
    let hw = h * w;
    let mut cat = Vec::new();
    for b in 0..n {
        for (x, &ci) in xs.iter().zip(chans) {
            cat.extend_from_slice(&x.1[b * ci * hw..(b + 1) * ci * hw]);
        }
    }
    let want = group_norm_ref(&cat, Shape::new(n, total, h, w), groups, &gamma, &beta, DEFAULT_EPS as f64, swish);
    let mut off = 0;
    for (i, (o, &ci)) in outs.iter().zip(chans).enumerate() {
        let got = o.to_vec(c).unwrap();
        let part: Vec<f64> = (0..n).flat_map(|b| want[(b * total + off) * hw..(b * total + off + ci) * hw].to_vec()).collect();
        // As tests/kernels/norm.rs: O(1) outputs, statistics on shifted data.
        let name = format!("norm_cat.{chans:?} {h}x{w} G={groups} mean={offset} swish={swish} part {i}");
        assert_close(&name, &got, &part, 1e-5, 1e-5);
        off += ci;
    }
}

#[test]
fn group_norm_cat_matches_reference() {
    // cpg 3: group 1 straddles inputs 0 and 1.
    check(41, 2, &[5, 7], 5, 7, 4, 0.0, 2.0, false);
    check(42, 2, &[5, 7], 5, 7, 4, 0.0, 2.0, true);
    // One group over three inputs; shifted data (a naive variance loses it all).
    check(43, 2, &[2, 1, 3], 4, 6, 1, 100.0, 0.1, true);
    // SR3 64->512's level-0 split, 128 + 64 channels in 16 groups (cpg 12,
    // group 10 straddles), planes of 4550 values (not whole vec4s): portions
    // of up to 12 planes in 4 chunks of 13650, so the straddling group's
    // 8- and 4-plane portions leave empty chunks the merge must skip.
    check(44, 1, &[128, 64], 65, 70, 16, 3.0, 1.0, true);
    // Aligned groups, batch 3.
    check(45, 3, &[8, 8], 3, 3, 4, -1.0, 1.0, false);
    // Planes of whole vec4s (gn_cat_normalize4): a straddling group, and
    // SR3's 16x16 level split (512 + 512 channels, 32 groups) at batch 2.
    check(46, 2, &[5, 7], 4, 8, 4, 0.5, 2.0, true);
    check(47, 2, &[512, 512], 16, 16, 32, 3.0, 1.0, true);
    check(48, 1, &[6, 10], 2, 2, 4, -2.0, 0.5, false);
    // Vec4 chunks over several planes (64x72, cpg 4): input 0 holds 3 planes
    // of group 0 in one chunk, input 1 one plane of it and all 4 of group 1
    // in two chunks of 9216. Chunks rounded up to whole vec4s (60x205, 2
    // planes of 12300 in chunks of 12300).
    check(49, 1, &[3, 5], 64, 72, 2, 1.0, 1.0, true);
    check(50, 1, &[2, 2], 60, 205, 2, 0.0, 1.0, false);
    // SR3's 8x8 level (512 + 512, one 2048-value chunk per group and input)
    // and a 768-channel up block (cpg 24: groups straddle 512 + 256).
    check(51, 1, &[512, 512], 8, 8, 32, -1.0, 1.0, true);
    check(52, 2, &[512, 256], 16, 16, 32, 2.0, 1.0, false);
}

#[test]
fn group_norm_cat_bad_arguments() {
    let c = ctx();
    let g = vec![1.0f32; 12];
    assert!(matches!(GroupNormCat::new(c, &g, &g, 5, 1e-5, &[5, 7]), Err(Error::Shape(_))));
    assert!(matches!(GroupNormCat::new(c, &g, &g, 4, 1e-5, &[5, 6]), Err(Error::Shape(_))));
    assert!(matches!(GroupNormCat::new(c, &g, &g, 4, 1e-5, &[12, 0]), Err(Error::Shape(_))));
    assert!(GroupNormCat::new(c, &g, &g, 4, f32::NAN, &[5, 7]).is_err());
    let gn = GroupNormCat::new(c, &g, &g, 4, 1e-5, &[5, 7]).unwrap();
    let t = |ch| Tensor::empty(c, Shape::new(1, ch, 4, 4)).unwrap();
    let (a, b, oa, ob) = (t(5), t(7), t(5), t(7));
    let sc = Tensor::empty(c, gn.scratch_shape(1, 4, 4)).unwrap();
    assert!(gn.prepare(c, &[&a, &b], &[&oa, &ob], &sc, false).is_ok());
    // Wrong channel split, an output aliasing an input, wrong scratch, wrong size.
    assert!(gn.prepare(c, &[&b, &a], &[&ob, &oa], &sc, false).is_err());
    assert!(gn.prepare(c, &[&a, &b], &[&a, &ob], &sc, false).unwrap_err().to_string().contains("share"));
    assert!(gn.prepare(c, &[&a, &b], &[&oa, &ob], &t(1), false).is_err());
    let b5 = Tensor::empty(c, Shape::new(1, 7, 4, 5)).unwrap();
    assert!(gn.prepare(c, &[&a, &b5], &[&oa, &ob], &sc, false).is_err());
}
