//! The CLI on real image formats and folders (issue 12): RGBA, gray and
//! 16-bit PNGs come back in their own layout and depth (alpha resized with
//! bicubic), JPEG in works, and a folder run carries on past a corrupt
//! file, reports it and fails.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn wgsr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgsr")).args(args).output().expect("running wgsr")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "wgsr failed: {err}");
    err
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsr-formats-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pixel(x: u32, y: u32, k: u32) -> u16 {
    ((x * 7919 + y * 104_729 + k * 31) % 65_521) as u16
}

#[test]
fn layouts_and_depths_round_trip_through_upscale_and_downscale() {
    let d = dir("layouts");
    let sr = fixture("hcflow_sr_x4_tiny");
    let rs = fixture("hcflow_rescale_x4_tiny");
    let rgba16 = d.join("rgba16.png");
    image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(3, 2, |x, y| image::Rgba([pixel(x, y, 0), pixel(x, y, 1), pixel(x, y, 2), pixel(x, y, 3)]))
        .save(&rgba16)
        .unwrap();
    let gray = d.join("gray.png");
    image::GrayImage::from_fn(3, 2, |x, y| image::Luma([(pixel(x, y, 4) >> 8) as u8])).save(&gray).unwrap();
    let la = d.join("la.png");
    image::GrayAlphaImage::from_fn(3, 2, |x, y| image::LumaA([(pixel(x, y, 5) >> 8) as u8, (pixel(x, y, 6) >> 8) as u8])).save(&la).unwrap();
    let jpg = d.join("rgb.jpg");
    image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([(x * 80) as u8, (y * 120) as u8, 60])).save(&jpg).unwrap();

    let cases: [(&Path, image::ColorType); 4] = [
        (&rgba16, image::ColorType::Rgba16),
        (&gray, image::ColorType::L8),
        (&la, image::ColorType::La8),
        (&jpg, image::ColorType::Rgb8),
    ];
    for (input, want) in cases {
        let out = d.join(format!("{}-x4.png", input.file_stem().unwrap().to_string_lossy()));
        let log = ok(&wgsr(&["upscale", s(input), s(&out), "--model", s(&sr)]));
        let back = image::open(&out).unwrap();
        assert_eq!((back.width(), back.height()), (12, 8), "{log}");
        assert_eq!(back.color(), want, "{} came back as {:?}: {log}", input.display(), back.color());
    }
    // Alpha survives a rescaling round trip in layout and depth too.
    let hr = d.join("hr-rgba.png");
    image::RgbaImage::from_fn(8, 4, |x, y| image::Rgba([(x * 30) as u8, (y * 60) as u8, 90, (255 - x * 20) as u8])).save(&hr).unwrap();
    let lr = d.join("lr-rgba.png");
    ok(&wgsr(&["downscale", s(&hr), s(&lr), "--model", s(&rs)]));
    let back = image::open(&lr).unwrap();
    assert_eq!((back.width(), back.height(), back.color()), (2, 1, image::ColorType::Rgba8));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_folder_run_reports_a_corrupt_file_and_carries_on() {
    let d = dir("folder");
    let inp = d.join("in");
    std::fs::create_dir_all(&inp).unwrap();
    for (i, name) in ["a.png", "c.png"].iter().enumerate() {
        image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([(x * 50 + i as u32) as u8, (y * 70) as u8, 9])).save(inp.join(name)).unwrap();
    }
    image::RgbImage::from_fn(2, 2, |x, _| image::Rgb([(x * 50) as u8, 1, 2])).save(inp.join("d.jpg")).unwrap();
    std::fs::write(inp.join("b.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
    std::fs::write(inp.join("notes.txt"), b"not an image").unwrap();
    let out = d.join("out");
    let o = wgsr(&["upscale", s(&inp), s(&out), "--model", s(&fixture("hcflow_sr_x4_tiny"))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("b.png") && err.contains("1 of 4 images failed"), "{err}");
    for name in ["a.png", "c.png", "d.png"] {
        let img = image::open(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}; {err}"));
        assert_eq!(img.height() % 4, 0);
    }
    assert!(!out.join("b.png").exists() && !out.join("notes.png").exists(), "{err}");
    // The output folder may not be the input folder.
    let o = wgsr(&["upscale", s(&inp), s(&inp), "--model", s(&fixture("hcflow_sr_x4_tiny"))]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is the input folder"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_default_models_are_built_in_and_listed() {
    // From a folder with no weights/ and no $WGSR_WEIGHTS: the built-in model runs.
    let d = dir("builtin");
    let lr = d.join("lr.png");
    image::RgbImage::from_fn(4, 3, |x, y| image::Rgb([(x * 60) as u8, (y * 80) as u8, 40])).save(&lr).unwrap();
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_wgsr")).args(args).current_dir(&d).env_remove("WGSR_WEIGHTS").output().unwrap();
    let log = ok(&run(&["upscale", "lr.png", "out.png"]));
    assert_eq!(image::open(d.join("out.png")).unwrap().width(), 16, "{log}");
    // downscale's default, the rescaling model, likewise.
    let log = ok(&run(&["downscale", "out.png", "down.png"]));
    assert_eq!(image::open(d.join("down.png")).unwrap().width(), 4, "{log}");
    let o = run(&["models"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("built into this binary") && text.contains("hcflow-sr-x4-small"), "{text}");
    assert!(text.contains("hcflow-rescale-x4-small"), "{text}");
    let _ = std::fs::remove_dir_all(&d);
}
