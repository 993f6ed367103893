//! A mutation fuzzer (no extra crates, stable toolchain) over everything that
//! parses untrusted bytes before the GPU is touched: safetensors files,
//! `config.json` of every family (parsed, bounded and, for HCFlow, checked
//! against the weights), and PNG / JPEG decoding. Every input must give Ok or
//! a clean `Error` whose message has no Rust debug text; a panic is a crash
//! (an abort kills the test binary, which fails the run just the same).
//!
//! CI runs a short seeded run. The long run:
//! `WGSR_FUZZ_ITERS=10000000 cargo test --release --test fuzz_loaders -- --nocapture`
//! (`WGSR_FUZZ_SEED` picks another stream). A crashing input is written to
//! `tests/fixtures/fuzz/` and every file there is replayed first, so a found
//! crash stays a regression test.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use wgsr::image_io::{probe, Image};
use wgsr::models::hcflow::HcflowConfig;
use wgsr::models::pixelcnn::PixelCnnConfig;
use wgsr::models::sr3::Sr3Config;
use wgsr::weights::{ModelDir, WeightStore};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// xorshift64*: a fixed, reproducible stream.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const NUMBERS: &[&str] = &[
    "0", "-1", "1", "2", "3", "7", "64", "65536", "4294967295", "4294967296", "18446744073709551615",
    "1000000000000", "1e308", "-1e308", "1.5", "0.318", "NaN", "null", "true", "[]", "{}", "\"x\"", "[0,0]",
    "[1000000000000,1]",
];
const BYTES: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, b'{', b'}', b'"', b',', b'[', b']'];

/// One mutation: byte-level edits, or (for text) a number swapped for an
/// "interesting" value, which reaches deep into JSON headers and configs.
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let n = v.len();
        match rng.below(9) {
            0 if n > 0 => {
                let i = rng.below(n);
                v[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                v[i] = BYTES[rng.below(BYTES.len())];
            }
            2 => {
                let i = rng.below(n + 1);
                let k = 1 + rng.below(8);
                let ins: Vec<u8> = (0..k).map(|_| rng.next() as u8).collect();
                v.splice(i..i, ins);
            }
            3 if n > 0 => {
                let i = rng.below(n);
                let k = (1 + rng.below(16)).min(n - i);
                v.drain(i..i + k);
            }
            4 if n > 0 => v.truncate(rng.below(n)),
            5 if n > 0 && !other.is_empty() => {
                let i = rng.below(n);
                let j = rng.below(other.len());
                v.truncate(i);
                v.extend_from_slice(&other[j..]);
            }
            6 if n > 1 => {
                let i = rng.below(n);
                let k = (1 + rng.below(32)).min(n - i);
                let dup = v[i..i + k].to_vec();
                v.splice(i..i, dup);
            }
            _ => {
                // Replace the digits of one number (in a JSON header or config).
                let starts: Vec<usize> = (0..n).filter(|&i| v[i].is_ascii_digit() && (i == 0 || !v[i - 1].is_ascii_alphanumeric())).collect();
                if let Some(&s) = starts.get(rng.below(starts.len().max(1))) {
                    let mut e = s;
                    while e < n && (v[e].is_ascii_digit() || v[e] == b'.' || v[e] == b'e' || v[e] == b'-') {
                        e += 1;
                    }
                    v.splice(s..e, NUMBERS[rng.below(NUMBERS.len())].bytes());
                }
            }
        }
    }
    v
}

/// A small safetensors file (the real fixtures are hundreds of KiB; a tiny
/// one keeps millions of executions affordable while covering the format).
fn small_safetensors() -> Vec<u8> {
    use safetensors::tensor::TensorView;
    let a: Vec<u8> = [0.5f32, -1.0, 2.0, 3.0, 0.25, 1e-3].iter().flat_map(|v| v.to_le_bytes()).collect();
    let b: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let h: Vec<u8> = [0x3c00u16, 0xc000].iter().flat_map(|v| v.to_le_bytes()).collect();
    let views = vec![
        ("conv.weight".to_string(), TensorView::new(safetensors::Dtype::F32, vec![2, 1, 1, 3], &a).unwrap()),
        ("conv.bias".to_string(), TensorView::new(safetensors::Dtype::F32, vec![2], &b).unwrap()),
        ("half".to_string(), TensorView::new(safetensors::Dtype::F16, vec![2], &h).unwrap()),
    ];
    safetensors::serialize(views, None).unwrap()
}

fn png(w: u32, h: u32, color: image::ColorType) -> Vec<u8> {
    let n = (w * h) as usize * color.bytes_per_pixel() as usize;
    let data: Vec<u8> = (0..n).map(|i| (i * 37 % 251) as u8).collect();
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&data, w, h, color.into())
        .unwrap();
    out
}

fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(16, 8, |x, y| image::Rgb([(x * 15) as u8, (y * 30) as u8, 90]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(&img).unwrap();
    out
}

use image::ImageEncoder;

#[derive(Clone, Copy, Debug)]
enum Target {
    Safetensors,
    HcflowConfig,
    Sr3Config,
    PixelCnnConfig,
    Image,
}

struct Harness {
    seeds: Vec<(Target, Vec<u8>)>,
    hcflow_weights: WeightStore,
}

impl Harness {
    fn new() -> Self {
        let read = |p: &str| std::fs::read(root().join(p)).unwrap();
        let hc = ModelDir::load(root().join("hcflow_sr_x4_tiny")).unwrap();
        let seeds = vec![
            (Target::Safetensors, small_safetensors()),
            (Target::HcflowConfig, read("hcflow_sr_x4_tiny/config.json")),
            (Target::HcflowConfig, read("hcflow_rescale_x4_tiny/config.json")),
            (Target::Sr3Config, read("sr3_tiny/config.json")),
            (Target::PixelCnnConfig, read("pixelcnn_tiny/config.json")),
            (Target::Image, png(5, 3, image::ColorType::Rgb8)),
            (Target::Image, png(4, 4, image::ColorType::Rgba16)),
            (Target::Image, png(3, 2, image::ColorType::La8)),
            (Target::Image, jpeg()),
        ];
        Harness { seeds, hcflow_weights: hc.weights }
    }

    /// Run one input; Err(message) when the result breaks the contract.
    fn run(&self, target: Target, input: &[u8]) -> Result<(), String> {
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Option<String> {
            let err = match target {
                Target::Safetensors => WeightStore::from_safetensors_bytes(input).err(),
                Target::HcflowConfig => match serde_json::from_slice(input) {
                    Ok(v) => HcflowConfig::from_json(&v).and_then(|c| c.check_weights(&self.hcflow_weights)).err(),
                    Err(_) => None,
                },
                Target::Sr3Config => serde_json::from_slice(input).ok().and_then(|v| Sr3Config::from_json(&v).err()),
                Target::PixelCnnConfig => serde_json::from_slice(input).ok().and_then(|v| {
                    PixelCnnConfig::from_json(&v).map(|c| c.weight_shapes().len()).err()
                }),
                Target::Image => {
                    let _ = probe(input);
                    Image::decode(input).err()
                }
            };
            err.map(|e| e.to_string())
        }));
        match outcome {
            Err(p) => Err(format!(
                "panic: {}",
                p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
            )),
            Ok(Some(m)) if m.contains("{ ") || m.contains("Some(") || m.contains("Err(") => Err(format!("debug text in the message: {m}")),
            Ok(_) => Ok(()),
        }
    }
}

/// Fail the test with the default panic output back in place.
fn fail(msg: String) -> ! {
    let _ = std::panic::take_hook();
    panic!("{msg}");
}

fn save_crash(target: Target, input: &[u8]) -> PathBuf {
    let dir = root().join("fuzz");
    std::fs::create_dir_all(&dir).unwrap();
    let h = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let p = dir.join(format!("{target:?}-{h:016x}.bin").to_lowercase());
    std::fs::write(&p, input).unwrap();
    p
}

#[test]
fn loaders_never_panic_on_mutated_inputs() {
    // Panics are caught and reported below; keep their default backtrace
    // printing out of the way.
    std::panic::set_hook(Box::new(|_| {}));
    let h = Harness::new();
    // Regression inputs first: every kept crash must now be handled.
    if let Ok(rd) = std::fs::read_dir(root().join("fuzz")) {
        for f in rd.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(f.path()).unwrap();
            for (t, _) in &h.seeds {
                if name.starts_with(&format!("{t:?}").to_lowercase()) {
                    h.run(*t, &bytes).unwrap_or_else(|m| fail(format!("regression {name}: {m}")));
                }
            }
        }
    }
    // The seeds themselves are valid and load.
    for (t, s) in &h.seeds {
        h.run(*t, s).unwrap_or_else(|m| fail(format!("seed {t:?}: {m}")));
    }
    let iters: u64 = std::env::var("WGSR_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(30_000);
    let seed: u64 = std::env::var("WGSR_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(2026);
    let mut rng = Rng(seed | 1);
    let mut runs: BTreeMap<String, u64> = BTreeMap::new();
    let t0 = std::time::Instant::now();
    for i in 0..iters {
        let (t, s) = &h.seeds[rng.below(h.seeds.len())];
        let (_, other) = &h.seeds[rng.below(h.seeds.len())];
        let input = mutate(&mut rng, s, other);
        if let Err(m) = h.run(*t, &input) {
            let p = save_crash(*t, &input);
            fail(format!("execution {i} ({t:?}) broke the contract: {m}; input kept at {}", p.display()));
        }
        *runs.entry(format!("{t:?}")).or_default() += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let _ = std::panic::take_hook();
    println!("fuzz: {iters} executions in {secs:.1} s ({:.0}/s), seed {seed}, 0 crashes; per target: {runs:?}", iters as f64 / secs);
}
