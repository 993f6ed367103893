//! Geometric self-ensemble of HCFlow SR (`models::ensemble`): the registry's
//! upscale with `ensemble: n` equals the mean, in f64, of n single passes on
//! the rotated / mirrored LR, each brought back by its inverse (written here
//! by index arithmetic, independently of the library's transforms); the
//! model's `default_ensemble` applies at heat 0 only; sizes other than
//! 1/2/4/8, an ensemble at heat > 0 and one on a rescaling model are refused.

#[path = "kernels/common.rs"]
mod common;

use std::path::PathBuf;

use common::*;
use wgsr::image_io::RgbImage;
use wgsr::models::hcflow::HcFlow;
use wgsr::models::registry::Model;
use wgsr::models::tiling::TilePolicy;
use wgsr::models::UpscaleOptions;
use wgsr::weights::ModelDir;
use wgsr::Error;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The tiny SR fixture with config edits.
fn sr_model(edit: impl Fn(&mut serde_json::Value)) -> HcFlow {
    let dir = ModelDir::load(fixture("hcflow_sr_x4_tiny")).unwrap();
    let mut cfg = dir.config.clone();
    edit(&mut cfg);
    HcFlow::from_parts(&cfg, dir.weights).unwrap()
}

fn picture(w: usize, h: usize, seed: u64) -> RgbImage {
    let mut r = Rng::new(seed);
    RgbImage::new(w, h, r.vec(3 * w * h, 0.05, 0.95)).unwrap()
}

/// Pixel (x, y) of the image under `q` counter-clockwise quarter turns then
/// an optional mirror, as a source position in the original W x H image.
fn source(q: u8, mirror: bool, x: usize, y: usize, w: usize, h: usize) -> (usize, usize) {
    // Size after the turns.
    let (tw, _) = if q.is_multiple_of(2) { (w, h) } else { (h, w) };
    let x = if mirror { tw - 1 - x } else { x };
    match q % 4 {
        0 => (x, y),
        1 => (w - 1 - y, x),
        2 => (w - 1 - x, h - 1 - y),
        _ => (y, h - 1 - x),
    }
}

fn transformed(img: &RgbImage, q: u8, mirror: bool) -> RgbImage {
    let (w, h) = (img.width, img.height);
    let (tw, th) = if q.is_multiple_of(2) { (w, h) } else { (h, w) };
    let mut d = vec![0f32; 3 * w * h];
    for c in 0..3 {
        for y in 0..th {
            for x in 0..tw {
                let (sx, sy) = source(q, mirror, x, y, w, h);
                d[c * w * h + y * tw + x] = img.data[c * w * h + sy * w + sx];
            }
        }
    }
    RgbImage::new(tw, th, d).unwrap()
}

/// f64 mean of the single passes over the symmetries, each output pixel
/// read back at its transformed position.
fn reference(m: &mut HcFlow, lr: &RgbImage, syms: &[(u8, bool)]) -> Vec<f64> {
    let (w, h) = (lr.width * 4, lr.height * 4);
    let mut acc = vec![0f64; 3 * w * h];
    for &(q, mirror) in syms {
        let out = m.upscale(ctx(), &transformed(lr, q, mirror), Some(0.0), 0).unwrap();
        let tw = out.width;
        for c in 0..3 {
            for y in 0..out.height {
                for x in 0..tw {
                    let (sx, sy) = source(q, mirror, x, y, w, h);
                    acc[c * w * h + sy * w + sx] += out.data[c * w * h + y * tw + x] as f64;
                }
            }
        }
    }
    acc.iter().map(|v| v / syms.len() as f64).collect()
}

fn opts(ensemble: Option<usize>, temperature: Option<f32>) -> UpscaleOptions {
    UpscaleOptions { ensemble, temperature, ..Default::default() }
}

