//! Compiled-pipeline cache and the `Dispatch` record every kernel produces.
//!
//! Binding convention shared by all WGSL files in `kernels/`:
//! `@group(0) @binding(0)` is the op's uniform parameter block (when it has
//! one), followed by the storage buffers in the order the Rust wrapper passes
//! them. Layouts are explicit (not `layout: auto`), so an entry point that
//! ignores a binding still validates, and pipelines with the same signature
//! share one bind-group layout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::gpu::GpuContext;
use crate::{Error, Result};

/// A WGSL file compiled into the binary. Each op family declares one:
/// `const SHADER: ShaderSource = ShaderSource::new("conv", include_str!("../../kernels/conv.wgsl"));`
#[derive(Clone, Copy, Debug)]
pub struct ShaderSource {
    pub name: &'static str,
    pub source: &'static str,
}

impl ShaderSource {
    pub const fn new(name: &'static str, source: &'static str) -> Self {
        ShaderSource { name, source }
    }
}

/// One storage-buffer binding: a buffer range and whether the shader only reads it.
#[derive(Clone, Copy)]
pub struct BufArg<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub size: u64,
    pub read_only: bool,
}

/// Signature of a bind group layout: uniform at 0 or not, then read-only flags.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct LayoutKey {
    uniform: bool,
    read_only: Vec<bool>,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct PipelineKey {
    shader: &'static str,
    entry: String,
    constants: Vec<(String, u64)>,
    layout: LayoutKey,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    layouts: Mutex<HashMap<LayoutKey, (Arc<wgpu::BindGroupLayout>, Arc<wgpu::PipelineLayout>)>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    pub(crate) fn len(&self) -> usize {
        self.pipelines.lock().unwrap().len()
    }
}

/// Uniform parameter block builder: 32-bit words, padded to 16 bytes.
/// Push fields in the order of the WGSL struct (all u32/i32/f32 scalars).
#[derive(Clone, Debug, Default)]
pub struct Params(Vec<u32>);

impl Params {
    pub fn new() -> Self {
        Params(Vec::new())
    }
    pub fn u(mut self, v: usize) -> Self {
        self.0.push(u32::try_from(v).expect("kernel parameter does not fit in u32"));
        self
    }
    pub fn i(mut self, v: i64) -> Self {
        self.0.push(i32::try_from(v).expect("kernel parameter does not fit in i32") as u32);
        self
    }
    pub fn f(mut self, v: f32) -> Self {
        self.0.push(v.to_bits());
        self
    }
    pub fn words(&self) -> &[u32] {
        &self.0
    }
    /// Bytes padded to a multiple of 16 (uniform buffer rule).
    pub fn bytes(&self) -> Vec<u8> {
        let mut w = self.0.clone();
        while w.is_empty() || w.len() % 4 != 0 {
            w.push(0);
        }
        bytemuck::cast_slice(&w).to_vec()
    }
}

/// A recorded kernel launch: pipeline, prebuilt bind group and grid. Produced
/// once by an op wrapper, encoded any number of times.
pub struct Dispatch {
    pub(crate) pipeline: Arc<wgpu::ComputePipeline>,
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) workgroups: [u32; 3],
    /// The uniform buffer, kept so a graph can rewrite parameters before replay.
    pub(crate) params: Option<Arc<wgpu::Buffer>>,
    pub label: &'static str,
    /// Floating-point operations of this launch (for profiles); 0 if not counted.
    pub flops: f64,
    /// Bytes this launch must move at minimum (inputs + outputs), for profiles.
    pub bytes: f64,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dispatch({}, {:?})", self.label, self.workgroups)
    }
}

impl Dispatch {
    pub fn workgroups(&self) -> [u32; 3] {
        self.workgroups
    }
    pub fn params_buffer(&self) -> Option<&Arc<wgpu::Buffer>> {
        self.params.as_ref()
    }
    pub fn with_cost(mut self, flops: f64, bytes: f64) -> Self {
        self.flops = flops;
        self.bytes = bytes;
        self
    }
    /// Rewrite this dispatch's uniform block (same layout, new values).
    pub fn write_params(&self, ctx: &GpuContext, params: &Params) -> Result<()> {
        let buf = self.params.as_ref().ok_or_else(|| Error::Kernel(format!("{} has no uniform parameters", self.label)))?;
        let bytes = params.bytes();
        if bytes.len() as u64 != buf.size() {
            return Err(Error::Kernel(format!("{}: parameter block is {} bytes, expected {}", self.label, bytes.len(), buf.size())));
        }
        ctx.queue.write_buffer(buf, 0, &bytes);
        Ok(())
    }

    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups[0], self.workgroups[1], self.workgroups[2]);
    }
}

/// Everything needed to build one `Dispatch`.
pub struct KernelCall<'a> {
    pub shader: &'a ShaderSource,
    pub entry: &'a str,
    /// WGSL `override` constants (workgroup sizes, tile sizes, modes).
    pub constants: &'a [(&'a str, f64)],
    pub params: Option<&'a Params>,
    pub buffers: &'a [BufArg<'a>],
    pub workgroups: [u32; 3],
}

