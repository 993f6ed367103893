//! [`Model`](crate::models::registry::Model) for HCFlow: the registry's face of the family.

use super::hcd::{HcdOptions, HcdResult, HcdStart};
use crate::image_io::RgbImage;
use crate::models::registry::{family, finite, Downscaled, FamilyInfo, Model, UpscaleOptions};
use crate::models::tiling::{TileGrid, TilePolicy, TiledPass};
use crate::models::hcflow::{HcFlow, Task};
use crate::{Error, GpuContext, Result};

impl Model for HcFlow {
    fn family(&self) -> &'static FamilyInfo {
        family("hcflow")
    }
    fn scale(&self) -> usize {
        HcFlow::scale(self)
    }
    fn fixed_lr_size(&self) -> Option<(usize, usize)> {
        None
    }
    fn describe(&self) -> String {
        let task = if self.config().task == Task::Sr { "SR" } else { "rescaling" };
        let storage = if self.precision() == crate::Dtype::F16 { ", f16 storage" } else { "" };
        format!("HCFlow {task} x{}{storage}", HcFlow::scale(self))
    }
    fn can_downscale(&self) -> bool {
        self.config().task == Task::Rescale
    }
    fn default_temperature(&self) -> Option<f32> {
        Some(self.default_heat())
    }
    fn tiles(&mut self, ctx: &GpuContext, pass: TiledPass, lr_width: usize, lr_height: usize, tiling: &TilePolicy) -> Result<Option<TileGrid>> {
        self.tile_grid(ctx, pass, lr_width, lr_height, tiling)
    }
    fn upscale(&mut self, ctx: &GpuContext, lr: &RgbImage, opts: &UpscaleOptions, progress: &mut dyn FnMut(usize)) -> Result<Vec<RgbImage>> {
        finite(&self.describe(), self.precision(), vec![self.upscale_tiled(ctx, lr, opts.temperature, opts.seed, &opts.tiling, &mut |d, _| progress(d))?])
    }
    fn downscale_with(&mut self, ctx: &GpuContext, hr: &RgbImage, tiling: &TilePolicy, progress: &mut dyn FnMut(usize)) -> Result<Downscaled> {
        let (lr, raw) = self.downscale_tiled(ctx, hr, tiling, &mut |d, _| progress(d))?;
        let raw = finite(&self.describe(), self.precision(), vec![raw])?.remove(0);
        Ok(Downscaled { lr, raw })
    }
    fn downscale_hcd(&mut self, ctx: &GpuContext, hr: &RgbImage, opts: &HcdOptions, progress: &mut dyn FnMut(usize, usize)) -> Result<HcdResult> {
        HcFlow::downscale_hcd(self, ctx, hr, opts, &HcdStart::Random, progress)
    }
    fn nll(&mut self, ctx: &GpuContext, hr: &RgbImage, lr: &RgbImage, seed: u64) -> Result<f64> {
        if self.config().task != Task::Sr {
            return Err(Error::InvalidArgument("nll needs an HCFlow SR model; this is a rescaling model".into()));
        }
        HcFlow::nll(self, ctx, hr, lr, seed)
    }
}
