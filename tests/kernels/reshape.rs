//! Layout ops against CPU references written the way the official code
//! states them (view + permute for squeeze, grouped conv + transpose for the
//! Haar layer, element formulas from the torch docs for pixel_shuffle).

use crate::common::*;
use wgsr::ops::reshape;
use wgsr::{Shape, Tensor};

/// Contiguous copy of a 6-D array `v` of dims `d`, permuted so that output
/// dim i is input dim `perm[i]` (torch `.permute(perm).contiguous()`).
fn permute6(v: &[f32], d: [usize; 6], perm: [usize; 6]) -> Vec<f32> {
    assert_eq!(v.len(), d.iter().product::<usize>());
    let mut stride = [1usize; 6];
    for i in (0..5).rev() {
        stride[i] = stride[i + 1] * d[i + 1];
    }
    let od: [usize; 6] = std::array::from_fn(|i| d[perm[i]]);
    let os: [usize; 6] = std::array::from_fn(|i| stride[perm[i]]);
    let mut out = Vec::with_capacity(v.len());
    let mut idx = [0usize; 6];
    for _ in 0..v.len() {
        out.push(v[(0..6).map(|i| idx[i] * os[i]).sum::<usize>()]);
        for i in (0..6).rev() {
            idx[i] += 1;
            if idx[i] < od[i] {
                break;
            }
            idx[i] = 0;
        }
    }
    out
}

/// HCFlow squeeze2d: view(B, C, H/f, f, W/f, f).permute(0, 1, 3, 5, 2, 4).
fn squeeze_ref(v: &[f32], s: Shape, f: usize) -> Vec<f32> {
    let [b, c, h, w] = s.0;
    permute6(v, [b, c, h / f, f, w / f, f], [0, 1, 3, 5, 2, 4])
}

/// HCFlow unsqueeze2d: view(B, C/f^2, f, f, H, W).permute(0, 1, 4, 2, 5, 3).
fn unsqueeze_ref(v: &[f32], s: Shape, f: usize) -> Vec<f32> {
    let [b, c, h, w] = s.0;
    permute6(v, [b, c / (f * f), f, f, h, w], [0, 1, 4, 2, 5, 3])
}

/// torch pixel_shuffle by its documented element formula:
/// out[b, c, h*r + i, w*r + j] = in[b, c*r*r + i*r + j, h, w].
fn pixel_shuffle_ref(v: &[f32], s: Shape, r: usize) -> Vec<f32> {
    let [nb, cin, h, w] = s.0;
    let c = cin / (r * r);
    let (ho, wo) = (h * r, w * r);
    let mut out = vec![f32::NAN; v.len()];
    for b in 0..nb {
        for ch in 0..c {
            for y in 0..ho {
                for x in 0..wo {
                    let ci = ch * r * r + (y % r) * r + x % r;
                    out[((b * c + ch) * ho + y) * wo + x] = v[((b * cin + ci) * h + y / r) * w + x / r];
                }
            }
        }
    }
    out
}

/// torch pixel_unshuffle: the inverse element formula.
fn pixel_unshuffle_ref(v: &[f32], s: Shape, r: usize) -> Vec<f32> {
    let [nb, c, h, w] = s.0;
    let (ho, wo, co) = (h / r, w / r, c * r * r);
    let mut out = vec![f32::NAN; v.len()];
    for b in 0..nb {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let oc = ch * r * r + (y % r) * r + x % r;
                    out[((b * co + oc) * ho + y / r) * wo + x / r] = v[((b * c + ch) * h + y) * w + x];
                }
            }
        }
    }
    out
}

/// HCFlow haar_weights[k, 0, dy, dx]: ones, with the official -1 entries.
fn haar_weights() -> [[[f64; 2]; 2]; 4] {
    let mut w = [[[1.0; 2]; 2]; 4];
    w[1][0][1] = -1.0;
    w[1][1][1] = -1.0;
    w[2][1][0] = -1.0;
    w[2][1][1] = -1.0;
    w[3][1][0] = -1.0;
    w[3][0][1] = -1.0;
    w
}

