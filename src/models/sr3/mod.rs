//! SR3 diffusion super-resolution (Saharia et al. 2021; the
//! Janspiry/Image-Super-Resolution-via-Iterative-Refinement models), see
//! tools/SR3.md for the converted format and exact semantics.
//!
//! One graph is built at load time and replayed once per sampling step:
//!
//! ```text
//! inputs  cond [B,3,H,W], x [B,3,H,W] (= y_t), pos_enc [B,C0,1,1], z [B,3,H,W]
//! eps     = UNet(cat(cond, x), pos_enc)                      output "eps"
//! x0      = clamp($a * x + $e * eps, -1, 1)
//! x_next  = $p * x0 + $q * x + $s * z                         output "x_next"
//! ```
//!
//! The per-step scalars are runtime parameters (rewritten uniform words),
//! the sin/cos noise-level encoding is a C0-vector uploaded per step, and
//! `x_next` is copied into `x` on the GPU between steps, so a step records
//! nothing and allocates nothing. Step noise `z` comes from the crate's
//! Philox stream on the GPU (or from the caller, for tests).

pub mod config;
mod model;
pub mod sampler;
pub mod schedule;
pub mod unet;

pub use config::{SamplerConfig, Sr3Config, UNetConfig};
pub use sampler::{ddim_steps, ddpm_steps, plan, Sampler, StepCoefs};
pub use schedule::{respace_betas, space_timesteps, BetaSchedule, ScheduleBuffers, ScheduleKind};
pub use unet::noise_level_encoding;

use crate::gpu::{Dispatch, GpuContext};
use crate::graph::ops::Scalar;
use crate::graph::{Executor, GraphBuilder};
use crate::image_io::RgbImage;
use crate::ops::rng;
use crate::weights::{ModelDir, WeightStore};
use crate::{Dtype, Error, Result, ResultExt, Shape};

/// Options of [`Sr3::upscale`].
#[derive(Clone, Debug, PartialEq)]
pub struct Sr3Options {
    /// Sampling steps; `None` = the config's `sampler.steps` (the full
    /// schedule, 2000 for the official models).
    pub steps: Option<usize>,
    pub sampler: Sampler,
    /// Seeds x_T (Philox stream (seed, 0), host twin) and the step noise
    /// (GPU Philox stream (seed, (j+1) * ceil(n/4)) for step j).
    pub seed: u64,
    /// x_T instead of the seeded draw: N(0,1) values in NCHW order
    /// (CHW for batch 1), B*3*hr*hr of them.
    pub init_noise: Option<Vec<f32>>,
}

impl Default for Sr3Options {
    fn default() -> Self {
        Sr3Options { steps: None, sampler: Sampler::Ddpm, seed: 0, init_noise: None }
    }
}

/// Where step noise comes from in [`Sr3::sample`].
#[derive(Clone, Copy, Debug)]
pub enum StepNoise<'a> {
    /// Philox on the GPU: step j draws stream (seed, (j+1) * ceil(n/4)).
    Philox { seed: u64 },
    /// Caller-provided z_j for every step that adds noise (indexed by step j;
    /// entries of steps that add none are not read), n values each.
    Injected(&'a [Vec<f32>]),
}

/// A loaded SR3 model with its prepared graph.
pub struct Sr3 {
    config: Sr3Config,
    batch: usize,
    exec: Executor,
    /// rng::normal into the `z` input, re-pointed per step.
    z_fill: Dispatch,
    cond: Vec<f32>,
    precision: Dtype,
}

const P_A: &str = "x0_from_x";
const P_E: &str = "x0_from_eps";
const P_P: &str = "next_from_x0";
const P_Q: &str = "next_from_x";
const P_S: &str = "next_from_z";

impl Sr3 {
    /// Load a converted model directory and build its graph at batch 1.
    pub fn load(ctx: &GpuContext, dir: ModelDir) -> Result<Sr3> {
        Self::load_with_batch(ctx, &dir, 1)
    }

    /// Load with `batch` images per run.
    pub fn load_with_batch(ctx: &GpuContext, dir: &ModelDir, batch: usize) -> Result<Sr3> {
        Self::load_as(ctx, dir, batch, Dtype::F32)
    }

