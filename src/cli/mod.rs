//! Command-line front end (feature `cli`): argument parsing and subcommands.
//! Every subcommand checks its arguments and output path before any GPU
//! work, and writes its output atomically, so a failure leaves nothing at OUT.

mod eval;
mod hcflow;
mod model;
mod pixelcnn;
mod progress;
mod sr3;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use wgsr::gpu::{list_adapters, ContextOptions};
use wgsr::image_io::RgbImage;
use wgsr::weights::ModelDir;
use wgsr::{Error, GpuContext, Result};

use model::Family;

#[derive(Parser)]
#[command(name = "wgsr", version, about = "GPU super-resolution (HCFlow, SR3, Pixel Recursive SR) on wgpu")]
struct Cli {
    /// Backend: vulkan, metal, dx12, gl (default: WGSR_BACKEND or the best available).
    #[arg(long, global = true)]
    backend: Option<String>,
    /// Adapter index or name substring (default: WGSR_ADAPTER or the best available).
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the chosen adapter, its backend, features and limits, and all adapters seen.
    Info,
    /// Upscale an image (OUT: .png 8-bit, or .npy float32 (H, W, 3) before quantisation).
    Upscale(UpscaleArgs),
    /// Downscale an image with an HCFlow rescaling model (8-bit LR; .npy = before quantisation).
    Downscale(DownscaleArgs),
    /// Negative log-likelihood (bits per HR pixel) of an HR/LR pair under an HCFlow SR model.
    Nll(NllArgs),
    /// Evaluate a model on a folder of HR images: PSNR-Y, SSIM-Y, consistency, time, vs bicubic.
    Eval(EvalCmd),
}

#[derive(Args)]
struct EvalCmd {
    /// Model directory or name (default: the shipped default model).
    #[arg(long)]
    model: Option<String>,
    /// Folder of HR images (.png/.jpg).
    #[arg(long)]
    hr: PathBuf,
    /// Expected scale factor (checked against the model).
    #[arg(long)]
    scale: Option<usize>,
    /// Sampling temperature (default: the model's).
    #[arg(long, visible_alias = "heat")]
    temperature: Option<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write side-by-side PNGs (bicubic | model | HR) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// SR3: sampling steps (default: the model's).
    #[arg(long)]
    steps: Option<usize>,
    /// SR3: ddpm or ddim.
    #[arg(long, value_enum)]
    sampler: Option<SamplerArg>,
    /// SR3 DDIM: eta.
    #[arg(long)]
    eta: Option<f32>,
}

#[derive(Args)]
pub struct UpscaleArgs {
    /// Input image (PNG or JPEG).
    pub input: PathBuf,
    /// Output image: .png or .npy.
    pub output: PathBuf,
    /// Model directory or name under weights/ (default: the shipped default model).
    #[arg(long)]
    pub model: Option<String>,
    /// Sampling temperature (HCFlow heat); 0 = deterministic. Default: the model's.
    #[arg(long, visible_alias = "heat")]
    pub temperature: Option<f32>,
    /// Random seed; the same seed gives byte-identical output.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// SR3: sampling steps (default: the model's full schedule).
    #[arg(long)]
    pub steps: Option<usize>,
    /// SR3: ancestral DDPM or DDIM.
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerArg>,
    /// SR3 DDIM: eta (0 = deterministic given x_T).
    #[arg(long)]
    pub eta: Option<f32>,
    /// SR3: initial noise x_T, float32 .npy of shape (H, W, 3) at the output size.
    #[arg(long)]
    pub init_noise: Option<PathBuf>,
    /// PixelCNN: number of samples (OUT gets _0, _1, ... before the extension when > 1).
    #[arg(long)]
    pub samples: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SamplerArg {
    Ddpm,
    Ddim,
}

impl UpscaleArgs {
    /// Refuse any of the named family-specific flags that were given.
    pub(crate) fn reject_flags(&self, family: &str, names: &[&str]) -> Result<()> {
        let given = |n: &str| match n {
            "--temperature" => self.temperature.is_some(),
            "--steps" => self.steps.is_some(),
            "--sampler" => self.sampler.is_some(),
            "--eta" => self.eta.is_some(),
            "--init-noise" => self.init_noise.is_some(),
            "--samples" => self.samples.is_some(),
            _ => false,
        };
        let set: Vec<&str> = names.iter().copied().filter(|n| given(n)).collect();
        if set.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!("{} do(es) not apply to {family} models", set.join(", "))))
        }
    }
}

/// Flags of SR3's samplers, which the other families refuse.
pub(crate) const SR3_FLAGS: [&str; 4] = ["--steps", "--sampler", "--eta", "--init-noise"];

