//! Command-line front end (feature `cli`): argument parsing and subcommands.
//! Every subcommand checks its arguments and output path before any GPU
//! work, and writes its output atomically, so a failure leaves nothing at OUT.

mod builtin;
mod eval;
mod files;
mod flags;
mod progress;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use wgsr::gpu::{list_adapters, ContextOptions};
use wgsr::image_io::{Image, RgbImage, Scale};
use wgsr::models::hcflow::hcd::HcdOptions;
use wgsr::models::{self, Model, TiledPass, UpscaleOptions};
use wgsr::{Error, GpuContext, Result};

#[derive(Parser)]
#[command(name = "wgsr", version, about = "GPU super-resolution (HCFlow, SR3, Pixel Recursive SR) on wgpu")]
struct Cli {
    /// Backend: vulkan, metal, dx12, gl (default: WGSR_BACKEND or the best available).
    #[arg(long, global = true)]
    backend: Option<String>,
    /// Adapter index or name substring (default: WGSR_ADAPTER or the best available).
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// Storage of activations and weights: f32, or f16 (half the memory and
    /// bandwidth, f32 arithmetic; needs shader-f16; HCFlow and SR3).
    #[arg(long, global = true, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Precision {
    F32,
    F16,
}

impl Precision {
    fn dtype(self) -> wgsr::Dtype {
        match self {
            Precision::F32 => wgsr::Dtype::F32,
            Precision::F16 => wgsr::Dtype::F16,
        }
    }
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
    /// List the models on the search path and the ones built into this binary.
    Models,
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
    /// HCFlow SR at temperature 0: average N passes over rotations / mirrors
    /// of the input (1, 2, 4 or 8; default: the model's, 8 for the shipped SR model).
    #[arg(long, value_name = "N")]
    ensemble: Option<usize>,
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
    /// Rescaling models: downscale with HCD (seeded by --seed) before upscaling.
    #[arg(long)]
    hcd: bool,
    /// HCD iterations of the HR and LR stages.
    #[arg(long, value_name = "H,L", requires = "hcd", value_parser = parse_iters)]
    hcd_iters: Option<(usize, usize)>,
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
    /// HCFlow SR at temperature 0: average N passes over rotations / mirrors
    /// of the input (1, 2, 4 or 8; default: the model's, 8 for the shipped SR model).
    #[arg(long, value_name = "N")]
    pub ensemble: Option<usize>,
    #[command(flatten)]
    pub tiling: TileArgs,
}

/// Tiled inference (HCFlow): any image size in bounded memory.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct TileArgs {
    /// HCFlow: tile the image with tiles of N x N LR pixels (default: only
    /// when it does not fit the device or --max-memory, then the largest that fits).
    #[arg(long, value_name = "N")]
    pub tile: Option<usize>,
    /// HCFlow: overlap on each side of a tile, in LR pixels (default: the model's measured margin).
    #[arg(long, value_name = "N")]
    pub tile_margin: Option<usize>,
    /// HCFlow: device-memory budget for one pass, in MiB (default: 4x the
    /// device's largest buffer binding, between 256 MiB and 2 GiB).
    #[arg(long, value_name = "MIB")]
    pub max_memory: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SamplerArg {
    Ddpm,
    Ddim,
}

impl UpscaleArgs {
    fn flags(&self) -> flags::SamplingFlags<'_> {
        flags::SamplingFlags {
            temperature: self.temperature,
            seed: self.seed,
            steps: self.steps,
            sampler: self.sampler,
            eta: self.eta,
            init_noise: self.init_noise.as_deref(),
            samples: self.samples,
            ensemble: self.ensemble,
            tiling: self.tiling,
        }
    }
}

