//! Image and array I/O: decode images to planar f32 RGB in [0, 1], write
//! 8-bit PNG or float32 `.npy`. Writes are atomic (temp file + rename), so a
//! failed run never leaves a half-written output behind.

use std::io::Write;
use std::path::Path;

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

    /// Decode any PNG or JPEG file; alpha is dropped, grey expanded to RGB.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), source: e })?;
        Self::decode(&bytes).map_err(|e| match e {
            Error::Image(m) => Error::Image(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Decode an in-memory PNG or JPEG.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let img = image::load_from_memory(bytes).map_err(|e| Error::Image(format!("cannot decode image: {e}")))?;
        let rgb = img.to_rgb32f();
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        if w == 0 || h == 0 {
            return Err(Error::Image("image has no pixels".into()));
        }
        let mut data = vec![0f32; 3 * w * h];
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                data[c * w * h + i] = px.0[c];
            }
        }
        Ok(RgbImage { width: w, height: h, data })
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

    /// Write by extension: `.png` (8 bit) or `.npy` (float32, shape (H, W, 3)).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
        let bytes = match ext.as_deref() {
            Some("png") => self.encode_png()?,
            Some("npy") => self.encode_npy(),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{}: output must end in .png (8-bit) or .npy (float32)",
                    path.display()
                )))
            }
        };
        write_atomic(path, &bytes)
    }

    pub fn encode_png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let enc = image::codecs::png::PngEncoder::new(&mut out);
        image::ImageEncoder::write_image(enc, &self.to_rgb8(), self.width as u32, self.height as u32, image::ExtendedColorType::Rgb8)
            .map_err(|e| Error::Image(format!("PNG encoding failed: {e}")))?;
        Ok(out)
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

/// Encode a float32 array as `.npy` (C order).
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_str = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_str}, }}");
    // Pad so magic(6) + version(2) + len(2) + header is a multiple of 64, ending in '\n'.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Read a little-endian float32 C-order `.npy`; returns (shape, data).
pub fn read_npy(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<f32>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), source: e })?;
    parse_npy(&bytes).map_err(|m| Error::InvalidArgument(format!("{}: {m}", path.display())))
}

fn parse_npy(b: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = std::str::from_utf8(b.get(start..start + hlen).ok_or("truncated header")?).map_err(|_| "bad header")?;
    if !header.contains("'descr': '<f4'") {
        return Err(format!("expected float32 little-endian ('<f4'), header is {header}"));
    }
    if header.contains("'fortran_order': True") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let open = header.find("'shape': (").ok_or("no shape in header")? + 10;
    let close = open + header[open..].find(')').ok_or("bad shape")?;
    let shape: Vec<usize> = header[open..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad dimension '{s}'")))
        .collect::<std::result::Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let body = &b[start + hlen..];
    if body.len() != 4 * n {
        return Err(format!("shape {shape:?} needs {} bytes of data, file has {}", 4 * n, body.len()));
    }
    Ok((shape, body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
}

/// Write `bytes` to `path` through a temporary file in the same directory and
/// a rename, so readers never see a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e| Error::Io { path: path.display().to_string(), source: e };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn npy_parser_rejects_garbage() {
        assert!(parse_npy(b"hello").is_err());
        let mut b = npy_bytes(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        b.truncate(b.len() - 1);
        assert!(parse_npy(&b).unwrap_err().contains("needs 16 bytes"));
    }
}
