//! Reading a model's `config.json` by dotted path (`"unet.attn_res"`,
//! `"levels.0.channels"`), with one error style for every family:
//! `Weights("<what>: field '<path>' <why>")`, so a bad file names the field.

use std::fmt::Display;

use serde_json::Value;

use crate::{Error, Result};

/// A config value and the name errors give it ("HCFlow config.json").
#[derive(Clone, Copy)]
pub struct Fields<'a> {
    root: &'a Value,
    what: &'static str,
}

impl<'a> Fields<'a> {
    pub fn new(root: &'a Value, what: &'static str) -> Self {
        Fields { root, what }
    }
}

static NULL: Value = Value::Null;

impl Fields<'static> {
    /// Only for `bad`: checks on already-parsed values use the same messages.
    pub fn errors(what: &'static str) -> Self {
        Fields { root: &NULL, what }
    }
}

impl<'a> Fields<'a> {
    /// The error for field `path`: "<what>: field '<path>' <why>".
    pub fn bad(&self, path: &str, why: impl Display) -> Error {
        Error::Weights(format!("{}: field '{path}' {why}", self.what))
    }

    /// Refuse any field not in `known` (dotted paths, `*` for any list index).
    pub fn refuse_unknown(&self, known: &[&str]) -> Result<()> {
        fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        walk(x, &if path.is_empty() { k.clone() } else { format!("{path}.{k}") }, out);
                    }
                }
                Value::Array(a) if a.iter().any(Value::is_object) => {
                    for (i, x) in a.iter().enumerate() {
                        walk(x, &format!("{path}.{i}"), out);
                    }
                }
                _ => out.push(path.to_string()),
            }
        }
        let mut leaves = Vec::new();
        walk(self.root, "", &mut leaves);
        let matches = |leaf: &str, pat: &str| {
            let (l, p): (Vec<&str>, Vec<&str>) = (leaf.split('.').collect(), pat.split('.').collect());
            l.len() == p.len() && l.iter().zip(&p).all(|(a, b)| *b == "*" && a.parse::<usize>().is_ok() || a == b)
        };
        match leaves.iter().find(|leaf| !known.iter().any(|pat| matches(leaf, pat))) {
            Some(leaf) => Err(self.bad(leaf, "is not a known field (a typo, or a config from another wgsr version?)")),
            None => Ok(()),
        }
    }

    /// The value at `path`, if present (list entries by index: `levels.1`).
    pub fn opt(&self, path: &str) -> Option<&'a Value> {
        let mut cur = self.root;
        for part in path.split('.') {
            cur = match cur {
                Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
                _ => cur.get(part)?,
            };
        }
        Some(cur)
    }

    pub fn get(&self, path: &str) -> Result<&'a Value> {
        self.opt(path).ok_or_else(|| self.bad(path, "is missing"))
    }

    pub fn usize(&self, path: &str) -> Result<usize> {
        let x = self.get(path)?;
        self.as_usize(x, path)
    }

    fn as_usize(&self, x: &Value, path: &str) -> Result<usize> {
        x.as_u64()
            .and_then(|u| usize::try_from(u).ok())
            .ok_or_else(|| self.bad(path, format!("must be a non-negative integer, found {x}")))
    }

    /// A finite number.
    pub fn f64(&self, path: &str) -> Result<f64> {
        let x = self.get(path)?;
        x.as_f64().filter(|f| f.is_finite()).ok_or_else(|| self.bad(path, format!("must be a finite number, found {x}")))
    }

    pub fn str(&self, path: &str) -> Result<&'a str> {
        let x = self.get(path)?;
        x.as_str().ok_or_else(|| self.bad(path, format!("must be a string, found {x}")))
    }

    pub fn bool(&self, path: &str) -> Result<bool> {
        let x = self.get(path)?;
        x.as_bool().ok_or_else(|| self.bad(path, format!("must be true or false, found {x}")))
    }

    pub fn list(&self, path: &str) -> Result<&'a Vec<Value>> {
        let x = self.get(path)?;
        x.as_array().ok_or_else(|| self.bad(path, format!("must be a list, found {x}")))
    }

    pub fn usizes(&self, path: &str) -> Result<Vec<usize>> {
        let x = self.get(path)?;
        let list = x.as_array().ok_or_else(|| self.bad(path, format!("must be a list of integers, found {x}")))?;
        list.iter().map(|e| self.as_usize(e, path)).collect()
    }

    /// Optional fields with the value the reference uses when they are absent.
    pub fn usize_or(&self, path: &str, default: usize) -> Result<usize> {
        self.opt(path).map_or(Ok(default), |_| self.usize(path))
    }
    pub fn f64_or(&self, path: &str, default: f64) -> Result<f64> {
        self.opt(path).map_or(Ok(default), |_| self.f64(path))
    }
    pub fn bool_or(&self, path: &str, default: bool) -> Result<bool> {
        self.opt(path).map_or(Ok(default), |_| self.bool(path))
    }
    pub fn str_or(&self, path: &str, default: &'a str) -> Result<&'a str> {
        self.opt(path).map_or(Ok(default), |_| self.str(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_indices_and_messages() {
        let v: Value = serde_json::json!({"a": {"b": [3, {"c": "x"}]}, "n": -1, "f": 1.5});
        let f = Fields::new(&v, "T config.json");
        assert_eq!(f.usize("a.b.0").unwrap(), 3);
        assert_eq!(f.str("a.b.1.c").unwrap(), "x");
        assert_eq!(f.usize_or("a.zz", 7).unwrap(), 7);
        assert_eq!(f.f64("f").unwrap(), 1.5);
        let e = f.usize("n").unwrap_err().to_string();
        assert!(e.contains("T config.json: field 'n' must be a non-negative integer, found -1"), "{e}");
        let e = f.get("a.q").unwrap_err().to_string();
        assert!(e.contains("field 'a.q' is missing"), "{e}");
        assert!(f.bool("f").is_err() && f.usizes("a.b").is_err());
    }
}
