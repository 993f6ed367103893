//! Image formats and strict decoding: every PNG layout at 8 and 16 bit
//! (palette included) and gray/RGB JPEG through an identity "model", a 2x
//! upscaler and a 1/2 downscaler, with the alpha plane checked against the
//! existing bicubic; truncated and corrupt files refused with clear messages.
//! Fixtures are made here from random pixels with fixed seeds.

use std::io::Cursor;

use image::{DynamicImage, ExtendedColorType, ImageBuffer};
use wgsr::image_io::{probe, DecodeLimits, Depth, Image, Layout, OutputFormat, RgbImage, Scale, SourceFormat};
use wgsr::resize::{imresize, MatlabPrecision};
use wgsr::{Error, Result};

// ------------------------------------------------------------ fixtures

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 56) as u8).collect()
    }
    fn words(&mut self, n: usize) -> Vec<u16> {
        (0..n).map(|_| (self.next() >> 48) as u16).collect()
    }
}

/// A random image in the `image` crate's representation.
fn random(layout: Layout, depth: Depth, w: u32, h: u32, seed: u64) -> DynamicImage {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let n = (w * h) as usize * layout.channels();
    match depth {
        Depth::Eight => {
            let d = r.bytes(n);
            match layout {
                Layout::Gray => DynamicImage::ImageLuma8(ImageBuffer::from_raw(w, h, d).unwrap()),
                Layout::GrayAlpha => DynamicImage::ImageLumaA8(ImageBuffer::from_raw(w, h, d).unwrap()),
                Layout::Rgb => DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, d).unwrap()),
                Layout::Rgba => DynamicImage::ImageRgba8(ImageBuffer::from_raw(w, h, d).unwrap()),
            }
        }
        Depth::Sixteen => {
            let d = r.words(n);
            match layout {
                Layout::Gray => DynamicImage::ImageLuma16(ImageBuffer::from_raw(w, h, d).unwrap()),
                Layout::GrayAlpha => DynamicImage::ImageLumaA16(ImageBuffer::from_raw(w, h, d).unwrap()),
                Layout::Rgb => DynamicImage::ImageRgb16(ImageBuffer::from_raw(w, h, d).unwrap()),
                Layout::Rgba => DynamicImage::ImageRgba16(ImageBuffer::from_raw(w, h, d).unwrap()),
            }
        }
    }
}

fn png(img: &DynamicImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    let color = match img {
        DynamicImage::ImageLuma8(_) => ExtendedColorType::L8,
        DynamicImage::ImageRgb8(_) => ExtendedColorType::Rgb8,
        _ => panic!("JPEG fixtures are 8-bit gray or RGB"),
    };
    image::ImageEncoder::write_image(enc, img.as_bytes(), img.width(), img.height(), color).unwrap();
    out
}

fn crc32(b: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn chunk(ty: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(ty);
    c.extend_from_slice(data);
    c.extend_from_slice(&crc32(&c[4..]).to_be_bytes());
    c
}

/// zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(65535).collect() };
    for (i, b) in blocks.iter().enumerate() {
        z.push((i + 1 == blocks.len()) as u8);
        z.extend_from_slice(&(b.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(b.len() as u16)).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    z
}

/// A PNG from IHDR fields, scanlines (filter bytes included) and extra chunks
/// placed before IDAT.
fn raw_png(w: u32, h: u32, bit_depth: u8, color_type: u8, scanlines: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
    let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
    f.extend(chunk(b"IHDR", &ihdr));
    for c in extra {
        f.extend_from_slice(c);
    }
    f.extend(chunk(b"IDAT", &zlib_stored(scanlines)));
    f.extend(chunk(b"IEND", &[]));
    f
}

/// An 8-bit palette PNG with 16 random colours (and random tRNS alphas if
/// `trns`), and the RGBA pixels it stands for.
fn palette_png(w: u32, h: u32, trns: bool, seed: u64) -> (Vec<u8>, DynamicImage) {
    let mut r = Rng(seed | 1);
    let pal = r.bytes(16 * 3);
    let alphas = r.bytes(16);
    let idx: Vec<u8> = r.bytes((w * h) as usize).into_iter().map(|v| v % 16).collect();
    let mut lines = Vec::new();
    for row in idx.chunks(w as usize) {
        lines.push(0);
        lines.extend_from_slice(row);
    }
    let mut extra = vec![chunk(b"PLTE", &pal)];
    if trns {
        extra.push(chunk(b"tRNS", &alphas));
    }
    let file = raw_png(w, h, 8, 3, &lines, &extra);
    let px = |i: usize| [pal[3 * i], pal[3 * i + 1], pal[3 * i + 2], alphas[i]];
    let img = if trns {
        let d: Vec<u8> = idx.iter().flat_map(|&i| px(i as usize)).collect();
        DynamicImage::ImageRgba8(ImageBuffer::from_raw(w, h, d).unwrap())
    } else {
        let d: Vec<u8> = idx.iter().flat_map(|&i| px(i as usize)[..3].to_vec()).collect();
        DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, d).unwrap())
    };
    (file, img)
}

