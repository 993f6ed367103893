//! Mapping `upscale` / `eval` flags onto the library's [`UpscaleOptions`]:
//! a flag whose setting the model's family does not read is refused, with
//! the flag's name, before any GPU work.

use std::path::Path;

use wgsr::image_io::read_npy;
use wgsr::models::registry::{Setting, UpscaleOptions};
use wgsr::models::sr3::Sampler;
use wgsr::models::tiling::TilePolicy;
use wgsr::models::Model;
use wgsr::{Error, Result};

use super::{SamplerArg, TileArgs};

/// Temperatures above this are noise, not samples (HCFlow heat and PixelCNN
/// softmax temperature are useful around 0..1).
const MAX_TEMPERATURE: f32 = 10.0;
/// PixelCNN samples per run: each is a whole sampling pass, drawn in one batch.
pub const MAX_SAMPLES: usize = wgsr::models::pixelcnn::MAX_SAMPLES;

/// The sampling flags `upscale` and `eval` share.
pub struct SamplingFlags<'a> {
    pub temperature: Option<f32>,
    pub seed: u64,
    pub steps: Option<usize>,
    pub sampler: Option<SamplerArg>,
    pub eta: Option<f32>,
    pub init_noise: Option<&'a Path>,
    pub samples: Option<usize>,
    pub ensemble: Option<usize>,
    pub tiling: TileArgs,
}

impl TileArgs {
    /// (flag, whether it was given).
    fn given(&self) -> [(&'static str, bool); 3] {
        [("--tile", self.tile.is_some()), ("--tile-margin", self.tile_margin.is_some()), ("--max-memory", self.max_memory.is_some())]
    }

    /// The policy the flags ask for (`--max-memory` in MiB).
    pub fn policy(&self) -> Result<TilePolicy> {
        if self.tile == Some(0) {
            return Err(Error::InvalidArgument("--tile must be at least 1 (LR pixels)".into()));
        }
        let max_memory = match self.max_memory {
            Some(0) => return Err(Error::InvalidArgument("--max-memory must be at least 1 (MiB)".into())),
            Some(m) => Some(m.checked_mul(1 << 20).ok_or_else(|| Error::InvalidArgument(format!("--max-memory {m} MiB is too large")))?),
            None => None,
        };
        Ok(TilePolicy { tile: self.tile, margin: self.tile_margin, max_memory })
    }

    /// The policy for `model`, refusing the flags when its family does not tile.
    pub fn policy_for(&self, model: &dyn Model) -> Result<TilePolicy> {
        let fam = model.family();
        let given: Vec<&str> = self.given().into_iter().filter(|(_, g)| *g).map(|(f, _)| f).collect();
        if !given.is_empty() && !fam.settings.contains(&Setting::Tiling) {
            let size = model.fixed_lr_size().map(|(w, h)| format!(" (it takes a fixed {w}x{h} LR)")).unwrap_or_default();
            return Err(Error::InvalidArgument(format!(
                "{} do(es) not apply to {} models: tiled inference is for HCFlow models only{size}",
                given.join(", "),
                fam.title
            )));
        }
        self.policy()
    }
}

impl SamplingFlags<'_> {
    /// (flag, the setting it maps to, whether it was given).
    fn given(&self) -> [(&'static str, Setting, bool); 7] {
        [
            ("--temperature", Setting::Temperature, self.temperature.is_some()),
            ("--steps", Setting::Steps, self.steps.is_some()),
            ("--sampler", Setting::Sampler, self.sampler.is_some()),
            ("--eta", Setting::Sampler, self.eta.is_some()),
            ("--init-noise", Setting::InitNoise, self.init_noise.is_some()),
            ("--samples", Setting::Samples, self.samples.is_some()),
            ("--ensemble", Setting::Ensemble, self.ensemble.is_some()),
        ]
    }

    /// The options for `model`, refusing flags its family does not read.
    pub fn options(&self, model: &dyn Model) -> Result<UpscaleOptions> {
        let fam = model.family();
        let refused: Vec<&str> = self.given().into_iter().filter(|(_, s, g)| *g && !fam.settings.contains(s)).map(|(f, _, _)| f).collect();
        if !refused.is_empty() {
            return Err(Error::InvalidArgument(format!("{} do(es) not apply to {} models", refused.join(", "), fam.title)));
        }
        let tiling = self.tiling.policy_for(model)?;
        if let Some(t) = self.temperature {
            if !(0.0..=MAX_TEMPERATURE).contains(&t) {
                return Err(Error::InvalidArgument(format!("--temperature must be in 0..={MAX_TEMPERATURE}, got {t}")));
            }
        }
        if let Some(s) = self.samples {
            if !(1..=MAX_SAMPLES).contains(&s) {
                return Err(Error::InvalidArgument(format!("--samples must be in 1..={MAX_SAMPLES}, got {s}")));
            }
        }
        if let Some(s) = self.steps {
            if s == 0 {
                return Err(Error::InvalidArgument("--steps must be at least 1".into()));
            }
        }
        let init_noise = match (self.init_noise, model.fixed_lr_size()) {
            (Some(p), Some((w, _))) => Some(init_noise(p, w * model.scale())?),
            _ => None,
        };
        let opts = UpscaleOptions {
            temperature: self.temperature,
            seed: self.seed,
            steps: self.steps,
            sampler: sampler(self.sampler, self.eta)?,
            init_noise,
            samples: self.samples,
            tiling,
            ensemble: self.ensemble,
        };
        // Refuses a size other than 1/2/4/8, and an ensemble at a temperature above 0.
        model.ensemble(&opts).map_err(|e| match e {
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("--ensemble: {m}")),
            e => e,
        })?;
        Ok(opts)
    }
}

/// The sampler the flags ask for (the model's default unless --sampler).
fn sampler(s: Option<SamplerArg>, eta: Option<f32>) -> Result<Option<Sampler>> {
    let sampler = match (s, eta) {
        (Some(SamplerArg::Ddim), eta) => Sampler::Ddim { eta: eta.unwrap_or(0.0) },
        (_, Some(_)) => return Err(Error::InvalidArgument("--eta applies to --sampler ddim only".into())),
        (Some(SamplerArg::Ddpm), None) => Sampler::Ddpm,
        (None, None) => return Ok(None),
    };
    if let Sampler::Ddim { eta } = sampler {
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(Error::InvalidArgument(format!("--eta must be >= 0, got {eta}")));
        }
    }
    Ok(Some(sampler))
}

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
