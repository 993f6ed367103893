//! The `wgsr` binary end to end on the tiny HCFlow fixtures: outputs by
//! extension, reproducible seeds, and clear failures that write nothing.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn wgsr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgsr")).args(args).env("XDG_RUNTIME_DIR", "/tmp").output().expect("running wgsr")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsr-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_png(path: &Path, w: u32, h: u32, seed: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 37 + y * 91 + seed * 13) % 251;
        image::Rgb([v as u8, ((v * 7) % 256) as u8, ((v * 3 + 40) % 256) as u8])
    });
    img.save(path).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "wgsr failed: {}", String::from_utf8_lossy(&o.stderr));
}

fn fails_with(o: &Output, needle: &str) {
    assert!(!o.status.success(), "wgsr should have failed");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(needle), "stderr lacks '{needle}': {err}");
    assert!(!err.contains("panicked"), "wgsr panicked: {err}");
}

#[test]
fn upscale_outputs_are_reproducible_and_typed_by_extension() {
    let d = scratch("upscale");
    let model = fixture("hcflow_sr_x4_tiny");
    let lr = d.join("lr.png");
    write_png(&lr, 7, 5, 1);
    let (a, b, c) = (d.join("a.png"), d.join("b.png"), d.join("c.png"));
    ok(&wgsr(&["upscale", s(&lr), s(&a), "--model", s(&model), "--seed", "5"]));
    ok(&wgsr(&["upscale", s(&lr), s(&b), "--model", s(&model), "--seed", "5"]));
    ok(&wgsr(&["upscale", s(&lr), s(&c), "--model", s(&model), "--seed", "6"]));
    let (ba, bb, bc) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), std::fs::read(&c).unwrap());
    assert_eq!(ba, bb, "same seed, different bytes");
    assert_ne!(ba, bc, "different seeds, same bytes");
    let img = image::open(&a).unwrap();
    assert_eq!((img.width(), img.height()), (28, 20));

    // temperature 0 ignores the seed; .npy holds (H, W, 3) float32
    let (n1, n2) = (d.join("t0a.npy"), d.join("t0b.npy"));
    ok(&wgsr(&["upscale", s(&lr), s(&n1), "--model", s(&model), "--temperature", "0", "--seed", "1"]));
    ok(&wgsr(&["upscale", s(&lr), s(&n2), "--model", s(&model), "--temperature", "0", "--seed", "2"]));
    assert_eq!(std::fs::read(&n1).unwrap(), std::fs::read(&n2).unwrap());
    let (shape, data) = wgsr::image_io::read_npy(&n1).unwrap();
    assert_eq!(shape, vec![20, 28, 3]);
    assert!(data.iter().all(|v| (0.0..=1.0).contains(v)));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn downscale_and_nll() {
    let d = scratch("down");
    let hr = d.join("hr.png");
    write_png(&hr, 16, 12, 2);
    let lr = d.join("lr.png");
    ok(&wgsr(&["downscale", s(&hr), s(&lr), "--model", s(&fixture("hcflow_rescale_x4_tiny"))]));
    let img = image::open(&lr).unwrap();
    assert_eq!((img.width(), img.height()), (4, 3));

    let odd = d.join("odd.png");
    write_png(&odd, 18, 13, 3);
    let out = d.join("odd_lr.png");
    fails_with(&wgsr(&["downscale", s(&odd), s(&out), "--model", s(&fixture("hcflow_rescale_x4_tiny"))]), "--crop");
    assert!(!out.exists());
    ok(&wgsr(&["downscale", s(&odd), s(&out), "--model", s(&fixture("hcflow_rescale_x4_tiny")), "--crop"]));
    assert_eq!(image::open(&out).unwrap().width(), 4);

    let o = wgsr(&["nll", s(&hr), s(&lr), "--model", s(&fixture("hcflow_sr_x4_tiny"))]);
    ok(&o);
    let text = String::from_utf8_lossy(&o.stdout);
    let v: f64 = text.split_whitespace().next().unwrap().parse().unwrap();
    assert!(v.is_finite(), "{text}");
    // Without --model: the shipped rescaling model (on disk here, built in elsewhere).
    let d_lr = d.join("default_lr.png");
    ok(&wgsr(&["downscale", s(&hr), s(&d_lr)]));
    assert_eq!(image::open(&d_lr).unwrap().width(), 4);
    // an SR model cannot downscale
    fails_with(&wgsr(&["downscale", s(&hr), s(&d.join("x.png")), "--model", s(&fixture("hcflow_sr_x4_tiny"))]), "rescaling model");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn hcd_downscale_through_the_cli() {
    let d = scratch("hcd");
    let hr = d.join("hr.png");
    write_png(&hr, 16, 12, 4);
    let rescale = fixture("hcflow_rescale_x4_tiny");
    let (a, b) = (d.join("a.png"), d.join("b.png"));
    let o = wgsr(&["downscale", s(&hr), s(&a), "--model", s(&rescale), "--hcd", "--hcd-iters", "2,3", "--seed", "9"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("HCD: 1 patch(es)") && err.contains("--seed 9"), "{err}");
    let img = image::open(&a).unwrap();
    assert_eq!((img.width(), img.height()), (4, 3));
    // Same seed, same bytes; and HCD moves the LR off the plain downscale.
    ok(&wgsr(&["downscale", s(&hr), s(&b), "--model", s(&rescale), "--hcd", "--hcd-iters", "2,3", "--seed", "9"]));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let plain = d.join("plain.png");
    ok(&wgsr(&["downscale", s(&hr), s(&plain), "--model", s(&rescale)]));
    assert_ne!(pixels(&plain), pixels(&a));
    // Refusals, before any work: HCD flags without --hcd, bad counts,
    // tiling flags, an SR model.
    let out = d.join("x.png");
    fails_with(&wgsr(&["downscale", s(&hr), s(&out), "--model", s(&rescale), "--hcd-iters", "2,3"]), "--hcd");
    fails_with(&wgsr(&["downscale", s(&hr), s(&out), "--model", s(&rescale), "--seed", "3"]), "--hcd");
    fails_with(&wgsr(&["downscale", s(&hr), s(&out), "--model", s(&rescale), "--hcd", "--hcd-iters", "15"]), "H,L");
    fails_with(&wgsr(&["downscale", s(&hr), s(&out), "--model", s(&rescale), "--hcd", "--hcd-iters", "2,5000"]), "at most");
    fails_with(&wgsr(&["downscale", s(&hr), s(&out), "--model", s(&rescale), "--hcd", "--tile", "2"]), "--hcd-patch");
    fails_with(&wgsr(&["downscale", s(&hr), s(&out), "--model", s(&rescale), "--hcd", "--hcd-patch", "2"]), "below 8");
    fails_with(&wgsr(&["downscale", s(&hr), s(&out), "--model", s(&fixture("hcflow_sr_x4_tiny")), "--hcd"]), "rescaling model");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_inputs_fail_cleanly_and_write_nothing() {
    let d = scratch("bad");
    let model = fixture("hcflow_sr_x4_tiny");
    let lr = d.join("lr.png");
    write_png(&lr, 4, 4, 4);
    let out = d.join("out.png");

    let corrupt = d.join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\n this is not a png").unwrap();
    fails_with(&wgsr(&["upscale", s(&corrupt), s(&out), "--model", s(&model)]), "cannot decode");
    fails_with(&wgsr(&["upscale", s(&d.join("missing.png")), s(&out), "--model", s(&model)]), "missing.png");
    fails_with(&wgsr(&["upscale", s(&lr), s(&d.join("out.jpg")), "--model", s(&model)]), ".png");
    fails_with(&wgsr(&["upscale", s(&lr), s(&d.join("no/such/dir/out.png")), "--model", s(&model)]), "does not exist");
    fails_with(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&d.join("no-model"))]), "not found");

    // config and weights that do not belong together
    let mixed = d.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(fixture("hcflow_sr_x8_tiny").join("config.json"), mixed.join("config.json")).unwrap();
    std::fs::copy(model.join("model.safetensors"), mixed.join("model.safetensors")).unwrap();
    fails_with(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&mixed)]), "weight");

    // truncated weights file
    let broken = d.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(model.join("config.json"), broken.join("config.json")).unwrap();
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    std::fs::write(broken.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&broken)]), "safetensors");

    assert!(!out.exists(), "a failed run left an output behind");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn eval_prints_a_table_and_writes_side_by_side_images() {
    let d = scratch("eval");
    let hr_dir = d.join("hr");
    std::fs::create_dir_all(&hr_dir).unwrap();
    write_png(&hr_dir.join("a.png"), 22, 21, 5); // cropped to 20x20
    write_png(&hr_dir.join("b.png"), 20, 24, 6);
    let out = d.join("out");
    let o = wgsr(&["eval", "--model", s(&fixture("hcflow_sr_x4_tiny")), "--hr", s(&hr_dir), "--out", s(&out), "--scale", "4"]);
    ok(&o);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("a.png") && text.contains("b.png") && text.contains("mean"), "{text}");
    let img = image::open(out.join("a_bicubic_model_hr.png")).unwrap();
    assert_eq!((img.width(), img.height()), (60, 20));
    fails_with(&wgsr(&["eval", "--model", s(&fixture("hcflow_sr_x4_tiny")), "--hr", s(&hr_dir), "--scale", "8"]), "--scale 8");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn sr3_ddim_from_init_noise_is_determined_by_its_inputs() {
    let d = scratch("sr3");
    let model = fixture("sr3_tiny"); // 4x4 -> 16x16
    let lr = d.join("lr.png");
    write_png(&lr, 4, 4, 7);
    let noise: Vec<f32> = (0..16 * 16 * 3).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let xt = d.join("xt.npy");
    std::fs::write(&xt, wgsr::image_io::npy_bytes(&[16, 16, 3], &noise)).unwrap();
    let (a, b) = (d.join("a.npy"), d.join("b.npy"));
    let common = ["--model", s(&model), "--steps", "4", "--sampler", "ddim", "--eta", "0", "--init-noise", s(&xt)];
    let o = wgsr(&[&["upscale", s(&lr), s(&a), "--seed", "1"][..], &common[..]].concat());
    ok(&o);
    // stderr is a pipe here: no progress-bar control characters
    assert!(!String::from_utf8_lossy(&o.stderr).contains('\r'), "progress bar drawn into a pipe");
    ok(&wgsr(&[&["upscale", s(&lr), s(&b), "--seed", "2"][..], &common[..]].concat()));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "DDIM eta 0 depends on the seed");
    let (shape, _) = wgsr::image_io::read_npy(&a).unwrap();
    assert_eq!(shape, vec![16, 16, 3]);

    let bad = d.join("bad.npy");
    std::fs::write(&bad, wgsr::image_io::npy_bytes(&[8, 16, 3], &noise[..384])).unwrap();
    let out = d.join("c.png");
    fails_with(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&model), "--init-noise", s(&bad)]), "(16, 16, 3)");
    let big = d.join("big.png");
    write_png(&big, 8, 8, 1);
    fails_with(&wgsr(&["upscale", s(&big), s(&out), "--model", s(&model), "--steps", "2"]), "4x4");
    fails_with(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&fixture("hcflow_sr_x4_tiny")), "--steps", "2"]), "--steps");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn pixelcnn_writes_one_file_per_sample() {
    let d = scratch("px");
    let model = fixture("pixelcnn_tiny"); // 1x2 (w x h) -> 4x8
    let lr = d.join("lr.png");
    write_png(&lr, 1, 2, 8);
    let out = d.join("s.png");
    ok(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&model), "--samples", "2", "--seed", "4", "--temperature", "0.9"]));
    let (s0, s1) = (d.join("s_0.png"), d.join("s_1.png"));
    assert_eq!(image::open(&s0).unwrap().height(), 8);
    assert!(s1.exists() && !out.exists());
    let again = d.join("t.png");
    ok(&wgsr(&["upscale", s(&lr), s(&again), "--model", s(&model), "--samples", "2", "--seed", "4", "--temperature", "0.9"]));
    assert_eq!(std::fs::read(&s1).unwrap(), std::fs::read(d.join("t_1.png")).unwrap());
    let wide = d.join("wide.png");
    write_png(&wide, 2, 1, 9);
    fails_with(&wgsr(&["upscale", s(&wide), s(&d.join("w.png")), "--model", s(&model)]), "1x2");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_image_no_tile_can_fit_is_refused_cleanly() {
    // Untiled it would need far more than any binding limit; with a 1 MiB
    // budget and a 200 px margin no tile fits either.
    let d = scratch("big");
    let lr = d.join("big.png");
    write_png(&lr, 1500, 1400, 3);
    let out = d.join("out.png");
    let model = fixture("hcflow_sr_x4_tiny");
    fails_with(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&model), "--max-memory", "1", "--tile-margin", "200"]), "too large");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&d);
}

