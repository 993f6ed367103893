//! `config.json` of a converted SR3 model (`format` = "wgsr-sr3", see
//! tools/SR3.md section 1), parsed into typed fields with errors that name
//! the missing or invalid field.

use serde_json::Value;

use crate::models::sr3::schedule::{BetaSchedule, ScheduleKind};
use crate::{Error, Result};

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

fn bad(field: &str, msg: impl std::fmt::Display) -> Error {
    Error::Weights(format!("SR3 config.json: field '{field}' {msg}"))
}

fn get<'a>(v: &'a Value, path: &str) -> Result<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part).ok_or_else(|| bad(path, "is missing"))?;
    }
    Ok(cur)
}

fn get_opt<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

fn as_usize(v: &Value, path: &str) -> Result<usize> {
    v.as_u64().map(|x| x as usize).ok_or_else(|| bad(path, format!("must be a non-negative integer, got {v}")))
}

fn usize_at(v: &Value, path: &str) -> Result<usize> {
    as_usize(get(v, path)?, path)
}

fn f64_at(v: &Value, path: &str) -> Result<f64> {
    let x = get(v, path)?;
    x.as_f64().filter(|f| f.is_finite()).ok_or_else(|| bad(path, format!("must be a finite number, got {x}")))
}

fn str_at<'a>(v: &'a Value, path: &str) -> Result<&'a str> {
    let x = get(v, path)?;
    x.as_str().ok_or_else(|| bad(path, format!("must be a string, got {x}")))
}

fn usize_list(v: &Value, path: &str) -> Result<Vec<usize>> {
    let x = get(v, path)?;
    let arr = x.as_array().ok_or_else(|| bad(path, format!("must be a list of integers, got {x}")))?;
    arr.iter().map(|e| as_usize(e, path)).collect()
}

fn schedule_at(v: &Value, path: &str) -> Result<BetaSchedule> {
    let name = str_at(v, &format!("{path}.schedule"))?;
    let kind = ScheduleKind::parse(name).map_err(|e| bad(&format!("{path}.schedule"), e))?;
    let n_timestep = usize_at(v, &format!("{path}.n_timestep"))?;
    let linear_start = f64_at(v, &format!("{path}.linear_start"))?;
    let linear_end = f64_at(v, &format!("{path}.linear_end"))?;
    // The reference never passes cosine_s; its default applies when absent.
    let cosine_s = match get_opt(v, &format!("{path}.cosine_s")) {
        Some(_) => f64_at(v, &format!("{path}.cosine_s"))?,
        None => 8e-3,
    };
    let s = BetaSchedule { kind, n_timestep, linear_start, linear_end, cosine_s };
    s.validate().map_err(|e| bad(path, e))?;
    Ok(s)
}

