use crate::common::*;
use wgsr::ops::{rng, softmax};
use wgsr::{Shape, Tensor};

/// (shape, groups): PixelCNN's 3 x 256 and a small odd single-group case.
/// H, W odd and not multiples of the pixels-per-workgroup tile; N = 2.
const CASES: [(Shape, usize); 2] = [(Shape::new(2, 768, 5, 3), 3), (Shape::new(2, 7, 9, 11), 1)];
const TEMPS: [f32; 3] = [1.0, 0.7, 2.5];

/// Element index of channel k of group g at (n, pix).
fn at(s: Shape, groups: usize, n: usize, g: usize, k: usize, pix: usize) -> usize {
    let kk = s.c() / groups;
    (n * s.c() + g * kk + k) * s.hw() + pix
}

/// Calls f(row index in [N, G, H, W] order, element indices of the row's K channels).
fn for_rows(s: Shape, groups: usize, mut f: impl FnMut(usize, Vec<usize>)) {
    let kk = s.c() / groups;
    for n in 0..s.n() {
        for g in 0..groups {
            for pix in 0..s.hw() {
                let row = (n * groups + g) * s.hw() + pix;
                f(row, (0..kk).map(|k| at(s, groups, n, g, k, pix)).collect());
            }
        }
    }
}

/// f64 softmax of x / t (t > 0) over each row; log_softmax if `log`.
fn ref_softmax(x: &[f32], s: Shape, groups: usize, t: f64, log: bool) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    for_rows(s, groups, |_, idx| {
        let z: Vec<f64> = idx.iter().map(|&i| x[i] as f64 / t).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v - m).exp()).sum();
        for (&i, v) in idx.iter().zip(&z) {
            out[i] = if log { (v - m) - sum.ln() } else { (v - m).exp() / sum };
        }
    });
    out
}

/// f64 argmax per row, ties to the smallest k.
fn ref_argmax(x: &[f32], s: Shape, groups: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; x.len() / (s.c() / groups)];
    for_rows(s, groups, |row, idx| {
        let mut best = 0;
        for (k, &i) in idx.iter().enumerate() {
            if x[i] > x[idx[best]] {
                best = k;
            }
        }
        out[row] = best as f32;
    });
    out
}

/// Inverse-CDF reference in f64: Some(k) with k = min{k : cdf_k > u}, or None
/// when u is within 1e-5 of a CDF boundary (f32 rounding could go either way).
fn ref_sample(x: &[f32], u: &[f32], s: Shape, groups: usize, t: f64) -> Vec<Option<usize>> {
    let p = ref_softmax(x, s, groups, t, false);
    let mut out = vec![None; u.len()];
    for_rows(s, groups, |row, idx| {
        let u = u[row] as f64;
        let mut cdf = 0.0;
        let mut pick = None;
        let mut near = false;
        for (k, &i) in idx.iter().enumerate() {
            cdf += p[i];
            if k + 1 < idx.len() && (cdf - u).abs() < 1e-5 {
                near = true;
            }
            if pick.is_none() && cdf > u {
                pick = Some(k);
            }
        }
        out[row] = if near { None } else { Some(pick.unwrap_or(idx.len() - 1)) };
    });
    out
}

fn row_shape(s: Shape, groups: usize) -> Shape {
    Shape::new(s.n(), groups, s.h(), s.w())
}

fn run_sample(logits: &Tensor, u: &Tensor, groups: usize, t: f32) -> Vec<f32> {
    let out = poisoned(u.shape());
    run_and_read(softmax::sample_categorical(ctx(), logits, u, &out, groups, t).unwrap(), &out)
}

/// Compare sampled indices with the reference; returns (checked, skipped).
fn check_samples(name: &str, got: &[f32], want: &[Option<usize>]) -> (usize, usize) {
    let mut skipped = 0;
    for (i, (&g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite() && g >= 0.0 && g.fract() == 0.0, "{name}: row {i} = {g} is not an index");
        match w {
            Some(k) => assert_eq!(g as usize, *k, "{name}: row {i}"),
            None => skipped += 1,
        }
    }
    println!("max_err {name}: exact ({} rows, {skipped} skipped near a CDF boundary)", got.len());
    // A row is skipped with probability <= 2e-5 * (K - 1) (< 0.6% for the K
    // used here); allow 2% plus one for the small cases.
    assert!(skipped <= 1 + got.len() / 50, "{name}: {skipped} of {} rows skipped", got.len());
    (got.len() - skipped, skipped)
}

