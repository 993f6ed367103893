//! Texture texels <-> NCHW planes and a separable bicubic resize of one plane
//! (kernels/texel.wgsl), the GPU half of `wgsr::texture`: a host's texture
//! reaches a model and comes back without a CPU round trip. Texels travel
//! as raw words in a tensor the texture was copied into (rows padded to
//! wgpu's 256-byte copy alignment).

use crate::gpu::{grid_1d, to_u32, wg_entries, Dispatch, EntryPoint, GpuContext, KernelCall, KernelParams, ShaderSource, WG};
use crate::resize::bicubic_taps;
use crate::{Error, Result, Shape, Tensor};

const ENTRIES: [EntryPoint; 4] = wg_entries(["unpack_texels", "pack_texels", "resize_rows", "resize_cols"]);
pub(crate) const SHADER: ShaderSource =
    ShaderSource::new("texel", include_str!("../../kernels/texel.wgsl")).params(&[TexelUniform::LAYOUT]).entries(&ENTRIES);

crate::kernel_params! {
    /// Uniform block of kernels/texel.wgsl.
    pub struct TexelUniform = "texel"::"Params" {
        w: u32,
        h: u32,
        row_words: u32,
        format: u32,
        n_in: u32,
        n_out: u32,
        taps: u32,
        other: u32,
    }
}

/// Texel layouts the kernels read and write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TexelFormat {
    /// rgba8unorm and rgba8unorm-srgb: one word a texel.
    Rgba8,
    /// rgba16float: two words a texel.
    Rgba16F,
}

impl TexelFormat {
    pub fn words_per_texel(self) -> usize {
        match self {
            TexelFormat::Rgba8 => 1,
            TexelFormat::Rgba16F => 2,
        }
    }
    fn code(self) -> u32 {
        match self {
            TexelFormat::Rgba8 => 0,
            TexelFormat::Rgba16F => 1,
        }
    }
    /// Words per row of a `w`-texel image, padded to wgpu's copy alignment.
    pub fn row_words(self, w: usize) -> usize {
        let bytes = w * 4 * self.words_per_texel();
        bytes.next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT as usize) / 4
    }
}

