//! Image quality metrics for super-resolution evaluation, on the CPU in f64.
//!
//! Conventions (the standard SR protocol of BasicSR / the HCFlow code):
//!
//! * Pixel values are taken from the [`RgbImage`] `[0, 1]` floats and scaled
//!   to `[0, 255]` in f64 (`x as f64 * 255`); data range 255. Quantise first
//!   with [`crate::resize::quantize_u8`] to evaluate what a PNG would hold.
//! * `crop` pixels are removed from every side before measuring (use the SR
//!   scale, as BasicSR's `crop_border`).
//! * Y channel: ITU-R BT.601 studio-swing luma as MATLAB `rgb2ycbcr`:
//!   `Y = 16 + 65.481 R + 128.553 G + 24.966 B`, R, G, B in `[0, 1]`,
//!   Y in `[16, 235]`.
//! * PSNR: `10 log10(255^2 / MSE)` with the MSE over all channels jointly
//!   (RGB) or over Y; identical images give `+inf`. Equals
//!   `skimage.metrics.peak_signal_noise_ratio(data_range=255)`.
//! * SSIM: 11x11 Gaussian window (sigma 1.5, separable, normalised),
//!   K1 = 0.01, K2 = 0.03, population (co)variances, mean of the SSIM map
//!   over the 'valid' region; RGB = mean of the per-channel SSIMs. Equals
//!   BasicSR's `calculate_ssim` and `skimage.metrics.structural_similarity(
//!   gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
//!   data_range=255)` (tested to 1e-6 against the latter on real images).
//! * MS-SSIM: Wang, Simoncelli & Bovik 2003, as implemented by
//!   `pytorch_msssim.ms_ssim` (VainF/pytorch-msssim, the common
//!   implementation): 5 scales, weights `[0.0448, 0.2856, 0.3001, 0.2363,
//!   0.1333]`, the SSIM above at every scale, contrast-structure terms of
//!   scales 1-4 and the full SSIM of scale 5 clamped at 0 (relu), 2x2
//!   average pooling between scales (`avg_pool2d(kernel 2, stride 2,
//!   padding = size % 2)` with zero padding counted, so odd sizes round up),
//!   the weighted product per channel, then the mean over channels. Every
//!   scale must be at least 11 pixels (a side of at least 161 after the crop).
//! * Consistency (Dahl et al. 2017, Pixel Recursive Super Resolution): MSE in
//!   `[0, 1]` units between the LR image and the SR image downscaled to the
//!   LR size with MATLAB-style bicubic `imresize` (f64, antialiased, no
//!   rounding; [`crate::resize::imresize_plane`], the f64 core of
//!   [`crate::resize::imresize`] with `MatlabPrecision::Float`).

use crate::image_io::RgbImage;
use crate::resize::imresize_plane;
use crate::{Error, Result};

/// SSIM window size and Gaussian sigma.
pub const SSIM_WINDOW: usize = 11;
pub const SSIM_SIGMA: f64 = 1.5;
/// MS-SSIM scale weights (Wang et al. 2003).
pub const MS_SSIM_WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];

/// A single f64 channel, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f64>,
}

impl Plane {
    fn crop(&self, c: usize) -> Plane {
        let (w, h) = (self.width - 2 * c, self.height - 2 * c);
        let mut data = Vec::with_capacity(w * h);
        for y in c..c + h {
            data.extend_from_slice(&self.data[y * self.width + c..y * self.width + c + w]);
        }
        Plane { width: w, height: h, data }
    }
}

fn check_image(img: &RgbImage, what: &str) -> Result<()> {
    if img.data.len() != 3 * img.width * img.height {
        return Err(Error::Shape(format!(
            "{what}: {} values for a 3x{}x{} image",
            img.data.len(),
            img.height,
            img.width
        )));
    }
    Ok(())
}

