//! [`Model`](crate::models::registry::Model) for PixelCNN: the registry's face of the family.

use crate::image_io::RgbImage;
use crate::models::registry::{family, FamilyInfo, Model, UpscaleOptions};
use crate::models::pixelcnn::{PixelCnn, PixelCnnOptions};
use crate::{GpuContext, Result};

fn pixelcnn_options(opts: &UpscaleOptions) -> PixelCnnOptions {
    let d = PixelCnnOptions::default();
    PixelCnnOptions {
        temperature: opts.temperature.unwrap_or(d.temperature),
        seed: opts.seed,
        samples: opts.samples.unwrap_or(d.samples),
        sampler: d.sampler,
    }
}

impl Model for PixelCnn {
    fn family(&self) -> &'static FamilyInfo {
        family("pixelcnn")
    }
    fn scale(&self) -> usize {
        self.config().scale
    }
    fn fixed_lr_size(&self) -> Option<(usize, usize)> {
        Some((self.config().lr_w, self.config().lr_h))
    }
    fn describe(&self) -> String {
        let c = self.config();
        format!("PixelCNN {}x{} -> {}x{}", c.lr_w, c.lr_h, c.hr_w(), c.hr_h())
    }
    fn default_temperature(&self) -> Option<f32> {
        Some(PixelCnnOptions::default().temperature)
    }
    fn progress_total(&self, _opts: &UpscaleOptions) -> Result<Option<usize>> {
        Ok(Some(3 * self.config().hr_w() * self.config().hr_h()))
    }
    fn upscale(&mut self, ctx: &GpuContext, lr: &RgbImage, opts: &UpscaleOptions, progress: &mut dyn FnMut(usize)) -> Result<Vec<RgbImage>> {
        PixelCnn::upscale(self, ctx, lr, &pixelcnn_options(opts), &mut |i, _| progress(i))
    }
}
