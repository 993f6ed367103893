//! Noise schedules, derived buffers and respacing, in f64 on the host
//! (tools/SR3.md section 3 and 4.3; formulas as the reference
//! `make_beta_schedule` / `set_new_noise_schedule` and improved-diffusion's
//! `space_timesteps`). Each scalar is cast to f32 only where it multiplies a
//! tensor, as the reference's float32 buffers are.

use crate::{Error, Result};

/// The reference's schedule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleKind {
    Linear,
    Cosine,
    Quad,
    Warmup10,
    Warmup50,
    Const,
    Jsd,
}

impl ScheduleKind {
    pub const ALL: [ScheduleKind; 7] = [
        ScheduleKind::Linear,
        ScheduleKind::Cosine,
        ScheduleKind::Quad,
        ScheduleKind::Warmup10,
        ScheduleKind::Warmup50,
        ScheduleKind::Const,
        ScheduleKind::Jsd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Linear => "linear",
            ScheduleKind::Cosine => "cosine",
            ScheduleKind::Quad => "quad",
            ScheduleKind::Warmup10 => "warmup10",
            ScheduleKind::Warmup50 => "warmup50",
            ScheduleKind::Const => "const",
            ScheduleKind::Jsd => "jsd",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
            Error::InvalidArgument(format!("unknown beta schedule '{name}' (known: {})", names.join(", ")))
        })
    }
}

/// Longest schedule accepted from a config (the reference trains on 2000).
pub const MAX_TIMESTEPS: usize = 100_000;

/// A beta schedule as the reference configs describe it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BetaSchedule {
    pub kind: ScheduleKind,
    pub n_timestep: usize,
    pub linear_start: f64,
    pub linear_end: f64,
    pub cosine_s: f64,
}

impl BetaSchedule {
    /// The reference defaults: linear_start 1e-4, linear_end 2e-2, cosine_s 8e-3.
    pub fn with_defaults(kind: ScheduleKind, n_timestep: usize) -> Self {
        BetaSchedule { kind, n_timestep, linear_start: 1e-4, linear_end: 2e-2, cosine_s: 8e-3 }
    }

    /// Checked before any schedule array is built (the official models use 2000).
    pub fn validate(&self) -> Result<()> {
        if self.n_timestep == 0 || self.n_timestep > MAX_TIMESTEPS {
            return Err(Error::InvalidArgument(format!("n_timestep is {}; it must be in 1..={MAX_TIMESTEPS}", self.n_timestep)));
        }
        let betas = self.betas();
        if let Some((i, b)) = betas.iter().enumerate().find(|(_, b)| !(**b > 0.0 && **b <= 1.0)) {
            return Err(Error::InvalidArgument(format!(
                "{} schedule gives beta[{i}] = {b}; every beta must lie in (0, 1] (check linear_start / linear_end)",
                self.kind.name()
            )));
        }
        Ok(())
    }

    /// f64 betas of length `n_timestep`.
    pub fn betas(&self) -> Vec<f64> {
        let t = self.n_timestep;
        let (ls, le) = (self.linear_start, self.linear_end);
        match self.kind {
            ScheduleKind::Linear => linspace(ls, le, t),
            ScheduleKind::Quad => linspace(ls.sqrt(), le.sqrt(), t).into_iter().map(|v| v * v).collect(),
            ScheduleKind::Warmup10 | ScheduleKind::Warmup50 => {
                let frac = if self.kind == ScheduleKind::Warmup10 { 0.1 } else { 0.5 };
                let nw = (t as f64 * frac) as usize; // Python int() truncates
                let mut b = vec![le; t];
                b[..nw].copy_from_slice(&linspace(ls, le, nw));
                b
            }
            ScheduleKind::Const => vec![le; t],
            ScheduleKind::Jsd => linspace(t as f64, 1.0, t).into_iter().map(|v| 1.0 / v).collect(),
            ScheduleKind::Cosine => {
                let s = self.cosine_s;
                // Same operation order as the reference's torch float64 code.
                let f: Vec<f64> = (0..=t)
                    .map(|i| {
                        let x = i as f64 / t as f64 + s;
                        let c = (x / (1.0 + s) * std::f64::consts::PI / 2.0).cos();
                        c * c
                    })
                    .collect();
                let f0 = f[0];
                let f: Vec<f64> = f.iter().map(|v| v / f0).collect();
                (0..t).map(|i| (1.0 - f[i + 1] / f[i]).min(0.999)).collect()
            }
        }
    }
}

