//! HCFlow (Liang et al., ICCV 2021): hierarchical conditional normalizing
//! flow for x4/x8 super-resolution and x4 image rescaling.
//!
//! [`HcFlow`] owns a converted model (config + weights) and builds each pass
//! as a static graph the first time an input size is seen; later calls with
//! the same size replay it, changing only inputs and the heat parameter.

pub mod config;
pub mod graph;
mod gpu_io;
pub mod hcd;
pub mod latents;
mod model;
pub mod tiled;

use crate::graph::{Executor, GraphBuilder, GraphCache};
use crate::image_io::RgbImage;
use crate::ops::rng;
use crate::weights::{ModelDir, WeightStore};
use crate::{Dtype, Error, GpuContext, Result, ResultExt, Shape};

pub use config::{HcflowConfig, Task};

/// Philox stream offsets, so the latents of different levels and the
/// dequantisation noise never share random numbers.
const EPS_STREAM: u64 = 1 << 40;
const NOISE_STREAM: u64 = 1 << 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Reverse,
    Forward,
}

/// A loaded HCFlow model.
pub struct HcFlow {
    cfg: HcflowConfig,
    weights: WeightStore,
    /// Built graphs per pass, keyed by (trace outputs, input shape); only
    /// the latest key per pass is kept, to bound device memory.
    reverse: GraphCache<(bool, Shape)>,
    forward: GraphCache<(bool, Shape)>,
    /// Memory plans of the shapes tiling has sized (no buffers held).
    plans: Vec<((tiled::TiledPass, Shape), tiled::PlanBytes)>,
    hcd: hcd::HcdGraphs,
    /// Storage of the upscale / downscale graphs (HCD's gradient graphs are f32).
    precision: Dtype,
}

/// Result of an SR forward pass (HR -> LR, latents, likelihood).
#[derive(Clone, Debug)]
pub struct SrForward {
    /// The LR the flow produces, before quantisation, [B,3,h,w].
    pub z: Vec<f32>,
    /// `z` quantised to 8 bit (round(clamp(z,0,1)*255)/255).
    pub lr_out: Vec<f32>,
    /// Normalised latents per level (finest first).
    pub eps: Vec<Vec<f32>>,
    /// Per-sample log-determinant including the split-off Gaussian terms.
    pub logdet: Vec<f64>,
    /// logdet + log-likelihood of the given LR under N(lr_out, e^-6).
    pub objective: Vec<f64>,
    /// Negative log-likelihood in bits per HR pixel (-objective / (ln 2 * H * W)).
    pub nll: Vec<f64>,
}

/// Result of a rescaling forward pass (HR -> 8-bit LR + latents).
#[derive(Clone, Debug)]
pub struct RescaleForward {
    pub z: Vec<f32>,
    /// `z` quantised to 8 bit, as the official model outputs it.
    pub lr: Vec<f32>,
    pub eps: Vec<Vec<f32>>,
}

/// round(clamp(x, 0, 1) * 255) / 255 with torch's round-half-to-even, in f32.
pub fn quantize8(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round_ties_even() / 255.0).collect()
}

impl HcFlow {
    /// Parse and check a converted model directory. Graphs are built lazily,
    /// per input size, on the context each call passes.
    pub fn load(_ctx: &GpuContext, dir: ModelDir) -> Result<Self> {
        let path = dir.path.clone();
        Self::from_parts(&dir.config, dir.weights).with_context(|| path.display())
    }

    /// A model from an in-memory config and weights.
    pub fn from_parts(config: &serde_json::Value, weights: WeightStore) -> Result<Self> {
        let cfg = HcflowConfig::from_json(config)?;
        cfg.check_weights(&weights)?;
        Ok(HcFlow {
            cfg,
            weights,
            reverse: GraphCache::new(),
            forward: GraphCache::new(),
            plans: Vec::new(),
            hcd: hcd::HcdGraphs::default(),
            precision: Dtype::F32,
        })
    }

    pub fn config(&self) -> &HcflowConfig {
        &self.cfg
    }