#[test]
fn softmax_and_log_softmax_match_reference() {
    let c = ctx();
    let mut rng = Rng::new(21);
    for (s, groups) in CASES {
        let (x, xv) = rand_tensor(&mut rng, s, -4.0, 4.0);
        for t in TEMPS {
            let out = poisoned(s);
            let got = run_and_read(softmax::softmax(c, &x, &out, t, groups).unwrap(), &out);
            let want = ref_softmax(&xv, s, groups, t as f64, false);
            assert_close(&format!("softmax {s} g={groups} T={t}"), &got, &want, 1e-6, 1e-5);
        }
        let out = poisoned(s);
        let got = run_and_read(softmax::log_softmax(c, &x, &out, groups).unwrap(), &out);
        let want = ref_softmax(&xv, s, groups, 1.0, true);
        assert_close(&format!("log_softmax {s} g={groups}"), &got, &want, 1e-6, 1e-5);
    }
}

#[test]
fn groups_are_normalised_independently() {
    // 3 groups of 5 over C = 15, with a different offset per group: each group
    // must sum to 1 on its own (a kernel normalising all 15 would not).
    let c = ctx();
    let s = Shape::new(2, 15, 3, 5);
    let mut rng = Rng::new(22);
    let mut xv = rng.vec(s.numel(), -1.0, 1.0);
    for_rows(s, 3, |row, idx| {
        let g = (row / s.hw()) % 3;
        for i in idx {
            xv[i] += 5.0 * g as f32;
        }
    });
    let x = Tensor::from_slice(c, s, &xv).unwrap();
    let out = poisoned(s);
    let got = run_and_read(softmax::softmax(c, &x, &out, 1.0, 3).unwrap(), &out);
    assert_close("softmax groups=3 K=5", &got, &ref_softmax(&xv, s, 3, 1.0, false), 1e-6, 1e-5);
    let mut sums = vec![0.0f64; s.n() * 3 * s.hw()];
    for_rows(s, 3, |row, idx| sums[row] = idx.iter().map(|&i| got[i] as f64).sum());
    let sums: Vec<f32> = sums.iter().map(|&v| v as f32).collect();
    assert_close("softmax group sums", &sums, &vec![1.0; sums.len()], 1e-6, 0.0);
}

#[test]
fn uneven_chunks_and_empty_threads() {
    // K = 264 splits over 32 threads in chunks of 9, leaving the last threads
    // of each row with no channels; K = 100 gives 8 threads with a short last
    // chunk. Every op must still cover every channel and every row.
    let c = ctx();
    let mut rng = Rng::new(27);
    for (s, groups) in [(Shape::new(1, 528, 3, 5), 2), (Shape::new(2, 300, 1, 3), 3)] {
        let (x, xv) = rand_tensor(&mut rng, s, -4.0, 4.0);
        let out = poisoned(s);
        let got = run_and_read(softmax::softmax(c, &x, &out, 0.7, groups).unwrap(), &out);
        assert_close(
            &format!("softmax {s} g={groups} T=0.7"),
            &got,
            &ref_softmax(&xv, s, groups, 0.7, false),
            1e-6,
            1e-5,
        );
        let out = poisoned(s);
        let got = run_and_read(softmax::log_softmax(c, &x, &out, groups).unwrap(), &out);
        assert_close(&format!("log_softmax {s} g={groups}"), &got, &ref_softmax(&xv, s, groups, 1.0, true), 1e-6, 1e-5);
        let rs = row_shape(s, groups);
        let out = poisoned(rs);
        let got = run_and_read(softmax::argmax(c, &x, &out, groups).unwrap(), &out);
        assert_exact(&format!("argmax {s} g={groups}"), &got, &ref_argmax(&xv, s, groups));
        // Uniforms near 1 land in the last (possibly short) chunk.
        for seed in [1u64, 2, 3] {
            let mut uv = rng::host_uniform(seed, 0, rs.numel());
            uv[0] = 1.0 - 2f32.powi(-24);
            let u = Tensor::from_slice(c, rs, &uv).unwrap();
            let got = run_sample(&x, &u, groups, 1.0);
            check_samples(&format!("sample {s} g={groups} seed {seed}"), &got, &ref_sample(&xv, &uv, s, groups, 1.0));
        }
    }
}