/// numpy.linspace(start, stop, n) (endpoint included): `i * step + start`
/// with `step = (stop - start) / (n - 1)`, the last element exactly `stop`.
pub fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    v[n - 1] = stop;
    v
}

/// The derived f64 buffers the samplers read (tools/SR3.md section 3).
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleBuffers {
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    pub alphas_cumprod_prev: Vec<f64>,
    /// sqrt([1, ac[0], ..., ac[T-1]]): length T + 1.
    pub sqrt_alphas_cumprod_prev: Vec<f64>,
    pub sqrt_recip_alphas_cumprod: Vec<f64>,
    pub sqrt_recipm1_alphas_cumprod: Vec<f64>,
    pub posterior_variance: Vec<f64>,
    pub posterior_log_variance_clipped: Vec<f64>,
    pub posterior_mean_coef1: Vec<f64>,
    pub posterior_mean_coef2: Vec<f64>,
}

impl ScheduleBuffers {
    pub fn new(betas: &[f64]) -> Self {
        let t = betas.len();
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let mut ac = Vec::with_capacity(t);
        let mut acc = 1.0f64;
        for a in &alphas {
            acc *= a;
            ac.push(acc);
        }
        let ac_prev: Vec<f64> = std::iter::once(1.0).chain(ac.iter().copied()).take(t).collect();
        let sqrt_prev: Vec<f64> = std::iter::once(1.0).chain(ac.iter().copied()).map(f64::sqrt).collect();
        let post_var: Vec<f64> = (0..t).map(|i| betas[i] * (1.0 - ac_prev[i]) / (1.0 - ac[i])).collect();
        ScheduleBuffers {
            sqrt_recip_alphas_cumprod: ac.iter().map(|a| (1.0 / a).sqrt()).collect(),
            sqrt_recipm1_alphas_cumprod: ac.iter().map(|a| (1.0 / a - 1.0).sqrt()).collect(),
            posterior_log_variance_clipped: post_var.iter().map(|v| v.max(1e-20).ln()).collect(),
            posterior_mean_coef1: (0..t).map(|i| betas[i] * ac_prev[i].sqrt() / (1.0 - ac[i])).collect(),
            posterior_mean_coef2: (0..t).map(|i| (1.0 - ac_prev[i]) * alphas[i].sqrt() / (1.0 - ac[i])).collect(),
            posterior_variance: post_var,
            sqrt_alphas_cumprod_prev: sqrt_prev,
            alphas_cumprod_prev: ac_prev,
            alphas_cumprod: ac,
            betas: betas.to_vec(),
        }
    }
}

/// improved-diffusion `space_timesteps(T, [n])`: `n` 0-based timesteps from
/// `round_half_even(k * stride)` with `stride = (T-1)/(n-1)` accumulated by
/// addition; always 0 and T-1 (n > 1). Ascending.
pub fn space_timesteps(num_timesteps: usize, n: usize) -> Result<Vec<usize>> {
    if n == 0 || n > num_timesteps {
        return Err(Error::InvalidArgument(format!("cannot respace {num_timesteps} timesteps to {n} steps (need 1..={num_timesteps})")));
    }
    let stride = if n == 1 { 1.0 } else { (num_timesteps - 1) as f64 / (n - 1) as f64 };
    let mut cur = 0.0f64;
    let mut taken = Vec::with_capacity(n);
    for _ in 0..n {
        taken.push(cur.round_ties_even() as usize);
        cur += stride;
    }
    taken.sort_unstable();
    taken.dedup();
    if taken.len() != n {
        return Err(Error::InvalidArgument(format!("respacing {num_timesteps} timesteps to {n} steps repeats a timestep")));
    }
    Ok(taken)
}

/// Betas of the respaced chain: `1 - ac[t_k] / ac[t_{k-1}]`, `ac[t_{-1}] = 1`,
/// so that the cumulative product at step k equals `ac[t_k]`.
pub fn respace_betas(betas: &[f64], timesteps: &[usize]) -> Result<Vec<f64>> {
    let ac = ScheduleBuffers::new(betas).alphas_cumprod;
    let mut last = 1.0;
    let mut out = Vec::with_capacity(timesteps.len());
    for &t in timesteps {
        let a = *ac.get(t).ok_or_else(|| Error::InvalidArgument(format!("timestep {t} is outside a {}-step schedule", ac.len())))?;
        out.push(1.0 - a / last);
        last = a;
    }
    Ok(out)
}