fn layout_of(img: &DynamicImage) -> (Layout, Depth) {
    match img {
        DynamicImage::ImageLuma8(_) => (Layout::Gray, Depth::Eight),
        DynamicImage::ImageLumaA8(_) => (Layout::GrayAlpha, Depth::Eight),
        DynamicImage::ImageRgb8(_) => (Layout::Rgb, Depth::Eight),
        DynamicImage::ImageRgba8(_) => (Layout::Rgba, Depth::Eight),
        DynamicImage::ImageLuma16(_) => (Layout::Gray, Depth::Sixteen),
        DynamicImage::ImageLumaA16(_) => (Layout::GrayAlpha, Depth::Sixteen),
        DynamicImage::ImageRgb16(_) => (Layout::Rgb, Depth::Sixteen),
        DynamicImage::ImageRgba16(_) => (Layout::Rgba, Depth::Sixteen),
        other => panic!("unexpected decoded type {:?}", other.color()),
    }
}

/// Interleaved samples as integers.
fn samples(img: &DynamicImage) -> Vec<u32> {
    match img {
        DynamicImage::ImageLuma8(b) => b.as_raw().iter().map(|&v| v as u32).collect(),
        DynamicImage::ImageLumaA8(b) => b.as_raw().iter().map(|&v| v as u32).collect(),
        DynamicImage::ImageRgb8(b) => b.as_raw().iter().map(|&v| v as u32).collect(),
        DynamicImage::ImageRgba8(b) => b.as_raw().iter().map(|&v| v as u32).collect(),
        DynamicImage::ImageLuma16(b) => b.as_raw().iter().map(|&v| v as u32).collect(),
        DynamicImage::ImageLumaA16(b) => b.as_raw().iter().map(|&v| v as u32).collect(),
        DynamicImage::ImageRgb16(b) => b.as_raw().iter().map(|&v| v as u32).collect(),
        DynamicImage::ImageRgba16(b) => b.as_raw().iter().map(|&v| v as u32).collect(),
        other => panic!("unexpected decoded type {:?}", other.color()),
    }
}

/// The interleaved samples an [`Image`] should encode to: gray as BT.601
/// luma, every value quantised with the image's depth.
fn expected_samples(img: &Image) -> Vec<u32> {
    let n = img.width() * img.height();
    let d = &img.rgb.data;
    let mut out = Vec::new();
    for i in 0..n {
        if img.layout.is_gray() {
            let y = 0.299 * d[i] as f64 + 0.587 * d[n + i] as f64 + 0.114 * d[2 * n + i] as f64;
            out.push(img.depth.quantize(y as f32) as u32);
        } else {
            out.extend((0..3).map(|c| img.depth.quantize(d[c * n + i]) as u32));
        }
        if let Some(a) = &img.alpha {
            out.push(img.depth.quantize(a.data[i]) as u32);
        }
    }
    out
}

// ------------------------------------------------------------ stand-in models

fn identity(x: &RgbImage) -> Result<RgbImage> {
    Ok(x.clone())
}

fn nearest2x(x: &RgbImage) -> Result<RgbImage> {
    let (w, h) = (x.width, x.height);
    let mut d = Vec::with_capacity(12 * w * h);
    for c in 0..3 {
        for y in 0..2 * h {
            for xx in 0..2 * w {
                d.push(x.data[c * w * h + (y / 2) * w + xx / 2]);
            }
        }
    }
    RgbImage::new(2 * w, 2 * h, d)
}

