//! Tiled HCFlow inference: latents drawn by global position, tiled ==
//! untiled within one 8-bit level (heat 0 and > 0, same seed) at several
//! tile sizes on image sizes the tiles do not divide, and automatic tiling
//! of an image whose untiled graph does not fit the device.
//!
//! `cargo test --release --test tiling -- --ignored margin_table --nocapture`
//! prints the margin measurement the default margin was chosen from.

#[path = "kernels/common.rs"]
mod common;

use std::path::PathBuf;

use common::*;
use wgsr::image_io::RgbImage;
use wgsr::models::hcflow::latents::normal_window;
use wgsr::models::hcflow::tiled::TiledPass;
use wgsr::models::hcflow::HcFlow;
use wgsr::models::tiling::{TileGrid, TilePolicy};
use wgsr::models::{self, UpscaleOptions};
use wgsr::ops::rng;
use wgsr::weights::ModelDir;
use wgsr::{Error, GpuContext, Shape};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn load(dir: PathBuf) -> HcFlow {
    HcFlow::load(ctx(), ModelDir::load(dir).unwrap()).unwrap()
}

/// A deterministic test picture: smooth gradients, edges and noise.
fn picture(w: usize, h: usize, seed: u64) -> RgbImage {
    let mut r = Rng::new(seed);
    let mut data = vec![0f32; 3 * w * h];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
                let edge = if (x / 5 + y / 7 + c) % 3 == 0 { 0.3 } else { 0.0 };
                let v = 0.2 + 0.4 * (fx * (c + 1) as f32 * 3.0 + fy * 2.0).sin().abs() + edge + 0.1 * r.range(0.0, 1.0);
                data[c * w * h + y * w + x] = v.clamp(0.0, 1.0);
            }
        }
    }
    RgbImage::new(w, h, data).unwrap()
}

/// Largest difference in 8-bit levels.
fn max_diff8(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    a.to_rgb8().iter().zip(b.to_rgb8()).map(|(x, y)| x.abs_diff(y)).max().unwrap_or(0)
}

#[test]
fn windowed_latents_are_the_full_draw_sub_window() {
    let cases = [
        (Shape::new(1, 6, 10, 13), (3, 5, 4, 7)),
        (Shape::new(1, 21, 9, 11), (0, 0, 9, 11)),
        (Shape::new(1, 3, 8, 16), (2, 0, 5, 16)),
        (Shape::new(2, 5, 7, 9), (1, 3, 6, 1)),
        (Shape::new(1, 1, 1, 1), (0, 0, 1, 1)),
    ];
    for (seed, offset) in [(0u64, 0u64), (42, 1 << 40), (u64::MAX, 3 << 40)] {
        for (full, (y0, x0, h, w)) in cases {
            let all = rng::host_normal(seed, offset, full.numel(), 0.0, 1.0);
            let win = normal_window(seed, offset, full, y0, x0, h, w);
            let mut want = Vec::new();
            for bc in 0..full.n() * full.c() {
                for y in y0..y0 + h {
                    let row = (bc * full.h() + y) * full.w() + x0;
                    want.extend_from_slice(&all[row..row + w]);
                }
            }
            assert_eq!(win, want, "seed {seed} offset {offset} {full} window ({y0}, {x0}) {h}x{w}");
        }
    }
}

#[test]
fn sample_eps_is_the_whole_window() {
    let m = load(fixture("hcflow_sr_x4_tiny"));
    let lr = Shape::new(1, 3, 9, 14);
    let eps = m.sample_eps(lr, 11);
    for (l, (e, s)) in eps.iter().zip(m.eps_shapes(lr)).enumerate() {
        assert_eq!(*e, normal_window(11, (1 << 40) * (l as u64 + 1), s, 0, 0, s.h(), s.w()), "level {l}");
    }
}

/// Tiled vs untiled upscale at several tile sizes (none dividing the image),
/// heat 0 and `heat`, returning the largest 8-bit difference seen.
fn upscale_tiled_vs_untiled(m: &mut HcFlow, lr: &RgbImage, tiles: &[usize], margin: Option<usize>, heat: f32) -> u8 {
    let mut worst = 0;
    for h in [0.0, heat] {
        let full = m.upscale(ctx(), lr, Some(h), 7).unwrap();
        for &t in tiles {
            let policy = TilePolicy { tile: Some(t), margin, max_memory: None };
            let mut calls = Vec::new();
            let tiled = m.upscale_tiled(ctx(), lr, Some(h), 7, &policy, &mut |d, n| calls.push((d, n))).unwrap();
            let n = TileGrid::new(lr.width, lr.height, t, margin.unwrap_or_else(|| m.default_margin(TiledPass::Upscale))).len();
            assert_eq!(calls, (1..=n).map(|d| (d, n)).collect::<Vec<_>>(), "progress over tiles");
            worst = worst.max(max_diff8(&full, &tiled));
        }
    }
    worst
}

