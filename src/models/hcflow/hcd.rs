//! HCD: collaborative downscaling (Xu et al., ICCV 2023, official code
//! xubingna/HCD `my_train.py`). The rescaling model stays frozen; the LR it
//! produces is optimised so that the same model upscales it closer to the
//! HR. Two projected-gradient stages, as the official `attack_pgd_sr` then
//! `attack_pgd` (one restart):
//!
//! 1. HR stage: a perturbation d of the HR, loss
//!    `mean((up(Quant(down(HR + d))) - HR)^2)`, Quant straight-through.
//! 2. LR stage: from `X = Quant(down(HR + d))`, a perturbation e of the LR,
//!    loss `mean((up(X + e) - HR)^2)`.
//!
//! Each step: `d <- renorm_eps(d - step * g / (||g|| + 1e-10))`, then
//! clamped so the perturbed image stays in [0, 1]; random start: a normal
//! draw scaled to L2 norm `r * eps`, r ~ U(0, 1). The official code keeps
//! the last iterate of each stage (its best-loss selection is over
//! restarts, of which it runs one); so does this. The final LR is
//! `Quant(X + e)`.
//!
//! `up` is the reverse graph `wgsr upscale` runs, with the latents
//! `wgsr upscale --seed S` draws for this image (S = the HCD seed) at the
//! model's default heat, so the result is optimised for exactly that
//! upscale. Large images are optimised in independent patches of the LR
//! (`my_train_patch.py`, 128 LR px by default), each with its window of the
//! whole image's latents; the gradient graphs are built once per patch size.

use crate::graph::{Executor, GraphBuilder, GraphCache};
use crate::image_io::RgbImage;
use crate::models::tiling::{paste, Tile, TileGrid};
use crate::ops::rng;
use crate::{Error, GpuContext, Result, ResultExt, Shape};

use super::graph::{self, HcdStage};
use super::{latents, quantize8, HcFlow, Task, EPS_STREAM};

/// Streams of the random starts (the latents use `EPS_STREAM * (l + 1)`).
const START_STREAM: u64 = 1 << 56;

/// HCD settings; the defaults are the paper's.
#[derive(Clone, Debug, PartialEq)]
pub struct HcdOptions {
    /// Iterations of the HR stage and of the LR stage.
    pub iters: (usize, usize),
    /// Radius of the L2 ball of each perturbation (image range [0, 1]).
    pub eps: f64,
    /// Step length on the unit-norm gradient.
    pub step: f64,
    /// Random start and latents (`wgsr upscale --seed` of the same value
    /// reproduces the upscale HCD optimised for).
    pub seed: u64,
    /// LR patch side; patches are optimised independently.
    pub patch: usize,
}

impl Default for HcdOptions {
    fn default() -> Self {
        HcdOptions { iters: (15, 15), eps: 0.3, step: 20.0 / 255.0, seed: 0, patch: 128 }
    }
}

impl HcdOptions {
    pub fn check(&self) -> Result<()> {
        if !(self.eps.is_finite() && self.eps >= 0.0 && self.step.is_finite() && self.step >= 0.0) {
            return Err(Error::InvalidArgument(format!("HCD: eps {} and step {} must be finite and >= 0", self.eps, self.step)));
        }
        if self.patch < 1 {
            return Err(Error::InvalidArgument("HCD: the patch size must be at least 1 LR pixel".into()));
        }
        if self.iters.0 > MAX_ITERS || self.iters.1 > MAX_ITERS {
            return Err(Error::InvalidArgument(format!("HCD: at most {MAX_ITERS} iterations per stage, got {:?}", self.iters)));
        }
        Ok(())
    }
}

/// Upper bound on iterations per stage (a typo guard, 60x the paper's).
pub const MAX_ITERS: usize = 1000;

/// Where a stage starts: the official random start, or given perturbations
/// (the parity test replays the PyTorch reference's).
#[derive(Clone, Debug)]
pub enum HcdStart {
    Random,
    /// HR-sized and LR-sized start perturbations and the latents `eps{l}`
    /// (shapes of `HcFlow::eps_shapes` for the whole LR), for an unpatched run.
    Given { hr: Vec<f32>, lr: Vec<f32>, eps: Vec<Vec<f32>> },
}

