//! Named host-side parameter tensors, as loaded from a converted checkpoint.
//! Graph builders take weights by name; the store remembers which names were
//! used so a model can reject files with missing *or* extra tensors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use crate::{Error, Result, ResultExt};

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

impl WeightStore {
    /// Load every tensor of a `.safetensors` file (F32, F16 or BF16; widened to f32).
    pub fn load_safetensors(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), source: e })?;
        Self::from_safetensors_bytes(&bytes).with_context(|| path.display())
    }

    /// Parse a safetensors buffer.
    pub fn from_safetensors_bytes(bytes: &[u8]) -> Result<Self> {
        use safetensors::Dtype;
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Weights(format!("not a valid safetensors file: {e}")))?;
        let mut store = WeightStore::new();
        for (name, view) in st.tensors() {
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                Dtype::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
                Dtype::BF16 => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
                other => {
                    return Err(Error::Weights(format!("tensor '{name}' has dtype {other:?}; only F32, F16 and BF16 are supported")))
                }
            };
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                return Err(Error::Weights(format!("tensor '{name}' has a non-finite value at element {i}")));
            }
            store.insert(name, HostTensor::new(view.shape().to_vec(), data)?);
        }
        Ok(store)
    }
}

/// Every tensor of a `.safetensors` file widened to f64, for golden
/// fixtures and other exact comparisons (F64, F32, F16, BF16, I64, I32;
/// non-finite values are kept). Model weights go through [`WeightStore`].
pub fn read_safetensors_f64(path: impl AsRef<Path>) -> Result<std::collections::BTreeMap<String, (Vec<usize>, Vec<f64>)>> {
    use safetensors::Dtype;
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), source: e })?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::Weights(format!("{}: not a valid safetensors file: {e}", path.display())))?;
    let mut out = std::collections::BTreeMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f64> = match view.dtype() {
            Dtype::F64 => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
            Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            Dtype::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
            Dtype::BF16 => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
            Dtype::I64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            Dtype::I32 => raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            other => return Err(Error::Weights(format!("{}: tensor '{name}' has unsupported dtype {other:?}", path.display()))),
        };
        out.insert(name, (view.shape().to_vec(), data));
    }
    Ok(out)
}

/// A converted model directory: `config.json` + `model.safetensors`.
pub struct ModelDir {
    pub path: std::path::PathBuf,
    pub config: serde_json::Value,
    pub weights: WeightStore,
}

impl ModelDir {
    /// Read both files, with errors that name the missing or broken one.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::Weights(format!("model directory {} does not exist", dir.display())));
        }
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::Io { path: cfg_path.display().to_string(), source: e })?;
        let config: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Weights(format!("{}: invalid JSON: {e}", cfg_path.display())))?;
        let weights = WeightStore::load_safetensors(dir.join("model.safetensors"))?;
        Ok(ModelDir { path: dir.to_path_buf(), config, weights })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st_bytes(entries: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(String, safetensors::tensor::TensorView)> = entries
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn loads_f32_f16_bf16_and_tracks_use() {
        let f32b: Vec<u8> = [1.5f32, -2.0, 0.25].iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16b: Vec<u8> = [half::f16::from_f32(0.5), half::f16::from_f32(-3.0)].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bf16b: Vec<u8> = [half::bf16::from_f32(4.0)].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bytes = st_bytes(&[
            ("a", safetensors::Dtype::F32, vec![3], f32b),
            ("b", safetensors::Dtype::F16, vec![1, 2], f16b),
            ("c", safetensors::Dtype::BF16, vec![1], bf16b),
        ]);
        let w = WeightStore::from_safetensors_bytes(&bytes).unwrap();
        assert_eq!(w.get("a", Some(&[3])).unwrap().data, vec![1.5, -2.0, 0.25]);
        assert_eq!(w.get("b", None).unwrap().data, vec![0.5, -3.0]);
        assert!(w.get("a", Some(&[1, 3])).unwrap_err().to_string().contains("expected [1, 3]"));
        assert!(w.get("zz", None).unwrap_err().to_string().contains("missing weight 'zz'"));
        assert_eq!(w.unused(), vec!["c".to_string()]);
        assert!(w.check_all_used().unwrap_err().to_string().contains("not used"));
        assert_eq!(w.get("c", None).unwrap().data, vec![4.0]);
        w.check_all_used().unwrap();
    }

    #[test]
    fn malformed_files_are_clear_errors() {
        assert!(WeightStore::from_safetensors_bytes(b"garbage").unwrap_err().to_string().contains("safetensors"));
        let bytes = st_bytes(&[("i", safetensors::Dtype::I64, vec![1], 7i64.to_le_bytes().to_vec())]);
        assert!(WeightStore::from_safetensors_bytes(&bytes).unwrap_err().to_string().contains("I64"));
        let nan: Vec<u8> = f32::NAN.to_le_bytes().to_vec();
        let bytes = st_bytes(&[("n", safetensors::Dtype::F32, vec![1], nan)]);
        assert!(WeightStore::from_safetensors_bytes(&bytes).unwrap_err().to_string().contains("non-finite"));
        let mut good = st_bytes(&[("a", safetensors::Dtype::F32, vec![2], vec![0u8; 8])]);
        good.truncate(good.len() - 3);
        assert!(WeightStore::from_safetensors_bytes(&good).is_err());
        let err = ModelDir::load("/nonexistent/wgsr-model").err().unwrap().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
