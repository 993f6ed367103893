//! Strict decoding: recognise the format, check the file's structure
//! ([`super::png_check`], [`super::jpeg_check`]) and its size against
//! [`DecodeLimits`] from the header, then decode with the `image` crate and
//! keep the layout and bit depth. Messages are one sentence each, never Rust
//! debug text.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder};

use super::{jpeg_check, png_check, Defect, Depth, Image, Layout, Plane, RgbImage};
use crate::{Error, Result};

/// Bounds on what a decode may allocate, checked before anything is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most pixels (width x height) an image may have. Checked from the
    /// file's header, before decoding. The decoded image takes 12 bytes per
    /// pixel as f32 RGB, 16 with alpha.
    pub max_pixels: u64,
    /// Most bytes the decoder itself may allocate (the `image` crate's
    /// `Limits::max_alloc`).
    pub max_decoder_bytes: u64,
}

impl Default for DecodeLimits {
    /// 2^26 pixels (e.g. 8192 x 8192: 768 MiB as f32 RGB) and 512 MiB for the
    /// decoder (the `image` crate's default, which wgsr has always used).
    fn default() -> Self {
        DecodeLimits { max_pixels: 1 << 26, max_decoder_bytes: 512 << 20 }
    }
}

impl DecodeLimits {
    /// No limits beyond what the format allows.
    pub fn none() -> Self {
        DecodeLimits { max_pixels: u64::MAX, max_decoder_bytes: u64::MAX }
    }

    /// Check a size from a header.
    pub fn check(&self, width: u32, height: u32) -> Result<()> {
        let pixels = width as u64 * height as u64;
        if pixels > self.max_pixels {
            return Err(Error::Image(format!(
                "the image is {width}x{height} = {pixels} pixels, more than the limit of {} pixels; \
                 refusing to decode it",
                self.max_pixels
            )));
        }
        Ok(())
    }
}

/// The file formats that decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Png,
    Jpeg,
}

impl SourceFormat {
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Png => "PNG",
            SourceFormat::Jpeg => "JPEG",
        }
    }
}

/// What a file's header says, from [`probe`] (the whole structure is checked,
/// nothing is decoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
    /// The layout [`Image::decode`] gives (a palette PNG is RGB, or RGBA
    /// with a tRNS chunk; gray or RGB with tRNS gains alpha; CMYK JPEG is RGB).
    pub layout: Layout,
    pub depth: Depth,
    /// A palette (indexed-colour) PNG; it decodes and is written as 8-bit RGB(A).
    pub palette: bool,
}

/// Recognise the format and check the whole structure of an image file
/// without decoding it: for a size check before any allocation, or to
/// refuse a truncated or corrupt file early. Errors have no path prefix.
pub fn probe(bytes: &[u8]) -> Result<ImageInfo> {
    match sniff(bytes)? {
        SourceFormat::Png => {
            let h = png_check::check(bytes).map_err(|d| defect(SourceFormat::Png, d))?;
            let alpha = matches!(h.color_type, 4 | 6) || h.has_trns;
            let gray = matches!(h.color_type, 0 | 4);
            let layout = if gray { Layout::Gray } else { Layout::Rgb }.with_alpha(alpha);
            let depth = if h.bit_depth == 16 { Depth::Sixteen } else { Depth::Eight };
            Ok(ImageInfo {
                format: SourceFormat::Png,
                width: h.width,
                height: h.height,
                layout,
                depth,
                palette: h.color_type == 3,
            })
        }
        SourceFormat::Jpeg => {
            let h = jpeg_check::check(bytes).map_err(|d| defect(SourceFormat::Jpeg, d))?;
            let layout = match h.components {
                1 => Layout::Gray,
                3 | 4 => Layout::Rgb,
                n => return Err(Error::Image(format!("not a supported JPEG: it has {n} colour components (1, 3 or 4 decode)"))),
            };
            if h.precision != 8 {
                return Err(Error::Image(format!(
                    "not a supported JPEG: it has {}-bit samples (only 8-bit JPEG decodes)",
                    h.precision
                )));
            }
            Ok(ImageInfo {
                format: SourceFormat::Jpeg,
                width: h.width as u32,
                height: h.height as u32,
                layout,
                depth: Depth::Eight,
                palette: false,
            })
        }
    }
}

/// [`probe`] of a file; errors name the path. Reads the whole file (the
/// structure check needs every byte) but decodes nothing.
pub fn probe_file(path: impl AsRef<Path>) -> Result<ImageInfo> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), source: e })?;
    probe(&bytes).map_err(|e| match e {
        Error::Image(_) => e.context(format!("cannot decode {}", path.display())),
        other => other,
    })
}

