//! Finding a model directory by path or name and telling its family.

use std::path::{Path, PathBuf};

use wgsr::weights::ModelDir;
use wgsr::{Error, Result};

/// The model `wgsr upscale` uses when no --model is given.
pub const DEFAULT_MODEL: &str = "hcflow-sr-x4-small";

/// Model families the CLI can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Hcflow,
    Sr3,
    PixelCnn,
}

/// Directories searched for a model given by name, in order.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("WGSR_WEIGHTS") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("weights"));
    // The shipped weights of the source tree this binary was built from.
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("weights"));
    dirs
}

/// A directory path as given, else `NAME` under $WGSR_WEIGHTS, ./weights or
/// the source tree's weights/.
pub fn resolve(spec: Option<&str>) -> Result<PathBuf> {
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

pub fn family(dir: &ModelDir) -> Result<Family> {
    let c = &dir.config;
    let fam = c.get("family").and_then(|v| v.as_str()).or_else(|| c.get("arch").and_then(|v| v.as_str()));
    match fam {
        Some("hcflow") => Ok(Family::Hcflow),
        Some("sr3") => Ok(Family::Sr3),
        Some("pixelcnn") => Ok(Family::PixelCnn),
        Some(other) => Err(Error::Weights(format!("{}: unknown model family '{other}'", dir.path.display()))),
        None => Err(Error::Weights(format!("{}: config.json names no model family ('family' or 'arch')", dir.path.display()))),
    }
}