impl GpuContext {
    fn module(&self, shader: &ShaderSource) -> Result<Arc<wgpu::ShaderModule>> {
        let mut m = self.pipelines.modules.lock().unwrap();
        if let Some(module) = m.get(shader.name) {
            return Ok(module.clone());
        }
        // Validate with naga first so a broken kernel is an error, not a panic
        // inside wgpu's error handler.
        let parsed = naga::front::wgsl::parse_str(shader.source)
            .map_err(|e| Error::Kernel(format!("kernels/{}.wgsl: {}", shader.name, e.emit_to_string(shader.source))))?;
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&parsed)
            .map_err(|e| Error::Kernel(format!("kernels/{}.wgsl: {}", shader.name, e.emit_to_string(shader.source))))?;
        let module = Arc::new(self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(shader.name),
            source: wgpu::ShaderSource::Wgsl(shader.source.into()),
        }));
        m.insert(shader.name, module.clone());
        Ok(module)
    }

    fn layout(&self, key: &LayoutKey) -> (Arc<wgpu::BindGroupLayout>, Arc<wgpu::PipelineLayout>) {
        let mut l = self.pipelines.layouts.lock().unwrap();
        if let Some(v) = l.get(key) {
            return v.clone();
        }
        let mut entries = Vec::new();
        if key.uniform {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        for (i, ro) in key.read_only.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: 1 + i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: *ro },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let bgl = Arc::new(self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("wgsr"),
            entries: &entries,
        }));
        let pl = Arc::new(self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("wgsr"),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        }));
        l.insert(key.clone(), (bgl.clone(), pl.clone()));
        (bgl, pl)
    }

    /// Get (or compile once) the pipeline for a shader entry point with the
    /// given override constants and binding signature.
    fn pipeline(
        &self,
        shader: &ShaderSource,
        entry: &str,
        constants: &[(&str, f64)],
        layout: &LayoutKey,
    ) -> Result<(Arc<wgpu::ComputePipeline>, Arc<wgpu::BindGroupLayout>)> {
        let key = PipelineKey {
            shader: shader.name,
            entry: entry.to_string(),
            constants: constants.iter().map(|(k, v)| (k.to_string(), v.to_bits())).collect(),
            layout: layout.clone(),
        };
        let (bgl, pl) = self.layout(layout);
        if let Some(p) = self.pipelines.pipelines.lock().unwrap().get(&key) {
            return Ok((p.clone(), bgl));
        }
        let module = self.module(shader)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pl),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants, zero_initialize_workgroup_memory: false },
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(Error::Kernel(format!("pipeline {}::{entry} failed: {err}", shader.name)));
        }
        let pipeline = Arc::new(pipeline);
        self.pipelines.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok((pipeline, bgl))
    }

    /// Build a `Dispatch`: fetch the cached pipeline, write the uniform block,
    /// and create the bind group once.
    pub fn dispatch(&self, call: KernelCall<'_>) -> Result<Dispatch> {
        let limit = self.info().limits.max_compute_workgroups_per_dimension;
        if call.workgroups.iter().any(|&w| w > limit) {
            return Err(Error::TooLarge(format!(
                "{}::{} needs a grid of {:?} workgroups; this device allows {limit} per dimension",
                call.shader.name, call.entry, call.workgroups
            )));
        }
        let max_bind = self.max_binding_bytes();
        for b in call.buffers {
            if b.size > max_bind {
                return Err(Error::TooLarge(format!(
                    "{}::{} binds {} MiB; this device's storage-binding limit is {} MiB",
                    call.shader.name,
                    call.entry,
                    b.size >> 20,
                    max_bind >> 20
                )));
            }
        }
        let layout = LayoutKey { uniform: call.params.is_some(), read_only: call.buffers.iter().map(|b| b.read_only).collect() };
        let (pipeline, bgl) = self.pipeline(call.shader, call.entry, call.constants, &layout)?;
        let params = call.params.map(|p| {
            use wgpu::util::DeviceExt;
            Arc::new(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("wgsr params"),
                contents: &p.bytes(),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            }))
        });
        let mut entries = Vec::with_capacity(call.buffers.len() + 1);
        if let Some(p) = &params {
            entries.push(wgpu::BindGroupEntry { binding: 0, resource: p.as_entire_binding() });
        }
        for (i, b) in call.buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: 1 + i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buffer,
                    offset: 0,
                    size: wgpu::BufferSize::new(b.size.max(4)),
                }),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(call.entry.split('_').next().unwrap_or("wgsr")),
            layout: &bgl,
            entries: &entries,
        });
        Ok(Dispatch {
            pipeline,
            bind_group,
            workgroups: call.workgroups,
            params,
            label: call.shader.name,
            flops: 0.0,
            bytes: 0.0,
        })
    }

    /// Record dispatches into one compute pass and submit (no wait).
    pub fn submit(&self, dispatches: &[Dispatch]) {
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgsr") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("wgsr"), timestamp_writes: None });
            for d in dispatches {
                d.encode(&mut pass);
            }
        }
        self.queue.submit([enc.finish()]);
    }

    /// Record, submit and wait.
    pub fn run(&self, dispatches: &[Dispatch]) -> Result<()> {
        self.submit(dispatches);
        self.sync()
    }

    /// Number of distinct pipelines compiled so far (for tests and profiles).
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.len()
    }
}

/// Split `n` workgroups over x and y so no dimension exceeds 65535. Shaders
/// recover the linear id as `wid.x + wid.y * nwg.x` and must bounds-check,
/// since x*y may exceed n.
pub fn grid_1d(n: usize) -> [u32; 3] {
    const MAX: usize = 65535;
    let n = n.max(1);
    if n <= MAX {
        [n as u32, 1, 1]
    } else {
        let y = n.div_ceil(MAX);
        let x = n.div_ceil(y);
        [x as u32, y as u32, 1]
    }
}