    /// Store activations and weights of the upscale and downscale passes as
    /// `precision` (f16: half the memory and bandwidth, f32 arithmetic;
    /// needs the device's SHADER_F16). Built graphs are dropped and rebuilt
    /// on the next call. HCD's gradient graphs always run in f32.
    pub fn set_precision(&mut self, ctx: &GpuContext, precision: Dtype) -> Result<()> {
        ctx.check_dtype(precision)?;
        if precision != self.precision {
            self.precision = precision;
            self.reverse = GraphCache::new();
            self.forward = GraphCache::new();
            self.plans.clear();
        }
        Ok(())
    }

    pub fn precision(&self) -> Dtype {
        self.precision
    }

    /// Heat used when the caller gives none (the official test configs').
    pub fn default_heat(&self) -> f32 {
        self.cfg.default_heat
    }

    pub fn scale(&self) -> usize {
        self.cfg.scale
    }

    /// Shapes of the latents the reverse pass takes for an LR of `lr`.
    pub fn eps_shapes(&self, lr: Shape) -> Vec<Shape> {
        graph::eps_shapes(&self.cfg, lr)
    }

    /// Memory plans of the built graphs (peak vs no-reuse bytes).
    pub fn memory_plans(&self) -> Vec<&crate::graph::MemoryPlan> {
        [&self.reverse, &self.forward].into_iter().filter_map(|c| c.get()).map(|e| e.plan()).collect()
    }

    /// Device memory the built graphs hold for intermediates (bytes).
    pub fn graph_bytes(&self) -> u64 {
        [&self.reverse, &self.forward].into_iter().filter_map(|c| c.get()).map(|e| e.allocated_bytes()).sum()
    }

    fn executor(&mut self, ctx: &GpuContext, pass: Pass, shape: Shape, trace: bool) -> Result<&mut Executor> {
        let (cfg, weights, precision) = (&self.cfg, &self.weights, self.precision);
        let cache = match pass {
            Pass::Reverse => &mut self.reverse,
            Pass::Forward => &mut self.forward,
        };
        cache.get_or_build((trace, shape), || {
            let mut g = GraphBuilder::with_weights(ctx, weights);
            g.set_precision(precision)?;
            match pass {
                Pass::Reverse => graph::build_reverse(&mut g, cfg, shape, trace)?,
                Pass::Forward => graph::build_forward(&mut g, cfg, shape, trace)?,
            }
            // Every pass reads every tensor, so a leftover key means the
            // checkpoint does not match the config.
            weights.check_all_used()?;
            Executor::new(ctx, g.build()?)
        })
    }

    fn check_lr(&self, lr: Shape) -> Result<()> {
        if lr.c() != self.cfg.in_channels || lr.numel() == 0 {
            return Err(Error::InvalidArgument(format!("HCFlow: LR must be [B, {}, h, w], got {lr}", self.cfg.in_channels)));
        }
        Ok(())
    }

    fn check_hr(&self, hr: Shape) -> Result<()> {
        let s = self.cfg.scale;
        if hr.c() != self.cfg.in_channels || hr.numel() == 0 || hr.h() % s != 0 || hr.w() % s != 0 {
            return Err(Error::InvalidArgument(format!(
                "HCFlow x{s}: HR must be [B, {}, H, W] with H and W multiples of {s}, got {hr} (crop the image to a multiple of {s})",
                self.cfg.in_channels
            )));
        }
        Ok(())
    }

    /// Latents for the reverse pass from Philox stream `seed` (level l uses
    /// offset EPS_STREAM * (l + 1)); identical on every backend. Element
    /// (c, y, x) of level l depends only on (seed, l, c, y, x) and the image
    /// size: [`latents::normal_window`] draws any window of it (tiling).
    pub fn sample_eps(&self, lr: Shape, seed: u64) -> Vec<Vec<f32>> {
        self.eps_shapes(lr)
            .iter()
            .enumerate()
            .map(|(l, s)| rng::host_normal(seed, EPS_STREAM * (l as u64 + 1), s.numel(), 0.0, 1.0))
            .collect()
    }

    /// Reverse pass (LR + latents -> HR, clamped to [0,1]) on NCHW data.
    /// `eps` per level as [`Self::eps_shapes`]; heat 0 gives the mean.
    pub fn reverse(&mut self, ctx: &GpuContext, lr: &[f32], lr_shape: Shape, eps: &[Vec<f32>], heat: f32) -> Result<Vec<f32>> {
        let outs = self.reverse_outputs(ctx, lr, lr_shape, eps, heat, &["hr"], false)?;
        Ok(outs.into_iter().next().expect("one output"))
    }

