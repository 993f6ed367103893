//! Metrics and resizing against Python references on real images
//! (fixtures made by tools/make_metric_fixtures.py; conventions there and in
//! src/metrics.rs, src/resize.rs).
//!
//! Tolerances: PSNR / SSIM / MS-SSIM / consistency within 1e-6 absolute of
//! the Python values (float64 numpy / scikit-image); 8-bit resizes bit-exact;
//! float MATLAB imresize within 1e-12 (only summation order differs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wgsr::image_io::RgbImage;
use wgsr::metrics::*;
use wgsr::resize::*;

const METRIC_TOL: f64 = 1e-6;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics")
}

fn load(name: &str) -> RgbImage {
    RgbImage::load(fixtures().join(name)).unwrap()
}

// ------------------------------------------------------------ minimal JSON
#[allow(dead_code)]
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    fn parse(s: &str) -> Json {
        let b = s.as_bytes();
        let mut i = 0;
        let v = Self::value(b, &mut i);
        Self::ws(b, &mut i);
        assert_eq!(i, b.len(), "trailing data in JSON");
        v
    }
    fn ws(b: &[u8], i: &mut usize) {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    }
    fn value(b: &[u8], i: &mut usize) -> Json {
        Self::ws(b, i);
        match b[*i] {
            b'{' => {
                *i += 1;
                let mut m = BTreeMap::new();
                loop {
                    Self::ws(b, i);
                    if b[*i] == b'}' {
                        *i += 1;
                        break;
                    }
                    let Json::Str(k) = Self::value(b, i) else { panic!("JSON key") };
                    Self::ws(b, i);
                    assert_eq!(b[*i], b':');
                    *i += 1;
                    m.insert(k, Self::value(b, i));
                    Self::ws(b, i);
                    if b[*i] == b',' {
                        *i += 1;
                    }
                }
                Json::Obj(m)
            }
            b'[' => {
                *i += 1;
                let mut v = Vec::new();
                loop {
                    Self::ws(b, i);
                    if b[*i] == b']' {
                        *i += 1;
                        break;
                    }
                    v.push(Self::value(b, i));
                    Self::ws(b, i);
                    if b[*i] == b',' {
                        *i += 1;
                    }
                }
                Json::Arr(v)
            }
            b'"' => {
                *i += 1;
                let mut s = String::new();
                while b[*i] != b'"' {
                    if b[*i] == b'\\' {
                        *i += 1;
                        match b[*i] {
                            b'n' => s.push('\n'),
                            b't' => s.push('\t'),
                            b'u' => {
                                let h = std::str::from_utf8(&b[*i + 1..*i + 5]).unwrap();
                                s.push(char::from_u32(u32::from_str_radix(h, 16).unwrap()).unwrap_or('?'));
                                *i += 4;
                            }
                            c => s.push(c as char),
                        }
                        *i += 1;
                    } else {
                        let start = *i;
                        while b[*i] != b'"' && b[*i] != b'\\' {
                            *i += 1;
                        }
                        s.push_str(std::str::from_utf8(&b[start..*i]).unwrap());
                    }
                }
                *i += 1;
                Json::Str(s)
            }
            b't' => {
                *i += 4;
                Json::Bool(true)
            }
            b'f' => {
                *i += 5;
                Json::Bool(false)
            }
            b'n' => {
                *i += 4;
                Json::Null
            }
            _ => {
                let start = *i;
                while *i < b.len() && matches!(b[*i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    *i += 1;
                }
                Json::Num(std::str::from_utf8(&b[start..*i]).unwrap().parse().unwrap())
            }
        }
    }
    fn get(&self, k: &str) -> &Json {
        match self {
            Json::Obj(m) => m.get(k).unwrap_or_else(|| panic!("no key {k}")),
            _ => panic!("not an object"),
        }
    }
    fn has(&self, k: &str) -> bool {
        matches!(self, Json::Obj(m) if m.contains_key(k))
    }
    fn f(&self) -> f64 {
        match self {
            Json::Num(v) => *v,
            _ => panic!("not a number: {self:?}"),
        }
    }
    fn u(&self) -> usize {
        self.f() as usize
    }
    fn s(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("not a string"),
        }
    }
    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(v) => v,
            _ => panic!("not an array"),
        }
    }
    fn obj(&self) -> &BTreeMap<String, Json> {
        match self {
            Json::Obj(m) => m,
            _ => panic!("not an object"),
        }
    }
}

fn values() -> Json {
    Json::parse(&std::fs::read_to_string(fixtures().join("values.json")).unwrap())
}

/// Max difference in 8-bit levels between two images (both quantised).
fn max_level_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!((a.width, a.height), (b.width, b.height), "sizes differ");
    a.to_rgb8().iter().zip(b.to_rgb8()).map(|(x, y)| x.abs_diff(y)).max().unwrap()
}