/// Loss trace of one patch: `mean((sr - hr)^2)` before each step and after
/// the last one, per stage.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchTrace {
    /// The patch in LR pixels: x, y, w, h.
    pub rect: (usize, usize, usize, usize),
    pub loss_hr: Vec<f64>,
    pub loss_lr: Vec<f64>,
}

/// The optimised 8-bit LR and how the losses went.
#[derive(Clone, Debug)]
pub struct HcdResult {
    pub lr: RgbImage,
    pub patches: Vec<PatchTrace>,
    /// Bytes the larger stage's gradient graph holds (the largest patch);
    /// one stage's graph is allocated at a time.
    pub plan_bytes: u64,
}

/// The gradient graph of the current stage and patch shape. One slot for
/// both stages: switching stage frees the other's buffers first, so the
/// peak is the larger stage's plan, not the sum (a rebuild per stage and
/// patch costs well under one iteration).
#[derive(Default)]
pub(super) struct HcdGraphs {
    graph: GraphCache<(HcdStage, Shape)>,
}

fn mse(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64
}

/// The official random start: normal, scaled to norm `r * eps` (r ~ U(0,1)),
/// clamped so `base + d` stays in [0, 1].
fn random_start(seed: u64, stream: u64, base: &[f32], eps: f64) -> Vec<f32> {
    let d = rng::host_normal(seed, stream, base.len(), 0.0, 1.0);
    let r = rng::host_uniform(seed, stream + (1 << 32), 1)[0] as f64;
    let n = d.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
    let k = r / n * eps;
    let mut d: Vec<f32> = d.iter().map(|v| (*v as f64 * k) as f32).collect();
    project_box(&mut d, base);
    d
}

/// d = clamp(d, -base, 1 - base).
fn project_box(d: &mut [f32], base: &[f32]) {
    for (v, b) in d.iter_mut().zip(base) {
        *v = v.clamp(-b, 1.0 - b);
    }
}

