//! Gradient kernels (kernels/grad.wgsl, elementwise quantize): the GPU
//! against f64 references written from the formulas, and those references
//! against central finite differences of f64 forward references, so the
//! formulas themselves are checked too.
//!
//! Finite differences: for each input element i, with step
//! `h_i = 1e-5 * max(|x_i|, 1)`, the VJP is
//! `sum_k dy_k * (f(x + h_i e_i)_k - f(x - h_i e_i)_k) / (2 h_i)`, the
//! output perturbation dotted with dy (outputs that do not depend on x_i
//! contribute exact zeros). Truncation error ~ h^2 |f'''| / 6 ~ 1e-10 and
//! rounding ~ 1e-16 / 1e-5 = 1e-11 relative for these smooth, O(1) functions,
//! so 1e-6 relative is a wide margin; a wrong formula is off by O(1).

use crate::common::*;
use wgsr::ops::conv::Activation;
use wgsr::ops::coupling::GaussianScale;
use wgsr::ops::{elementwise, grad};
use wgsr::{Error, Shape, Tensor};

/// Relative error tolerated between the analytic f64 reference and finite differences.
const FD_TOL: f64 = 1e-6;

// The official code's literal 0.318, not 1/pi.
#[allow(clippy::approx_constant)]
const ATAN_FACTOR: f64 = 0.318;

fn logscale(s: f64) -> f64 {
    ATAN_FACTOR * (2.0 * s).atan()
}

fn dlogscale(s: f64) -> f64 {
    ATAN_FACTOR * 2.0 / (1.0 + 4.0 * s * s)
}

fn up(v: &[f32], s: Shape) -> Tensor {
    Tensor::from_slice(ctx(), s, v).unwrap()
}

fn empty(s: Shape) -> Tensor {
    Tensor::empty(ctx(), s).unwrap()
}

/// Values with magnitude in [lo, hi) and random sign (keeps ReLU-type kinks
/// and atan's sign change well away from every finite-difference step).
fn signed(rng: &mut Rng, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    (0..n).map(|_| if rng.below(2) == 0 { rng.range(lo, hi) } else { -rng.range(lo, hi) }).collect()
}

/// Central-difference VJP of `f` at `x` against `dy` (see the module doc).
fn fd_vjp(f: impl Fn(&[f64]) -> Vec<f64>, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let h = 1e-5 * x[i].abs().max(1.0);
            xp[i] = x[i] + h;
            let plus = f(&xp);
            xp[i] = x[i] - h;
            let minus = f(&xp);
            xp[i] = x[i];
            plus.iter().zip(&minus).zip(dy).map(|((p, m), d)| d * (p - m)).sum::<f64>() / (2.0 * h)
        })
        .collect()
}

/// Max over elements of |a - b| / max(|a|, |b|) (0 where both are 0); asserts <= FD_TOL.
fn check_fd(name: &str, analytic: &[f64], fd: &[f64]) -> f64 {
    assert_eq!(analytic.len(), fd.len(), "{name}: lengths");
    let mut worst = 0.0f64;
    for (i, (&a, &f)) in analytic.iter().zip(fd).enumerate() {
        let d = a.abs().max(f.abs());
        let rel = if d == 0.0 { 0.0 } else { (a - f).abs() / d };
        assert!(rel <= FD_TOL, "{name}: element {i}: analytic {a} vs finite differences {f} (rel {rel:e})");
        worst = worst.max(rel);
    }
    println!("fd_rel_err {name}: {worst:.3e} (n={})", fd.len());
    worst
}

fn f64s(v: &[f32]) -> Vec<f64> {
    to_f64(v)
}

fn is_shape(e: Error) -> bool {
    matches!(e, Error::Shape(_))
}

fn is_arg(e: Error) -> bool {
    matches!(e, Error::InvalidArgument(_))
}

// ----------------------------------------------------------- act_grad

fn act_f(act: Activation, v: f64) -> f64 {
    match act {
        Activation::None => v,
        Activation::Relu => v.max(0.0),
        Activation::LeakyRelu(s) => {
            if v >= 0.0 {
                v
            } else {
                v * s as f64
            }
        }
        Activation::Tanh => v.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        Activation::Swish => unreachable!(),
    }
}