fn texel_call(ctx: &GpuContext, entry: &str, p: &TexelUniform, buffers: &[crate::gpu::BufArg<'_>], n: usize) -> Result<Dispatch> {
    Ok(ctx
        .dispatch(KernelCall { shader: &SHADER, entry, constants: &[], params: Some(p), buffers, workgroups: grid_1d(n.div_ceil(WG)) })?
        .with_cost(0.0, 32.0 * n as f64))
}

fn check_words(op: &str, words: &Tensor, fmt: TexelFormat, w: usize, h: usize) -> Result<usize> {
    let rw = fmt.row_words(w);
    if words.numel() < rw * h {
        return Err(Error::Shape(format!("{op}: {w}x{h} {fmt:?} texels need {} words, the buffer has {}", rw * h, words.numel())));
    }
    Ok(rw)
}

/// `rgb` [1,3,h,w] and `alpha` [1,1,h,w] from the texel words of a w x h texture.
pub fn unpack(ctx: &GpuContext, words: &Tensor, fmt: TexelFormat, rgb: &Tensor, alpha: &Tensor) -> Result<Dispatch> {
    let (h, w) = (rgb.shape().h(), rgb.shape().w());
    if rgb.shape() != Shape::new(1, 3, h, w) || alpha.shape() != Shape::new(1, 1, h, w) {
        return Err(Error::Shape(format!("texel.unpack: rgb {} / alpha {} must be [1,3,h,w] / [1,1,h,w]", rgb.shape(), alpha.shape())));
    }
    let rw = check_words("texel.unpack", words, fmt, w, h)?;
    let p = TexelUniform { w: to_u32(w), h: to_u32(h), row_words: to_u32(rw), format: fmt.code(), ..Default::default() };
    texel_call(ctx, "unpack_texels", &p, &[rgb.arg_mut(), alpha.arg_mut(), words.arg_mut()], w * h)
}

/// Texel words of a w x h texture from `rgb` [1,3,h,w] and `alpha` [1,1,h,w].
pub fn pack(ctx: &GpuContext, rgb: &Tensor, alpha: &Tensor, fmt: TexelFormat, words: &Tensor) -> Result<Dispatch> {
    let (h, w) = (rgb.shape().h(), rgb.shape().w());
    if rgb.shape() != Shape::new(1, 3, h, w) || alpha.shape() != Shape::new(1, 1, h, w) {
        return Err(Error::Shape(format!("texel.pack: rgb {} / alpha {} must be [1,3,h,w] / [1,1,h,w]", rgb.shape(), alpha.shape())));
    }
    let rw = check_words("texel.pack", words, fmt, w, h)?;
    let p = TexelUniform { w: to_u32(w), h: to_u32(h), row_words: to_u32(rw), format: fmt.code(), ..Default::default() };
    texel_call(ctx, "pack_texels", &p, &[rgb.arg_mut(), alpha.arg_mut(), words.arg_mut()], w * h)
}

/// MATLAB-bicubic resize of one plane by an integer factor on the GPU (rows
/// first, as `resize::imresize_plane` on ties), with the same tap tables as
/// the CPU path. Holds its tables and intermediate; `prepare` records the
/// two passes from `src` [1,1,h,w] into `dst` [1,1,h*s,w*s].
pub struct PlaneResize {
    w: usize,
    h: usize,
    s: usize,
    rows: (Tensor, Tensor, usize),
    cols: (Tensor, Tensor, usize),
    mid: Tensor,
}

fn tap_tables(ctx: &GpuContext, n_in: usize, s: usize) -> Result<(Tensor, Tensor, usize)> {
    let taps = bicubic_taps(n_in, n_in * s, s as f64);
    let k = taps.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let (mut idx, mut wt) = (vec![0u32; taps.len() * k], vec![0f32; taps.len() * k]);
    for (o, t) in taps.iter().enumerate() {
        for (j, &(i, w)) in t.iter().enumerate() {
            idx[o * k + j] = to_u32(i);
            wt[o * k + j] = w as f32;
        }
    }
    let shape = Shape::new(1, 1, taps.len(), k);
    let idx_t = Tensor::from_slice(ctx, shape, bytemuck::cast_slice(&idx))?;
    Ok((idx_t, Tensor::from_slice(ctx, shape, &wt)?, k))
}

impl PlaneResize {
    pub fn new(ctx: &GpuContext, w: usize, h: usize, s: usize) -> Result<Self> {
        if w == 0 || h == 0 || s == 0 {
            return Err(Error::InvalidArgument(format!("texel resize: {w}x{h} by {s}")));
        }
        Ok(PlaneResize {
            w,
            h,
            s,
            rows: tap_tables(ctx, h, s)?,
            cols: tap_tables(ctx, w, s)?,
            mid: Tensor::empty(ctx, Shape::new(1, 1, h * s, w))?,
        })
    }

    pub fn prepare(&self, ctx: &GpuContext, src: &Tensor, dst: &Tensor) -> Result<Vec<Dispatch>> {
        let (w, h, s) = (self.w, self.h, self.s);
        if src.shape() != Shape::new(1, 1, h, w) || dst.shape() != Shape::new(1, 1, h * s, w * s) {
            return Err(Error::Shape(format!("texel resize: built for {w}x{h} x{s}, got {} -> {}", src.shape(), dst.shape())));
        }
        let (ri, rw, rk) = &self.rows;
        let pr = TexelUniform { n_in: to_u32(h), n_out: to_u32(h * s), taps: to_u32(*rk), other: to_u32(w), ..Default::default() };
        let a = texel_call(ctx, "resize_rows", &pr, &[self.mid.arg_mut(), src.arg(), ri.arg(), rw.arg()], h * s * w)?;
        let (ci, cw, ck) = &self.cols;
        let pc = TexelUniform { n_in: to_u32(w), n_out: to_u32(w * s), taps: to_u32(*ck), other: to_u32(h * s), ..Default::default() };
        let b = texel_call(ctx, "resize_cols", &pc, &[dst.arg_mut(), self.mid.arg(), ci.arg(), cw.arg()], h * s * w * s)?;
        Ok(vec![a, b])
    }
}
