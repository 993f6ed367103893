//! Random weights for benchmarks and tests: uniform in +-1/sqrt(fan_in)
//! (biases too) from the crate's Philox stream, with the prior's masks
//! applied as tools/pixelcnn_convert.py does (`make_mask` in
//! tools/pixelcnn_ref.py), so the model is causal like a converted one.

use crate::ops::rng::host_uniform;
use crate::weights::{HostTensor, WeightStore};
use crate::Result;

use super::config::{PixelCnnConfig, COLOURS, LEVELS};

#[derive(Clone, Copy)]
enum Mask {
    /// Rows above; centre row left of the centre; centre tap where group(in) < group(out).
    A,
    /// As A with group(in) <= group(out) (also the 1x1 layers and the 1 x kh horizontal conv).
    B,
    /// Rows strictly above the centre.
    Va,
    /// Rows up to and including the centre row.
    Vb,
}

/// Colour group of channel k of n feature channels: contiguous thirds.
fn group(k: usize, n: usize) -> usize {
    COLOURS * k / n
}

/// Whether tap (o, i, ky, kx) of a [cout, cin, kh, kw] kernel survives the
/// mask, with `go` / `gi` the output / input channel groups.
fn keep(m: Mask, ky: usize, kx: usize, kh: usize, kw: usize, go: usize, gi: usize) -> bool {
    let (cy, cx) = (kh / 2, kw / 2);
    match m {
        Mask::Va => ky < cy,
        Mask::Vb => ky <= cy,
        Mask::A | Mask::B => {
            ky < cy || (ky == cy && kx < cx) || (ky == cy && kx == cx && if matches!(m, Mask::A) { gi < go } else { gi <= go })
        }
    }
}

/// The mask and the (output, input) group functions of a prior weight, if masked.
#[allow(clippy::type_complexity)]
fn mask_of(cfg: &PixelCnnConfig, name: &str) -> Option<(Mask, Box<dyn Fn(usize) -> usize>, Box<dyn Fn(usize) -> usize>)> {
    let (c, f) = (cfg.prior_channels, cfg.prior_hidden);
    let feat = move |n: usize| Box::new(move |k: usize| group(k, n)) as Box<dyn Fn(usize) -> usize>;
    let gated = Box::new(move |j: usize| group(j % c, c));
    let key = name.strip_suffix(".weight")?;
    if key == "prior.conv_in" {
        return Some((Mask::A, feat(c), Box::new(|k| k)));
    }
    if key == "prior.out1" {
        return Some((Mask::B, feat(f), feat(c)));
    }
    if key == "prior.out2" {
        return Some((Mask::B, Box::new(|j| j / LEVELS), feat(f)));
    }
    let rest = key.strip_prefix("prior.blocks.")?;
    let (i, layer) = rest.split_once('.')?;
    match layer {
        "v_conv" => Some((if i == "0" { Mask::Va } else { Mask::Vb }, gated, feat(c))),
        "h_conv" => Some((Mask::B, gated, feat(c))),
        "h_out" => Some((Mask::B, feat(c), feat(c))),
        _ => None,
    }
}

/// Every tensor of `cfg.weight_shapes()`, random from `seed`, prior masks applied.
pub fn random_weights(cfg: &PixelCnnConfig, seed: u64) -> Result<WeightStore> {
    let mut w = WeightStore::new();
    let shapes = cfg.weight_shapes();
    for (i, (name, shape)) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        // Biases take the fan-in of their weight (the entry before them).
        let ws = if shape.len() == 1 { &shapes[i - 1].1 } else { shape };
        let fan_in: usize = ws[1..].iter().product::<usize>().max(1);
        let s = (1.0 / fan_in as f64).sqrt() as f32;
        let u = host_uniform(seed.wrapping_add(i as u64), 0, n);
        let mut data: Vec<f32> = u.iter().map(|&x| (2.0 * x - 1.0) * s).collect();
        if let Some((m, go, gi)) = mask_of(cfg, name) {
            let [cout, cin, kh, kw] = [shape[0], shape[1], shape[2], shape[3]];
            for (idx, v) in data.iter_mut().enumerate() {
                let (kx, ky, ci, co) = (idx % kw, (idx / kw) % kh, (idx / (kw * kh)) % cin, idx / (kw * kh * cin));
                debug_assert!(co < cout);
                if !keep(m, ky, kx, kh, kw, go(co), gi(ci)) {
                    *v = 0.0;
                }
            }
        }
        w.insert(name.clone(), HostTensor::new(shape.clone(), data)?);
    }
    Ok(w)
}
