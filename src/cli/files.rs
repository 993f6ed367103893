//! Folder runs: `wgsr upscale IN_DIR OUT_DIR` (and `downscale`) process every
//! image of a folder with one loaded model, write one output per input under
//! the same name (JPEG inputs become `.png`: wgsr writes PNG), report each
//! file that fails and carry on; the run fails if any file did.

use std::path::{Path, PathBuf};

use wgsr::{Error, Result};

use super::progress;

/// The .png / .jpg / .jpeg files of `dir`, sorted by name.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::Io { path: dir.display().to_string(), source: e })?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(Error::InvalidArgument(format!("{}: no .png/.jpg images in this folder", dir.display())));
    }
    Ok(v)
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// OUT_DIR/<input name>, with a PNG extension.
pub fn output_for(input: &Path, out_dir: &Path) -> PathBuf {
    let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    out_dir.join(format!("{stem}.png"))
}

/// Create the output folder (it may exist); refuse a file or the input folder itself.
pub fn prepare_out_dir(input: &Path, out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(Error::InvalidArgument(format!("{}: the input is a folder, so the output must be a folder too", out.display())));
    }
    if let (Ok(a), Ok(b)) = (input.canonicalize(), out.canonicalize()) {
        if a == b {
            return Err(Error::InvalidArgument(format!("{}: the output folder is the input folder; write to another one", out.display())));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Io { path: out.display().to_string(), source: e })
}

/// Run `one(input, output)` for every file, with a progress bar over files;
/// failures are reported as they happen and counted.
pub fn for_each(inputs: &[PathBuf], out_dir: &Path, mut one: impl FnMut(&Path, &Path) -> Result<()>) -> Result<()> {
    let pb = progress::bar(inputs.len(), "images");
    let mut failed = 0usize;
    for (i, input) in inputs.iter().enumerate() {
        let output = output_for(input, out_dir);
        if let Err(e) = one(input, &output) {
            failed += 1;
            pb.suspend(|| eprintln!("failed: {}: {e}", input.display()));
        }
        pb.set_position(i as u64 + 1);
    }
    pb.finish_and_clear();
    eprintln!("{} of {} images written to {}", inputs.len() - failed, inputs.len(), out_dir.display());
    if failed > 0 {
        return Err(Error::InvalidArgument(format!("{failed} of {} images failed (listed above)", inputs.len())));
    }
    Ok(())
}