#[test]
fn ensemble_is_the_mean_of_the_transformed_passes() {
    let mut m = sr_model(|_| {});
    let lr = picture(7, 5, 3); // not square: quarter turns swap the sides
    let all: Vec<(u8, bool)> = [false, true].iter().flat_map(|&f| (0..4).map(move |q| (q, f))).collect();
    for (n, syms) in [(2usize, vec![(0u8, false), (2, false)]), (4, (0..4).map(|q| (q, false)).collect()), (8, all)] {
        let want = reference(&mut m, &lr, &syms);
        let mut done = Vec::new();
        let got = Model::upscale(&mut m, ctx(), &lr, &opts(Some(n), Some(0.0)), &mut |k| done.push(k)).unwrap().remove(0);
        assert_eq!((got.width, got.height), (28, 20));
        assert_eq!(done, (1..=n).collect::<Vec<_>>(), "progress per pass");
        // f32 sum of n values in [0, 1] then / n, against the f64 mean.
        assert_close(&format!("ensemble {n}"), &got.data, &want, 2e-6, 0.0);
        // And it is not a single pass.
        let one = m.upscale(ctx(), &lr, Some(0.0), 0).unwrap();
        let d = one.data.iter().zip(&got.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d > 1e-4, "ensemble {n} equals one pass (max diff {d})");
    }
    // ensemble 1 is the plain pass, bit for bit.
    let one = Model::upscale(&mut m, ctx(), &lr, &opts(Some(1), Some(0.0)), &mut |_| {}).unwrap().remove(0);
    assert_eq!(one, m.upscale(ctx(), &lr, Some(0.0), 0).unwrap());
}

#[test]
fn tiled_ensemble_agrees_with_untiled() {
    let mut m = sr_model(|_| {});
    let lr = picture(13, 9, 4);
    let untiled = Model::upscale(&mut m, ctx(), &lr, &opts(Some(4), Some(0.0)), &mut |_| {}).unwrap().remove(0);
    let o = UpscaleOptions { tiling: TilePolicy::tile(5), ..opts(Some(4), Some(0.0)) };
    let tiled = Model::upscale(&mut m, ctx(), &lr, &o, &mut |_| {}).unwrap().remove(0);
    let d = untiled.to_rgb8().iter().zip(tiled.to_rgb8()).map(|(a, b)| a.abs_diff(b)).max().unwrap();
    assert!(d <= 1, "tiled ensemble differs from untiled by {d} levels");
}

#[test]
fn default_ensemble_applies_at_heat_zero_only() {
    let mut m = sr_model(|c| {
        c["default_ensemble"] = serde_json::json!(4);
        c["default_heat"] = serde_json::json!(0.0);
    });
    let lr = picture(6, 6, 5);
    assert_eq!(m.ensemble(&opts(None, None)).unwrap(), 4);
    assert_eq!(m.ensemble(&opts(None, Some(0.5))).unwrap(), 1);
    assert_eq!(m.progress_total(&opts(None, None)).unwrap(), Some(4));
    assert_eq!(m.progress_total(&opts(Some(1), None)).unwrap(), None);
    let by_default = Model::upscale(&mut m, ctx(), &lr, &opts(None, None), &mut |_| {}).unwrap().remove(0);
    let explicit = Model::upscale(&mut m, ctx(), &lr, &opts(Some(4), Some(0.0)), &mut |_| {}).unwrap().remove(0);
    assert_eq!(by_default, explicit);
    // At heat 0.5 the default is one sample, the same as the plain pass.
    let sample = Model::upscale(&mut m, ctx(), &lr, &UpscaleOptions { seed: 9, ..opts(None, Some(0.5)) }, &mut |_| {}).unwrap().remove(0);
    assert_eq!(sample, m.upscale(ctx(), &lr, Some(0.5), 9).unwrap());
}

#[test]
fn impossible_ensembles_are_refused_before_any_pass() {
    let mut m = sr_model(|_| {});
    let lr = picture(4, 4, 6);
    let mut passes = 0;
    for (o, needle) in [
        (opts(Some(3), Some(0.0)), "1, 2, 4 or 8"),
        (opts(Some(0), Some(0.0)), "1, 2, 4 or 8"),
        (opts(Some(2), Some(0.9)), "temperature 0.9"),
    ] {
        let e = Model::upscale(&mut m, ctx(), &lr, &o, &mut |_| passes += 1).expect_err("refused");
        assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains(needle), "{e}");
    }
    assert_eq!(passes, 0);
    // A rescaling model: its LR is its own downscale, in one orientation.
    let path = fixture("hcflow_rescale_x4_tiny");
    let mut r = HcFlow::load(ctx(), ModelDir::load(&path).unwrap()).unwrap();
    let e = Model::upscale(&mut r, ctx(), &lr, &opts(Some(2), Some(0.0)), &mut |_| {}).expect_err("refused");
    assert!(e.to_string().contains("SR models"), "{e}");
    let dir = ModelDir::load(&path).unwrap();
    let mut cfg = dir.config.clone();
    cfg["default_ensemble"] = serde_json::json!(2);
    let e = HcFlow::from_parts(&cfg, dir.weights).err().expect("refused");
    assert!(e.to_string().contains("default_ensemble"), "{e}");
}
