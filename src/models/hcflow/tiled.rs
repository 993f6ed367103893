//! Tiled HCFlow: upscale (reverse pass) and downscale (rescaling forward
//! pass) on images of any size with bounded device and host memory.
//!
//! Each tile's padded window runs through the graph cached for its shape
//! (every window of a run has one shape, see `models::tiling`); its core is
//! pasted into the output. For heat > 0 the window's latents are the
//! matching sub-rectangles of the whole image's latents (`latents`), so a
//! tiled sample is the untiled sample up to the margin's truncation of the
//! receptive field, which the default margin keeps within one 8-bit level
//! (measured, see [`margin_fraction`]).
//!
//! One caveat at heat > 0: a trained model can have isolated output values
//! that move by many levels under any f32 rounding change (shipped SR x4 at
//! heat 0.9: one value in 295k moves 9 levels when the *untiled* latents
//! are scaled by 1 + 1e-6). Tiles round differently (other conv shapes), so
//! such a value may differ from the untiled run by more than one level; it
//! is the model's sensitivity, not the margin (no margin removes it).

use crate::graph::{plan_memory, GraphBuilder};
use crate::image_io::RgbImage;
pub use crate::models::tiling::TiledPass;
use crate::models::tiling::{default_max_memory, paste, TileGrid, TilePolicy};
use crate::{Error, GpuContext, Result, ResultExt, Shape};

use super::config::{CouplingNet, HcflowConfig, Task};
use super::{graph, latents, quantize8, HcFlow, EPS_STREAM};

/// Planned bytes of one graph: (largest buffer, peak).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanBytes {
    pub max_buffer: u64,
    pub peak: u64,
}

/// Radius (in pixels of the level it runs at) of a coupling network: the
/// convolutions along its deepest path.
fn net_radius(net: CouplingNet) -> f64 {
    match net {
        // conv1 3x3, conv2 k x k, conv3 (Conv2dZeros) 3x3
        CouplingNet::Fcn { kernel_hidden, .. } => 2.0 + (kernel_hidden / 2) as f64,
        // conv1 .. conv5, each 3x3, each reading the block input and all earlier outputs
        CouplingNet::DenseBlock { .. } => 5.0,
    }
}

/// Upper bound on the receptive-field radius of one pass's output, in LR
/// pixels: the 3x3 convolutions (radius 1) along the deepest path of the
/// graph, each divided by its level's resolution relative to the LR
/// (2^(L-1-l)), plus one level pixel per (un)squeeze and nearest upsample
/// (their 2x2 blocks). Reverse: the conditional features (conv_first, 15
/// convs per RRDB, trunk_conv1), the prior, the split-off steps' and the
/// main steps' coupling nets of every level, coarsest first. Forward (`z`
/// only, what a downscale keeps): the main steps of every level.
pub fn receptive_field(cfg: &HcflowConfig, pass: TiledPass) -> usize {
    let nl = cfg.n_levels();
    let feat_convs = 2.0 + 15.0 * (cfg.rrdb_nb[0] + cfg.rrdb_nb[1]) as f64;
    let main = net_radius(cfg.coupling.net);
    let split = net_radius(cfg.split_coupling.net);
    let mut r = 0.0f64;
    match pass {
        TiledPass::Upscale => {
            let mut feat_r = vec![0.0f64; nl];
            for l in (0..nl).rev() {
                let lev = &cfg.levels[l];
                let f = (1usize << (nl - 1 - l)) as f64;
                let mut u = r;
                for &(j, _) in &lev.cond_feats {
                    u = u.max(feat_r[j] + 1.0 / f);
                }
                let feat = u + feat_convs / f;
                feat_r[l] = feat;
                let mut a = feat + 1.0 / f;
                for _ in 0..lev.cond_steps {
                    a = a.max(feat) + split / f;
                }
                r = r.max(a) + lev.main_layers.len() as f64 * main / f + 1.0 / f;
            }
        }
        TiledPass::Downscale => {
            for l in 0..nl {
                let f = (1usize << (nl - 1 - l)) as f64;
                r += cfg.levels[l].main_layers.len() as f64 * main / f + 1.0 / f;
            }
        }
    }
    r.ceil() as usize
}

