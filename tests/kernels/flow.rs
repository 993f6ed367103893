//! Flow layers (ActNorm, invertible 1x1 conv, couplings, split-off Gaussian)
//! against f64 references written from the official HCFlow definitions.

use crate::common::*;
use wgsr::ops::actnorm::ActNorm;
use wgsr::ops::coupling::{self, GaussianScale};
use wgsr::ops::invconv::InvConv;
use wgsr::{Shape, Tensor};

const LOG_2PI: f64 = 1.8378770664093453;

fn per_sample(n: usize) -> Shape {
    Shape::new(n, 1, 1, 1)
}

fn dup(t: &[f32], s: Shape) -> Tensor {
    Tensor::from_slice(ctx(), s, t).unwrap()
}

fn run(d: Vec<wgsr::gpu::Dispatch>) {
    ctx().run(&d).unwrap();
}

// ------------------------------------------------------------------ ActNorm

fn actnorm_ref(x: &[f32], s: Shape, bias: &[f32], logs: &[f32], reverse: bool) -> Vec<f64> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / s.hw()) % s.c();
            let (v, b, l) = (v as f64, bias[ch] as f64, logs[ch] as f64);
            if reverse {
                v * (-l).exp() - b
            } else {
                (v + b) * l.exp()
            }
        })
        .collect()
}

#[test]
fn actnorm_forward_reverse_logdet() {
    let c = ctx();
    let mut rng = Rng::new(21);
    for s in [Shape::new(2, 7, 5, 7), Shape::new(2, 12, 16, 16)] {
        let bias = rng.vec(s.c(), -1.0, 1.0);
        let logs = rng.vec(s.c(), -1.0, 1.0);
        let layer = ActNorm::new(c, &bias, &logs).unwrap();
        let (x, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
        let (ld, ldv) = rand_tensor(&mut rng, per_sample(s.n()), -20.0, 20.0);
        let dl: f64 = logs.iter().map(|&l| l as f64).sum::<f64>() * s.hw() as f64;

        let y = poisoned(s);
        let got = run_and_read(layer.forward(c, &x, &y, Some(&ld)).unwrap(), &y);
        assert_close(&format!("actnorm.forward {s}"), &got, &actnorm_ref(&xv, s, &bias, &logs, false), 1e-6, 1e-6);
        let want_ld: Vec<f64> = ldv.iter().map(|&v| v as f64 + dl).collect();
        assert_close(&format!("actnorm.forward logdet {s}"), &ld.to_vec(c).unwrap(), &want_ld, 1e-6, 1e-6);

        let r = poisoned(s);
        let got = run_and_read(layer.reverse(c, &x, &r, None).unwrap(), &r);
        assert_close(&format!("actnorm.reverse {s}"), &got, &actnorm_ref(&xv, s, &bias, &logs, true), 1e-6, 1e-6);

        // Round trip, logdet back to its start.
        let back = poisoned(s);
        let got = run_and_read(layer.reverse(c, &y, &back, Some(&ld)).unwrap(), &back);
        assert_close(&format!("actnorm round trip {s}"), &got, &to_f64(&xv), 1e-5, 1e-5);
        assert_close(&format!("actnorm round trip logdet {s}"), &ld.to_vec(c).unwrap(), &to_f64(&ldv), 1e-5, 1e-6);

        // In place gives the out-of-place result bit for bit.
        let t = dup(&xv, s);
        run(layer.forward(c, &t, &t, None).unwrap());
        assert_exact(&format!("actnorm.forward in place {s}"), &t.to_vec(c).unwrap(), &y.to_vec(c).unwrap());
        run(layer.reverse(c, &t, &t, None).unwrap());
        assert_close(&format!("actnorm in-place round trip {s}"), &t.to_vec(c).unwrap(), &to_f64(&xv), 1e-5, 1e-5);
    }
}

// ---------------------------------------------------------------- invconv

fn matvec_ref(x: &[f32], s: Shape, w: &[f64]) -> Vec<f64> {
    let (cc, hw) = (s.c(), s.hw());
    let mut y = vec![0.0; x.len()];
    for n in 0..s.n() {
        for o in 0..cc {
            for p in 0..hw {
                y[(n * cc + o) * hw + p] = (0..cc).map(|i| w[o * cc + i] * x[(n * cc + i) * hw + p] as f64).sum();
            }
        }
    }
    y
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            c[i * n + j] = (0..n).map(|k| a[i * n + k] * b[k * n + j]).sum();
        }
    }
    c
}

