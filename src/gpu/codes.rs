//! Numbers shared by Rust and WGSL: the workgroup size, the reduction chunk,
//! and the code enums passed as override constants (ACT, MODE, BIAS_MODE).
//! They are written from here into the WGSL prelude (`const ACT_RELU: u32 = 1u;`),
//! so a kernel names a code instead of repeating its number.

/// Threads per workgroup of every 1-D kernel (`WG` in WGSL).
pub const WG: usize = 256;
/// Elements each thread of a partial-sum pass reads (`PER_THREAD`). 16, not
/// 4: a quarter of the workgroups, so a quarter of the barrier-bound
/// workgroup reductions (lavapipe: sum over 1x64x128x128 11-13 -> 5-6 ms).
pub const PER_THREAD: usize = 16;
/// Elements per workgroup of a partial-sum pass (`CHUNK`), reduce.wgsl and flow.wgsl.
pub const CHUNK: usize = WG * PER_THREAD;

/// Plain constants written into the prelude, `(WGSL name, value)`.
pub const PRELUDE_CONSTS: &[(&str, u32)] = &[("WG", WG as u32), ("PER_THREAD", PER_THREAD as u32), ("CHUNK", CHUNK as u32)];

/// A `#[repr(u32)]` code enum with the WGSL name of each variant.
macro_rules! wgsl_codes {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal => $wgsl:ident,)* }) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            /// `(WGSL constant, value)` of every variant.
            pub const WGSL: &'static [(&'static str, u32)] = &[$((stringify!($wgsl), $value)),*];

            /// The value of an override constant selecting this code.
            pub fn constant(self) -> f64 {
                self as u32 as f64
            }
        }
    };
}

wgsl_codes! {
    /// Epilogue activation (conv.wgsl's `ACT`; `apply_act` in the prelude).
    pub enum ActCode {
        None = 0 => ACT_NONE,
        Relu = 1 => ACT_RELU,
        /// LeakyReLU; the slope travels in the uniform block.
        LeakyRelu = 2 => ACT_LRELU,
        Swish = 3 => ACT_SWISH,
        Tanh = 4 => ACT_TANH,
        Sigmoid = 5 => ACT_SIGMOID,
    }
}

wgsl_codes! {
    /// conv.wgsl's `MODE`.
    pub enum ConvMode {
        /// Any kernel, stride, padding, dilation (per-k tap table).
        General = 0 => CONV_GENERAL,
        /// 1x1, stride 1, no padding: a plain GEMM.
        Pointwise = 1 => CONV_POINTWISE,
        /// Transposed convolution in gather form.
        Transposed = 2 => CONV_TRANSPOSED,
    }
}

wgsl_codes! {
    /// softmax.wgsl's `MODE` for `softmax_rows`.
    pub enum SoftmaxMode {
        Softmax = 0 => SOFTMAX_PLAIN,
        LogSoftmax = 1 => SOFTMAX_LOG,
    }
}

wgsl_codes! {
    /// matmul.wgsl's `BIAS_MODE`.
    pub enum BiasMode {
        None = 0 => BIAS_NONE,
        /// `bias[n]` added to every row of C.
        PerColumn = 1 => BIAS_PER_COLUMN,
        /// `bias[m]` added to every column of C.
        PerRow = 2 => BIAS_PER_ROW,
    }
}

/// Every code table written into the prelude.
pub const CODE_TABLES: &[&[(&str, u32)]] = &[ActCode::WGSL, ConvMode::WGSL, SoftmaxMode::WGSL, BiasMode::WGSL];