/// Check both images have one size and survive the crop with at least
/// `min_side` pixels per side.
fn check_pair(a: &RgbImage, b: &RgbImage, crop: usize, min_side: usize, metric: &str) -> Result<()> {
    check_image(a, metric)?;
    check_image(b, metric)?;
    if a.width != b.width || a.height != b.height {
        return Err(Error::Shape(format!(
            "{metric}: image sizes differ ({}x{} vs {}x{})",
            a.width, a.height, b.width, b.height
        )));
    }
    let (w, h) = (a.width.saturating_sub(2 * crop), a.height.saturating_sub(2 * crop));
    if w < min_side.max(1) || h < min_side.max(1) {
        return Err(Error::Shape(format!(
            "{metric}: a {}x{} image cropped by {crop} on each side is {w}x{h}, \
             smaller than the {min_side}x{min_side} this metric needs",
            a.width, a.height
        )));
    }
    Ok(())
}

/// The three RGB channels on the [0, 255] scale, cropped.
pub fn rgb_planes(img: &RgbImage, crop: usize) -> Vec<Plane> {
    let n = img.width * img.height;
    (0..3)
        .map(|c| {
            let p = Plane {
                width: img.width,
                height: img.height,
                data: img.data[c * n..(c + 1) * n].iter().map(|&v| v as f64 * 255.0).collect(),
            };
            if crop > 0 {
                p.crop(crop)
            } else {
                p
            }
        })
        .collect()
}

/// BT.601 luma (MATLAB `rgb2ycbcr`), Y in [16, 235], cropped.
pub fn y_plane(img: &RgbImage, crop: usize) -> Plane {
    let n = img.width * img.height;
    let d = &img.data;
    let p = Plane {
        width: img.width,
        height: img.height,
        data: (0..n)
            .map(|i| 16.0 + 65.481 * d[i] as f64 + 128.553 * d[n + i] as f64 + 24.966 * d[2 * n + i] as f64)
            .collect(),
    };
    if crop > 0 {
        p.crop(crop)
    } else {
        p
    }
}

fn psnr_planes(a: &[Plane], b: &[Plane]) -> f64 {
    let mut se = 0.0;
    let mut n = 0usize;
    for (pa, pb) in a.iter().zip(b) {
        for (x, y) in pa.data.iter().zip(&pb.data) {
            se += (x - y) * (x - y);
        }
        n += pa.data.len();
    }
    let mse = se / n as f64;
    10.0 * (255.0 * 255.0 / mse).log10()
}

/// PSNR in dB over all three channels, data range 255, after a border crop.
pub fn psnr_rgb(a: &RgbImage, b: &RgbImage, crop: usize) -> Result<f64> {
    check_pair(a, b, crop, 1, "PSNR")?;
    Ok(psnr_planes(&rgb_planes(a, crop), &rgb_planes(b, crop)))
}

/// PSNR in dB on the BT.601 Y channel, data range 255, after a border crop.
pub fn psnr_y(a: &RgbImage, b: &RgbImage, crop: usize) -> Result<f64> {
    check_pair(a, b, crop, 1, "PSNR-Y")?;
    Ok(psnr_planes(&[y_plane(a, crop)], &[y_plane(b, crop)]))
}

fn gaussian_window() -> [f64; SSIM_WINDOW] {
    let mut g = [0f64; SSIM_WINDOW];
    let r = (SSIM_WINDOW / 2) as f64;
    for (i, v) in g.iter_mut().enumerate() {
        let x = i as f64 - r;
        *v = (-(x * x) / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp();
    }
    let s: f64 = g.iter().sum();
    for v in &mut g {
        *v /= s;
    }
    g
}

/// Separable 'valid' filtering with the Gaussian window.
fn filter_valid(p: &[f64], w: usize, h: usize, g: &[f64; SSIM_WINDOW]) -> Vec<f64> {
    let k = SSIM_WINDOW;
    let (ow, oh) = (w - k + 1, h - k + 1);
    let mut t = vec![0f64; ow * h];
    for y in 0..h {
        let row = &p[y * w..(y + 1) * w];
        for x in 0..ow {
            let mut s = 0.0;
            for i in 0..k {
                s += g[i] * row[x + i];
            }
            t[y * ow + x] = s;
        }
    }
    let mut out = vec![0f64; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            let mut s = 0.0;
            for i in 0..k {
                s += g[i] * t[(y + i) * ow + x];
            }
            out[y * ow + x] = s;
        }
    }
    out
}