/// Analytic act_grad from the saved output y, as documented.
fn act_grad_ref(dy: &[f64], y: &[f64], scale: &[f64], s: Shape, act: Activation, alpha: f64) -> Vec<f64> {
    (0..dy.len())
        .map(|i| {
            let t = y[i] / alpha;
            let d = match act {
                Activation::None => 1.0,
                Activation::Relu => (t > 0.0) as u8 as f64,
                Activation::LeakyRelu(sl) => {
                    if t > 0.0 {
                        1.0
                    } else {
                        sl as f64
                    }
                }
                Activation::Tanh => 1.0 - t * t,
                Activation::Sigmoid => t * (1.0 - t),
                Activation::Swish => unreachable!(),
            };
            dy[i] * alpha * scale[(i / s.hw()) % s.c()] * d
        })
        .collect()
}

#[test]
fn act_grad_matches_reference_and_finite_differences() {
    let c = ctx();
    let mut rng = Rng::new(301);
    let acts = [Activation::None, Activation::Relu, Activation::LeakyRelu(0.2), Activation::LeakyRelu(0.0), Activation::Tanh, Activation::Sigmoid];
    let mut fd_worst = vec![0.0f64; acts.len()];
    for s in [Shape::new(2, 6, 5, 7), Shape::new(2, 7, 3, 5), Shape::new(1, 13, 17, 19)] {
        for (ai, &act) in acts.iter().enumerate() {
            for alpha in [1.0f32, 0.7] {
                for with_scale in [false, true] {
                    let label = format!("grad.act_grad {act:?} alpha {alpha} scale {with_scale} {s}");
                    // u = conv + bias, pre = u * scale[c], y = alpha * act(pre).
                    let u = f64s(&signed(&mut rng, s.numel(), 0.05, 2.0));
                    let scv: Vec<f32> = if with_scale { signed(&mut rng, s.c(), 0.5, 1.5) } else { vec![1.0; s.c()] };
                    let sc = f64s(&scv);
                    let alpha64 = alpha as f64;
                    let fwd = |u: &[f64]| -> Vec<f64> {
                        u.iter().enumerate().map(|(i, &v)| alpha64 * act_f(act, v * sc[(i / s.hw()) % s.c()])).collect()
                    };
                    let y64 = fwd(&u);
                    let yv: Vec<f32> = y64.iter().map(|&v| v as f32).collect();
                    let dyv = rng.vec(s.numel(), -1.0, 1.0);
                    let dy = f64s(&dyv);

                    // The formula against finite differences of the forward pass
                    // (small shapes only: the large one is there for the GPU).
                    if s.numel() <= 500 {
                        let analytic = act_grad_ref(&dy, &y64, &sc, s, act, alpha64);
                        let e = check_fd(&label, &analytic, &fd_vjp(fwd, &u, &dy));
                        fd_worst[ai] = fd_worst[ai].max(e);
                    }

                    // GPU against the f64 formula on the same f32 inputs.
                    // Error: t = y * (1/alpha) ~1 ulp, then 1 - t^2 or t (1 - t) lose
                    // up to ~2 eps |t| absolute, times |dy alpha scale| <= 1.5, plus
                    // ~4 ulp of products: abs 1e-6 + rel 1e-6.
                    let scale_t = with_scale.then(|| up(&scv, Shape::new(1, s.c(), 1, 1)));
                    let out = poisoned(s);
                    let d = grad::act_grad(c, &up(&dyv, s), &up(&yv, s), scale_t.as_ref(), act, alpha, &out).unwrap();
                    let got = run_and_read(d, &out);
                    let want = act_grad_ref(&dy, &f64s(&yv), &sc, s, act, alpha64);
                    assert_close(&label, &got, &want, 1e-6, 1e-6);
                }
            }
        }
    }
    for (act, e) in acts.iter().zip(&fd_worst) {
        println!("fd_table act_grad {act:?}: max rel err {e:.3e}");
    }
}

#[test]
fn act_grad_scale_of_any_shape_with_c_values() {
    let c = ctx();
    let mut rng = Rng::new(302);
    let s = Shape::new(2, 6, 4, 3);
    let (dy, dyv) = rand_tensor(&mut rng, s, -1.0, 1.0);
    let (y, yv) = rand_tensor(&mut rng, s, -1.0, 1.0);
    let scv = rng.vec(6, 0.5, 1.5);
    let want = act_grad_ref(&f64s(&dyv), &f64s(&yv), &f64s(&scv), s, Activation::LeakyRelu(0.2), 2.0);
    for ss in [Shape::new(1, 6, 1, 1), Shape::new(6, 1, 1, 1), Shape::new(1, 1, 2, 3)] {
        let out = poisoned(s);
        let got = run_and_read(grad::act_grad(c, &dy, &y, Some(&up(&scv, ss)), Activation::LeakyRelu(0.2), 2.0, &out).unwrap(), &out);
        assert_close(&format!("grad.act_grad scale {ss}"), &got, &want, 1e-6, 1e-6);
    }
}