// ------------------------------------------------------------ metrics
#[test]
fn metrics_match_python_references() {
    let v = values();
    for (name, m) in v.get("metrics").obj() {
        let hr = load(m.get("hr").s());
        let sr = load(m.get("sr").s());
        let lr = load(m.get("lr").s());
        let crop = m.get("crop").u();
        let mut checks: Vec<(&str, f64)> = vec![
            ("psnr_rgb", psnr_rgb(&hr, &sr, crop).unwrap()),
            ("psnr_y", psnr_y(&hr, &sr, crop).unwrap()),
            ("ssim_rgb", ssim_rgb(&hr, &sr, crop).unwrap()),
            ("ssim_y", ssim_y(&hr, &sr, crop).unwrap()),
            ("consistency", consistency(&lr, &sr).unwrap()),
        ];
        if m.has("ms_ssim_rgb") {
            checks.push(("ms_ssim_rgb", ms_ssim_rgb(&hr, &sr, crop).unwrap()));
            checks.push(("ms_ssim_y", ms_ssim_y(&hr, &sr, crop).unwrap()));
        } else {
            // Too small for five scales: a clear error, not a number.
            let e = ms_ssim_rgb(&hr, &sr, crop).unwrap_err().to_string();
            assert!(e.contains("MS-SSIM") && e.contains("161"), "{e}");
        }
        for (k, got) in checks {
            let want = m.get(k).f();
            let d = (got - want).abs();
            println!("{name:24} {k:12} rust {got:.12} python {want:.12} |diff| {d:.2e}");
            assert!(d <= METRIC_TOL, "{name} {k}: rust {got} python {want}");
        }
    }
}

#[test]
fn metric_sanity_on_real_images() {
    let hr = load("butterfly_hr.png");
    let sr = load("imresize_u8_butterfly_lr_up4.png");
    // Symmetric, perfect for identical inputs.
    assert_eq!(psnr_rgb(&hr, &sr, 4).unwrap(), psnr_rgb(&sr, &hr, 4).unwrap());
    assert!((ssim_y(&hr, &sr, 4).unwrap() - ssim_y(&sr, &hr, 4).unwrap()).abs() < 1e-12);
    assert_eq!(psnr_y(&hr, &hr, 4).unwrap(), f64::INFINITY);
    assert!((ms_ssim_rgb(&hr, &hr, 4).unwrap() - 1.0).abs() < 1e-12);
    // The HCFlow LR is consistent with its own HR by construction (up to 8-bit rounding).
    let lr = load("butterfly_lr.png");
    assert!(consistency(&lr, &hr).unwrap() < 1e-5);
    // Size mismatch and tiny images are errors that say why.
    let e = ssim_rgb(&hr, &lr, 0).unwrap_err().to_string();
    assert!(e.contains("sizes differ"), "{e}");
    let small = load("sr3_00031_lr16.png");
    let e = ssim_y(&small, &small, 3).unwrap_err().to_string();
    assert!(e.contains("10x10") && e.contains("11x11"), "{e}");
}

// ------------------------------------------------------------ MATLAB imresize
#[test]
fn imresize_u8_reproduces_hcflow_lr_images() {
    // The HCFlow authors' benchmark LR images are MATLAB imresize of uint8 HR.
    for (hr, lr) in [("butterfly_hr.png", "butterfly_lr.png"), ("face110_hr.png", "face110_lr.png")] {
        let (hr, lr) = (load(hr), load(lr));
        let got = imresize(&hr, lr.width, lr.height, MatlabPrecision::Uint8).unwrap();
        assert_eq!(max_level_diff(&got, &lr), 0);
        if hr.width == 256 {
            let by_scale = imresize_scale(&hr, 0.25, MatlabPrecision::Uint8).unwrap();
            assert_eq!(by_scale, got);
            // Rounding only once at the end (a double-precision MATLAB call) is off by one level in places.
            let once = imresize(&hr, lr.width, lr.height, MatlabPrecision::RoundOutput).unwrap();
            let d = max_level_diff(&once, &lr);
            println!("imresize RoundOutput vs HCFlow LR: max {d} level(s)");
            assert!(d <= 1);
        }
    }
}

#[test]
fn imresize_u8_matches_numpy_port() {
    let lr = load("butterfly_lr.png");
    let hr = load("butterfly_hr.png");
    let face = load("face110_lr.png");
    let cases: [(&str, RgbImage); 5] = [
        ("imresize_u8_butterfly_lr_up4.png", imresize(&lr, 256, 256, MatlabPrecision::Uint8).unwrap()),
        ("imresize_u8_face110_lr_up8.png", imresize(&face, 160, 160, MatlabPrecision::Uint8).unwrap()),
        ("imresize_u8_butterfly_61x97.png", imresize(&hr, 97, 61, MatlabPrecision::Uint8).unwrap()),
        ("imresize_u8_butterfly_lr_150x45.png", imresize(&lr, 45, 150, MatlabPrecision::Uint8).unwrap()),
        ("imresize_u8_butterfly_scale0.3.png", imresize_scale(&hr, 0.3, MatlabPrecision::Uint8).unwrap()),
    ];
    for (name, got) in cases {
        let want = load(name);
        let d = max_level_diff(&got, &want);
        println!("{name}: max diff {d} levels");
        assert_eq!(d, 0, "{name}");
    }
}