#[test]
fn tiled_upscale_matches_untiled_sr() {
    let mut m = load(fixture("hcflow_sr_x4_tiny"));
    let lr = picture(37, 23, 1);
    let d = upscale_tiled_vs_untiled(&mut m, &lr, &[7, 16], None, 0.9);
    assert!(d <= 1, "tiled vs untiled differ by {d} 8-bit levels");
    // the margin matters: without one the tiles' borders show
    let d0 = upscale_tiled_vs_untiled(&mut m, &lr, &[7], Some(0), 0.9);
    assert!(d0 > 1, "margin 0 gives {d0} levels: the test image is too easy");
}

#[test]
fn tiled_upscale_matches_untiled_rescale() {
    let mut m = load(fixture("hcflow_rescale_x4_tiny"));
    let lr = picture(29, 19, 2);
    let d = upscale_tiled_vs_untiled(&mut m, &lr, &[6, 13], None, 1.0);
    assert!(d <= 1, "tiled vs untiled differ by {d} 8-bit levels");
}

#[test]
fn tiled_downscale_matches_untiled() {
    let mut m = load(fixture("hcflow_rescale_x4_tiny"));
    let hr = picture(29 * 4, 19 * 4, 3);
    let (lr, raw) = m.downscale(ctx(), &hr).unwrap();
    for t in [5, 11] {
        let policy = TilePolicy::tile(t);
        let mut last = (0, 0);
        let (tlr, traw) = m.downscale_tiled(ctx(), &hr, &policy, &mut |d, n| last = (d, n)).unwrap();
        assert_eq!(last.0, last.1);
        assert!(last.1 > 1);
        let d = max_diff8(&lr, &tlr);
        assert!(d <= 1, "tile {t}: tiled vs untiled LR differ by {d} 8-bit levels");
        let _ = (raw.width, traw.width);
    }
}

#[test]
fn one_tile_covering_the_image_is_the_untiled_output() {
    let mut m = load(fixture("hcflow_sr_x4_tiny"));
    let lr = picture(13, 10, 4);
    let full = m.upscale(ctx(), &lr, Some(0.9), 3).unwrap();
    let one = m.upscale_tiled(ctx(), &lr, Some(0.9), 3, &TilePolicy::tile(64), &mut |_, _| {}).unwrap();
    assert_eq!(full, one);
    // automatic policy on an image that fits: untiled, no progress calls
    let mut calls = 0;
    let auto = m.upscale_tiled(ctx(), &lr, Some(0.9), 3, &TilePolicy::default(), &mut |_, _| calls += 1).unwrap();
    assert_eq!((full, calls), (auto, 0));
}

/// A context on the same adapter whose device binds at most `bind` bytes
/// per storage buffer (as a host application's device with low limits).
fn small_ctx(bind: u32) -> GpuContext {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())).unwrap();
    let mut limits = adapter.limits();
    limits.max_storage_buffer_binding_size = bind.into();
    limits.max_buffer_size = bind as u64;
    let desc = wgpu::DeviceDescriptor { label: Some("small"), required_limits: limits, ..Default::default() };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc)).unwrap();
    GpuContext::from_device(device, queue, Some(adapter.get_info()))
}

#[test]
fn too_large_untiled_is_tiled_automatically() {
    let c = small_ctx(1 << 20);
    let dir = fixture("hcflow_sr_x4_tiny");
    let mut m = load(dir.clone());
    let lr = picture(96, 80, 5);
    let e = m.upscale(&c, &lr, Some(0.9), 1).err().expect("untiled should not fit 1 MiB bindings");
    assert!(matches!(e, Error::TooLarge(_)), "{e}");
    // through the registry's Model with default options: tiles on its own
    let mut model = models::load(&c, ModelDir::load(&dir).unwrap()).unwrap();
    let opts = UpscaleOptions { temperature: Some(0.9), seed: 1, ..Default::default() };
    let hr = model.upscale(&c, &lr, &opts, &mut |_| {}).unwrap().remove(0);
    assert_eq!((hr.width, hr.height), (384, 320));
    let grid = m.tile_grid(&c, TiledPass::Upscale, 96, 80, &TilePolicy::default()).unwrap().expect("tiled");
    assert!(grid.len() > 1);
    // ... and agrees with the untiled run on a device that fits it
    let full = m.upscale(ctx(), &lr, Some(0.9), 1).unwrap();
    let d = max_diff8(&full, &hr);
    assert!(d <= 1, "auto-tiled vs untiled differ by {d} 8-bit levels");
    // a memory budget alone also tiles, within it
    let budget = 8 << 20;
    let g = m.tile_grid(ctx(), TiledPass::Upscale, 96, 80, &TilePolicy::max_memory(budget)).unwrap().expect("tiled");
    let (ww, wh) = g.window;
    let plan = m.plan_bytes(ctx(), TiledPass::Upscale, Shape::new(1, 3, wh, ww)).unwrap();
    assert!(plan.peak <= budget, "{plan:?}");
}

