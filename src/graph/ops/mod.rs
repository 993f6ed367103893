//! Graph-level ops: adapters from the kernel families in `crate::ops` to the
//! graph's `Op` trait, plus the `GraphBuilder` methods model code calls.

pub mod elementwise;

use crate::graph::op::ParamValues;

/// A scalar attribute that is either fixed at build time or read from a
/// runtime parameter (rewritten in the uniform block between replays).
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Const(f32),
    Param(String),
}

impl Scalar {
    pub fn param(name: &str) -> Self {
        Scalar::Param(name.to_string())
    }
    pub fn value(&self, params: &ParamValues) -> f32 {
        match self {
            Scalar::Const(v) => *v,
            Scalar::Param(n) => params.get(n).copied().unwrap_or(f64::NAN) as f32,
        }
    }
    pub(crate) fn param_name(&self) -> Option<String> {
        match self {
            Scalar::Param(n) => Some(n.clone()),
            Scalar::Const(_) => None,
        }
    }
}

impl From<f32> for Scalar {
    fn from(v: f32) -> Self {
        Scalar::Const(v)
    }
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Const(v) => write!(f, "{v}"),
            Scalar::Param(n) => write!(f, "${n}"),
        }
    }
}
