//! `config.json` of a converted HCFlow model (schema in tools/README.md),
//! parsed and cross-checked so a bad file fails at load with the field named.

use serde_json::Value;

use crate::{Error, Result};

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

fn bad(field: &str, why: impl std::fmt::Display) -> Error {
    Error::Weights(format!("HCFlow config.json: field '{field}' {why}"))
}

fn get<'a>(v: &'a Value, path: &str) -> Result<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part).ok_or_else(|| bad(path, "is missing"))?;
    }
    Ok(cur)
}

fn usize_of(v: &Value, path: &str) -> Result<usize> {
    let x = get(v, path)?;
    x.as_u64().map(|u| u as usize).ok_or_else(|| bad(path, format!("must be a non-negative integer, found {x}")))
}

fn f64_of(v: &Value, path: &str) -> Result<f64> {
    let x = get(v, path)?;
    x.as_f64().filter(|f| f.is_finite()).ok_or_else(|| bad(path, format!("must be a finite number, found {x}")))
}

fn str_of<'a>(v: &'a Value, path: &str) -> Result<&'a str> {
    let x = get(v, path)?;
    x.as_str().ok_or_else(|| bad(path, format!("must be a string, found {x}")))
}

fn usizes(v: &Value, path: &str) -> Result<Vec<usize>> {
    let x = get(v, path)?;
    let arr = x.as_array().ok_or_else(|| bad(path, format!("must be a list of integers, found {x}")))?;
    arr.iter()
        .map(|e| e.as_u64().map(|u| u as usize).ok_or_else(|| bad(path, format!("must hold integers, found {e}"))))
        .collect()
}

fn coupling(v: &Value, path: &str) -> Result<Coupling> {
    let kind = match str_of(v, &format!("{path}.type"))? {
        "affine" => CouplingType::Affine,
        "affine3shift" => CouplingType::Affine3Shift,
        o => return Err(bad(&format!("{path}.type"), format!("'{o}' is not 'affine' or 'affine3shift'"))),
    };
    let hidden = usize_of(v, &format!("{path}.hidden"))?;
    let net = match str_of(v, &format!("{path}.net"))? {
        "fcn" => {
            let kernel_hidden = usize_of(v, &format!("{path}.kernel_hidden"))?;
            if kernel_hidden % 2 == 0 {
                return Err(bad(&format!("{path}.kernel_hidden"), "must be odd"));
            }
            CouplingNet::Fcn { hidden, kernel_hidden }
        }
        "denseblock" => CouplingNet::DenseBlock { gc: hidden },
        o => return Err(bad(&format!("{path}.net"), format!("'{o}' is not 'fcn' or 'denseblock'"))),
    };
    if hidden == 0 {
        return Err(bad(&format!("{path}.hidden"), "must be positive"));
    }
    Ok(Coupling { kind, net })
}

fn permutation(v: &Value, path: &str) -> Result<bool> {
    match str_of(v, path)? {
        "invconv" => Ok(true),
        "none" => Ok(false),
        o => Err(bad(path, format!("'{o}' is not 'invconv' or 'none'"))),
    }
}