#[test]
fn policy_errors_are_clear() {
    let mut m = load(fixture("hcflow_sr_x4_tiny"));
    let lr = picture(8, 8, 6);
    let e = m.upscale_tiled(ctx(), &lr, None, 0, &TilePolicy::tile(0), &mut |_, _| {}).err().expect("tile 0");
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("tile"), "{e}");
    let mut r = load(fixture("hcflow_sr_x4_tiny"));
    let e = r.downscale_tiled(ctx(), &picture(16, 16, 1), &TilePolicy::default(), &mut |_, _| {}).err().expect("SR model");
    assert!(e.to_string().contains("rescaling model"), "{e}");
}

/// The measurement behind the default margin: max 8-bit difference of
/// tiled vs untiled at heat 0 and 0.9 per (model, tile, margin).
/// WGSR_MARGINS="0,2,4" and WGSR_TILES="16,32" override the sweep.
#[test]
#[ignore]
fn margin_table() {
    let list = |var: &str, d: &[usize]| -> Vec<usize> {
        std::env::var(var).map(|s| s.split(',').map(|v| v.trim().parse().unwrap()).collect()).unwrap_or_else(|_| d.to_vec())
    };
    let margins = list("WGSR_MARGINS", &[0, 2, 4, 6, 8, 12, 16]);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shipped = root.join("weights/hcflow-sr-x4-small");
    // a 96x64 crop of the example (the full 128x128 makes the sweep slow on lavapipe)
    let example = RgbImage::load(root.join("weights/example-lr.png")).unwrap().crop(16, 32, 96, 64).unwrap();
    let cases: Vec<(&str, PathBuf, RgbImage, Vec<usize>)> = vec![
        ("sr_x4_tiny", fixture("hcflow_sr_x4_tiny"), picture(61, 47, 9), vec![12, 20, 32]),
        ("rescale_x4_tiny", fixture("hcflow_rescale_x4_tiny"), picture(61, 47, 9), vec![12, 20, 32]),
        ("sr-x4-small (shipped)", shipped, example, list("WGSR_TILES", &[32, 48])),
    ];
    // WGSR_TABLE="shipped,sr_x4_tiny" picks the models (by name substring).
    let only: Option<Vec<String>> = std::env::var("WGSR_TABLE").ok().map(|s| s.split(',').map(str::to_string).collect());
    let cases: Vec<_> = cases.into_iter().filter(|c| only.as_ref().is_none_or(|o| o.iter().any(|n| c.0.contains(n.as_str())))).collect();
    println!("| model | pass | RF bound | tile | margin | max diff heat 0 | max diff heat 0.9 |");
    println!("|---|---|---|---|---|---|---|");
    for (name, dir, lr, tiles) in cases {
        let mut m = load(dir);
        let pass = std::env::var("WGSR_PASS").unwrap_or_default();
        let rf = m.receptive_field(TiledPass::Upscale);
        let full: Vec<RgbImage> = if pass == "down" { Vec::new() } else { [0.0, 0.9].iter().map(|&h| m.upscale(ctx(), &lr, Some(h), 7).unwrap()).collect() };
        for &t in tiles.iter().filter(|_| pass != "down") {
            for &mg in &margins {
                let p = TilePolicy { tile: Some(t), margin: Some(mg), max_memory: None };
                let d: Vec<u8> = [0.0, 0.9]
                    .iter()
                    .zip(&full)
                    .map(|(&h, f)| max_diff8(f, &m.upscale_tiled(ctx(), &lr, Some(h), 7, &p, &mut |_, _| {}).unwrap()))
                    .collect();
                println!("| {name} | up | {rf} | {t} | {mg} | {} | {} |", d[0], d[1]);
                use std::io::Write;
                std::io::stdout().flush().unwrap();
            }
        }
        if m.config().task == wgsr::models::hcflow::Task::Rescale {
            let rf = m.receptive_field(TiledPass::Downscale);
            let hr = picture(lr.width * 4, lr.height * 4, 10);
            let (full, _) = m.downscale(ctx(), &hr).unwrap();
            for &t in &tiles {
                for &mg in &margins {
                    let p = TilePolicy { tile: Some(t), margin: Some(mg), max_memory: None };
                    let (tl, _) = m.downscale_tiled(ctx(), &hr, &p, &mut |_, _| {}).unwrap();
                    println!("| {name} | down | {rf} | {t} | {mg} | {} | - |", max_diff8(&full, &tl));
                    use std::io::Write;
                    std::io::stdout().flush().unwrap();
                }
            }
        }
    }
}

