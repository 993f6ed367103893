//! Hostile command lines (issue 15's corpus, CLI part): each is refused
//! with one clear `error:` line before any work, never a panic or an abort,
//! and leaves nothing behind.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// wgsr with XDG_RUNTIME_DIR unset, as a user's plain shell may have it.
fn wgsr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgsr")).args(args).env_remove("XDG_RUNTIME_DIR").output().expect("running wgsr")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn refused(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "exit status for '{needle}': {err}");
    assert!(err.contains(needle), "stderr lacks '{needle}': {err}");
    assert!(!err.contains("panicked") && !err.contains("memory allocation"), "crashed: {err}");
    assert_eq!(err.matches("error:").count(), 1, "one error line: {err}");
    assert!(!err.contains("XDG_RUNTIME_DIR"), "driver noise: {err}");
}

#[test]
fn hostile_flags_and_paths_are_refused_cleanly() {
    let d = std::env::temp_dir().join(format!("wgsr-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let lr = d.join("lr.png");
    image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([(x * 70) as u8, (y * 90) as u8, 33])).save(&lr).unwrap();
    let before = std::fs::read(&lr).unwrap();
    let hc = fixture("hcflow_sr_x4_tiny");
    let px = fixture("pixelcnn_tiny");
    let out = d.join("out.png");

    refused(&wgsr(&["upscale", s(&lr), s(&lr), "--model", s(&hc)]), "the output is the input");
    assert_eq!(std::fs::read(&lr).unwrap(), before, "the input was touched");
    let file = d.join("afile");
    std::fs::write(&file, b"x").unwrap();
    refused(&wgsr(&["upscale", s(&lr), s(&file.join("o.png")), "--model", s(&hc)]), "is a file, not a directory");
    refused(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&hc), "--temperature", "1e30"]), "--temperature must be in");
    refused(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&hc), "--temperature", "NaN"]), "--temperature must be in");
    refused(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&px), "--samples", "18446744073709551615"]), "--samples must be in");
    refused(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&px), "--samples", "1000000000000"]), "--samples must be in");
    refused(&wgsr(&["upscale", s(&lr), s(&out), "--model", s(&px), "--samples", "0"]), "--samples must be in");
    assert!(!out.exists(), "a refused run left an output");

    // eval that fails on its first image leaves no empty --out folder.
    let hr_dir = d.join("hr");
    std::fs::create_dir_all(&hr_dir).unwrap();
    std::fs::write(hr_dir.join("broken.png"), b"\x89PNG\r\n\x1a\n nope").unwrap();
    let eval_out = d.join("eval-out");
    refused(&wgsr(&["eval", "--model", s(&hc), "--hr", s(&hr_dir), "--out", s(&eval_out)]), "cannot decode");
    assert!(!eval_out.exists(), "eval left an empty output folder");

    // A plain successful run prints no driver noise either.
    let o = wgsr(&["upscale", s(&lr), s(&out), "--model", s(&hc)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("XDG_RUNTIME_DIR"));
    let _ = std::fs::remove_dir_all(&d);
}
