use crate::common::*;
use wgsr::ops::matmul::{matmul, Bias, Linear, MatmulOpts};
use wgsr::{Error, Shape, Tensor};

/// Which bias the reference adds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BiasKind {
    None,
    Col,
    Row,
}

/// f64 reference of `alpha * op(A[b]) op(B[b]) + bias` for row-major inputs
/// with batch broadcasting (a batch of 1 is reused).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_ref(
    a: &[f32],
    b: &[f32],
    batch: (usize, usize, usize),
    (m, n, k): (usize, usize, usize),
    (ta, tb): (bool, bool),
    alpha: f64,
    bias: &[f32],
    kind: BiasKind,
) -> Vec<f64> {
    let (ba, bb, bo) = batch;
    let mut out = vec![0.0; bo * m * n];
    for bi in 0..bo {
        let ao = if ba == 1 { 0 } else { bi * m * k };
        let bo_ = if bb == 1 { 0 } else { bi * k * n };
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for l in 0..k {
                    let av = if ta { a[ao + l * m + i] } else { a[ao + i * k + l] };
                    let bv = if tb { b[bo_ + j * k + l] } else { b[bo_ + l * n + j] };
                    s += av as f64 * bv as f64;
                }
                s *= alpha;
                s += match kind {
                    BiasKind::None => 0.0,
                    BiasKind::Col => bias[j] as f64,
                    BiasKind::Row => bias[i] as f64,
                };
                out[(bi * m + i) * n + j] = s;
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn check(rng: &mut Rng, ba: usize, bb: usize, m: usize, n: usize, k: usize, ta: bool, tb: bool, kind: BiasKind) {
    let c = ctx();
    let a_shape = if ta { Shape::new(ba, 1, k, m) } else { Shape::new(ba, 1, m, k) };
    let b_shape = if tb { Shape::new(bb, 1, n, k) } else { Shape::new(bb, 1, k, n) };
    let bo = ba.max(bb);
    let (a, av) = rand_tensor(rng, a_shape, -1.0, 1.0);
    let (b, bv) = rand_tensor(rng, b_shape, -1.0, 1.0);
    let bias_len = if kind == BiasKind::Row { m } else { n };
    let (bias, biasv) = rand_tensor(rng, Shape::new(1, 1, 1, bias_len), -1.0, 1.0);
    let alpha = 0.75f32;
    let opts = MatmulOpts {
        trans_a: ta,
        trans_b: tb,
        alpha,
        bias: match kind {
            BiasKind::None => Bias::None,
            BiasKind::Col => Bias::PerColumn(&bias),
            BiasKind::Row => Bias::PerRow(&bias),
        },
    };
    let out = poisoned(Shape::new(bo, 1, m, n));
    let got = run_and_read(matmul(c, &a, &b, &out, &opts).unwrap(), &out);
    let want = matmul_ref(&av, &bv, (ba, bb, bo), (m, n, k), (ta, tb), alpha as f64, &biasv, kind);
    // Sum of K products of U(-1,1) values (typical magnitude 1/3): f32
    // accumulation error grows like sqrt(K), so abs = 1e-5 * sqrt(K) / 3.
    let abs = 1e-5 * (k as f64).sqrt() / 3.0;
    let name = format!("matmul {ba}|{bb} x {m}x{n}x{k} ta={ta} tb={tb} bias={kind:?}");
    assert_close(&name, &got, &want, abs, 1e-5);
}

#[test]
fn matmul_transposes_and_bias() {
    let mut rng = Rng::new(21);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        for kind in [BiasKind::None, BiasKind::Col, BiasKind::Row] {
            // Odd sizes below one 64x64 tile and K not a multiple of 16.
            check(&mut rng, 3, 3, 33, 17, 65, ta, tb, kind);
        }
        // Several tiles in M and N with partial edge tiles, batch broadcast
        // of either operand.
        check(&mut rng, 2, 1, 70, 130, 40, ta, tb, BiasKind::Col);
        check(&mut rng, 1, 2, 129, 65, 7, ta, tb, BiasKind::Row);
    }
    // Several column tiles of the CPU variant (gemm_rows: 16 x 64*RN) with a
    // partial last one, in both B layouts, and each column tile width
    // (RN = 2 for 1100 and 530, 4 for 256, 8 for 1024 and 3000; matmul.rs rows_rn).
    check(&mut rng, 2, 2, 20, 1100, 9, false, false, BiasKind::Col);
    check(&mut rng, 1, 1, 37, 530, 12, true, true, BiasKind::Row);
    check(&mut rng, 1, 1, 19, 256, 10, false, false, BiasKind::Col);
    check(&mut rng, 1, 2, 21, 1024, 13, false, true, BiasKind::Row);
    check(&mut rng, 1, 1, 18, 3000, 5, true, false, BiasKind::None);
    // Degenerate vector shapes.
    check(&mut rng, 1, 1, 1, 1, 300, false, false, BiasKind::None);
    check(&mut rng, 1, 1, 200, 3, 1, true, true, BiasKind::Col);
}

#[test]
fn linear_matches_reference() {
    let c = ctx();
    let mut rng = Rng::new(22);
    let (inf, outf) = (37, 70);
    let w = rng.vec(outf * inf, -1.0, 1.0);
    let bias = rng.vec(outf, -1.0, 1.0);
    let with_bias = Linear::new(c, &w, Some(&bias), outf, inf).unwrap();
    let without = Linear::new(c, &w, None, outf, inf).unwrap();
    let rows = 3;
    for (xs, os) in [
        (Shape::new(rows, 1, 1, inf), Shape::new(rows, outf, 1, 1)),
        (Shape::new(1, 1, rows, inf), Shape::new(1, 1, rows, outf)),
        (Shape::new(rows, inf, 1, 1), Shape::new(rows, 1, 1, outf)),
    ] {
        let (x, xv) = rand_tensor(&mut rng, xs, -1.0, 1.0);
        for (lin, has_bias) in [(&with_bias, true), (&without, false)] {
            let out = poisoned(os);
            let got = run_and_read(lin.prepare(c, &x, &out).unwrap(), &out);
            let mut want = vec![0.0f64; rows * outf];
            for r in 0..rows {
                for o in 0..outf {
                    let dot: f64 = (0..inf).map(|i| xv[r * inf + i] as f64 * w[o * inf + i] as f64).sum();
                    want[r * outf + o] = dot + if has_bias { bias[o] as f64 } else { 0.0 };
                }
            }
            // Same sqrt(K) accumulation bound as matmul.
            let abs = 1e-5 * (inf as f64).sqrt() / 3.0;
            assert_close(&format!("matmul.linear {xs} -> {os} bias={has_bias}"), &got, &want, abs, 1e-5);
        }
    }
}

#[test]
fn matmul_bad_shapes() {
    let c = ctx();
    let t = |n, ch, h, w| Tensor::empty(c, Shape::new(n, ch, h, w)).unwrap();
    let d = MatmulOpts::default();
    let a = t(2, 1, 5, 7);
    let b = t(2, 1, 7, 3);
    let out = t(2, 1, 5, 3);
    assert!(matmul(c, &a, &b, &out, &d).is_ok());
    // K mismatch.
    let err = matmul(c, &a, &t(2, 1, 6, 3), &out, &d).unwrap_err().to_string();
    assert!(err.contains("inner dimensions"), "{err}");
    // Transposing A makes K = 5, M = 7.
    assert!(matches!(matmul(c, &a, &b, &out, &MatmulOpts { trans_a: true, ..d }), Err(Error::Shape(_))));
    // Wrong output, wrong batch, non-matrix tensor.
    assert!(matches!(matmul(c, &a, &b, &t(2, 1, 3, 5), &d), Err(Error::Shape(_))));
    assert!(matches!(matmul(c, &a, &t(3, 1, 7, 3), &t(3, 1, 5, 3), &d), Err(Error::Shape(_))));
    assert!(matches!(matmul(c, &a, &b, &t(1, 1, 5, 3), &d), Err(Error::Shape(_))));
    assert!(matches!(matmul(c, &t(2, 2, 5, 7), &b, &out, &d), Err(Error::Shape(_))));
    // Bias of the wrong length for its mode.
    let bias3 = t(1, 1, 1, 3);
    assert!(matmul(c, &a, &b, &out, &MatmulOpts { bias: Bias::PerColumn(&bias3), ..d }).is_ok());
    assert!(matches!(matmul(c, &a, &b, &out, &MatmulOpts { bias: Bias::PerRow(&bias3), ..d }), Err(Error::Shape(_))));
    // Output aliasing an input.
    let sq = t(1, 1, 4, 4);
    assert!(matches!(matmul(c, &sq, &t(1, 1, 4, 4), &sq, &d), Err(Error::InvalidArgument(_))));

    // Linear: wrong weight size, wrong bias size, wrong input/output widths, row mismatch.
    let w = vec![0.5f32; 6];
    assert!(matches!(Linear::new(c, &w, None, 4, 2), Err(Error::Shape(_))));
    assert!(matches!(Linear::new(c, &w, Some(&[1.0, 2.0]), 3, 2), Err(Error::Shape(_))));
    let lin = Linear::new(c, &w, Some(&[1.0, 2.0, 3.0]), 3, 2).unwrap();
    assert!(lin.prepare(c, &t(4, 1, 1, 2), &t(4, 3, 1, 1)).is_ok());
    let err = lin.prepare(c, &t(4, 1, 1, 3), &t(4, 3, 1, 1)).unwrap_err().to_string();
    assert!(err.contains("linear"), "{err}");
    assert!(matches!(lin.prepare(c, &t(4, 1, 1, 2), &t(4, 1, 1, 2)), Err(Error::Shape(_))));
    assert!(matches!(lin.prepare(c, &t(4, 1, 1, 2), &t(5, 3, 1, 1)), Err(Error::Shape(_))));
}