/// max |A - I|.
fn dist_to_identity(a: &[f64], n: usize) -> f64 {
    let mut m = 0.0f64;
    for i in 0..n {
        for j in 0..n {
            m = m.max((a[i * n + j] - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    m
}

/// log|det A| by modified Gram-Schmidt QR on the columns: |det A| = prod |R_kk|.
/// Independent of the LU code under test.
fn qr_logabsdet(a: &[f64], n: usize) -> f64 {
    let mut cols: Vec<Vec<f64>> = (0..n).map(|j| (0..n).map(|i| a[i * n + j]).collect()).collect();
    let mut acc = 0.0;
    for k in 0..n {
        let norm = cols[k].iter().map(|v| v * v).sum::<f64>().sqrt();
        acc += norm.ln();
        let q: Vec<f64> = cols[k].iter().map(|v| v / norm).collect();
        for col in cols.iter_mut().skip(k + 1) {
            let d: f64 = q.iter().zip(col.iter()).map(|(a, b)| a * b).sum();
            col.iter_mut().zip(&q).for_each(|(v, qv)| *v -= d * qv);
        }
    }
    acc
}

/// Well-conditioned but far from identity: rows of a random orthogonal
/// matrix scaled by random factors in +-[0.5, 1.5] (condition number <= 3).
fn scaled_orthogonal(rng: &mut Rng, c: usize) -> Vec<f32> {
    let mut rows: Vec<Vec<f64>> = Vec::new();
    while rows.len() < c {
        let mut v: Vec<f64> = (0..c).map(|_| rng.range(-1.0, 1.0) as f64).collect();
        for r in &rows {
            let d: f64 = r.iter().zip(&v).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(r).for_each(|(x, y)| *x -= d * y);
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-3 {
            rows.push(v.iter().map(|x| x / norm).collect());
        }
    }
    let mut w = Vec::with_capacity(c * c);
    for r in rows {
        let sgn = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
        let scale = sgn * rng.range(0.5, 1.5) as f64;
        w.extend(r.iter().map(|x| (x * scale) as f32));
    }
    w
}

#[test]
fn invconv_forward_reverse_logdet() {
    let c = ctx();
    let mut rng = Rng::new(31);
    // Pixel counts that are (16x16, 4x6, 8x8: the vec4 entry) and are not
    // multiples of 4; channel counts that are and are not.
    for s in [Shape::new(2, 6, 5, 7), Shape::new(2, 12, 16, 16), Shape::new(2, 48, 5, 7), Shape::new(2, 10, 4, 6), Shape::new(1, 48, 8, 8)] {
        let cc = s.c();
        let w = scaled_orthogonal(&mut rng, cc);
        let layer = InvConv::from_weight(c, &w, cc).unwrap();
        let w64 = to_f64(&w);
        let want_lad = qr_logabsdet(&w64, cc);
        let lad_err = (layer.logabsdet() - want_lad).abs();
        println!("max_err invconv logabsdet C={cc}: abs {lad_err:.3e}");
        assert!(lad_err <= 1e-12 * (cc as f64), "logabsdet {} vs QR {want_lad}", layer.logabsdet());
        let inv_err = dist_to_identity(&matmul(layer.inverse_f64(), &w64, cc), cc);
        println!("max_err invconv W^-1 W - I C={cc}: abs {inv_err:.3e}");
        assert!(inv_err <= 1e-13 * cc as f64, "W^-1 W differs from I by {inv_err}");

        let (x, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
        let (ld, ldv) = rand_tensor(&mut rng, per_sample(s.n()), -20.0, 20.0);
        let y = poisoned(s);
        let got = run_and_read(layer.forward(c, &x, &y, Some(&ld)).unwrap(), &y);
        // f32 dot products of length C with terms of size ~1: error ~ eps * sqrt(C).
        let tol = 1e-6 * (cc as f64).sqrt();
        assert_close(&format!("invconv.forward {s}"), &got, &matvec_ref(&xv, s, &w64), tol, 1e-5);
        let dl = want_lad * s.hw() as f64;
        let want_ld: Vec<f64> = ldv.iter().map(|&v| v as f64 + dl).collect();
        assert_close(&format!("invconv.forward logdet {s}"), &ld.to_vec(c).unwrap(), &want_ld, 1e-6, 1e-5);

        let r = poisoned(s);
        let got = run_and_read(layer.reverse(c, &x, &r, None).unwrap(), &r);
        assert_close(&format!("invconv.reverse {s}"), &got, &matvec_ref(&xv, s, layer.inverse_f64()), tol, 1e-5);

        let back = poisoned(s);
        let got = run_and_read(layer.reverse(c, &y, &back, Some(&ld)).unwrap(), &back);
        assert_close(&format!("invconv round trip {s}"), &got, &to_f64(&xv), 1e-5, 1e-5);
        assert_close(&format!("invconv round trip logdet {s}"), &ld.to_vec(c).unwrap(), &to_f64(&ldv), 1e-5, 1e-6);
    }
}

#[test]
fn invconv_dense_random_weight() {
    // A general dense W (entries uniform in [-1, 1]), not near orthogonal.
    let c = ctx();
    let mut rng = Rng::new(32);
    let s = Shape::new(2, 48, 5, 7);
    let cc = s.c();
    let w = rng.vec(cc * cc, -1.0, 1.0);
    let w64 = to_f64(&w);
    let layer = InvConv::from_weight(c, &w, cc).unwrap();
    let want_lad = qr_logabsdet(&w64, cc);
    let lad_err = (layer.logabsdet() - want_lad).abs();
    println!("max_err invconv dense logabsdet: abs {lad_err:.3e} ({} vs {want_lad})", layer.logabsdet());
    assert!(lad_err <= 1e-10, "logabsdet {} vs QR {want_lad}", layer.logabsdet());
    let inv_err = dist_to_identity(&matmul(layer.inverse_f64(), &w64, cc), cc);
    println!("max_err invconv dense W^-1 W - I: abs {inv_err:.3e}");
    assert!(inv_err <= 1e-10, "W^-1 W differs from I by {inv_err}");
    let (x, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
    let y = poisoned(s);
    let got = run_and_read(layer.forward(c, &x, &y, None).unwrap(), &y);
    // Terms up to 2 in magnitude, outputs up to ~10: eps * sqrt(C) * typical size.
    assert_close("invconv.forward dense", &got, &matvec_ref(&xv, s, &w64), 1e-5 * (cc as f64).sqrt() * 0.5, 1e-5);
}

#[test]
fn invconv_glow_lu_matches_plain_weight() {
    let c = ctx();
    let mut rng = Rng::new(33);
    for s in [Shape::new(2, 6, 5, 7), Shape::new(2, 12, 16, 16)] {
        let cc = s.c();
        // Random permutation (Fisher-Yates), P[perm_row[j]][j] = 1.
        let mut perm: Vec<usize> = (0..cc).collect();
        for i in (1..cc).rev() {
            perm.swap(i, rng.below(i + 1));
        }
        let mut p = vec![0.0f32; cc * cc];
        for (j, &r) in perm.iter().enumerate() {
            p[r * cc + j] = 1.0;
        }
        // Junk everywhere: the layer must use only the strict triangles of l and u.
        let l = rng.vec(cc * cc, -0.5, 0.5);
        let u = rng.vec(cc * cc, -0.5, 0.5);
        let log_s = rng.vec(cc, -0.5, 0.5);
        let sign_s: Vec<f32> = (0..cc).map(|_| if rng.uniform() < 0.5 { -1.0 } else { 1.0 }).collect();
        // W = P L (U + diag(sign_s * exp(log_s))) in f64.
        let mut lm = vec![0.0; cc * cc];
        let mut um = vec![0.0; cc * cc];
        for i in 0..cc {
            for j in 0..cc {
                if j < i {
                    lm[i * cc + j] = l[i * cc + j] as f64;
                }
                if j > i {
                    um[i * cc + j] = u[i * cc + j] as f64;
                }
            }
            lm[i * cc + i] = 1.0;
            um[i * cc + i] = sign_s[i] as f64 * (log_s[i] as f64).exp();
        }
        let w64 = matmul(&to_f64(&p), &matmul(&lm, &um, cc), cc);
        let lu_layer = InvConv::from_lu(c, &p, &l, &u, &log_s, &sign_s, cc).unwrap();
        let w_err = lu_layer.weight_f64().iter().zip(&w64).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(w_err <= 1e-14, "from_lu weight differs from P L U by {w_err}");
        let want_lad: f64 = log_s.iter().map(|&v| v as f64).sum();
        assert!((lu_layer.logabsdet() - want_lad).abs() <= 1e-12);
        assert!((qr_logabsdet(&w64, cc) - want_lad).abs() <= 1e-10);
        let inv_err = dist_to_identity(&matmul(lu_layer.inverse_f64(), &w64, cc), cc);
        println!("max_err invconv LU W^-1 W - I C={cc}: abs {inv_err:.3e}");
        assert!(inv_err <= 1e-12, "LU inverse: W^-1 W differs from I by {inv_err}");

        // The same W given plainly (rounded to f32).
        let w32: Vec<f32> = w64.iter().map(|&v| v as f32).collect();
        let plain = InvConv::from_weight(c, &w32, cc).unwrap();
        let lad_diff = (plain.logabsdet() - lu_layer.logabsdet()).abs();
        println!("max_err invconv LU vs plain logabsdet C={cc}: abs {lad_diff:.3e}");
        assert!(lad_diff <= 1e-5, "plain vs LU log|det|: {} vs {}", plain.logabsdet(), lu_layer.logabsdet());

        let (x, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
        let tol = 1e-6 * (cc as f64).sqrt();
        let want = matvec_ref(&xv, s, &w64);
        for (name, layer) in [("lu", &lu_layer), ("plain", &plain)] {
            let (ld, ldv) = rand_tensor(&mut rng, per_sample(s.n()), -20.0, 20.0);
            let y = poisoned(s);
            let got = run_and_read(layer.forward(c, &x, &y, Some(&ld)).unwrap(), &y);
            assert_close(&format!("invconv.forward {name} {s}"), &got, &want, tol, 1e-5);
            let want_ld: Vec<f64> = ldv.iter().map(|&v| v as f64 + want_lad * s.hw() as f64).collect();
            assert_close(&format!("invconv.forward {name} logdet {s}"), &ld.to_vec(c).unwrap(), &want_ld, 1e-6, 1e-5);
            let back = poisoned(s);
            let got = run_and_read(layer.reverse(c, &y, &back, None).unwrap(), &back);
            assert_close(&format!("invconv {name} round trip {s}"), &got, &to_f64(&xv), 1e-5, 1e-5);
        }
    }
}

#[test]
fn invconv_singular_and_bad_inputs_are_errors() {
    let c = ctx();
    let mut rng = Rng::new(34);
    let cc = 6;
    let w = rng.vec(cc * cc, -1.0, 1.0);
    // Duplicate row.
    let mut dupw = w.clone();
    dupw.copy_within(0..cc, 3 * cc);
    // Row 4 = row 1 + row 2 exactly (small integers, exact in f32 and f64).
    let mut ints: Vec<f32> = (0..cc * cc).map(|_| rng.below(7) as f32 - 3.0).collect();
    for j in 0..cc {
        ints[4 * cc + j] = ints[cc + j] + ints[2 * cc + j];
    }
    for (name, m) in [("zero", vec![0.0; cc * cc]), ("duplicate row", dupw), ("dependent rows", ints)] {
        let err = InvConv::from_weight(c, &m, cc).err().unwrap_or_else(|| panic!("{name}: singular W accepted"));
        assert!(err.to_string().contains("singular"), "{name}: {err}");
    }
    assert!(InvConv::from_weight(c, &w[..cc * cc - 1], cc).is_err());
    let mut nan = w.clone();
    nan[5] = f32::NAN;
    assert!(InvConv::from_weight(c, &nan, cc).is_err());

    // Glow form: non-permutation p, zero sign.
    let eye: Vec<f32> = (0..cc * cc).map(|i| if i % (cc + 1) == 0 { 1.0 } else { 0.0 }).collect();
    let l = rng.vec(cc * cc, -0.5, 0.5);
    let u = rng.vec(cc * cc, -0.5, 0.5);
    let log_s = rng.vec(cc, -0.5, 0.5);
    let ones = vec![1.0f32; cc];
    assert!(InvConv::from_lu(c, &eye, &l, &u, &log_s, &ones, cc).is_ok());
    let mut bad_p = eye.clone();
    bad_p[1] = 1.0;
    assert!(InvConv::from_lu(c, &bad_p, &l, &u, &log_s, &ones, cc).is_err());
    let mut scaled_p = eye.clone();
    scaled_p[0] = 2.0;
    assert!(InvConv::from_lu(c, &scaled_p, &l, &u, &log_s, &ones, cc).is_err());
    let mut zero_sign = ones.clone();
    zero_sign[2] = 0.0;
    assert!(InvConv::from_lu(c, &eye, &l, &u, &log_s, &zero_sign, cc).is_err());
    assert!(InvConv::from_lu(c, &eye, &l, &u, &log_s[..cc - 1], &ones, cc).is_err());

    // Shapes.
    let layer = InvConv::from_weight(c, &w, cc).unwrap();
    let x = Tensor::empty(c, Shape::new(2, cc, 3, 4)).unwrap();
    let out = Tensor::empty(c, Shape::new(2, cc, 3, 4)).unwrap();
    let x7 = Tensor::empty(c, Shape::new(2, 7, 3, 4)).unwrap();
    let out_bad = Tensor::empty(c, Shape::new(2, cc, 4, 3)).unwrap();
    let ld_bad = Tensor::empty(c, per_sample(3)).unwrap();
    assert!(layer.forward(c, &x7, &x7.clone(), None).is_err());
    assert!(layer.forward(c, &x, &out_bad, None).is_err());
    assert!(layer.forward(c, &x, &out, Some(&ld_bad)).is_err());
    let err = layer.forward(c, &x, &x, None).unwrap_err().to_string();
    assert!(err.contains("in place"), "{err}");
}

// --------------------------------------------------------------- couplings

// The official code's literal 0.318, not 1/pi.
#[allow(clippy::approx_constant)]
fn logscale(s: f64) -> f64 {
    0.318 * (2.0 * s).atan()
}

/// Affine coupling reference: returns the output and the per-sample sum of logscale.
fn affine_ref(z: &[f32], h: &[f32], s: Shape, split: usize, reverse: bool) -> (Vec<f64>, Vec<f64>) {
    let (cc, hw) = (s.c(), s.hw());
    let c2 = cc - split;
    let mut out = to_f64(z);
    let mut sums = vec![0.0; s.n()];
    for n in 0..s.n() {
        for j in 0..c2 {
            for p in 0..hw {
                let zi = (n * cc + split + j) * hw + p;
                let shift = h[(n * 2 * c2 + 2 * j) * hw + p] as f64;
                let ls = logscale(h[(n * 2 * c2 + 2 * j + 1) * hw + p] as f64);
                out[zi] = if reverse { out[zi] * (-ls).exp() - shift } else { (out[zi] + shift) * ls.exp() };
                sums[n] += ls;
            }
        }
    }
    (out, sums)
}

fn check_affine(rng: &mut Rng, s: Shape, split: usize, label: &str) {
    let c = ctx();
    let hs = Shape::new(s.n(), 2 * (s.c() - split), s.h(), s.w());
    let (z, zv) = rand_tensor(rng, s, -2.0, 2.0);
    let (h, hv) = rand_tensor(rng, hs, -2.0, 2.0);
    let (ld, ldv) = rand_tensor(rng, per_sample(s.n()), -20.0, 20.0);
    // f32 tree sum of M logscales of size < 0.5: error ~ eps * sqrt(M) * 0.5.
    let m = ((s.c() - split) * s.hw()) as f64;
    let ld_tol = 1e-6 * m.sqrt();

    let y = poisoned(s);
    let got = run_and_read(coupling::affine_forward(c, &z, &h, &y, Some(&ld), &partials_for(c, &z), split).unwrap(), &y);
    let (want, sums) = affine_ref(&zv, &hv, s, split, false);
    assert_close(&format!("{label}.forward {s}"), &got, &want, 1e-6, 1e-5);
    let want_ld: Vec<f64> = ldv.iter().zip(&sums).map(|(&v, t)| v as f64 + t).collect();
    assert_close(&format!("{label}.forward logdet {s}"), &ld.to_vec(c).unwrap(), &want_ld, ld_tol, 1e-5);

    let r = poisoned(s);
    let got = run_and_read(coupling::affine_reverse(c, &z, &h, &r, None, &partials_for(c, &z), split).unwrap(), &r);
    let (want, _) = affine_ref(&zv, &hv, s, split, true);
    assert_close(&format!("{label}.reverse {s}"), &got, &want, 1e-6, 1e-5);

    let back = poisoned(s);
    let got = run_and_read(coupling::affine_reverse(c, &y, &h, &back, Some(&ld), &partials_for(c, &y), split).unwrap(), &back);
    assert_close(&format!("{label} round trip {s}"), &got, &to_f64(&zv), 1e-5, 1e-5);
    assert_close(&format!("{label} round trip logdet {s}"), &ld.to_vec(c).unwrap(), &to_f64(&ldv), ld_tol, 1e-5);

    // In place, with and without a logdet.
    let t = dup(&zv, s);
    let (ld2, _) = rand_tensor(rng, per_sample(s.n()), -1.0, 1.0);
    run(coupling::affine_forward(c, &t, &h, &t, Some(&ld2), &partials_for(c, &t), split).unwrap());
    assert_exact(&format!("{label}.forward in place {s}"), &t.to_vec(c).unwrap(), &y.to_vec(c).unwrap());
    run(coupling::affine_reverse(c, &t, &h, &t, None, &partials_for(c, &t), split).unwrap());
    assert_close(&format!("{label} in-place round trip {s}"), &t.to_vec(c).unwrap(), &to_f64(&zv), 1e-5, 1e-5);
}

#[test]
fn affine_coupling_half_split() {
    // AffineCoupling: split = C / 2 (floor), so C = 7 puts 3 channels in z1, 4 in z2.
    let mut rng = Rng::new(41);
    for s in [Shape::new(2, 7, 5, 7), Shape::new(2, 12, 16, 16)] {
        check_affine(&mut rng, s, s.c() / 2, "coupling.affine");
    }
}

#[test]
fn affine3shift_couplings() {
    // Even steps: z1 = first 3 channels, affine on the rest.
    let mut rng = Rng::new(42);
    for s in [Shape::new(2, 12, 5, 7), Shape::new(2, 9, 16, 16)] {
        check_affine(&mut rng, s, 3, "coupling.affine3");
    }
    // Odd steps: additive shift of the first 3 channels.
    let c = ctx();
    for s in [Shape::new(2, 12, 5, 7), Shape::new(2, 9, 16, 16)] {
        let (z, zv) = rand_tensor(&mut rng, s, -2.0, 2.0);
        let (sh, shv) = rand_tensor(&mut rng, Shape::new(s.n(), 3, s.h(), s.w()), -2.0, 2.0);
        let reference = |sign: f32| -> Vec<f32> {
            zv.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let (q, p) = (i / s.hw(), i % s.hw());
                    let (ch, n) = (q % s.c(), q / s.c());
                    if ch < 3 {
                        v + sign * shv[(n * 3 + ch) * s.hw() + p]
                    } else {
                        v
                    }
                })
                .collect()
        };
        let y = poisoned(s);
        let fwd = run_and_read(coupling::additive_forward(c, &z, &sh, &y).unwrap(), &y);
        // One f32 add per element, correctly rounded on both sides.
        assert_exact(&format!("coupling.additive_forward {s}"), &fwd, &reference(1.0));
        let r = poisoned(s);
        let got = run_and_read(coupling::additive_reverse(c, &z, &sh, &r).unwrap(), &r);
        assert_exact(&format!("coupling.additive_reverse {s}"), &got, &reference(-1.0));
        let back = poisoned(s);
        let got = run_and_read(coupling::additive_reverse(c, &y, &sh, &back).unwrap(), &back);
        assert_close(&format!("coupling.additive round trip {s}"), &got, &to_f64(&zv), 1e-6, 1e-6);
        let t = dup(&zv, s);
        run(vec![coupling::additive_forward(c, &t, &sh, &t).unwrap()]);
        assert_exact(&format!("coupling.additive_forward in place {s}"), &t.to_vec(c).unwrap(), &fwd);
        run(vec![coupling::additive_reverse(c, &t, &sh, &t).unwrap()]);
        assert_close(&format!("coupling.additive in-place round trip {s}"), &t.to_vec(c).unwrap(), &to_f64(&zv), 1e-6, 1e-6);
    }
}

// ------------------------------------------------------ split-off Gaussian

fn gauss_params(h: &[f32], s: Shape, n: usize, ch: usize, p: usize, scale: GaussianScale) -> (f64, f64) {
    let base = (n * 2 * s.c() + 2 * ch) * s.hw() + p;
    let mean = h[base] as f64;
    let v = h[base + s.hw()] as f64;
    let logs = match scale {
        GaussianScale::Logs => v,
        GaussianScale::Atan => logscale(v),
    };
    (mean, logs)
}

#[test]
fn gaussian_sample_normalize_logp() {
    let c = ctx();
    let mut rng = Rng::new(51);
    for s in [Shape::new(2, 5, 5, 7), Shape::new(2, 6, 16, 16)] {
        for scale in [GaussianScale::Logs, GaussianScale::Atan] {
            let hs = Shape::new(s.n(), 2 * s.c(), s.h(), s.w());
            let (h, hv) = rand_tensor(&mut rng, hs, -1.0, 1.0);
            let (x, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
            let heat = 0.8f32;
            let mut want_sample = vec![0.0; s.numel()];
            let mut want_norm = vec![0.0; s.numel()];
            let mut want_logp = vec![0.0; s.n()];
            for i in 0..s.numel() {
                let (q, p) = (i / s.hw(), i % s.hw());
                let (ch, n) = (q % s.c(), q / s.c());
                let (mean, logs) = gauss_params(&hv, s, n, ch, p, scale);
                let xi = xv[i] as f64;
                want_sample[i] = mean + logs.exp() * xi * heat as f64;
                want_norm[i] = (xi - mean) * (-logs).exp();
                want_logp[n] += -0.5 * (2.0 * logs + (xi - mean).powi(2) / (2.0 * logs).exp() + LOG_2PI);
            }
            let out = poisoned(s);
            let got = run_and_read(coupling::gaussian_sample(c, &h, &x, heat, &out, scale).unwrap(), &out);
            assert_close(&format!("coupling.gaussian_sample {scale:?} {s}"), &got, &want_sample, 1e-6, 1e-5);

            let out = poisoned(s);
            let got = run_and_read(coupling::gaussian_normalize(c, &x, &h, &out, scale).unwrap(), &out);
            assert_close(&format!("coupling.gaussian_normalize {scale:?} {s}"), &got, &want_norm, 1e-6, 1e-5);

            let (ld, ldv) = rand_tensor(&mut rng, per_sample(s.n()), -20.0, 20.0);
            let got = run_and_read(coupling::gaussian_logp(c, &x, &h, &ld, &partials_for(c, &x), scale).unwrap(), &ld);
            let want: Vec<f64> = ldv.iter().zip(&want_logp).map(|(&v, t)| v as f64 + t).collect();
            // Terms of size up to ~30 summed over M elements in f32.
            let m = s.numel() as f64 / s.n() as f64;
            assert_close(&format!("coupling.gaussian_logp {scale:?} {s}"), &got, &want, 1e-5 * m.sqrt(), 1e-5);
        }
    }
    // heat = 0 gives the mean exactly.
    let s = Shape::new(2, 3, 4, 5);
    let (h, hv) = rand_tensor(&mut rng, Shape::new(2, 6, 4, 5), -1.0, 1.0);
    let (eps, _) = rand_tensor(&mut rng, s, -2.0, 2.0);
    let out = poisoned(s);
    let got = run_and_read(coupling::gaussian_sample(c, &h, &eps, 0.0, &out, GaussianScale::Logs).unwrap(), &out);
    let means: Vec<f32> =
        (0..s.numel()).map(|i| hv[((i / s.hw() / 3) * 6 + 2 * ((i / s.hw()) % 3)) * s.hw() + i % s.hw()]).collect();
    assert_exact("coupling.gaussian_sample heat 0", &got, &means);
}

// ---------------------------------------------------------------- errors

#[test]
fn flow_bad_shapes_are_errors() {
    let c = ctx();
    let e = |s: Shape| Tensor::empty(c, s).unwrap();
    let z = e(Shape::new(2, 7, 3, 4));
    let out = e(Shape::new(2, 7, 3, 4));
    let h_ok = e(Shape::new(2, 8, 3, 4));
    let ld = e(per_sample(2));

    // ActNorm.
    assert!(ActNorm::new(c, &[0.0; 3], &[0.0; 4]).is_err());
    assert!(ActNorm::new(c, &[], &[]).is_err());
    assert!(ActNorm::new(c, &[0.0; 2], &[f32::NAN, 0.0]).is_err());
    let an = ActNorm::new(c, &[0.1; 7], &[0.2; 7]).unwrap();
    let err = an.forward(c, &e(Shape::new(2, 6, 3, 4)), &e(Shape::new(2, 6, 3, 4)), None).unwrap_err().to_string();
    assert!(err.contains("channels"), "{err}");
    assert!(an.forward(c, &z, &e(Shape::new(2, 7, 4, 3)), None).is_err());
    assert!(an.reverse(c, &z, &out, Some(&e(Shape::new(2, 1, 1, 2)))).is_err());
    assert!(an.forward(c, &z, &out, Some(&ld)).is_ok());

    // Affine coupling.
    assert!(coupling::affine_forward(c, &z, &h_ok, &out, Some(&ld), &partials_for(c, &z), 3).is_ok());
    let err = coupling::affine_forward(c, &z, &e(Shape::new(2, 7, 3, 4)), &out, None, &partials_for(c, &z), 3).unwrap_err().to_string();
    assert!(err.contains("net output"), "{err}");
    assert!(coupling::affine_forward(c, &z, &e(Shape::new(2, 8, 4, 3)), &out, None, &partials_for(c, &z), 3).is_err());
    assert!(coupling::affine_forward(c, &z, &e(Shape::new(1, 8, 3, 4)), &out, None, &partials_for(c, &z), 3).is_err());
    assert!(coupling::affine_forward(c, &z, &h_ok, &out, None, &partials_for(c, &z), 0).is_err());
    assert!(coupling::affine_forward(c, &z, &h_ok, &out, None, &partials_for(c, &z), 7).is_err());
    assert!(coupling::affine_reverse(c, &z, &h_ok, &out, Some(&e(per_sample(3))), &partials_for(c, &z), 3).is_err());
    assert!(coupling::affine_forward(c, &z, &h_ok, &h_ok, None, &partials_for(c, &z), 3).is_err());
    assert!(coupling::affine_forward(c, &z, &h_ok, &e(Shape::new(2, 7, 3, 5)), None, &partials_for(c, &z), 3).is_err());

    // Additive.
    assert!(coupling::additive_forward(c, &z, &e(Shape::new(2, 3, 3, 4)), &out).is_ok());
    assert!(coupling::additive_forward(c, &z, &e(Shape::new(2, 7, 3, 4)), &out).is_err());
    assert!(coupling::additive_reverse(c, &z, &e(Shape::new(2, 3, 4, 4)), &out).is_err());

    // Gaussian.
    let x = e(Shape::new(2, 4, 3, 4));
    let xo = e(Shape::new(2, 4, 3, 4));
    assert!(coupling::gaussian_sample(c, &h_ok, &x, 1.0, &xo, GaussianScale::Logs).is_ok());
    assert!(coupling::gaussian_sample(c, &h_ok, &z, 1.0, &out, GaussianScale::Logs).is_err());
    assert!(coupling::gaussian_sample(c, &h_ok, &x, f32::NAN, &xo, GaussianScale::Logs).is_err());
    assert!(coupling::gaussian_sample(c, &h_ok, &x, 1.0, &x, GaussianScale::Logs).is_err());
    assert!(coupling::gaussian_normalize(c, &x, &e(Shape::new(2, 6, 3, 4)), &xo, GaussianScale::Atan).is_err());
    assert!(coupling::gaussian_logp(c, &x, &h_ok, &e(per_sample(1)), &partials_for(c, &x), GaussianScale::Logs).is_err());
    assert!(coupling::gaussian_logp(c, &x, &h_ok, &ld, &partials_for(c, &x), GaussianScale::Atan).is_ok());
}
