//! Sampler step coefficients (tools/SR3.md section 4). Every step of both
//! samplers has the same shape, so one prepared graph serves both:
//!
//! ```text
//! eps     = UNet(cat(cond, x), level)
//! x0      = clamp(a * x + e * eps, -1, 1)
//! x_next  = p * x0 + q * x + s * z
//! ```
//!
//! * DDPM (reference `p_sample_loop`): a = sqrt_recip_alphas_cumprod[t],
//!   e = -sqrt_recipm1_alphas_cumprod[t], p / q = posterior_mean_coef1 / 2,
//!   s = exp(0.5 * posterior_log_variance_clipped[t]) (0 at t = 0).
//! * DDIM: with A = sqrt(1/abar), B = sqrt(1/abar - 1), the re-derived
//!   eps' = (A x - x0) / B gives x_next = sqrt(abar_prev) x0 + dir eps' + sigma z
//!   = (sqrt(abar_prev) - dir/B) x0 + (dir A / B) x + sigma z, so p and q are
//!   formed in f64 from the f32-cast scalars the reference multiplies with.
//!
//! All scalars are computed in f64 from the f64 schedule; the executor casts
//! them to f32 (as the reference's float32 buffers) when they reach the GPU.

use crate::models::sr3::schedule::{respace_betas, space_timesteps, BetaSchedule, ScheduleBuffers};
use crate::{Error, Result};

/// Which sampler `Sr3::upscale` runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// Ancestral sampling (the reference `p_sample_loop`), on the config's
    /// schedule respaced to the requested number of steps.
    Ddpm,
    /// DDIM (Song et al. 2021) with stochasticity `eta` (0 = deterministic).
    Ddim { eta: f32 },
}

/// One sampling step's scalars (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoefs {
    /// Training timestep of this step (0-based, in the un-respaced schedule).
    pub timestep: usize,
    /// Noise level fed to the U-Net: sqrt(alpha_bar) (as f32 in the reference).
    pub level: f64,
    pub a: f64,
    pub e: f64,
    pub p: f64,
    pub q: f64,
    /// Scale of the fresh noise z; 0 when the step adds none.
    pub s: f64,
}

impl StepCoefs {
    pub fn uses_noise(&self) -> bool {
        self.s != 0.0
    }
}

fn f32r(v: f64) -> f64 {
    v as f32 as f64
}

/// Ancestral DDPM steps on the chain `betas` (the schedule itself or a
/// respaced one), in sampling order t = T-1 .. 0. `timesteps[k]` names the
/// training timestep of chain step k (for reporting only).
pub fn ddpm_steps(betas: &[f64], timesteps: &[usize]) -> Vec<StepCoefs> {
    let b = ScheduleBuffers::new(betas);
    (0..betas.len())
        .rev()
        .map(|t| StepCoefs {
            timestep: timesteps.get(t).copied().unwrap_or(t),
            level: f32r(b.sqrt_alphas_cumprod_prev[t + 1]),
            a: f32r(b.sqrt_recip_alphas_cumprod[t]),
            e: -f32r(b.sqrt_recipm1_alphas_cumprod[t]),
            p: f32r(b.posterior_mean_coef1[t]),
            q: f32r(b.posterior_mean_coef2[t]),
            // The reference: torch.exp(0.5 * logvar) on a float32 tensor.
            s: if t > 0 { (0.5f32 * b.posterior_log_variance_clipped[t] as f32).exp() as f64 } else { 0.0 },
        })
        .collect()
}

/// DDIM steps on `train_betas` respaced to `steps` timesteps, in sampling order.
pub fn ddim_steps(train_betas: &[f64], steps: usize, eta: f64) -> Result<Vec<StepCoefs>> {
    if !(eta >= 0.0 && eta.is_finite()) {
        return Err(Error::InvalidArgument(format!("DDIM eta must be a finite number >= 0, got {eta}")));
    }
    let ac = ScheduleBuffers::new(train_betas).alphas_cumprod;
    let taus = space_timesteps(ac.len(), steps)?;
    Ok((0..taus.len())
        .rev()
        .map(|k| {
            let abar = ac[taus[k]];
            let abar_prev = if k > 0 { ac[taus[k - 1]] } else { 1.0 };
            let sigma = eta * ((1.0 - abar_prev) / (1.0 - abar)).sqrt() * (1.0 - abar / abar_prev).sqrt();
            let (a, bcoef) = (f32r((1.0 / abar).sqrt()), f32r((1.0 / abar - 1.0).sqrt()));
            let sp = f32r(abar_prev.sqrt());
            let dir = f32r((1.0 - abar_prev - sigma * sigma).max(0.0).sqrt());
            StepCoefs {
                timestep: taus[k],
                level: f32r(abar.sqrt()),
                a,
                e: -bcoef,
                p: sp - dir / bcoef,
                q: dir * a / bcoef,
                s: if k > 0 && sigma > 0.0 { f32r(sigma) } else { 0.0 },
            }
        })
        .collect())
}

/// The steps `sampler` takes on `schedule` with `steps` sampling steps.
/// DDPM respaces the schedule (steps = T runs the full chain); DDIM uses
/// the respaced timesteps of the same T-step schedule.
pub fn plan(schedule: &BetaSchedule, sampler: Sampler, steps: usize) -> Result<Vec<StepCoefs>> {
    let betas = schedule.betas();
    let t = betas.len();
    let taus = space_timesteps(t, steps)?;
    match sampler {
        Sampler::Ddpm => {
            if steps == t {
                Ok(ddpm_steps(&betas, &taus))
            } else {
                Ok(ddpm_steps(&respace_betas(&betas, &taus)?, &taus))
            }
        }
        Sampler::Ddim { eta } => ddim_steps(&betas, steps, eta as f64),
    }
}