/// Tiles and planned device memory of the shipped model's automatic tiling
/// for 1080p and 4K outputs (the numbers quoted in the README).
#[test]
#[ignore]
fn plan_report() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut m = load(root.join("weights/hcflow-sr-x4-small"));
    let margin = std::env::var("WGSR_MARGINS").ok().map(|s| s.parse().unwrap());
    for (w, h) in [(128, 128), (480, 270), (960, 540)] {
        let full = m.plan_bytes(ctx(), TiledPass::Upscale, Shape::new(1, 3, h, w)).unwrap();
        match m.tile_grid(ctx(), TiledPass::Upscale, w, h, &TilePolicy { margin, ..Default::default() }).unwrap() {
            None => println!("{w}x{h}: untiled, plan peak {} MiB, largest buffer {} MiB", full.peak >> 20, full.max_buffer >> 20),
            Some(g) => {
                let (ww, wh) = g.window;
                let p = m.plan_bytes(ctx(), TiledPass::Upscale, Shape::new(1, 3, wh, ww)).unwrap();
                println!(
                    "{w}x{h}: untiled would plan {} MiB (largest buffer {} MiB); {} tiles of {:?}, margin {}, window {ww}x{wh}: plan peak {} MiB, largest buffer {} MiB",
                    full.peak >> 20,
                    full.max_buffer >> 20,
                    g.len(),
                    g.tile,
                    g.margin,
                    p.peak >> 20,
                    p.max_buffer >> 20
                );
            }
        }
    }
}

/// Where tiled and untiled differ (debugging aid): counts and positions of
/// the pixels off by more than one level, shipped model, heat from WGSR_HEAT.
#[test]
#[ignore]
fn diff_map() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut m = load(root.join("weights/hcflow-sr-x4-small"));
    let lr = RgbImage::load(root.join("weights/example-lr.png")).unwrap().crop(16, 32, 96, 64).unwrap();
    let heat: f32 = std::env::var("WGSR_HEAT").map(|s| s.parse().unwrap()).unwrap_or(0.9);
    let tile: usize = std::env::var("WGSR_TILES").map(|s| s.parse().unwrap()).unwrap_or(48);
    let margin: usize = std::env::var("WGSR_MARGINS").map(|s| s.parse().unwrap()).unwrap_or(16);
    let full = m.upscale(ctx(), &lr, Some(heat), 7).unwrap();
    let t = if std::env::var("WGSR_PERTURB").is_ok() {
        // untiled, latents scaled by 1 + 1e-6: the model's own sensitivity
        let shape = Shape::new(1, 3, lr.height, lr.width);
        let eps: Vec<Vec<f32>> = m.sample_eps(shape, 7).into_iter().map(|e| e.into_iter().map(|v| v * (1.0 + 1e-6)).collect()).collect();
        let hr = m.reverse(ctx(), &lr.data, shape, &eps, heat).unwrap();
        RgbImage::new(lr.width * 4, lr.height * 4, hr).unwrap()
    } else {
        let p = TilePolicy { tile: Some(tile), margin: Some(margin), max_memory: None };
        m.upscale_tiled(ctx(), &lr, Some(heat), 7, &p, &mut |_, _| {}).unwrap()
    };
    let (a, b) = (full.to_rgb8(), t.to_rgb8());
    let w = full.width;
    let mut bad = Vec::new();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        if x.abs_diff(*y) > 1 {
            let px = i / 3;
            bad.push((px % w, px / w, i % 3, *x, *y));
        }
    }
    let maxf = full.data.iter().zip(&t.data).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    println!("heat {heat} tile {tile} margin {margin}: {} of {} values off by > 1 level, max float diff {maxf}", bad.len(), a.len());
    for b in bad.iter().take(40) {
        println!("  HR ({}, {}) ch {}: {} vs {}", b.0, b.1, b.2, b.3, b.4);
    }
}