    /// Reverse pass returning the named outputs; `trace` adds `hr_raw`,
    /// `feat{l}` and `a{l}` to what can be asked for.
    #[allow(clippy::too_many_arguments)]
    pub fn reverse_outputs(
        &mut self,
        ctx: &GpuContext,
        lr: &[f32],
        lr_shape: Shape,
        eps: &[Vec<f32>],
        heat: f32,
        names: &[&str],
        trace: bool,
    ) -> Result<Vec<Vec<f32>>> {
        self.check_lr(lr_shape)?;
        if !heat.is_finite() || heat < 0.0 {
            return Err(Error::InvalidArgument(format!("HCFlow: heat (temperature) must be >= 0, got {heat}")));
        }
        let shapes = self.eps_shapes(lr_shape);
        if eps.len() != shapes.len() || eps.iter().zip(&shapes).any(|(e, s)| e.len() != s.numel()) {
            return Err(Error::InvalidArgument(format!("HCFlow: latents must have shapes {shapes:?}")));
        }
        let ex = self.executor(ctx, Pass::Reverse, lr_shape, trace)?;
        ex.set_input(ctx, "lr", lr)?;
        for (l, e) in eps.iter().enumerate() {
            ex.set_input(ctx, &graph::eps_name(l), e)?;
        }
        ex.set_param(graph::HEAT, heat as f64)?;
        ex.run(ctx)?;
        names.iter().map(|n| ex.read_output(ctx, n)).collect()
    }

    /// Per-node GPU profile of the reverse pass at `lr_shape` (built on
    /// demand; inputs keep whatever the last run set).
    pub fn profile_reverse(&mut self, ctx: &GpuContext, lr_shape: Shape, runs: usize) -> Result<crate::graph::Profile> {
        self.check_lr(lr_shape)?;
        self.executor(ctx, Pass::Reverse, lr_shape, false)?.profile(ctx, runs)
    }

    /// Super-resolve (SR models) or upscale a rescaled LR (rescaling models):
    /// heat None = the model's default; same seed -> identical output.
    pub fn upscale(&mut self, ctx: &GpuContext, lr: &RgbImage, heat: Option<f32>, seed: u64) -> Result<RgbImage> {
        let shape = Shape::new(1, 3, lr.height, lr.width);
        let heat = heat.unwrap_or(self.cfg.default_heat);
        let eps = self.sample_eps(shape, seed);
        let s = self.cfg.scale;
        let hr = self.reverse(ctx, &lr.data, shape, &eps, heat)?;
        RgbImage::new(lr.width * s, lr.height * s, hr)
    }

    /// Forward pass outputs by name (`z`, `eps{l}`, `logdet` for SR; with
    /// `trace` also `squeeze{l}`, `step{N}`, `feat{l}`).
    pub fn forward_outputs(
        &mut self,
        ctx: &GpuContext,
        hr: &[f32],
        hr_shape: Shape,
        noise: Option<&[f32]>,
        names: &[&str],
        trace: bool,
    ) -> Result<Vec<Vec<f32>>> {
        self.check_hr(hr_shape)?;
        let sr = self.cfg.task == Task::Sr;
        if !sr && noise.is_some() {
            return Err(Error::InvalidArgument("HCFlow rescaling has no dequantisation noise".into()));
        }
        let ex = self.executor(ctx, Pass::Forward, hr_shape, trace)?;
        ex.set_input(ctx, "hr", hr)?;
        if sr {
            let zeros;
            let n = match noise {
                Some(n) => n,
                None => {
                    zeros = vec![0f32; hr_shape.numel()];
                    &zeros
                }
            };
            ex.set_input(ctx, "noise", n)?;
        }
        ex.run(ctx)?;
        names.iter().map(|n| ex.read_output(ctx, n)).collect()
    }