// ----------------------------------------------------------- clamp_grad

#[test]
fn clamp_grad_masks_outside_the_range() {
    let c = ctx();
    let mut rng = Rng::new(311);
    for s in [Shape::new(2, 3, 5, 7), Shape::new(2, 13, 17, 19)] {
        for (lo, hi) in [(-0.5f32, 0.75f32), (0.0, 1.0), (0.25, 0.25), (f32::NEG_INFINITY, 0.5), (f32::NEG_INFINITY, f32::INFINITY)] {
            let mut xv = rng.vec(s.numel(), -2.0, 2.0);
            // Boundaries (inclusive), NaN (gives 0) and infinities.
            let specials = [lo, hi, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN];
            for (k, &v) in specials.iter().enumerate() {
                xv[k * 7] = v;
            }
            let (dy, dyv) = rand_tensor(&mut rng, s, -1.0, 1.0);
            let out = poisoned(s);
            let got = run_and_read(grad::clamp_grad(c, &dy, &up(&xv, s), lo, hi, &out).unwrap(), &out);
            let want: Vec<f32> = xv.iter().zip(&dyv).map(|(&x, &d)| if lo <= x && x <= hi { d } else { 0.0 }).collect();
            assert_exact(&format!("grad.clamp_grad [{lo}, {hi}] {s}"), &got, &want);
        }
    }
}

// ------------------------------------------------------ affine coupling

/// f64 forward of the affine coupling (flow.wgsl `affine`), output only.
fn affine_fwd(z: &[f64], h: &[f64], s: Shape, split: usize, reverse: bool) -> Vec<f64> {
    let (cc, hw) = (s.c(), s.hw());
    let c2 = cc - split;
    let mut out = z.to_vec();
    for n in 0..s.n() {
        for j in 0..c2 {
            for p in 0..hw {
                let zi = (n * cc + split + j) * hw + p;
                let shift = h[(n * 2 * c2 + 2 * j) * hw + p];
                let ls = logscale(h[(n * 2 * c2 + 2 * j + 1) * hw + p]);
                out[zi] = if reverse { z[zi] * (-ls).exp() - shift } else { (z[zi] + shift) * ls.exp() };
            }
        }
    }
    out
}

/// Analytic VJP of the affine coupling: (dz, dh).
fn affine_grad_ref(dy: &[f64], z: &[f64], h: &[f64], s: Shape, split: usize, reverse: bool) -> (Vec<f64>, Vec<f64>) {
    let (cc, hw) = (s.c(), s.hw());
    let c2 = cc - split;
    let mut dz = dy.to_vec();
    let mut dh = vec![0.0; s.n() * 2 * c2 * hw];
    for n in 0..s.n() {
        for j in 0..c2 {
            for p in 0..hw {
                let zi = (n * cc + split + j) * hw + p;
                let hs = (n * 2 * c2 + 2 * j) * hw + p;
                let (shift, sc) = (h[hs], h[hs + hw]);
                let ls = logscale(sc);
                let (g, zz) = (dy[zi], z[zi]);
                if reverse {
                    let e = (-ls).exp();
                    dz[zi] = g * e;
                    dh[hs] = -g;
                    dh[hs + hw] = -g * zz * e * dlogscale(sc);
                } else {
                    let e = ls.exp();
                    dz[zi] = g * e;
                    dh[hs] = g * e;
                    dh[hs + hw] = g * (zz + shift) * e * dlogscale(sc);
                }
            }
        }
    }
    (dz, dh)
}