impl HcflowConfig {
    pub fn from_json(v: &Value) -> Result<Self> {
        if get(v, "family").ok().and_then(Value::as_str) != Some("hcflow") {
            return Err(bad("family", "must be \"hcflow\" for an HCFlow model"));
        }
        let task = match str_of(v, "task")? {
            "sr" => Task::Sr,
            "rescale" => Task::Rescale,
            o => return Err(bad("task", format!("'{o}' is not 'sr' or 'rescale'"))),
        };
        let squeeze = match str_of(v, "squeeze")? {
            "squeeze2d" => Squeeze::Squeeze2d,
            "haar" => Squeeze::Haar,
            o => return Err(bad("squeeze", format!("'{o}' is not 'squeeze2d' or 'haar'"))),
        };
        let nb = usizes(v, "rrdb.nb")?;
        if nb.len() != 2 {
            return Err(bad("rrdb.nb", "must have two entries"));
        }
        let feature_maps = usize_of(v, "rrdb.feature_maps")?;
        let want_maps = if task == Task::Sr { 2 } else { 1 };
        if feature_maps != want_maps {
            return Err(bad("rrdb.feature_maps", format!("is {feature_maps}, task {task:?} uses {want_maps}")));
        }
        let c = |p: &str| f64_of(v, &format!("constants.{p}"));
        let mut cfg = HcflowConfig {
            task,
            scale: usize_of(v, "scale")?,
            in_channels: usize_of(v, "in_channels")?,
            squeeze,
            main_invconv: permutation(v, "permutation")?,
            coupling: coupling(v, "coupling")?,
            split_invconv: permutation(v, "split_off.permutation")?,
            split_coupling: coupling(v, "split_off.coupling")?,
            rrdb_nb: [nb[0], nb[1]],
            nf: usize_of(v, "rrdb.nf")?,
            gc: usize_of(v, "rrdb.gc")?,
            quant: f64_of(v, "quant")?,
            default_heat: f64_of(v, "default_heat")? as f32,
            atan_factor: c("atan_factor")? as f32,
            conv_zeros_logscale: c("conv_zeros_logscale_factor")? as f32,
            lrelu_slope: c("lrelu_slope")? as f32,
            rrdb_residual_scale: c("rrdb_residual_scale")? as f32,
            nll_lr_logs: c("nll_lr_logs")?,
            lr_levels: c("lr_levels")?,
            levels: Vec::new(),
        };
        if cfg.split_coupling.kind != CouplingType::Affine {
            return Err(bad("split_off.coupling.type", "must be 'affine'"));
        }
        // The engine's kernels hard-code HCFlow's atan constant 0.318 * atan(2 s).
        if (cfg.atan_factor - 0.318).abs() > 1e-6 || (c("atan_inner")? - 2.0).abs() > 1e-12 {
            return Err(bad("constants.atan_factor", "must be 0.318 with atan_inner 2.0 (fixed in the kernels)"));
        }
        if cfg.quant <= 0.0 {
            return Err(bad("quant", "must be positive"));
        }
        let levels = get(v, "levels")?.as_array().ok_or_else(|| bad("levels", "must be a list"))?;
        let l_count = usize_of(v, "L")?;
        if levels.len() != l_count || l_count == 0 {
            return Err(bad("levels", format!("has {} entries, L = {l_count}", levels.len())));
        }
        if cfg.scale != 1 << l_count {
            return Err(bad("scale", format!("is {}, expected 2^L = {}", cfg.scale, 1 << l_count)));
        }
        for (l, lv) in levels.iter().enumerate() {
            let p = format!("levels.{l}");
            let f = |name: &str| usize_of(lv, name).map_err(|_| bad(&format!("{p}.{name}"), "is missing or not an integer"));
            let mut cond_feats = Vec::new();
            let sources = lv.get("cond_sources").and_then(Value::as_array).ok_or_else(|| bad(&format!("{p}.cond_sources"), "must be a list"))?;
            for (i, s) in sources.iter().enumerate() {
                let s = s.as_str().unwrap_or("");
                if i == 0 {
                    if s != format!("y{l}") {
                        return Err(bad(&format!("{p}.cond_sources"), format!("must start with 'y{l}', found '{s}'")));
                    }
                    continue;
                }
                // "feat{j}_up{f}"
                let parsed = s.strip_prefix("feat").and_then(|r| r.split_once("_up")).and_then(|(j, f)| Some((j.parse().ok()?, f.parse().ok()?)));
                match parsed {
                    Some((j, f)) if j > l && j < l_count && f == 1usize << (j - l) => cond_feats.push((j, f)),
                    _ => return Err(bad(&format!("{p}.cond_sources"), format!("entry '{s}' is not feat<j>_up<2^(j-{l})> of a coarser level"))),
                }
            }
            let level = Level {
                in_channels: f("in_channels")?,
                channels: f("channels")?,
                squeeze_layer: f("squeeze_layer")?,
                main_layers: usizes(lv, "main_layers").map_err(|e| bad(&format!("{p}.main_layers"), e))?,
                keep: f("keep_channels")?,
                off: f("off_channels")?,
                cond_module: lv.get("cond_module").and_then(Value::as_str).ok_or_else(|| bad(&format!("{p}.cond_module"), "must be a string"))?.to_string(),
                cond_feats,
                cond_in_channels: f("cond_in_channels")?,
                cond_feature_channels: f("cond_feature_channels")?,
                cond_steps: f("cond_steps")?,
            };
            let in_expected = if l == 0 { cfg.in_channels } else { cfg.levels[l - 1].keep };
            if level.in_channels != in_expected || level.channels != 4 * level.in_channels {
                return Err(bad(&p, format!("channels {} -> {} do not follow from the previous level ({in_expected})", level.in_channels, level.channels)));
            }
            if level.keep == 0 || level.keep + level.off != level.channels || level.off < 2 {
                return Err(bad(&p, format!("keep {} + off {} must equal channels {}", level.keep, level.off, level.channels)));
            }
            if l == l_count - 1 && level.keep != cfg.in_channels {
                return Err(bad(&p, "the last level must keep exactly the image channels (the LR)"));
            }
            let feat_ch = cfg.nf * want_maps;
            if level.cond_feature_channels != feat_ch {
                return Err(bad(&format!("{p}.cond_feature_channels"), format!("is {}, nf * feature_maps = {feat_ch}", level.cond_feature_channels)));
            }
            let cond_in = level.keep + feat_ch * level.cond_feats.len();
            if level.cond_in_channels != cond_in {
                return Err(bad(&format!("{p}.cond_in_channels"), format!("is {}, sources give {cond_in}", level.cond_in_channels)));
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
