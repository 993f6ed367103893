//! GPU side: device selection, pipeline cache, dispatch records, typed
//! uniform blocks and WGSL composition.

pub mod codes;
mod context;
mod faults;
mod memory;
mod params;
mod pipelines;
mod shader;
mod timing;

pub use codes::{ActCode, BiasMode, ConvMode, SoftmaxMode, CHUNK, WG};
pub use context::{list_adapters, ContextOptions, DeviceInfo, GpuContext, SharedContext};
pub use params::{to_i32, to_u32, KernelParams, ParamField, ParamsBlock, ParamsLayout, ScalarKind, WgslScalar};
pub use pipelines::{grid_1d, BufArg, Dispatch, KernelCall};
pub use shader::{binding_classes, compose, compose_as, compose_for, prelude_text, BindingClass, Storage, Traits, wg_entries, Composed, EntryPoint, ShaderSource, PRELUDE, PRELUDE_NAME};
pub use timing::TimingSource;
