//! Pixel Recursive Super Resolution (Dahl, Norouzi, Shlens 2017, arXiv 1702.00783):
//! a conditioning ResNet A on the LR image and a gated PixelCNN prior B on the
//! HR image; every sub-pixel (row, column, then R, G, B) is drawn from
//! `softmax((A_i + B_i) / T)` over 256 values. Format, architecture and op
//! order: tools/PIXELCNN.md; PyTorch reference: tools/pixelcnn_ref.py.
//!
//! Three exact samplers ([`Sampler`]); all compute bit-identical logits, so
//! for the same uniforms they draw identical samples:
//! * naive: re-runs the whole prior on the full HR image for every sub-pixel;
//! * row: once per row, the vertical stack on the full image (row r depends
//!   only on rows < r); per sub-pixel, the horizontal stack and head on that
//!   whole row (a 1-row graph);
//! * cached (default): once per row, one row of the vertical stack from
//!   cached rows; per sub-pixel, one column of the horizontal stack and the
//!   head at that pixel from cached columns (cached.rs).
//!
//! Draws are made on the host from the downloaded logits (f64 inverse CDF,
//! the convention of kernels/softmax.wgsl `sample_rows`), with uniforms from
//! the crate's Philox stream: sample s, sub-pixel (row, col, colour c) uses
//! element `((s * 3 + c) * H + row) * W + col` of `host_uniform(seed, 0, ..)`.

mod cache_graphs;
mod cached;
mod canvas;
mod config;
mod graphs;
mod model;
mod profile;
mod random;
mod samplers;

pub use config::{PixelCnnConfig, COLOURS, LEVELS, LOGITS};
pub use random::random_weights;

use crate::graph::{Executor, GraphCache};
use canvas::Canvas;
use crate::image_io::RgbImage;
use crate::ops::rng::host_uniform;
use crate::weights::{ModelDir, WeightStore};
use crate::{Error, GpuContext, Result, ResultExt};

/// Most samples one `upscale` draws (they run as one batch).
pub const MAX_SAMPLES: usize = 1024;

/// Sampling options. `temperature` 0 is greedy (argmax; uniforms unused).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PixelCnnOptions {
    pub temperature: f32,
    pub seed: u64,
    /// Samples drawn for the LR image, in one batch.
    pub samples: usize,
    /// Which exact sampler draws (all draw the same samples).
    pub sampler: Sampler,
}

/// The exact samplers (module docs); same uniforms, same samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sampler {
    /// The whole prior on the full image for every sub-pixel.
    Naive,
    /// The vertical stack on the full image per row, the horizontal stack
    /// and head on the whole row per sub-pixel.
    Row,
    /// One row of the vertical stack per row, one column of the horizontal
    /// stack and the head at the pixel per sub-pixel, from cached rows and columns.
    #[default]
    Cached,
}

impl Default for PixelCnnOptions {
    fn default() -> Self {
        PixelCnnOptions { temperature: 0.8, seed: 0, samples: 1, sampler: Sampler::Cached }
    }
}

pub struct PixelCnn {
    cfg: PixelCnnConfig,
    weights: WeightStore,
    /// Executors keyed by batch size (images per run).
    cond: GraphCache<usize>,
    prior: GraphCache<usize>,
    vert: GraphCache<usize>,
    row: GraphCache<usize>,
    vrow: GraphCache<usize>,
    /// One per colour (its head computes that colour's logits only).
    pixel: [GraphCache<usize>; COLOURS],
}

/// 0..255 -> [-1, 1], as torch computes `x / 127.5 - 1` in f32.
pub(crate) fn scale_input(v: f32) -> f32 {
    v / 127.5 - 1.0
}

/// Index drawn from `softmax(logits / t)` with uniform `u` (see the module docs):
/// e = exp((x - max) / t) in f64, the first v with cumsum(e)[v] > u * sum(e),
/// else the last v with e > 0. t == 0: the first maximal logit.
pub fn pick_inverse_cdf(logits: &[f32], u: f32, t: f32) -> usize {
    let (mut best, mut mx) = (0usize, f32::NEG_INFINITY);
    for (v, &x) in logits.iter().enumerate() {
        if x > mx {
            mx = x;
            best = v;
        }
    }
    if t == 0.0 {
        return best;
    }
    let (mx, t) = (mx as f64, t as f64);
    let e: Vec<f64> = logits.iter().map(|&x| ((x as f64 - mx) / t).exp()).collect();
    let thr = u as f64 * e.iter().sum::<f64>();
    let mut cs = 0.0;
    for (v, &ev) in e.iter().enumerate() {
        cs += ev;
        if cs > thr {
            return v;
        }
    }
    e.iter().rposition(|&ev| ev > 0.0).unwrap_or(best)
}

