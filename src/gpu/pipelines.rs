//! Compiled-pipeline cache and the `Dispatch` record every kernel produces.
//!
//! Binding convention shared by all WGSL files in `kernels/`:
//! `@group(0) @binding(0)` is the op's uniform parameter block (when it has
//! one), followed by the storage buffers in the order the Rust wrapper passes
//! them. Layouts are explicit (not `layout: auto`), so an entry point that
//! ignores a binding still validates, and pipelines with the same signature
//! share one bind-group layout.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::gpu::shader::{binding_classes, compose_for, BindingClass, Composed, ShaderSource, Storage};
use crate::tensor::Dtype;
use crate::gpu::{GpuContext, KernelParams, ParamsBlock, ParamsLayout};
use crate::{Error, Result};

/// One storage-buffer binding: a buffer range and whether the shader only reads it.
#[derive(Clone, Copy)]
pub struct BufArg<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub size: u64,
    pub read_only: bool,
    /// Element type of the data (tensors: their dtype; tables and indices: F32,
    /// meaning 32-bit words). Picks the kernel variant (see `gpu::shader`).
    pub dtype: Dtype,
}

/// Signature of a bind group layout: uniform at 0 or not, then read-only flags.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct LayoutKey {
    uniform: bool,
    read_only: Vec<bool>,
}

/// A composed module: its name and the hash of its composed text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct ModuleKey {
    name: &'static str,
    hash: u64,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct PipelineKey {
    module: ModuleKey,
    entry: String,
    constants: Vec<(String, u64)>,
    layout: LayoutKey,
}

