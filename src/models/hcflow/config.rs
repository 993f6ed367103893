//! `config.json` of a converted HCFlow model (schema in tools/README.md),
//! parsed and cross-checked so a bad file fails at load with the field named.

use serde_json::Value;

use crate::models::json::Fields;
use crate::weights::WeightStore;
use crate::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// HCFlowNet_SR: conditional Gaussian prior, two RRDB feature maps.
    Sr,
    /// HCFlowNet_Rescaling: atan-bounded prior, one feature map, Haar squeeze.
    Rescale,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Squeeze {
    Squeeze2d,
    Haar,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CouplingType {
    Affine,
    /// Rescaling main flow: alternating affine (on the 3 LR channels vs the
    /// rest) and additive 3-channel shift.
    Affine3Shift,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CouplingNet {
    Fcn { hidden: usize, kernel_hidden: usize },
    DenseBlock { gc: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coupling {
    pub kind: CouplingType,
    pub net: CouplingNet,
}

/// One level of the hierarchy (level 0 = finest).
#[derive(Clone, Debug, PartialEq)]
pub struct Level {
    pub in_channels: usize,
    pub channels: usize,
    pub squeeze_layer: usize,
    pub main_layers: Vec<usize>,
    pub keep: usize,
    pub off: usize,
    pub cond_module: String,
    /// Coarser levels whose features are upsampled into this level's
    /// conditional input, with their nearest-neighbour factor.
    pub cond_feats: Vec<(usize, usize)>,
    pub cond_in_channels: usize,
    pub cond_feature_channels: usize,
    pub cond_steps: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HcflowConfig {
    pub task: Task,
    pub scale: usize,
    pub in_channels: usize,
    pub squeeze: Squeeze,
    pub main_invconv: bool,
    pub coupling: Coupling,
    pub split_invconv: bool,
    pub split_coupling: Coupling,
    pub rrdb_nb: [usize; 2],
    pub nf: usize,
    pub gc: usize,
    pub quant: f64,
    pub default_heat: f32,
    /// Self-ensemble passes at heat 0 when the caller names none (1, 2, 4
    /// or 8; SR only: `models::ensemble`).
    pub default_ensemble: usize,
    pub atan_factor: f32,
    pub conv_zeros_logscale: f32,
    pub lrelu_slope: f32,
    pub rrdb_residual_scale: f32,
    pub nll_lr_logs: f64,
    pub lr_levels: f64,
    pub levels: Vec<Level>,
}

const WHAT: &str = "HCFlow config.json";

/// Every field of the schema (tools/README.md), as dotted paths with `*`
/// for a list index; anything else in a config is refused, so a typo or a
/// field from another version cannot be silently ignored.
const KNOWN: &[&str] = &[
    "family", "format_version", "task", "scale", "in_channels", "L", "K", "split.enable", "split.after_flowstep",
    "squeeze", "permutation", "coupling.type", "coupling.net", "coupling.hidden", "coupling.kernel_hidden",
    "split_off.permutation", "split_off.prior", "split_off.coupling.type", "split_off.coupling.net",
    "split_off.coupling.hidden", "split_off.coupling.kernel_hidden", "rrdb.nb", "rrdb.nf", "rrdb.gc",
    "rrdb.feature_maps", "quant", "default_heat", "default_ensemble", "constants.atan_factor", "constants.atan_inner",
    "constants.conv_zeros_logscale_factor", "constants.lrelu_slope", "constants.rrdb_residual_scale",
    "constants.nll_lr_logs", "constants.lr_levels", "levels.*.level", "levels.*.downscale", "levels.*.in_channels",
    "levels.*.channels", "levels.*.squeeze_layer", "levels.*.main_layers", "levels.*.split_layer",
    "levels.*.keep_channels", "levels.*.off_channels", "levels.*.cond_module", "levels.*.cond_sources",
    "levels.*.cond_in_channels", "levels.*.cond_feature_channels", "levels.*.cond_steps",
];

/// Upper bounds that keep a hostile config from sizing huge graphs before
/// the weights are even looked at (the official models are far below them).
const MAX_LEVELS: usize = 4;
const MAX_STEPS: usize = 256;
const MAX_WIDTH: usize = 4096;
const MAX_BLOCKS: usize = 64;
const MAX_FIELD: usize = 1 << 20;

/// HCFlow's own constant in `0.318 * atan(2 s)` (not 1/pi: the official code
/// writes 0.318, and the kernels hard-code it).
#[allow(clippy::approx_constant)]
const HCFLOW_ATAN_FACTOR: f32 = 0.318;

fn bounded(j: &Fields, path: &str, v: usize, lo: usize, hi: usize) -> Result<usize> {
    if v < lo || v > hi {
        return Err(j.bad(path, format!("is {v}; it must be in {lo}..={hi}")));
    }
    Ok(v)
}
fn coupling(j: &Fields, path: &str) -> Result<Coupling> {
    let kind = match j.str(&format!("{path}.type"))? {
        "affine" => CouplingType::Affine,
        "affine3shift" => CouplingType::Affine3Shift,
        o => return Err(j.bad(&format!("{path}.type"), format!("'{o}' is not 'affine' or 'affine3shift'"))),
    };
    let hidden = j.usize(&format!("{path}.hidden"))?;
    let net = match j.str(&format!("{path}.net"))? {
        "fcn" => {
            let kernel_hidden = j.usize(&format!("{path}.kernel_hidden"))?;
            if kernel_hidden % 2 == 0 {
                return Err(j.bad(&format!("{path}.kernel_hidden"), "must be odd"));
            }
            CouplingNet::Fcn { hidden, kernel_hidden }
        }
        "denseblock" => CouplingNet::DenseBlock { gc: hidden },
        o => return Err(j.bad(&format!("{path}.net"), format!("'{o}' is not 'fcn' or 'denseblock'"))),
    };
    if hidden == 0 {
        return Err(j.bad(&format!("{path}.hidden"), "must be positive"));
    }
    Ok(Coupling { kind, net })
}

fn permutation(j: &Fields, path: &str) -> Result<bool> {
    match j.str(path)? {
        "invconv" => Ok(true),
        "none" => Ok(false),
        o => Err(j.bad(path, format!("'{o}' is not 'invconv' or 'none'"))),
    }
}

impl HcflowConfig {
    pub fn from_json(v: &Value) -> Result<Self> {
        let j = &Fields::new(v, WHAT);
        if j.get("family").ok().and_then(Value::as_str) != Some("hcflow") {
            return Err(j.bad("family", "must be \"hcflow\" for an HCFlow model"));
        }
        j.refuse_unknown(KNOWN)?;
        let version = j.usize("format_version")?;
        if version != 1 {
            return Err(j.bad("format_version", format!("is {version}; this build reads version 1")));
        }
        let task = match j.str("task")? {
            "sr" => Task::Sr,
            "rescale" => Task::Rescale,
            o => return Err(j.bad("task", format!("'{o}' is not 'sr' or 'rescale'"))),
        };
        let squeeze = match j.str("squeeze")? {
            "squeeze2d" => Squeeze::Squeeze2d,
            "haar" => Squeeze::Haar,
            o => return Err(j.bad("squeeze", format!("'{o}' is not 'squeeze2d' or 'haar'"))),
        };
        let nb = j.usizes("rrdb.nb")?;
        if nb.len() != 2 {
            return Err(j.bad("rrdb.nb", "must have two entries"));
        }
        let feature_maps = j.usize("rrdb.feature_maps")?;
        let want_maps = if task == Task::Sr { 2 } else { 1 };
        if feature_maps != want_maps {
            return Err(j.bad("rrdb.feature_maps", format!("is {feature_maps}, task {task:?} uses {want_maps}")));
        }
        let c = |p: &str| j.f64(&format!("constants.{p}"));
        let mut cfg = HcflowConfig {
            task,
            scale: j.usize("scale")?,
            in_channels: j.usize("in_channels")?,
            squeeze,
            main_invconv: permutation(j, "permutation")?,
            coupling: coupling(j, "coupling")?,
            split_invconv: permutation(j, "split_off.permutation")?,
            split_coupling: coupling(j, "split_off.coupling")?,
            rrdb_nb: [nb[0], nb[1]],
            nf: j.usize("rrdb.nf")?,
            gc: j.usize("rrdb.gc")?,
            quant: j.f64("quant")?,
            default_heat: j.f64("default_heat")? as f32,
            default_ensemble: j.usize_or("default_ensemble", 1)?,
            atan_factor: c("atan_factor")? as f32,
            conv_zeros_logscale: c("conv_zeros_logscale_factor")? as f32,
            lrelu_slope: c("lrelu_slope")? as f32,
            rrdb_residual_scale: c("rrdb_residual_scale")? as f32,
            nll_lr_logs: c("nll_lr_logs")?,
            lr_levels: c("lr_levels")?,
            levels: Vec::new(),
        };
        if cfg.split_coupling.kind != CouplingType::Affine {
            return Err(j.bad("split_off.coupling.type", "must be 'affine'"));
        }
        // The engine's kernels hard-code HCFlow's atan constant 0.318 * atan(2 s).
        if (cfg.atan_factor - HCFLOW_ATAN_FACTOR).abs() > 1e-6 || (c("atan_inner")? - 2.0).abs() > 1e-12 {
            return Err(j.bad("constants.atan_factor", "must be 0.318 with atan_inner 2.0 (fixed in the kernels)"));
        }
        if cfg.quant <= 0.0 {
            return Err(j.bad("quant", "must be positive"));
        }
        let levels = j.list("levels")?;
        let l_count = bounded(j, "L", j.usize("L")?, 1, MAX_LEVELS)?;
        for (path, v) in [("rrdb.nf", cfg.nf), ("rrdb.gc", cfg.gc), ("in_channels", cfg.in_channels)] {
            bounded(j, path, v, 1, MAX_WIDTH)?;
        }
        for (i, &n) in cfg.rrdb_nb.iter().enumerate() {
            bounded(j, &format!("rrdb.nb.{i}"), n, 1, MAX_BLOCKS)?;
        }
        for (path, c) in [("coupling.hidden", cfg.coupling), ("split_off.coupling.hidden", cfg.split_coupling)] {
            let h = match c.net {
                CouplingNet::Fcn { hidden, .. } => hidden,
                CouplingNet::DenseBlock { gc } => gc,
            };
            bounded(j, path, h, 1, MAX_WIDTH)?;
        }
        if !(cfg.default_heat >= 0.0 && cfg.default_heat <= 10.0) {
            return Err(j.bad("default_heat", format!("is {}; it must be in 0..=10", cfg.default_heat)));
        }
        if crate::models::ensemble::symmetries(cfg.default_ensemble).is_err() {
            return Err(j.bad("default_ensemble", format!("is {}; it must be 1, 2, 4 or 8", cfg.default_ensemble)));
        }
        if task == Task::Rescale && cfg.default_ensemble != 1 {
            // A rescaling model's LR is its own downscale, tied to one orientation.
            return Err(j.bad("default_ensemble", "must be 1 for a rescaling model (self-ensemble is for SR)"));
        }
        let prior = match task {
            Task::Sr => "gaussian",
            Task::Rescale => "gaussian_atan",
        };
        if j.str("split_off.prior")? != prior {
            return Err(j.bad("split_off.prior", format!("is '{}'; task {task:?} uses '{prior}'", j.str("split_off.prior")?)));
        }
        if !j.bool("split.enable")? {
            return Err(j.bad("split.enable", "must be true (every HCFlow level splits off latents)"));
        }
        let k = j.usizes("K")?;
        let after = j.usizes("split.after_flowstep")?;
        if levels.len() != l_count || l_count == 0 {
            return Err(j.bad("levels", format!("has {} entries, L = {l_count}", levels.len())));
        }
        if cfg.scale != 1 << l_count {
            return Err(j.bad("scale", format!("is {}, expected 2^L = {}", cfg.scale, 1 << l_count)));
        }
        for l in 0..levels.len() {
            let p = format!("levels.{l}");
            // Every per-level number is a channel count or a layer index: bound
            // them first so the consistency sums below cannot overflow.
            let f = |name: &str| {
                let path = format!("{p}.{name}");
                bounded(j, &path, j.usize(&path)?, 0, MAX_FIELD)
            };
            let mut cond_feats = Vec::new();
            let sources = j.list(&format!("{p}.cond_sources"))?;
            for (i, s) in sources.iter().enumerate() {
                let s = s.as_str().unwrap_or("");
                if i == 0 {
                    if s != format!("y{l}") {
                        return Err(j.bad(&format!("{p}.cond_sources"), format!("must start with 'y{l}', found '{s}'")));
                    }
                    continue;
                }
                // "feat{j}_up{f}"
                let parsed = s.strip_prefix("feat").and_then(|r| r.split_once("_up")).and_then(|(j, f)| Some((j.parse().ok()?, f.parse().ok()?)));
                match parsed {
                    Some((j, f)) if j > l && j < l_count && f == 1usize << (j - l) => cond_feats.push((j, f)),
                    _ => return Err(j.bad(&format!("{p}.cond_sources"), format!("entry '{s}' is not feat<j>_up<2^(j-{l})> of a coarser level"))),
                }
            }
            let level = Level {
                in_channels: f("in_channels")?,
                channels: f("channels")?,
                squeeze_layer: f("squeeze_layer")?,
                main_layers: {
                    let path = format!("{p}.main_layers");
                    let v = j.usizes(&path)?;
                    for &n in &v {
                        bounded(j, &path, n, 0, MAX_FIELD)?;
                    }
                    v
                },
                keep: f("keep_channels")?,
                off: f("off_channels")?,
                cond_module: j.str(&format!("{p}.cond_module"))?.to_string(),
                cond_feats,
                cond_in_channels: f("cond_in_channels")?,
                cond_feature_channels: f("cond_feature_channels")?,
                cond_steps: f("cond_steps")?,
            };
            let in_expected = if l == 0 { cfg.in_channels } else { cfg.levels[l - 1].keep };
            if level.in_channels != in_expected || level.channels != 4 * level.in_channels {
                return Err(j.bad(&p, format!("channels {} -> {} do not follow from the previous level ({in_expected})", level.in_channels, level.channels)));
            }
            if level.keep == 0 || level.keep + level.off != level.channels || level.off < 2 {
                return Err(j.bad(&p, format!("keep {} + off {} must equal channels {}", level.keep, level.off, level.channels)));
            }
            if l == l_count - 1 && level.keep != cfg.in_channels {
                return Err(j.bad(&p, "the last level must keep exactly the image channels (the LR)"));
            }
            let feat_ch = cfg.nf * want_maps;
            if level.cond_feature_channels != feat_ch {
                return Err(j.bad(&format!("{p}.cond_feature_channels"), format!("is {}, nf * feature_maps = {feat_ch}", level.cond_feature_channels)));
            }
            let cond_in = level.keep + feat_ch * level.cond_feats.len();
            if level.cond_in_channels != cond_in {
                return Err(j.bad(&format!("{p}.cond_in_channels"), format!("is {}, sources give {cond_in}", level.cond_in_channels)));
            }
            // The layer indices and step counts must agree with each other and
            // with K / split.after_flowstep, so the config says one thing only.
            let first = if l == 0 { 0 } else { cfg.levels[l - 1].squeeze_layer + cfg.levels[l - 1].main_layers.len() + 2 };
            let mains_ok = level.squeeze_layer == first && level.main_layers.iter().enumerate().all(|(i, &n)| n == first + 1 + i);
            if !mains_ok || f("split_layer")? != first + 1 + level.main_layers.len() {
                return Err(j.bad(&p, "squeeze_layer / main_layers / split_layer are not consecutive flow.layers indices"));
            }
            if f("level")? != l || f("downscale")? != 2 << l {
                return Err(j.bad(&p, format!("level / downscale must be {l} / {}", 2 << l)));
            }
            bounded(j, &format!("{p}.main_layers"), level.main_layers.len(), 1, MAX_STEPS)?;
            bounded(j, &format!("{p}.cond_steps"), level.cond_steps, 1, MAX_STEPS)?;
            if k.get(l) != Some(&(level.main_layers.len() + level.cond_steps)) || after.get(l) != Some(&level.cond_steps) {
                return Err(j.bad(
                    &format!("K.{l}"),
                    format!("and split.after_flowstep.{l} must be {} (main + split-off steps) and {}", level.main_layers.len() + level.cond_steps, level.cond_steps),
                ));
            }
            cfg.levels.push(level);
        }
        if k.len() != l_count || after.len() != l_count {
            return Err(j.bad("K", format!("and split.after_flowstep must have L = {l_count} entries")));
        }
        Ok(cfg)
    }

    /// Cross-check the widths and counts the config states against the
    /// weights it comes with (the graph builders take shapes from the
    /// tensors, so a config that disagrees would otherwise go unnoticed).
    pub fn check_weights(&self, w: &WeightStore) -> Result<()> {
        let j = Fields::errors(WHAT);
        let out = |key: &str| w.get(key, None).ok().and_then(|t| t.shape.first().copied());
        let expect = |field: &str, key: &str, want: usize| -> Result<()> {
            match out(key) {
                Some(got) if got == want => Ok(()),
                Some(got) => Err(j.bad(field, format!("is {want}, but {key} has {got} output channels"))),
                None => Err(j.bad(field, format!("is {want}, but the weights have no {key}"))),
            }
        };
        let hidden = |c: &Coupling| match c.net {
            CouplingNet::Fcn { hidden, .. } => hidden,
            CouplingNet::DenseBlock { gc } => gc,
        };
        for lv in &self.levels {
            let m = &lv.cond_module;
            expect("rrdb.nf", &format!("{m}.conv_first.weight"), self.nf)?;
            for (t, &nb) in self.rrdb_nb.iter().enumerate() {
                expect("rrdb.gc", &format!("{m}.RRDB_trunk{t}.0.RDB1.conv1.weight"), self.gc)?;
                if out(&format!("{m}.RRDB_trunk{t}.{}.RDB1.conv1.weight", nb - 1)).is_none() || out(&format!("{m}.RRDB_trunk{t}.{nb}.RDB1.conv1.weight")).is_some() {
                    return Err(j.bad(&format!("rrdb.nb.{t}"), format!("is {nb}, which does not match the RRDB blocks of {m}.RRDB_trunk{t}")));
                }
            }
            for &n in &lv.main_layers {
                expect("coupling.hidden", &format!("flow.layers.{n}.affine.f.conv1.weight"), hidden(&self.coupling))?;
            }
            for i in 0..lv.cond_steps {
                expect("split_off.coupling.hidden", &format!("{m}.additional_flow_steps.{i}.affine.f.conv1.weight"), hidden(&self.split_coupling))?;
            }
        }
        Ok(())
    }

    /// Number of levels L.
    pub fn n_levels(&self) -> usize {
        self.levels.len()
    }
}