#[derive(Args)]
struct DownscaleArgs {
    input: PathBuf,
    output: PathBuf,
    /// HCFlow rescaling model directory or name (default: the shipped hcflow-rescale-x4-small).
    #[arg(long)]
    model: Option<String>,
    /// Crop the input to a multiple of the scale instead of refusing it.
    #[arg(long)]
    crop: bool,
    #[command(flatten)]
    tiling: TileArgs,
    /// Collaborative downscaling (HCD, ICCV 2023): optimise the LR so that
    /// `wgsr upscale --model M --seed S` reconstructs the input better
    /// (15 + 15 gradient steps through the model; slow).
    #[arg(long)]
    hcd: bool,
    /// HCD iterations of the HR stage and of the LR stage.
    #[arg(long, value_name = "H,L", requires = "hcd", value_parser = parse_iters)]
    hcd_iters: Option<(usize, usize)>,
    /// HCD patch side in LR pixels; patches are optimised one at a time (memory).
    #[arg(long, value_name = "N", requires = "hcd")]
    hcd_patch: Option<usize>,
    /// HCD random start and the latents it optimises for: upscale with the same --seed.
    #[arg(long, requires = "hcd")]
    seed: Option<u64>,
}

/// "H,L" iteration counts, each at most `hcd::MAX_ITERS`.
fn parse_iters(s: &str) -> std::result::Result<(usize, usize), String> {
    let (a, b) = s.split_once(',').ok_or_else(|| format!("'{s}': expected H,L (e.g. 15,15)"))?;
    let n = |v: &str| v.trim().parse::<usize>().map_err(|e| format!("'{v}': {e}"));
    let (h, l) = (n(a)?, n(b)?);
    let max = models::hcflow::hcd::MAX_ITERS;
    if h > max || l > max {
        return Err(format!("at most {max} iterations per stage"));
    }
    Ok((h, l))
}

impl DownscaleArgs {
    /// HCD options when --hcd is given (the tiling flags do not apply to it).
    fn hcd_options(&self) -> Result<Option<HcdOptions>> {
        if !self.hcd {
            return Ok(None);
        }
        if self.tiling.tile.is_some() || self.tiling.tile_margin.is_some() || self.tiling.max_memory.is_some() {
            return Err(Error::InvalidArgument("--tile, --tile-margin and --max-memory do not apply to --hcd, which works in patches (--hcd-patch)".into()));
        }
        let d = HcdOptions::default();
        let o = HcdOptions { iters: self.hcd_iters.unwrap_or(d.iters), patch: self.hcd_patch.unwrap_or(d.patch), seed: self.seed.unwrap_or(d.seed), ..d };
        if o.patch < 8 {
            return Err(Error::InvalidArgument(format!("--hcd-patch {} is below 8 LR pixels", o.patch)));
        }
        o.check()?;
        Ok(Some(o))
    }
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
    if parent.exists() && !parent.is_dir() {
        return Err(Error::InvalidArgument(format!("{}: {} is a file, not a directory", path.display(), parent.display())));
    }
    if !parent.is_dir() {
        return Err(Error::InvalidArgument(format!("{}: directory {} does not exist", path.display(), parent.display())));
    }
    if path.is_dir() {
        return Err(Error::InvalidArgument(format!("{}: is a directory; give a file name", path.display())));
    }
    Ok(())
}

/// Refuse an output that is the input itself (a failed run must never
/// destroy it, and a successful one would silently replace it).
fn check_not_input(input: &Path, output: &Path) -> Result<()> {
    let same = match (input.canonicalize(), output.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::InvalidArgument(format!("{}: the output is the input file; write to another path", output.display())));
    }
    Ok(())
}

/// Read the model files, then open the GPU and load the model: file
/// problems are reported before any device work.
fn load_model(cli: &Cli, spec: Option<&str>) -> Result<(GpuContext, Box<dyn Model>)> {
    load_model_or(cli, spec, models::registry::DEFAULT_MODEL)
}

/// [`load_model`] with another default than upscale's.
fn load_model_or(cli: &Cli, spec: Option<&str>, default: &str) -> Result<(GpuContext, Box<dyn Model>)> {
    let dir = builtin::open(spec, default)?;
    let ctx = context(cli)?;
    let m = models::load_as(&ctx, dir, cli.precision.dtype())?;
    Ok((ctx, m))
}

