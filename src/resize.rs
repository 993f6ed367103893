//! Bicubic resizing on the CPU, bit-compatible with the two resizers SR
//! datasets are made with:
//!
//! * [`imresize`] / [`imresize_scale`]: MATLAB's `imresize(img, ..., 'bicubic')`
//!   (Keys cubic a = -0.5, antialiasing when downscaling: kernel widened by
//!   1/scale, weights normalised to sum 1, out-of-range taps mirrored with
//!   MATLAB's `aux = [1:n, n:-1:1]` rule, the dimension with the smaller
//!   scale resized first, rows first on ties). Computation is f64.
//!   [`MatlabPrecision::Uint8`] reproduces MATLAB on `uint8` input, whose
//!   `imresizemex` rounds (half away from zero) and saturates to `uint8`
//!   after *each* pass; this reproduces the benchmark LR images of HCFlow
//!   (Set5 butterfly x4, CelebA x8) exactly. The algorithm is the one of
//!   MATLAB's `imresize.m` and of BasicSR's `matlab_functions.imresize`.
//! * [`pil_bicubic_u8`] / [`resize_pil_bicubic`]: Pillow's
//!   `Image.resize(size, Image.BICUBIC)` (libImaging/Resample.c): support 2
//!   scaled by the downscale factor, taps clipped to the image and
//!   renormalised, coefficients converted to 22-bit fixed point, horizontal
//!   pass then vertical pass, each rounded and clamped to 8 bit. Bit-exact
//!   with Pillow on 8-bit images. [`resize_pil_bicubic_f32`] is Pillow's
//!   float ("F" mode) path.

use crate::image_io::RgbImage;
use crate::{Error, Result};

/// Number format of a MATLAB-style resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatlabPrecision {
    /// `imresize` on a `double` image: f64 throughout, no rounding.
    Float,
    /// f64 throughout, the result rounded once to 8-bit levels
    /// (`round(clamp(x, 0, 1) * 255) / 255`, half away from zero).
    RoundOutput,
    /// `imresize` on a `uint8` image: the input is quantised to 8 bit and
    /// every pass is rounded (half away from zero) and saturated to 8 bit,
    /// as MATLAB does. Use this to make benchmark LR images.
    Uint8,
}

/// MATLAB's `cubic` (Keys, a = -0.5), same operation order as `imresize.m`.
fn matlab_cubic(x: f64) -> f64 {
    let absx = x.abs();
    let absx2 = absx * absx;
    let absx3 = absx2 * absx;
    if absx <= 1.0 {
        1.5 * absx3 - 2.5 * absx2 + 1.0
    } else if absx <= 2.0 {
        -0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0
    } else {
        0.0
    }
}

/// Per-output-sample taps: (input indices, weights), as `imresize.m`'s
/// `contributions` (antialiasing on).
fn matlab_contributions(in_len: usize, out_len: usize, scale: f64) -> Vec<Vec<(usize, f64)>> {
    let aa = scale < 1.0;
    let kernel_width = if aa { 4.0 / scale } else { 4.0 };
    let p = kernel_width.ceil() as i64 + 2;
    let n2 = 2 * in_len as i64;
    (1..=out_len)
        .map(|x| {
            let u = x as f64 / scale + 0.5 * (1.0 - 1.0 / scale);
            let left = (u - kernel_width / 2.0).floor() as i64;
            let mut w: Vec<f64> = (0..p)
                .map(|j| {
                    let d = u - (left + j) as f64;
                    if aa {
                        scale * matlab_cubic(scale * d)
                    } else {
                        matlab_cubic(d)
                    }
                })
                .collect();
            let sum: f64 = w.iter().sum();
            for v in &mut w {
                *v /= sum;
            }
            (0..p as usize)
                .filter(|&j| w[j] != 0.0)
                .map(|j| {
                    // aux = [1:n, n:-1:1]; idx = aux(mod(idx - 1, 2n) + 1), 1-based.
                    let m = (left + j as i64 - 1).rem_euclid(n2);
                    let idx0 = if m < in_len as i64 { m } else { n2 - 1 - m };
                    (idx0 as usize, w[j])
                })
                .collect()
        })
        .collect()
}

/// MATLAB bicubic taps for resizing `in_len` samples to `out_len` at
/// `scale`: per output sample, (input index, weight). The GPU resize of
/// `ops::texel` uses these tables, so both paths weigh the same samples.
pub fn bicubic_taps(in_len: usize, out_len: usize, scale: f64) -> Vec<Vec<(usize, f64)>> {
    matlab_contributions(in_len, out_len, scale)
}

fn round_u8_level(v: f64) -> f64 {
    // MATLAB's uint8 conversion: round half away from zero, saturate.
    (v + 0.5).floor().clamp(0.0, 255.0)
}