fn pixels(p: &Path) -> Vec<u8> {
    image::open(p).unwrap().to_rgb8().into_raw()
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

#[test]
fn tiled_upscale_and_downscale_through_the_cli() {
    let d = scratch("tile");
    let model = fixture("hcflow_sr_x4_tiny");
    let lr = d.join("lr.png");
    write_png(&lr, 23, 13, 2);
    let (full, tiled, budget) = (d.join("full.png"), d.join("tiled.png"), d.join("budget.png"));
    let args = ["--model", s(&model), "--temperature", "0.9", "--seed", "3"];
    ok(&wgsr(&[&["upscale", s(&lr), s(&full)][..], &args[..]].concat()));
    let o = wgsr(&[&["upscale", s(&lr), s(&tiled), "--tile", "6"][..], &args[..]].concat());
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tiled: 12 tiles of 6x6 LR px"), "{err}");
    assert!(!err.contains('\r'), "progress bar drawn into a pipe");
    let dt = max_diff(&pixels(&full), &pixels(&tiled));
    assert!(dt <= 1, "--tile 6 differs from untiled by {dt} levels");
    // a budget below the whole image's plan (~1.5 KiB per LR pixel for
    // this model) tiles automatically
    let big = d.join("big.png");
    write_png(&big, 40, 30, 5);
    let o = wgsr(&[&["upscale", s(&big), s(&budget), "--max-memory", "1", "--tile-margin", "3"][..], &args[..]].concat());
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tiled:") && err.contains("margin 3 px"), "{err}");
    assert_eq!(image::open(&budget).unwrap().width(), 160);

    let rescale = fixture("hcflow_rescale_x4_tiny");
    let hr = d.join("hr.png");
    write_png(&hr, 44, 36, 4);
    let (a, b) = (d.join("a.png"), d.join("b.png"));
    ok(&wgsr(&["downscale", s(&hr), s(&a), "--model", s(&rescale)]));
    let o = wgsr(&["downscale", s(&hr), s(&b), "--model", s(&rescale), "--tile", "4"]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("tiled: 9 tiles"));
    assert!(max_diff(&pixels(&a), &pixels(&b)) <= 1);

    // families with a fixed input size refuse the tiling flags by name
    let out = d.join("x.png");
    let small = d.join("small.png");
    write_png(&small, 4, 4, 1);
    fails_with(&wgsr(&["upscale", s(&small), s(&out), "--model", s(&fixture("sr3_tiny")), "--tile", "2"]), "--tile do(es) not apply to SR3");
    fails_with(&wgsr(&["upscale", s(&small), s(&out), "--model", s(&fixture("sr3_tiny")), "--max-memory", "64"]), "HCFlow models only");
    fails_with(&wgsr(&["upscale", s(&small), s(&out), "--model", s(&model), "--tile", "0"]), "--tile must be at least 1");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn precision_f16_upscales_within_a_level_and_refuses_where_unsupported() {
    let d = scratch("precision");
    let model = fixture("hcflow_sr_x4_tiny");
    let lr = d.join("lr.png");
    write_png(&lr, 7, 5, 3);
    let (a, b) = (d.join("f32.npy"), d.join("f16.npy"));
    ok(&wgsr(&["upscale", s(&lr), s(&a), "--model", s(&model), "--temperature", "0"]));
    let o = wgsr(&["--precision", "f16", "upscale", s(&lr), s(&b), "--model", s(&model), "--temperature", "0"]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("f16 storage"), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, x) = wgsr::image_io::read_npy(&a).unwrap();
    let (_, y) = wgsr::image_io::read_npy(&b).unwrap();
    let worst = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    assert!(worst <= 1.0 / 255.0, "f16 is {worst} from f32");
    // PixelCNN is f32 only: a clear error, nothing written.
    let out = d.join("p.png");
    let o = wgsr(&["--precision", "f16", "upscale", s(&lr), s(&out), "--model", s(&fixture("pixelcnn_tiny"))]);
    fails_with(&o, "f32 only");
    assert!(!out.exists());
    fails_with(&wgsr(&["--precision", "f8", "info"]), "f8");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn ensemble_flag_runs_and_is_refused_where_it_cannot_apply() {
    let d = scratch("ensemble");
    let model = fixture("hcflow_sr_x4_tiny");
    let lr = d.join("lr.png");
    write_png(&lr, 6, 4, 8);
    let (one, two) = (d.join("one.npy"), d.join("two.npy"));
    ok(&wgsr(&["upscale", s(&lr), s(&one), "--model", s(&model), "--temperature", "0"]));
    let o = wgsr(&["upscale", s(&lr), s(&two), "--model", s(&model), "--temperature", "0", "--ensemble", "2"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("self-ensemble of 2 passes") && !err.contains('\r'), "{err}");
    let (_, x) = wgsr::image_io::read_npy(&one).unwrap();
    let (_, y) = wgsr::image_io::read_npy(&two).unwrap();
    assert!(x.iter().zip(&y).any(|(p, q)| (p - q).abs() > 1e-4), "--ensemble 2 wrote the single pass");
    let out = d.join("x.png");
    fails_with(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&model), "--temperature", "0", "--ensemble", "3"]), "1, 2, 4 or 8");
    fails_with(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&model), "--temperature", "0.8", "--ensemble", "8"]), "temperature 0.8");
    let small = d.join("small.png");
    write_png(&small, 4, 4, 1);
    fails_with(&wgsr(&["upscale", s(&small), s(&out), "--model", s(&fixture("sr3_tiny")), "--ensemble", "2"]), "--ensemble do(es) not apply to SR3");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&d);
}
