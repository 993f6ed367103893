//! ops::probe (the bench's roofline probes) compute what they claim: the
//! multiply-add chains against an f64 replay, the copy exactly.

use wgsr::ops::probe;
use wgsr::Shape;

use crate::common::*;

#[test]
fn probes_compute_their_reference() {
    let c = ctx();
    let n = 1000; // vec4 threads, not a multiple of the workgroup size
    let out = poisoned(Shape::new(1, 1, n, 4));
    let iters = 13;
    let got = run_and_read(probe::fma_peak(c, &out, iters).unwrap(), &out);
    let (a, b) = (0.999f32 as f64, 0.001f32 as f64);
    let want: Vec<f64> = (0..n)
        .flat_map(|i| {
            let s = (i as f32 * 1e-9) as f64;
            (0..4).map(move |lane| {
                (0..8)
                    .map(|chain| {
                        let mut v = s + lane as f64 + 0.1 * chain as f64;
                        for _ in 0..iters {
                            v = v * a + b;
                        }
                        v
                    })
                    .sum::<f64>()
            })
        })
        .collect();
    assert_close("probe.fma_peak", &got, &want, 1e-4, 1e-5);
    let mut rng = Rng::new(5);
    let (x, xv) = rand_tensor(&mut rng, Shape::new(1, 1, 37, 4), -1.0, 1.0);
    let y = poisoned(Shape::new(1, 1, 37, 4));
    assert_exact("probe.copy_peak", &run_and_read(probe::copy_peak(c, &x, &y).unwrap(), &y), &xv);
}
