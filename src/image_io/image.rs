//! [`Image`]: a decoded image that keeps its file's layout and bit depth, and
//! carries its alpha plane through a model.

use std::fmt;
use std::path::Path;

use super::decode::{decode_with_limits, DecodeLimits};
use super::encode::{encode_image, OutputFormat};
use super::{write_atomic, RgbImage};
use crate::resize::imresize_plane;
use crate::{Error, Result};

/// The colour channels an image file stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    Gray,
    GrayAlpha,
    Rgb,
    Rgba,
}

impl Layout {
    /// Channels per pixel in the file (1 to 4).
    pub fn channels(self) -> usize {
        match self {
            Layout::Gray => 1,
            Layout::GrayAlpha => 2,
            Layout::Rgb => 3,
            Layout::Rgba => 4,
        }
    }

    pub fn has_alpha(self) -> bool {
        matches!(self, Layout::GrayAlpha | Layout::Rgba)
    }

    pub fn is_gray(self) -> bool {
        matches!(self, Layout::Gray | Layout::GrayAlpha)
    }

    /// The layout with the same colour and the given alpha.
    pub fn with_alpha(self, alpha: bool) -> Layout {
        match (self.is_gray(), alpha) {
            (true, false) => Layout::Gray,
            (true, true) => Layout::GrayAlpha,
            (false, false) => Layout::Rgb,
            (false, true) => Layout::Rgba,
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Gray => "gray",
            Layout::GrayAlpha => "gray+alpha",
            Layout::Rgb => "RGB",
            Layout::Rgba => "RGBA",
        })
    }
}

/// Bits per sample in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Depth {
    Eight,
    Sixteen,
}

impl Depth {
    pub fn bits(self) -> u32 {
        match self {
            Depth::Eight => 8,
            Depth::Sixteen => 16,
        }
    }

    /// Largest sample value (255 or 65535).
    pub fn max_level(self) -> u32 {
        (1 << self.bits()) - 1
    }

    /// The sample a [0, 1] value is stored as: `round(clamp(v, 0, 1) * max)`,
    /// rounding half to even (as torch.round and the reference models).
    pub fn quantize(self, v: f32) -> u16 {
        match self {
            // Same f32 arithmetic as `RgbImage::to_rgb8`.
            Depth::Eight => (v.clamp(0.0, 1.0) * 255.0).round_ties_even() as u16,
            Depth::Sixteen => (v.clamp(0.0, 1.0) as f64 * 65535.0).round_ties_even() as u16,
        }
    }
}

impl fmt::Display for Depth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-bit", self.bits())
    }
}

/// One row-major `height` x `width` plane of f32 values (an alpha channel).
#[derive(Clone, Debug, PartialEq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Plane {
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Result<Plane> {
        if width.checked_mul(height) != Some(data.len()) {
            return Err(Error::Shape(format!("{} values for a {height}x{width} plane", data.len())));
        }
        Ok(Plane { width, height, data })
    }

    /// Bicubic resize to `out_w` x `out_h` with [`crate::resize::imresize_plane`]
    /// (MATLAB `imresize` on a double image: Keys a = -0.5, antialiased when
    /// shrinking, scale out/in per axis), clamped to [0, 1]. The same as
    /// channel 0 of `resize::imresize(img, out_w, out_h, MatlabPrecision::Float)`
    /// on an image whose three channels are this plane, then clamped.
    pub fn resize_bicubic(&self, out_w: usize, out_h: usize) -> Result<Plane> {
        if (out_w, out_h) == (self.width, self.height) {
            return Ok(self.clone());
        }
        let src: Vec<f64> = self.data.iter().map(|&v| v as f64).collect();
        let sw = out_w as f64 / self.width as f64;
        let sh = out_h as f64 / self.height as f64;
        let out = imresize_plane(&src, self.width, self.height, out_w, out_h, sw, sh, false)?;
        Plane::new(out_w, out_h, out.into_iter().map(|v| (v as f32).clamp(0.0, 1.0)).collect())
    }
}

/// An integer resize factor a model applies, for [`Image::map_rgb_scaled`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scale {
    /// Output = input x n (super-resolution).
    Up(usize),
    /// Output = input / n (rescaling's downscale); the input must be a multiple of n.
    Down(usize),
}

