//! SR3 upscaling: sampler choice, optional x_T from a .npy, progress bar.

use std::path::Path;

use wgsr::image_io::{read_npy, RgbImage};
use wgsr::models::sr3::{Sampler, Sr3, Sr3Options};
use wgsr::weights::ModelDir;
use wgsr::{Error, GpuContext, Result};

use super::{progress, SamplerArg, UpscaleArgs};

/// x_T from a float32 (H, W, 3) .npy, as the CHW order the model takes.
fn init_noise(path: &Path, size: usize) -> Result<Vec<f32>> {
    let (shape, data) = read_npy(path)?;
    if shape != [size, size, 3] {
        return Err(Error::InvalidArgument(format!("{}: --init-noise must have shape ({size}, {size}, 3), found {shape:?}", path.display())));
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(format!("{}: --init-noise has a non-finite value at element {i}", path.display())));
    }
    let n = size * size;
    let mut chw = vec![0f32; 3 * n];
    for (i, px) in data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            chw[c * n + i] = px[c];
        }
    }
    Ok(chw)
}

/// The sampler the flags ask for (DDPM unless --sampler ddim).
pub fn sampler(s: Option<SamplerArg>, eta: Option<f32>) -> Result<Sampler> {
    let sampler = match (s, eta) {
        (Some(SamplerArg::Ddim), eta) => Sampler::Ddim { eta: eta.unwrap_or(0.0) },
        (_, Some(_)) => return Err(Error::InvalidArgument("--eta applies to --sampler ddim only".into())),
        _ => Sampler::Ddpm,
    };
    if let Sampler::Ddim { eta } = sampler {
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(Error::InvalidArgument(format!("--eta must be >= 0, got {eta}")));
        }
    }
    Ok(sampler)
}

pub fn upscale(ctx: &GpuContext, dir: ModelDir, lr: &RgbImage, a: &UpscaleArgs) -> Result<RgbImage> {
    a.reject_flags("SR3", &["--temperature", "--samples"])?;
    let sampler = sampler(a.sampler, a.eta)?;
    let mut m = Sr3::load(ctx, &dir)?;
    let hr = m.config().hr_size;
    let init = a.init_noise.as_deref().map(|p| init_noise(p, hr)).transpose()?;
    let opts = Sr3Options { steps: a.steps, sampler, seed: a.seed, init_noise: init };
    let n = m.steps_for(&opts)?.len();
    eprintln!("SR3 {}x{} -> {hr}x{hr}: {n} {sampler:?} steps, seed {}", lr.width, lr.height, a.seed);
    let pb = progress::bar(n, "denoising");
    let out = m.upscale(ctx, lr, &opts, &mut |i, _| pb.set_position(i as u64));
    pb.finish_and_clear();
    out
}