/// conv2d(x, haar_weights, stride=2, groups=C) / 4, then
/// reshape(B, C, 4, h, w).transpose(1, 2).reshape(B, 4C, h, w).
fn haar_down_ref(v: &[f32], s: Shape) -> Vec<f64> {
    let [nb, c, h, w] = s.0;
    let (ho, wo) = (h / 2, w / 2);
    let wt = haar_weights();
    // grouped conv output: channel c*4 + k
    let mut conv = vec![0f64; v.len()];
    for b in 0..nb {
        for ch in 0..c {
            for k in 0..4 {
                for i in 0..ho {
                    for j in 0..wo {
                        let mut acc = 0.0;
                        for dy in 0..2 {
                            for dx in 0..2 {
                                acc += wt[k][dy][dx] * v[((b * c + ch) * h + 2 * i + dy) * w + 2 * j + dx] as f64;
                            }
                        }
                        conv[((b * c * 4 + ch * 4 + k) * ho + i) * wo + j] = acc / 4.0;
                    }
                }
            }
        }
    }
    // transpose(1, 2) of (B, C, 4, h*w)
    let mut out = vec![f64::NAN; v.len()];
    for b in 0..nb {
        for ch in 0..c {
            for k in 0..4 {
                for p in 0..ho * wo {
                    out[(b * 4 * c + k * c + ch) * ho * wo + p] = conv[(b * c * 4 + ch * 4 + k) * ho * wo + p];
                }
            }
        }
    }
    out
}

