//! Structural check of a JPEG file before it is decoded: the marker sequence
//! from SOI to EOI, every segment's length, one frame header, and the
//! entropy-coded data of each scan up to the marker that ends it.
//!
//! The `image` crate's JPEG decoder (zune-jpeg, non-strict mode) fills
//! whatever is missing at the end of a truncated file with grey and reports
//! success; this walk finds the missing end-of-image marker first. Bytes
//! after EOI are ignored (cameras append data there).

use super::Defect;

/// What the frame header (SOFn) says about the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct JpegHeader {
    pub width: u16,
    pub height: u16,
    pub components: u8,
    pub precision: u8,
}

fn marker_name(m: u8) -> String {
    match m {
        0xc4 => "DHT".into(),
        0xcc => "DAC".into(),
        0xc0..=0xcf => format!("SOF{}", m - 0xc0),
        0xd8 => "SOI".into(),
        0xd9 => "EOI".into(),
        0xda => "SOS".into(),
        0xdb => "DQT".into(),
        0xdd => "DRI".into(),
        0xe0..=0xef => format!("APP{}", m - 0xe0),
        0xfe => "COM".into(),
        _ => format!("0xff{m:02x}"),
    }
}

fn is_sof(m: u8) -> bool {
    (0xc0..=0xcf).contains(&m) && !matches!(m, 0xc4 | 0xc8 | 0xcc)
}

/// Walk the markers of `b` (which starts with SOI) and return the frame header.
pub(crate) fn check(b: &[u8]) -> Result<JpegHeader, Defect> {
    let len = b.len();
    if len < 2 || b[0] != 0xff || b[1] != 0xd8 {
        return Err(Defect::Invalid("the file does not start with the JPEG start-of-image marker".into()));
    }
    let no_eoi = |what: &str| Defect::Truncated(format!("the file ends {what}, before the end-of-image marker"));
    let mut pos = 2;
    let mut frame: Option<JpegHeader> = None;
    let mut scans = 0usize;
    loop {
        if pos >= len {
            return Err(no_eoi("after the last segment"));
        }
        if b[pos] != 0xff {
            return Err(Defect::Invalid(format!("expected a marker at byte {pos}, found the byte {:02x}", b[pos])));
        }
        let at = pos;
        while pos < len && b[pos] == 0xff {
            pos += 1; // fill bytes
        }
        if pos >= len {
            return Err(no_eoi("inside a marker"));
        }
        let m = b[pos];
        pos += 1;
        match m {
            0xd9 => {
                let Some(f) = frame else {
                    return Err(Defect::Invalid("the file has no frame header (SOF segment)".into()));
                };
                if scans == 0 {
                    return Err(Defect::Invalid("the file has no image data (SOS segment)".into()));
                }
                return Ok(f);
            }
            0x01 | 0xd0..=0xd7 => continue, // standalone markers
            0x00 | 0xd8 => return Err(Defect::Invalid(format!("unexpected marker {} at byte {at}", marker_name(m)))),
            _ => {}
        }
        let name = marker_name(m);
        if len - pos < 2 {
            return Err(no_eoi(&format!("inside the {name} segment at byte {at}")));
        }
        let seg_len = u16::from_be_bytes([b[pos], b[pos + 1]]) as usize;
        if seg_len < 2 {
            return Err(Defect::Invalid(format!("the {name} segment at byte {at} has an impossible length {seg_len}")));
        }
        let seg_end = pos + seg_len;
        if seg_end > len {
            return Err(no_eoi(&format!("inside the {name} segment at byte {at}")));
        }
        let seg = &b[pos + 2..seg_end];
        if is_sof(m) {
            if frame.is_some() {
                return Err(Defect::Invalid(format!("a second frame header ({name}) at byte {at}")));
            }
            if seg.len() < 6 || seg.len() != 6 + 3 * seg[5] as usize {
                return Err(Defect::Invalid(format!("the {name} frame header at byte {at} has a wrong length")));
            }
            let f = JpegHeader {
                precision: seg[0],
                height: u16::from_be_bytes([seg[1], seg[2]]),
                width: u16::from_be_bytes([seg[3], seg[4]]),
                components: seg[5],
            };
            if f.width == 0 || f.height == 0 {
                return Err(Defect::Invalid(format!(
                    "the frame header gives the size {}x{} (a height defined later by a DNL marker is not supported)",
                    f.width, f.height
                )));
            }
            frame = Some(f);
        }
        pos = seg_end;
        if m == 0xda {
            if frame.is_none() {
                return Err(Defect::Invalid(format!("a scan (SOS) at byte {at} before the frame header")));
            }
            scans += 1;
            // Entropy-coded data: runs until a 0xff that is not a stuffed
            // zero (ff 00), a restart marker (ff d0..d7) or a fill byte.
            loop {
                let Some(i) = b[pos..].iter().position(|&x| x == 0xff) else {
                    return Err(no_eoi("inside the compressed image data"));
                };
                let i = pos + i;
                if i + 1 >= len {
                    return Err(no_eoi("inside the compressed image data"));
                }
                match b[i + 1] {
                    0x00 | 0xd0..=0xd7 => pos = i + 2,
                    0xff => pos = i + 1,
                    _ => {
                        pos = i;
                        break;
                    }
                }
            }
        }
    }
}
