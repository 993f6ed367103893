//! The GPU context: one wgpu device + queue, how it was chosen, and the
//! per-device caches (pipelines, bind group layouts) every kernel uses.

use std::sync::Arc;

use crate::gpu::faults::Faults;
use crate::gpu::memory::StorageCounter;
use crate::gpu::pipelines::PipelineCache;
use crate::gpu::shader::Traits;
use crate::{Error, Result};

/// How to pick an adapter. `Default` reads `WGSR_BACKEND` and `WGSR_ADAPTER`.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Restrict to one backend: "vulkan", "metal", "dx12", "gl" (comma lists allowed).
    pub backend: Option<String>,
    /// Pick an adapter by index in the enumeration or by a case-insensitive
    /// substring of its name (e.g. "llvmpipe", "nvidia").
    pub adapter: Option<String>,
}

impl ContextOptions {
    /// Options from the environment: `WGSR_BACKEND`, `WGSR_ADAPTER`.
    pub fn from_env() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        ContextOptions { backend: get("WGSR_BACKEND"), adapter: get("WGSR_ADAPTER") }
    }
}

/// Summary of the adapter a context runs on.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    /// Subgroup sizes the adapter reports (min, max); None for a host device
    /// handed over without its adapter info.
    pub subgroup_sizes: Option<(u32, u32)>,
    /// What kernels are composed for on this device (see [`Traits`]).
    pub traits: Traits,
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "adapter:      {}", self.name)?;
        writeln!(f, "backend:      {}", self.backend)?;
        writeln!(f, "device type:  {}", self.device_type)?;
        writeln!(f, "driver:       {} {}", self.driver, self.driver_info)?;
        let l = &self.limits;
        writeln!(f, "limits:")?;
        writeln!(f, "  max_storage_buffer_binding_size: {} MiB", l.max_storage_buffer_binding_size as u64 >> 20)?;
        writeln!(f, "  max_buffer_size:                 {} MiB", l.max_buffer_size >> 20)?;
        writeln!(f, "  max_storage_buffers_per_shader_stage: {}", l.max_storage_buffers_per_shader_stage)?;
        writeln!(f, "  max_compute_workgroup_storage_size: {} B", l.max_compute_workgroup_storage_size)?;
        writeln!(f, "  max_compute_invocations_per_workgroup: {}", l.max_compute_invocations_per_workgroup)?;
        writeln!(f, "  max_compute_workgroups_per_dimension: {}", l.max_compute_workgroups_per_dimension)?;
        if let Some((lo, hi)) = self.subgroup_sizes {
            writeln!(f, "subgroups:    {lo}..{hi} lanes{}", if self.traits.subgroups { " (kernels use them)" } else { "" })?;
        }
        write!(f, "features:     {:?}", self.features)
    }
}

/// A wgpu device and queue plus wgsr's caches. Cheap to share behind `Arc`;
/// all methods take `&self`.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    info: DeviceInfo,
    pub(crate) pipelines: PipelineCache,
    pub(crate) storage: StorageCounter,
    pub(crate) faults: Arc<Faults>,
}

const NO_ADAPTER_HELP: &str = "wgsr needs a GPU adapter through Vulkan, Metal, DX12 or GL. \
On a Linux machine without a GPU, install Mesa's software Vulkan driver (lavapipe): \
`apt-get install -y mesa-vulkan-drivers libvulkan1`. Check with `wgsr info`.";

fn parse_backends(s: &str) -> Result<wgpu::Backends> {
    let mut b = wgpu::Backends::empty();
    for part in s.split(',').map(|p| p.trim().to_ascii_lowercase()) {
        b |= match part.as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            "all" | "" => wgpu::Backends::all(),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown backend '{other}' (expected vulkan, metal, dx12, gl or all)"
                )))
            }
        };
    }
    Ok(b)
}

impl GpuContext {
    /// Create a context on the adapter chosen by `WGSR_BACKEND` / `WGSR_ADAPTER`
    /// (default: the best adapter of any backend, a discrete GPU first).
    pub fn new() -> Result<Self> {
        Self::with_options(&ContextOptions::from_env())
    }

    /// Create a context, choosing the adapter with `opts`.
    pub fn with_options(opts: &ContextOptions) -> Result<Self> {
        let backends = match &opts.backend {
            Some(s) => parse_backends(s)?,
            None => wgpu::Backends::all(),
        };
        let mut idesc = wgpu::InstanceDescriptor::new_without_display_handle();
        idesc.backends = backends;
        let instance = wgpu::Instance::new(idesc);
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        if adapters.is_empty() {
            return Err(Error::NoAdapter(format!(
                "none found for backends {backends:?}. {NO_ADAPTER_HELP}"
            )));
        }
        let adapter = match &opts.adapter {
            Some(sel) => pick_adapter(adapters, sel)?,
            None => best_adapter(adapters),
        };
        Self::from_adapter(&adapter)
    }

