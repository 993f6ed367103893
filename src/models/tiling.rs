//! Tiled inference: split an image into overlapping tiles, run each padded
//! tile through one cached graph, keep its core and paste it into the output.
//!
//! Geometry is in the model's *LR* pixels (the input of an upscale, the
//! output of a downscale), so every level of a multi-scale model (LR x 2^k)
//! sees integer tile coordinates. Every tile of a run has the same padded
//! size, so they all replay one graph: a tile near the right / bottom edge
//! shifts its window inwards instead of shrinking. A tile's core keeps at
//! least `margin` pixels of real image context on each side, except where
//! the core touches the image border (where the untiled run has the same
//! zero padding).

use crate::{Error, Result};

/// Which way a tiled run goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TiledPass {
    /// LR -> HR.
    Upscale,
    /// HR -> LR (rescaling models).
    Downscale,
}

/// How a model that can tile (HCFlow) splits a large image; the default
/// (all `None`) runs untiled whenever the whole image fits and tiles
/// automatically otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TilePolicy {
    /// Force tiling with this core side, in LR pixels (`None` = only when
    /// the untiled graph does not fit; then the largest tile that fits).
    pub tile: Option<usize>,
    /// Overlap added on each side of a core, in LR pixels (`None` = the
    /// model's measured default, see `HcFlow::default_margin`).
    pub margin: Option<usize>,
    /// Budget for one pass's planned device memory (intermediates,
    /// inputs and outputs: the memory plan's peak), in bytes. `None` =
    /// [`default_max_memory`] of the device.
    pub max_memory: Option<u64>,
}

impl TilePolicy {
    /// Tiles of side `tile` (LR pixels), default margin and budget.
    pub fn tile(tile: usize) -> Self {
        TilePolicy { tile: Some(tile), ..Default::default() }
    }
    /// Automatic tiling under a device-memory budget (bytes).
    pub fn max_memory(bytes: u64) -> Self {
        TilePolicy { max_memory: Some(bytes), ..Default::default() }
    }
    pub fn check(&self) -> Result<()> {
        if self.tile == Some(0) {
            return Err(Error::InvalidArgument("tile size must be at least 1 pixel".into()));
        }
        if self.max_memory == Some(0) {
            return Err(Error::InvalidArgument("the memory budget must be positive".into()));
        }
        Ok(())
    }
}

/// The default budget for one pass's planned device memory: four times the
/// largest buffer one binding may cover, clamped to [256 MiB, 2 GiB].
/// wgpu reports no total device memory; the binding limit is the one size
/// every device states, and 4x it keeps a pass well inside what a device
/// with that limit has (lavapipe: 128 MiB -> 512 MiB; a desktop GPU with
/// 1-2 GiB bindings -> 2 GiB).
pub fn default_max_memory(max_binding_bytes: u64) -> u64 {
    (4 * max_binding_bytes).clamp(256 << 20, 2 << 30)
}

/// One tile along one axis: the padded window `[win, win + win_len)` that
/// runs through the model and the core `[core, core + core_len)` kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub win: usize,
    pub core: usize,
    pub core_len: usize,
}

/// Split `[0, len)` into cores of `tile` (the last one shorter) with
/// windows of `min(len, tile + 2 margin)` placed `margin` before each core,
/// clamped into the image. Returns the window length and the spans.
pub fn spans(len: usize, tile: usize, margin: usize) -> (usize, Vec<Span>) {
    let tile = tile.max(1);
    let win_len = len.min(tile + 2 * margin);
    let mut v = Vec::with_capacity(len.div_ceil(tile));
    let mut core = 0;
    while core < len {
        let core_len = tile.min(len - core);
        let win = core.saturating_sub(margin).min(len - win_len);
        v.push(Span { win, core, core_len });
        core += core_len;
    }
    (win_len, v)
}

/// A rectangle in LR pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

/// One tile: the window run through the model and the core kept from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub window: Rect,
    pub core: Rect,
}

/// All tiles of a `width` x `height` (LR) image, row by row; every window
/// has the same size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileGrid {
    /// Core size (w, h) of a full tile (border tiles' cores may be shorter).
    pub tile: (usize, usize),
    pub margin: usize,
    /// Window size (w, h) shared by every tile.
    pub window: (usize, usize),
    pub tiles: Vec<Tile>,
}

impl TileGrid {
    /// Square cores of side `tile`.
    pub fn new(width: usize, height: usize, tile: usize, margin: usize) -> Self {
        Self::rect(width, height, tile, tile, margin)
    }

    /// Cores of `tile_w` x `tile_h`.
    pub fn rect(width: usize, height: usize, tile_w: usize, tile_h: usize, margin: usize) -> Self {
        let (tile_w, tile_h) = (tile_w.clamp(1, width.max(1)), tile_h.clamp(1, height.max(1)));
        let (ww, xs) = spans(width, tile_w, margin);
        let (wh, ys) = spans(height, tile_h, margin);
        let mut tiles = Vec::with_capacity(xs.len() * ys.len());
        for y in &ys {
            for x in &xs {
                tiles.push(Tile {
                    window: Rect { x: x.win, y: y.win, w: ww, h: wh },
                    core: Rect { x: x.core, y: y.core, w: x.core_len, h: y.core_len },
                });
            }
        }
        TileGrid { tile: (tile_w, tile_h), margin, window: (ww, wh), tiles }
    }

    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }
}

/// Copy the core of a planar `[c][win.h * f][win.w * f]` tile result into a
/// planar `[c][height * f][width * f]` image, `f` = output pixels per LR pixel.
pub fn paste(dst: &mut [f32], width: usize, height: usize, src: &[f32], t: &Tile, f: usize, channels: usize) {
    let (dw, dh) = (width * f, height * f);
    let (sw, sh) = (t.window.w * f, t.window.h * f);
    let (cx, cy, cw, ch) = ((t.core.x - t.window.x) * f, (t.core.y - t.window.y) * f, t.core.w * f, t.core.h * f);
    for c in 0..channels {
        for row in 0..ch {
            let s = c * sw * sh + (cy + row) * sw + cx;
            let d = c * dw * dh + (t.core.y * f + row) * dw + t.core.x * f;
            dst[d..d + cw].copy_from_slice(&src[s..s + cw]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_once_with_margin() {
        for len in [1, 5, 16, 17, 33, 100] {
            for tile in [1, 3, 8, 16, 40, 200] {
                for margin in [0, 1, 4, 9] {
                    let (wl, sp) = spans(len, tile, margin);
                    assert_eq!(wl, len.min(tile + 2 * margin));
                    let mut next = 0;
                    for s in &sp {
                        assert_eq!(s.core, next);
                        assert!(s.win + wl <= len && s.win <= s.core && s.core + s.core_len <= s.win + wl);
                        // real context of at least `margin` on each side, or the image border
                        assert!(s.core - s.win >= margin || s.win == 0);
                        assert!(s.win + wl - (s.core + s.core_len) >= margin || s.win + wl == len);
                        next += s.core_len;
                    }
                    assert_eq!(next, len);
                }
            }
        }
    }
}