/// Identity of a static kernel source text: (name, address, length).
type SourceId = (&'static str, usize, usize);

/// The storage bindings each entry point of one kernel file uses, as
/// (binding, name, class). A binding an entry does not use may hold anything
/// (callers bind a placeholder there); a file may declare one binding under
/// several names and types (vec4 views), so classes are looked up by name.
struct Bindings {
    used: HashMap<String, Vec<(u32, String, BindingClass)>>,
}

impl Bindings {
    fn of(shader: &ShaderSource, composed: &Composed) -> Result<Bindings> {
        let text = &composed.text;
        let module = naga::front::wgsl::parse_str(text)
            .map_err(|e| Error::Kernel(format!("kernels/{}.wgsl (composed): {}", shader.name, e.emit_to_string(text))))?;
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .map_err(|e| Error::Kernel(format!("kernels/{}.wgsl (composed): {}", shader.name, e.emit_to_string(text))))?;
        let classes = binding_classes(shader.source);
        let mut used = HashMap::new();
        for (i, ep) in module.entry_points.iter().enumerate() {
            let fi = info.get_entry_point(i);
            let mut list = Vec::new();
            for (h, v) in module.global_variables.iter() {
                let (Some(b), Some(name)) = (v.binding.as_ref(), v.name.as_ref()) else { continue };
                if b.group != 0 || fi[h].is_empty() {
                    continue;
                }
                if let Some((k, n, c)) = classes.iter().find(|(k, n, _)| *k == b.binding && n == name) {
                    list.push((*k, n.clone(), *c));
                }
            }
            used.insert(ep.name.clone(), list);
        }
        Ok(Bindings { used })
    }
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    /// Composition memo, keyed by the identity of the static source text
    /// (name, address, length): composing is deterministic per source.
    composed: Mutex<HashMap<(SourceId, Storage), Arc<Composed>>>,
    /// Binding classes per source text (same identity as `composed`).
    classes: Mutex<HashMap<SourceId, Arc<Bindings>>>,
    modules: Mutex<HashMap<ModuleKey, Arc<wgpu::ShaderModule>>>,
    layouts: Mutex<HashMap<LayoutKey, (Arc<wgpu::BindGroupLayout>, Arc<wgpu::PipelineLayout>)>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    pub(crate) fn len(&self) -> usize {
        self.pipelines.lock().unwrap().len()
    }
}

/// The uniform block of a prepared dispatch: its buffer, the type it was
/// built from, and a host copy so updates are typed field writes.
struct UniformBlock {
    buffer: Arc<wgpu::Buffer>,
    layout: &'static ParamsLayout,
    ty: TypeId,
    /// The bytes last written (padded to 16 like the buffer).
    host: Mutex<Vec<u8>>,
}

/// Uniform bytes padded to a multiple of 16 (and at least 16): the uniform
/// binding rule, and what the buffer holds.
fn padded(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(bytes.len().max(1).next_multiple_of(16), 0);
    v
}

/// A recorded kernel launch: pipeline, prebuilt bind group and grid. Produced
/// once by an op wrapper, encoded any number of times.
pub struct Dispatch {
    pub(crate) pipeline: Arc<wgpu::ComputePipeline>,
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) workgroups: [u32; 3],
    /// The uniform block, kept so a graph can rewrite parameters before replay.
    params: Option<UniformBlock>,
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
    pub fn with_cost(mut self, flops: f64, bytes: f64) -> Self {
        self.flops = flops;
        self.bytes = bytes;
        self
    }
    /// Rewrite fields of this dispatch's uniform block before a replay: `P`
    /// must be the type it was prepared with (else an error, nothing written);
    /// `f` edits a copy of the current values by field name. The one way to
    /// change a runtime parameter, e.g.
    /// `d.update(ctx, |p: &mut SoftmaxUniform| p.temp = t)`.
    pub fn update<P: KernelParams>(&self, ctx: &GpuContext, f: impl FnOnce(&mut P)) -> Result<()> {
        let block = self
            .params
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument(format!("{self:?} has no uniform parameters to set")))?;
        if block.ty != TypeId::of::<P>() {
            return Err(Error::InvalidArgument(format!(
                "{self:?} carries {} ({}::{}), not {}",
                block.layout.rust_type,
                block.layout.module,
                block.layout.wgsl_struct,
                P::LAYOUT.rust_type
            )));
        }
        let mut host = block.host.lock().unwrap();
        let mut p: P = bytemuck::pod_read_unaligned(&host[..std::mem::size_of::<P>()]);
        f(&mut p);
        host[..std::mem::size_of::<P>()].copy_from_slice(bytemuck::bytes_of(&p));
        ctx.queue.write_buffer(&block.buffer, 0, &host);
        Ok(())
    }

    /// The current uniform values, if this dispatch carries a `P`.
    pub fn uniform<P: KernelParams>(&self) -> Option<P> {
        let block = self.params.as_ref().filter(|b| b.ty == TypeId::of::<P>())?;
        Some(bytemuck::pod_read_unaligned(&block.host.lock().unwrap()[..std::mem::size_of::<P>()]))
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
    /// The uniform block at binding 0: a [`kernel_params!`](crate::kernel_params) twin.
    pub params: Option<&'a dyn ParamsBlock>,
    pub buffers: &'a [BufArg<'a>],
    pub workgroups: [u32; 3],
}

impl GpuContext {
    /// The composed source of a shader variant (composed once per source text
    /// and storage, for this device's traits).
    fn composed(&self, shader: &ShaderSource, storage: Storage) -> Result<Arc<Composed>> {
        let id = ((shader.name, shader.source.as_ptr() as usize, shader.source.len()), storage);
        let mut c = self.pipelines.composed.lock().unwrap();
        if let Some(v) = c.get(&id) {
            return Ok(v.clone());
        }
        let v = Arc::new(compose_for(shader, storage, self.info().traits)?);
        c.insert(id, v.clone());
        Ok(v)
    }

    /// The storage variant a call needs, from the element types of the
    /// buffers at the bindings its entry point uses: a typed binding takes
    /// what it is given, a fixed one only f32 (else a clear error).
    fn storage_of(&self, call: &KernelCall<'_>) -> Result<Storage> {
        let id = (call.shader.name, call.shader.source.as_ptr() as usize, call.shader.source.len());
        let bindings = {
            let mut c = self.pipelines.classes.lock().unwrap();
            match c.get(&id) {
                Some(b) => b.clone(),
                None => {
                    let f32_text = self.composed(call.shader, Storage::F32)?;
                    let b = Arc::new(Bindings::of(call.shader, &f32_text)?);
                    c.insert(id, b.clone());
                    b
                }
            }
        };
        let used = bindings.used.get(call.entry).ok_or_else(|| Error::Kernel(format!("kernels/{}.wgsl has no entry point {}", call.shader.name, call.entry)))?;
        let mut storage = Storage::F32;
        for (k, name, class) in used {
            let Some(b) = call.buffers.get(*k as usize - 1) else { continue };
            match class {
                BindingClass::Fixed if b.dtype != Dtype::F32 => {
                    return Err(Error::Kernel(format!(
                        "{}::{}: binding {k} ({name}) has no {} variant (the kernel declares it 32-bit); \
                         this op runs in f32 only",
                        call.shader.name, call.entry, b.dtype
                    )))
                }
                BindingClass::Fixed => {}
                BindingClass::Typed => storage = storage.with(*k, b.dtype),
            }
        }
        if storage != Storage::F32 {
            self.check_dtype(Dtype::F16)?;
        }
        Ok(storage)
    }

