//! `config.json` of a converted Pixel Recursive SR model (family "pixelcnn",
//! written by tools/pixelcnn_convert.py; schema in tools/PIXELCNN.md) and the
//! exact list of weight tensors it implies.

use serde_json::Value;

use crate::models::json::Fields;
use crate::{Error, Result};

pub const COLOURS: usize = 3;
pub const LEVELS: usize = 256;
/// Logit channels: colour c, value v at channel c * 256 + v.
pub const LOGITS: usize = COLOURS * LEVELS;

/// Architecture (the `model` object of config.json, field names as in
/// tools/pixelcnn_ref.py `PixelCNNConfig`). `Default` is the paper's size:
/// 8x8 -> 32x32, 20 gated blocks of 32 channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PixelCnnConfig {
    pub lr_h: usize,
    pub lr_w: usize,
    /// Power of two >= 2: number of stride-2 transposed convs is log2(scale).
    pub scale: usize,
    pub cond_channels: usize,
    pub cond_in_kernel: usize,
    pub cond_res_per_stage: usize,
    pub cond_kernel: usize,
    pub cond_up_kernel: usize,
    pub prior_channels: usize,
    pub prior_blocks: usize,
    pub prior_in_kernel: usize,
    pub prior_v_kernel: usize,
    pub prior_h_kernel: usize,
    pub prior_hidden: usize,
}

impl Default for PixelCnnConfig {
    fn default() -> Self {
        PixelCnnConfig {
            lr_h: 8,
            lr_w: 8,
            scale: 4,
            cond_channels: 32,
            cond_in_kernel: 1,
            cond_res_per_stage: 6,
            cond_kernel: 3,
            cond_up_kernel: 3,
            prior_channels: 32,
            prior_blocks: 20,
            prior_in_kernel: 7,
            prior_v_kernel: 5,
            prior_h_kernel: 5,
            prior_hidden: 1024,
        }
    }
}

const WHAT: &str = "PixelCNN config.json";

/// The fields tools/pixelcnn_convert.py writes. `model.*` is read; the
/// descriptive summary (sizes, layouts, the per-layer table) is allowed but,
/// apart from the sizes checked against `model.*`, not read. Anything else is
/// refused.
const KNOWN: &[&str] = &[
    "family", "format", "version", "model.lr_h", "model.lr_w", "model.scale", "model.cond_channels", "model.cond_in_kernel",
    "model.cond_res_per_stage", "model.cond_kernel", "model.cond_up_kernel", "model.cond_bn", "model.prior_channels",
    "model.prior_blocks", "model.prior_in_kernel", "model.prior_v_kernel", "model.prior_h_kernel", "model.prior_hidden",
    "lr_size", "hr_size", "scale", "colours", "levels", "input_scaling", "logits_layout", "logits", "sampling_order",
    "uniforms_layout", "weights_masked", "bn_folded", "conditioning.channels", "conditioning.in_kernel",
    "conditioning.res_per_stage", "conditioning.stages", "conditioning.kernel", "conditioning.up_stages",
    "conditioning.up_kernel", "conditioning.up_stride", "conditioning.up_padding", "conditioning.up_output_padding",
    "prior.channels", "prior.blocks", "prior.in_kernel", "prior.in_mask", "prior.v_kernel", "prior.v_masks", "prior.h_kernel",
    "prior.h_mask", "prior.gate", "prior.hidden", "prior.colour_groups", "layers.*.key", "layers.*.op", "layers.*.in",
    "layers.*.out", "layers.*.kernel", "layers.*.stride", "layers.*.padding", "layers.*.mask", "layers.*.act", "layers.*.note",
    "layers.*.output_padding",
];

fn bad(msg: String) -> Error {
    Error::Weights(format!("{WHAT}: {msg}"))
}