/// Crop to a multiple of `s` (top-left anchored) when allowed, else refuse.
fn fit(img: RgbImage, s: usize, crop: bool, what: &str) -> Result<RgbImage> {
    if img.width % s == 0 && img.height % s == 0 {
        return Ok(img);
    }
    let (w, h) = (img.width / s * s, img.height / s * s);
    if !crop || w == 0 || h == 0 {
        return Err(Error::InvalidArgument(format!(
            "{what} is {}x{}, not a multiple of the model's factor {s}{}",
            img.width,
            img.height,
            if crop { " (too small to crop)" } else { "; pass --crop to crop it to a multiple" }
        )));
    }
    img.crop(0, 0, w, h)
}

/// The output path of result `i` of `n` (`OUT_i.ext` when there are several).
fn numbered_path(out: &Path, i: usize, n: usize) -> PathBuf {
    if n == 1 {
        return out.to_path_buf();
    }
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = out.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!("{stem}_{i}.{ext}"))
}

fn upscale(cli: &Cli, a: &UpscaleArgs) -> Result<()> {
    if a.input.is_dir() {
        let files = files::images_in(&a.input)?;
        files::prepare_out_dir(&a.input, &a.output)?;
        let (ctx, mut m) = load_model(cli, a.model.as_deref())?;
        let opts = a.flags().options(m.as_ref())?;
        eprintln!("{}: {} images from {}", m.describe(), files.len(), a.input.display());
        return files::for_each(&files, &a.output, |i, o| upscale_one(&ctx, m.as_mut(), &opts, i, o, false));
    }
    check_output(&a.output)?;
    check_not_input(&a.input, &a.output)?;
    let probe = wgsr::image_io::probe_file(&a.input)?;
    let (w, h) = (probe.width as usize, probe.height as usize);
    let (ctx, mut m) = load_model(cli, a.model.as_deref())?;
    let opts = a.flags().options(m.as_ref())?;
    let s = m.scale();
    check_output_size(w, h, s)?;
    let t = opts.temperature.or(m.default_temperature()).map(|t| format!(", temperature {t}")).unwrap_or_default();
    let e = match m.ensemble(&opts)? {
        1 => String::new(),
        n => format!(", self-ensemble of {n} passes"),
    };
    eprintln!("{}: {w}x{h} -> {}x{}{t}{e}, seed {}", m.describe(), w * s, h * s, opts.seed);
    upscale_one(&ctx, m.as_mut(), &opts, &a.input, &a.output, true)
}

/// Largest output the CLI writes: the f32 result alone is 12 bytes a pixel
/// on the host (3.2 GB here), before any encoding.
const MAX_OUTPUT_PIXELS: u64 = 1 << 28;

/// Refuse, before any work, an output too large to hold.
fn check_output_size(w: usize, h: usize, s: usize) -> Result<()> {
    let px = (w as u64).saturating_mul(s as u64).saturating_mul((h as u64).saturating_mul(s as u64));
    if px > MAX_OUTPUT_PIXELS {
        return Err(Error::TooLarge(format!(
            "a {w}x{h} input gives a {}x{} output ({:.1} Gpixel); at most {} Mpixel are written (use a smaller input)",
            w * s,
            h * s,
            px as f64 / 1e9,
            MAX_OUTPUT_PIXELS >> 20
        )));
    }
    Ok(())
}