impl Scale {
    /// The output size for a `w` x `h` input, or an error saying why there is none.
    pub fn apply(self, w: usize, h: usize) -> Result<(usize, usize)> {
        match self {
            Scale::Up(n) if n >= 1 => match (w.checked_mul(n), h.checked_mul(n)) {
                (Some(ow), Some(oh)) => Ok((ow, oh)),
                _ => Err(Error::InvalidArgument(format!("{w}x{h} x{n} overflows"))),
            },
            Scale::Down(n) if n >= 1 => {
                if !w.is_multiple_of(n) || !h.is_multiple_of(n) {
                    return Err(Error::InvalidArgument(format!(
                        "the image is {w}x{h}, not a multiple of the factor {n}; crop it first (Image::crop)"
                    )));
                }
                Ok((w / n, h / n))
            }
            _ => Err(Error::InvalidArgument("a scale factor must be at least 1".into())),
        }
    }
}

/// A decoded image: the colour part as planar RGB (gray files expanded to
/// R = G = B), the alpha plane if the file had one, and the file's layout and
/// bit depth so the result can be written back the same way.
///
/// Invariants (checked by [`Image::new`], [`Image::map_rgb`] and the
/// encoders): `alpha` is `Some` exactly when `layout.has_alpha()`, and has
/// the size of `rgb`.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub rgb: RgbImage,
    pub alpha: Option<Plane>,
    pub layout: Layout,
    pub depth: Depth,
}

impl Image {
    pub fn new(rgb: RgbImage, alpha: Option<Plane>, layout: Layout, depth: Depth) -> Result<Image> {
        let img = Image { rgb, alpha, layout, depth };
        img.validate()?;
        Ok(img)
    }

    /// An 8-bit RGB image.
    pub fn from_rgb(rgb: RgbImage) -> Image {
        Image { rgb, alpha: None, layout: Layout::Rgb, depth: Depth::Eight }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let (w, h) = (self.rgb.width, self.rgb.height);
        if w.checked_mul(h).and_then(|n| n.checked_mul(3)) != Some(self.rgb.data.len()) {
            return Err(Error::Shape(format!("{} values for a 3x{h}x{w} image", self.rgb.data.len())));
        }
        match (&self.alpha, self.layout.has_alpha()) {
            (None, false) => Ok(()),
            (Some(a), true) if (a.width, a.height) == (w, h) && a.data.len() == w * h => Ok(()),
            (Some(a), true) => Err(Error::Shape(format!(
                "the alpha plane is {}x{} ({} values) but the colour is {w}x{h}",
                a.width,
                a.height,
                a.data.len()
            ))),
            (None, true) => Err(Error::Shape(format!("a {} image needs an alpha plane", self.layout))),
            (Some(_), false) => Err(Error::Shape(format!("a {} image has no alpha plane, but one is set", self.layout))),
        }
    }

    pub fn width(&self) -> usize {
        self.rgb.width
    }

    pub fn height(&self) -> usize {
        self.rgb.height
    }

    /// Decode a PNG (8 or 16 bit, any colour type incl. palette) or JPEG
    /// (gray, RGB, CMYK) file with the default [`DecodeLimits`]. Errors name
    /// the path: `"<path>: truncated PNG: ..."`, `"<path>: not a valid JPEG: ..."`.
    pub fn load(path: impl AsRef<Path>) -> Result<Image> {
        Self::load_with_limits(path, &DecodeLimits::default())
    }

