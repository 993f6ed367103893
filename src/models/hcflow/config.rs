//! `config.json` of a converted HCFlow model (schema in tools/README.md),
//! parsed and cross-checked so a bad file fails at load with the field named.

use serde_json::Value;

use crate::models::json::Fields;
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
    pub atan_factor: f32,
    pub conv_zeros_logscale: f32,
    pub lrelu_slope: f32,
    pub rrdb_residual_scale: f32,
    pub nll_lr_logs: f64,
    pub lr_levels: f64,
    pub levels: Vec<Level>,
}

const WHAT: &str = "HCFlow config.json";
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
        if (cfg.atan_factor - 0.318).abs() > 1e-6 || (c("atan_inner")? - 2.0).abs() > 1e-12 {
            return Err(j.bad("constants.atan_factor", "must be 0.318 with atan_inner 2.0 (fixed in the kernels)"));
        }
        if cfg.quant <= 0.0 {
            return Err(j.bad("quant", "must be positive"));
        }
        let levels = j.list("levels")?;
        let l_count = j.usize("L")?;
        if levels.len() != l_count || l_count == 0 {
            return Err(j.bad("levels", format!("has {} entries, L = {l_count}", levels.len())));
        }
        if cfg.scale != 1 << l_count {
            return Err(j.bad("scale", format!("is {}, expected 2^L = {}", cfg.scale, 1 << l_count)));
        }
        for l in 0..levels.len() {
            let p = format!("levels.{l}");
            let f = |name: &str| j.usize(&format!("{p}.{name}"));
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
                main_layers: j.usizes(&format!("{p}.main_layers"))?,
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
            cfg.levels.push(level);
        }
        Ok(cfg)
    }

    /// Number of levels L.
    pub fn n_levels(&self) -> usize {
        self.levels.len()
    }
}