fn sniff(b: &[u8]) -> Result<SourceFormat> {
    if b.starts_with(&png_check::SIGNATURE) {
        return Ok(SourceFormat::Png);
    }
    if b.starts_with(&[0xff, 0xd8]) {
        return Ok(SourceFormat::Jpeg);
    }
    if b.is_empty() {
        return Err(Error::Image("the file is empty".into()));
    }
    if png_check::SIGNATURE.starts_with(b) {
        return Err(Error::Image(format!("truncated PNG: the file is only {} bytes long", b.len())));
    }
    Err(Error::Image(match image::guess_format(b) {
        Ok(f) => {
            let name = f.extensions_str().first().map_or("this", |e| e).to_ascii_uppercase();
            format!("{name} images are not supported; only PNG and JPEG decode")
        }
        Err(_) => "not a PNG or JPEG file (the first bytes match no image format)".into(),
    }))
}

fn defect(format: SourceFormat, d: Defect) -> Error {
    let name = format.name();
    Error::Image(match d {
        Defect::Truncated(m) => format!("truncated {name}: {m}"),
        Defect::Invalid(m) => format!("not a valid {name}: {m}; the file is corrupt"),
    })
}

/// One line from an `image` crate error, without the Rust debug text some
/// of its messages carry (`ChunkType { type: IDAT, critical: true, ... }`
/// becomes `IDAT`; any other `{ ... }` group is dropped).
pub(crate) fn clean_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map(|c| open + c);
        let Some(close) = close else { break };
        let before = &rest[..open];
        let inner = &rest[open + 1..close];
        // `Name { type: XXXX, ...}`: keep XXXX in place of `Name { ... }`.
        let word_start = before.trim_end().rfind(|c: char| !c.is_alphanumeric()).map_or(0, |i| i + 1);
        let keep = inner.trim().strip_prefix("type:").map(|t| t.split(',').next().unwrap_or("").trim().to_string());
        match keep {
            Some(t) => {
                out.push_str(&before[..word_start]);
                out.push_str(&t);
            }
            None => out.push_str(before.trim_end()),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    let out = out.replace(['{', '}'], "");
    let mut text = out.split_whitespace().map(uncamel).collect::<Vec<_>>().join(" ");
    // The format is already named by the caller.
    for prefix in ["Format error decoding Png: ", "Format error decoding Jpeg: ", "Format error: "] {
        if let Some(t) = text.strip_prefix(prefix) {
            text = t.to_string();
        }
    }
    text.trim_end_matches('.').to_string()
}

/// An enum variant name printed with `{:?}` (`InvalidUncompressedBlockLength`)
/// as words (`invalid uncompressed block length`); other words unchanged.
fn uncamel(word: &str) -> String {
    let core = word.trim_end_matches(|c: char| c.is_ascii_punctuation());
    let humps = core.chars().filter(char::is_ascii_uppercase).count();
    let camel = humps >= 2
        && core.chars().all(|c| c.is_ascii_alphabetic())
        && core.starts_with(|c: char| c.is_ascii_uppercase())
        && core.as_bytes().windows(2).all(|p| !(p[0].is_ascii_uppercase() && p[1].is_ascii_uppercase()));
    if !camel {
        return word.to_string();
    }
    let mut out = String::new();
    for (i, c) in core.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out.push_str(&word[core.len()..]);
    out
}

fn decode_error(format: SourceFormat, e: image::ImageError) -> Error {
    let name = format.name();
    Error::Image(match e {
        image::ImageError::Limits(l) => {
            format!("the {name} needs more memory to decode than the limit allows ({})", clean_message(&l.to_string()))
        }
        image::ImageError::Unsupported(u) => format!("not a supported {name}: {}", clean_message(&u.to_string())),
        other => format!("not a valid {name}: {}; the file is corrupt", clean_message(&other.to_string())),
    })
}

pub(crate) fn decode_with_limits(bytes: &[u8], limits: &DecodeLimits) -> Result<Image> {
    let info = probe(bytes)?;
    limits.check(info.width, info.height)?;
    let mut lim = image::Limits::default();
    lim.max_alloc = Some(limits.max_decoder_bytes);
    let err = |e| decode_error(info.format, e);
    let img = match info.format {
        SourceFormat::Png => {
            let d = image::codecs::png::PngDecoder::with_limits(Cursor::new(bytes), lim).map_err(err)?;
            run_decoder(d, info.format, limits)?
        }
        SourceFormat::Jpeg => {
            let mut d = image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes)).map_err(err)?;
            d.set_limits(lim).map_err(err)?;
            run_decoder(d, info.format, limits)?
        }
    };
    if (img.width(), img.height()) != (info.width, info.height) {
        return Err(Error::Image(format!(
            "not a valid {}: the header says {}x{} but {}x{} pixels decoded",
            info.format.name(),
            info.width,
            info.height,
            img.width(),
            img.height()
        )));
    }
    from_dynamic(img, info.format)
}