#[test]
fn imresize_float_matches_numpy_port() {
    let v = values();
    let hr = load("butterfly_hr.png");
    for (name, c) in v.get("imresize_float").obj() {
        let (oh, ow) = (c.get("out_h").u(), c.get("out_w").u());
        let out = match c.get("scale") {
            Json::Null => imresize(&hr, ow, oh, MatlabPrecision::Float).unwrap(),
            s => imresize_scale(&hr, s.f(), MatlabPrecision::Float).unwrap(),
        };
        assert_eq!((out.width, out.height), (ow, oh), "{name}");
        // Compare in f64 through the planes (the RgbImage stores f32).
        let n = ow * oh;
        let mut max_d: f64 = 0.0;
        for s in c.get("samples").arr() {
            let s = s.arr();
            let (y, x, ch, want) = (s[0].u(), s[1].u(), s[2].u(), s[3].f());
            let got = out.data[ch * n + y * ow + x] as f64;
            max_d = max_d.max((got - want).abs());
        }
        let mean = out.data.iter().map(|&x| x as f64).sum::<f64>() / out.data.len() as f64;
        let (mn, mx) = out.data.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x as f64), b.max(x as f64)));
        println!("imresize float {name}: max sample diff {max_d:.2e}, mean diff {:.2e}", (mean - c.get("mean").f()).abs());
        // f32 storage: half an f32 ulp near 1.0.
        assert!(max_d < 1e-7, "{name}: {max_d}");
        assert!((mean - c.get("mean").f()).abs() < 1e-7);
        assert!((mn - c.get("min").f()).abs() < 1e-7 && (mx - c.get("max").f()).abs() < 1e-7);
    }
    // The f64 plane API itself agrees to 1e-12.
    let n = hr.width * hr.height;
    let plane: Vec<f64> = hr.data[..n].iter().map(|&x| x as f64).collect();
    let c = v.get("imresize_float").get("butterfly_61x97");
    let out = imresize_plane(&plane, 256, 256, 97, 61, 97.0 / 256.0, 61.0 / 256.0, false).unwrap();
    for s in c.get("samples").arr() {
        let s = s.arr();
        if s[2].u() == 0 {
            let got = out[s[0].u() * 97 + s[1].u()];
            assert!((got - s[3].f()).abs() < 1e-12, "{got} vs {}", s[3].f());
        }
    }
}

// ------------------------------------------------------------ Pillow bicubic
#[test]
fn pil_bicubic_reproduces_sr3_upsample() {
    // SR3's sr_16_128 is Image.resize(lr_16, (128, 128), Image.BICUBIC).
    let lr = load("sr3_00031_lr16.png");
    let got = resize_pil_bicubic(&lr, 128, 128).unwrap();
    let d = max_level_diff(&got, &load("sr3_00031_sr128.png"));
    println!("PIL x8 16->128 vs SR3 sr_16_128: max diff {d} levels");
    assert_eq!(d, 0);
}

#[test]
fn pil_bicubic_matches_pillow() {
    let v = values();
    for (name, c) in v.get("pil").obj() {
        let src = load(c.get("src").s());
        let got = resize_pil_bicubic(&src, c.get("w").u(), c.get("h").u()).unwrap();
        let d = max_level_diff(&got, &load(name));
        println!("{name}: max diff {d} levels");
        assert_eq!(d, 0, "{name}");
    }
    // Pillow's float path is the same filter without fixed-point rounding.
    let hr = load("butterfly_hr.png");
    let f = resize_pil_bicubic_f32(&hr, 64, 64).unwrap();
    let d = max_level_diff(&f, &load("pil_butterfly_down4.png"));
    assert!(d <= 1, "{d}");
}

#[test]
fn pil_float_path_matches_pillow_mode_f() {
    let (shape, want) = wgsr::image_io::read_npy(fixtures().join("pil_f_face110_lr_37x53.npy")).unwrap();
    assert_eq!(shape, vec![3, 53, 37]);
    let got = resize_pil_bicubic_f32(&load("face110_lr.png"), 37, 53).unwrap();
    let d = got.data.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    println!("PIL mode F 20x20 -> 37x53: max abs diff {d:e}");
    assert!(d <= 1e-6, "{d}");
}

/// The 64 -> 512 SR3 set from the shared data folder (skipped when absent).
#[test]
fn pil_bicubic_reproduces_sr3_64_512_from_shared_data() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/sr3-examples/celebahq_64_512");
    if !dir.exists() {
        eprintln!("skipping: {} not found", dir.display());
        return;
    }
    for f in ["00030", "00031", "00040", "00041"] {
        let lr = RgbImage::load(dir.join(format!("lr_64/{f}.png"))).unwrap();
        let sr = RgbImage::load(dir.join(format!("sr_64_512/{f}.png"))).unwrap();
        let got = resize_pil_bicubic(&lr, 512, 512).unwrap();
        assert_eq!(max_level_diff(&got, &sr), 0, "{f}");
    }
}
