//! Structural check of a PNG file before it is decoded: the signature, every
//! chunk's length, type and CRC, IHDR first and well-formed, the IDAT run,
//! and an IEND chunk. A file cut short anywhere is [`Defect::Truncated`]; a
//! bad checksum or an impossible header is [`Defect::Invalid`]. Bytes after
//! IEND are ignored (as every PNG reader does).

use super::Defect;

pub(crate) const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// What IHDR (and the presence of tRNS) says about the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PngHeader {
    pub width: u32,
    pub height: u32,
    pub bit_depth: u8,
    /// PNG colour type: 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA.
    pub color_type: u8,
    pub has_trns: bool,
}

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[n] = c;
        n += 1;
    }
    t
};

/// The CRC-32 PNG uses (ISO 3309 / zlib).
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    c ^ 0xffff_ffff
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Walk every chunk of `b` (which starts with the PNG signature or a prefix
/// of it) and return the header.
pub(crate) fn check(b: &[u8]) -> Result<PngHeader, Defect> {
    if b.len() < SIGNATURE.len() {
        return Err(Defect::Truncated(format!("the file is only {} bytes long, it ends inside the PNG signature", b.len())));
    }
    if b[..8] != SIGNATURE {
        return Err(Defect::Invalid("the 8-byte PNG signature is wrong".into()));
    }
    let len = b.len();
    let mut pos = 8;
    let mut header: Option<PngHeader> = None;
    let mut has_plte = false;
    let (mut in_idat, mut idat_done) = (false, false);
    loop {
        if pos == len {
            return Err(Defect::Truncated(format!("the file ends after {len} bytes without an IEND chunk")));
        }
        if len - pos < 8 {
            return Err(Defect::Truncated(format!("the file ends inside a chunk header at byte {pos} of {len}")));
        }
        let length = be32(&b[pos..]);
        let ty = &b[pos + 4..pos + 8];
        if !ty.iter().all(u8::is_ascii_alphabetic) {
            return Err(Defect::Invalid(format!(
                "the chunk at byte {pos} has type bytes {:02x} {:02x} {:02x} {:02x}, which are not four letters",
                ty[0], ty[1], ty[2], ty[3]
            )));
        }
        let name = String::from_utf8_lossy(ty).into_owned();
        if length > 0x7fff_ffff {
            return Err(Defect::Invalid(format!(
                "chunk {name} at byte {pos} claims {length} bytes, more than PNG allows (2^31 - 1)"
            )));
        }
        let end = pos + 12 + length as usize;
        if end > len {
            return Err(Defect::Truncated(format!(
                "the file ends inside chunk {name} at byte {pos}: the chunk needs {} bytes, {} are there",
                12 + length as usize,
                len - pos
            )));
        }
        let stored = be32(&b[end - 4..]);
        let computed = crc32(&b[pos + 4..end - 4]);
        if stored != computed {
            return Err(Defect::Invalid(format!(
                "chunk {name} at byte {pos} fails its checksum (stored CRC {stored:08x}, computed {computed:08x})"
            )));
        }
        let data = &b[pos + 8..end - 4];
        match (&header, ty) {
            (None, b"IHDR") => header = Some(parse_ihdr(data)?),
            (None, _) => return Err(Defect::Invalid(format!("the first chunk is {name}, not IHDR"))),
            (Some(_), b"IHDR") => return Err(Defect::Invalid(format!("a second IHDR chunk at byte {pos}"))),
            (Some(h), _) => {
                let mut h = *h;
                if ty != b"IDAT" && in_idat {
                    idat_done = true;
                }
                match ty {
                    b"IDAT" if idat_done => {
                        return Err(Defect::Invalid(format!("IDAT chunk at byte {pos} after other chunks ended the image data")))
                    }
                    b"IDAT" => in_idat = true,
                    b"PLTE" => {
                        if data.is_empty() || !data.len().is_multiple_of(3) || data.len() > 3 * 256 {
                            return Err(Defect::Invalid(format!(
                                "the PLTE chunk has {} bytes, not 3 per entry for 1 to 256 entries",
                                data.len()
                            )));
                        }
                        has_plte = true;
                    }
                    b"tRNS" => h.has_trns = true,
                    b"IEND" => {
                        if !in_idat {
                            return Err(Defect::Invalid("the file has no IDAT chunk (no image data)".into()));
                        }
                        if h.color_type == 3 && !has_plte {
                            return Err(Defect::Invalid("the palette image has no PLTE chunk".into()));
                        }
                        return Ok(h);
                    }
                    _ if ty[0].is_ascii_uppercase() => {
                        return Err(Defect::Invalid(format!("unknown critical chunk {name} at byte {pos}")))
                    }
                    _ => {}
                }
                header = Some(h);
            }
        }
        pos = end;
    }
}

fn parse_ihdr(d: &[u8]) -> Result<PngHeader, Defect> {
    if d.len() != 13 {
        return Err(Defect::Invalid(format!("the IHDR chunk has {} bytes, not 13", d.len())));
    }
    let (width, height, bit_depth, color_type) = (be32(d), be32(&d[4..]), d[8], d[9]);
    if width == 0 || height == 0 || width > 0x7fff_ffff || height > 0x7fff_ffff {
        return Err(Defect::Invalid(format!("the header gives an impossible size {width}x{height}")));
    }
    let depth_ok = match color_type {
        0 => matches!(bit_depth, 1 | 2 | 4 | 8 | 16),
        3 => matches!(bit_depth, 1 | 2 | 4 | 8),
        2 | 4 | 6 => matches!(bit_depth, 8 | 16),
        _ => return Err(Defect::Invalid(format!("the header gives colour type {color_type}, which PNG does not define"))),
    };
    if !depth_ok {
        return Err(Defect::Invalid(format!("bit depth {bit_depth} is not allowed for PNG colour type {color_type}")));
    }
    if d[10] != 0 || d[11] != 0 || d[12] > 1 {
        return Err(Defect::Invalid(format!(
            "the header gives compression {}, filter {}, interlace {}; PNG defines only 0, 0 and 0 or 1",
            d[10], d[11], d[12]
        )));
    }
    Ok(PngHeader { width, height, bit_depth, color_type, has_trns: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_png_specification_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
    }
}
