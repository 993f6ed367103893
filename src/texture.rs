//! Texture in, texture out on the host's own device ([`TextureUpscaler`]):
//! a game hands wgsr a `wgpu::Texture` (rgba8unorm, rgba8unorm-srgb or rgba16float, created with
//! `COPY_SRC`) and gets a new texture of the same format back, upscaled by
//! an HCFlow model, with no CPU round trip of the image: texels are copied
//! into a buffer, unpacked, run through the model's graph, the alpha channel
//! resized with bicubic (as for RGBA files), packed and copied into the new
//! texture. Everything is submitted on the host's queue in order and nothing
//! waits, so the host's next frame simply queues behind it.
//!
//! Values are used as stored: sRGB-encoded bytes stay sRGB-encoded (the
//! models work on display-referred values, like PNG pixels), and
//! rgba16float values are taken as the same [0, 1] display values.

use crate::models::hcflow::HcFlow;
use crate::ops::texel::{self, PlaneResize, TexelFormat};
use crate::{Error, GpuContext, Result, Shape, Tensor};

/// The texel layout of a supported texture format.
pub fn texel_format(f: wgpu::TextureFormat) -> Result<TexelFormat> {
    match f {
        wgpu::TextureFormat::Rgba8Unorm | wgpu::TextureFormat::Rgba8UnormSrgb => Ok(TexelFormat::Rgba8),
        wgpu::TextureFormat::Rgba16Float => Ok(TexelFormat::Rgba16F),
        other => Err(Error::InvalidArgument(format!(
            "texture format {other:?} is not supported; use rgba8unorm, rgba8unorm-srgb or rgba16float"
        ))),
    }
}

/// The per-size GPU buffers of a texture run, kept between calls so a game
/// that upscales every frame allocates nothing after the first one.
struct Buffers {
    key: (usize, usize, TexelFormat),
    words_in: Tensor,
    rgb: Tensor,
    alpha: Tensor,
    alpha_hr: Tensor,
    words_out: Tensor,
    resize: PlaneResize,
}

impl Buffers {
    fn new(ctx: &GpuContext, w: usize, h: usize, s: usize, fmt: TexelFormat) -> Result<Self> {
        Ok(Buffers {
            key: (w, h, fmt),
            words_in: Tensor::empty(ctx, Shape::new(1, 1, h, fmt.row_words(w)))?,
            rgb: Tensor::empty(ctx, Shape::new(1, 3, h, w))?,
            alpha: Tensor::empty(ctx, Shape::new(1, 1, h, w))?,
            alpha_hr: Tensor::empty(ctx, Shape::new(1, 1, h * s, w * s))?,
            words_out: Tensor::empty(ctx, Shape::new(1, 1, h * s, fmt.row_words(w * s)))?,
            resize: PlaneResize::new(ctx, w, h, s)?,
        })
    }
}

/// An HCFlow model that upscales the host's textures. Buffers and the
/// model's graph are built for the first texture size and reused while the
/// size and format stay the same.
pub struct TextureUpscaler {
    model: HcFlow,
    buffers: Option<Buffers>,
}

impl TextureUpscaler {
    pub fn new(model: HcFlow) -> Self {
        TextureUpscaler { model, buffers: None }
    }

    pub fn model(&mut self) -> &mut HcFlow {
        &mut self.model
    }

    /// Upscale `input` (mip level 0); heat `None` = the model's default,
    /// same seed = same result as `HcFlow::upscale` on the same pixels. The
    /// returned texture has the input's format and `TEXTURE_BINDING |
    /// COPY_SRC | COPY_DST` usage.
    pub fn upscale(&mut self, ctx: &GpuContext, input: &wgpu::Texture, heat: Option<f32>, seed: u64) -> Result<wgpu::Texture> {
        let fmt = texel_format(input.format())?;
        if !input.usage().contains(wgpu::TextureUsages::COPY_SRC) {
            return Err(Error::InvalidArgument("the input texture needs COPY_SRC usage (wgsr copies its texels on the GPU)".into()));
        }
        if input.dimension() != wgpu::TextureDimension::D2 || input.depth_or_array_layers() != 1 || input.sample_count() != 1 {
            return Err(Error::InvalidArgument("the input must be a single 2-D, single-sample texture".into()));
        }
        let (w, h) = (input.width() as usize, input.height() as usize);
        let s = self.model.scale();
        let max = ctx.info().limits.max_texture_dimension_2d as usize;
        if w * s > max || h * s > max {
            return Err(Error::TooLarge(format!("a {w}x{h} texture x{s} is {}x{}; this device's textures are at most {max} wide", w * s, h * s)));
        }
        if !matches!(&self.buffers, Some(b) if b.key == (w, h, fmt)) {
            self.buffers = None; // free the old size first
            self.buffers = Some(Buffers::new(ctx, w, h, s, fmt)?);
        }
        let b = self.buffers.as_ref().expect("just built");
        let (rw, rw_out) = (fmt.row_words(w), fmt.row_words(w * s));

        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("texture -> texels") });
        enc.copy_texture_to_buffer(
            input.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: b.words_in.buffer(),
                layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some((rw * 4) as u32), rows_per_image: Some(h as u32) },
            },
            input.size(),
        );
        ctx.queue.submit([enc.finish()]);
        ctx.submit(&[texel::unpack(ctx, &b.words_in, fmt, &b.rgb, &b.alpha)?]);

        let hr = self.model.upscale_tensor(ctx, &b.rgb, heat, seed)?;
        let mut ds = b.resize.prepare(ctx, &b.alpha, &b.alpha_hr)?;
        ds.push(texel::pack(ctx, hr, &b.alpha_hr, fmt, &b.words_out)?);
        ctx.submit(&ds);

        let out = ctx.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("wgsr upscaled"),
            size: wgpu::Extent3d { width: (w * s) as u32, height: (h * s) as u32, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: input.format(),
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_SRC | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("texels -> texture") });
        enc.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer: b.words_out.buffer(),
                layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some((rw_out * 4) as u32), rows_per_image: Some((h * s) as u32) },
            },
            out.as_image_copy(),
            out.size(),
        );
        ctx.queue.submit([enc.finish()]);
        Ok(out)
    }
}