/// Mean SSIM and mean contrast-structure term of one plane pair ('valid'
/// Gaussian filtering, data range 255). The planes must be at least 11x11.
pub fn ssim_plane(a: &Plane, b: &Plane) -> (f64, f64) {
    let g = gaussian_window();
    let (w, h) = (a.width, a.height);
    let c1 = (0.01f64 * 255.0).powi(2);
    let c2 = (0.03f64 * 255.0).powi(2);
    let aa: Vec<f64> = a.data.iter().map(|x| x * x).collect();
    let bb: Vec<f64> = b.data.iter().map(|x| x * x).collect();
    let ab: Vec<f64> = a.data.iter().zip(&b.data).map(|(x, y)| x * y).collect();
    let mu1 = filter_valid(&a.data, w, h, &g);
    let mu2 = filter_valid(&b.data, w, h, &g);
    let f11 = filter_valid(&aa, w, h, &g);
    let f22 = filter_valid(&bb, w, h, &g);
    let f12 = filter_valid(&ab, w, h, &g);
    let (mut ssim, mut cs) = (0.0, 0.0);
    for i in 0..mu1.len() {
        let (m1, m2) = (mu1[i], mu2[i]);
        let s11 = f11[i] - m1 * m1;
        let s22 = f22[i] - m2 * m2;
        let s12 = f12[i] - m1 * m2;
        let csv = (2.0 * s12 + c2) / (s11 + s22 + c2);
        cs += csv;
        ssim += (2.0 * m1 * m2 + c1) / (m1 * m1 + m2 * m2 + c1) * csv;
    }
    let n = mu1.len() as f64;
    (ssim / n, cs / n)
}

/// SSIM, mean over the three RGB channels, after a border crop.
pub fn ssim_rgb(a: &RgbImage, b: &RgbImage, crop: usize) -> Result<f64> {
    check_pair(a, b, crop, SSIM_WINDOW, "SSIM")?;
    let (pa, pb) = (rgb_planes(a, crop), rgb_planes(b, crop));
    Ok(pa.iter().zip(&pb).map(|(x, y)| ssim_plane(x, y).0).sum::<f64>() / 3.0)
}

/// SSIM on the BT.601 Y channel, after a border crop.
pub fn ssim_y(a: &RgbImage, b: &RgbImage, crop: usize) -> Result<f64> {
    check_pair(a, b, crop, SSIM_WINDOW, "SSIM-Y")?;
    Ok(ssim_plane(&y_plane(a, crop), &y_plane(b, crop)).0)
}

/// `avg_pool2d(kernel 2, stride 2, padding = size % 2, count_include_pad)`.
fn avg_pool2(p: &Plane) -> Plane {
    let (ph, pw) = (p.height % 2, p.width % 2);
    let (oh, ow) = ((p.height + 2 * ph - 2) / 2 + 1, (p.width + 2 * pw - 2) / 2 + 1);
    let at = |y: isize, x: isize| -> f64 {
        if y < 0 || x < 0 || y >= p.height as isize || x >= p.width as isize {
            0.0
        } else {
            p.data[y as usize * p.width + x as usize]
        }
    };
    let mut data = Vec::with_capacity(ow * oh);
    for y in 0..oh {
        for x in 0..ow {
            let (y0, x0) = ((2 * y) as isize - ph as isize, (2 * x) as isize - pw as isize);
            data.push((at(y0, x0) + at(y0, x0 + 1) + at(y0 + 1, x0) + at(y0 + 1, x0 + 1)) / 4.0);
        }
    }
    Plane { width: ow, height: oh, data }
}

/// Smallest side MS-SSIM accepts: every one of the 5 scales must hold an
/// 11x11 window (`ceil(n / 16) >= 11`).
pub const MS_SSIM_MIN_SIDE: usize = 161;

/// MS-SSIM of one plane pair (see the module docs for the convention).
pub fn ms_ssim_plane(a: &Plane, b: &Plane) -> f64 {
    let (mut a, mut b) = (a.clone(), b.clone());
    let mut v = 1.0;
    for (lvl, &w) in MS_SSIM_WEIGHTS.iter().enumerate() {
        let (s, cs) = ssim_plane(&a, &b);
        if lvl < MS_SSIM_WEIGHTS.len() - 1 {
            v *= cs.max(0.0).powf(w);
            a = avg_pool2(&a);
            b = avg_pool2(&b);
        } else {
            v *= s.max(0.0).powf(w);
        }
    }
    v
}