fn check_affine_grad(rng: &mut Rng, s: Shape, split: usize, fd_worst: &mut [f64; 2]) {
    let c = ctx();
    let hs = Shape::new(s.n(), 2 * (s.c() - split), s.h(), s.w());
    let zv = rng.vec(s.numel(), -2.0, 2.0);
    let hv = rng.vec(hs.numel(), -2.0, 2.0);
    let dyv = rng.vec(s.numel(), -1.0, 1.0);
    let (z, h, dy) = (f64s(&zv), f64s(&hv), f64s(&dyv));
    let (zt, ht, dyt) = (up(&zv, s), up(&hv, hs), up(&dyv, s));
    for (r, reverse) in [false, true].into_iter().enumerate() {
        let label = format!("grad.affine_coupling_grad split {split} reverse {reverse} {s}");
        let (dz_want, dh_want) = affine_grad_ref(&dy, &z, &h, s, split, reverse);

        if s.numel() <= 500 {
            // Finite differences over the concatenated input (z, h).
            let nz = z.len();
            let x: Vec<f64> = z.iter().chain(&h).copied().collect();
            let fd = fd_vjp(|x| affine_fwd(&x[..nz], &x[nz..], s, split, reverse), &x, &dy);
            let analytic: Vec<f64> = dz_want.iter().chain(&dh_want).copied().collect();
            let e = check_fd(&label, &analytic, &fd);
            fd_worst[r] = fd_worst[r].max(e);
        }

        // GPU: atan_acc ~1 ulp, Vulkan exp (3 + 2|x|) ulp, a few rounded
        // products: ~1e-6 relative; z2 + shift cancels, so its ~2.4e-7
        // absolute rounding times |dy e dlogscale| <= 1.1 is covered by abs
        // 1e-6 (the tolerances of the forward coupling tests).
        let (dz, dh) = (poisoned(s), poisoned(hs));
        let d = grad::affine_coupling_grad(c, &dyt, &zt, &ht, &dz, &dh, split, reverse).unwrap();
        let got_dz = run_and_read(d, &dz);
        assert_close(&format!("{label} dz"), &got_dz, &dz_want, 1e-6, 1e-5);
        assert_close(&format!("{label} dh"), &dh.to_vec(c).unwrap(), &dh_want, 1e-6, 1e-5);
    }
}

#[test]
fn affine_coupling_grad_matches_reference_and_finite_differences() {
    let mut rng = Rng::new(321);
    let mut fd_worst = [0.0f64; 2];
    // split = C / 2 (AffineCoupling, odd C puts fewer channels in z1) and
    // split = 3 (AffineCoupling3shift's even steps).
    for s in [Shape::new(2, 6, 5, 7), Shape::new(2, 7, 3, 5), Shape::new(2, 12, 16, 16)] {
        check_affine_grad(&mut rng, s, s.c() / 2, &mut fd_worst);
    }
    for s in [Shape::new(2, 5, 3, 5), Shape::new(2, 12, 3, 3), Shape::new(2, 9, 17, 13)] {
        check_affine_grad(&mut rng, s, 3, &mut fd_worst);
    }
    println!("fd_table affine_coupling_grad forward: max rel err {:.3e}", fd_worst[0]);
    println!("fd_table affine_coupling_grad reverse: max rel err {:.3e}", fd_worst[1]);
}

// ------------------------------------------------- split-off Gaussian

fn gauss_logs(v: f64, scale: GaussianScale) -> (f64, f64) {
    match scale {
        GaussianScale::Logs => (v, 1.0),
        GaussianScale::Atan => (logscale(v), dlogscale(v)),
    }
}

/// f64 forward of gaussian_sample as a function of h.
fn gauss_sample_fwd(h: &[f64], eps: &[f64], s: Shape, heat: f64, scale: GaussianScale) -> Vec<f64> {
    (0..s.numel())
        .map(|i| {
            let (q, p) = (i / s.hw(), i % s.hw());
            let (ch, n) = (q % s.c(), q / s.c());
            let hi = (n * 2 * s.c() + 2 * ch) * s.hw() + p;
            h[hi] + gauss_logs(h[hi + s.hw()], scale).0.exp() * eps[i] * heat
        })
        .collect()
}

/// Analytic VJP wrt h.
fn gauss_grad_ref(da: &[f64], eps: &[f64], h: &[f64], s: Shape, heat: f64, scale: GaussianScale) -> Vec<f64> {
    let mut dh = vec![0.0; 2 * s.numel()];
    for i in 0..s.numel() {
        let (q, p) = (i / s.hw(), i % s.hw());
        let (ch, n) = (q % s.c(), q / s.c());
        let hi = (n * 2 * s.c() + 2 * ch) * s.hw() + p;
        let (logs, dlogs) = gauss_logs(h[hi + s.hw()], scale);
        dh[hi] = da[i];
        dh[hi + s.hw()] = da[i] * logs.exp() * eps[i] * heat * dlogs;
    }
    dh
}

