use crate::common::*;
use wgsr::ops::elementwise;
use wgsr::Shape;

// Odd sizes so the last workgroup is partial.
const SHAPES: [Shape; 2] = [Shape::new(1, 3, 5, 7), Shape::new(2, 13, 17, 19)];

#[test]
fn axpby_mul_affine_clamp() {
    let c = ctx();
    let mut rng = Rng::new(1);
    for s in SHAPES {
        let (a, av) = rand_tensor(&mut rng, s, -2.0, 2.0);
        let (b, bv) = rand_tensor(&mut rng, s, -2.0, 2.0);

        let out = poisoned(s);
        let got = run_and_read(elementwise::axpby(c, &a, &b, &out, 0.7, -1.3).unwrap(), &out);
        let want: Vec<f64> = av.iter().zip(&bv).map(|(&x, &y)| 0.7f32 as f64 * x as f64 + (-1.3f32) as f64 * y as f64).collect();
        assert_close("elementwise.axpby", &got, &want, 1e-6, 1e-5);

        let out = poisoned(s);
        let got = run_and_read(elementwise::mul(c, &a, &b, &out, 1.5).unwrap(), &out);
        let want: Vec<f64> = av.iter().zip(&bv).map(|(&x, &y)| 1.5 * x as f64 * y as f64).collect();
        assert_close("elementwise.mul", &got, &want, 1e-6, 1e-5);

        let out = poisoned(s);
        let got = run_and_read(elementwise::affine(c, &a, &out, -0.25, 0.5).unwrap(), &out);
        let want: Vec<f64> = av.iter().map(|&x| -0.25 * x as f64 + 0.5).collect();
        assert_close("elementwise.affine", &got, &want, 1e-6, 1e-5);

        let out = poisoned(s);
        let got = run_and_read(elementwise::fill(c, &out, -3.25).unwrap(), &out);
        assert_close("elementwise.fill", &got, &vec![-3.25; s.numel()], 0.0, 0.0);

        let out = poisoned(s);
        let got = run_and_read(elementwise::clamp(c, &a, &out, -0.5, 0.75).unwrap(), &out);
        let want: Vec<f64> = av.iter().map(|&x| (x as f64).clamp(-0.5, 0.75)).collect();
        assert_close("elementwise.clamp", &got, &want, 0.0, 0.0);
    }
}

#[test]
fn shape_mismatch_is_an_error() {
    let c = ctx();
    let a = wgsr::Tensor::empty(c, Shape::new(1, 2, 3, 4)).unwrap();
    let b = wgsr::Tensor::empty(c, Shape::new(1, 2, 3, 5)).unwrap();
    let out = wgsr::Tensor::empty(c, Shape::new(1, 2, 3, 4)).unwrap();
    let err = elementwise::add(c, &a, &b, &out).unwrap_err().to_string();
    assert!(err.contains("shapes differ"), "{err}");
}

#[test]
fn add_channel_bias_broadcasts_over_hw() {
    let c = ctx();
    let mut rng = Rng::new(2);
    for s in SHAPES.into_iter().chain([Shape::new(3, 5, 1, 1)]) {
        let (x, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
        let (b, bv) = rand_tensor(&mut rng, Shape::new(s.n(), s.c(), 1, 1), -1.0, 1.0);
        for alpha in [1.0f32, -0.75] {
            let out = poisoned(s);
            let got = run_and_read(elementwise::add_channel_bias(c, &x, &b, &out, alpha).unwrap(), &out);
            let want: Vec<f64> = xv.iter().enumerate().map(|(i, &v)| v as f64 + alpha as f64 * bv[i / s.hw()] as f64).collect();
            assert_close("elementwise.add_channel_bias", &got, &want, 1e-6, 1e-6);
        }
    }
    let x = wgsr::Tensor::empty(c, Shape::new(2, 3, 4, 4)).unwrap();
    let bad = wgsr::Tensor::empty(c, Shape::new(1, 3, 1, 1)).unwrap();
    let out = wgsr::Tensor::empty(c, Shape::new(2, 3, 4, 4)).unwrap();
    let err = elementwise::add_channel_bias(c, &x, &bad, &out, 1.0).unwrap_err().to_string();
    assert!(err.contains("one value per (sample, channel)"), "{err}");
}

#[test]
fn gate_is_tanh_times_sigmoid_of_the_two_halves() {
    let c = ctx();
    let mut rng = Rng::new(3);
    // odd sizes, batch 2, and values large enough to saturate tanh / sigmoid
    for (s, range) in [(Shape::new(2, 26, 17, 19), 3.0), (Shape::new(1, 6, 5, 7), 40.0), (Shape::new(3, 2, 1, 1), 1.0)] {
        let (x, xv) = rand_tensor(&mut rng, s, -range, range);
        let os = Shape::new(s.n(), s.c() / 2, s.h(), s.w());
        let out = poisoned(os);
        let got = run_and_read(elementwise::gate(c, &x, &out).unwrap(), &out);
        let (oc, hw) = (os.c(), os.hw());
        let want: Vec<f64> = (0..os.numel())
            .map(|i| {
                let (n, r) = (i / (oc * hw), i % (oc * hw));
                let t = xv[n * 2 * oc * hw + r] as f64;
                let g = xv[n * 2 * oc * hw + oc * hw + r] as f64;
                t.tanh() / (1.0 + (-g).exp())
            })
            .collect();
        // a few exp/div roundings in f32: ~1e-7 relative each
        assert_close("elementwise.gate", &got, &want, 1e-6, 1e-5);
    }
    let x = wgsr::Tensor::empty(c, Shape::new(1, 5, 2, 2)).unwrap();
    let out = wgsr::Tensor::empty(c, Shape::new(1, 2, 2, 2)).unwrap();
    assert!(elementwise::gate(c, &x, &out).unwrap_err().to_string().contains("2C channels"));
}