#[derive(Args)]
struct DownscaleArgs {
    input: PathBuf,
    output: PathBuf,
    /// HCFlow rescaling model directory or name.
    #[arg(long)]
    model: String,
    /// Crop the input to a multiple of the scale instead of refusing it.
    #[arg(long)]
    crop: bool,
}

#[derive(Args)]
struct NllArgs {
    /// High-resolution image.
    hr: PathBuf,
    /// Its low-resolution counterpart (HR size / scale).
    lr: PathBuf,
    /// HCFlow SR model directory or name.
    #[arg(long)]
    model: String,
    /// Seed of the dequantisation noise U(0,1)/quant added to HR.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn context(cli: &Cli) -> Result<GpuContext> {
    let env = ContextOptions::from_env();
    GpuContext::with_options(&ContextOptions {
        backend: cli.backend.clone().or(env.backend),
        adapter: cli.adapter.clone().or(env.adapter),
    })
}

/// Refuse an output path we could not write, before doing any work.
pub(crate) fn check_output(path: &Path) -> Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
    if !matches!(ext.as_deref(), Some("png") | Some("npy")) {
        return Err(Error::InvalidArgument(format!("{}: output must end in .png (8-bit) or .npy (float32)", path.display())));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::InvalidArgument(format!("{}: directory {} does not exist", path.display(), parent.display())));
    }
    Ok(())
}

fn load_model(spec: Option<&str>) -> Result<(ModelDir, Family)> {
    let dir = ModelDir::load(model::resolve(spec)?)?;
    let fam = model::family(&dir)?;
    Ok((dir, fam))
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Info => {
            let all = list_adapters();
            println!("adapters found: {}", all.len());
            for (i, a) in all.iter().enumerate() {
                println!("  [{i}] {} ({:?}, {:?})", a.name, a.backend, a.device_type);
            }
            let ctx = context(&cli)?;
            println!("selected:\n{}", ctx.info());
            Ok(())
        }
        Command::Upscale(a) => {
            check_output(&a.output)?;
            let lr = RgbImage::load(&a.input)?;
            let (dir, fam) = load_model(a.model.as_deref())?;
            let ctx = context(&cli)?;
            let hrs = match fam {
                Family::Hcflow => {
                    a.reject_flags("HCFlow", &[&SR3_FLAGS[..], &["--samples"]].concat())?;
                    vec![hcflow::upscale(&ctx, dir, &lr, a)?]
                }
                Family::Sr3 => vec![sr3::upscale(&ctx, dir, &lr, a)?],
                Family::PixelCnn => pixelcnn::upscale(&ctx, dir, &lr, a)?,
            };
            for (i, hr) in hrs.iter().enumerate() {
                let path = pixelcnn::sample_path(&a.output, i, hrs.len());
                hr.save(&path)?;
                eprintln!("wrote {} ({}x{})", path.display(), hr.width, hr.height);
            }
            Ok(())
        }
        Command::Downscale(a) => {
            check_output(&a.output)?;
            let hr = RgbImage::load(&a.input)?;
            let (dir, fam) = load_model(Some(&a.model))?;
            if fam != Family::Hcflow {
                return Err(Error::InvalidArgument(format!("downscale needs an HCFlow rescaling model, '{}' is {fam:?}", a.model)));
            }
            let ctx = context(&cli)?;
            let lr = hcflow::downscale(&ctx, dir, hr, a.crop, &a.output)?;
            lr.save(&a.output)?;
            eprintln!("wrote {} ({}x{})", a.output.display(), lr.width, lr.height);
            Ok(())
        }
        Command::Nll(a) => {
            let hr = RgbImage::load(&a.hr)?;
            let lr = RgbImage::load(&a.lr)?;
            let (dir, fam) = load_model(Some(&a.model))?;
            if fam != Family::Hcflow {
                return Err(Error::InvalidArgument(format!("nll needs an HCFlow SR model, '{}' is {fam:?}", a.model)));
            }
            let ctx = context(&cli)?;
            let nll = hcflow::nll(&ctx, dir, &hr, &lr, a.seed)?;
            println!("{nll:.6} bits per HR pixel");
            Ok(())
        }
        Command::Eval(a) => {
            let (dir, fam) = load_model(a.model.as_deref())?;
            let ctx = context(&cli)?;
            let sampler = sr3::sampler(a.sampler, a.eta)?;
            let sr3 = wgsr::models::sr3::Sr3Options { steps: a.steps, sampler, ..Default::default() };
            let args = eval::EvalArgs { hr_dir: &a.hr, scale: a.scale, temperature: a.temperature, seed: a.seed, out: a.out.as_deref(), sr3 };
            eval::run(&ctx, dir, fam, &args)
        }
    }
}