/// One projected step: d - step * g / (||g|| + 1e-10), renormed to the eps
/// ball as torch.renorm(p=2, maxnorm=eps) does (scale eps / (norm + 1e-7)
/// when the norm exceeds eps), then boxed to [0, 1] around `base`.
fn pgd_step(d: &mut [f32], g: &[f32], base: &[f32], step: f64, eps: f64) {
    let gn = g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    let k = step / (gn + 1e-10);
    let mut nd: Vec<f64> = d.iter().zip(g).map(|(dv, gv)| *dv as f64 - k * *gv as f64).collect();
    let norm = nd.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > eps {
        let s = eps / (norm + 1e-7);
        nd.iter_mut().for_each(|v| *v *= s);
    }
    for (dv, v) in d.iter_mut().zip(nd) {
        *dv = v as f32;
    }
    project_box(d, base);
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

impl HcFlow {
    fn hcd_executor(&mut self, ctx: &GpuContext, stage: HcdStage, lr: Shape) -> Result<&mut Executor> {
        let (cfg, weights) = (&self.cfg, &self.weights);
        self.hcd.graph.get_or_build((stage, lr), || {
            let mut g = GraphBuilder::with_weights(ctx, weights);
            graph::build_hcd(&mut g, cfg, stage, lr)?;
            Executor::new(ctx, g.build()?)
        })
    }

    /// One HCD stage's forward and gradient for an LR of shape `lr`:
    /// `input` is `x` (HR stage: HR + perturbation) or the LR (LR stage),
    /// `target` the HR, `eps` the latents. Returns (sr, d mean((sr -
    /// target)^2) / d input, the quantised LR for the HR stage).
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    pub fn hcd_gradient(&mut self, ctx: &GpuContext, stage: HcdStage, lr: Shape, input: &[f32], target: &[f32], eps: &[Vec<f32>], heat: f32) -> Result<(Vec<f32>, Vec<f32>, Option<Vec<f32>>)> {
        let s = self.cfg.scale;
        let want_in = if stage == HcdStage::Hr { lr.numel() * s * s } else { lr.numel() };
        let shapes = self.eps_shapes(lr);
        if input.len() != want_in || target.len() != lr.numel() * s * s || eps.len() != shapes.len() || eps.iter().zip(&shapes).any(|(e, sh)| e.len() != sh.numel()) {
            return Err(Error::InvalidArgument(format!("HCD {stage:?} stage for LR {lr}: input, target or latents have the wrong size")));
        }
        let ex = self.hcd_executor(ctx, stage, lr)?;
        ex.set_input(ctx, if stage == HcdStage::Hr { "x" } else { "lr" }, input)?;
        ex.set_input(ctx, "target", target)?;
        for (l, e) in eps.iter().enumerate() {
            ex.set_input(ctx, &graph::eps_name(l), e)?;
        }
        ex.set_param(graph::HEAT, heat as f64)?;
        ex.run(ctx)?;
        // One wait for all the step's outputs.
        let names: &[&str] = if stage == HcdStage::Hr { &["sr", "grad", "lr"] } else { &["sr", "grad"] };
        let mut outs = ex.read_outputs(ctx, names)?.into_iter();
        let (sr, grad, q) = (outs.next().expect("sr"), outs.next().expect("grad"), outs.next());
        // A NaN would pass through every projection into the LR.
        if let Some(i) = sr.iter().chain(&grad).position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "HCD {stage:?} stage: the model produced a non-finite value (element {i}); its weights overflow on this input"
            )));
        }
        Ok((sr, grad, q))
    }

    /// The latents `wgsr upscale --seed seed` uses for the LR window `w`
    /// (x, y, w, h) of a `full_w` x `full_h` LR image.
    fn hcd_latents(&self, seed: u64, heat: f32, full_w: usize, full_h: usize, win: (usize, usize, usize, usize)) -> Vec<Vec<f32>> {
        let nl = self.cfg.n_levels();
        self.eps_shapes(Shape::new(1, 3, full_h, full_w))
            .iter()
            .enumerate()
            .map(|(l, es)| {
                let f = 1 << (nl - 1 - l);
                if heat == 0.0 {
                    vec![0f32; es.c() * win.3 * f * win.2 * f]
                } else {
                    latents::normal_window(seed, EPS_STREAM * (l as u64 + 1), *es, win.1 * f, win.0 * f, win.3 * f, win.2 * f)
                }
            })
            .collect()
    }

    /// HCD downscaling of `hr` (sides multiples of the scale). `progress(done,
    /// total)` after every iteration of every patch.
    pub fn downscale_hcd(
        &mut self,
        ctx: &GpuContext,
        hr: &RgbImage,
        opts: &HcdOptions,
        start: &HcdStart,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<HcdResult> {
        opts.check()?;
        if self.cfg.task != Task::Rescale {
            return Err(Error::InvalidArgument("HCD needs an HCFlow rescaling model; this is an SR model".into()));
        }
        let s = self.cfg.scale;
        self.check_hr(Shape::new(1, 3, hr.height, hr.width))?;
        if let Some(i) = hr.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!("HCD: HR value {i} is not finite ({})", hr.data[i])));
        }
        let (w, h) = (hr.width / s, hr.height / s);
        let grid = match start {
            HcdStart::Random => TileGrid::new(w, h, opts.patch, 0),
            HcdStart::Given { hr: dh, lr: dl, .. } => {
                if dh.len() != hr.data.len() || dl.len() != 3 * w * h {
                    return Err(Error::InvalidArgument(format!("HCD: start perturbations must have {} and {} values", hr.data.len(), 3 * w * h)));
                }
                TileGrid::new(w, h, w.max(h), 0)
            }
        };
        let heat = self.cfg.default_heat;
        let per_patch = opts.iters.0 + opts.iters.1 + 2;
        let total = per_patch * grid.len();
        let mut lr_out = vec![0f32; 3 * w * h];
        let mut patches = Vec::with_capacity(grid.len());
        let mut plan_bytes = 0;
        for (k, t) in grid.tiles.iter().enumerate() {
            let c = t.core;
            let label = || format!("HCD patch {}/{} ({}x{} LR px at {}, {})", k + 1, grid.len(), c.w, c.h, c.x, c.y);
            let hr_p = hr.crop(c.x * s, c.y * s, c.w * s, c.h * s)?.data;
            let eps = match start {
                HcdStart::Given { eps, .. } => eps.clone(),
                HcdStart::Random => self.hcd_latents(opts.seed, heat, w, h, (c.x, c.y, c.w, c.h)),
            };
            let lr_shape = Shape::new(1, 3, c.h, c.w);
            let stream = START_STREAM + 2 * ((c.y * w + c.x) as u64) * (1 << 33);
            let mut tick = |i: usize| progress(k * per_patch + i, total);
            // HR stage.
            let mut d = match start {
                HcdStart::Random => random_start(opts.seed, stream, &hr_p, opts.eps),
                HcdStart::Given { hr: dh, .. } => {
                    let mut d = dh.clone();
                    project_box(&mut d, &hr_p);
                    d
                }
            };
            let mut loss_hr = Vec::with_capacity(opts.iters.0 + 1);
            for i in 0..opts.iters.0 {
                let (sr, g, _) = self.hcd_gradient(ctx, HcdStage::Hr, lr_shape, &add(&hr_p, &d), &hr_p, &eps, heat).with_context(label)?;
                loss_hr.push(mse(&sr, &hr_p));
                pgd_step(&mut d, &g, &hr_p, opts.step, opts.eps);
                tick(i + 1);
            }
            let (sr, _, q) = self.hcd_gradient(ctx, HcdStage::Hr, lr_shape, &add(&hr_p, &d), &hr_p, &eps, heat).with_context(label)?;
            loss_hr.push(mse(&sr, &hr_p));
            let x0 = q.expect("the HR stage outputs its LR");
            let hr_stage_bytes = self.hcd_plan_bytes();
            tick(opts.iters.0 + 1);
            // LR stage.
            let mut e = match start {
                HcdStart::Random => random_start(opts.seed, stream + (1 << 33), &x0, opts.eps),
                HcdStart::Given { lr: dl, .. } => {
                    let mut e = dl.clone();
                    project_box(&mut e, &x0);
                    e
                }
            };
            let mut loss_lr = Vec::with_capacity(opts.iters.1 + 1);
            for i in 0..=opts.iters.1 {
                let (sr, g, _) = self.hcd_gradient(ctx, HcdStage::Lr, lr_shape, &add(&x0, &e), &hr_p, &eps, heat).with_context(label)?;
                loss_lr.push(mse(&sr, &hr_p));
                if i < opts.iters.1 {
                    pgd_step(&mut e, &g, &x0, opts.step, opts.eps);
                }
                tick(opts.iters.0 + 2 + i);
            }
            let lr_p = quantize8(&add(&x0, &e));
            let tile = Tile { window: c, core: c };
            paste(&mut lr_out, w, h, &lr_p, &tile, 1, 3);
            plan_bytes = plan_bytes.max(hr_stage_bytes).max(self.hcd_plan_bytes());
            patches.push(PatchTrace { rect: (c.x, c.y, c.w, c.h), loss_hr, loss_lr });
        }
        Ok(HcdResult { lr: RgbImage::new(w, h, lr_out)?, patches, plan_bytes })
    }

    /// Bytes allocated by the cached HCD graph.
    pub fn hcd_plan_bytes(&self) -> u64 {
        self.hcd.graph.get().map_or(0, |e| e.allocated_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgd_step_stays_in_the_ball_and_the_box() {
        let base: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin() * 0.5 + 0.5).collect();
        let g: Vec<f32> = (0..50).map(|i| (i as f32 * 1.3).cos()).collect();
        let mut d = random_start(7, 11, &base, 0.3);
        for _ in 0..20 {
            pgd_step(&mut d, &g, &base, 20.0 / 255.0, 0.3);
            let n = d.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            assert!(n <= 0.3 + 1e-6, "norm {n}");
            assert!(d.iter().zip(&base).all(|(v, b)| (0.0..=1.0).contains(&(v + b))));
        }
        // Moving against a fixed gradient decreases <g, d>.
        let dot: f64 = d.iter().zip(&g).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
        assert!(dot < 0.0, "{dot}");
    }

    #[test]
    fn random_start_norm_is_at_most_eps() {
        let base = vec![0.5f32; 300];
        let d = random_start(3, 5, &base, 0.3);
        let n = d.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        assert!(n > 0.0 && n <= 0.3 + 1e-6, "{n}");
        assert_ne!(random_start(3, 5, &base, 0.3), random_start(4, 5, &base, 0.3));
    }
}
