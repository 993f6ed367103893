//! Typed uniform blocks: every WGSL `var<uniform>` struct in `kernels/` has
//! exactly one Rust twin declared with [`kernel_params!`], filled by field
//! name and uploaded as its bytes. The macro also records a field table
//! (name, offset, size, scalar kind) and the WGSL module and struct it mirrors,
//! so `tests/kernels/params_reflect.rs` can check both sides with naga.

use std::any::TypeId;

/// Scalar type of a uniform field (all fields are 32-bit scalars).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarKind {
    U32,
    I32,
    F32,
}

/// A Rust scalar that may be a uniform field.
pub trait WgslScalar: bytemuck::Pod {
    const KIND: ScalarKind;
}

impl WgslScalar for u32 {
    const KIND: ScalarKind = ScalarKind::U32;
}
impl WgslScalar for i32 {
    const KIND: ScalarKind = ScalarKind::I32;
}
impl WgslScalar for f32 {
    const KIND: ScalarKind = ScalarKind::F32;
}

/// One field of a uniform block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamField {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
    pub kind: ScalarKind,
}

/// The layout of a Rust twin and the WGSL struct it mirrors.
#[derive(Debug, PartialEq, Eq)]
pub struct ParamsLayout {
    /// WGSL module (file stem in `kernels/`).
    pub module: &'static str,
    /// Name of the WGSL struct.
    pub wgsl_struct: &'static str,
    /// Name of the Rust type.
    pub rust_type: &'static str,
    /// `size_of` the Rust type (the WGSL struct's size).
    pub size: usize,
    pub fields: &'static [ParamField],
}

/// A Rust twin of a WGSL uniform struct (implemented by [`kernel_params!`]).
pub trait KernelParams: bytemuck::Pod {
    const LAYOUT: &'static ParamsLayout;
}

/// A uniform block as [`crate::gpu::KernelCall`] takes it: the bytes plus the
/// identity of their type, so a prepared dispatch can refuse updates of
/// another type.
pub trait ParamsBlock {
    fn bytes(&self) -> &[u8];
    fn layout(&self) -> &'static ParamsLayout;
    fn params_type(&self) -> TypeId;
}

impl<P: KernelParams> ParamsBlock for P {
    fn bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }
    fn layout(&self) -> &'static ParamsLayout {
        P::LAYOUT
    }
    fn params_type(&self) -> TypeId {
        TypeId::of::<P>()
    }
}

/// A size or index as a u32 field. Sizes are validated against device limits
/// before they get here, so overflow is a bug, not an input error.
pub fn to_u32(v: usize) -> u32 {
    u32::try_from(v).expect("kernel parameter does not fit in u32")
}

/// A signed geometry value (stride, padding, dilation) as an i32 field.
pub fn to_i32(v: usize) -> i32 {
    i32::try_from(v).expect("kernel parameter does not fit in i32")
}

/// Declare the Rust twin of a WGSL uniform struct:
///
/// ```ignore
/// kernel_params! {
///     /// Uniform block of kernels/softmax.wgsl.
///     pub struct SoftmaxUniform = "softmax"::"Params" {
///         hw: u32,
///         temp: f32,
///     }
/// }
/// ```
///
/// Fields are listed in WGSL order with the WGSL names and types (u32, i32,
/// f32). The struct is `#[repr(C)]` + `Pod`, so its bytes are the uniform
/// block (the dispatch pads the buffer to 16 bytes).
#[macro_export]
macro_rules! kernel_params {
    ($(#[$meta:meta])* $vis:vis struct $name:ident = $module:literal :: $wgsl:literal { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $crate::gpu::KernelParams for $name {
            const LAYOUT: &'static $crate::gpu::ParamsLayout = &$crate::gpu::ParamsLayout {
                module: $module,
                wgsl_struct: $wgsl,
                rust_type: stringify!($name),
                size: ::core::mem::size_of::<$name>(),
                fields: &[$($crate::gpu::ParamField {
                    name: stringify!($field),
                    offset: ::core::mem::offset_of!($name, $field),
                    size: ::core::mem::size_of::<$ty>(),
                    kind: <$ty as $crate::gpu::WgslScalar>::KIND,
                }),*],
            };
        }
    };
}