/// MS-SSIM, mean over the three RGB channels, after a border crop.
pub fn ms_ssim_rgb(a: &RgbImage, b: &RgbImage, crop: usize) -> Result<f64> {
    check_pair(a, b, crop, MS_SSIM_MIN_SIDE, "MS-SSIM")?;
    let (pa, pb) = (rgb_planes(a, crop), rgb_planes(b, crop));
    Ok(pa.iter().zip(&pb).map(|(x, y)| ms_ssim_plane(x, y)).sum::<f64>() / 3.0)
}

/// MS-SSIM on the BT.601 Y channel, after a border crop.
pub fn ms_ssim_y(a: &RgbImage, b: &RgbImage, crop: usize) -> Result<f64> {
    check_pair(a, b, crop, MS_SSIM_MIN_SIDE, "MS-SSIM-Y")?;
    Ok(ms_ssim_plane(&y_plane(a, crop), &y_plane(b, crop)))
}

/// Mean squared error in [0, 1] units over all three channels.
pub fn mse(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    check_pair(a, b, 0, 1, "MSE")?;
    let se: f64 = a.data.iter().zip(&b.data).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum();
    Ok(se / a.data.len() as f64)
}

/// Consistency (Pixel Recursive SR): MSE in [0, 1] between `lr` and `sr`
/// bicubically downscaled (MATLAB `imresize`, f64, antialiased) to the LR
/// size. `sr` must be an integer multiple of `lr` in both dimensions.
pub fn consistency(lr: &RgbImage, sr: &RgbImage) -> Result<f64> {
    check_image(lr, "consistency")?;
    check_image(sr, "consistency")?;
    if lr.width == 0 || lr.height == 0 || !sr.width.is_multiple_of(lr.width) || !sr.height.is_multiple_of(lr.height) {
        return Err(Error::Shape(format!(
            "consistency: the SR image ({}x{}) must be an integer multiple of the LR image ({}x{})",
            sr.width, sr.height, lr.width, lr.height
        )));
    }
    // f64 end to end (the RgbImage route would round the downscale to f32).
    let (n_sr, n_lr) = (sr.width * sr.height, lr.width * lr.height);
    let (sw, sh) = (lr.width as f64 / sr.width as f64, lr.height as f64 / sr.height as f64);
    let mut se = 0.0;
    for c in 0..3 {
        let plane: Vec<f64> = sr.data[c * n_sr..(c + 1) * n_sr].iter().map(|&v| v as f64).collect();
        let down = imresize_plane(&plane, sr.width, sr.height, lr.width, lr.height, sw, sh, false)?;
        for (d, &l) in down.iter().zip(&lr.data[c * n_lr..(c + 1) * n_lr]) {
            se += (l as f64 - d) * (l as f64 - d);
        }
    }
    Ok(se / (3 * n_lr) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize, k: f32) -> RgbImage {
        RgbImage::new(w, h, (0..3 * w * h).map(|i| (i as f32 * k).sin() * 0.5 + 0.5).collect()).unwrap()
    }

    #[test]
    fn identical_images() {
        let a = ramp(40, 30, 0.37);
        assert_eq!(psnr_rgb(&a, &a, 2).unwrap(), f64::INFINITY);
        assert!((ssim_rgb(&a, &a, 2).unwrap() - 1.0).abs() < 1e-12);
        assert!((ssim_y(&a, &a, 0).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn errors() {
        let a = ramp(40, 30, 0.37);
        let b = ramp(30, 40, 0.37);
        assert!(matches!(psnr_rgb(&a, &b, 0), Err(Error::Shape(_))));
        assert!(ssim_rgb(&a, &a, 10).is_err()); // 20x10 after crop < 11
        assert!(psnr_y(&a, &a, 15).is_err());
        assert!(ms_ssim_rgb(&a, &a, 0).is_err());
        assert!(consistency(&ramp(7, 7, 0.1), &a).is_err());
    }

    #[test]
    fn avg_pool_odd() {
        let p = Plane { width: 3, height: 1, data: vec![4.0, 8.0, 12.0] };
        // padding (1, 1): windows rows [-1, 0], cols [-1, 0] and [1, 2].
        let q = avg_pool2(&p);
        assert_eq!((q.width, q.height), (2, 1));
        assert_eq!(q.data, vec![1.0, 5.0]);
    }
}