    pub fn load_with_limits(path: impl AsRef<Path>, limits: &DecodeLimits) -> Result<Image> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), source: e })?;
        Self::decode_with_limits(&bytes, limits).map_err(|e| with_path(path, e))
    }

    /// Decode an in-memory PNG or JPEG with the default [`DecodeLimits`].
    pub fn decode(bytes: &[u8]) -> Result<Image> {
        Self::decode_with_limits(bytes, &DecodeLimits::default())
    }

    pub fn decode_with_limits(bytes: &[u8], limits: &DecodeLimits) -> Result<Image> {
        decode_with_limits(bytes, limits)
    }

    /// The colour part; alpha is dropped, gray stays R = G = B.
    pub fn into_rgb(self) -> RgbImage {
        self.rgb
    }

    /// Run the colour part through `model` and resize the alpha plane to the
    /// model's output size with [`Plane::resize_bicubic`] (any size: an
    /// upscale, a downscale, or the same size). The result keeps this
    /// image's layout and depth, so [`Image::save`] writes it back as the
    /// input was (a gray input as the luma of the model's RGB output).
    pub fn map_rgb<F>(self, model: F) -> Result<Image>
    where
        F: FnOnce(&RgbImage) -> Result<RgbImage>,
    {
        self.validate()?;
        let out = model(&self.rgb)?;
        let (w, h) = (out.width, out.height);
        if w == 0 || h == 0 || w.checked_mul(h).and_then(|n| n.checked_mul(3)) != Some(out.data.len()) {
            return Err(Error::Shape(format!("the model returned {} values for a 3x{h}x{w} image", out.data.len())));
        }
        let alpha = match &self.alpha {
            Some(a) => Some(a.resize_bicubic(w, h)?),
            None => None,
        };
        Ok(Image { rgb: out, alpha, layout: self.layout, depth: self.depth })
    }

    /// [`Image::map_rgb`] for a model that scales by an integer factor: the
    /// output size is checked against `scale` (a model that returned
    /// another size, e.g. because it cropped the input, would misalign the
    /// alpha plane), and a [`Scale::Down`] input must be a multiple of the
    /// factor (crop with [`Image::crop`] first).
    pub fn map_rgb_scaled<F>(self, scale: Scale, model: F) -> Result<Image>
    where
        F: FnOnce(&RgbImage) -> Result<RgbImage>,
    {
        let (w, h) = scale.apply(self.width(), self.height())?;
        self.map_rgb(|x| {
            let out = model(x)?;
            if (out.width, out.height) != (w, h) {
                return Err(Error::Shape(format!(
                    "the model turned {}x{} into {}x{}; {scale:?} needs {w}x{h}",
                    x.width, x.height, out.width, out.height
                )));
            }
            Ok(out)
        })
    }

    /// The `w` x `h` region at (`x0`, `y0`), colour and alpha alike.
    pub fn crop(&self, x0: usize, y0: usize, w: usize, h: usize) -> Result<Image> {
        let rgb = self.rgb.crop(x0, y0, w, h)?;
        let alpha = match &self.alpha {
            Some(a) => {
                let mut d = Vec::with_capacity(w * h);
                for y in y0..y0 + h {
                    d.extend_from_slice(&a.data[y * a.width + x0..y * a.width + x0 + w]);
                }
                Some(Plane::new(w, h, d)?)
            }
            None => None,
        };
        Image::new(rgb, alpha, self.layout, self.depth)
    }

    /// Gray of the colour part: BT.601 luma `0.299 R + 0.587 G + 0.114 B`
    /// (computed in f64; exactly the input value when R = G = B). This is
    /// what gray layouts write.
    pub fn luma(&self) -> Vec<f32> {
        luma(&self.rgb)
    }

    /// Write in this image's own layout and depth, format by extension
    /// (`.png` or `.npy`), atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_as(path, self.layout, self.depth)
    }

    /// Write in a given layout and depth, format by extension, atomically.
    /// `.png` is 8- or 16-bit in `layout`; `.npy` is float32 (H, W, C) with
    /// the channels of `layout` (depth does not apply). A layout with alpha
    /// for an image without one writes alpha 1; one without drops it.
    pub fn save_as(&self, path: impl AsRef<Path>, layout: Layout, depth: Depth) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.encode(OutputFormat::from_path(path)?, layout, depth)?;
        write_atomic(path, &bytes)
    }

    /// Encode in a given format, layout and depth.
    pub fn encode(&self, format: OutputFormat, layout: Layout, depth: Depth) -> Result<Vec<u8>> {
        self.validate()?;
        encode_image(self, format, layout, depth)
    }

    /// PNG in this image's own layout and depth.
    pub fn encode_png(&self) -> Result<Vec<u8>> {
        self.encode(OutputFormat::Png, self.layout, self.depth)
    }
}

pub(crate) fn luma(rgb: &RgbImage) -> Vec<f32> {
    let n = rgb.width * rgb.height;
    let (r, g, b) = (&rgb.data[..n], &rgb.data[n..2 * n], &rgb.data[2 * n..3 * n]);
    (0..n).map(|i| (0.299 * r[i] as f64 + 0.587 * g[i] as f64 + 0.114 * b[i] as f64) as f32).collect()
}

/// "cannot decode <path>: <why>" for decoding failures (the kind is kept).
fn with_path(path: &Path, e: Error) -> Error {
    match e {
        Error::Image(_) => e.context(format!("cannot decode {}", path.display())),
        other => other,
    }
}
