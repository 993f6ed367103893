//! Every storage buffer wgsr creates goes through here, so the context can
//! count the bytes: the graph tests check that an executor allocates exactly
//! what its memory plan reports, scratch included.

use std::sync::atomic::{AtomicU64, Ordering};

use wgpu::util::DeviceExt;

use crate::gpu::GpuContext;

/// Running total of storage-buffer bytes created on one context.
#[derive(Default, Debug)]
pub(crate) struct StorageCounter(AtomicU64);

impl GpuContext {
    /// A new storage buffer of `size` bytes (zero-filled by wgpu).
    pub(crate) fn storage_buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.storage.0.fetch_add(size, Ordering::Relaxed);
        self.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
    }

    /// A new storage buffer holding `contents`.
    pub(crate) fn storage_buffer_init(&self, label: &str, contents: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.storage.0.fetch_add(contents.len() as u64, Ordering::Relaxed);
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage })
    }

    /// Storage-buffer bytes created on this context so far (tensors, weights,
    /// graph buffers; not uniform blocks or readback staging).
    pub fn storage_bytes_created(&self) -> u64 {
        self.storage.0.load(Ordering::Relaxed)
    }
}