    /// Load with `batch` images per run, the U-Net's activations and weights
    /// stored as `precision` (f16 needs the device's SHADER_F16; arithmetic
    /// stays f32).
    pub fn load_as(ctx: &GpuContext, dir: &ModelDir, batch: usize, precision: Dtype) -> Result<Sr3> {
        let config = Sr3Config::from_json(&dir.config).with_context(|| dir.path.join("config.json").display().to_string())?;
        Self::new_as(ctx, config, &dir.weights, batch, precision).with_context(|| format!("model {}", dir.path.display()))
    }

    /// Build from a parsed config and weights (every weight must be used).
    pub fn new(ctx: &GpuContext, config: Sr3Config, weights: &WeightStore, batch: usize) -> Result<Sr3> {
        Self::new_as(ctx, config, weights, batch, Dtype::F32)
    }

    /// [`Sr3::new`] with storage `precision`.
    pub fn new_as(ctx: &GpuContext, config: Sr3Config, weights: &WeightStore, batch: usize, precision: Dtype) -> Result<Sr3> {
        if batch == 0 {
            return Err(Error::InvalidArgument("SR3 batch size must be at least 1".into()));
        }
        let u = &config.unet;
        let hw = config.hr_size;
        let img = Shape::new(batch, config.channels, hw, hw);
        let mut g = GraphBuilder::with_weights(ctx, weights);
        g.set_precision(precision)?;
        // The sampler's state (x_t, the condition, the noise, eps and every
        // step op) is f32 in any precision: it is carried across all steps.
        // The U-Net's inner tensors and weights take the precision.
        g.set_storage(Dtype::F32)?;
        let cond = g.input("cond", img)?;
        let x = g.input("x", img)?;
        let pos_enc = g.input("pos_enc", Shape::new(batch, u.inner_channel, 1, 1))?;
        let z = g.input("z", img)?;
        for p in [P_A, P_E, P_P, P_Q, P_S] {
            g.param(p, 0.0)?;
        }
        g.set_storage(precision)?;
        let eps = unet::build_unet(&mut g, u, &[cond, x], pos_enc)?;
        g.set_storage(Dtype::F32)?;
        g.output("eps", eps)?;
        let x0 = g.axpby("step.x0", x, eps, Scalar::param(P_A), Scalar::param(P_E))?;
        let x0 = if config.sampler.clip_denoised { g.clamp("step.clip", x0, -1.0, 1.0)? } else { x0 };
        let m = g.axpby("step.mean", x0, x, Scalar::param(P_P), Scalar::param(P_Q))?;
        let next = g.axpby("step.next", m, z, 1.0, Scalar::param(P_S))?;
        g.output("x_next", next)?;
        let graph = g.build()?;
        weights.check_all_used()?;
        let exec = Executor::new(ctx, graph)?;
        let z_fill = rng::normal(ctx, exec.input_tensor("z")?, 0, 0, 0.0, 1.0)?;
        let cond = vec![0.0; img.numel()];
        Ok(Sr3 { config, batch, exec, z_fill, cond, precision })
    }

    pub fn config(&self) -> &Sr3Config {
        &self.config
    }
    /// Storage of the U-Net's activations and weights.
    pub fn precision(&self) -> Dtype {
        self.precision
    }

    pub fn batch(&self) -> usize {
        self.batch
    }
    /// The prepared graph's executor (memory plan, profile).
    pub fn executor(&self) -> &Executor {
        &self.exec
    }
    pub fn executor_mut(&mut self) -> &mut Executor {
        &mut self.exec
    }
    /// Values in one batch of images: B * 3 * hr * hr.
    pub fn image_numel(&self) -> usize {
        self.batch * self.config.channels * self.config.hr_size * self.config.hr_size
    }

    /// The conditioning image for one LR input, CHW in [-1, 1]: the LR
    /// quantised to 8 bit, PIL bicubic to hr x hr kept as uint8, /255*2-1.
    pub fn condition(&self, lr: &RgbImage) -> Result<Vec<f32>> {
        let (lrs, hr) = (self.config.lr_size, self.config.hr_size);
        if lr.width != lrs || lr.height != lrs {
            return Err(Error::InvalidArgument(format!(
                "this SR3 model takes a {lrs}x{lrs} low-resolution image, got {}x{} (resize or crop it first)",
                lr.width, lr.height
            )));
        }
        let up = crate::resize::pil_bicubic_u8(&lr.to_rgb8(), lrs, lrs, 3, hr, hr)?;
        let n = hr * hr;
        let mut out = vec![0f32; 3 * n];
        for i in 0..n {
            for c in 0..3 {
                out[c * n + i] = up[3 * i + c] as f32 / 255.0 * 2.0 - 1.0;
            }
        }
        Ok(out)
    }

