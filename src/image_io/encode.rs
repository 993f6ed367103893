//! Writing images: PNG in any [`Layout`] at 8 or 16 bit, float32 `.npy`.

use std::path::Path;

use super::image::luma;
use super::{npy_bytes, Depth, Image, Layout};
use crate::{Error, Result};

/// Output file formats, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// PNG, 8 or 16 bit, in the image's layout.
    Png,
    /// float32 `.npy`, shape (H, W, C), values as computed (not clamped).
    Npy,
}

impl OutputFormat {
    /// `.png` or `.npy` (any case); anything else is an error naming the path.
    pub fn from_path(path: &Path) -> Result<OutputFormat> {
        match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
            Some("png") => Ok(OutputFormat::Png),
            Some("npy") => Ok(OutputFormat::Npy),
            _ => Err(Error::InvalidArgument(format!(
                "{}: output must end in .png (8- or 16-bit PNG) or .npy (float32)",
                path.display()
            ))),
        }
    }
}

/// PNG from planar f32 channels (1 to 4 planes of `w * h` values, in the
/// order gray / gray, alpha / R, G, B / R, G, B, A), each quantised with
/// [`Depth::quantize`].
pub(crate) fn encode_png_planes(w: usize, h: usize, planes: &[&[f32]], depth: Depth) -> Result<Vec<u8>> {
    use image::ExtendedColorType as C;
    let n = w * h;
    if planes.iter().any(|p| p.len() != n) {
        return Err(Error::Shape(format!("a {w}x{h} PNG needs {n} values per channel")));
    }
    let color = match (planes.len(), depth) {
        (1, Depth::Eight) => C::L8,
        (2, Depth::Eight) => C::La8,
        (3, Depth::Eight) => C::Rgb8,
        (4, Depth::Eight) => C::Rgba8,
        (1, Depth::Sixteen) => C::L16,
        (2, Depth::Sixteen) => C::La16,
        (3, Depth::Sixteen) => C::Rgb16,
        (4, Depth::Sixteen) => C::Rgba16,
        (c, _) => return Err(Error::Shape(format!("a PNG has 1 to 4 channels, not {c}"))),
    };
    let (wu, hu) = match (u32::try_from(w), u32::try_from(h)) {
        (Ok(a), Ok(b)) if a > 0 && b > 0 => (a, b),
        _ => return Err(Error::Image(format!("cannot write a {w}x{h} PNG"))),
    };
    let ch = planes.len();
    let bytes_per = if depth == Depth::Eight { 1 } else { 2 };
    let mut buf = vec![0u8; n * ch * bytes_per];
    for i in 0..n {
        for (c, p) in planes.iter().enumerate() {
            let q = depth.quantize(p[i]);
            let at = (i * ch + c) * bytes_per;
            match depth {
                Depth::Eight => buf[at] = q as u8,
                // The encoder takes native-endian 16-bit samples.
                Depth::Sixteen => buf[at..at + 2].copy_from_slice(&q.to_ne_bytes()),
            }
        }
    }
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new(&mut out);
    image::ImageEncoder::write_image(enc, &buf, wu, hu, color)
        .map_err(|e| Error::Image(format!("PNG encoding failed: {}", super::decode::clean_message(&e.to_string()))))?;
    Ok(out)
}

pub(crate) fn encode_image(img: &Image, format: OutputFormat, layout: Layout, depth: Depth) -> Result<Vec<u8>> {
    let (w, h) = (img.width(), img.height());
    let n = w * h;
    let d = &img.rgb.data;
    let gray = if layout.is_gray() { luma(&img.rgb) } else { Vec::new() };
    let ones;
    let alpha: &[f32] = match &img.alpha {
        Some(a) => &a.data,
        None => {
            ones = if layout.has_alpha() { vec![1f32; n] } else { Vec::new() };
            &ones
        }
    };
    let mut planes: Vec<&[f32]> = if layout.is_gray() { vec![&gray] } else { vec![&d[..n], &d[n..2 * n], &d[2 * n..3 * n]] };
    if layout.has_alpha() {
        planes.push(alpha);
    }
    match format {
        OutputFormat::Png => encode_png_planes(w, h, &planes, depth),
        OutputFormat::Npy => {
            let ch = planes.len();
            let mut hwc = Vec::with_capacity(n * ch);
            for i in 0..n {
                hwc.extend(planes.iter().map(|p| p[i]));
            }
            Ok(npy_bytes(&[h, w, ch], &hwc))
        }
    }
}