/// Resize one plane (row-major `h` x `w`) along rows (`vertical`) or columns.
fn matlab_pass(
    src: &[f64],
    w: usize,
    h: usize,
    vertical: bool,
    out_len: usize,
    scale: f64,
    round_levels: bool,
) -> Vec<f64> {
    let in_len = if vertical { h } else { w };
    let taps = matlab_contributions(in_len, out_len, scale);
    let (ow, oh) = if vertical { (w, out_len) } else { (out_len, h) };
    let mut out = vec![0f64; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            let t = if vertical { &taps[y] } else { &taps[x] };
            let mut s = 0.0;
            for &(i, wt) in t {
                let v = if vertical { src[i * w + x] } else { src[y * w + i] };
                s += wt * v;
            }
            out[y * ow + x] = if round_levels { round_u8_level(s) } else { s };
        }
    }
    out
}

/// MATLAB `imresize` of one f64 plane to `out_w` x `out_h`, with explicit
/// per-axis scales (MATLAB uses the given scale, not out/in, when called
/// with a scale factor). `round_levels` rounds each pass to 8-bit levels
/// (the plane must then hold levels in [0, 255]).
#[allow(clippy::too_many_arguments)]
pub fn imresize_plane(
    src: &[f64],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    scale_w: f64,
    scale_h: f64,
    round_levels: bool,
) -> Result<Vec<f64>> {
    if src.len() != w * h {
        return Err(Error::Shape(format!("{} values for a {h}x{w} plane", src.len())));
    }
    check_sizes(w, h, out_w, out_h)?;
    if !(scale_w > 0.0 && scale_h > 0.0 && scale_w.is_finite() && scale_h.is_finite()) {
        return Err(Error::InvalidArgument(format!("resize scales must be positive and finite, got {scale_w} x {scale_h}")));
    }
    // [~, order] = sort(scale): smaller scale first, rows (dim 1) on ties.
    if scale_h <= scale_w {
        let t = matlab_pass(src, w, h, true, out_h, scale_h, round_levels);
        Ok(matlab_pass(&t, w, out_h, false, out_w, scale_w, round_levels))
    } else {
        let t = matlab_pass(src, w, h, false, out_w, scale_w, round_levels);
        Ok(matlab_pass(&t, out_w, h, true, out_h, scale_h, round_levels))
    }
}

fn check_sizes(w: usize, h: usize, out_w: usize, out_h: usize) -> Result<()> {
    if w == 0 || h == 0 || out_w == 0 || out_h == 0 {
        return Err(Error::InvalidArgument(format!("cannot resize {w}x{h} to {out_w}x{out_h}: sizes must be non-zero")));
    }
    Ok(())
}

fn imresize_impl(img: &RgbImage, out_w: usize, out_h: usize, sw: f64, sh: f64, prec: MatlabPrecision) -> Result<RgbImage> {
    let n = img.width * img.height;
    if img.data.len() != 3 * n {
        return Err(Error::Shape(format!("{} values for a 3x{}x{} image", img.data.len(), img.height, img.width)));
    }
    let mut data = Vec::with_capacity(3 * out_w * out_h);
    for c in 0..3 {
        let plane = &img.data[c * n..(c + 1) * n];
        let out = match prec {
            MatlabPrecision::Uint8 => {
                let levels: Vec<f64> = plane.iter().map(|&v| to_level(v) as f64).collect();
                let o = imresize_plane(&levels, img.width, img.height, out_w, out_h, sw, sh, true)?;
                o.into_iter().map(|v| (v as f32) / 255.0).collect::<Vec<f32>>()
            }
            MatlabPrecision::Float | MatlabPrecision::RoundOutput => {
                let p: Vec<f64> = plane.iter().map(|&v| v as f64).collect();
                let o = imresize_plane(&p, img.width, img.height, out_w, out_h, sw, sh, false)?;
                if prec == MatlabPrecision::RoundOutput {
                    o.into_iter().map(|v| (round_u8_level(v.clamp(0.0, 1.0) * 255.0) as f32) / 255.0).collect()
                } else {
                    o.into_iter().map(|v| v as f32).collect()
                }
            }
        };
        data.extend(out);
    }
    RgbImage::new(out_w, out_h, data)
}

/// MATLAB `imresize(img, [out_h out_w], 'bicubic')`: per-axis scale out/in.
pub fn imresize(img: &RgbImage, out_w: usize, out_h: usize, precision: MatlabPrecision) -> Result<RgbImage> {
    check_sizes(img.width, img.height, out_w, out_h)?;
    let sw = out_w as f64 / img.width as f64;
    let sh = out_h as f64 / img.height as f64;
    imresize_impl(img, out_w, out_h, sw, sh, precision)
}

