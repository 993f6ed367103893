//! `wgsr eval`: the standard SR protocol on a folder of HR images. Each HR
//! is cropped (to a multiple of the scale, or centre-cropped to the fixed
//! size of SR3 / PixelCNN models) and degraded with MATLAB's bicubic imresize
//! on uint8 (the benchmark LR); SR models upscale that LR, rescaling models
//! downscale HR themselves and upscale their own LR. Scores: PSNR / SSIM
//! on BT.601 Y with a border crop equal to the scale, and consistency (MSE
//! between the LR and the bicubic-downscaled output). Bicubic upscaling of
//! the same LR is the baseline.

use std::path::Path;
use std::time::Instant;

use wgsr::image_io::{write_atomic, RgbImage};
use wgsr::metrics::{consistency, psnr_y, ssim_y};
use wgsr::models::hcflow::hcd::HcdOptions;
use wgsr::models::{Model, UpscaleOptions};
use wgsr::resize::{imresize, imresize_scale, MatlabPrecision};
use wgsr::{Error, GpuContext, Result, ResultExt};

pub struct EvalArgs<'a> {
    pub hr_dir: &'a Path,
    pub scale: Option<usize>,
    pub out: Option<&'a Path>,
    pub opts: UpscaleOptions,
    /// Rescaling models: downscale with HCD (its seed is `opts.seed`).
    pub hcd: Option<HcdOptions>,
}

/// The HR region evaluated: a multiple of the scale, or the model's fixed size (centred).
fn fit(m: &dyn Model, hr: &RgbImage) -> Result<RgbImage> {
    let s = m.scale();
    let fixed = m.fixed_lr_size().map(|(w, h)| (w * s, h * s));
    let (w, h) = fixed.unwrap_or((hr.width / s * s, hr.height / s * s));
    if w == 0 || h == 0 || w > hr.width || h > hr.height {
        return Err(Error::InvalidArgument(format!("image {}x{} is smaller than the model's {w}x{h}", hr.width, hr.height)));
    }
    let (x0, y0) = if fixed.is_some() { ((hr.width - w) / 2, (hr.height - h) / 2) } else { (0, 0) };
    hr.crop(x0, y0, w, h)
}

/// (LR the model saw, its output) for the benchmark LR of `hr`: rescaling
/// models downscale HR themselves, SR models upscale the benchmark LR.
fn run_one(m: &mut dyn Model, ctx: &GpuContext, hr: &RgbImage, bench_lr: &RgbImage, opts: &UpscaleOptions, hcd: Option<&HcdOptions>) -> Result<(RgbImage, RgbImage)> {
    let lr = match hcd {
        Some(o) => m.downscale_hcd(ctx, hr, &HcdOptions { seed: opts.seed, ..o.clone() }, &mut |_, _| {})?.lr,
        None if m.can_downscale() => m.downscale(ctx, hr)?.lr,
        None => bench_lr.clone(),
    };
    let sr = m.upscale(ctx, &lr, &UpscaleOptions { samples: Some(1), ..opts.clone() }, &mut |_| {})?.remove(0);
    Ok((lr, sr))
}

struct Row {
    name: String,
    psnr: f64,
    ssim: f64,
    cons: f64,
    bic_psnr: f64,
    bic_ssim: f64,
    secs: f64,
}

/// bicubic | model | HR, side by side.
fn side_by_side(parts: &[&RgbImage]) -> Result<RgbImage> {
    let h = parts[0].height;
    let w: usize = parts.iter().map(|p| p.width).sum();
    let mut data = vec![0f32; 3 * w * h];
    let mut x0 = 0;
    for p in parts {
        for c in 0..3 {
            for y in 0..h {
                let src = &p.data[c * p.width * p.height + y * p.width..][..p.width];
                data[c * w * h + y * w + x0..][..p.width].copy_from_slice(src);
            }
        }
        x0 += p.width;
    }
    RgbImage::new(w, h, data)
}

pub fn run(ctx: &GpuContext, mut m: Box<dyn Model>, a: &EvalArgs) -> Result<()> {
    let files = super::files::images_in(a.hr_dir)?;
    let s = m.scale();
    if let Some(want) = a.scale {
        if want != s {
            return Err(Error::InvalidArgument(format!("--scale {want} does not match the model's factor {s}")));
        }
    }
    if a.hcd.is_some() && !m.can_downscale() {
        return Err(Error::InvalidArgument(format!("--hcd needs an HCFlow rescaling model; this is {}", m.describe())));
    }
    let how = if a.hcd.is_some() { ", downscaling with HCD" } else { "" };
    eprintln!("evaluating {} images with {}, seed {}{how}", files.len(), m.describe(), a.opts.seed);
    let mut rows = Vec::new();
    for f in &files {
        let hr = fit(m.as_ref(), &RgbImage::load(f)?).with_context(|| f.display())?;
        let (w, h) = (hr.width, hr.height);
        let bench_lr = imresize_scale(&hr, 1.0 / s as f64, MatlabPrecision::Uint8)?;
        let t = Instant::now();
        let (lr, sr) = run_one(m.as_mut(), ctx, &hr, &bench_lr, &a.opts, a.hcd.as_ref())?;
        let secs = t.elapsed().as_secs_f64();
        let bic = imresize(&bench_lr, w, h, MatlabPrecision::Uint8)?;
        let row = Row {
            name: f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            psnr: psnr_y(&sr, &hr, s)?,
            ssim: ssim_y(&sr, &hr, s)?,
            cons: consistency(&lr, &sr)?,
            bic_psnr: psnr_y(&bic, &hr, s)?,
            bic_ssim: ssim_y(&bic, &hr, s)?,
            secs,
        };
        if let Some(o) = a.out {
            // Created with the first result, so a run that fails early leaves no empty folder.
            std::fs::create_dir_all(o).map_err(|e| Error::Io { path: o.display().to_string(), source: e })?;
            let stem = f.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let img = side_by_side(&[&bic, &sr, &hr])?;
            write_atomic(&o.join(format!("{stem}_bicubic_model_hr.png")), &img.encode_png()?)?;
        }
        rows.push(row);
    }
    let nw = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(5);
    println!("{:<nw$} {:>9} {:>8} {:>12} {:>9} {:>8} {:>9}", "image", "PSNR-Y", "SSIM-Y", "consistency", "bic PSNR", "bic SSIM", "seconds");
    for r in &rows {
        println!(
            "{:<nw$} {:>9.3} {:>8.4} {:>12.3e} {:>9.3} {:>8.4} {:>9.3}",
            r.name, r.psnr, r.ssim, r.cons, r.bic_psnr, r.bic_ssim, r.secs
        );
    }
    let n = rows.len() as f64;
    let mean = |f: fn(&Row) -> f64| rows.iter().map(f).sum::<f64>() / n;
    println!(
        "{:<nw$} {:>9.3} {:>8.4} {:>12.3e} {:>9.3} {:>8.4} {:>9.3}",
        "mean",
        mean(|r| r.psnr),
        mean(|r| r.ssim),
        mean(|r| r.cons),
        mean(|r| r.bic_psnr),
        mean(|r| r.bic_ssim),
        mean(|r| r.secs)
    );
    Ok(())
}
