//! The header of a safetensors file: its dtypes, tensor entries and
//! `__metadata__`, checked against the format's rules.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::array::{byte_size, DType};
use crate::error::{bail, Result};
use crate::io::json::parse_strict;

/// The `__metadata__` entry that records a state written by this library.
use super::*;

/// The safetensors name of a dtype.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::Bool => "BOOL",
        DType::I8 => "I8",
        DType::I16 => "I16",
        DType::I32 => "I32",
        DType::I64 => "I64",
        DType::U8 => "U8",
        DType::U16 => "U16",
        DType::U32 => "U32",
        DType::U64 => "U64",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::F32 => "F32",
        DType::F64 => "F64",
        DType::F8E4M3FN => "F8_E4M3",
        DType::F8E5M2 => "F8_E5M2",
    }
}

/// safetensors dtypes this library has no array type for.
pub(crate) const UNSUPPORTED_DTYPES: [&str; 7] = [
    "F4",
    "F6_E2M3",
    "F6_E3M2",
    "F8_E8M0",
    "F8_E4M3FNUZ",
    "F8_E5M2FNUZ",
    "C64",
];

pub(crate) fn dtype_from_name(name: &str) -> std::result::Result<DType, String> {
    if let Some(d) = DType::ALL.into_iter().find(|d| dtype_name(*d) == name) {
        return Ok(d);
    }
    if UNSUPPORTED_DTYPES.contains(&name) {
        Err(format!(
            "dtype {name} is a safetensors dtype that nnx-state arrays cannot hold"
        ))
    } else {
        Err(format!("unknown dtype {name:?}"))
    }
}

pub(crate) fn st_dtype(dtype: DType) -> ::safetensors::Dtype {
    use ::safetensors::Dtype as D;
    match dtype {
        DType::Bool => D::BOOL,
        DType::I8 => D::I8,
        DType::I16 => D::I16,
        DType::I32 => D::I32,
        DType::I64 => D::I64,
        DType::U8 => D::U8,
        DType::U16 => D::U16,
        DType::U32 => D::U32,
        DType::U64 => D::U64,
        DType::F16 => D::F16,
        DType::BF16 => D::BF16,
        DType::F32 => D::F32,
        DType::F64 => D::F64,
        DType::F8E4M3FN => D::F8_E4M3,
        DType::F8E5M2 => D::F8_E5M2,
    }
}

// ---------------------------------------------------------------------------
// The header

/// One tensor of a file, checked.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<i64>,
    /// Offsets in the data buffer.
    pub begin: usize,
    pub end: usize,
}

/// The checked header of a file.
#[derive(Clone, Debug)]
pub struct Header {
    /// Where the data buffer starts in the file.
    pub data_start: usize,
    /// The tensors, by offset.
    pub tensors: Vec<TensorEntry>,
    /// `__metadata__`, all of it.
    pub metadata: BTreeMap<String, String>,
}

pub(crate) fn parse_entry(name: &str, entry: &Value, data_len: usize) -> Result<TensorEntry> {
    let fail = |what: String| Err(format_error(format!("tensor {name:?}: {what}")));
    let Value::Object(entry) = entry else {
        return fail("its entry is not a JSON object".into());
    };
    let dtype = match entry.get("dtype") {
        Some(Value::String(s)) => match dtype_from_name(s) {
            Ok(d) => d,
            Err(e) => return fail(e),
        },
        Some(_) => return fail("\"dtype\" is not a string".into()),
        None => return fail("\"dtype\" is missing".into()),
    };
    let shape = match entry.get("shape") {
        Some(Value::Array(dims)) => {
            let mut shape = Vec::with_capacity(dims.len());
            for dim in dims {
                match dim.as_u64().and_then(|d| i64::try_from(d).ok()) {
                    Some(d) => shape.push(d),
                    None => {
                        return fail(format!(
                            "\"shape\" holds {dim}, which is not a dimension (an integer from 0 to 2^63-1)"
                        ))
                    }
                }
            }
            shape
        }
        Some(_) => return fail("\"shape\" is not a list".into()),
        None => return fail("\"shape\" is missing".into()),
    };
    let offsets = match entry.get("data_offsets") {
        Some(Value::Array(pair)) if pair.len() == 2 => pair,
        Some(_) => return fail("\"data_offsets\" is not a list of two offsets".into()),
        None => return fail("\"data_offsets\" is missing".into()),
    };
    let (Some(begin), Some(end)) = (offsets[0].as_u64(), offsets[1].as_u64()) else {
        return fail(format!(
            "\"data_offsets\" [{}, {}] are not offsets (non-negative integers)",
            offsets[0], offsets[1]
        ));
    };
    if begin > end {
        return fail(format!(
            "data_offsets [{begin}, {end}] end before they begin"
        ));
    }
    let Ok(need) = byte_size(dtype, &shape) else {
        return fail(format!("shape {shape:?} is too large"));
    };
    if end - begin != need as u64 {
        return fail(format!(
            "dtype {} and shape {shape:?} need {need} bytes, but data_offsets [{begin}, {end}] hold {}",
            dtype_name(dtype),
            end - begin
        ));
    }
    if end > data_len as u64 {
        return fail(format!(
            "data_offsets [{begin}, {end}] run past the end of the data buffer ({data_len} bytes)"
        ));
    }
    Ok(TensorEntry {
        name: name.to_owned(),
        dtype,
        shape,
        begin: begin as usize,
        end: end as usize,
    })
}