    /// SR forward: HR (+ dequantisation noise U(0,1), None = 0) -> latents,
    /// logdet and the NLL of `lr` in bits per HR pixel.
    pub fn sr_forward(&mut self, ctx: &GpuContext, hr: &[f32], hr_shape: Shape, lr: &[f32], noise: Option<&[f32]>) -> Result<SrForward> {
        if self.cfg.task != Task::Sr {
            return Err(Error::InvalidArgument("sr_forward needs an HCFlow SR model; this is a rescaling model".into()));
        }
        let s = self.cfg.scale;
        let lr_shape = Shape::new(hr_shape.n(), hr_shape.c(), hr_shape.h() / s, hr_shape.w() / s);
        if lr.len() != lr_shape.numel() {
            return Err(Error::InvalidArgument(format!("HCFlow: LR must be {lr_shape} for HR {hr_shape}")));
        }
        let nl = self.cfg.n_levels();
        let mut names = vec!["z".to_string(), "logdet".to_string()];
        names.extend((0..nl).map(graph::eps_name));
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut outs = self.forward_outputs(ctx, hr, hr_shape, noise, &refs, false)?.into_iter();
        let z = outs.next().expect("z");
        let logdet: Vec<f64> = outs.next().expect("logdet").iter().map(|&v| v as f64).collect();
        let eps: Vec<Vec<f32>> = outs.collect();
        let lr_out = quantize8(&z);
        // log N(lr; lr_out, sigma = e^logs) summed per sample (the official
        // model scores the given LR against its own quantised output).
        let logs = self.cfg.nll_lr_logs;
        let per = lr_shape.numel() / lr_shape.n();
        let pixels = (hr_shape.h() * hr_shape.w()) as f64;
        let mut objective = Vec::with_capacity(lr_shape.n());
        for b in 0..lr_shape.n() {
            let mut lp = 0.0;
            for i in b * per..(b + 1) * per {
                let d = (lr_out[i] - lr[i]) as f64;
                lp += -0.5 * (2.0 * logs + d * d / (2.0 * logs).exp() + (2.0 * std::f64::consts::PI).ln());
            }
            objective.push(logdet[b] + lp);
        }
        let nll = objective.iter().map(|o| -o / (std::f64::consts::LN_2 * pixels)).collect();
        Ok(SrForward { z, lr_out, eps, logdet, objective, nll })
    }

    /// NLL of (HR, LR) in bits per HR pixel, with dequantisation noise from
    /// Philox stream `seed` (as the official model draws torch.rand).
    pub fn nll(&mut self, ctx: &GpuContext, hr: &RgbImage, lr: &RgbImage, seed: u64) -> Result<f64> {
        let s = self.cfg.scale;
        if lr.width * s != hr.width || lr.height * s != hr.height {
            return Err(Error::InvalidArgument(format!(
                "HCFlow x{s}: LR {}x{} does not match HR {}x{} (expected {}x{})",
                lr.width,
                lr.height,
                hr.width,
                hr.height,
                hr.width / s,
                hr.height / s
            )));
        }
        let shape = Shape::new(1, 3, hr.height, hr.width);
        let noise = rng::host_uniform(seed, NOISE_STREAM, shape.numel());
        let f = self.sr_forward(ctx, &hr.data, shape, &lr.data, Some(&noise))?;
        Ok(f.nll[0])
    }

    /// Rescaling forward: HR -> 8-bit LR (and raw z, latents).
    pub fn rescale_forward(&mut self, ctx: &GpuContext, hr: &[f32], hr_shape: Shape) -> Result<RescaleForward> {
        if self.cfg.task != Task::Rescale {
            return Err(Error::InvalidArgument("downscaling needs an HCFlow rescaling model; this is an SR model".into()));
        }
        let nl = self.cfg.n_levels();
        let mut names = vec!["z".to_string()];
        names.extend((0..nl).map(graph::eps_name));
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut outs = self.forward_outputs(ctx, hr, hr_shape, None, &refs, false)?.into_iter();
        let z = outs.next().expect("z");
        Ok(RescaleForward { lr: quantize8(&z), z, eps: outs.collect() })
    }

    /// Downscale an image with a rescaling model; returns (8-bit LR, raw LR).
    pub fn downscale(&mut self, ctx: &GpuContext, hr: &RgbImage) -> Result<(RgbImage, RgbImage)> {
        let shape = Shape::new(1, 3, hr.height, hr.width);
        let f = self.rescale_forward(ctx, &hr.data, shape)?;
        let s = self.cfg.scale;
        let (w, h) = (hr.width / s, hr.height / s);
        Ok((RgbImage::new(w, h, f.lr)?, RgbImage::new(w, h, f.z)?))
    }
}