/// The default margin as a fraction of [`receptive_field`], per pass.
///
/// Measured (tests/tiling.rs `margin_table`, margins 0, 2, 4, 8, 12, 16,
/// 24; tiles 12-48 LR px on images they do not divide): the smallest margin
/// keeping tiled vs untiled within one 8-bit level was 8 px for upscaling
/// with all three models measured (the shipped SR x4 model, RF bound 69 px;
/// the SR x4 tiny fixture, 61 px; the rescaling tiny fixture, 95 px), i.e.
/// at most 0.131 of the bound, and 4 px of 17 for the rescaling downscale
/// (0.235). The fractions below are those maxima rounded up, so every
/// measured model gets at least its measured margin.
pub fn margin_fraction(pass: TiledPass) -> f64 {
    match pass {
        TiledPass::Upscale => 0.15,
        TiledPass::Downscale => 0.25,
    }
}

impl HcFlow {
    /// Upper bound on the receptive-field radius of `pass`, in LR pixels.
    pub fn receptive_field(&self, pass: TiledPass) -> usize {
        receptive_field(&self.cfg, pass)
    }

    /// The overlap a tile gets on each side when the policy names none:
    /// ceil([`margin_fraction`] x the receptive-field bound), at least 2
    /// (shipped SR x4 model: 11 LR px).
    pub fn default_margin(&self, pass: TiledPass) -> usize {
        ((self.receptive_field(pass) as f64 * margin_fraction(pass)).ceil() as usize).max(2)
    }

    /// The graph input shape of a window of `w` x `h` LR pixels.
    fn window_shape(&self, pass: TiledPass, w: usize, h: usize) -> Shape {
        let s = self.cfg.scale;
        match pass {
            TiledPass::Upscale => Shape::new(1, self.cfg.in_channels, h, w),
            TiledPass::Downscale => Shape::new(1, self.cfg.in_channels, h * s, w * s),
        }
    }

    /// Planned memory of `pass` on an input of `shape`, without allocating
    /// its buffers (the graph is built and planned, then dropped).
    pub fn plan_bytes(&mut self, ctx: &GpuContext, pass: TiledPass, shape: Shape) -> Result<PlanBytes> {
        if let Some(&(_, b)) = self.plans.iter().find(|(k, _)| *k == (pass, shape)) {
            return Ok(b);
        }
        let mut g = GraphBuilder::with_weights(ctx, &self.weights);
        g.set_precision(self.precision)?;
        match pass {
            TiledPass::Upscale => graph::build_reverse(&mut g, &self.cfg, shape, false)?,
            TiledPass::Downscale => graph::build_forward(&mut g, &self.cfg, shape, false)?,
        }
        let plan = plan_memory(&g.build()?);
        let b = PlanBytes { max_buffer: plan.buffer_sizes.iter().copied().max().unwrap_or(0), peak: plan.peak_bytes };
        self.plans.push(((pass, shape), b));
        Ok(b)
    }