impl PixelCnnConfig {
    pub fn hr_h(&self) -> usize {
        self.lr_h * self.scale
    }
    pub fn hr_w(&self) -> usize {
        self.lr_w * self.scale
    }
    pub fn up_stages(&self) -> usize {
        self.scale.trailing_zeros() as usize
    }
    /// (padding, output_padding) of the stride-2 transposed convs that exactly double H and W.
    pub fn up_padding(&self) -> (usize, usize) {
        let k = self.cond_up_kernel;
        let p = (k - 1) / 2;
        (p, 2 + 2 * p - k)
    }

    /// Parse a whole config.json (checks `family` and the `model` object).
    pub fn from_json(v: &Value) -> Result<Self> {
        match v.get("family").and_then(Value::as_str) {
            Some("pixelcnn") => {}
            Some(f) => return Err(bad(format!("family is '{f}', expected 'pixelcnn'"))),
            None => return Err(bad("no \"family\": \"pixelcnn\" entry (convert with tools/pixelcnn_convert.py)".into())),
        }
        match v.get("version").and_then(Value::as_u64) {
            Some(1) => {}
            Some(v) => return Err(bad(format!("version {v} is not supported (expected 1)"))),
            None => return Err(bad("version is missing or not an integer (expected 1)".into())),
        }
        if v.get("weights_masked").and_then(Value::as_bool) != Some(true) {
            return Err(bad("\"weights_masked\" must be true (masks multiplied into the weights by the converter)".into()));
        }
        let j = Fields::new(v, WHAT);
        j.refuse_unknown(KNOWN)?;
        if !j.get("model")?.is_object() {
            return Err(j.bad("model", "must be an object"));
        }
        let get = |k: &str| {
            let path = format!("model.{k}");
            j.opt(&path).ok_or_else(|| bad(format!("{path} is missing")))?;
            j.usize(&path)
        };
        let cfg = PixelCnnConfig {
            lr_h: get("lr_h")?,
            lr_w: get("lr_w")?,
            scale: get("scale")?,
            cond_channels: get("cond_channels")?,
            cond_in_kernel: get("cond_in_kernel")?,
            cond_res_per_stage: get("cond_res_per_stage")?,
            cond_kernel: get("cond_kernel")?,
            cond_up_kernel: get("cond_up_kernel")?,
            prior_channels: get("prior_channels")?,
            prior_blocks: get("prior_blocks")?,
            prior_in_kernel: get("prior_in_kernel")?,
            prior_v_kernel: get("prior_v_kernel")?,
            prior_h_kernel: get("prior_h_kernel")?,
            prior_hidden: get("prior_hidden")?,
        };
        cfg.validate()?;
        // The descriptive sizes, when present, must agree with `model.*`.
        let pairs = [("scale", cfg.scale), ("colours", COLOURS), ("levels", LEVELS), ("prior.blocks", cfg.prior_blocks), ("prior.hidden", cfg.prior_hidden)];
        for (field, want) in pairs {
            if let Some(x) = j.opt(field) {
                if x.as_u64() != Some(want as u64) {
                    return Err(j.bad(field, format!("is {x}, but model.* gives {want}")));
                }
            }
        }
        for (field, want) in [("lr_size", [cfg.lr_h, cfg.lr_w]), ("hr_size", [cfg.hr_h(), cfg.hr_w()])] {
            if let Some(x) = j.opt(field) {
                if j.usizes(field).ok().as_deref() != Some(&want[..]) {
                    return Err(j.bad(field, format!("is {x}, but model.* gives {want:?}")));
                }
            }
        }
        Ok(cfg)
    }

