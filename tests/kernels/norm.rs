use crate::common::*;
use wgsr::ops::norm::{GroupNorm, DEFAULT_EPS};
use wgsr::{Error, Shape, Tensor};

/// torch.nn.GroupNorm (+ optional Swish) in f64: biased variance per (n, group).
pub(crate) fn group_norm_ref(x: &[f32], s: Shape, groups: usize, gamma: &[f32], beta: &[f32], eps: f64, swish: bool) -> Vec<f64> {
    let [n, c, _, _] = s.0;
    let hw = s.hw();
    let len = c / groups * hw;
    let mut out = vec![0.0; x.len()];
    for g in 0..n * groups {
        let span = &x[g * len..(g + 1) * len];
        let mean = span.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
        let var = span.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        for (i, &v) in span.iter().enumerate() {
            let ch = (g % groups) * (c / groups) + i / hw;
            let mut y = (v as f64 - mean) * rstd * gamma[ch] as f64 + beta[ch] as f64;
            if swish {
                y /= 1.0 + (-y).exp();
            }
            out[g * len + i] = y;
        }
    }
    out
}

/// Run GroupNorm on `s` with input `offset + U(-spread, spread)` and compare.
fn check(rng: &mut Rng, s: Shape, groups: usize, offset: f64, spread: f64, swish: bool) {
    let c = ctx();
    let gamma = rng.vec(s.c(), 0.5, 1.5);
    let beta = rng.vec(s.c(), -0.5, 0.5);
    let gn = GroupNorm::new(c, &gamma, &beta, groups, DEFAULT_EPS).unwrap();
    let (x, xv) = rand_tensor(rng, s, offset - spread, offset + spread);
    let out = poisoned(s);
    let got = run_and_read(gn.prepare(c, &x, &out, &scratch(c, gn.scratch_shape(x.shape())), swish).unwrap(), &out);
    let want = group_norm_ref(&xv, s, groups, &gamma, &beta, DEFAULT_EPS as f64, swish);
    // Outputs are O(1) (unit-variance values times gamma in [0.5, 1.5]); the
    // statistics are computed on shifted data, so even a mean of 100 with
    // spread 0.1 stays at f32 rounding level. 1e-5 abs covers a few ulps of
    // rsqrt and the (x - mean) * rstd product.
    let name = format!("norm.group_norm {s} G={groups} mean={offset} spread={spread} swish={swish}");
    assert_close(&name, &got, &want, 1e-5, 1e-5);
}

#[test]
fn group_norm_matches_reference() {
    let mut rng = Rng::new(11);
    for (ch, groups) in [(12, 4), (64, 32)] {
        for (h, w) in [(5, 7), (32, 32)] {
            let s = Shape::new(2, ch, h, w);
            check(&mut rng, s, groups, 0.0, 2.0, false);
            check(&mut rng, s, groups, 0.0, 2.0, true);
            // Large mean, tiny spread: a naive E[x^2] - E[x]^2 in f32 loses
            // all digits of the variance here.
            check(&mut rng, s, groups, 100.0, 0.1, true);
        }
    }
    // Odd channel count, one channel per group, odd map.
    check(&mut rng, Shape::new(3, 5, 3, 1), 5, -3.0, 1.0, false);
}

#[test]
fn group_norm_big_maps_use_many_chunks() {
    let mut rng = Rng::new(12);
    // SR3's first level: 64 channels at 128x128, 32 groups -> 32768 values per
    // group, split over 2 workgroups each (16384-value chunks).
    check(&mut rng, Shape::new(1, 64, 128, 128), 32, 100.0, 1.0, true);
    // 8 chunks per group, vec4 path.
    check(&mut rng, Shape::new(1, 8, 128, 128), 1, 3.0, 1.0, true);
    // Over 256 * 16384 values in one group: the chunk count is capped and
    // chunks grow instead (last chunk shorter; odd H*W, scalar path).
    check(&mut rng, Shape::new(1, 1, 2049, 2051), 1, 5.0, 1.0, false);
    // The chunk counts those comments claim (one partial pair per chunk).
    let c = ctx();
    let chunks = |s: Shape, groups: usize| {
        let gn = GroupNorm::new(c, &vec![1.0; s.c()], &vec![0.0; s.c()], groups, DEFAULT_EPS).unwrap();
        gn.scratch_shape(s).h() / (s.n() * groups)
    };
    assert_eq!(chunks(Shape::new(1, 64, 128, 128), 32), 2);
    assert_eq!(chunks(Shape::new(1, 8, 128, 128), 1), 8);
    assert_eq!(chunks(Shape::new(1, 1, 2049, 2051), 1), 256);
}

#[test]
fn group_norm_bad_arguments() {
    let c = ctx();
    let g12 = vec![1.0f32; 12];
    assert!(matches!(GroupNorm::new(c, &g12, &g12, 5, 1e-5), Err(Error::Shape(_))));
    assert!(matches!(GroupNorm::new(c, &g12, &g12[..11], 4, 1e-5), Err(Error::Shape(_))));
    assert!(matches!(GroupNorm::new(c, &g12, &g12, 0, 1e-5), Err(Error::Shape(_))));
    assert!(matches!(GroupNorm::new(c, &g12, &g12, 4, f32::NAN), Err(Error::InvalidArgument(_))));

    let gn = GroupNorm::new(c, &g12, &g12, 4, 1e-5).unwrap();
    let x = Tensor::empty(c, Shape::new(1, 12, 4, 4)).unwrap();
    let wrong_c = Tensor::empty(c, Shape::new(1, 8, 4, 4)).unwrap();
    let wrong_hw = Tensor::empty(c, Shape::new(1, 12, 4, 5)).unwrap();
    let out = Tensor::empty(c, Shape::new(1, 12, 4, 4)).unwrap();
    let err = gn.prepare(c, &wrong_c, &wrong_c, &scratch(c, gn.scratch_shape(wrong_c.shape())), false).unwrap_err().to_string();
    assert!(err.contains("group_norm") && err.contains("12 channels"), "{err}");
    assert!(matches!(gn.prepare(c, &x, &wrong_hw, &scratch(c, gn.scratch_shape(x.shape())), false), Err(Error::Shape(_))));
    assert!(matches!(gn.prepare(c, &x, &x, &scratch(c, gn.scratch_shape(x.shape())), true), Err(Error::InvalidArgument(_))));
    assert!(gn.prepare(c, &x, &out, &scratch(c, gn.scratch_shape(x.shape())), true).is_ok());
}
