use crate::common::*;
use wgsr::ops::attention::Attention;
use wgsr::{Error, Shape, Tensor};

/// f64 transcription of SR3's SelfAttention core (between the qkv and output
/// 1x1 convs): qkv.view(b, heads, 3*hd, h, w).chunk(3, dim=2), scores
/// einsum("bnchw,bncyx->bnhwyx") / sqrt(C), softmax over all (y, x), then
/// einsum("bnhwyx,bncyx->bnchw") viewed back as [b, C, h, w].
fn attention_ref(qkv: &[f32], s: Shape, n_head: usize) -> Vec<f64> {
    let [n, c, h, w] = s.0;
    let hw = h * w;
    let hd = c / n_head;
    let at = |b: usize, ch: usize, pos: usize| qkv[(b * 3 * c + ch) * hw + pos] as f64;
    let mut out = vec![0.0; n * c * hw];
    for b in 0..n {
        for head in 0..n_head {
            let q0 = head * 3 * hd;
            let (k0, v0) = (q0 + hd, q0 + 2 * hd);
            for i in 0..hw {
                let scores: Vec<f64> = (0..hw)
                    .map(|j| (0..hd).map(|ch| at(b, q0 + ch, i) * at(b, k0 + ch, j)).sum::<f64>() / (c as f64).sqrt())
                    .collect();
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|v| (v - mx).exp()).collect();
                let total: f64 = e.iter().sum();
                for ch in 0..hd {
                    let v: f64 = (0..hw).map(|j| e[j] / total * at(b, v0 + ch, j)).sum();
                    out[(b * c + head * hd + ch) * hw + i] = v;
                }
            }
        }
    }
    out
}

#[test]
fn attention_matches_reference() {
    let c = ctx();
    let mut rng = Rng::new(31);
    for ch in [8, 16] {
        for n_head in [1, 2] {
            for (h, w) in [(5, 7), (16, 16)] {
                let s = Shape::new(2, ch, h, w);
                let att = Attention::new(c, s, n_head).unwrap();
                // Range +-3 gives scores up to a few units, so the softmax is
                // far from uniform and a wrong scale or layout shows.
                let (qkv, qv) = rand_tensor(&mut rng, Shape::new(2, 3 * ch, h, w), -3.0, 3.0);
                let out = poisoned(s);
                let got = run_and_read(att.prepare(c, &qkv, &out, &scratch(c, att.scores_shape())).unwrap(), &out);
                let want = attention_ref(&qv, s, n_head);
                // Outputs are convex combinations of values in [-3, 3], so
                // rounding does not grow with HW: f32 error of the weighted
                // sum is a few ulp of 3 (~1e-6), plus score rounding
                // (head_dim <= 16 terms) passed through exp. 1e-5 abs.
                let abs = 1e-5;
                let name = format!("attention {s} heads={n_head}");
                assert_close(&name, &got, &want, abs, 1e-5);
            }
        }
    }
}

#[test]
fn attention_bad_shapes() {
    let c = ctx();
    let s = Shape::new(1, 8, 4, 4);
    assert!(matches!(Attention::new(c, s, 3), Err(Error::Shape(_))));
    assert!(matches!(Attention::new(c, s, 0), Err(Error::Shape(_))));
    // A 256x256 map needs 65536^2 * 4 bytes = 16 GiB of scores.
    let err = Attention::new(c, Shape::new(1, 8, 256, 256), 1).err().expect("oversize scores must fail");
    assert!(matches!(err, Error::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("score matrix"), "{err}");

    let att = Attention::new(c, s, 2).unwrap();
    let qkv = Tensor::empty(c, Shape::new(1, 24, 4, 4)).unwrap();
    let out = Tensor::empty(c, s).unwrap();
    assert!(att.prepare(c, &qkv, &out, &scratch(c, att.scores_shape())).is_ok());
    let bad_qkv = Tensor::empty(c, Shape::new(1, 16, 4, 4)).unwrap();
    let err = att.prepare(c, &bad_qkv, &out, &scratch(c, att.scores_shape())).unwrap_err().to_string();
    assert!(err.contains("attention"), "{err}");
    let bad_out = Tensor::empty(c, Shape::new(1, 8, 4, 5)).unwrap();
    assert!(matches!(att.prepare(c, &qkv, &bad_out, &scratch(c, att.scores_shape())), Err(Error::Shape(_))));
    // Output viewing the qkv buffer.
    let alias = Tensor::from_buffer(qkv.buffer().clone(), s, wgsr::Dtype::F32).unwrap();
    assert!(matches!(att.prepare(c, &qkv, &alias, &scratch(c, att.scores_shape())), Err(Error::InvalidArgument(_))));
}
