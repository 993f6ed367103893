//! `config.json` of a converted SR3 model (`format` = "wgsr-sr3", see
//! tools/SR3.md section 1), parsed into typed fields with errors that name
//! the missing or invalid field.

use serde_json::Value;

use crate::models::sr3::schedule::{BetaSchedule, ScheduleKind};
use crate::models::json::Fields;
use crate::Result;

/// U-Net hyperparameters (`unet.*`).
#[derive(Clone, Debug, PartialEq)]
pub struct UNetConfig {
    pub in_channel: usize,
    pub out_channel: usize,
    /// C0: base width and noise-embedding width.
    pub inner_channel: usize,
    pub norm_groups: usize,
    pub channel_multiplier: Vec<usize>,
    /// Resolutions (pixels, square) whose Resnet blocks get attention.
    pub attn_res: Vec<usize>,
    pub res_blocks: usize,
    /// Resolution `attn_res` is measured against (= hr_size).
    pub image_size: usize,
    pub group_norm_eps: f32,
}

/// Default sampler of the config (`sampler.*`).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// "ddpm" or "ddim".
    pub kind: String,
    pub steps: usize,
    pub clip_denoised: bool,
}

/// A parsed SR3 `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sr3Config {
    pub unet: UNetConfig,
    pub lr_size: usize,
    pub hr_size: usize,
    pub channels: usize,
    /// Sampling schedule (the reference's `beta_schedule.val`).
    pub schedule: BetaSchedule,
    /// Training schedule (informational; equal to `schedule` in the official configs).
    pub train_schedule: Option<BetaSchedule>,
    pub sampler: SamplerConfig,
}

const WHAT: &str = "SR3 config.json";

/// The fields tools/sr3_convert.py writes. Read and checked: format, arch,
/// unet.*, sizes, schedules, sampler, prediction, and the descriptive ones
/// that must agree with them (scale, image_size, conditional, value_range,
/// conditioning.method). Free-text provenance (notes, source files, weight
/// file facts) is allowed but not read. Anything else is refused.
const KNOWN: &[&str] = &[
    "format", "format_version", "arch", "unet.in_channel", "unet.out_channel", "unet.inner_channel", "unet.norm_groups",
    "unet.channel_multiplier", "unet.attn_res", "unet.res_blocks", "unet.dropout", "unet.image_size", "unet.noise_emb_dim",
    "unet.attn_heads", "unet.use_affine_level", "unet.group_norm_eps", "image_size", "lr_size", "hr_size", "scale", "channels",
    "conditional", "value_range", "conditioning.method", "conditioning.note", "output", "prediction", "noise_level",
    "schedule.schedule", "schedule.n_timestep", "schedule.linear_start", "schedule.linear_end", "schedule.cosine_s",
    "train_schedule.schedule", "train_schedule.n_timestep", "train_schedule.linear_start", "train_schedule.linear_end",
    "train_schedule.cosine_s", "sampler.kind", "sampler.steps", "sampler.clip_denoised", "weights.file", "weights.dtype",
    "weights.prefix_stripped", "weights.n_params", "checkpoint_schedule_matched", "source.config", "source.checkpoint",
];

fn schedule_at(j: &Fields, path: &str) -> Result<BetaSchedule> {
    let name = j.str(&format!("{path}.schedule"))?;
    let kind = ScheduleKind::parse(name).map_err(|e| j.bad(&format!("{path}.schedule"), e))?;
    let n_timestep = j.usize(&format!("{path}.n_timestep"))?;
    let linear_start = j.f64(&format!("{path}.linear_start"))?;
    let linear_end = j.f64(&format!("{path}.linear_end"))?;
    // The reference never passes cosine_s; its default applies when absent.
    let cosine_s = j.f64_or(&format!("{path}.cosine_s"), 8e-3)?;
    let s = BetaSchedule { kind, n_timestep, linear_start, linear_end, cosine_s };
    s.validate().map_err(|e| j.bad(path, e))?;
    Ok(s)
}

