//! Texture in / texture out on lavapipe (issue 12): a texture the "host"
//! owns (rgba8unorm, rgba8unorm-srgb, rgba16float) goes through the tiny
//! HCFlow model on the GPU and comes back as a texture, equal to the image
//! path (`HcFlow::upscale` for RGB, `Plane::resize_bicubic` for alpha) within
//! one 8-bit level (pack4x8unorm rounds half up, the PNG path half to even;
//! the GPU alpha is f32, the CPU one f64) or f16 precision for rgba16float.

#[path = "kernels/common.rs"]
mod common;

use std::path::PathBuf;

use common::*;
use wgsr::image_io::{Plane, RgbImage};
use wgsr::models::hcflow::HcFlow;
use wgsr::texture::TextureUpscaler;
use wgsr::weights::ModelDir;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Read a texture back as f32 RGBA values (test side only).
fn read_texture(tex: &wgpu::Texture) -> Vec<f32> {
    let c = ctx();
    let (w, h) = (tex.width() as usize, tex.height() as usize);
    let bpp = if tex.format() == wgpu::TextureFormat::Rgba16Float { 8 } else { 4 };
    let row = (w * bpp).next_multiple_of(256);
    let buf = c.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: (row * h) as u64, usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
    let mut enc = c.device.create_command_encoder(&Default::default());
    enc.copy_texture_to_buffer(
        tex.as_image_copy(),
        wgpu::TexelCopyBufferInfo { buffer: &buf, layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(row as u32), rows_per_image: Some(h as u32) } },
        tex.size(),
    );
    c.queue.submit([enc.finish()]);
    buf.map_async(wgpu::MapMode::Read, .., |r| r.unwrap());
    c.sync().unwrap();
    let bytes = buf.get_mapped_range(..).unwrap().to_vec();
    let mut out = Vec::with_capacity(w * h * 4);
    for y in 0..h {
        let r = &bytes[y * row..y * row + w * bpp];
        if bpp == 4 {
            out.extend(r.iter().map(|&b| b as f32 / 255.0));
        } else {
            out.extend(r.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()));
        }
    }
    out
}

fn make_texture(format: wgpu::TextureFormat, w: u32, h: u32, rgba: &[f32]) -> wgpu::Texture {
    let c = ctx();
    let tex = c.device.create_texture(&wgpu::TextureDescriptor {
        label: Some("host texture"),
        size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_SRC | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let (bytes, bpp): (Vec<u8>, u32) = if format == wgpu::TextureFormat::Rgba16Float {
        (rgba.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(), 8)
    } else {
        (rgba.iter().map(|&v| (v * 255.0).round() as u8).collect(), 4)
    };
    c.queue.write_texture(
        tex.as_image_copy(),
        &bytes,
        wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(w * bpp), rows_per_image: Some(h) },
        tex.size(),
    );
    tex
}

#[test]
fn texture_round_trip_equals_the_image_path() {
    let c = ctx();
    let mut up = TextureUpscaler::new(HcFlow::load(c, ModelDir::load(fixture("hcflow_sr_x4_tiny")).unwrap()).unwrap());
    let (w, h) = (5usize, 3usize);
    let mut rng = Rng::new(12);
    for format in [wgpu::TextureFormat::Rgba8Unorm, wgpu::TextureFormat::Rgba8UnormSrgb, wgpu::TextureFormat::Rgba16Float] {
        // Values on the texture's own grid (8-bit levels / f16), so both paths see the same input.
        let q = |v: f32| if format == wgpu::TextureFormat::Rgba16Float { half::f16::from_f32(v).to_f32() } else { (v * 255.0).round() / 255.0 };
        let rgba: Vec<f32> = (0..w * h * 4).map(|_| q(rng.uniform() as f32)).collect();
        let tex = make_texture(format, w as u32, h as u32, &rgba);
        let out = up.upscale(c, &tex, Some(0.7), 3).unwrap();
        // A second frame of the same size reuses the buffers and gives the same texture.
        let again = up.upscale(c, &tex, Some(0.7), 3).unwrap();
        assert_eq!(read_texture(&again), read_texture(&out), "{format:?}: second frame differs");
        assert_eq!((out.width(), out.height(), out.format()), ((4 * w) as u32, (4 * h) as u32, format));
        let got = read_texture(&out);

        let planes: Vec<f32> = (0..3).flat_map(|ch| (0..w * h).map(move |i| (ch, i))).map(|(ch, i)| rgba[i * 4 + ch]).collect();
        let want_rgb = up.model().upscale(c, &RgbImage::new(w, h, planes).unwrap(), Some(0.7), 3).unwrap();
        let alpha = Plane::new(w, h, (0..w * h).map(|i| rgba[i * 4 + 3]).collect()).unwrap();
        let want_a = alpha.resize_bicubic(4 * w, 4 * h).unwrap();
        let n = 16 * w * h;
        let tol = if format == wgpu::TextureFormat::Rgba16Float { 1e-3 } else { 1.0 / 255.0 + 1e-6 };
        let mut worst = 0f32;
        for i in 0..n {
            for ch in 0..4 {
                let want = if ch < 3 { want_rgb.data[ch * n + i] } else { want_a.data[i] };
                worst = worst.max((got[i * 4 + ch] - want).abs());
            }
        }
        println!("{format:?}: max |texture path - image path| = {worst:.2e} (tolerance {tol:.1e})");
        assert!(worst <= tol, "{format:?}: {worst}");
    }
    // Unsupported formats and missing COPY_SRC are clear errors.
    let bad = c.device.create_texture(&wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d { width: 2, height: 2, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8Unorm,
        usage: wgpu::TextureUsages::TEXTURE_BINDING,
        view_formats: &[],
    });
    let e = up.upscale(c, &bad, None, 0).unwrap_err();
    assert!(e.to_string().contains("COPY_SRC"), "{e}");
}
