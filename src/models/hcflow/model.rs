//! [`Model`](crate::models::registry::Model) for HCFlow: the registry's face of the family.

use super::hcd::{HcdOptions, HcdResult, HcdStart};
use crate::image_io::RgbImage;
use crate::models::ensemble;
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
    fn progress_total(&self, opts: &UpscaleOptions) -> Result<Option<usize>> {
        // A self-ensemble run counts passes (each may be tiled); a plain run counts tiles.
        let n = Model::ensemble(self, opts)?;
        Ok((n > 1).then_some(n))
    }
    fn progress_unit(&self) -> &'static str {
        "self-ensemble"
    }
    fn ensemble(&self, opts: &UpscaleOptions) -> Result<usize> {
        let heat = opts.temperature.unwrap_or(self.default_heat());
        let sr = self.config().task == Task::Sr;
        let Some(n) = opts.ensemble else {
            return Ok(if sr && heat == 0.0 { self.config().default_ensemble } else { 1 });
        };
        ensemble::symmetries(n)?;
        if n > 1 && !sr {
            return Err(Error::InvalidArgument(
                "self-ensemble is for SR models: a rescaling model's LR is its own downscale, tied to one orientation".into(),
            ));
        }
        if n > 1 && heat != 0.0 {
            return Err(Error::InvalidArgument(format!(
                "self-ensemble averages deterministic passes: at temperature {heat} its {n} passes would be different samples (their mean a blur); use temperature 0 or ensemble 1"
            )));
        }
        Ok(n)
    }
    fn upscale(&mut self, ctx: &GpuContext, lr: &RgbImage, opts: &UpscaleOptions, progress: &mut dyn FnMut(usize)) -> Result<Vec<RgbImage>> {
        let n = Model::ensemble(self, opts)?;
        let hr = if n == 1 {
            self.upscale_tiled(ctx, lr, opts.temperature, opts.seed, &opts.tiling, &mut |d, _| progress(d))?
        } else {
            ensemble::self_ensemble(n, lr, progress, |x| self.upscale_tiled(ctx, x, opts.temperature, opts.seed, &opts.tiling, &mut |_, _| {}))?
        };
        finite(&self.describe(), self.precision(), vec![hr])
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
