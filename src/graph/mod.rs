//! Static graph interpreter: build once (shapes inferred, weights bound),
//! plan memory, prepare dispatches once, replay many times.

pub mod autodiff;
mod builder;
mod cache;
mod exec;
mod ir;
mod op;
pub mod ops;
mod plan;
mod profile;

pub use builder::GraphBuilder;
pub use cache::GraphCache;
pub use exec::Executor;
pub use ir::{Graph, Node, Role, TensorId, TensorInfo};
pub use op::{Alias, Op, OutputSpec, ParamValues};
pub use plan::{plan_memory, MemoryPlan};
pub use profile::{Profile, ProfileRow};
