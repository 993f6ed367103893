//! GPU tensors: a storage buffer of f32 or f16 elements plus an NCHW shape.
//!
//! Arithmetic is always f32 (the SR models show artifacts with f16
//! arithmetic); f16 is a storage format only (`Dtype::F16`, graphs built with
//! `Precision::F16`): kernels widen on load and round on store. The host side
//! always sees f32: uploads round, downloads widen.

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
    /// Bytes as f32 (see [`Shape::bytes_as`]).
    pub fn bytes(&self) -> u64 {
        self.bytes_as(Dtype::F32)
    }
    pub fn bytes_as(&self, dtype: Dtype) -> u64 {
        self.numel() as u64 * dtype.size()
    }
}

/// Element type of a tensor's storage.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Dtype {
    #[default]
    F32,
    /// IEEE binary16 storage (needs the device's `SHADER_F16`); kernels
    /// compute in f32.
    F16,
}

impl Dtype {
    pub const fn size(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }
    /// WGSL scalar type name.
    pub const fn wgsl(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
        }
    }
    pub const fn name(self) -> &'static str {
        self.wgsl()
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Host values in a tensor's storage format (f16 rounds to nearest even).
pub(crate) fn encode(data: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => bytemuck::cast_slice(data).to_vec(),
        Dtype::F16 => data.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
    }
}

/// Stored bytes back to f32 (exact for both formats).
fn decode(bytes: &[u8], dtype: Dtype) -> Vec<f32> {
    match dtype {
        Dtype::F32 => bytemuck::pod_collect_to_vec(bytes),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [n, c, h, w] = self.0;
        write!(f, "[{n}, {c}, {h}, {w}]")
    }
}

