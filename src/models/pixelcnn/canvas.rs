//! The image being sampled and the host draw every sampler shares.

use super::config::{COLOURS, LEVELS};
use super::{pick_inverse_cdf, scale_input};

/// `n` images of 3 x h x w being drawn: 0..255 values, the scaled copy the
/// prior sees (unsampled sub-pixels hold value 0), the conditioning logits A
/// [768, h, w] shared by all images, and the uniforms [n, 3, h, w].
pub(super) struct Canvas<'a> {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub img: Vec<u8>,
    pub x: Vec<f32>,
    a: Vec<f32>,
    uniforms: &'a [f32],
    temperature: f32,
    logits: Vec<f32>,
}

impl<'a> Canvas<'a> {
    pub fn new(n: usize, h: usize, w: usize, a: Vec<f32>, uniforms: &'a [f32], temperature: f32) -> Self {
        let total = n * COLOURS * h * w;
        Canvas { n, h, w, img: vec![0; total], x: vec![scale_input(0.0); total], a, uniforms, temperature, logits: vec![0.0; LEVELS] }
    }

    /// Index of sub-pixel (r, q, c) of image s in [n, 3, h, w].
    pub fn at(&self, s: usize, c: usize, r: usize, q: usize) -> usize {
        ((s * COLOURS + c) * self.h + r) * self.w + q
    }

    /// Draw sub-pixel (r, q, c) of every image from A + B, where `b` holds
    /// logit channels `b_first..b_first + b_chans` (covering colour c's 256)
    /// and channel ch of image s is `b[(s * b_chans + ch - b_first) * b_hw + b_at]`.
    #[allow(clippy::too_many_arguments)]
    pub fn draw(&mut self, b: &[f32], b_chans: usize, b_first: usize, b_hw: usize, b_at: usize, r: usize, q: usize, c: usize) {
        let hw = self.h * self.w;
        for s in 0..self.n {
            for (v, l) in self.logits.iter_mut().enumerate() {
                let ch = c * LEVELS + v;
                *l = self.a[ch * hw + r * self.w + q] + b[(s * b_chans + ch - b_first) * b_hw + b_at];
            }
            let i = self.at(s, c, r, q);
            let v = pick_inverse_cdf(&self.logits, self.uniforms[i], self.temperature) as u8;
            self.img[i] = v;
            self.x[i] = scale_input(v as f32);
        }
    }
}