    /// Create a device on a given adapter, asking for the adapter's full limits
    /// and the optional features wgsr can use (f16, timestamps, subgroups).
    pub fn from_adapter(adapter: &wgpu::Adapter) -> Result<Self> {
        let wanted = wgpu::Features::SHADER_F16
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted;
        let desc = wgpu::DeviceDescriptor {
            label: Some("wgsr"),
            required_features: features,
            required_limits: adapter.limits(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::Device(format!("could not create a device on '{}': {e}", adapter.get_info().name)))?;
        let ctx = Self::from_parts(device, queue, Some(adapter.get_info()));
        ctx.faults.watch(&ctx.device);
        Ok(ctx)
    }

    /// Wrap a device and queue the host application already owns (a game's
    /// renderer, say). wgsr creates no device of its own; it uses whatever
    /// features and limits that device was created with.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, adapter_info: Option<wgpu::AdapterInfo>) -> Self {
        Self::from_parts(device, queue, adapter_info)
    }

    fn from_parts(device: wgpu::Device, queue: wgpu::Queue, ai: Option<wgpu::AdapterInfo>) -> Self {
        let info = DeviceInfo {
            name: ai.as_ref().map(|a| a.name.clone()).unwrap_or_else(|| "host-provided device".into()),
            backend: ai.as_ref().map(|a| format!("{:?}", a.backend)).unwrap_or_else(|| "unknown".into()),
            device_type: ai.as_ref().map(|a| format!("{:?}", a.device_type)).unwrap_or_else(|| "unknown".into()),
            driver: ai.as_ref().map(|a| a.driver.clone()).unwrap_or_default(),
            driver_info: ai.as_ref().map(|a| a.driver_info.clone()).unwrap_or_default(),
            features: device.features(),
            limits: device.limits(),
            subgroup_sizes: ai.as_ref().map(|a| (a.subgroup_min_size, a.subgroup_max_size)),
            traits: Traits::default(),
        };
        let info = DeviceInfo { traits: device_traits(&info), ..info };
        GpuContext {
            device,
            queue,
            info,
            pipelines: PipelineCache::default(),
            storage: StorageCounter::default(),
            faults: Arc::default(),
        }
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Largest buffer range one storage binding may cover, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        (self.info.limits.max_storage_buffer_binding_size as u64).min(self.info.limits.max_buffer_size)
    }

    pub fn has_f16(&self) -> bool {
        self.info.features.contains(wgpu::Features::SHADER_F16)
    }

    /// Whether this device can store tensors as `dtype` (f16 storage needs
    /// `SHADER_F16`); the error says what to use instead.
    pub fn check_dtype(&self, dtype: crate::tensor::Dtype) -> Result<()> {
        if dtype == crate::tensor::Dtype::F16 && !self.has_f16() {
            return Err(Error::InvalidArgument(format!(
                "f16 storage needs the SHADER_F16 feature, which '{}' does not offer (use precision f32)",
                self.info.name
            )));
        }
        Ok(())
    }

    pub fn has_timestamps(&self) -> bool {
        self.info.features.contains(wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    }

    /// Block until all submitted GPU work is done.
    pub fn sync(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Device(format!("waiting for the GPU failed: {e}")))?;
        self.check_faults()
    }
}

/// The kernel traits of a device. Subgroup kernels need the SUBGROUP
/// feature and subgroups of at least 8 lanes on every dispatch (they keep 8
/// weight vectors per subgroup); `WGSR_NO_SUBGROUPS` set in the environment
/// turns them off so CI also tests the plain kernels on lavapipe.
fn device_traits(info: &DeviceInfo) -> Traits {
    let lanes = info.subgroup_sizes.is_some_and(|(lo, _)| lo >= 8);
    let subgroups = lanes && info.features.contains(wgpu::Features::SUBGROUP) && std::env::var_os("WGSR_NO_SUBGROUPS").is_none();
    Traits { subgroups }
}

fn best_adapter(mut adapters: Vec<wgpu::Adapter>) -> wgpu::Adapter {
    let rank = |a: &wgpu::Adapter| {
        let i = a.get_info();
        let ty = match i.device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Cpu => 3,
            wgpu::DeviceType::Other => 4,
        };
        // Prefer Vulkan/Metal/DX12 over GL on the same device.
        let be = if i.backend == wgpu::Backend::Gl { 1 } else { 0 };
        (ty, be)
    };
    adapters.sort_by_key(rank);
    adapters.swap_remove(0)
}

fn pick_adapter(adapters: Vec<wgpu::Adapter>, sel: &str) -> Result<wgpu::Adapter> {
    let names: Vec<String> = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let inf = a.get_info();
            format!("  [{i}] {} ({:?})", inf.name, inf.backend)
        })
        .collect();
    if let Ok(idx) = sel.trim().parse::<usize>() {
        if idx < adapters.len() {
            return Ok(adapters.into_iter().nth(idx).unwrap());
        }
    } else {
        let needle = sel.to_ascii_lowercase();
        if let Some(a) = adapters.into_iter().find(|a| a.get_info().name.to_ascii_lowercase().contains(&needle)) {
            return Ok(a);
        }
    }
    Err(Error::NoAdapter(format!("no adapter matches '{sel}'. Available:\n{}", names.join("\n"))))
}

/// Every adapter wgpu can see, for `wgsr info`.
pub fn list_adapters() -> Vec<wgpu::AdapterInfo> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(|a| a.get_info())
        .collect()
}

/// Shared handle type for contexts.
pub type SharedContext = Arc<GpuContext>;
