//! One error type for the whole library: every failure a user can cause
//! (bad shapes, oversize tensors, missing GPU, broken weight files) ends here
//! with a message that says what was wrong and, where possible, how to fix it.

use std::fmt;

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug)]
pub enum Error {
    /// No usable GPU adapter (or none matching WGSR_BACKEND / WGSR_ADAPTER).
    NoAdapter(String),
    /// The device could not be created or was lost.
    Device(String),
    /// Tensor shapes or op arguments do not fit together.
    Shape(String),
    /// A tensor or image is larger than this device can bind.
    TooLarge(String),
    /// A WGSL kernel failed to compile or validate, or a GPU operation failed.
    Kernel(String),
    /// A malformed graph (unknown tensor, duplicate names, unsafe in-place use).
    Graph(String),
    /// A bad argument that is not a shape problem (unknown option value, ...).
    InvalidArgument(String),
    /// Weight files: missing, malformed, or not matching the model.
    Weights(String),
    /// Image decoding / encoding.
    Image(String),
    /// File system errors, with the path that failed.
    Io { path: String, source: std::io::Error },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(m) => write!(f, "no GPU adapter: {m}"),
            Error::Device(m) => write!(f, "GPU device error: {m}"),
            Error::Shape(m) => write!(f, "shape error: {m}"),
            Error::TooLarge(m) => write!(f, "too large for this device: {m}"),
            Error::Kernel(m) => write!(f, "kernel error: {m}"),
            Error::Graph(m) => write!(f, "graph error: {m}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Weights(m) => write!(f, "weights error: {m}"),
            Error::Image(m) => write!(f, "image error: {m}"),
            Error::Io { path, source } => write!(f, "{path}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for returning a shape error with a formatted message.
#[macro_export]
macro_rules! shape_err {
    ($($arg:tt)*) => { $crate::Error::Shape(format!($($arg)*)) };
}