    /// How `pass` on a `width` x `height` (LR pixels) image runs under
    /// `policy`: `None` = untiled (the whole image fits: every planned
    /// buffer within the device's binding limit and the plan's peak within
    /// the budget), else the tiles. A forced `tile` always tiles (one tile
    /// when it covers the image).
    pub fn tile_grid(&mut self, ctx: &GpuContext, pass: TiledPass, width: usize, height: usize, policy: &TilePolicy) -> Result<Option<TileGrid>> {
        policy.check()?;
        let margin = policy.margin.unwrap_or_else(|| self.default_margin(pass));
        if let Some(t) = policy.tile {
            return Ok(Some(TileGrid::new(width, height, t, margin)));
        }
        let bind = ctx.max_binding_bytes();
        let budget = policy.max_memory.unwrap_or_else(|| default_max_memory(bind));
        let over = |b: PlanBytes| (b.max_buffer as f64 / bind as f64).max(b.peak as f64 / budget as f64);
        let full = self.plan_bytes(ctx, pass, self.window_shape(pass, width, height))?;
        if over(full) <= 1.0 {
            return Ok(None);
        }
        // Memory is linear in the window's pixels: start from the window
        // area the full plan predicts (full-width / full-height strips when
        // the image is narrower than a square window), then shrink until
        // the plan fits.
        let area = (width * height) as f64 / over(full);
        let side = area.sqrt();
        let (mut tw, mut th) = if height as f64 <= side {
            ((area / height as f64) as usize, height + 2 * margin)
        } else if width as f64 <= side {
            (width + 2 * margin, (area / width as f64) as usize)
        } else {
            (side as usize, side as usize)
        };
        // cores of equal size for the same tile count (smaller windows)
        let even = |len: usize, t: usize| if t == 0 { 0 } else { len.div_ceil(len.div_ceil(t)) };
        tw = even(width, tw.saturating_sub(2 * margin).min(width));
        th = even(height, th.saturating_sub(2 * margin).min(height));
        loop {
            if tw == 0 || th == 0 {
                return Err(Error::TooLarge(format!(
                    "no tile fits a memory budget of {} MiB and {} MiB per buffer with a margin of {margin} px (raise --max-memory or lower the margin)",
                    budget >> 20,
                    bind >> 20
                )));
            }
            let grid = TileGrid::rect(width, height, tw, th, margin);
            let (ww, wh) = grid.window;
            if over(self.plan_bytes(ctx, pass, self.window_shape(pass, ww, wh))?) <= 1.0 {
                return Ok(Some(grid));
            }
            // shrink the longer side first (strips stay strips)
            if tw >= th {
                tw = even(width, (tw * 9 / 10).min(tw - 1));
            } else {
                th = even(height, (th * 9 / 10).min(th - 1));
            }
        }
    }

