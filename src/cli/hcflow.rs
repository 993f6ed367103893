//! HCFlow subcommands: upscale (SR or rescaling reverse), downscale, nll.

use std::path::Path;

use wgsr::image_io::RgbImage;
use wgsr::models::hcflow::{HcFlow, Task};
use wgsr::weights::ModelDir;
use wgsr::{Error, GpuContext, Result};

use super::UpscaleArgs;

pub fn upscale(ctx: &GpuContext, dir: ModelDir, lr: &RgbImage, a: &UpscaleArgs) -> Result<RgbImage> {
    let mut m = HcFlow::load(dir)?;
    let heat = a.temperature.unwrap_or(m.default_heat());
    eprintln!(
        "HCFlow {} x{}: {}x{} -> {}x{}, heat {heat}, seed {}",
        if m.config().task == Task::Sr { "SR" } else { "rescaling" },
        m.scale(),
        lr.width,
        lr.height,
        lr.width * m.scale(),
        lr.height * m.scale(),
        a.seed
    );
    m.upscale(ctx, lr, Some(heat), a.seed)
}

/// Crop to a multiple of `s` (top-left anchored) when allowed, else refuse.
fn fit(img: RgbImage, s: usize, crop: bool, what: &str) -> Result<RgbImage> {
    if img.width % s == 0 && img.height % s == 0 {
        return Ok(img);
    }
    let (w, h) = (img.width / s * s, img.height / s * s);
    if !crop || w == 0 || h == 0 {
        return Err(Error::InvalidArgument(format!(
            "{what} is {}x{}, not a multiple of the model's factor {s}{}",
            img.width,
            img.height,
            if crop { " (too small to crop)" } else { "; pass --crop to crop it to a multiple" }
        )));
    }
    img.crop(0, 0, w, h)
}

/// 8-bit LR for .png, the value before quantisation for .npy.
pub fn downscale(ctx: &GpuContext, dir: ModelDir, hr: RgbImage, crop: bool, out: &Path) -> Result<RgbImage> {
    let mut m = HcFlow::load(dir)?;
    if m.config().task != Task::Rescale {
        return Err(Error::InvalidArgument("downscale needs an HCFlow rescaling model; this is an SR model".into()));
    }
    let hr = fit(hr, m.scale(), crop, "input")?;
    let (q, raw) = m.downscale(ctx, &hr)?;
    let npy = out.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    Ok(if npy { raw } else { q })
}

pub fn nll(ctx: &GpuContext, dir: ModelDir, hr: &RgbImage, lr: &RgbImage, seed: u64) -> Result<f64> {
    let mut m = HcFlow::load(dir)?;
    if m.config().task != Task::Sr {
        return Err(Error::InvalidArgument("nll needs an HCFlow SR model; this is a rescaling model".into()));
    }
    let s = m.scale();
    if hr.width % s != 0 || hr.height % s != 0 {
        return Err(Error::InvalidArgument(format!("HR is {}x{}, not a multiple of the model's factor {s}", hr.width, hr.height)));
    }
    m.nll(ctx, hr, lr, seed)
}
