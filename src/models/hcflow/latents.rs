//! Latents by global position. The reverse pass's latent of level `l` is
//! element `i = ((b * C + c) * H + y) * W + x` of the Philox normal stream
//! `(seed, EPS_STREAM * (l + 1))` over the *whole image's* level shape
//! `[B, C, H, W]` (block `offset + i / 4`, lane `i % 4`, see `ops::rng`), so
//! its value at (c, y, x) depends on the seed, the level, the position and
//! the image size, never on how the image is tiled. [`normal_window`] draws
//! any sub-rectangle of it directly, generating only the Philox blocks the
//! window's rows touch (host memory bounded by the window).

use crate::ops::rng;
use crate::Shape;

/// The `h` x `w` window at (`y0`, `x0`) of the normal stream `(seed,
/// offset)` laid out over `full` ([B, C, H, W], flat NCHW), as a
/// `[B, C, h, w]` tensor: exactly the matching elements of
/// `rng::host_normal(seed, offset, full.numel(), 0, 1)`.
pub fn normal_window(seed: u64, offset: u64, full: Shape, y0: usize, x0: usize, h: usize, w: usize) -> Vec<f32> {
    assert!(y0 + h <= full.h() && x0 + w <= full.w(), "window {w}x{h} at ({x0}, {y0}) outside {full}");
    let mut out = Vec::with_capacity(full.n() * full.c() * h * w);
    if w == full.w() && x0 == 0 {
        // Whole rows: each channel plane's window is one contiguous run.
        for bc in 0..full.n() * full.c() {
            run(&mut out, seed, offset, (bc * full.h() + y0) * full.w(), h * w);
        }
        return out;
    }
    for bc in 0..full.n() * full.c() {
        for y in y0..y0 + h {
            run(&mut out, seed, offset, (bc * full.h() + y) * full.w() + x0, w);
        }
    }
    out
}

/// Append elements `i0 .. i0 + n` of the stream.
fn run(out: &mut Vec<f32>, seed: u64, offset: u64, i0: usize, n: usize) {
    let lane = i0 % 4;
    let block = offset.wrapping_add((i0 / 4) as u64);
    let v = rng::host_normal(seed, block, lane + n, 0.0, 1.0);
    out.extend_from_slice(&v[lane..]);
}
