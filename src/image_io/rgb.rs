//! [`RgbImage`]: the planar f32 RGB image the models read and write.

use std::path::Path;

use super::encode::{encode_png_planes, OutputFormat};
use super::{npy_bytes, write_atomic, Depth, Image};
use crate::gpu::GpuContext;
use crate::{Error, Result, Shape, Tensor};

/// A planar RGB image, values nominally in [0, 1], layout [3][height][width].
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl RgbImage {
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != 3 * width * height {
            return Err(Error::Shape(format!("{} values for a 3x{height}x{width} image", data.len())));
        }
        Ok(RgbImage { width, height, data })
    }

    /// Decode a PNG or JPEG file as RGB: alpha is dropped, gray expanded to
    /// R = G = B, 16-bit samples kept as f32. Same strict decoding and limits
    /// as [`Image::load`] (of which this is `Image::load(path)?.into_rgb()`).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Image::load(path)?.into_rgb())
    }

    /// Decode an in-memory PNG or JPEG as RGB (see [`RgbImage::load`]).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        Ok(Image::decode(bytes)?.into_rgb())
    }

    /// The `w` x `h` region whose top-left corner is (`x0`, `y0`).
    pub fn crop(&self, x0: usize, y0: usize, w: usize, h: usize) -> Result<Self> {
        if w == 0 || h == 0 || x0 + w > self.width || y0 + h > self.height {
            return Err(Error::Shape(format!(
                "crop {w}x{h} at ({x0}, {y0}) does not fit in a {}x{} image",
                self.width, self.height
            )));
        }
        let n = self.width * self.height;
        let mut data = Vec::with_capacity(3 * w * h);
        for c in 0..3 {
            for y in y0..y0 + h {
                let row = c * n + y * self.width + x0;
                data.extend_from_slice(&self.data[row..row + w]);
            }
        }
        RgbImage::new(w, h, data)
    }

    /// Upload as a [1, 3, H, W] tensor.
    pub fn to_tensor(&self, ctx: &GpuContext) -> Result<Tensor> {
        Tensor::from_slice(ctx, Shape::new(1, 3, self.height, self.width), &self.data)
    }

    /// Download a [1, 3, H, W] tensor.
    pub fn from_tensor(ctx: &GpuContext, t: &Tensor) -> Result<Self> {
        let s = t.shape();
        if s.n() != 1 || s.c() != 3 {
            return Err(Error::Shape(format!("an RGB image tensor must be [1, 3, H, W], got {s}")));
        }
        Self::new(s.w(), s.h(), t.to_vec(ctx)?)
    }

    /// 8-bit RGB bytes, interleaved, rounded and clamped (the reference
    /// models quantise with round(clamp(x, 0, 1) * 255), torch.round = half to even).
    pub fn to_rgb8(&self) -> Vec<u8> {
        let n = self.width * self.height;
        let mut out = vec![0u8; 3 * n];
        for i in 0..n {
            for c in 0..3 {
                out[3 * i + c] = (self.data[c * n + i].clamp(0.0, 1.0) * 255.0).round_ties_even() as u8;
            }
        }
        out
    }

    /// Write by extension: `.png` (8-bit RGB) or `.npy` (float32, shape (H, W, 3)).
    /// For other layouts and 16 bit, see [`Image::save_as`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = match OutputFormat::from_path(path)? {
            OutputFormat::Png => self.encode_png()?,
            OutputFormat::Npy => self.encode_npy(),
        };
        write_atomic(path, &bytes)
    }

    /// 8-bit RGB PNG.
    pub fn encode_png(&self) -> Result<Vec<u8>> {
        let n = self.width * self.height;
        if self.data.len() != 3 * n {
            return Err(Error::Shape(format!("{} values for a 3x{}x{} image", self.data.len(), self.height, self.width)));
        }
        let planes = [&self.data[..n], &self.data[n..2 * n], &self.data[2 * n..]];
        encode_png_planes(self.width, self.height, &planes, Depth::Eight)
    }

    /// Interleaved (H, W, 3) float32 little-endian `.npy` (format version 1.0).
    pub fn encode_npy(&self) -> Vec<u8> {
        let n = self.width * self.height;
        let mut hwc = Vec::with_capacity(3 * n);
        for i in 0..n {
            for c in 0..3 {
                hwc.push(self.data[c * n + i]);
            }
        }
        npy_bytes(&[self.height, self.width, 3], &hwc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_io::read_npy;

    fn sample() -> RgbImage {
        let (w, h) = (5, 3);
        let data = (0..3 * w * h).map(|i| (i as f32 * 0.07).sin() * 0.5 + 0.5).collect();
        RgbImage::new(w, h, data).unwrap()
    }

    #[test]
    fn crop_takes_the_region_of_every_channel() {
        let img = sample();
        let c = img.crop(1, 1, 3, 2).unwrap();
        assert_eq!((c.width, c.height), (3, 2));
        for ch in 0..3 {
            for y in 0..2 {
                for x in 0..3 {
                    assert_eq!(c.data[ch * 6 + y * 3 + x], img.data[ch * 15 + (y + 1) * 5 + x + 1]);
                }
            }
        }
        assert!(img.crop(3, 0, 3, 1).is_err());
        assert!(img.crop(0, 0, 0, 1).is_err());
    }

    #[test]
    fn png_round_trip_is_8bit_exact() {
        let img = sample();
        let back = RgbImage::decode(&img.encode_png().unwrap()).unwrap();
        assert_eq!((back.width, back.height), (5, 3));
        for (a, b) in img.data.iter().zip(&back.data) {
            assert!((a - b).abs() <= 0.5 / 255.0 + 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn npy_round_trip_is_exact_and_hwc() {
        let img = sample();
        let dir = std::env::temp_dir().join(format!("wgsr-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.npy");
        img.save(&p).unwrap();
        let (shape, data) = read_npy(&p).unwrap();
        assert_eq!(shape, vec![3, 5, 3]);
        // (H, W, 3): element (y=1, x=2, c=1)
        assert_eq!(data[(5 + 2) * 3 + 1], img.data[15 + 5 + 2]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_image_and_bad_extension_are_errors() {
        assert!(matches!(RgbImage::decode(b"\x89PNG\r\n\x1a\nnot really"), Err(Error::Image(_))));
        let dir = std::env::temp_dir().join(format!("wgsr-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("out.bmp");
        assert!(matches!(sample().save(&p), Err(Error::InvalidArgument(_))));
        assert!(!p.exists(), "nothing may be written on error");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
