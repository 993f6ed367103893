//! Image and array I/O.
//!
//! * [`Image`]: a decoded PNG or JPEG that keeps what the file had: its
//!   colour layout ([`Layout`]: gray, gray + alpha, RGB, RGBA) and bit depth
//!   ([`Depth`]: 8 or 16). The colour part is an [`RgbImage`] (gray is
//!   expanded to R = G = B) that goes through a model with
//!   [`Image::map_rgb`], which also resizes the alpha plane with bicubic to
//!   the model's output size; [`Image::save`] writes the result back in the
//!   input's layout and depth (gray as the BT.601 luma of the RGB).
//! * [`RgbImage`]: planar f32 RGB in [0, 1], what the models read and write.
//! * Decoding is strict: the file's structure is checked before it is decoded
//!   (every PNG chunk's length and CRC, the JPEG marker sequence up to the
//!   end-of-image marker), so a truncated or corrupt file is an error and never
//!   an image with padding; sizes are checked against [`DecodeLimits`] from the
//!   header, before anything is allocated.
//! * `.npy` float32 arrays ([`npy_bytes`], [`read_npy`]); all writes are
//!   atomic ([`write_atomic`]: temp file + rename), so a failed run never
//!   leaves a half-written output behind.

mod atomic;
mod decode;
mod encode;
mod image;
mod jpeg_check;
mod npy;
mod png_check;
mod rgb;

pub use self::atomic::write_atomic;
pub use self::decode::{probe, probe_file, DecodeLimits, ImageInfo, SourceFormat};
pub use self::encode::OutputFormat;
pub use self::image::{Depth, Image, Layout, Plane, Scale};
pub use self::npy::{npy_bytes, read_npy};
pub use self::rgb::RgbImage;

/// What is wrong with a file whose structure does not check out.
#[derive(Debug)]
pub(crate) enum Defect {
    /// The file ends early (cut off during download or copy).
    Truncated(String),
    /// The bytes that are there are wrong.
    Invalid(String),
}
