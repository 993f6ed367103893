//! Named host-side parameter tensors, as loaded from a converted checkpoint.
//! Graph builders take weights by name; the store remembers which names were
//! used so a model can reject files with missing *or* extra tensors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::{Error, Result};

/// A parameter on the host: shape (torch order) and f32 values.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Weights(format!("shape {shape:?} needs {n} values, got {}", data.len())));
        }
        Ok(HostTensor { shape, data })
    }
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// A set of named weights with use tracking.
#[derive(Debug, Default)]
pub struct WeightStore {
    tensors: BTreeMap<String, HostTensor>,
    used: Mutex<BTreeSet<String>>,
}

impl WeightStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, t: HostTensor) {
        self.tensors.insert(name.into(), t);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|s| s.as_str())
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Fetch a weight and mark it used. `shape`, when given, must match exactly.
    pub fn get(&self, name: &str, shape: Option<&[usize]>) -> Result<&HostTensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::Weights(format!("missing weight '{name}'")))?;
        if let Some(s) = shape {
            if t.shape != s {
                return Err(Error::Weights(format!("weight '{name}' has shape {:?}, expected {s:?}", t.shape)));
            }
        }
        self.used.lock().unwrap().insert(name.to_string());
        Ok(t)
    }

    /// Like `get` but absent is fine (optional bias, say).
    pub fn get_opt(&self, name: &str, shape: Option<&[usize]>) -> Result<Option<&HostTensor>> {
        if self.contains(name) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Names never fetched with `get`.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.lock().unwrap();
        self.tensors.keys().filter(|k| !used.contains(*k)).cloned().collect()
    }

    /// Error if any weight was never used (a checkpoint that does not match the model).
    pub fn check_all_used(&self) -> Result<()> {
        let unused = self.unused();
        if unused.is_empty() {
            Ok(())
        } else {
            let shown: Vec<_> = unused.iter().take(20).cloned().collect();
            Err(Error::Weights(format!(
                "{} weight(s) in the file are not used by the model: {}{}",
                unused.len(),
                shown.join(", "),
                if unused.len() > 20 { ", ..." } else { "" }
            )))
        }
    }
}