impl PixelCnn {
    /// Load a converted model directory (config.json family "pixelcnn" + model.safetensors).
    pub fn load(ctx: &GpuContext, dir: ModelDir) -> Result<PixelCnn> {
        let cfg = PixelCnnConfig::from_json(&dir.config).with_context(|| dir.path.display())?;
        let path = dir.path.clone();
        Self::from_parts(ctx, cfg, dir.weights).with_context(|| format!("model {}", path.display()))
    }

    /// A model from a parsed config and its weights (benchmarks, tests). Every
    /// tensor is checked up front: missing, unexpected and mis-shaped ones are all listed.
    pub fn from_parts(ctx: &GpuContext, cfg: PixelCnnConfig, weights: WeightStore) -> Result<PixelCnn> {
        cfg.validate()?;
        let want = cfg.weight_shapes();
        let (mut missing, mut shaped) = (Vec::new(), Vec::new());
        for (name, shape) in &want {
            match weights.get_opt(name, None)? {
                None => missing.push(name.clone()),
                Some(t) if &t.shape != shape => shaped.push(format!("{name}: file {:?}, expected {shape:?}", t.shape)),
                Some(_) => {}
            }
        }
        let unexpected: Vec<String> = weights.names().filter(|n| !want.iter().any(|(w, _)| w == n)).map(String::from).collect();
        let mut errs = Vec::new();
        if !missing.is_empty() {
            errs.push(format!("missing tensors ({}): {}", missing.len(), missing.join(", ")));
        }
        if !unexpected.is_empty() {
            errs.push(format!("unexpected tensors ({}): {}", unexpected.len(), unexpected.join(", ")));
        }
        if !shaped.is_empty() {
            errs.push(format!("mis-shaped tensors ({}): {}", shaped.len(), shaped.join("; ")));
        }
        if !errs.is_empty() {
            return Err(Error::Weights(format!("weights do not match the config: {}", errs.join("; "))));
        }
        let mut m = PixelCnn { cfg, weights, cond: GraphCache::new(), prior: GraphCache::new(), vert: GraphCache::new(), row: GraphCache::new(), vrow: GraphCache::new(), pixel: std::array::from_fn(|_| GraphCache::new()) };
        m.cond_exec(ctx, 1)?; // builds (and so checks) the conditioning net now
        Ok(m)
    }

    pub fn config(&self) -> &PixelCnnConfig {
        &self.cfg
    }

    fn cond_exec(&mut self, ctx: &GpuContext, n: usize) -> Result<&mut Executor> {
        let (cfg, w) = (&self.cfg, &self.weights);
        self.cond.get_or_build(n, || Executor::new(ctx, graphs::cond_graph(ctx, w, cfg, n)?))
    }

    /// Conditioning logits A for `n` LR images (values 0..255, [n,3,h,w]) -> [n,768,H,W].
    pub fn cond_logits(&mut self, ctx: &GpuContext, lr: &[f32], n: usize) -> Result<Vec<f32>> {
        let want = n * COLOURS * self.cfg.lr_h * self.cfg.lr_w;
        if n == 0 || lr.len() != want {
            return Err(Error::InvalidArgument(format!("LR values: {} for n={n}, expected {want}", lr.len())));
        }
        let x: Vec<f32> = lr.iter().map(|&v| scale_input(v)).collect();
        let e = self.cond_exec(ctx, n)?;
        e.set_input(ctx, "lr", &x)?;
        e.run(ctx)?;
        e.read_output(ctx, "a")
    }

    /// Prior logits B for `n` HR images (values 0..255, [n,3,H,W]) -> [n,768,H,W].
    pub fn prior_logits(&mut self, ctx: &GpuContext, hr: &[f32], n: usize) -> Result<Vec<f32>> {
        let want = n * COLOURS * self.cfg.hr_h() * self.cfg.hr_w();
        if n == 0 || hr.len() != want {
            return Err(Error::InvalidArgument(format!("HR values: {} for n={n}, expected {want}", hr.len())));
        }
        let x: Vec<f32> = hr.iter().map(|&v| scale_input(v)).collect();
        let (cfg, w) = (&self.cfg, &self.weights);
        let e = self.prior.get_or_build(n, || Executor::new(ctx, graphs::prior_graph(ctx, w, cfg, n)?))?;
        e.set_input(ctx, "hr", &x)?;
        e.run(ctx)?;
        e.read_output(ctx, "b")
    }