pub(crate) fn parse_metadata(value: &Value) -> Result<BTreeMap<String, String>> {
    match value {
        // The reference reader takes `null` as no metadata.
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format_error(format!(
                    "__metadata__ must map names to strings, but {k:?} is {}",
                    json_kind(other)
                ))),
            })
            .collect(),
        other => Err(format_error(format!(
            "__metadata__ must be an object of strings, not {}",
            json_kind(other)
        ))),
    }
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// What the first bytes of a file that is not safetensors look like: the
/// formats a checkpoint is mistaken for most, else text or the bytes.
pub(crate) fn what_it_looks_like(bytes: &[u8]) -> String {
    const MAGICS: [(&[u8], &str); 8] = [
        (
            b"PK\x03\x04",
            "a zip archive (a PyTorch .pt/.bin file or an .npz is one)",
        ),
        (b"PK\x05\x06", "an empty zip archive"),
        (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5)"),
        (b"\x93NUMPY", "a numpy .npy file"),
        (b"\x1f\x8b", "gzip-compressed data"),
        (b"GGUF", "a GGUF file"),
        (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
        (b"\xfd7zXZ\x00", "xz-compressed data"),
    ];
    if let Some((_, what)) = MAGICS.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return format!("the first bytes look like {what}");
    }
    // Pickle (PyTorch's legacy format): PROTO 2..5.
    if let [0x80, 2..=5, ..] = bytes {
        return "the first bytes look like a Python pickle (a legacy PyTorch file)".into();
    }
    // msgpack of a map (what flax.serialization.to_bytes writes).
    if let [0x81..=0x8f | 0xde | 0xdf, ..] = bytes {
        return "the first bytes look like msgpack (flax.serialization.to_bytes output)".into();
    }
    const SHOWN: usize = 24;
    let head = &bytes[..bytes.len().min(64)];
    let text = match std::str::from_utf8(head) {
        Ok(t) => Some(t),
        // Cut inside a character: the valid part.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    if let Some(text) = text.filter(|t| {
        !t.is_empty()
            && t.chars()
                .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
    }) {
        let shown: String = text.chars().take(SHOWN).collect();
        let json = if text.trim_start().starts_with(['{', '[']) {
            " (JSON?)"
        } else {
            ""
        };
        return format!("the first bytes look like text{json}: {shown:?}");
    }
    let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("its first bytes are {}", hex.join(" "))
}

/// Checks the whole layout of a safetensors file and returns its header.
/// Reads the header only, never the tensor bytes.
pub fn parse_header(bytes: &[u8]) -> Result<Header> {
    if cfg!(target_endian = "big") {
        bail!(
            Format,
            "safetensors data is little-endian and this machine is big-endian: not supported"
        );
    }
    let Some(len_bytes) = bytes.get(..LEN_BYTES) else {
        bail!(
            Format,
            "the file is truncated: {} bytes, too short for the 8-byte header length",
            bytes.len()
        );
    };
    let header_len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    let available = bytes.len() - LEN_BYTES;
    // A header that cannot be one, where no JSON object follows: another
    // kind of file, said as such rather than by the number its first bytes
    // make.
    let opens_object = bytes.get(LEN_BYTES) == Some(&b'{');
    if !opens_object && (header_len > MAX_HEADER_LEN || header_len > available as u64) {
        bail!(
            Format,
            "not a safetensors file: {}",
            what_it_looks_like(bytes)
        );
    }
    if header_len > MAX_HEADER_LEN {
        bail!(
            Format,
            "the header length {header_len} is over the format's limit of {MAX_HEADER_LEN} bytes"
        );
    }
    if header_len > available as u64 {
        bail!(
            Format,
            "the file is truncated: the header length {header_len} runs past the end of the file ({} bytes)",
            bytes.len()
        );
    }
    let data_start = LEN_BYTES + header_len as usize;
    let text = match std::str::from_utf8(&bytes[LEN_BYTES..data_start]) {
        Ok(text) => text,
        Err(e) => bail!(
            Format,
            "the header is not valid UTF-8 (at byte {} of the file)",
            LEN_BYTES + e.valid_up_to()
        ),
    };
    if !text.starts_with('{') {
        bail!(
            Format,
            "not a safetensors file: the header does not start with '{{' ({})",
            what_it_looks_like(bytes)
        );
    }
    let value = match parse_strict(text) {
        Ok(v) => v,
        Err(e) if e.to_string().starts_with("duplicate name") => {
            bail!(Format, "the header names something twice: {e}")
        }
        Err(e) => bail!(Format, "the header is not valid JSON: {e}"),
    };
    let Value::Object(map) = value else {
        bail!(Format, "the header is not a JSON object");
    };
    let data_len = bytes.len() - data_start;
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(map.len());
    for (name, entry) in &map {
        if name == "__metadata__" {
            metadata = parse_metadata(entry)?;
        } else {
            tensors.push(parse_entry(name, entry, data_len)?);
        }
    }
    tensors.sort_by_key(|a| (a.begin, a.end));
    let mut covered = 0;
    for (i, t) in tensors.iter().enumerate() {
        if t.begin < covered {
            let other = &tensors[i - 1];
            bail!(
                Format,
                "tensors {:?} (bytes {}..{}) and {:?} (bytes {}..{}) overlap",
                other.name,
                other.begin,
                other.end,
                t.name,
                t.begin,
                t.end
            );
        }
        if t.begin > covered {
            bail!(
                Format,
                "bytes {covered}..{} of the data buffer belong to no tensor (a hole before {:?})",
                t.begin,
                t.name
            );
        }
        covered = t.end;
    }
    if covered != data_len {
        bail!(
            Format,
            "the data buffer has {} bytes after the last tensor (the file holds trailing bytes)",
            data_len - covered
        );
    }
    // The reference implementation's reader, as a second opinion.
    if let Err(e) = ::safetensors::SafeTensors::read_metadata(bytes) {
        bail!(Format, "the safetensors reader rejects the file: {e}");
    }
    Ok(Header {
        data_start,
        tensors,
        metadata,
    })
}
