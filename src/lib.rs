//! wgsr: a hand-written WGSL/wgpu inference engine for image super-resolution.
//!
//! Layers, bottom up: [`gpu`] (device, pipeline cache, dispatch records),
//! [`Tensor`] (NCHW storage buffers, f32 or f16), [`ops`] (one module per kernel
//! family in `kernels/*.wgsl`), [`graph`] (IR, memory planner, executor),
//! [`weights`] (safetensors, model directories), [`models`] (HCFlow, SR3,
//! PixelCNN), [`texture`] (a host's texture in, texture out), [`image_io`],
//! [`resize`] and [`metrics`].

pub mod error;
pub mod gpu;
pub mod graph;
pub mod image_io;
pub mod metrics;
pub mod models;
pub mod ops;
pub mod resize;
pub mod tensor;
pub mod texture;
pub mod weights;

pub use error::{Error, Result, ResultExt};
pub use gpu::GpuContext;
pub use tensor::{Dtype, Shape, Tensor};