    /// The same rules as `PixelCNNConfig.validate` in tools/pixelcnn_ref.py.
    pub fn validate(&self) -> Result<()> {
        if self.lr_h == 0 || self.lr_w == 0 || self.lr_h > 1024 || self.lr_w > 1024 {
            return Err(bad(format!("LR size {}x{} must be 1..1024", self.lr_h, self.lr_w)));
        }
        if self.scale < 2 || !self.scale.is_power_of_two() || self.scale > 64 {
            return Err(bad(format!("scale must be a power of two in 2..64, got {}", self.scale)));
        }
        for (name, k) in [
            ("cond_in_kernel", self.cond_in_kernel),
            ("cond_kernel", self.cond_kernel),
            ("prior_in_kernel", self.prior_in_kernel),
            ("prior_v_kernel", self.prior_v_kernel),
            ("prior_h_kernel", self.prior_h_kernel),
        ] {
            if k == 0 || k % 2 == 0 || k > 31 {
                return Err(bad(format!("{name} must be odd and at most 31, got {k}")));
            }
        }
        if self.prior_in_kernel < 3 || self.prior_v_kernel < 3 || self.prior_h_kernel < 3 {
            return Err(bad("prior kernels must be >= 3 (a 1-wide masked kernel sees nothing)".into()));
        }
        if !(2..=5).contains(&self.cond_up_kernel) {
            return Err(bad(format!("cond_up_kernel must be in 2..5, got {}", self.cond_up_kernel)));
        }
        if self.prior_channels < COLOURS || self.prior_hidden < COLOURS {
            return Err(bad("prior_channels and prior_hidden must be >= 3 (one channel per colour group)".into()));
        }
        if self.prior_blocks == 0 || self.cond_channels == 0 {
            return Err(bad("prior_blocks and cond_channels must be >= 1".into()));
        }
        // Bounds far above the paper's sizes, so a hostile config cannot
        // make the graph builder allocate without limit.
        for (name, v, max) in [
            ("prior_blocks", self.prior_blocks, 256),
            ("cond_res_per_stage", self.cond_res_per_stage, 256),
            ("cond_channels", self.cond_channels, 4096),
            ("prior_channels", self.prior_channels, 4096),
            ("prior_hidden", self.prior_hidden, 65536),
        ] {
            if v > max {
                return Err(bad(format!("{name} is {v}; at most {max} is supported")));
            }
        }
        Ok(())
    }

    /// Every tensor of model.safetensors with its torch shape, in execution order.
    pub fn weight_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        let mut put = |key: String, w: Vec<usize>, bias: usize| {
            v.push((format!("{key}.weight"), w));
            v.push((format!("{key}.bias"), vec![bias]));
        };
        let (c, k) = (self.cond_channels, self.cond_kernel);
        put("cond.conv_in".into(), vec![c, COLOURS, self.cond_in_kernel, self.cond_in_kernel], c);
        for s in 0..=self.up_stages() {
            for j in 0..self.cond_res_per_stage {
                put(format!("cond.stages.{s}.{j}.conv1"), vec![c, c, k, k], c);
                put(format!("cond.stages.{s}.{j}.conv2"), vec![c, c, k, k], c);
            }
            if s < self.up_stages() {
                // ConvTranspose2d layout: [Cin, Cout, kh, kw]
                put(format!("cond.ups.{s}"), vec![c, c, self.cond_up_kernel, self.cond_up_kernel], c);
            }
        }
        put("cond.conv_out".into(), vec![LOGITS, c, 1, 1], LOGITS);
        let (pc, kin, kv, kh) = (self.prior_channels, self.prior_in_kernel, self.prior_v_kernel, self.prior_h_kernel);
        put("prior.conv_in".into(), vec![pc, COLOURS, kin, kin], pc);
        for i in 0..self.prior_blocks {
            put(format!("prior.blocks.{i}.v_conv"), vec![2 * pc, pc, kv, kv], 2 * pc);
            put(format!("prior.blocks.{i}.v_to_h"), vec![2 * pc, 2 * pc, 1, 1], 2 * pc);
            put(format!("prior.blocks.{i}.h_conv"), vec![2 * pc, pc, 1, kh], 2 * pc);
            put(format!("prior.blocks.{i}.h_out"), vec![pc, pc, 1, 1], pc);
        }
        put("prior.out1".into(), vec![self.prior_hidden, pc, 1, 1], self.prior_hidden);
        put("prior.out2".into(), vec![LOGITS, self.prior_hidden, 1, 1], LOGITS);
        v
    }
}
