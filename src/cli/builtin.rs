//! Models compiled into the `wgsr` binary, so an installed binary
//! (`cargo install --path .`) upscales from any directory without a
//! weights/ folder. A model found on disk under the same name wins, so a
//! retrained or converted model replaces the built-in one without a rebuild.

use std::path::{Path, PathBuf};

use wgsr::models::registry::{search_dirs, DEFAULT_MODEL, DEFAULT_RESCALE_MODEL};
use wgsr::weights::{ModelDir, WeightStore};
use wgsr::{Result, ResultExt};

struct Builtin {
    name: &'static str,
    config: &'static str,
    weights: &'static [u8],
}

// The two shipped models: upscale's default and downscale's (the rescaling
// model, built in since it beats a bicubic round trip; see its model card).
const BUILTIN: &[Builtin] = &[
    Builtin {
        name: DEFAULT_MODEL,
        config: include_str!("../../weights/hcflow-sr-x4-small/config.json"),
        weights: include_bytes!("../../weights/hcflow-sr-x4-small/model.safetensors"),
    },
    Builtin {
        name: DEFAULT_RESCALE_MODEL,
        config: include_str!("../../weights/hcflow-rescale-x4-small/config.json"),
        weights: include_bytes!("../../weights/hcflow-rescale-x4-small/model.safetensors"),
    },
];

fn load_builtin(b: &Builtin) -> Result<ModelDir> {
    let what = format!("built-in model {}", b.name);
    let config = serde_json::from_str(b.config).map_err(|e| wgsr::Error::Weights(format!("{what}: config.json: {e}")))?;
    let weights = WeightStore::from_safetensors_bytes(b.weights).context(&what)?;
    Ok(ModelDir { path: PathBuf::from(format!("<built-in>/{}", b.name)), config, weights })
}

/// The model directory for `--model` (None = `default`): a path, a name
/// on the search path, or else a built-in model of that name.
pub fn open(spec: Option<&str>, default: &str) -> Result<ModelDir> {
    let spec = Some(spec.unwrap_or(default));
    match wgsr::models::find(spec) {
        Ok(dir) => ModelDir::load(dir),
        Err(e) => {
            let name = spec.unwrap_or(default);
            match BUILTIN.iter().find(|b| b.name == name) {
                Some(b) => load_builtin(b),
                None => Err(e),
            }
        }
    }
}

/// `wgsr models`: every model on the search path and the built-in ones.
pub fn list() -> Result<()> {
    let mut found = Vec::new();
    for d in search_dirs() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.join("config.json").is_file()).collect();
        names.sort();
        for p in names {
            found.push((p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), describe(&p)));
        }
    }
    println!("models on the search path ($WGSR_WEIGHTS, ./weights):");
    for (name, what) in &found {
        println!("  {name:<28} {what}");
    }
    println!("built into this binary:");
    for b in BUILTIN {
        let note = if found.iter().any(|(n, _)| n == b.name) { " (a copy on disk takes precedence)" } else { "" };
        println!("  {:<28} {} MB{note}", b.name, b.weights.len() / 1_000_000);
    }
    Ok(())
}

/// "family task xScale (path)" from a model directory's config.json.
fn describe(dir: &Path) -> String {
    let cfg: Option<serde_json::Value> = std::fs::read_to_string(dir.join("config.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let field = |k: &str| cfg.as_ref().and_then(|c| c.get(k)).map(|v| v.to_string().trim_matches('"').to_string());
    let family = field("family").or_else(|| field("arch")).unwrap_or_else(|| "?".into());
    let task = field("task").map(|t| format!(" {t}")).unwrap_or_default();
    let scale = field("scale").map(|s| format!(" x{s}")).unwrap_or_default();
    format!("{family}{task}{scale} ({})", dir.display())
}
