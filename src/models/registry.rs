//! One face for every model family. [`find`] resolves `--model` (a
//! directory, or a name under the search path), [`load`] reads the family
//! from `config.json` and returns a [`Model`], which upscales (and, for
//! rescaling models, downscales) whatever the family. Fixed sizes, scale and
//! the settings a family reads are data on the model, so callers (the CLI,
//! `eval`) never match on the family.
//!
//! Adding a family: its folder under `src/models/` with an `impl Model` for
//! its type (`models/<family>/model.rs`), and one [`FAMILIES`] entry.

use std::path::{Path, PathBuf};

use crate::models::hcflow::hcd::{HcdOptions, HcdResult};
use crate::image_io::RgbImage;
use crate::models::hcflow::HcFlow;
use crate::models::pixelcnn::PixelCnn;
use crate::models::sr3::{Sampler, Sr3};
use crate::models::tiling::{TileGrid, TilePolicy, TiledPass};
use crate::weights::ModelDir;
use crate::{Dtype, Error, GpuContext, Result};

/// The model `upscale` and `eval` use when none is named.
pub const DEFAULT_MODEL: &str = "hcflow-sr-x4-small";
/// The model `downscale` uses when none is named.
pub const DEFAULT_RESCALE_MODEL: &str = "hcflow-rescale-x4-small";

/// A run-time setting a family may read. The CLI maps its flags onto these
/// and refuses a flag whose setting the model's family does not list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Sampling temperature (HCFlow heat, PixelCNN softmax temperature).
    Temperature,
    /// SR3 sampling steps.
    Steps,
    /// SR3 sampler (DDPM / DDIM with eta).
    Sampler,
    /// SR3 initial noise x_T.
    InitNoise,
    /// PixelCNN: samples per image.
    Samples,
    /// Tiled inference on any image size (tile size, margin, memory budget).
    Tiling,
    /// f16 storage of activations and weights (`--precision f16`).
    HalfPrecision,
    /// Geometric self-ensemble of deterministic passes (`--ensemble`).
    Ensemble,
}

/// One registry entry: how `config.json` names the family and how to load it.
pub struct FamilyInfo {
    /// `family` (or `arch`) value in config.json.
    pub name: &'static str,
    /// Display name.
    pub title: &'static str,
    pub settings: &'static [Setting],
    load: fn(&GpuContext, ModelDir, Dtype) -> Result<Box<dyn Model>>,
}

impl std::fmt::Debug for FamilyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.title)
    }
}

/// Every family this build can run.
pub static FAMILIES: &[FamilyInfo] = &[
    FamilyInfo {
        name: "hcflow",
        title: "HCFlow",
        settings: &[Setting::Temperature, Setting::Tiling, Setting::HalfPrecision, Setting::Ensemble],
        load: |ctx, dir, precision| {
            let mut m = HcFlow::load(ctx, dir)?;
            m.set_precision(ctx, precision)?;
            Ok(Box::new(m))
        },
    },
    FamilyInfo {
        name: "sr3",
        title: "SR3",
        settings: &[Setting::Steps, Setting::Sampler, Setting::InitNoise, Setting::HalfPrecision],
        load: |ctx, dir, precision| Ok(Box::new(Sr3::load_as(ctx, &dir, 1, precision)?)),
    },
    FamilyInfo {
        name: "pixelcnn",
        title: "PixelCNN",
        // f32 only: its naive and cached samplers are held bit-identical.
        settings: &[Setting::Temperature, Setting::Samples],
        load: |ctx, dir, precision| {
            if precision != Dtype::F32 {
                return Err(Error::InvalidArgument(format!("PixelCNN runs in f32 only (asked for {precision})")));
            }
            Ok(Box::new(PixelCnn::load(ctx, dir)?))
        },
    },
];

