//! [`Model`](crate::models::registry::Model) for SR3: the registry's face of the family.

use crate::image_io::RgbImage;
use crate::models::registry::{family, finite, FamilyInfo, Model, UpscaleOptions};
use crate::models::sr3::{Sampler, Sr3, Sr3Options};
use crate::{GpuContext, Result};

fn sr3_options(opts: &UpscaleOptions) -> Sr3Options {
    Sr3Options { steps: opts.steps, sampler: opts.sampler.unwrap_or(Sampler::Ddpm), seed: opts.seed, init_noise: opts.init_noise.clone() }
}

impl Model for Sr3 {
    fn family(&self) -> &'static FamilyInfo {
        family("sr3")
    }
    fn scale(&self) -> usize {
        self.config().hr_size / self.config().lr_size
    }
    fn fixed_lr_size(&self) -> Option<(usize, usize)> {
        Some((self.config().lr_size, self.config().lr_size))
    }
    fn describe(&self) -> String {
        let c = self.config();
        let storage = if self.precision() == crate::Dtype::F16 { ", f16 storage" } else { "" };
        format!("SR3 {0}x{0} -> {1}x{1}{storage}", c.lr_size, c.hr_size)
    }
    fn progress_total(&self, opts: &UpscaleOptions) -> Result<Option<usize>> {
        Ok(Some(self.steps_for(&sr3_options(opts))?.len()))
    }
    fn upscale(&mut self, ctx: &GpuContext, lr: &RgbImage, opts: &UpscaleOptions, progress: &mut dyn FnMut(usize)) -> Result<Vec<RgbImage>> {
        finite(&self.describe(), self.precision(), vec![Sr3::upscale(self, ctx, lr, &sr3_options(opts), &mut |i, _| progress(i))?])
    }
}