fn box_half(x: &RgbImage) -> Result<RgbImage> {
    let (w, h) = (x.width / 2, x.height / 2);
    let n = x.width * x.height;
    let mut d = Vec::with_capacity(3 * w * h);
    for c in 0..3 {
        for y in 0..h {
            for xx in 0..w {
                let at = |dy: usize, dx: usize| x.data[c * n + (2 * y + dy) * x.width + 2 * xx + dx];
                d.push((at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0);
            }
        }
    }
    RgbImage::new(w, h, d)
}

/// The alpha the existing resize code gives: MATLAB bicubic on a 3-channel
/// image made of the plane, channel 0, clamped.
fn reference_alpha(a: &wgsr::image_io::Plane, w: usize, h: usize) -> Vec<f32> {
    let three = RgbImage::new(a.width, a.height, [a.data.clone(), a.data.clone(), a.data.clone()].concat()).unwrap();
    imresize(&three, w, h, MatlabPrecision::Float).unwrap().data[..w * h].iter().map(|v| v.clamp(0.0, 1.0)).collect()
}

// ------------------------------------------------------------ round trips

/// Decode `file`, check layout and depth, then run it through the three
/// stand-in models and check the PNG each writes.
fn round_trip(what: &str, file: &[u8], reference: &DynamicImage) {
    let (layout, depth) = layout_of(reference);
    let img = Image::decode(file).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!((img.layout, img.depth), (layout, depth), "{what}: layout/depth");
    assert_eq!((img.width() as u32, img.height() as u32), (reference.width(), reference.height()));

    // Decoded values are exactly sample / max.
    let max = depth.max_level() as f32;
    let raw = samples(reference);
    let ch = layout.channels();
    let n = img.width() * img.height();
    for i in 0..n {
        let color = if layout.is_gray() { [raw[i * ch]; 3] } else { [raw[i * ch], raw[i * ch + 1], raw[i * ch + 2]] };
        for c in 0..3 {
            assert_eq!(img.rgb.data[c * n + i], color[c] as f32 / max, "{what}: pixel {i} channel {c}");
        }
        if layout.has_alpha() {
            assert_eq!(img.alpha.as_ref().unwrap().data[i], raw[i * ch + ch - 1] as f32 / max, "{what}: alpha {i}");
        }
    }

    // Identity: the PNG written has the same layout, depth and samples.
    let out = img.clone().map_rgb(identity).unwrap();
    let back = image::load_from_memory(&out.encode_png().unwrap()).unwrap();
    assert_eq!(layout_of(&back), (layout, depth), "{what}: identity layout");
    assert_eq!(samples(&back), raw, "{what}: identity samples");

    // 2x up and 1/2 down: colour from the model, alpha = reference bicubic.
    for (name, model, (w, h)) in [
        ("2x nearest", nearest2x as fn(&RgbImage) -> Result<RgbImage>, (2 * img.width(), 2 * img.height())),
        ("1/2 box", box_half, (img.width() / 2, img.height() / 2)),
    ] {
        let out = img.clone().map_rgb(model).unwrap();
        assert_eq!((out.width(), out.height()), (w, h), "{what} {name}: size");
        assert_eq!((out.layout, out.depth), (layout, depth), "{what} {name}: layout/depth");
        assert_eq!(out.rgb, model(&img.rgb).unwrap(), "{what} {name}: colour");
        match (&img.alpha, &out.alpha) {
            (Some(a), Some(b)) => {
                assert_eq!((b.width, b.height), (w, h));
                assert_eq!(b.data, reference_alpha(a, w, h), "{what} {name}: alpha is not the bicubic of the input alpha");
                assert!(b.data.iter().all(|v| (0.0..=1.0).contains(v)));
            }
            (None, None) => {}
            _ => panic!("{what} {name}: alpha appeared or vanished"),
        }
        let back = image::load_from_memory(&out.encode_png().unwrap()).unwrap();
        assert_eq!(layout_of(&back), (layout, depth), "{what} {name}: written layout");
        assert_eq!((back.width() as usize, back.height() as usize), (w, h));
        assert_eq!(samples(&back), expected_samples(&out), "{what} {name}: written samples");
    }
}

#[test]
fn png_round_trips_keep_layout_and_depth() {
    let cases = [
        (Layout::Rgba, Depth::Eight),
        (Layout::Rgba, Depth::Sixteen),
        (Layout::Gray, Depth::Eight),
        (Layout::Gray, Depth::Sixteen),
        (Layout::GrayAlpha, Depth::Eight),
        (Layout::GrayAlpha, Depth::Sixteen),
        (Layout::Rgb, Depth::Eight),
        (Layout::Rgb, Depth::Sixteen),
    ];
    for (seed, (layout, depth)) in cases.into_iter().enumerate() {
        let img = random(layout, depth, 10, 6, seed as u64 + 1);
        round_trip(&format!("{layout} {depth} PNG"), &png(&img), &img);
    }
}

#[test]
fn palette_pngs_decode_as_rgb_or_rgba_and_round_trip() {
    for trns in [false, true] {
        let (file, img) = palette_png(8, 6, trns, 11 + trns as u64);
        let info = probe(&file).unwrap();
        assert!(info.palette);
        assert_eq!(info.layout, if trns { Layout::Rgba } else { Layout::Rgb });
        // the reference decoder agrees with the pixels the palette stands for
        assert_eq!(samples(&image::load_from_memory(&file).unwrap()), samples(&img));
        round_trip(&format!("palette PNG (tRNS {trns})"), &file, &img);
    }
}

#[test]
fn low_bit_depth_gray_png_decodes_as_8_bit_gray() {
    // 4-bit gray, 4x2: levels 0..15 scale to 0..255 (x17).
    let lines = [0u8, 0x01, 0x23, 0, 0xef, 0xa5];
    let file = raw_png(4, 2, 4, 0, &lines, &[]);
    let img = Image::decode(&file).unwrap();
    assert_eq!((img.layout, img.depth), (Layout::Gray, Depth::Eight));
    let levels = [0u32, 1, 2, 3, 14, 15, 10, 5];
    for (i, l) in levels.iter().enumerate() {
        assert_eq!(img.rgb.data[i], (l * 17) as f32 / 255.0);
    }
}

#[test]
fn jpeg_gray_and_rgb_round_trip() {
    for (seed, layout) in [(21u64, Layout::Gray), (22, Layout::Rgb)] {
        let src = random(layout, Depth::Eight, 16, 12, seed);
        let file = jpeg(&src);
        let info = probe(&file).unwrap();
        assert_eq!((info.format, info.layout, info.depth), (SourceFormat::Jpeg, layout, Depth::Eight));
        // what the JPEG decodes to is the reference (JPEG is lossy)
        let reference = image::load_from_memory(&file).unwrap();
        round_trip(&format!("{layout} JPEG"), &file, &reference);
    }
}

#[test]
fn sixteen_bit_values_survive_to_one_level() {
    // Every 16-bit level near 0, near 1 and a random spread.
    let mut r = Rng(5);
    let mut levels: Vec<u16> = (0..256).chain(65280..=65535).collect();
    levels.extend(r.words(512));
    let w = 64;
    let h = levels.len() as u32 / w;
    let img = DynamicImage::ImageLuma16(ImageBuffer::from_raw(w, h, levels[..(w * h) as usize].to_vec()).unwrap());
    let decoded = Image::decode(&png(&img)).unwrap();
    let out = decoded.map_rgb(identity).unwrap().encode_png().unwrap();
    assert_eq!(samples(&image::load_from_memory(&out).unwrap()), samples(&img));
    // quantisation: round half to even, clamped
    assert_eq!(Depth::Sixteen.quantize(-0.25), 0);
    assert_eq!(Depth::Sixteen.quantize(7.0), 65535);
    assert_eq!(Depth::Sixteen.quantize(0.5), 32768); // 32767.5 -> even
    assert_eq!(Depth::Eight.quantize(0.5), 128); // 127.5 -> even
    assert_eq!(Depth::Sixteen.quantize(1234.0 / 65535.0), 1234);
}

#[test]
fn gray_output_is_the_bt601_luma_of_the_model_output() {
    let src = random(Layout::GrayAlpha, Depth::Sixteen, 7, 5, 31);
    let img = Image::decode(&png(&src)).unwrap();
    // A "model" that colours the gray input.
    let colour = |x: &RgbImage| -> Result<RgbImage> {
        let n = x.width * x.height;
        let g = &x.data[..n];
        let d = [g.to_vec(), g.iter().map(|v| v * 0.5).collect(), g.iter().map(|v| 1.0 - v).collect()].concat();
        RgbImage::new(x.width, x.height, d)
    };
    let out = img.map_rgb(colour).unwrap();
    let back = image::load_from_memory(&out.encode_png().unwrap()).unwrap();
    assert_eq!(layout_of(&back), (Layout::GrayAlpha, Depth::Sixteen));
    let n = out.width() * out.height();
    let got = samples(&back);
    for i in 0..n {
        let (r, g, b) = (out.rgb.data[i] as f64, out.rgb.data[n + i] as f64, out.rgb.data[2 * n + i] as f64);
        let y = (0.299 * r + 0.587 * g + 0.114 * b) as f32;
        assert_eq!(got[2 * i], Depth::Sixteen.quantize(y) as u32, "pixel {i}");
        assert_eq!(out.luma()[i], y);
    }
}

#[test]
fn save_follows_extension_layout_and_depth() {
    let dir = std::env::temp_dir().join(format!("wgsr-image-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = random(Layout::Rgba, Depth::Sixteen, 5, 4, 41);
    let img = Image::decode(&png(&src)).unwrap();

    // .npy: float32 (H, W, 4), unquantised
    let p = dir.join("x.npy");
    img.save(&p).unwrap();
    let (shape, data) = wgsr::image_io::read_npy(&p).unwrap();
    assert_eq!(shape, vec![4, 5, 4]);
    let n = 20;
    assert_eq!(data[(5 + 2) * 4 + 1], img.rgb.data[n + 5 + 2]);
    assert_eq!(data[(5 + 2) * 4 + 3], img.alpha.as_ref().unwrap().data[5 + 2]);

    // a given layout and depth: RGBA16 -> gray 8-bit, and RGB -> RGBA (alpha 1)
    let p = dir.join("g.png");
    img.save_as(&p, Layout::Gray, Depth::Eight).unwrap();
    assert_eq!(layout_of(&image::open(&p).unwrap()), (Layout::Gray, Depth::Eight));
    let rgb = Image::from_rgb(img.clone().into_rgb());
    let bytes = rgb.encode(OutputFormat::Png, Layout::Rgba, Depth::Eight).unwrap();
    let back = image::load_from_memory(&bytes).unwrap();
    assert_eq!(layout_of(&back), (Layout::Rgba, Depth::Eight));
    assert!(samples(&back).chunks(4).all(|px| px[3] == 255));
    // RgbImage::save stays 8-bit RGB
    let p = dir.join("r.png");
    img.rgb.save(&p).unwrap();
    assert_eq!(layout_of(&image::open(&p).unwrap()), (Layout::Rgb, Depth::Eight));

    let bad = dir.join("x.tiff");
    assert!(matches!(img.save(&bad), Err(Error::InvalidArgument(_))));
    assert!(!bad.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rgb_image_load_drops_alpha_and_expands_gray() {
    let dir = std::env::temp_dir().join(format!("wgsr-image-io-rgb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rgba = random(Layout::Rgba, Depth::Eight, 6, 3, 51);
    let p = dir.join("a.png");
    std::fs::write(&p, png(&rgba)).unwrap();
    let rgb = RgbImage::load(&p).unwrap();
    let want = rgba.to_rgb32f();
    let n = 18;
    for (i, px) in want.pixels().enumerate() {
        for c in 0..3 {
            assert_eq!(rgb.data[c * n + i], px.0[c]);
        }
    }
    let gray = random(Layout::Gray, Depth::Sixteen, 6, 3, 52);
    let g = RgbImage::decode(&png(&gray)).unwrap();
    assert_eq!(&g.data[..n], &g.data[n..2 * n]);
    assert_eq!(&g.data[..n], &g.data[2 * n..]);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ------------------------------------------------------------ strict decoding

fn image_err(r: Result<Image>) -> String {
    match r {
        Err(Error::Image(m)) => {
            assert!(!m.contains('{') && !m.contains('}'), "debug text in the message: {m}");
            assert!(!m.contains("ChunkType"), "debug text in the message: {m}");
            m
        }
        Err(e) => panic!("expected an image error, got {e}"),
        Ok(_) => panic!("expected an error, got an image"),
    }
}

fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("rgba8 png", png(&random(Layout::Rgba, Depth::Eight, 24, 16, 61))),
        ("rgb16 png", png(&random(Layout::Rgb, Depth::Sixteen, 24, 16, 62))),
        ("palette png", palette_png(24, 16, true, 63).0),
        ("gray jpeg", jpeg(&random(Layout::Gray, Depth::Eight, 32, 24, 64))),
        ("rgb jpeg", jpeg(&random(Layout::Rgb, Depth::Eight, 32, 24, 65))),
    ]
}

#[test]
fn files_cut_in_half_are_truncation_errors_naming_the_path() {
    let dir = std::env::temp_dir().join(format!("wgsr-image-io-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, file) in fixtures() {
        assert!(Image::decode(&file).is_ok(), "{name}: the whole file must decode");
        let half = &file[..file.len() / 2];
        let kind = if name.ends_with("png") { "truncated PNG" } else { "truncated JPEG" };
        let m = image_err(Image::decode(half));
        assert!(m.contains(kind), "{name}: {m}");
        let p = dir.join(format!("{}.bin", name.replace(' ', "_")));
        std::fs::write(&p, half).unwrap();
        let m = image_err(Image::load(&p));
        assert!(m.starts_with(&format!("cannot decode {}: {kind}", p.display())), "{name}: {m}");
        match wgsr::image_io::probe_file(&p) {
            Err(Error::Image(m)) => assert!(m.starts_with(&format!("cannot decode {}: {kind}", p.display())), "{m}"),
            other => panic!("{name}: probe_file of a truncated file gave {other:?}"),
        }
        std::fs::write(&p, &file).unwrap();
        let info = wgsr::image_io::probe_file(&p).unwrap();
        let img = Image::load(&p).unwrap();
        assert_eq!((info.width as usize, info.height as usize, info.layout, info.depth), (img.width(), img.height(), img.layout, img.depth));
        std::fs::write(&p, half).unwrap();
        // the RGB loader the models use is just as strict
        match RgbImage::load(&p) {
            Err(Error::Image(m)) => assert!(m.contains(kind), "{m}"),
            other => panic!("{name}: RgbImage::load of a truncated file gave {other:?}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_proper_prefix_is_an_error() {
    for (name, file) in fixtures() {
        for cut in 0..file.len() {
            let m = image_err(Image::decode(&file[..cut]));
            assert!(m.contains("truncated") || cut < 3 || m.contains("empty"), "{name} cut at {cut}: {m}");
        }
    }
}

#[test]
fn a_corrupt_png_chunk_is_an_error_without_debug_text() {
    let file = png(&random(Layout::Rgb, Depth::Eight, 12, 8, 71));
    let idat = file.windows(4).position(|w| w == b"IDAT").unwrap();
    let mut bad = file.clone();
    bad[idat + 10] ^= 0x55;
    let m = image_err(Image::decode(&bad));
    assert!(m.starts_with("not a valid PNG") && m.contains("IDAT") && m.contains("checksum"), "{m}");

    // A damaged deflate stream inside chunks whose CRCs are right: the
    // decoder's own error, cleaned of debug text.
    let mut lines = Vec::new();
    for _ in 0..4 {
        lines.push(0);
        lines.extend_from_slice(&[9u8; 12]);
    }
    let mut z = zlib_stored(&lines);
    z[3] ^= 0xff; // LEN no longer matches NLEN
    let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
    f.extend(chunk(b"IHDR", &[0, 0, 0, 4, 0, 0, 0, 4, 8, 2, 0, 0, 0]));
    f.extend(chunk(b"IDAT", &z));
    f.extend(chunk(b"IEND", &[]));
    let m = image_err(Image::decode(&f));
    assert!(m.starts_with("not a valid PNG"), "{m}");

    // Too little image data, CRCs right.
    let z = zlib_stored(&lines[..20]);
    let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
    f.extend(chunk(b"IHDR", &[0, 0, 0, 4, 0, 0, 0, 4, 8, 2, 0, 0, 0]));
    f.extend(chunk(b"IDAT", &z));
    f.extend(chunk(b"IEND", &[]));
    let m = image_err(Image::decode(&f));
    assert!(m.starts_with("not a valid PNG"), "{m}");

    // Structure errors.
    let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
    f.extend(chunk(b"IDAT", &zlib_stored(&lines)));
    f.extend(chunk(b"IEND", &[]));
    assert!(image_err(Image::decode(&f)).contains("not IHDR"));
    let m = image_err(Image::decode(&raw_png(4, 4, 16, 3, &lines, &[])));
    assert!(m.contains("bit depth 16"), "{m}");
    let m = image_err(Image::decode(&raw_png(4, 4, 8, 2, &lines, &[chunk(b"ABCD", b"xyz")])));
    assert!(m.contains("unknown critical chunk ABCD"), "{m}");
}

#[test]
fn every_single_byte_flip_of_a_png_is_an_error_and_none_panics() {
    let file = png(&random(Layout::Rgba, Depth::Eight, 6, 5, 81));
    for i in 0..file.len() {
        for mask in [0x01u8, 0x80] {
            let mut bad = file.clone();
            bad[i] ^= mask;
            image_err(Image::decode(&bad));
        }
    }
}

#[test]
fn jpeg_flips_never_panic_or_print_debug_text() {
    let file = jpeg(&random(Layout::Rgb, Depth::Eight, 16, 8, 91));
    for i in 0..file.len() {
        let mut bad = file.clone();
        bad[i] ^= 0x20;
        if let Err(e) = Image::decode(&bad) {
            let m = e.to_string();
            assert!(!m.contains('{') && !m.contains('}'), "byte {i}: {m}");
        }
    }
}

#[test]
fn other_formats_are_named_and_refused() {
    assert!(image_err(Image::decode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")).contains("GIF images are not supported"));
    assert!(image_err(Image::decode(b"BM\x1e\x00\x00\x00\x00\x00\x00\x00\x1a\x00\x00\x00")).contains("BMP"));
    assert!(image_err(Image::decode(b"hello, world")).contains("not a PNG or JPEG"));
    assert!(image_err(Image::decode(b"")).contains("empty"));
    assert!(image_err(Image::decode(b"\x89PN")).contains("truncated PNG"));
}

#[test]
fn sizes_are_checked_against_limits_before_decoding() {
    // A header claiming 100000 x 100000 over a few bytes of data.
    let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
    f.extend(chunk(b"IHDR", &[0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 8, 6, 0, 0, 0]));
    f.extend(chunk(b"IDAT", &zlib_stored(&[0; 64])));
    f.extend(chunk(b"IEND", &[]));
    let info = probe(&f).unwrap();
    assert_eq!((info.width, info.height, info.layout), (100000, 100000, Layout::Rgba));
    let m = image_err(Image::decode(&f));
    assert!(m.contains("100000x100000") && m.contains("limit"), "{m}");

    let file = png(&random(Layout::Rgb, Depth::Eight, 8, 8, 95));
    let tight = DecodeLimits { max_pixels: 63, ..DecodeLimits::default() };
    assert!(image_err(Image::decode_with_limits(&file, &tight)).contains("64 pixels"));
    let exact = DecodeLimits { max_pixels: 64, ..DecodeLimits::default() };
    assert!(Image::decode_with_limits(&file, &exact).is_ok());
    let small_alloc = DecodeLimits { max_decoder_bytes: 100, ..DecodeLimits::default() };
    let m = image_err(Image::decode_with_limits(&file, &small_alloc));
    assert!(m.contains("memory"), "{m}");
}

#[test]
fn map_rgb_checks_what_the_model_returns() {
    let img = Image::decode(&png(&random(Layout::Rgba, Depth::Eight, 4, 4, 99))).unwrap();
    let broken = |_: &RgbImage| Ok(RgbImage { width: 3, height: 3, data: vec![0.0; 5] });
    assert!(matches!(img.clone().map_rgb(broken), Err(Error::Shape(_))));
    let failing = |_: &RgbImage| -> Result<RgbImage> { Err(Error::InvalidArgument("model says no".into())) };
    assert!(matches!(img.map_rgb(failing), Err(Error::InvalidArgument(_))));
}

#[test]
fn crop_and_scaled_mapping_keep_the_alpha_aligned() {
    let img = Image::decode(&png(&random(Layout::Rgba, Depth::Eight, 9, 7, 111))).unwrap();
    // Down(2) needs a multiple of 2: refused, then fine after a top-left crop.
    assert!(matches!(img.clone().map_rgb_scaled(Scale::Down(2), box_half), Err(Error::InvalidArgument(_))));
    let c = img.crop(0, 0, 8, 6).unwrap();
    assert_eq!(c.rgb, img.rgb.crop(0, 0, 8, 6).unwrap());
    let a = img.alpha.as_ref().unwrap();
    let ca = c.alpha.as_ref().unwrap();
    for y in 0..6 {
        assert_eq!(&ca.data[y * 8..y * 8 + 8], &a.data[y * 9..y * 9 + 8]);
    }
    let down = c.clone().map_rgb_scaled(Scale::Down(2), box_half).unwrap();
    assert_eq!(down.alpha.as_ref().unwrap().data, reference_alpha(ca, 4, 3));
    let up = c.clone().map_rgb_scaled(Scale::Up(2), nearest2x).unwrap();
    assert_eq!((up.width(), up.height(), up.layout, up.depth), (16, 12, Layout::Rgba, Depth::Eight));
    // A model that returns another size than the scale says is an error.
    assert!(matches!(c.map_rgb_scaled(Scale::Up(4), nearest2x), Err(Error::Shape(_))));
    assert!(Scale::Up(0).apply(3, 3).is_err());
}

// ------------------------------------------------------------ with a real model

/// The wiring the CLI is meant to use, on the tiny HCFlow fixtures (lavapipe):
/// an RGBA 16-bit input upscaled x4 and a gray one downscaled /4 keep their
/// layout and depth; the colour is exactly what the model gives on the RGB.
#[test]
fn hcflow_fixtures_round_trip_rgba16_and_gray() {
    use wgsr::models::hcflow::HcFlow;
    use wgsr::weights::ModelDir;
    let fixture = |n: &str| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(n);
    let ctx = wgsr::GpuContext::new().unwrap();

    let mut sr = HcFlow::load(&ctx, ModelDir::load(fixture("hcflow_sr_x4_tiny")).unwrap()).unwrap();
    let s = sr.scale();
    let input = Image::decode(&png(&random(Layout::Rgba, Depth::Sixteen, 7, 5, 121))).unwrap();
    let direct = sr.upscale(&ctx, &input.rgb, Some(0.0), 3).unwrap();
    let out = input.clone().map_rgb_scaled(Scale::Up(s), |lr| sr.upscale(&ctx, lr, Some(0.0), 3)).unwrap();
    assert_eq!((out.width(), out.height(), out.layout, out.depth), (7 * s, 5 * s, Layout::Rgba, Depth::Sixteen));
    assert_eq!(out.rgb, direct);
    assert_eq!(out.alpha.as_ref().unwrap().data, reference_alpha(input.alpha.as_ref().unwrap(), 7 * s, 5 * s));
    let back = image::load_from_memory(&out.encode_png().unwrap()).unwrap();
    assert_eq!(layout_of(&back), (Layout::Rgba, Depth::Sixteen));
    assert_eq!(samples(&back), expected_samples(&out));

    let mut rs = HcFlow::load(&ctx, ModelDir::load(fixture("hcflow_rescale_x4_tiny")).unwrap()).unwrap();
    let s = rs.scale();
    let gray = Image::decode(&png(&random(Layout::Gray, Depth::Eight, 4 * s as u32, 3 * s as u32, 122))).unwrap();
    let lr = gray.map_rgb_scaled(Scale::Down(s), |hr| Ok(rs.downscale(&ctx, hr)?.0)).unwrap();
    assert_eq!((lr.width(), lr.height(), lr.layout, lr.depth), (4, 3, Layout::Gray, Depth::Eight));
    let back = image::load_from_memory(&lr.encode_png().unwrap()).unwrap();
    assert_eq!(layout_of(&back), (Layout::Gray, Depth::Eight));
}