/// reshape(B, 4, C, h, w).transpose(1, 2).reshape(B, 4C, h, w), then
/// conv_transpose2d(., haar_weights, stride=2, groups=C) (no scaling).
fn haar_up_ref(v: &[f32], s: Shape) -> Vec<f64> {
    let [nb, c4, h, w] = s.0;
    let c = c4 / 4;
    let wt = haar_weights();
    let mut grouped = vec![0f64; v.len()];
    for b in 0..nb {
        for k in 0..4 {
            for ch in 0..c {
                for p in 0..h * w {
                    grouped[(b * c4 + ch * 4 + k) * h * w + p] = v[(b * c4 + k * c + ch) * h * w + p] as f64;
                }
            }
        }
    }
    let (ho, wo) = (2 * h, 2 * w);
    let mut out = vec![0f64; v.len()];
    for b in 0..nb {
        for ch in 0..c {
            for k in 0..4 {
                for i in 0..h {
                    for j in 0..w {
                        let g = grouped[((b * c4 + ch * 4 + k) * h + i) * w + j];
                        for dy in 0..2 {
                            for dx in 0..2 {
                                out[((b * c + ch) * ho + 2 * i + dy) * wo + 2 * j + dx] += wt[k][dy][dx] * g;
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// x[:, start : start + step*count : step].
fn slice_ref(v: &[f32], s: Shape, start: usize, step: usize, count: usize) -> Vec<f32> {
    let [nb, c, h, w] = s.0;
    let hw = h * w;
    let mut out = Vec::new();
    for b in 0..nb {
        for k in 0..count {
            let ch = start + k * step;
            out.extend_from_slice(&v[(b * c + ch) * hw..(b * c + ch + 1) * hw]);
        }
    }
    out
}

/// out[b, c, y, x] = in[b, c, y/f, x/f].
fn upsample_ref(v: &[f32], s: Shape, f: usize) -> Vec<f32> {
    let [nb, c, h, w] = s.0;
    let (ho, wo) = (h * f, w * f);
    let mut out = Vec::with_capacity(v.len() * f * f);
    for bc in 0..nb * c {
        for y in 0..ho {
            for x in 0..wo {
                out.push(v[(bc * h + y / f) * w + x / f]);
            }
        }
    }
    out
}

fn out_shape(s: Shape, c: usize, h: usize, w: usize) -> Shape {
    Shape::new(s.n(), c, h, w)
}

#[test]
fn squeeze_and_pixel_unshuffle_match_references() {
    let c = ctx();
    let mut rng = Rng::new(11);
    // Batch 2, odd channels, non-square, factors 2, 3, 4; the last is big
    // enough for many workgroups.
    let cases = [
        (Shape::new(2, 3, 6, 10), 2),
        (Shape::new(2, 5, 6, 9), 3),
        (Shape::new(1, 5, 8, 4), 4),
        (Shape::new(2, 3, 32, 18), 2),
        // f = 2 with W a multiple of 4: the vector entry (space_to_depth2).
        (Shape::new(2, 3, 6, 12), 2),
        (Shape::new(1, 5, 34, 36), 2),
    ];
    for (s, f) in cases {
        let (x, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
        let os = out_shape(s, s.c() * f * f, s.h() / f, s.w() / f);

        let out = poisoned(os);
        let got = run_and_read(reshape::squeeze(c, &x, f, &out).unwrap(), &out);
        assert_exact(&format!("reshape.squeeze f={f} {s}"), &got, &squeeze_ref(&xv, s, f));

        let out = poisoned(os);
        let got = run_and_read(reshape::pixel_unshuffle(c, &x, f, &out).unwrap(), &out);
        assert_exact(&format!("reshape.pixel_unshuffle r={f} {s}"), &got, &pixel_unshuffle_ref(&xv, s, f));
    }
}

#[test]
fn unsqueeze_and_pixel_shuffle_match_references() {
    let c = ctx();
    let mut rng = Rng::new(12);
    // The last two: f = 2 with an output width a multiple of 4 (depth_to_space2).
    let cases = [(Shape::new(2, 12, 3, 5), 2), (Shape::new(2, 45, 2, 3), 3), (Shape::new(1, 20, 5, 7), 2), (Shape::new(2, 12, 3, 6), 2), (Shape::new(1, 20, 17, 18), 2)];
    for (s, f) in cases {
        let (x, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
        let os = out_shape(s, s.c() / (f * f), s.h() * f, s.w() * f);

        let out = poisoned(os);
        let got = run_and_read(reshape::unsqueeze(c, &x, f, &out).unwrap(), &out);
        assert_exact(&format!("reshape.unsqueeze f={f} {s}"), &got, &unsqueeze_ref(&xv, s, f));

        let out = poisoned(os);
        let got = run_and_read(reshape::pixel_shuffle(c, &x, f, &out).unwrap(), &out);
        assert_exact(&format!("reshape.pixel_shuffle r={f} {s}"), &got, &pixel_shuffle_ref(&xv, s, f));
    }
}

#[test]
fn squeeze_round_trips_are_exact() {
    let c = ctx();
    let mut rng = Rng::new(13);
    for (s, f) in [(Shape::new(2, 3, 6, 10), 2), (Shape::new(2, 5, 9, 6), 3)] {
        let (x, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
        let mid = Tensor::empty(c, out_shape(s, s.c() * f * f, s.h() / f, s.w() / f)).unwrap();
        let out = poisoned(s);
        let ds = vec![reshape::squeeze(c, &x, f, &mid).unwrap(), reshape::unsqueeze(c, &mid, f, &out).unwrap()];
        assert_exact(&format!("reshape.unsqueeze(squeeze(x)) f={f} {s}"), &run_and_read(ds, &out), &xv);

        let out = poisoned(s);
        let ds = vec![reshape::pixel_unshuffle(c, &x, f, &mid).unwrap(), reshape::pixel_shuffle(c, &mid, f, &out).unwrap()];
        assert_exact(&format!("reshape.pixel_shuffle(pixel_unshuffle(x)) r={f} {s}"), &run_and_read(ds, &out), &xv);
    }
}

/// Documents the orderings. The brief expected HCFlow's squeeze to differ
/// from pixel_unshuffle, but the official squeeze2d is the very same
/// view/permute torch uses, so the two agree on every element. The order
/// that does differ in HCFlow is the Haar layer's band-major one
/// (band*C + c), checked here against squeeze's c*4 + dy*2 + dx.
#[test]
fn squeeze_equals_pixel_unshuffle_but_not_haar_order() {
    let c = ctx();
    let s = Shape::new(2, 3, 6, 10);
    let (hw, plane) = (s.hw(), 3 * 5);
    // x[b, c, y, x] = 1000b + 100c + 10y + x, exact in f32, every value distinct.
    let xv: Vec<f32> = (0..s.numel())
        .map(|i| {
            let (xx, y, ch, b) = (i % 10, (i / 10) % 6, (i / hw) % 3, i / (3 * hw));
            (1000 * b + 100 * ch + 10 * y + xx) as f32
        })
        .collect();
    let x = Tensor::from_slice(c, s, &xv).unwrap();
    let os = Shape::new(2, 12, 3, 5);
    let sq = poisoned(os);
    let sqv = run_and_read(reshape::squeeze(c, &x, 2, &sq).unwrap(), &sq);
    let pu = poisoned(os);
    let puv = run_and_read(reshape::pixel_unshuffle(c, &x, 2, &pu).unwrap(), &pu);
    assert_exact("reshape.squeeze == pixel_unshuffle", &sqv, &puv);
    // out channel c*4 + dy*2 + dx holds x[c, 2i + dy, 2j + dx]: channel 1 =
    // (c 0, dy 0, dx 1), channel 6 = (c 1, dy 1, dx 0). Sample b=1, i=2, j=3.
    assert_eq!(sqv[(12 + 1) * plane + 2 * 5 + 3], (1000 + 10 * 4 + 7) as f32);
    assert_eq!(sqv[(12 + 6) * plane + 2 * 5 + 3], (1000 + 100 + 10 * 5 + 6) as f32);

    // Haar: channel 1 is band 0 (block average) of input channel 1, where
    // squeeze puts input channel 0's top-right pixel.
    let hd = poisoned(os);
    let hv = run_and_read(reshape::haar_down(c, &x, &hd).unwrap(), &hd);
    let avg = (4 * (1000 + 100) + 10 * (4 + 5) * 2 + (6 + 7) * 2) as f32 / 4.0;
    assert_eq!(hv[(12 + 1) * plane + 2 * 5 + 3], avg);
    assert_ne!(hv[(12 + 1) * plane + 2 * 5 + 3], sqv[(12 + 1) * plane + 2 * 5 + 3]);
}

#[test]
fn haar_down_up_match_references_and_round_trip() {
    let c = ctx();
    let mut rng = Rng::new(14);
    for s in [Shape::new(2, 3, 6, 10), Shape::new(1, 5, 4, 8), Shape::new(2, 12, 16, 6)] {
        let (x, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
        let os = out_shape(s, 4 * s.c(), s.h() / 2, s.w() / 2);
        // Each band is 3 f32 additions of values |.| <= 2 (partial sums <= 8,
        // half-ulp 4.8e-7 each) then an exact /4: |err| <= 3.6e-7.
        let out = poisoned(os);
        let got = run_and_read(reshape::haar_down(c, &x, &out).unwrap(), &out);
        assert_close(&format!("reshape.haar_down {s}"), &got, &haar_down_ref(&xv, s), 4e-7, 0.0);

        // haar_up of random bands: 3 additions, partial sums <= 8: |err| <= 1.5e-6.
        let (y, yv) = rand_tensor(&mut rng, os, -2.0, 2.0);
        let back = poisoned(s);
        let got = run_and_read(reshape::haar_up(c, &y, &back).unwrap(), &back);
        assert_close(&format!("reshape.haar_up {os}"), &got, &haar_up_ref(&yv, os), 1.5e-6, 0.0);

        // Round trip: the bound of the two steps above; 1e-5 as required.
        let mid = Tensor::empty(c, os).unwrap();
        let back = poisoned(s);
        let ds = vec![reshape::haar_down(c, &x, &mid).unwrap(), reshape::haar_up(c, &mid, &back).unwrap()];
        assert_close(&format!("reshape.haar_up(haar_down(x)) {s}"), &run_and_read(ds, &back), &to_f64(&xv), 1e-5, 0.0);
    }
}

#[test]
fn haar_logdet_matches_official_last_jac() {
    // Official: elements = C*H*W of the layer's input; last_jac =
    // elements / 4 * log(1/16) forward, elements / 4 * log(16) reverse.
    let fwd = reshape::haar_logdet(Shape::new(2, 3, 6, 10), false);
    assert!((fwd - 45.0 * (1.0f64 / 16.0).ln()).abs() < 1e-12, "{fwd}");
    let rev = reshape::haar_logdet(Shape::new(2, 12, 3, 5), true);
    assert!((rev - 45.0 * 16f64.ln()).abs() < 1e-12, "{rev}");
    // A 2x2 block maps through W/4 with W W^T = 4I, so |det| = 16/256 = 1/16.
    assert!((fwd + rev).abs() < 1e-12);
}

#[test]
fn slice_channels_split_and_cross() {
    let c = ctx();
    let mut rng = Rng::new(15);
    for s in [Shape::new(2, 5, 6, 10), Shape::new(2, 8, 3, 7)] {
        let (x, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
        let ch = s.c();
        // split: [:C//2], [C//2:]; cross: [0::2], [1::2]; plus an odd stride.
        let cases = [
            ("split.first", 0, 1, ch / 2),
            ("split.second", ch / 2, 1, ch - ch / 2),
            ("cross.even", 0, 2, ch.div_ceil(2)),
            ("cross.odd", 1, 2, ch / 2),
            ("stride3", 1, 3, (ch - 1).div_ceil(3)),
        ];
        for (name, start, step, count) in cases {
            let out = poisoned(out_shape(s, count, s.h(), s.w()));
            let got = run_and_read(reshape::slice_channels(c, &x, start, step, count, &out).unwrap(), &out);
            assert_exact(&format!("reshape.slice_channels {name} {s}"), &got, &slice_ref(&xv, s, start, step, count));
        }
    }
}

#[test]
fn concat_and_write_channels() {
    let c = ctx();
    let mut rng = Rng::new(16);
    let (h, w) = (6, 10);
    let parts: Vec<(Tensor, Vec<f32>)> =
        [3, 5, 2].iter().map(|&ch| rand_tensor(&mut rng, Shape::new(2, ch, h, w), -2.0, 2.0)).collect();
    let os = Shape::new(2, 10, h, w);
    let out = poisoned(os);
    let refs: Vec<&Tensor> = parts.iter().map(|p| &p.0).collect();
    let got = run_and_read(reshape::concat_channels(c, &refs, &out).unwrap(), &out);
    // torch.cat(dim=1): per sample, the parts' channel blocks in order.
    let mut want = Vec::new();
    for b in 0..2 {
        for (t, v) in &parts {
            let n = t.shape().c() * h * w;
            want.extend_from_slice(&v[b * n..(b + 1) * n]);
        }
    }
    assert_exact("reshape.concat_channels [3,5,2]", &got, &want);

    // Cross split then re-interleave with write_channels(step 2) restores x.
    let s = Shape::new(2, 5, 6, 10);
    let (x, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
    let even = Tensor::empty(c, out_shape(s, 3, h, w)).unwrap();
    let odd = Tensor::empty(c, out_shape(s, 2, h, w)).unwrap();
    let back = poisoned(s);
    let ds = vec![
        reshape::slice_channels(c, &x, 0, 2, 3, &even).unwrap(),
        reshape::slice_channels(c, &x, 1, 2, 2, &odd).unwrap(),
        reshape::write_channels(c, &even, &back, 0, 2).unwrap(),
        reshape::write_channels(c, &odd, &back, 1, 2).unwrap(),
    ];
    assert_exact("reshape.write_channels(cross split) round trip", &run_and_read(ds, &back), &xv);

    // Insert into a slice: channels other than the target keep their values.
    let big = Shape::new(2, 7, h, w);
    let (dst, dv) = rand_tensor(&mut rng, big, 5.0, 6.0); // disjoint from x's range
    let got = run_and_read(reshape::write_channels(c, &x, &dst, 2, 1).unwrap(), &dst);
    let mut want = dv.clone();
    let hw = h * w;
    for b in 0..2 {
        for k in 0..5 {
            want[(b * 7 + 2 + k) * hw..(b * 7 + 3 + k) * hw].copy_from_slice(&xv[(b * 5 + k) * hw..(b * 5 + k + 1) * hw]);
        }
    }
    assert_exact("reshape.write_channels into [2..7) of 7", &got, &want);
}

#[test]
fn upsample_nearest_matches_reference() {
    let c = ctx();
    let mut rng = Rng::new(17);
    // f = 2 with an even width takes the vec4 entry (upsample2), odd widths
    // and other factors the general one.
    for (s, f) in [(Shape::new(2, 3, 6, 10), 2), (Shape::new(2, 3, 5, 7), 2), (Shape::new(1, 5, 3, 4), 3), (Shape::new(2, 5, 5, 7), 1)] {
        let (x, xv) = rand_tensor(&mut rng, s, -2.0, 2.0);
        let out = poisoned(out_shape(s, s.c(), s.h() * f, s.w() * f));
        let got = run_and_read(reshape::upsample_nearest(c, &x, f, &out).unwrap(), &out);
        assert_exact(&format!("reshape.upsample_nearest f={f} {s}"), &got, &upsample_ref(&xv, s, f));
    }

    // HCFlow's cat([y, interpolate(feat, 2)], 1) in two dispatches; an odd
    // feature width takes the general entry, an even one the vec4 entry.
    for (fs, ys, label) in [
        (Shape::new(2, 5, 3, 5), Shape::new(2, 3, 6, 10), "reshape.cat(y, upsample_nearest_into(feat, 2))"),
        (Shape::new(2, 5, 3, 4), Shape::new(2, 3, 6, 8), "reshape.cat(y, upsample_nearest_into(feat, 2)) even width"),
    ] {
        let (y, yv) = rand_tensor(&mut rng, ys, -2.0, 2.0);
        let (feat, fv) = rand_tensor(&mut rng, fs, -2.0, 2.0);
        let out = poisoned(Shape::new(2, 8, ys.h(), ys.w()));
        let ds = vec![
            reshape::write_channels(c, &y, &out, 0, 1).unwrap(),
            reshape::upsample_nearest_into(c, &feat, 2, &out, 3).unwrap(),
        ];
        let got = run_and_read(ds, &out);
        let up = upsample_ref(&fv, fs, 2);
        let (yn, un) = (ys.numel() / 2, up.len() / 2);
        let mut want = Vec::new();
        for b in 0..2 {
            want.extend_from_slice(&yv[b * yn..(b + 1) * yn]);
            want.extend_from_slice(&up[b * un..(b + 1) * un]);
        }
        assert_exact(label, &got, &want);
    }
}

#[test]
fn bad_shapes_are_errors() {
    let c = ctx();
    let t = |n, ch, h, w| Tensor::empty(c, Shape::new(n, ch, h, w)).unwrap();
    let err = |r: wgsr::Result<wgsr::gpu::Dispatch>| r.map(|_| ()).unwrap_err().to_string();

    // squeeze / pixel_unshuffle: odd H (or W) for factor 2, wrong output.
    let e = err(reshape::squeeze(c, &t(1, 3, 5, 6), 2, &t(1, 12, 2, 3)));
    assert!(e.contains("divisible by the factor 2"), "{e}");
    let e = err(reshape::pixel_unshuffle(c, &t(1, 3, 6, 7), 2, &t(1, 12, 3, 3)));
    assert!(e.contains("divisible"), "{e}");
    let e = err(reshape::squeeze(c, &t(1, 3, 6, 10), 2, &t(1, 12, 5, 3)));
    assert!(e.contains("needs an output of shape [1, 12, 3, 5]"), "{e}");
    let e = err(reshape::squeeze(c, &t(1, 3, 6, 10), 0, &t(1, 3, 6, 10)));
    assert!(e.contains("factor must be >= 1"), "{e}");
    // unsqueeze / pixel_shuffle: channels not divisible by f^2.
    let e = err(reshape::unsqueeze(c, &t(1, 6, 3, 5), 2, &t(1, 1, 6, 10)));
    assert!(e.contains("divisible by factor^2 = 4"), "{e}");
    let e = err(reshape::pixel_shuffle(c, &t(1, 12, 3, 5), 3, &t(1, 1, 9, 15)));
    assert!(e.contains("factor^2 = 9"), "{e}");
    // Haar: odd size, channels not divisible by 4, wrong output.
    let e = err(reshape::haar_down(c, &t(2, 3, 6, 9), &t(2, 12, 3, 4)));
    assert!(e.contains("must be even"), "{e}");
    let e = err(reshape::haar_up(c, &t(2, 6, 3, 5), &t(2, 1, 6, 10)));
    assert!(e.contains("divisible by 4"), "{e}");
    let e = err(reshape::haar_down(c, &t(2, 3, 6, 10), &t(1, 12, 3, 5)));
    assert!(e.contains("[2, 12, 3, 5]"), "{e}");
    // Channel ops.
    let x = t(2, 5, 6, 10);
    let e = err(reshape::slice_channels(c, &x, 1, 2, 3, &t(2, 3, 6, 10)));
    assert!(e.contains("out of range for input"), "{e}");
    let e = err(reshape::slice_channels(c, &x, 0, 1, 2, &t(2, 3, 6, 10)));
    assert!(e.contains("must have 2 channels"), "{e}");
    let e = err(reshape::slice_channels(c, &x, 0, 0, 2, &t(2, 2, 6, 10)));
    assert!(e.contains("step must be >= 1"), "{e}");
    let e = err(reshape::write_channels(c, &x, &t(2, 7, 6, 10), 3, 1));
    assert!(e.contains("out of range for output"), "{e}");
    let e = err(reshape::write_channels(c, &x, &t(1, 7, 6, 10), 0, 1));
    assert!(e.contains("batch sizes differ"), "{e}");
    let e = reshape::concat_channels(c, &[&x, &t(2, 2, 6, 10)], &t(2, 8, 6, 10)).unwrap_err().to_string();
    assert!(e.contains("have 7 channels"), "{e}");
    let e = reshape::concat_channels(c, &[&x, &t(2, 2, 6, 9)], &t(2, 7, 6, 10)).unwrap_err().to_string();
    assert!(e.contains("does not match output"), "{e}");
    let e = err(reshape::upsample_nearest(c, &x, 2, &t(2, 5, 12, 21)));
    assert!(e.contains("must be 12x20"), "{e}");
    let e = err(reshape::upsample_nearest(c, &x, 2, &t(2, 4, 12, 20)));
    assert!(e.contains("channel counts differ"), "{e}");
    // In and out in one buffer.
    let e = err(reshape::upsample_nearest(c, &x, 1, &x));
    assert!(e.contains("must not share a buffer"), "{e}");
}

#[test]
fn concat_with_odd_block_lengths_is_exact() {
    // 3*3*7 = 63 and 1*3*7 = 21 floats per sample: the copy cannot use vec4 moves.
    let c = ctx();
    let mut rng = Rng::new(17);
    let (a, av) = rand_tensor(&mut rng, Shape::new(2, 3, 3, 7), -1.0, 1.0);
    let (b, bv) = rand_tensor(&mut rng, Shape::new(2, 1, 3, 7), -1.0, 1.0);
    let out = poisoned(Shape::new(2, 4, 3, 7));
    let got = run_and_read(reshape::concat_channels(c, &[&a, &b], &out).unwrap(), &out);
    let mut want = Vec::new();
    for n in 0..2 {
        want.extend_from_slice(&av[n * 63..(n + 1) * 63]);
        want.extend_from_slice(&bv[n * 21..(n + 1) * 21]);
    }
    assert_exact("reshape.concat odd blocks", &got, &want);
}
