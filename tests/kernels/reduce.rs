use crate::common::*;
use wgsr::ops::reduce;
use wgsr::{Shape, Tensor};

fn per_sample_sums(x: &[f32], n: usize) -> Vec<f64> {
    let m = x.len() / n;
    (0..n).map(|i| x[i * m..(i + 1) * m].iter().map(|&v| v as f64).sum()).collect()
}

// Per-sample element counts below, at, and well above one 1024-element chunk
// (several partials per sample, the last one partial).
const SHAPES: [Shape; 3] = [Shape::new(2, 3, 5, 7), Shape::new(3, 1, 32, 32), Shape::new(2, 13, 33, 35)];

#[test]
fn sum_per_sample_matches_f64() {
    let c = ctx();
    let mut rng = Rng::new(11);
    for s in SHAPES {
        let (x, xv) = rand_tensor(&mut rng, s, -1.0, 1.0);
        let out = poisoned(Shape::new(s.n(), 1, 1, 1));
        let got = run_and_read(reduce::sum_per_sample(c, &x, &out, &partials_for(c, &x)).unwrap(), &out);
        let m = (s.numel() / s.n()) as f64;
        // f32 tree sum of m terms in [-1, 1]: error grows like eps * sqrt(m).
        assert_close(&format!("reduce.sum_per_sample {s}"), &got, &per_sample_sums(&xv, s.n()), 1e-6 * m.sqrt(), 1e-5);
    }
}

#[test]
fn accumulate_sum_adds_scaled_total() {
    let c = ctx();
    let mut rng = Rng::new(12);
    let s = Shape::new(2, 13, 33, 35);
    let (x, xv) = rand_tensor(&mut rng, s, -1.0, 1.0);
    let (acc, accv) = rand_tensor(&mut rng, Shape::new(2, 1, 1, 1), -50.0, 50.0);
    let got = run_and_read(reduce::accumulate_sum_per_sample(c, &x, &acc, &partials_for(c, &x), -0.75).unwrap(), &acc);
    let want: Vec<f64> = per_sample_sums(&xv, 2).iter().zip(&accv).map(|(t, &a)| a as f64 - 0.75 * t).collect();
    let m = (s.numel() / 2) as f64;
    assert_close("reduce.accumulate_sum_per_sample", &got, &want, 1e-6 * m.sqrt(), 1e-5);
}

#[test]
fn reductions_are_deterministic() {
    let c = ctx();
    let mut rng = Rng::new(13);
    let s = Shape::new(2, 13, 33, 35);
    let (x, _) = rand_tensor(&mut rng, s, -1.0, 1.0);
    let out = poisoned(Shape::new(2, 1, 1, 1));
    let d = reduce::sum_per_sample(c, &x, &out, &partials_for(c, &x)).unwrap();
    let first = run_and_read(d, &out);
    for _ in 0..3 {
        let again = run_and_read(reduce::sum_per_sample(c, &x, &out, &partials_for(c, &x)).unwrap(), &out);
        assert_exact("reduce.sum_per_sample repeat", &again, &first);
    }
}

#[test]
fn add_scalar_inplace_adds() {
    let c = ctx();
    let mut rng = Rng::new(14);
    for s in [Shape::new(2, 1, 1, 1), Shape::new(1, 3, 17, 19)] {
        let (t, tv) = rand_tensor(&mut rng, s, -10.0, 10.0);
        let got = run_and_read(reduce::add_scalar_inplace(c, &t, 2.625).unwrap(), &t);
        let want: Vec<f32> = tv.iter().map(|&v| v + 2.625).collect();
        // f32 addition is exactly rounded: the kernel must match bit for bit.
        assert_exact("reduce.add_scalar_inplace", &got, &want);
    }
}

#[test]
fn bad_arguments_are_errors() {
    let c = ctx();
    let x = Tensor::empty(c, Shape::new(2, 3, 4, 5)).unwrap();
    let wrong_n = Tensor::empty(c, Shape::new(3, 1, 1, 1)).unwrap();
    let wrong_shape = Tensor::empty(c, Shape::new(2, 1, 1, 2)).unwrap();
    let ok = Tensor::empty(c, Shape::new(2, 1, 1, 1)).unwrap();
    for out in [&wrong_n, &wrong_shape] {
        let err = reduce::sum_per_sample(c, &x, out, &partials_for(c, &x)).unwrap_err().to_string();
        assert!(err.contains("per-sample"), "{err}");
    }
    assert!(reduce::sum_per_sample(c, &ok, &ok, &partials_for(c, &ok)).is_err(), "aliased input/output must be rejected");
    assert!(reduce::accumulate_sum_per_sample(c, &x, &ok, &partials_for(c, &x), f32::NAN).is_err());
    assert!(reduce::add_scalar_inplace(c, &ok, f32::INFINITY).is_err());
    let bad_partials = Tensor::empty(c, Shape::new(2, 2, 1, 3)).unwrap();
    assert!(reduce::finish_partials(c, &bad_partials, &ok, 1.0, true).is_err());
}