/// Settings of one upscaling run; `None` = the model's default. A family
/// ignores settings it does not list in [`FamilyInfo::settings`] (the CLI
/// refuses them before they get here).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpscaleOptions {
    pub temperature: Option<f32>,
    /// Same seed, same output.
    pub seed: u64,
    pub steps: Option<usize>,
    pub sampler: Option<Sampler>,
    /// SR3 x_T in NCHW order (3 * hr * hr values).
    pub init_noise: Option<Vec<f32>>,
    pub samples: Option<usize>,
    /// Tiling (HCFlow): the default runs untiled when the image fits the
    /// device and tiles automatically when it does not.
    pub tiling: TilePolicy,
    /// Self-ensemble passes (1, 2, 4 or 8; [`crate::models::ensemble`]) of a
    /// deterministic run (HCFlow SR at temperature 0). `None`: the model's
    /// `default_ensemble` at temperature 0, else one pass.
    pub ensemble: Option<usize>,
}

/// What a rescaling model's downscale gives: the 8-bit LR and the value
/// before quantisation.
pub struct Downscaled {
    pub lr: RgbImage,
    pub raw: RgbImage,
}

/// A loaded model of any family.
pub trait Model: Send {
    fn family(&self) -> &'static FamilyInfo;
    /// Upscaling factor.
    fn scale(&self) -> usize;
    /// The one LR size (width, height) the model takes, if it is fixed.
    fn fixed_lr_size(&self) -> Option<(usize, usize)>;
    /// One line for logs: family, task, scale.
    fn describe(&self) -> String;
    /// Whether [`Model::downscale`] works (HCFlow rescaling models).
    fn can_downscale(&self) -> bool {
        false
    }
    /// The temperature used when the options give none (families that sample with one).
    fn default_temperature(&self) -> Option<f32> {
        None
    }
    /// Progress units a run reports (SR3 steps, PixelCNN sub-pixels, HCFlow
    /// self-ensemble passes); None for single-pass runs.
    fn progress_total(&self, _opts: &UpscaleOptions) -> Result<Option<usize>> {
        Ok(None)
    }
    /// What the units of [`Model::progress_total`] are, for a progress bar.
    fn progress_unit(&self) -> &'static str {
        "sampling"
    }
    /// Self-ensemble passes a run under `opts` averages (1: none); an error
    /// when `opts` asks for an ensemble the model cannot run.
    fn ensemble(&self, _opts: &UpscaleOptions) -> Result<usize> {
        Ok(1)
    }
    /// The tiles a run under `tiling` goes through on an image whose LR is
    /// `lr_width` x `lr_height` (`None`: one pass, untiled). Families with a
    /// fixed input size never tile.
    fn tiles(&mut self, _ctx: &GpuContext, _pass: TiledPass, _lr_width: usize, _lr_height: usize, _tiling: &TilePolicy) -> Result<Option<TileGrid>> {
        Ok(None)
    }
    /// Upscale one image; several results for PixelCNN `samples > 1`.
    /// `progress(done)` counts the units of [`Model::progress_total`], or
    /// the tiles of [`Model::tiles`] for a tiled run.
    fn upscale(&mut self, ctx: &GpuContext, lr: &RgbImage, opts: &UpscaleOptions, progress: &mut dyn FnMut(usize)) -> Result<Vec<RgbImage>>;
    /// Downscale with a rescaling model (`can_downscale`), tiled when the
    /// image does not fit the device.
    fn downscale(&mut self, ctx: &GpuContext, hr: &RgbImage) -> Result<Downscaled> {
        self.downscale_with(ctx, hr, &TilePolicy::default(), &mut |_| {})
    }
    /// [`Model::downscale`] under a tiling policy; `progress(done)` counts
    /// the tiles of [`Model::tiles`] (`TiledPass::Downscale`).
    fn downscale_with(&mut self, _ctx: &GpuContext, _hr: &RgbImage, _tiling: &TilePolicy, _progress: &mut dyn FnMut(usize)) -> Result<Downscaled> {
        Err(Error::InvalidArgument(format!(
            "downscaling needs an HCFlow rescaling model; this is {}",
            self.describe()
        )))
    }
    /// HCD collaborative downscaling (HCFlow rescaling models);
    /// `progress(done, total)` over iterations of all patches.
    fn downscale_hcd(&mut self, _ctx: &GpuContext, _hr: &RgbImage, _opts: &HcdOptions, _progress: &mut dyn FnMut(usize, usize)) -> Result<HcdResult> {
        Err(Error::InvalidArgument(format!("HCD needs an HCFlow rescaling model; this is {}", self.describe())))
    }
    /// Bits per HR pixel of (HR, LR) under an HCFlow SR model.
    fn nll(&mut self, _ctx: &GpuContext, _hr: &RgbImage, _lr: &RgbImage, _seed: u64) -> Result<f64> {
        Err(Error::InvalidArgument(format!("nll needs an HCFlow SR model; this is {}", self.describe())))
    }
}