impl Sr3Config {
    /// Parse and check a `config.json` value.
    pub fn from_json(v: &Value) -> Result<Self> {
        let format = str_at(v, "format")?;
        if format != "wgsr-sr3" {
            return Err(bad("format", format!("is '{format}', expected 'wgsr-sr3' (convert the checkpoint with tools/sr3_convert.py)")));
        }
        let version = usize_at(v, "format_version")?;
        if version != 1 {
            return Err(bad("format_version", format!("is {version}; this build reads version 1")));
        }
        if let Some(arch) = get_opt(v, "arch") {
            if arch.as_str() != Some("sr3") {
                return Err(bad("arch", format!("is {arch}, expected \"sr3\"")));
            }
        }
        if let Some(p) = get_opt(v, "prediction") {
            if p.as_str() != Some("epsilon") {
                return Err(bad("prediction", format!("is {p}; only \"epsilon\" is supported")));
            }
        }
        let heads = match get_opt(v, "unet.attn_heads") {
            Some(_) => usize_at(v, "unet.attn_heads")?,
            None => 1,
        };
        if heads != 1 {
            return Err(bad("unet.attn_heads", format!("is {heads}; the SR3 U-Net has single-head attention")));
        }
        if let Some(a) = get_opt(v, "unet.use_affine_level") {
            if a.as_bool() != Some(false) {
                return Err(bad("unet.use_affine_level", format!("is {a}; only the additive noise bias (false) is supported")));
            }
        }
        let group_norm_eps = match get_opt(v, "unet.group_norm_eps") {
            Some(_) => f64_at(v, "unet.group_norm_eps")?,
            None => 1e-5,
        };
        let unet = UNetConfig {
            in_channel: usize_at(v, "unet.in_channel")?,
            out_channel: usize_at(v, "unet.out_channel")?,
            inner_channel: usize_at(v, "unet.inner_channel")?,
            norm_groups: usize_at(v, "unet.norm_groups")?,
            channel_multiplier: usize_list(v, "unet.channel_multiplier")?,
            attn_res: usize_list(v, "unet.attn_res")?,
            res_blocks: usize_at(v, "unet.res_blocks")?,
            image_size: usize_at(v, "unet.image_size")?,
            group_norm_eps: group_norm_eps as f32,
        };
        let cfg = Sr3Config {
            lr_size: usize_at(v, "lr_size")?,
            hr_size: usize_at(v, "hr_size")?,
            channels: usize_at(v, "channels")?,
            schedule: schedule_at(v, "schedule")?,
            train_schedule: match get_opt(v, "train_schedule") {
                Some(_) => Some(schedule_at(v, "train_schedule")?),
                None => None,
            },
            sampler: SamplerConfig {
                kind: match get_opt(v, "sampler.kind") {
                    Some(_) => str_at(v, "sampler.kind")?.to_string(),
                    None => "ddpm".into(),
                },
                steps: match get_opt(v, "sampler.steps") {
                    Some(_) => usize_at(v, "sampler.steps")?,
                    None => 0,
                },
                clip_denoised: match get_opt(v, "sampler.clip_denoised") {
                    Some(x) => x.as_bool().ok_or_else(|| bad("sampler.clip_denoised", format!("must be true or false, got {x}")))?,
                    None => true,
                },
            },
            unet,
        };
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        let u = &self.unet;
        if self.channels != 3 {
            return Err(bad("channels", format!("is {}; SR3 works on RGB (3)", self.channels)));
        }
        if u.in_channel != 2 * self.channels || u.out_channel != self.channels {
            return Err(bad(
                "unet.in_channel",
                format!("/ out_channel are {} / {}; a conditional SR3 U-Net takes cat(condition, y_t) = 6 and predicts 3", u.in_channel, u.out_channel),
            ));
        }
        if u.inner_channel == 0 || !u.inner_channel.is_multiple_of(2) {
            return Err(bad("unet.inner_channel", format!("is {}; it must be even and positive (sin/cos embedding halves)", u.inner_channel)));
        }
        if u.channel_multiplier.is_empty() || u.channel_multiplier.contains(&0) {
            return Err(bad("unet.channel_multiplier", format!("is {:?}; it needs at least one positive multiplier", u.channel_multiplier)));
        }
        if u.res_blocks == 0 {
            return Err(bad("unet.res_blocks", "must be at least 1"));
        }
        if u.norm_groups == 0 {
            return Err(bad("unet.norm_groups", "must be at least 1"));
        }
        for &m in &u.channel_multiplier {
            if !(u.inner_channel * m).is_multiple_of(u.norm_groups) {
                return Err(bad(
                    "unet.norm_groups",
                    format!("is {}; it must divide every level's channel count ({} x {m})", u.norm_groups, u.inner_channel),
                ));
            }
        }
        if !u.inner_channel.is_multiple_of(u.norm_groups) {
            return Err(bad("unet.norm_groups", format!("is {}; it must divide inner_channel {}", u.norm_groups, u.inner_channel)));
        }
        let levels = u.channel_multiplier.len();
        let div = 1usize << (levels - 1);
        if u.image_size == 0 || !u.image_size.is_multiple_of(div) {
            return Err(bad("unet.image_size", format!("is {}; it must be divisible by 2^{} for {levels} levels", u.image_size, levels - 1)));
        }
        if self.hr_size != u.image_size {
            return Err(bad("hr_size", format!("is {} but unet.image_size is {}; they must agree", self.hr_size, u.image_size)));
        }
        if self.lr_size == 0 || self.lr_size > self.hr_size {
            return Err(bad("lr_size", format!("is {}; it must be in 1..={}", self.lr_size, self.hr_size)));
        }
        if u.group_norm_eps.is_nan() || u.group_norm_eps <= 0.0 {
            return Err(bad("unet.group_norm_eps", format!("is {}; it must be positive", u.group_norm_eps)));
        }
        match self.sampler.kind.as_str() {
            "ddpm" | "ddim" => {}
            k => return Err(bad("sampler.kind", format!("is '{k}'; expected 'ddpm' or 'ddim'"))),
        }
        if self.sampler.steps > self.schedule.n_timestep {
            return Err(bad("sampler.steps", format!("is {}, more than the schedule's {} timesteps", self.sampler.steps, self.schedule.n_timestep)));
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