/// MATLAB `imresize(img, scale, 'bicubic')`: output size `ceil(scale * size)`,
/// weights computed from `scale` itself (e.g. 0.25 for a x4 downscale).
pub fn imresize_scale(img: &RgbImage, scale: f64, precision: MatlabPrecision) -> Result<RgbImage> {
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(Error::InvalidArgument(format!("resize scale must be positive and finite, got {scale}")));
    }
    let out_w = (img.width as f64 * scale).ceil() as usize;
    let out_h = (img.height as f64 * scale).ceil() as usize;
    check_sizes(img.width, img.height, out_w, out_h)?;
    imresize_impl(img, out_w, out_h, scale, scale, precision)
}

/// The 8-bit level of a [0, 1] value: `round(clamp(x, 0, 1) * 255)`, as
/// [`RgbImage::to_rgb8`] and PNG output.
pub fn to_level(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Quantise an image to 8-bit levels (values k / 255).
pub fn quantize_u8(img: &RgbImage) -> RgbImage {
    RgbImage { width: img.width, height: img.height, data: img.data.iter().map(|&v| to_level(v) as f32 / 255.0).collect() }
}

// ---------------------------------------------------------------- Pillow

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn pil_bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` for the box [0, in_size]: per output sample
/// (first input index, normalised f64 weights).
fn pil_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f64>)> {
    const SUPPORT: f64 = 2.0;
    let scale = in_size as f32 as f64 / out_size as f64; // (double)(in1 - in0) / outSize, in0/in1 are floats
    let filterscale = scale.max(1.0);
    let support = SUPPORT * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0); // (int) truncates
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
            let mut k: Vec<f64> =
                (0..xmax.max(0)).map(|x| pil_bicubic_filter(((x + xmin) as f64 - center + 0.5) * ss)).collect();
            let ww: f64 = k.iter().sum();
            if ww != 0.0 {
                for v in &mut k {
                    *v /= ww;
                }
            }
            (xmin as usize, k)
        })
        .collect()
}

/// `normalize_coeffs_8bpc`: to fixed point with PRECISION_BITS, rounded
/// half away from zero via C's truncating cast.
fn pil_fixed(k: &[f64]) -> Vec<i32> {
    let one = (1u32 << PRECISION_BITS) as f64;
    k.iter().map(|&v| if v < 0.0 { (-0.5 + v * one) as i32 } else { (0.5 + v * one) as i32 }).collect()
}

fn pil_clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize((out_w, out_h), Image.BICUBIC)` on an 8-bit image
/// with `channels` interleaved channels (1 to 4, each resized independently,
/// as for modes "L", "RGB", "RGBA" without premultiplication).
pub fn pil_bicubic_u8(src: &[u8], w: usize, h: usize, channels: usize, out_w: usize, out_h: usize) -> Result<Vec<u8>> {
    if !(1..=4).contains(&channels) || src.len() != w * h * channels {
        return Err(Error::Shape(format!("{} bytes for a {w}x{h} image with {channels} channels", src.len())));
    }
    check_sizes(w, h, out_w, out_h)?;
    let need_h = out_w != w;
    let need_v = out_h != h;
    let horiz = pil_coeffs(w, out_w);
    let vert = pil_coeffs(h, out_h);
    // First and last input rows the vertical pass reads.
    let ybox_first = vert[0].0;
    let ybox_last = vert[out_h - 1].0 + vert[out_h - 1].1.len();

    let (tmp, tw, row0) = if need_h {
        let th = ybox_last - ybox_first;
        let mut tmp = vec![0u8; out_w * th * channels];
        let fixed: Vec<(usize, Vec<i32>)> = horiz.iter().map(|(x0, k)| (*x0, pil_fixed(k))).collect();
        for yy in 0..th {
            let row = &src[(yy + ybox_first) * w * channels..(yy + ybox_first + 1) * w * channels];
            for (xx, (xmin, k)) in fixed.iter().enumerate() {
                for c in 0..channels {
                    let mut ss: i32 = 1 << (PRECISION_BITS - 1);
                    for (x, &kv) in k.iter().enumerate() {
                        ss = ss.wrapping_add((row[(x + xmin) * channels + c] as i32).wrapping_mul(kv));
                    }
                    tmp[(yy * out_w + xx) * channels + c] = pil_clip8(ss);
                }
            }
        }
        (tmp, out_w, ybox_first)
    } else {
        (src.to_vec(), w, 0)
    };
    if !need_v {
        return Ok(tmp);
    }
    let mut out = vec![0u8; tw * out_h * channels];
    for (yy, (ymin, k)) in vert.iter().enumerate() {
        let k = pil_fixed(k);
        let ymin = ymin - row0;
        for xx in 0..tw {
            for c in 0..channels {
                let mut ss: i32 = 1 << (PRECISION_BITS - 1);
                for (y, &kv) in k.iter().enumerate() {
                    ss = ss.wrapping_add((tmp[((y + ymin) * tw + xx) * channels + c] as i32).wrapping_mul(kv));
                }
                out[(yy * tw + xx) * channels + c] = pil_clip8(ss);
            }
        }
    }
    Ok(out)
}

/// Pillow bicubic resize of an [`RgbImage`]: the image is quantised to 8 bit
/// (as saving it to PNG would), resized with [`pil_bicubic_u8`], and returned
/// as levels / 255. Bit-exact with Pillow on mode "RGB" images.
pub fn resize_pil_bicubic(img: &RgbImage, out_w: usize, out_h: usize) -> Result<RgbImage> {
    let rgb8 = img.to_rgb8();
    let out = pil_bicubic_u8(&rgb8, img.width, img.height, 3, out_w, out_h)?;
    let n = out_w * out_h;
    let mut data = vec![0f32; 3 * n];
    for i in 0..n {
        for c in 0..3 {
            data[c * n + i] = out[3 * i + c] as f32 / 255.0;
        }
    }
    RgbImage::new(out_w, out_h, data)
}

/// Pillow's float path (mode "F", per channel): f64 coefficients, f64
/// accumulation, f32 storage after each pass, no clamping or rounding.
pub fn resize_pil_bicubic_f32(img: &RgbImage, out_w: usize, out_h: usize) -> Result<RgbImage> {
    let (w, h) = (img.width, img.height);
    if img.data.len() != 3 * w * h {
        return Err(Error::Shape(format!("{} values for a 3x{h}x{w} image", img.data.len())));
    }
    check_sizes(w, h, out_w, out_h)?;
    let horiz = pil_coeffs(w, out_w);
    let vert = pil_coeffs(h, out_h);
    let mut data = Vec::with_capacity(3 * out_w * out_h);
    for c in 0..3 {
        let plane = &img.data[c * w * h..(c + 1) * w * h];
        let tmp: Vec<f32> = if out_w != w {
            let mut t = vec![0f32; out_w * h];
            for y in 0..h {
                for (xx, (xmin, k)) in horiz.iter().enumerate() {
                    let mut ss = 0.0f64;
                    for (x, &kv) in k.iter().enumerate() {
                        ss += plane[y * w + x + xmin] as f64 * kv;
                    }
                    t[y * out_w + xx] = ss as f32;
                }
            }
            t
        } else {
            plane.to_vec()
        };
        if out_h != h {
            for (ymin, k) in &vert {
                for xx in 0..out_w {
                    let mut ss = 0.0f64;
                    for (y, &kv) in k.iter().enumerate() {
                        ss += tmp[(y + ymin) * out_w + xx] as f64 * kv;
                    }
                    data.push(ss as f32);
                }
            }
        } else {
            data.extend(tmp);
        }
    }
    RgbImage::new(out_w, out_h, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matlab_weights_sum_to_one_and_mirror() {
        for (n, m) in [(16, 4), (4, 16), (7, 3), (5, 5)] {
            let taps = matlab_contributions(n, m, m as f64 / n as f64);
            for t in &taps {
                let s: f64 = t.iter().map(|p| p.1).sum();
                assert!((s - 1.0).abs() < 1e-12);
                assert!(t.iter().all(|p| p.0 < n));
            }
        }
    }

    #[test]
    fn identity_sizes_are_identity() {
        let img = RgbImage::new(5, 4, (0..60).map(|i| (i % 256) as f32 / 255.0).collect()).unwrap();
        assert_eq!(resize_pil_bicubic(&img, 5, 4).unwrap(), quantize_u8(&img));
        let same = imresize(&img, 5, 4, MatlabPrecision::Float).unwrap();
        for (a, b) in same.data.iter().zip(&img.data) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn constant_images_stay_constant() {
        let img = RgbImage::new(9, 7, vec![0.4; 189]).unwrap();
        for (w, h) in [(3, 2), (20, 31), (9, 2)] {
            for v in imresize(&img, w, h, MatlabPrecision::Float).unwrap().data {
                assert!((v - 0.4).abs() < 1e-6);
            }
            let q = to_level(0.4) as f32 / 255.0;
            assert!(resize_pil_bicubic(&img, w, h).unwrap().data.iter().all(|&v| v == q));
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        let img = RgbImage::new(2, 2, vec![0.0; 12]).unwrap();
        assert!(imresize(&img, 0, 3, MatlabPrecision::Float).is_err());
        assert!(imresize_scale(&img, -1.0, MatlabPrecision::Float).is_err());
        assert!(resize_pil_bicubic(&img, 3, 0).is_err());
        assert!(pil_bicubic_u8(&[0; 5], 2, 2, 1, 3, 3).is_err());
    }
}