/// The registry entry named by a config's `family` (or `arch`) field.
pub fn family_of(dir: &ModelDir) -> Result<&'static FamilyInfo> {
    let c = &dir.config;
    let name = c.get("family").and_then(|v| v.as_str()).or_else(|| c.get("arch").and_then(|v| v.as_str()));
    let path = dir.path.join("config.json");
    match name {
        Some(n) => FAMILIES.iter().find(|f| f.name == n).ok_or_else(|| {
            let known: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
            Error::Weights(format!("{}: unknown model family '{n}' (known: {})", path.display(), known.join(", ")))
        }),
        None => Err(Error::Weights(format!("{}: names no model family ('family' or 'arch')", path.display()))),
    }
}

/// Load a model directory as its family's [`Model`] (f32 storage).
pub fn load(ctx: &GpuContext, dir: ModelDir) -> Result<Box<dyn Model>> {
    load_as(ctx, dir, Dtype::F32)
}

/// [`load`] with activations and weights stored as `precision` (families
/// listing [`Setting::HalfPrecision`] take f16; arithmetic is f32 either way).
pub fn load_as(ctx: &GpuContext, dir: ModelDir, precision: Dtype) -> Result<Box<dyn Model>> {
    let fam = family_of(&dir)?;
    (fam.load)(ctx, dir, precision)
}

/// Directories searched for a model given by name, in order: $WGSR_WEIGHTS,
/// then ./weights. (The `wgsr` binary also carries the shipped default model
/// inside itself, so it needs neither.)
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("WGSR_WEIGHTS") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("weights"));
    dirs
}

/// A directory path as given, else `NAME` under [`search_dirs`]; `None` is
/// [`DEFAULT_MODEL`].
pub fn find(spec: Option<&str>) -> Result<PathBuf> {
    let spec = spec.unwrap_or(DEFAULT_MODEL);
    let p = Path::new(spec);
    if p.is_dir() {
        return Ok(p.to_path_buf());
    }
    let looks_like_path = spec.contains('/') || spec.contains('\\');
    if !looks_like_path {
        for d in search_dirs() {
            let cand = d.join(spec);
            if cand.join("config.json").is_file() {
                return Ok(cand);
            }
        }
    }
    let searched: Vec<String> = search_dirs().iter().map(|d| d.display().to_string()).collect();
    Err(Error::Weights(format!(
        "model '{spec}' not found: not a directory, and no {spec}/config.json under {} (convert a checkpoint with tools/convert.py, see README)",
        searched.join(", ")
    )))
}

/// A model's output must be finite: a NaN or infinity (weights that
/// overflow, a broken checkpoint) is an error, never a grey or black image.
pub(crate) fn finite(what: &str, precision: Dtype, imgs: Vec<RgbImage>) -> Result<Vec<RgbImage>> {
    for img in &imgs {
        if let Some(i) = img.data.iter().position(|v| !v.is_finite()) {
            let hint = match precision {
                Dtype::F16 => " (f16 storage holds magnitudes up to 65504; run it with precision f32)",
                Dtype::F32 => "",
            };
            return Err(Error::InvalidArgument(format!(
                "{what} produced a non-finite value (element {i}: {}); its weights overflow on this input{hint}",
                img.data[i]
            )));
        }
    }
    Ok(imgs)
}

/// The entry of a registered family (each family's `Model::family`).
pub(crate) fn family(name: &str) -> &'static FamilyInfo {
    FAMILIES.iter().find(|f| f.name == name).expect("family registered in FAMILIES")
}
