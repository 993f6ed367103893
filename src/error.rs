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

/// Each kind's prefix names the area ("model files: ...") without the word
/// "error", which the CLI's `error:` line already says.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(m) => write!(f, "no GPU adapter: {m}"),
            Error::Device(m) => write!(f, "GPU device: {m}"),
            Error::Shape(m) => write!(f, "shape mismatch: {m}"),
            Error::TooLarge(m) => write!(f, "too large for this device: {m}"),
            Error::Kernel(m) => write!(f, "kernel failure: {m}"),
            Error::Graph(m) => write!(f, "invalid graph: {m}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Weights(m) => write!(f, "model files: {m}"),
            Error::Image(m) => write!(f, "image: {m}"),
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

impl Error {
    /// Attach context (a node name, a file path, a model) in front of the
    /// message without changing the error's kind, so a caller can still
    /// match `Error::TooLarge(_)` raised deep inside a model graph.
    pub fn context(self, what: impl fmt::Display) -> Error {
        let pre = |m: String| format!("{what}: {m}");
        match self {
            Error::NoAdapter(m) => Error::NoAdapter(pre(m)),
            Error::Device(m) => Error::Device(pre(m)),
            Error::Shape(m) => Error::Shape(pre(m)),
            Error::TooLarge(m) => Error::TooLarge(pre(m)),
            Error::Kernel(m) => Error::Kernel(pre(m)),
            Error::Graph(m) => Error::Graph(pre(m)),
            Error::InvalidArgument(m) => Error::InvalidArgument(pre(m)),
            Error::Weights(m) => Error::Weights(pre(m)),
            Error::Image(m) => Error::Image(pre(m)),
            Error::Io { path, source } => Error::Io { path: pre(path), source },
        }
    }

    /// The message without the kind's prefix ("too large for this device: ").
    pub fn message(&self) -> String {
        match self {
            Error::NoAdapter(m)
            | Error::Device(m)
            | Error::Shape(m)
            | Error::TooLarge(m)
            | Error::Kernel(m)
            | Error::Graph(m)
            | Error::InvalidArgument(m)
            | Error::Weights(m)
            | Error::Image(m) => m.clone(),
            Error::Io { path, source } => format!("{path}: {source}"),
        }
    }
}

/// `.context(..)` / `.with_context(|| ..)` on results: the error keeps its
/// kind and gains a prefix naming where it happened.
pub trait ResultExt<T> {
    fn context(self, what: impl fmt::Display) -> Result<T>;
    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(what))
    }
    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| e.context(what()))
    }
}

/// Shorthand for returning a shape error with a formatted message.
#[macro_export]
macro_rules! shape_err {
    ($($arg:tt)*) => { $crate::Error::Shape(format!($($arg)*)) };
}