impl Sr3Config {
    /// Parse and check a `config.json` value.
    pub fn from_json(v: &Value) -> Result<Self> {
        let j = &Fields::new(v, WHAT);
        j.refuse_unknown(KNOWN)?;
        let format = j.str("format")?;
        if format != "wgsr-sr3" {
            return Err(j.bad("format", format!("is '{format}', expected 'wgsr-sr3' (convert the checkpoint with tools/sr3_convert.py)")));
        }
        let version = j.usize("format_version")?;
        if version != 1 {
            return Err(j.bad("format_version", format!("is {version}; this build reads version 1")));
        }
        if let Some(arch) = j.opt("arch") {
            if arch.as_str() != Some("sr3") {
                return Err(j.bad("arch", format!("is {arch}, expected \"sr3\"")));
            }
        }
        if let Some(p) = j.opt("prediction") {
            if p.as_str() != Some("epsilon") {
                return Err(j.bad("prediction", format!("is {p}; only \"epsilon\" is supported")));
            }
        }
        let heads = j.usize_or("unet.attn_heads", 1)?;
        if heads != 1 {
            return Err(j.bad("unet.attn_heads", format!("is {heads}; the SR3 U-Net has single-head attention")));
        }
        if let Some(a) = j.opt("unet.use_affine_level") {
            if a.as_bool() != Some(false) {
                return Err(j.bad("unet.use_affine_level", format!("is {a}; only the additive noise bias (false) is supported")));
            }
        }
        let group_norm_eps = j.f64_or("unet.group_norm_eps", 1e-5)?;
        let unet = UNetConfig {
            in_channel: j.usize("unet.in_channel")?,
            out_channel: j.usize("unet.out_channel")?,
            inner_channel: j.usize("unet.inner_channel")?,
            norm_groups: j.usize("unet.norm_groups")?,
            channel_multiplier: j.usizes("unet.channel_multiplier")?,
            attn_res: j.usizes("unet.attn_res")?,
            res_blocks: j.usize("unet.res_blocks")?,
            image_size: j.usize("unet.image_size")?,
            group_norm_eps: group_norm_eps as f32,
        };
        let cfg = Sr3Config {
            lr_size: j.usize("lr_size")?,
            hr_size: j.usize("hr_size")?,
            channels: j.usize("channels")?,
            schedule: schedule_at(j, "schedule")?,
            train_schedule: match j.opt("train_schedule") {
                Some(_) => Some(schedule_at(j, "train_schedule")?),
                None => None,
            },
            sampler: SamplerConfig {
                kind: j.str_or("sampler.kind", "ddpm")?.to_string(),
                steps: j.usize_or("sampler.steps", 0)?,
                clip_denoised: j.bool_or("sampler.clip_denoised", true)?,
            },
            unet,
        };
        cfg.check()?;
        // Descriptive fields, when present, must say the same as the ones read.
        let lr = cfg.lr_size.max(1);
        for (field, want) in [("scale", cfg.hr_size / lr), ("image_size", cfg.hr_size), ("unet.noise_emb_dim", cfg.unet.inner_channel)] {
            if let Some(x) = j.opt(field) {
                if x.as_u64() != Some(want as u64) {
                    return Err(j.bad(field, format!("is {x}, but the sizes read give {want}")));
                }
            }
        }
        if j.opt("conditional").is_some() && !j.bool("conditional")? {
            return Err(j.bad("conditional", "must be true: wgsr runs the conditional (SR) U-Net"));
        }
        if j.opt("conditioning.method").is_some() && j.str("conditioning.method")? != "pil_bicubic" {
            return Err(j.bad("conditioning.method", "must be \"pil_bicubic\" (the reference's condition)"));
        }
        if let Some(r) = j.opt("value_range") {
            if r.as_array().and_then(|a| Some((a.first()?.as_f64()?, a.get(1)?.as_f64()?))) != Some((-1.0, 1.0)) {
                return Err(j.bad("value_range", format!("is {r}; the reference works on [-1, 1]")));
            }
        }
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        let j = Fields::errors(WHAT);
        let u = &self.unet;
        // Bounds well above the official models (inner 64, 5 levels, 3 blocks,
        // 512 px), so a hostile config cannot size an unbounded graph.
        for (field, v, max) in [
            ("unet.inner_channel", u.inner_channel, 4096),
            ("unet.res_blocks", u.res_blocks, 64),
            ("unet.channel_multiplier", u.channel_multiplier.len(), 8),
            ("hr_size", self.hr_size, 4096),
        ] {
            if v > max {
                return Err(j.bad(field, format!("is {v}; at most {max} is supported")));
            }
        }
        if let Some(m) = u.channel_multiplier.iter().find(|&&m| m > 64) {
            return Err(j.bad("unet.channel_multiplier", format!("has {m}; multipliers above 64 are not supported")));
        }
        if self.channels != 3 {
            return Err(j.bad("channels", format!("is {}; SR3 works on RGB (3)", self.channels)));
        }
        if u.in_channel != 2 * self.channels || u.out_channel != self.channels {
            return Err(j.bad(
                "unet.in_channel",
                format!("/ out_channel are {} / {}; a conditional SR3 U-Net takes cat(condition, y_t) = 6 and predicts 3", u.in_channel, u.out_channel),
            ));
        }
        if u.inner_channel == 0 || !u.inner_channel.is_multiple_of(2) {
            return Err(j.bad("unet.inner_channel", format!("is {}; it must be even and positive (sin/cos embedding halves)", u.inner_channel)));
        }
        if u.channel_multiplier.is_empty() || u.channel_multiplier.contains(&0) {
            return Err(j.bad("unet.channel_multiplier", format!("is {:?}; it needs at least one positive multiplier", u.channel_multiplier)));
        }
        if u.res_blocks == 0 {
            return Err(j.bad("unet.res_blocks", "must be at least 1"));
        }
        if u.norm_groups == 0 {
            return Err(j.bad("unet.norm_groups", "must be at least 1"));
        }
        for &m in &u.channel_multiplier {
            if !(u.inner_channel * m).is_multiple_of(u.norm_groups) {
                return Err(j.bad(
                    "unet.norm_groups",
                    format!("is {}; it must divide every level's channel count ({} x {m})", u.norm_groups, u.inner_channel),
                ));
            }
        }
        if !u.inner_channel.is_multiple_of(u.norm_groups) {
            return Err(j.bad("unet.norm_groups", format!("is {}; it must divide inner_channel {}", u.norm_groups, u.inner_channel)));
        }
        let levels = u.channel_multiplier.len();
        let div = 1usize << (levels - 1);
        if u.image_size == 0 || !u.image_size.is_multiple_of(div) {
            return Err(j.bad("unet.image_size", format!("is {}; it must be divisible by 2^{} for {levels} levels", u.image_size, levels - 1)));
        }
        if self.hr_size != u.image_size {
            return Err(j.bad("hr_size", format!("is {} but unet.image_size is {}; they must agree", self.hr_size, u.image_size)));
        }
        if self.lr_size == 0 || self.lr_size > self.hr_size {
            return Err(j.bad("lr_size", format!("is {}; it must be in 1..={}", self.lr_size, self.hr_size)));
        }
        if u.group_norm_eps.is_nan() || u.group_norm_eps <= 0.0 {
            return Err(j.bad("unet.group_norm_eps", format!("is {}; it must be positive", u.group_norm_eps)));
        }
        match self.sampler.kind.as_str() {
            "ddpm" | "ddim" => {}
            k => return Err(j.bad("sampler.kind", format!("is '{k}'; expected 'ddpm' or 'ddim'"))),
        }
        if self.sampler.steps > self.schedule.n_timestep {
            return Err(j.bad("sampler.steps", format!("is {}, more than the schedule's {} timesteps", self.sampler.steps, self.schedule.n_timestep)));
        }
        Ok(())
    }

    /// Default number of sampling steps (the config's, else the full schedule).
    pub fn default_steps(&self) -> usize {
        if self.sampler.steps == 0 {
            self.schedule.n_timestep
        } else {
            self.sampler.steps
        }
    }
}
