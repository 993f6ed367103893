//! `wgsr eval`: the standard SR protocol on a folder of HR images. Each HR
//! is cropped (to a multiple of the scale, or centre-cropped to the fixed
//! size of SR3 / PixelCNN models) and degraded with MATLAB's bicubic imresize
//! on uint8 (the benchmark LR); SR models upscale that LR, rescaling models
//! downscale HR themselves and upscale their own LR. Scores: PSNR / SSIM
//! on BT.601 Y with a border crop equal to the scale, and consistency (MSE
//! between the LR and the bicubic-downscaled output). Bicubic upscaling of
//! the same LR is the baseline.

use std::path::{Path, PathBuf};
use std::time::Instant;

use wgsr::image_io::{write_atomic, RgbImage};
use wgsr::metrics::{consistency, psnr_y, ssim_y};
use wgsr::models::hcflow::{HcFlow, Task};
use wgsr::models::pixelcnn::{PixelCnn, PixelCnnOptions};
use wgsr::models::sr3::{Sr3, Sr3Options};
use wgsr::resize::{imresize, imresize_scale, MatlabPrecision};
use wgsr::weights::ModelDir;
use wgsr::{Error, GpuContext, Result};

use super::model::Family;

pub struct EvalArgs<'a> {
    pub hr_dir: &'a Path,
    pub scale: Option<usize>,
    pub temperature: Option<f32>,
    pub seed: u64,
    pub out: Option<&'a Path>,
    /// SR3 sampling (steps, sampler); ignored by the other families.
    pub sr3: Sr3Options,
}

/// A loaded model of any family, as eval drives it.
enum Model {
    Hcflow(HcFlow),
    Sr3(Sr3),
    PixelCnn(PixelCnn),
}

impl Model {
    fn load(ctx: &GpuContext, dir: ModelDir, fam: Family) -> Result<Self> {
        Ok(match fam {
            Family::Hcflow => Model::Hcflow(HcFlow::load(dir)?),
            Family::Sr3 => Model::Sr3(Sr3::load(ctx, &dir)?),
            Family::PixelCnn => Model::PixelCnn(PixelCnn::load(ctx, &dir)?),
        })
    }

    fn scale(&self) -> usize {
        match self {
            Model::Hcflow(m) => m.scale(),
            Model::Sr3(m) => m.config().hr_size / m.config().lr_size,
            Model::PixelCnn(m) => m.config().scale,
        }
    }

    /// The HR region evaluated: a multiple of the scale, or the model's fixed size (centred).
    fn fit(&self, hr: &RgbImage) -> Result<RgbImage> {
        let fixed = match self {
            Model::Hcflow(_) => None,
            Model::Sr3(m) => Some((m.config().hr_size, m.config().hr_size)),
            Model::PixelCnn(m) => Some((m.config().hr_w(), m.config().hr_h())),
        };
        let s = self.scale();
        let (w, h) = fixed.unwrap_or((hr.width / s * s, hr.height / s * s));
        if w == 0 || h == 0 || w > hr.width || h > hr.height {
            return Err(Error::InvalidArgument(format!("image {}x{} is smaller than the model's {w}x{h}", hr.width, hr.height)));
        }
        let (x0, y0) = if fixed.is_some() { ((hr.width - w) / 2, (hr.height - h) / 2) } else { (0, 0) };
        hr.crop(x0, y0, w, h)
    }

    /// (LR the model saw, its output) for the benchmark LR of `hr`.
    fn run(&mut self, ctx: &GpuContext, hr: &RgbImage, bench_lr: &RgbImage, a: &EvalArgs) -> Result<(RgbImage, RgbImage)> {
        match self {
            Model::Hcflow(m) => {
                let heat = a.temperature.unwrap_or(m.default_heat());
                if m.config().task == Task::Rescale {
                    let (lr, _) = m.downscale(ctx, hr)?;
                    let sr = m.upscale(ctx, &lr, Some(heat), a.seed)?;
                    Ok((lr, sr))
                } else {
                    Ok((bench_lr.clone(), m.upscale(ctx, bench_lr, Some(heat), a.seed)?))
                }
            }
            Model::Sr3(m) => {
                let opts = Sr3Options { seed: a.seed, ..a.sr3.clone() };
                Ok((bench_lr.clone(), m.upscale(ctx, bench_lr, &opts, &mut |_, _| {})?))
            }
            Model::PixelCnn(m) => {
                let d = PixelCnnOptions::default();
                let opts = PixelCnnOptions { temperature: a.temperature.unwrap_or(d.temperature), seed: a.seed, samples: 1, fast: true };
                let sr = m.upscale(ctx, bench_lr, &opts, &mut |_, _| {})?.remove(0);
                Ok((bench_lr.clone(), sr))
            }
        }
    }
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

fn images(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::Io { path: dir.display().to_string(), source: e })?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        })
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(Error::InvalidArgument(format!("{}: no .png/.jpg images to evaluate", dir.display())));
    }
    Ok(v)
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

pub fn run(ctx: &GpuContext, dir: ModelDir, fam: Family, a: &EvalArgs) -> Result<()> {
    let files = images(a.hr_dir)?;
    if let Some(o) = a.out {
        std::fs::create_dir_all(o).map_err(|e| Error::Io { path: o.display().to_string(), source: e })?;
    }
    let mut m = Model::load(ctx, dir, fam)?;
    let s = m.scale();
    if let Some(want) = a.scale {
        if want != s {
            return Err(Error::InvalidArgument(format!("--scale {want} does not match the model's factor {s}")));
        }
    }
    eprintln!("evaluating {} images with a {fam:?} model, x{s}, seed {}", files.len(), a.seed);
    let mut rows = Vec::new();
    for f in &files {
        let hr = m.fit(&RgbImage::load(f)?).map_err(|e| Error::InvalidArgument(format!("{}: {e}", f.display())))?;
        let (w, h) = (hr.width, hr.height);
        let bench_lr = imresize_scale(&hr, 1.0 / s as f64, MatlabPrecision::Uint8)?;
        let t = Instant::now();
        let (lr, sr) = m.run(ctx, &hr, &bench_lr, a)?;
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