    fn check_len(&self, what: &str, v: &[f32], want: usize) -> Result<()> {
        if v.len() != want {
            return Err(Error::InvalidArgument(format!("SR3 {what}: {} values given, expected {want}", v.len())));
        }
        Ok(())
    }

    /// Write the per-step inputs and parameters, fill z, and submit one step.
    fn submit_step(&mut self, ctx: &GpuContext, c: &StepCoefs, z: Option<ZSource<'_>>) -> Result<()> {
        let levels = vec![c.level as f32; self.batch];
        let pe = noise_level_encoding(&levels, self.config.unet.inner_channel);
        self.exec.set_input(ctx, "pos_enc", &pe)?;
        // The planner may reuse input buffers after their last read, so
        // every input but x (copied below) is written before every run.
        self.exec.set_input(ctx, "cond", &self.cond)?;
        for (n, v) in [(P_A, c.a), (P_E, c.e), (P_P, c.p), (P_Q, c.q), (P_S, c.s)] {
            self.exec.set_param(n, v as f32 as f64)?;
        }
        let zlen = self.image_numel();
        match z {
            Some(ZSource::Philox { seed, offset }) => {
                rng::set_stream(ctx, &self.z_fill, seed, offset)?;
                ctx.submit(std::slice::from_ref(&self.z_fill));
            }
            Some(ZSource::Host(v)) => self.exec.set_input(ctx, "z", v)?,
            // s = 0: z only has to be finite (0 * NaN would poison x).
            None => self.exec.set_input(ctx, "z", &vec![0.0; zlen])?,
        }
        self.exec.submit(ctx)
    }