#[test]
fn large_logits_do_not_overflow() {
    let c = ctx();
    let mut rng = Rng::new(23);
    for (s, groups) in CASES {
        for (lo, hi) in [(-1000.0, 1000.0), (995.0, 1005.0)] {
            let (x, xv) = rand_tensor(&mut rng, s, lo, hi);
            let out = poisoned(s);
            let got = run_and_read(softmax::softmax(c, &x, &out, 0.7, groups).unwrap(), &out);
            assert_close(
                &format!("softmax big [{lo},{hi}] {s}"),
                &got,
                &ref_softmax(&xv, s, groups, 0.7, false),
                1e-6,
                1e-5,
            );
            let out = poisoned(s);
            let got = run_and_read(softmax::log_softmax(c, &x, &out, groups).unwrap(), &out);
            assert_close(
                &format!("log_softmax big [{lo},{hi}] {s}"),
                &got,
                &ref_softmax(&xv, s, groups, 1.0, true),
                1e-6,
                1e-5,
            );
            let rs = row_shape(s, groups);
            let uv = rng::host_uniform(lo.to_bits(), 0, rs.numel());
            let u = Tensor::from_slice(c, rs, &uv).unwrap();
            let got = run_sample(&x, &u, groups, 1.0);
            check_samples(&format!("sample big [{lo},{hi}] {s}"), &got, &ref_sample(&xv, &uv, s, groups, 1.0));
        }
    }
}

#[test]
fn sampling_matches_reference() {
    let c = ctx();
    let mut rng = Rng::new(24);
    // More pixels than CASES so the comparison covers many rows.
    for (s, groups) in [(Shape::new(2, 768, 9, 7), 3), (Shape::new(2, 7, 19, 21), 1)] {
        let (x, xv) = rand_tensor(&mut rng, s, -4.0, 4.0);
        let rs = row_shape(s, groups);
        for (i, t) in TEMPS.into_iter().enumerate() {
            let uv = rng::host_uniform(100 + i as u64, 0, rs.numel());
            let u = Tensor::from_slice(c, rs, &uv).unwrap();
            let got = run_sample(&x, &u, groups, t);
            check_samples(&format!("sample {s} g={groups} T={t}"), &got, &ref_sample(&xv, &uv, s, groups, t as f64));
        }
    }
}

#[test]
fn greedy_and_tiny_temperature_equal_argmax() {
    let c = ctx();
    let mut rng = Rng::new(25);
    for (s, groups) in CASES {
        let rs = row_shape(s, groups);
        let uv = rng::host_uniform(5, 0, rs.numel());
        let u = Tensor::from_slice(c, rs, &uv).unwrap();

        // Integer logits in [-4, 4] make ties common: the smallest k must win.
        let xv: Vec<f32> = (0..s.numel()).map(|_| (rng.below(9) as f32) - 4.0).collect();
        let x = Tensor::from_slice(c, s, &xv).unwrap();
        let want = ref_argmax(&xv, s, groups);
        assert_exact(&format!("sample T=0 ties {s}"), &run_sample(&x, &u, groups, 0.0), &want);
        let out = poisoned(rs);
        let got = run_and_read(softmax::argmax(c, &x, &out, groups).unwrap(), &out);
        assert_exact(&format!("argmax ties {s}"), &got, &want);

        // T = 1e-3: each row holds the K distinct values -4 + (8/K) j in a
        // random order, so the runner-up is 8/K below the maximum and carries
        // at most exp(-8 / (K * 1e-3)) < 1e-13 of the mass: the sample must
        // be the argmax for every uniform.
        let kk = s.c() / groups;
        let mut xv = vec![0.0f32; s.numel()];
        for_rows(s, groups, |_, idx| {
            let mut perm: Vec<usize> = (0..kk).collect();
            for j in (1..kk).rev() {
                perm.swap(j, rng.below(j + 1));
            }
            for (k, &i) in idx.iter().enumerate() {
                xv[i] = -4.0 + 8.0 * perm[k] as f32 / kk as f32;
            }
        });
        let x = Tensor::from_slice(c, s, &xv).unwrap();
        let want = ref_argmax(&xv, s, groups);
        assert_exact(&format!("sample T=1e-3 {s}"), &run_sample(&x, &u, groups, 1e-3), &want);

        // T = 1e-3 on continuous logits, where the runner-up can matter: the
        // f64 inverse-CDF reference decides.
        let (x, xv) = rand_tensor(&mut rng, s, -4.0, 4.0);
        let want = ref_argmax(&xv, s, groups);
        let got = run_sample(&x, &u, groups, 1e-3);
        check_samples(&format!("sample T=1e-3 random {s}"), &got, &ref_sample(&xv, &uv, s, groups, 1e-3));

        // softmax at T = 0 is the one-hot limit (continuous logits: no ties).
        let out = poisoned(s);
        let got = run_and_read(softmax::softmax(c, &x, &out, 0.0, groups).unwrap(), &out);
        let mut onehot = vec![0.0f32; s.numel()];
        for_rows(s, groups, |row, idx| onehot[idx[want[row] as usize]] = 1.0);
        assert_exact(&format!("softmax T=0 one-hot {s}"), &got, &onehot);
    }
}

