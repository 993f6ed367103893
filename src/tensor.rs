//! GPU tensors: an f32 storage buffer plus an NCHW shape.
//!
//! Every activation is f32 (the SR models show artifacts with f16 arithmetic).
//! Weights may arrive as f16 and are widened on upload.

use std::sync::Arc;

use crate::gpu::{BufArg, GpuContext};
use crate::{Error, Result};

/// NCHW shape. Non-image data uses the same four dims: a per-sample scalar is
/// `[n, 1, 1, 1]`, a matrix `[1, 1, rows, cols]`, a batch of matrices `[b, 1, rows, cols]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Shape(pub [usize; 4]);

impl Shape {
    pub const fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Shape([n, c, h, w])
    }
    pub fn n(&self) -> usize {
        self.0[0]
    }
    pub fn c(&self) -> usize {
        self.0[1]
    }
    pub fn h(&self) -> usize {
        self.0[2]
    }
    pub fn w(&self) -> usize {
        self.0[3]
    }
    pub fn hw(&self) -> usize {
        self.0[2] * self.0[3]
    }
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }
    pub fn bytes(&self) -> u64 {
        self.numel() as u64 * 4
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [n, c, h, w] = self.0;
        write!(f, "[{n}, {c}, {h}, {w}]")
    }
}

/// An f32 tensor resident on the GPU. Cloning shares the buffer.
#[derive(Clone)]
pub struct Tensor {
    buffer: Arc<wgpu::Buffer>,
    shape: Shape,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{}", self.shape)
    }
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl Tensor {
    /// Check a shape fits one storage binding of this device.
    pub fn check_fits(ctx: &GpuContext, shape: Shape) -> Result<()> {
        let max = ctx.max_binding_bytes();
        if shape.numel() == 0 {
            return Err(Error::Shape(format!("tensor {shape} has no elements")));
        }
        if shape.bytes() > max {
            return Err(Error::TooLarge(format!(
                "tensor {shape} needs {:.1} MiB as f32; this device binds at most {} MiB per storage buffer \
                 (use a smaller image or tile it)",
                shape.bytes() as f64 / (1 << 20) as f64,
                max >> 20
            )));
        }
        Ok(())
    }

    /// Uninitialised-by-contract tensor (wgpu zero-fills new buffers).
    pub fn empty(ctx: &GpuContext, shape: Shape) -> Result<Self> {
        Self::check_fits(ctx, shape)?;
        let buffer = ctx.storage_buffer("tensor", shape.bytes(), USAGE);
        Ok(Tensor { buffer: Arc::new(buffer), shape })
    }

    /// Upload f32 data.
    pub fn from_slice(ctx: &GpuContext, shape: Shape, data: &[f32]) -> Result<Self> {
        if data.len() != shape.numel() {
            return Err(Error::Shape(format!("{} values given for a tensor of shape {shape}", data.len())));
        }
        let t = Self::empty(ctx, shape)?;
        ctx.queue.write_buffer(&t.buffer, 0, bytemuck::cast_slice(data));
        Ok(t)
    }

    /// Upload f16 data, widened to f32 on the host.
    pub fn from_f16(ctx: &GpuContext, shape: Shape, data: &[half::f16]) -> Result<Self> {
        let wide: Vec<f32> = data.iter().map(|v| v.to_f32()).collect();
        Self::from_slice(ctx, shape, &wide)
    }

    /// A tensor filled with one value (tests poison outputs with NaN this way).
    pub fn filled(ctx: &GpuContext, shape: Shape, value: f32) -> Result<Self> {
        Self::check_fits(ctx, shape)?;
        Self::from_slice(ctx, shape, &vec![value; shape.numel()])
    }

    /// View an existing buffer (from a memory plan) as a tensor of `shape`.
    pub fn from_buffer(buffer: Arc<wgpu::Buffer>, shape: Shape) -> Result<Self> {
        if buffer.size() < shape.bytes() {
            return Err(Error::Shape(format!(
                "buffer of {} bytes is too small for tensor {shape} ({} bytes)",
                buffer.size(),
                shape.bytes()
            )));
        }
        Ok(Tensor { buffer, shape })
    }

    /// Same buffer, new shape with the same element count.
    pub fn reshape(&self, shape: Shape) -> Result<Self> {
        if shape.numel() != self.shape.numel() {
            return Err(Error::Shape(format!("cannot reshape {} to {shape}", self.shape)));
        }
        Ok(Tensor { buffer: self.buffer.clone(), shape })
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }
    pub fn buffer(&self) -> &Arc<wgpu::Buffer> {
        &self.buffer
    }
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    /// Binding for a kernel input.
    pub fn arg(&self) -> BufArg<'_> {
        BufArg { buffer: &self.buffer, size: self.shape.bytes(), read_only: true }
    }
    /// Binding for a kernel output (read-write).
    pub fn arg_mut(&self) -> BufArg<'_> {
        BufArg { buffer: &self.buffer, size: self.shape.bytes(), read_only: false }
    }

    /// Overwrite the contents from the host.
    pub fn write(&self, ctx: &GpuContext, data: &[f32]) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::Shape(format!("{} values written to a tensor of shape {}", data.len(), self.shape)));
        }
        ctx.queue.write_buffer(&self.buffer, 0, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Download to the host (waits for all submitted work).
    pub fn to_vec(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        Ok(Tensor::read_many(ctx, &[self])?.swap_remove(0))
    }

    /// Download several tensors through one staging buffer and one wait
    /// (each wait is a host/GPU round trip; small per-step reads add up).
    pub fn read_many(ctx: &GpuContext, tensors: &[&Tensor]) -> Result<Vec<Vec<f32>>> {
        let sizes: Vec<u64> = tensors.iter().map(|t| t.shape.bytes()).collect();
        let total: u64 = sizes.iter().sum();
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: total.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        let mut at = 0;
        for (t, &size) in tensors.iter().zip(&sizes) {
            enc.copy_buffer_to_buffer(&t.buffer, 0, &staging, at, size);
            at += size;
        }
        ctx.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        ctx.sync()?;
        rx.recv()
            .map_err(|_| Error::Device("readback callback never ran".into()))?
            .map_err(|e| Error::Device(format!("reading a tensor back failed: {e}")))?;
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| Error::Device(format!("mapping a readback buffer failed: {e}")))?;
            let all = bytemuck::cast_slice::<u8, f32>(&view);
            let mut at = 0;
            sizes
                .iter()
                .map(|&size| {
                    let n = (size / 4) as usize;
                    at += n;
                    all[at - n..at].to_vec()
                })
                .collect()
        };
        staging.unmap();
        Ok(out)
    }
}