/// Decode after checking the decoder's output buffer against the limit
/// (not every `image` decoder counts it against `max_alloc`).
fn run_decoder(d: impl ImageDecoder, format: SourceFormat, limits: &DecodeLimits) -> Result<DynamicImage> {
    let need = d.total_bytes();
    if need > limits.max_decoder_bytes {
        return Err(Error::Image(format!(
            "the {} needs {need} bytes of memory to decode, more than the limit of {} bytes",
            format.name(),
            limits.max_decoder_bytes
        )));
    }
    DynamicImage::from_decoder(d).map_err(|e| decode_error(format, e))
}

/// Planar f32 colour and alpha from interleaved samples with `ch` channels
/// (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA).
fn planar<T: Copy>(raw: &[T], w: usize, h: usize, ch: usize, to_f: impl Fn(T) -> f32) -> (RgbImage, Option<Plane>) {
    let n = w * h;
    let mut data = vec![0f32; 3 * n];
    let mut alpha = if ch.is_multiple_of(2) { Some(vec![0f32; n]) } else { None };
    for (i, px) in raw.chunks_exact(ch).enumerate() {
        if ch <= 2 {
            let v = to_f(px[0]);
            data[i] = v;
            data[n + i] = v;
            data[2 * n + i] = v;
        } else {
            data[i] = to_f(px[0]);
            data[n + i] = to_f(px[1]);
            data[2 * n + i] = to_f(px[2]);
        }
        if let Some(a) = alpha.as_mut() {
            a[i] = to_f(px[ch - 1]);
        }
    }
    (RgbImage { width: w, height: h, data }, alpha.map(|data| Plane { width: w, height: h, data }))
}

fn from_dynamic(img: DynamicImage, format: SourceFormat) -> Result<Image> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let u8f = |v: u8| v as f32 / 255.0;
    let u16f = |v: u16| v as f32 / 65535.0;
    let (rgb, alpha, layout, depth) = match &img {
        DynamicImage::ImageLuma8(b) => cat(planar(b.as_raw(), w, h, 1, u8f), Layout::Gray, Depth::Eight),
        DynamicImage::ImageLumaA8(b) => cat(planar(b.as_raw(), w, h, 2, u8f), Layout::GrayAlpha, Depth::Eight),
        DynamicImage::ImageRgb8(b) => cat(planar(b.as_raw(), w, h, 3, u8f), Layout::Rgb, Depth::Eight),
        DynamicImage::ImageRgba8(b) => cat(planar(b.as_raw(), w, h, 4, u8f), Layout::Rgba, Depth::Eight),
        DynamicImage::ImageLuma16(b) => cat(planar(b.as_raw(), w, h, 1, u16f), Layout::Gray, Depth::Sixteen),
        DynamicImage::ImageLumaA16(b) => cat(planar(b.as_raw(), w, h, 2, u16f), Layout::GrayAlpha, Depth::Sixteen),
        DynamicImage::ImageRgb16(b) => cat(planar(b.as_raw(), w, h, 3, u16f), Layout::Rgb, Depth::Sixteen),
        DynamicImage::ImageRgba16(b) => cat(planar(b.as_raw(), w, h, 4, u16f), Layout::Rgba, Depth::Sixteen),
        other => {
            return Err(Error::Image(format!(
                "not a supported {}: it decodes to {} bits per pixel, which wgsr does not read",
                format.name(),
                other.color().bits_per_pixel()
            )))
        }
    };
    if w == 0 || h == 0 {
        return Err(Error::Image("the image has no pixels".into()));
    }
    Image::new(rgb, alpha, layout, depth)
}

fn cat((rgb, alpha): (RgbImage, Option<Plane>), layout: Layout, depth: Depth) -> (RgbImage, Option<Plane>, Layout, Depth) {
    (rgb, alpha, layout, depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_text_is_cleaned() {
        let m = "Format error decoding Png: CRC error: expected 0x1 have 0x2 while decoding \
                 ChunkType { type: IDAT, critical: true, private: false, reserved: false, safecopy: false } chunk.";
        let c = clean_message(m);
        assert!(!c.contains('{') && !c.contains('}'), "{c}");
        assert!(c.contains("decoding IDAT chunk"), "{c}");
        assert_eq!(clean_message("plain text."), "plain text");
        assert_eq!(clean_message("a Foo { x: 1 } b"), "a Foo b");
        assert_eq!(
            clean_message("Format error decoding Png: Corrupt deflate stream. InvalidUncompressedBlockLength"),
            "Corrupt deflate stream. invalid uncompressed block length"
        );
        assert_eq!(clean_message("chunk IDAT or fDAT, SOF0 and RGBA."), "chunk IDAT or fDAT, SOF0 and RGBA");
    }
}