/// A tensor resident on the GPU (f32 or f16 storage). Cloning shares the buffer.
#[derive(Clone)]
pub struct Tensor {
    buffer: Arc<wgpu::Buffer>,
    shape: Shape,
    dtype: Dtype,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.dtype {
            Dtype::F32 => write!(f, "Tensor{}", self.shape),
            d => write!(f, "Tensor{}:{d}", self.shape),
        }
    }
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl Tensor {
    /// Check a shape fits one storage binding of this device as f32.
    pub fn check_fits(ctx: &GpuContext, shape: Shape) -> Result<()> {
        Self::check_fits_as(ctx, shape, Dtype::F32)
    }

    /// Check a shape fits one storage binding of this device as `dtype`
    /// (and that the device can store `dtype`).
    pub fn check_fits_as(ctx: &GpuContext, shape: Shape, dtype: Dtype) -> Result<()> {
        let max = ctx.max_binding_bytes();
        if shape.numel() == 0 {
            return Err(Error::Shape(format!("tensor {shape} has no elements")));
        }
        ctx.check_dtype(dtype)?;
        if shape.bytes_as(dtype) > max {
            return Err(Error::TooLarge(format!(
                "tensor {shape} needs {:.1} MiB as {dtype}; this device binds at most {} MiB per storage buffer \
                 (use a smaller image or tile it)",
                shape.bytes_as(dtype) as f64 / (1 << 20) as f64,
                max >> 20
            )));
        }
        Ok(())
    }

    /// Uninitialised-by-contract f32 tensor (wgpu zero-fills new buffers).
    pub fn empty(ctx: &GpuContext, shape: Shape) -> Result<Self> {
        Self::empty_as(ctx, shape, Dtype::F32)
    }

    /// Uninitialised-by-contract tensor stored as `dtype`.
    pub fn empty_as(ctx: &GpuContext, shape: Shape, dtype: Dtype) -> Result<Self> {
        Self::check_fits_as(ctx, shape, dtype)?;
        // Rounded up to 4 bytes: wgpu sizes buffers and bindings in words.
        let buffer = ctx.storage_buffer("tensor", shape.bytes_as(dtype).next_multiple_of(4), USAGE);
        Ok(Tensor { buffer: Arc::new(buffer), shape, dtype })
    }

    /// Upload f32 data.
    pub fn from_slice(ctx: &GpuContext, shape: Shape, data: &[f32]) -> Result<Self> {
        Self::from_slice_as(ctx, shape, data, Dtype::F32)
    }

    /// Upload f32 data into a tensor stored as `dtype` (f16: rounded to
    /// nearest even on the host).
    pub fn from_slice_as(ctx: &GpuContext, shape: Shape, data: &[f32], dtype: Dtype) -> Result<Self> {
        if data.len() != shape.numel() {
            return Err(Error::Shape(format!("{} values given for a tensor of shape {shape}", data.len())));
        }
        let t = Self::empty_as(ctx, shape, dtype)?;
        t.write(ctx, data)?;
        Ok(t)
    }

    /// Upload f16 data, widened to f32 on the host.
    pub fn from_f16(ctx: &GpuContext, shape: Shape, data: &[half::f16]) -> Result<Self> {
        let wide: Vec<f32> = data.iter().map(|v| v.to_f32()).collect();
        Self::from_slice(ctx, shape, &wide)
    }

    /// A tensor filled with one value (tests poison outputs with NaN this way).
    pub fn filled(ctx: &GpuContext, shape: Shape, value: f32) -> Result<Self> {
        Self::filled_as(ctx, shape, value, Dtype::F32)
    }

    /// [`Tensor::filled`] stored as `dtype`.
    pub fn filled_as(ctx: &GpuContext, shape: Shape, value: f32, dtype: Dtype) -> Result<Self> {
        Self::check_fits_as(ctx, shape, dtype)?;
        Self::from_slice_as(ctx, shape, &vec![value; shape.numel()], dtype)
    }

    /// View an existing buffer (from a memory plan) as a tensor of `shape`
    /// stored as `dtype`.
    pub fn from_buffer(buffer: Arc<wgpu::Buffer>, shape: Shape, dtype: Dtype) -> Result<Self> {
        if buffer.size() < shape.bytes_as(dtype) {
            return Err(Error::Shape(format!(
                "buffer of {} bytes is too small for tensor {shape} as {dtype} ({} bytes)",
                buffer.size(),
                shape.bytes_as(dtype)
            )));
        }
        Ok(Tensor { buffer, shape, dtype })
    }

    /// Same buffer, new shape with the same element count.
    pub fn reshape(&self, shape: Shape) -> Result<Self> {
        if shape.numel() != self.shape.numel() {
            return Err(Error::Shape(format!("cannot reshape {} to {shape}", self.shape)));
        }
        Ok(Tensor { buffer: self.buffer.clone(), shape, dtype: self.dtype })
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }
    /// Bytes of its elements in its storage format.
    pub fn bytes(&self) -> u64 {
        self.shape.bytes_as(self.dtype)
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

    /// Bytes of its storage in whole words (an odd number of f16 values ends
    /// in padding): what bindings and buffer copies cover.
    pub fn padded_bytes(&self) -> u64 {
        self.bytes().next_multiple_of(4)
    }

    /// Binding for a kernel input.
    pub fn arg(&self) -> BufArg<'_> {
        BufArg { buffer: &self.buffer, size: self.padded_bytes(), read_only: true, dtype: self.dtype }
    }
    /// Binding for a kernel output (read-write).
    pub fn arg_mut(&self) -> BufArg<'_> {
        BufArg { buffer: &self.buffer, size: self.padded_bytes(), read_only: false, dtype: self.dtype }
    }

    /// Overwrite the contents from the host (rounded to the storage format).
    pub fn write(&self, ctx: &GpuContext, data: &[f32]) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::Shape(format!("{} values written to a tensor of shape {}", data.len(), self.shape)));
        }
        let mut bytes = encode(data, self.dtype);
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        ctx.queue.write_buffer(&self.buffer, 0, &bytes);
        Ok(())
    }

    /// Download to the host (waits for all submitted work).
    pub fn to_vec(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        Ok(Tensor::read_many(ctx, &[self])?.swap_remove(0))
    }

    /// Download several tensors through one staging buffer and one wait
    /// (each wait is a host/GPU round trip; small per-step reads add up).
    pub fn read_many(ctx: &GpuContext, tensors: &[&Tensor]) -> Result<Vec<Vec<f32>>> {
        let sizes: Vec<u64> = tensors.iter().map(|t| t.padded_bytes()).collect();
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
            let mut at = 0usize;
            tensors
                .iter()
                .zip(&sizes)
                .map(|(t, &size)| {
                    let bytes = &view[at..at + t.bytes() as usize];
                    at += size as usize;
                    decode(bytes, t.dtype)
                })
                .collect()
        };
        staging.unmap();
        Ok(out)
    }
}