    /// [`HcFlow::upscale`] on an image of any size: untiled when it fits
    /// (byte-identical to `upscale`), else (or when `policy.tile` forces
    /// it) tile by tile. `progress(done, total)` after each tile.
    pub fn upscale_tiled(
        &mut self,
        ctx: &GpuContext,
        lr: &RgbImage,
        heat: Option<f32>,
        seed: u64,
        policy: &TilePolicy,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<RgbImage> {
        let full = Shape::new(1, 3, lr.height, lr.width);
        self.check_lr(full)?;
        let heat = heat.unwrap_or(self.cfg.default_heat);
        let mut grid = self.tile_grid(ctx, TiledPass::Upscale, lr.width, lr.height, policy)?;
        loop {
            let r = match &grid {
                None => self.upscale(ctx, lr, Some(heat), seed),
                Some(g) => self.upscale_grid(ctx, lr, heat, seed, g, progress),
            };
            grid = match r {
                Err(e @ Error::TooLarge(_)) if policy.tile.is_none() => Some(self.smaller_grid(TiledPass::Upscale, lr.width, lr.height, policy, grid.as_ref()).ok_or(e)?),
                r => return r,
            };
        }
    }

    /// A grid of half the tile (of the image's longer side when untiled),
    /// for when a plan that fits the budget still fails with `TooLarge`
    /// (a dispatch grid over the device's limits); `None` below 1 px.
    fn smaller_grid(&self, pass: TiledPass, width: usize, height: usize, policy: &TilePolicy, grid: Option<&TileGrid>) -> Option<TileGrid> {
        let margin = policy.margin.unwrap_or_else(|| self.default_margin(pass));
        let (tw, th) = grid.map(|g| g.tile).unwrap_or((width, height));
        (tw > 1 || th > 1).then(|| TileGrid::rect(width, height, tw.div_ceil(2), th.div_ceil(2), margin))
    }

    fn upscale_grid(
        &mut self,
        ctx: &GpuContext,
        lr: &RgbImage,
        heat: f32,
        seed: u64,
        grid: &TileGrid,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<RgbImage> {
        let s = self.cfg.scale;
        let eps_full = self.eps_shapes(Shape::new(1, 3, lr.height, lr.width));
        let nl = self.cfg.n_levels();
        let mut hr = vec![0f32; 3 * lr.width * s * lr.height * s];
        let n = grid.len();
        for (k, t) in grid.tiles.iter().enumerate() {
            let w = t.window;
            let tile_lr = lr.crop(w.x, w.y, w.w, w.h)?;
            let shape = Shape::new(1, 3, w.h, w.w);
            let eps: Vec<Vec<f32>> = eps_full
                .iter()
                .enumerate()
                .map(|(l, es)| {
                    let f = 1 << (nl - 1 - l);
                    if heat == 0.0 {
                        // heat 0 multiplies every latent by zero: skip the draw.
                        vec![0f32; es.c() * w.h * f * w.w * f]
                    } else {
                        latents::normal_window(seed, EPS_STREAM * (l as u64 + 1), *es, w.y * f, w.x * f, w.h * f, w.w * f)
                    }
                })
                .collect();
            let out = self.reverse(ctx, &tile_lr.data, shape, &eps, heat).with_context(|| tile_label(k, grid))?;
            paste(&mut hr, lr.width, lr.height, &out, t, s, 3);
            progress(k + 1, n);
        }
        RgbImage::new(lr.width * s, lr.height * s, hr)
    }

    /// [`HcFlow::downscale`] on an image of any size (HR sides multiples
    /// of the scale): untiled when it fits, else tile by tile, tile origins
    /// on multiples of the scale. Returns (8-bit LR, raw LR).
    pub fn downscale_tiled(
        &mut self,
        ctx: &GpuContext,
        hr: &RgbImage,
        policy: &TilePolicy,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(RgbImage, RgbImage)> {
        if self.cfg.task != Task::Rescale {
            return Err(Error::InvalidArgument("downscaling needs an HCFlow rescaling model; this is an SR model".into()));
        }
        let s = self.cfg.scale;
        self.check_hr(Shape::new(1, 3, hr.height, hr.width))?;
        let (w, h) = (hr.width / s, hr.height / s);
        let mut grid = self.tile_grid(ctx, TiledPass::Downscale, w, h, policy)?;
        loop {
            let r = match &grid {
                None => self.downscale(ctx, hr),
                Some(g) => self.downscale_grid(ctx, hr, g, progress),
            };
            grid = match r {
                Err(e @ Error::TooLarge(_)) if policy.tile.is_none() => Some(self.smaller_grid(TiledPass::Downscale, w, h, policy, grid.as_ref()).ok_or(e)?),
                r => return r,
            };
        }
    }

    fn downscale_grid(&mut self, ctx: &GpuContext, hr: &RgbImage, grid: &TileGrid, progress: &mut dyn FnMut(usize, usize)) -> Result<(RgbImage, RgbImage)> {
        let s = self.cfg.scale;
        let (w, h) = (hr.width / s, hr.height / s);
        let mut raw = vec![0f32; 3 * w * h];
        let n = grid.len();
        for (k, t) in grid.tiles.iter().enumerate() {
            let win = t.window;
            let tile_hr = hr.crop(win.x * s, win.y * s, win.w * s, win.h * s)?;
            let shape = Shape::new(1, 3, win.h * s, win.w * s);
            let z = self.forward_outputs(ctx, &tile_hr.data, shape, None, &["z"], false).with_context(|| tile_label(k, grid))?.remove(0);
            paste(&mut raw, w, h, &z, t, 1, 3);
            progress(k + 1, n);
        }
        let lr = quantize8(&raw);
        Ok((RgbImage::new(w, h, lr)?, RgbImage::new(w, h, raw)?))
    }
}

fn tile_label(k: usize, g: &TileGrid) -> String {
    format!("tile {}/{} ({}x{} LR px + a {} px margin)", k + 1, g.len(), g.tile.0, g.tile.1, g.margin)
}
