//! Float32 `.npy` arrays (format version 1.0, little-endian, C order).

use std::path::Path;

use crate::{Error, Result};

/// Encode a float32 array as `.npy` (C order).
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_str = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_str}, }}");
    // Pad so magic(6) + version(2) + len(2) + header is a multiple of 64, ending in '\n'.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Read a little-endian float32 C-order `.npy`; returns (shape, data).
pub fn read_npy(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<f32>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), source: e })?;
    parse_npy(&bytes).map_err(|m| Error::InvalidArgument(format!("{}: {m}", path.display())))
}

fn parse_npy(b: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = std::str::from_utf8(b.get(start..start + hlen).ok_or("truncated header")?).map_err(|_| "bad header")?;
    if !header.contains("'descr': '<f4'") {
        return Err(format!("expected float32 little-endian ('<f4'), header is {header}"));
    }
    if header.contains("'fortran_order': True") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let open = header.find("'shape': (").ok_or("no shape in header")? + 10;
    let close = open + header[open..].find(')').ok_or("bad shape")?;
    let shape: Vec<usize> = header[open..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad dimension '{s}'")))
        .collect::<std::result::Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let body = &b[start + hlen..];
    if body.len() != 4 * n {
        return Err(format!("shape {shape:?} needs {} bytes of data, file has {}", 4 * n, body.len()));
    }
    Ok((shape, body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_parser_rejects_garbage() {
        assert!(parse_npy(b"hello").is_err());
        let mut b = npy_bytes(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        b.truncate(b.len() - 1);
        assert!(parse_npy(&b).unwrap_err().contains("needs 16 bytes"));
    }
}