    fn module(&self, name: &'static str, composed: &Composed) -> Result<Arc<wgpu::ShaderModule>> {
        let key = ModuleKey { name, hash: composed.hash };
        let mut m = self.pipelines.modules.lock().unwrap();
        if let Some(module) = m.get(&key) {
            return Ok(module.clone());
        }
        // Validate with naga first so a broken kernel is an error, not a panic
        // inside wgpu's error handler.
        let src = composed.text.as_str();
        let parsed = naga::front::wgsl::parse_str(src)
            .map_err(|e| Error::Kernel(format!("kernels/{name}.wgsl (composed): {}", e.emit_to_string(src))))?;
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&parsed)
            .map_err(|e| Error::Kernel(format!("kernels/{name}.wgsl (composed): {}", e.emit_to_string(src))))?;
        let desc = wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl(src.into()) };
        let module = Arc::new(if shader_checks_off() {
            // SAFETY: measurement switch only (benches; see `shader_checks_off`):
            // every kernel bounds-checks its own thread index and loops over
            // uniform-bounded ranges; the runtime checks wgpu injects on top
            // are what this switch measures.
            unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        } else {
            self.device.create_shader_module(desc)
        });
        m.insert(key, module.clone());
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
        storage: Storage,
    ) -> Result<(Arc<wgpu::ComputePipeline>, Arc<wgpu::BindGroupLayout>)> {
        let composed = self.composed(shader, storage)?;
        let key = PipelineKey {
            module: ModuleKey { name: shader.name, hash: composed.hash },
            entry: entry.to_string(),
            constants: constants.iter().map(|(k, v)| (k.to_string(), v.to_bits())).collect(),
            layout: layout.clone(),
        };
        let (bgl, pl) = self.layout(layout);
        if let Some(p) = self.pipelines.pipelines.lock().unwrap().get(&key) {
            return Ok((p.clone(), bgl));
        }
        let module = self.module(shader.name, &composed)?;
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
        if let Some(p) = call.params {
            let l = p.layout();
            if l.module != call.shader.name {
                return Err(Error::Kernel(format!(
                    "{}::{} was given {} (the uniform block of kernels/{}.wgsl)",
                    call.shader.name, call.entry, l.rust_type, l.module
                )));
            }
        }
        let layout = LayoutKey { uniform: call.params.is_some(), read_only: call.buffers.iter().map(|b| b.read_only).collect() };
        let storage = self.storage_of(&call)?;
        let (pipeline, bgl) = self.pipeline(call.shader, call.entry, call.constants, &layout, storage)?;
        let params = call.params.map(|p| {
            use wgpu::util::DeviceExt;
            let host = padded(p.bytes());
            let buffer = Arc::new(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("wgsr params"),
                contents: &host,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            }));
            UniformBlock { buffer, layout: p.layout(), ty: p.params_type(), host: Mutex::new(host) }
        });
        let mut entries = Vec::with_capacity(call.buffers.len() + 1);
        if let Some(p) = &params {
            entries.push(wgpu::BindGroupEntry { binding: 0, resource: p.buffer.as_entire_binding() });
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

/// `WGSR_SHADER_CHECKS=off`: compile kernels without wgpu's injected runtime
/// checks (buffer bounds, loop bounding, integer division guards). For
/// measuring what the checks cost (`cargo bench`); never the default, since
/// no test proves every index of every kernel in range.
fn shader_checks_off() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var("WGSR_SHADER_CHECKS").is_ok_and(|v| v == "off"))
}