/// Upscale one file: the colour channels through the model (tiled when the
/// image needs it); alpha (RGBA, gray+alpha) resized with bicubic and
/// re-attached; written back in the input's layout (gray stays gray) and
/// bit depth (16-bit PNG stays 16-bit). Models refuse non-finite outputs.
fn upscale_one(ctx: &GpuContext, m: &mut dyn Model, opts: &UpscaleOptions, input: &Path, output: &Path, show_progress: bool) -> Result<()> {
    let img = Image::load(input)?;
    // The tiling line is printed either way; a run with its own units
    // (sampling steps, self-ensemble passes) draws those instead of tiles.
    let tiles = tile_bar(m, ctx, TiledPass::Upscale, img.width(), img.height(), &opts.tiling, show_progress)?;
    let pb = match m.progress_total(opts)? {
        Some(n) if show_progress => progress::bar(n, m.progress_unit()),
        Some(_) => indicatif::ProgressBar::hidden(),
        None => tiles,
    };
    let hrs = m.upscale(ctx, &img.rgb, opts, &mut |i| pb.set_position(i as u64));
    pb.finish_and_clear();
    let hrs = hrs?;
    for (i, hr) in hrs.into_iter().enumerate() {
        let path = numbered_path(output, i, opts.samples.unwrap_or(1));
        let out = img.clone().map_rgb(|_| Ok(hr))?;
        out.save(&path)?;
        if show_progress {
            eprintln!("wrote {} ({}x{}, {} {})", path.display(), out.width(), out.height(), out.layout, out.depth);
        }
    }
    Ok(())
}

fn downscale(cli: &Cli, a: &DownscaleArgs) -> Result<()> {
    let tiling = a.tiling.policy()?;
    let hcd = a.hcd_options()?;
    if a.input.is_dir() {
        let files = files::images_in(&a.input)?;
        files::prepare_out_dir(&a.input, &a.output)?;
        let (ctx, mut m) = load_model_or(cli, a.model.as_deref(), models::registry::DEFAULT_RESCALE_MODEL)?;
        check_downscaler(m.as_ref(), a.model.as_deref().unwrap_or(models::registry::DEFAULT_RESCALE_MODEL))?;
        return files::for_each(&files, &a.output, |i, o| downscale_one(&ctx, m.as_mut(), i, o, a.crop, &tiling, hcd.as_ref(), false));
    }
    check_output(&a.output)?;
    check_not_input(&a.input, &a.output)?;
    let (ctx, mut m) = load_model_or(cli, a.model.as_deref(), models::registry::DEFAULT_RESCALE_MODEL)?;
    check_downscaler(m.as_ref(), a.model.as_deref().unwrap_or(models::registry::DEFAULT_RESCALE_MODEL))?;
    downscale_one(&ctx, m.as_mut(), &a.input, &a.output, a.crop, &tiling, hcd.as_ref(), true)?;
    eprintln!("wrote {}", a.output.display());
    Ok(())
}

fn check_downscaler(m: &dyn Model, spec: &str) -> Result<()> {
    if !m.can_downscale() {
        return Err(Error::InvalidArgument(format!("downscale needs an HCFlow rescaling model; '{spec}' is {}", m.describe())));
    }
    Ok(())
}

