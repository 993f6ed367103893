//! Pixel Recursive SR upscaling: temperature, seeded samples, progress bar.
//! With --samples N > 1, OUT gets `_0`, `_1`, ... before its extension.

use std::path::{Path, PathBuf};

use wgsr::image_io::RgbImage;
use wgsr::models::pixelcnn::{PixelCnn, PixelCnnOptions};
use wgsr::weights::ModelDir;
use wgsr::{GpuContext, Result};

use super::{progress, UpscaleArgs, SR3_FLAGS};

/// The output path of sample `i` of `n`.
pub fn sample_path(out: &Path, i: usize, n: usize) -> PathBuf {
    if n == 1 {
        return out.to_path_buf();
    }
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = out.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!("{stem}_{i}.{ext}"))
}

pub fn upscale(ctx: &GpuContext, dir: ModelDir, lr: &RgbImage, a: &UpscaleArgs) -> Result<Vec<RgbImage>> {
    a.reject_flags("PixelCNN", &SR3_FLAGS)?;
    let samples = a.samples.unwrap_or(1);
    let defaults = PixelCnnOptions::default();
    let opts = PixelCnnOptions { temperature: a.temperature.unwrap_or(defaults.temperature), seed: a.seed, samples, fast: true };
    let mut m = PixelCnn::load(ctx, &dir)?;
    let cfg = m.config();
    eprintln!(
        "PixelCNN {}x{} -> {}x{}: {samples} sample(s), temperature {}, seed {}",
        lr.width,
        lr.height,
        cfg.hr_w(),
        cfg.hr_h(),
        opts.temperature,
        a.seed
    );
    let pb = progress::bar(3 * cfg.hr_w() * cfg.hr_h(), "sampling sub-pixels");
    let out = m.upscale(ctx, lr, &opts, &mut |i, _| pb.set_position(i as u64));
    pb.finish_and_clear();
    out
}