    fn lr_values(&self, lr: &RgbImage) -> Result<Vec<f32>> {
        if lr.width != self.cfg.lr_w || lr.height != self.cfg.lr_h {
            return Err(Error::InvalidArgument(format!(
                "this PixelCNN model upscales {}x{} (width x height) LR images only, got {}x{}",
                self.cfg.lr_w, self.cfg.lr_h, lr.width, lr.height
            )));
        }
        // The model sees 8-bit values: round(clamp(x, 0, 1) * 255).
        Ok(lr.data.iter().map(|&x| (x.clamp(0.0, 1.0) * 255.0).round()).collect())
    }

    /// Draw `opts.samples` HR images for one LR image of the configured size.
    /// `progress(done, total)` is called after every sub-pixel (total = 3*H*W).
    pub fn upscale(
        &mut self,
        ctx: &GpuContext,
        lr: &RgbImage,
        opts: &PixelCnnOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<RgbImage>> {
        let lrv = self.lr_values(lr)?;
        if opts.samples == 0 || opts.samples > MAX_SAMPLES {
            return Err(Error::InvalidArgument(format!("samples must be in 1..={MAX_SAMPLES}, got {}", opts.samples)));
        }
        let (h, w) = (self.cfg.hr_h(), self.cfg.hr_w());
        let u = host_uniform(opts.seed, 0, opts.samples * COLOURS * h * w);
        let vals = self.sample(ctx, &lrv, &u, opts.samples, opts.temperature, opts.sampler, usize::MAX, progress)?;
        let per = COLOURS * h * w;
        vals.chunks(per).map(|s| RgbImage::new(w, h, s.iter().map(|&v| v as f32 / 255.0).collect())).collect()
    }

    /// The sampler itself. `lr`: one LR image as 0..255 values [3,h,w];
    /// `uniforms`: [samples,3,H,W] in (0,1), u[s,c,row,col] drives sub-pixel
    /// (row, col, c) of sample s. Returns [samples,3,H,W] values 0..255.
    /// `stop_after` ends sampling after that many sub-pixels (the rest stay 0;
    /// benchmarks time a prefix of the naive sampler this way).
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &mut self,
        ctx: &GpuContext,
        lr: &[f32],
        uniforms: &[f32],
        samples: usize,
        temperature: f32,
        sampler: Sampler,
        stop_after: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<u8>> {
        if !(temperature >= 0.0 && temperature.is_finite()) {
            return Err(Error::InvalidArgument(format!("temperature must be finite and >= 0, got {temperature}")));
        }
        let (h, w) = (self.cfg.hr_h(), self.cfg.hr_w());
        if samples == 0 || uniforms.len() != samples * COLOURS * h * w {
            return Err(Error::InvalidArgument(format!(
                "{} uniforms for {samples} samples of 3x{h}x{w}",
                uniforms.len()
            )));
        }
        let a = self.cond_logits(ctx, lr, 1)?; // [768, H, W], shared by all samples
        let n = samples;
        let mut cv = Canvas::new(n, h, w, a, uniforms, temperature);
        let steps = (COLOURS * h * w).min(stop_after);
        let (cfg, wt) = (&self.cfg, &self.weights);
        match sampler {
            Sampler::Naive => {
                let e = self.prior.get_or_build(n, || Executor::new(ctx, graphs::prior_graph(ctx, wt, cfg, n)?))?;
                samplers::naive(ctx, e, &mut cv, steps, progress)?;
            }
            Sampler::Row => {
                let ve = self.vert.get_or_build(n, || Executor::new(ctx, graphs::vert_graph(ctx, wt, cfg, n)?))?;
                let re = self.row.get_or_build(n, || Executor::new(ctx, graphs::row_graph(ctx, wt, cfg, n)?))?;
                samplers::row(ctx, cfg, ve, re, &mut cv, steps, progress)?;
            }
            Sampler::Cached => {
                let ve = self.vrow.get_or_build(n, || Executor::new(ctx, cache_graphs::vrow_graph(ctx, wt, cfg, n)?))?;
                let build = |c: usize| move || Executor::new(ctx, cache_graphs::pixel_graph(ctx, wt, cfg, n, c)?);
                let [p0, p1, p2] = &mut self.pixel;
                let pe = [p0.get_or_build(n, build(0))?, p1.get_or_build(n, build(1))?, p2.get_or_build(n, build(2))?];
                cached::sample(ctx, cfg, ve, pe, &mut cv, steps, progress)?;
            }
        }
        Ok(cv.img)
    }
}