#[test]
fn temperature_can_be_rewritten_before_replay() {
    let c = ctx();
    let mut rng = Rng::new(26);
    let (s, groups) = CASES[0];
    let rs = row_shape(s, groups);
    let (x, xv) = rand_tensor(&mut rng, s, -4.0, 4.0);
    let uv = rng::host_uniform(77, 3, rs.numel());
    let u = Tensor::from_slice(c, rs, &uv).unwrap();
    let out = poisoned(rs);
    let d = softmax::sample_categorical(c, &x, &u, &out, groups, 1.0).unwrap();
    for t in [0.7f32, 2.5, 0.0] {
        softmax::set_temperature(c, &d, t).unwrap();
        c.run(std::slice::from_ref(&d)).unwrap();
        let got = out.to_vec(c).unwrap();
        if t == 0.0 {
            assert_exact("sample replay T=0", &got, &ref_argmax(&xv, s, groups));
        } else {
            check_samples(&format!("sample replay T={t}"), &got, &ref_sample(&xv, &uv, s, groups, t as f64));
        }
    }
    let y = poisoned(s);
    let d = softmax::softmax(c, &x, &y, 1.0, groups).unwrap();
    softmax::set_temperature(c, &d, 2.5).unwrap();
    c.run(std::slice::from_ref(&d)).unwrap();
    assert_close("softmax replay T=2.5", &y.to_vec(c).unwrap(), &ref_softmax(&xv, s, groups, 2.5, false), 1e-6, 1e-5);
    assert!(softmax::set_temperature(c, &d, -1.0).is_err());
    assert!(softmax::set_temperature(c, &d, f32::NAN).is_err());
}

#[test]
fn bad_arguments_are_errors() {
    let c = ctx();
    let s = Shape::new(2, 12, 3, 5);
    let x = Tensor::empty(c, s).unwrap();
    let out = Tensor::empty(c, s).unwrap();
    let rows = Tensor::empty(c, Shape::new(2, 3, 3, 5)).unwrap();
    let rows2 = Tensor::empty(c, Shape::new(2, 3, 3, 5)).unwrap();

    for groups in [0, 5, 24] {
        let e = softmax::softmax(c, &x, &out, 1.0, groups).unwrap_err().to_string();
        assert!(e.contains("groups"), "{e}");
        assert!(softmax::log_softmax(c, &x, &out, groups).is_err());
        assert!(softmax::argmax(c, &x, &rows, groups).is_err());
        assert!(softmax::sample_categorical(c, &x, &rows, &rows2, groups, 1.0).is_err());
    }
    for t in [-1.0, -1e-30, f32::NAN, f32::INFINITY] {
        let e = softmax::softmax(c, &x, &out, t, 3).unwrap_err().to_string();
        assert!(e.contains("temperature"), "{e}");
        assert!(softmax::sample_categorical(c, &x, &rows, &rows2, 3, t).is_err());
    }
    // Output / uniforms shapes.
    let wrong = Tensor::empty(c, Shape::new(2, 12, 5, 3)).unwrap();
    assert!(softmax::softmax(c, &x, &wrong, 1.0, 3).is_err());
    assert!(softmax::log_softmax(c, &x, &wrong, 1).is_err());
    let rows_g4 = Tensor::empty(c, Shape::new(2, 4, 3, 5)).unwrap();
    assert!(softmax::argmax(c, &x, &rows_g4, 3).is_err());
    assert!(softmax::sample_categorical(c, &x, &rows_g4, &rows2, 3, 1.0).is_err());
    assert!(softmax::sample_categorical(c, &x, &rows, &rows_g4, 3, 1.0).is_err());
    // The matching shapes are accepted.
    assert!(softmax::sample_categorical(c, &x, &rows, &rows2, 3, 0.5).is_ok());
    assert!(softmax::argmax(c, &x, &rows, 3).is_ok());
}