    /// Copy `x_next` into the `x` input on the GPU.
    fn advance(&self, ctx: &GpuContext) -> Result<()> {
        let src = self.exec.output("x_next")?;
        let dst = self.exec.input_tensor("x")?;
        // The plan may give x_next x's buffer (x is dead when x_next is written).
        if !std::sync::Arc::ptr_eq(src.buffer(), dst.buffer()) {
            let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("sr3 x_next -> x") });
            enc.copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), 0, src.padded_bytes());
            ctx.queue.submit([enc.finish()]);
        }
        Ok(())
    }

    /// One U-Net evaluation: `x` [B, 6, H, W] = cat(cond, y_t) (NCHW),
    /// `levels` one noise level per sample; returns eps [B, 3, H, W].
    pub fn unet_eps(&mut self, ctx: &GpuContext, x: &[f32], levels: &[f32]) -> Result<Vec<f32>> {
        let n = self.image_numel();
        self.check_len("unet_eps input", x, 2 * n)?;
        if levels.len() != self.batch {
            return Err(Error::InvalidArgument(format!("SR3 unet_eps: {} noise levels for a batch of {}", levels.len(), self.batch)));
        }
        let per = n / self.batch;
        let (mut cond, mut y) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for b in 0..self.batch {
            cond.extend_from_slice(&x[2 * b * per..(2 * b + 1) * per]);
            y.extend_from_slice(&x[(2 * b + 1) * per..(2 * b + 2) * per]);
        }
        self.exec.set_input(ctx, "cond", &cond)?;
        self.exec.set_input(ctx, "x", &y)?;
        self.exec.set_input(ctx, "z", &vec![0.0; n])?;
        let pe = noise_level_encoding(levels, self.config.unet.inner_channel);
        self.exec.set_input(ctx, "pos_enc", &pe)?;
        self.exec.run(ctx)?;
        self.exec.read_output(ctx, "eps")
    }

    /// One sampling step from host `x` with condition `cond` (both NCHW
    /// [B,3,H,W]); `z` is needed when the step adds noise. Returns x_next.
    pub fn step(&mut self, ctx: &GpuContext, cond: &[f32], x: &[f32], c: &StepCoefs, z: Option<&[f32]>) -> Result<Vec<f32>> {
        let n = self.image_numel();
        self.check_len("condition", cond, n)?;
        self.check_len("x", x, n)?;
        self.cond = cond.to_vec();
        self.exec.set_input(ctx, "x", x)?;
        let src = match (c.uses_noise(), z) {
            (false, _) => None,
            (true, Some(v)) => {
                self.check_len("z", v, n)?;
                Some(ZSource::Host(v))
            }
            (true, None) => return Err(Error::InvalidArgument("SR3 step adds noise but no z was given".into())),
        };
        self.submit_step(ctx, c, src)?;
        ctx.sync()?;
        self.exec.read_output(ctx, "x_next")
    }

    /// Run `steps` from `x_t` with condition `cond` (NCHW [B,3,H,W] each);
    /// returns x_0 (unclamped, as the sampler leaves it). `progress(done, total)`
    /// is called after each step.
    pub fn sample(
        &mut self,
        ctx: &GpuContext,
        cond: &[f32],
        x_t: &[f32],
        steps: &[StepCoefs],
        noise: StepNoise<'_>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<f32>> {
        let n = self.image_numel();
        self.check_len("condition", cond, n)?;
        self.check_len("x_T", x_t, n)?;
        if steps.is_empty() {
            return Err(Error::InvalidArgument("SR3 sampling needs at least one step".into()));
        }
        if let StepNoise::Injected(zs) = noise {
            for (j, c) in steps.iter().enumerate() {
                if c.uses_noise() {
                    let z = zs.get(j).ok_or_else(|| {
                        Error::InvalidArgument(format!("SR3 step {j} adds noise but only {} noise tensors were given", zs.len()))
                    })?;
                    self.check_len(&format!("noise {j}"), z, n)?;
                }
            }
        }
        self.cond = cond.to_vec();
        self.exec.set_input(ctx, "x", x_t)?;
        let blocks = n.div_ceil(4) as u64;
        for (j, c) in steps.iter().enumerate() {
            let src = if !c.uses_noise() {
                None
            } else {
                Some(match noise {
                    StepNoise::Philox { seed } => ZSource::Philox { seed, offset: (j as u64 + 1) * blocks },
                    StepNoise::Injected(zs) => ZSource::Host(&zs[j]),
                })
            };
            self.submit_step(ctx, c, src)?;
            if j + 1 < steps.len() {
                self.advance(ctx)?;
            }
            // One step in flight at a time keeps progress honest and the queue short.
            ctx.sync()?;
            progress(j + 1, steps.len());
        }
        self.exec.read_output(ctx, "x_next")
    }

    /// The steps `opts` asks for on this model's schedule.
    pub fn steps_for(&self, opts: &Sr3Options) -> Result<Vec<StepCoefs>> {
        let steps = opts.steps.unwrap_or_else(|| self.config.default_steps());
        plan(&self.config.schedule, opts.sampler, steps)
    }

    /// Super-resolve one lr_size x lr_size image (the model must have batch 1).
    /// Output in [0, 1]: clamp(x_0, -1, 1) mapped by (x + 1) / 2.
    pub fn upscale(
        &mut self,
        ctx: &GpuContext,
        lr: &RgbImage,
        opts: &Sr3Options,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<RgbImage> {
        let mut out = self.upscale_batch(ctx, std::slice::from_ref(lr), opts, progress)?;
        Ok(out.remove(0))
    }

    /// Super-resolve exactly `batch` images together.
    pub fn upscale_batch(
        &mut self,
        ctx: &GpuContext,
        lrs: &[RgbImage],
        opts: &Sr3Options,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<RgbImage>> {
        if lrs.len() != self.batch {
            return Err(Error::InvalidArgument(format!(
                "this SR3 model was built for batches of {}, got {} image(s)",
                self.batch,
                lrs.len()
            )));
        }
        let mut cond = Vec::with_capacity(self.image_numel());
        for lr in lrs {
            cond.extend(self.condition(lr)?);
        }
        let steps = self.steps_for(opts)?;
        let n = self.image_numel();
        let x_t = match &opts.init_noise {
            Some(v) => {
                self.check_len("init_noise", v, n)?;
                v.clone()
            }
            None => rng::host_normal(opts.seed, 0, n, 0.0, 1.0),
        };
        let x0 = self.sample(ctx, &cond, &x_t, &steps, StepNoise::Philox { seed: opts.seed }, progress)?;
        let hr = self.config.hr_size;
        let per = 3 * hr * hr;
        x0.chunks(per)
            .map(|c| RgbImage::new(hr, hr, c.iter().map(|v| (v.clamp(-1.0, 1.0) + 1.0) / 2.0).collect()))
            .collect()
    }
}

#[derive(Clone, Copy)]
enum ZSource<'a> {
    Philox { seed: u64, offset: u64 },
    Host(&'a [f32]),
}