#[test]
fn gaussian_sample_grad_matches_reference_and_finite_differences() {
    let c = ctx();
    let mut rng = Rng::new(331);
    let mut fd_worst = [0.0f64; 2];
    for s in [Shape::new(2, 5, 5, 7), Shape::new(2, 3, 3, 5), Shape::new(2, 6, 16, 16)] {
        for (si, scale) in [GaussianScale::Logs, GaussianScale::Atan].into_iter().enumerate() {
            for heat in [0.8f32, -1.3] {
                let label = format!("grad.gaussian_sample_grad {scale:?} heat {heat} {s}");
                let hs = Shape::new(s.n(), 2 * s.c(), s.h(), s.w());
                let hv = rng.vec(hs.numel(), -1.0, 1.0);
                let epsv = rng.vec(s.numel(), -2.5, 2.5);
                let dav = rng.vec(s.numel(), -1.0, 1.0);
                let (h, eps, da) = (f64s(&hv), f64s(&epsv), f64s(&dav));
                let want = gauss_grad_ref(&da, &eps, &h, s, heat as f64, scale);

                if s.numel() <= 500 {
                    let fd = fd_vjp(|h| gauss_sample_fwd(h, &eps, s, heat as f64, scale), &h, &da);
                    let e = check_fd(&label, &want, &fd);
                    fd_worst[si] = fd_worst[si].max(e);
                }

                // GPU: exp (3 + 2|x|) ulp with |logs| <= 1, atan_acc ~1 ulp, a few
                // products: ~1e-6 relative (the gaussian_sample tolerances).
                let dh = poisoned(hs);
                let d = grad::gaussian_sample_grad(c, &up(&dav, s), &up(&epsv, s), &up(&hv, hs), heat, scale, &dh).unwrap();
                assert_close(&label, &run_and_read(d, &dh), &want, 1e-6, 1e-5);
            }
        }
    }
    println!("fd_table gaussian_sample_grad Logs: max rel err {:.3e}", fd_worst[0]);
    println!("fd_table gaussian_sample_grad Atan: max rel err {:.3e}", fd_worst[1]);
}

#[test]
fn set_grad_heat_rewrites_the_prepared_dispatch() {
    let c = ctx();
    let mut rng = Rng::new(332);
    let s = Shape::new(2, 4, 5, 3);
    let hs = Shape::new(2, 8, 5, 3);
    let (h, hv) = rand_tensor(&mut rng, hs, -1.0, 1.0);
    let (eps, epsv) = rand_tensor(&mut rng, s, -2.0, 2.0);
    let (da, dav) = rand_tensor(&mut rng, s, -1.0, 1.0);
    let dh = poisoned(hs);
    let d = grad::gaussian_sample_grad(c, &da, &eps, &h, 0.5, GaussianScale::Atan, &dh).unwrap();
    // The output's shape (dh) or the sample's (da) both name this dispatch.
    for (heat, shape) in [(0.9f32, hs), (-0.4, s)] {
        grad::set_grad_heat(c, &d, shape, heat).unwrap();
        let want = gauss_grad_ref(&f64s(&dav), &f64s(&epsv), &f64s(&hv), s, heat as f64, GaussianScale::Atan);
        c.run(std::slice::from_ref(&d)).unwrap();
        assert_close(&format!("grad.set_grad_heat {heat}"), &dh.to_vec(c).unwrap(), &want, 1e-6, 1e-5);
    }
    for bad in [f32::NAN, f32::INFINITY] {
        assert!(is_arg(grad::set_grad_heat(c, &d, hs, bad).unwrap_err()));
    }
    assert!(is_arg(grad::set_grad_heat(c, &d, Shape::new(2, 8, 5, 4), 1.0).unwrap_err()));
    assert!(is_arg(grad::set_grad_heat(c, &d, Shape::new(1, 8, 5, 3), 1.0).unwrap_err()));
    // A dispatch of another family carries no GradUniform.
    let other = elementwise::fill(c, &empty(s), 0.0).unwrap();
    assert!(grad::set_grad_heat(c, &other, s, 1.0).is_err());
}

// ---------------------------------------------------------------- quantize