/// Downscale one file (tiled when needed; alpha with bicubic, layout and
/// depth kept); `.npy` gets the values before 8-bit quantisation (with
/// HCD, the optimised 8-bit values).
#[allow(clippy::too_many_arguments)]
fn downscale_one(
    ctx: &GpuContext,
    m: &mut dyn Model,
    input: &Path,
    output: &Path,
    crop: bool,
    tiling: &models::TilePolicy,
    hcd: Option<&HcdOptions>,
    show_progress: bool,
) -> Result<()> {
    let s = m.scale();
    let img = Image::load(input)?;
    let (w, h) = (img.width(), img.height());
    let img = if w % s == 0 && h % s == 0 {
        img
    } else {
        // Refuses (or crops, with --crop) exactly as for RGB images.
        let rgb = fit(img.rgb.clone(), s, crop, "input")?;
        img.crop(0, 0, rgb.width, rgb.height)?
    };
    if let Some(o) = hcd {
        let pb = if show_progress { progress::bar(0, "HCD steps") } else { indicatif::ProgressBar::hidden() };
        let mut traces = Vec::new();
        let mut plan = 0;
        let lr = img.map_rgb_scaled(Scale::Down(s), |x| {
            let r = m.downscale_hcd(ctx, x, o, &mut |d, n| {
                pb.set_length(n as u64);
                pb.set_position(d as u64);
            })?;
            traces = r.patches;
            plan = r.plan_bytes;
            Ok(r.lr)
        });
        pb.finish_and_clear();
        let lr = lr?;
        if show_progress {
            // Whole-image loss as the pixel-weighted mean over patches.
            let mean = |f: &dyn Fn(&models::hcflow::hcd::PatchTrace) -> f64| {
                let (mut acc, mut px) = (0.0, 0.0);
                for t in &traces {
                    let a = (t.rect.2 * t.rect.3) as f64;
                    acc += a * f(t);
                    px += a;
                }
                -10.0 * (acc / px).log10()
            };
            let first = mean(&|t| t.loss_hr.first().copied().unwrap_or(f64::NAN));
            let last = mean(&|t| t.loss_lr.last().copied().unwrap_or(f64::NAN));
            eprintln!(
                "HCD: {} patch(es), model round-trip PSNR (RGB) {first:.2} dB at the start -> {last:.2} dB; gradient graphs {} MiB; upscale with --seed {}",
                traces.len(),
                plan >> 20,
                o.seed
            );
        }
        return lr.save(output);
    }
    let pb = tile_bar(m, ctx, TiledPass::Downscale, img.width() / s, img.height() / s, tiling, show_progress)?;
    let npy = output.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let lr = img.map_rgb_scaled(Scale::Down(s), |x| {
        let d = m.downscale_with(ctx, x, tiling, &mut |i| pb.set_position(i as u64))?;
        Ok(if npy { d.raw } else { d.lr })
    });
    pb.finish_and_clear();
    lr?.save(output)
}

/// Say how a run is tiled, and a progress bar over its tiles (hidden when
/// untiled, in folder runs, or when stderr is not a terminal).
fn tile_bar(
    m: &mut dyn Model,
    ctx: &GpuContext,
    pass: TiledPass,
    w: usize,
    h: usize,
    tiling: &models::TilePolicy,
    show: bool,
) -> Result<indicatif::ProgressBar> {
    match m.tiles(ctx, pass, w, h, tiling)? {
        Some(g) if show => {
            let (ww, wh) = g.window;
            let (tw, th) = g.tile;
            eprintln!("tiled: {} tiles of {tw}x{th} LR px, margin {} px (window {ww}x{wh})", g.len(), g.margin);
            Ok(progress::bar(g.len(), "tiles"))
        }
        _ => Ok(indicatif::ProgressBar::hidden()),
    }
}

fn nll(cli: &Cli, a: &NllArgs) -> Result<()> {
    let hr = RgbImage::load(&a.hr)?;
    let lr = RgbImage::load(&a.lr)?;
    let (ctx, mut m) = load_model(cli, Some(&a.model))?;
    let ctx = &ctx;
    let s = m.scale();
    if hr.width % s != 0 || hr.height % s != 0 {
        return Err(Error::InvalidArgument(format!("HR is {}x{}, not a multiple of the model's factor {s}", hr.width, hr.height)));
    }
    let nll = m.nll(ctx, &hr, &lr, a.seed)?;
    println!("{nll:.6} bits per HR pixel");
    Ok(())
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
        Command::Upscale(a) => upscale(&cli, a),
        Command::Downscale(a) => downscale(&cli, a),
        Command::Nll(a) => nll(&cli, a),
        Command::Models => builtin::list(),
        Command::Eval(a) => {
            let (ctx, m) = load_model(&cli, a.model.as_deref())?;
            let flags = flags::SamplingFlags {
                temperature: a.temperature,
                seed: a.seed,
                steps: a.steps,
                sampler: a.sampler,
                eta: a.eta,
                init_noise: None,
                samples: None,
                ensemble: a.ensemble,
                tiling: TileArgs::default(),
            };
            let opts = flags.options(m.as_ref())?;
            let hcd = a.hcd.then(|| HcdOptions { iters: a.hcd_iters.unwrap_or(HcdOptions::default().iters), ..Default::default() });
            eval::run(&ctx, m, &eval::EvalArgs { hr_dir: &a.hr, scale: a.scale, out: a.out.as_deref(), opts, hcd })
        }
    }
}
