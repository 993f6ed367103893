//! GPU side: device selection, pipeline cache, dispatch records.

mod context;
mod memory;
mod pipelines;
mod timing;

pub use context::{list_adapters, ContextOptions, DeviceInfo, GpuContext, SharedContext};
pub use pipelines::{grid_1d, BufArg, Dispatch, KernelCall, Params, ShaderSource};
pub use timing::TimingSource;