fn quantize_ref(x: f32, levels: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    // + 0.0 turns the -0 of x = -0 into +0 (the kernel's documented result).
    (x.clamp(0.0, 1.0) * levels).round_ties_even() / levels + 0.0
}

#[test]
fn quantize_is_exact_with_ties_to_even() {
    let c = ctx();
    let mut rng = Rng::new(341);
    for s in [Shape::new(2, 3, 5, 7), Shape::new(1, 3, 64, 61)] {
        for levels in [255.0f32, 4.0, 2.0, 1.0, 65535.0, 7.5] {
            let mut xv = rng.vec(s.numel(), -0.5, 1.5);
            // x * levels exactly at k + 0.5 (levels = 2, 4: x = m / 8 is exact):
            // half to even gives 0, 2, 2, 4 for 0.5, 1.5, 2.5, 3.5.
            let mut specials: Vec<f32> = (0..=16).map(|m| m as f32 / 16.0).collect();
            specials.extend([0.0, 1.0, -0.0, -1e-30, 1.0 + f32::EPSILON, f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
            for (k, &v) in specials.iter().enumerate() {
                xv[k * 3] = v;
            }
            let out = poisoned(s);
            let got = run_and_read(elementwise::quantize(c, &up(&xv, s), &out, levels).unwrap(), &out);
            let want: Vec<f32> = xv.iter().map(|&x| quantize_ref(x, levels)).collect();
            assert_exact(&format!("elementwise.quantize levels {levels} {s}"), &got, &want);
        }
    }
    // The tie cases spelled out.
    let s = Shape::new(1, 1, 1, 4);
    let out = poisoned(s);
    let got = run_and_read(elementwise::quantize(c, &up(&[0.125, 0.375, 0.625, 0.875], s), &out, 4.0).unwrap(), &out);
    assert_exact("elementwise.quantize ties", &got, &[0.0, 0.5, 0.5, 1.0]);
}

// ---------------------------------------------------------------- errors

#[test]
fn grad_bad_arguments_are_errors() {
    let c = ctx();
    let s = Shape::new(2, 6, 3, 4);
    let (dy, y, out) = (empty(s), empty(s), empty(s));
    let sc = empty(Shape::new(1, 6, 1, 1));
    let other = empty(Shape::new(2, 6, 3, 5));

    // act_grad
    let ag = |dy: &Tensor, y: &Tensor, scale: Option<&Tensor>, act, alpha, out: &Tensor| grad::act_grad(c, dy, y, scale, act, alpha, out);
    assert!(ag(&dy, &y, Some(&sc), Activation::Tanh, 1.0, &out).is_ok());
    assert!(is_shape(ag(&dy, &other, None, Activation::Relu, 1.0, &out).unwrap_err()));
    assert!(is_shape(ag(&dy, &y, None, Activation::Relu, 1.0, &other).unwrap_err()));
    assert!(is_shape(ag(&dy, &y, Some(&empty(Shape::new(1, 5, 1, 1))), Activation::Relu, 1.0, &out).unwrap_err()));
    let err = ag(&dy, &y, None, Activation::Swish, 1.0, &out).unwrap_err();
    assert!(err.to_string().contains("Swish"), "{err}");
    assert!(is_arg(err));
    for alpha in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(is_arg(ag(&dy, &y, None, Activation::Relu, alpha, &out).unwrap_err()), "alpha {alpha}");
    }
    assert!(is_arg(ag(&dy, &y, None, Activation::LeakyRelu(-0.1), 1.0, &out).unwrap_err()));
    assert!(is_arg(ag(&dy, &y, None, Activation::Relu, 1.0, &dy.clone()).unwrap_err()));
    assert!(is_arg(ag(&dy, &y, None, Activation::Relu, 1.0, &y.clone()).unwrap_err()));
    // A scale that is a view of the output's buffer (memory plans share buffers).
    let sc_in_out = Tensor::from_buffer(out.buffer().clone(), Shape::new(1, 6, 1, 1), wgsr::Dtype::F32).unwrap();
    assert!(is_arg(ag(&dy, &y, Some(&sc_in_out), Activation::Relu, 1.0, &out).unwrap_err()));

    // clamp_grad
    assert!(grad::clamp_grad(c, &dy, &y, 0.0, 1.0, &out).is_ok());
    assert!(is_shape(grad::clamp_grad(c, &dy, &other, 0.0, 1.0, &out).unwrap_err()));
    assert!(is_shape(grad::clamp_grad(c, &dy, &y, 0.0, 1.0, &other).unwrap_err()));
    assert!(is_arg(grad::clamp_grad(c, &dy, &y, 0.0, 1.0, &y.clone()).unwrap_err()));
    assert!(is_arg(grad::clamp_grad(c, &dy, &y, 0.0, 1.0, &dy.clone()).unwrap_err()));
    assert!(is_arg(grad::clamp_grad(c, &dy, &y, 1.0, 0.0, &out).unwrap_err()));
    assert!(is_arg(grad::clamp_grad(c, &dy, &y, f32::NAN, 1.0, &out).unwrap_err()));

    // affine_coupling_grad: z [2, 6, 3, 4], split 3 -> h [2, 6, 3, 4].
    let z = empty(s);
    let hs = Shape::new(2, 6, 3, 4);
    let (h, dz, dh) = (empty(hs), empty(s), empty(hs));
    let acg = |dy: &Tensor, z: &Tensor, h: &Tensor, dz: &Tensor, dh: &Tensor, split| grad::affine_coupling_grad(c, dy, z, h, dz, dh, split, false);
    assert!(acg(&dy, &z, &h, &dz, &dh, 3).is_ok());
    assert!(is_arg(acg(&dy, &z, &h, &dz, &dh, 0).unwrap_err()));
    assert!(is_arg(acg(&dy, &z, &h, &dz, &dh, 6).unwrap_err()));
    assert!(is_shape(acg(&dy, &z, &h, &dz, &dh, 2).unwrap_err()), "h must have 2 * (C - split) channels");
    assert!(is_shape(acg(&other, &z, &h, &dz, &dh, 3).unwrap_err()));
    assert!(is_shape(acg(&dy, &z, &h, &other, &dh, 3).unwrap_err()));
    assert!(is_shape(acg(&dy, &z, &h, &dz, &empty(Shape::new(2, 4, 3, 4)), 3).unwrap_err()));
    assert!(is_arg(acg(&dy, &z, &h, &z.clone(), &dh, 3).unwrap_err()));
    assert!(is_arg(acg(&dy, &z, &h, &dy.clone(), &dh, 3).unwrap_err()));
    assert!(is_arg(acg(&dy, &z, &h, &dz, &h.clone(), 3).unwrap_err()));
    assert!(is_arg(acg(&dy, &z, &h, &dz, &dz.clone(), 3).unwrap_err()));
    let err = acg(&dy, &z, &h, &h.clone(), &dh, 3).unwrap_err();
    assert!(is_arg(err), "dz aliasing h (same shape here)");

    // gaussian_sample_grad: da [2, 3, 3, 4], h [2, 6, 3, 4].
    let gs = Shape::new(2, 3, 3, 4);
    let (da, eps) = (empty(gs), empty(gs));
    let gsg = |da: &Tensor, eps: &Tensor, h: &Tensor, heat, dh: &Tensor| grad::gaussian_sample_grad(c, da, eps, h, heat, GaussianScale::Atan, dh);
    assert!(gsg(&da, &eps, &h, 1.0, &dh).is_ok());
    for heat in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert!(is_arg(gsg(&da, &eps, &h, heat, &dh).unwrap_err()), "heat {heat}");
    }
    assert!(is_shape(gsg(&da, &empty(Shape::new(2, 3, 3, 5)), &h, 1.0, &dh).unwrap_err()));
    assert!(is_shape(gsg(&da, &eps, &empty(Shape::new(2, 5, 3, 4)), 1.0, &dh).unwrap_err()));
    assert!(is_shape(gsg(&da, &eps, &h, 1.0, &empty(Shape::new(2, 6, 3, 5))).unwrap_err()));
    assert!(is_arg(gsg(&da, &eps, &h, 1.0, &h.clone()).unwrap_err()));

    // quantize
    assert!(elementwise::quantize(c, &y, &out, 255.0).is_ok());
    for levels in [0.5, 0.0, -255.0, f32::NAN, f32::INFINITY] {
        assert!(is_arg(elementwise::quantize(c, &y, &out, levels).unwrap_err()), "levels {levels}");
    }
    assert!(is_arg(elementwise::quantize(c, &y, &y.clone(), 255.0).unwrap_err()));
    assert!(is_shape(elementwise::quantize(c, &y, &other, 255.0).unwrap_err()));
}
