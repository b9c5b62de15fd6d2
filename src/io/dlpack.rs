//! The safe half of DLPack (version 1.1): dtypes and layouts. The C structs
//! and the pointer work are in the C layer (`ffi::dlpack`).

use crate::array::{byte_size, DType};
use crate::buffer::check_span;
use crate::error::{bail, Result};

/// `DLDataTypeCode` values.
pub(crate) mod code {
    pub(crate) const INT: u8 = 0;
    pub(crate) const UINT: u8 = 1;
    pub(crate) const FLOAT: u8 = 2;
    pub(crate) const BFLOAT: u8 = 4;
    pub(crate) const BOOL: u8 = 6;
    pub(crate) const FLOAT8_E4M3FN: u8 = 10;
    pub(crate) const FLOAT8_E5M2: u8 = 12;
}

/// A DLPack dtype: type code, bits per lane, lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DlDtype {
    pub code: u8,
    pub bits: u8,
    pub lanes: u16,
}

/// The DLPack dtype of an array dtype.
pub fn to_dl(dtype: DType) -> DlDtype {
    let (code, bits) = match dtype {
        DType::Bool => (code::BOOL, 8),
        DType::I8 => (code::INT, 8),
        DType::I16 => (code::INT, 16),
        DType::I32 => (code::INT, 32),
        DType::I64 => (code::INT, 64),
        DType::U8 => (code::UINT, 8),
        DType::U16 => (code::UINT, 16),
        DType::U32 => (code::UINT, 32),
        DType::U64 => (code::UINT, 64),
        DType::F16 => (code::FLOAT, 16),
        DType::BF16 => (code::BFLOAT, 16),
        DType::F32 => (code::FLOAT, 32),
        DType::F64 => (code::FLOAT, 64),
        DType::F8E4M3FN => (code::FLOAT8_E4M3FN, 8),
        DType::F8E5M2 => (code::FLOAT8_E5M2, 8),
    };
    DlDtype {
        code,
        bits,
        lanes: 1,
    }
}

/// The array dtype of a DLPack dtype; `Format` for one arrays cannot hold.
pub fn from_dl(dl: DlDtype) -> Result<DType> {
    if dl.lanes != 1 {
        bail!(
            Format,
            "DLPack dtype with {} lanes: only single-lane (scalar) elements are supported",
            dl.lanes
        );
    }
    let dtype = DType::ALL.into_iter().find(|d| to_dl(*d) == dl);
    match dtype {
        Some(d) => Ok(d),
        None => bail!(
            Format,
            "DLPack dtype (code {}, {} bits) has no nnx-state dtype",
            dl.code,
            dl.bits
        ),
    }
}

/// Where a DLPack tensor's elements are, once [`check_tensor`] has passed
/// its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub dtype: DType,
    /// Bytes from the tensor's `data` to its first element (`byte_offset`).
    pub offset: usize,
    /// Bytes of the elements, from there on.
    pub nbytes: usize,
}

/// Checks what a DLPack tensor's fields say before any of its memory is
/// taken: the one check of both the versioned and the legacy import.
/// `data` is the address of the tensor's memory (on its device: only the
/// number is used), `strides` `None` when the tensor has none (compact).
///
/// Refuses, with `Format`: a dtype arrays cannot hold (several lanes, bits
/// that name no dtype), a negative dimension, strides that are not compact
/// row-major, NULL `data` for a tensor with bytes. With
/// `InvalidArgument`: a byte size (dimensions times element size) that
/// overflows or passes `isize::MAX`, and a `byte_offset` with which the
/// elements, from `data` to their last byte, would pass `isize::MAX`
/// bytes or run past the end of the address space.
pub fn check_tensor(
    data: usize,
    dtype: DlDtype,
    shape: &[i64],
    strides: Option<&[i64]>,
    byte_offset: u64,
) -> Result<Extent> {
    let dtype = from_dl(dtype)?;
    if let Some(d) = shape.iter().find(|d| **d < 0) {
        bail!(Format, "DLPack tensor with negative dimension {d}");
    }
    let nbytes = byte_size(dtype, shape)?;
    if let Some(strides) = strides {
        if !is_c_contiguous(shape, strides) {
            bail!(
                Format,
                "DLPack tensor of shape {shape:?} with strides {strides:?} is not compact row-major: copy it first"
            );
        }
    }
    if data == 0 && nbytes != 0 {
        bail!(Format, "DLPack tensor with NULL data and {nbytes} bytes");
    }
    // The tensor's memory runs from `data` over the offset and the elements.
    let span = usize::try_from(byte_offset)
        .ok()
        .and_then(|offset| Some((offset, offset.checked_add(nbytes)?)));
    let Some((offset, span)) = span else {
        bail!(
            InvalidArgument,
            "DLPack tensor: byte_offset {byte_offset} plus its {nbytes} bytes overflows"
        );
    };
    check_span(data, span, || {
        format!("DLPack tensor with byte_offset {byte_offset} and {nbytes} bytes of elements")
    })?;
    Ok(Extent {
        dtype,
        offset,
        nbytes,
    })
}

/// The strides (in elements) of a compact row-major array.
pub fn c_strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![0; shape.len()];
    let mut step: i64 = 1;
    for (axis, &dim) in shape.iter().enumerate().rev() {
        strides[axis] = step;
        step = step.saturating_mul(dim.max(1));
    }
    strides
}

/// Whether `strides` (in elements) lay out `shape` compactly in row-major
/// order. Axes of length 1 may have any stride, and an empty array any
/// strides, as the array API standard allows.
pub fn is_c_contiguous(shape: &[i64], strides: &[i64]) -> bool {
    if shape.len() != strides.len() {
        return false;
    }
    if shape.contains(&0) {
        return true;
    }
    let mut expected: Option<i64> = Some(1);
    for (&dim, &stride) in shape.iter().zip(strides).rev() {
        // A stride past i64 (`None`) is no stride a tensor can have.
        if dim != 1 && Some(stride) != expected {
            return false;
        }
        expected = expected.and_then(|e| e.checked_mul(dim));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_round_trips() {
        for d in DType::ALL {
            assert_eq!(from_dl(to_dl(d)).unwrap(), d);
        }
        assert!(from_dl(DlDtype {
            code: code::FLOAT,
            bits: 32,
            lanes: 4
        })
        .is_err());
        assert!(from_dl(DlDtype {
            code: 5,
            bits: 64,
            lanes: 1
        })
        .is_err());
    }

    #[test]
    fn contiguity() {
        assert_eq!(c_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert!(is_c_contiguous(&[2, 3], &[3, 1]));
        assert!(!is_c_contiguous(&[2, 3], &[1, 2]));
        assert!(is_c_contiguous(&[2, 1, 3], &[3, 99, 1]));
        assert!(is_c_contiguous(&[0, 3], &[7, 7]));
        assert!(is_c_contiguous(&[], &[]));
        assert!(!is_c_contiguous(&[2], &[]));
        // The stride axis 0 would need is past i64: no stride matches it.
        assert!(!is_c_contiguous(&[2, i64::MAX, 2], &[i64::MAX, 2, 1]));
    }

    #[test]
    fn tensors_are_placed_within_the_address_space() {
        let f32 = to_dl(DType::F32);
        let extent = check_tensor(0x1000, f32, &[2, 3], None, 8).unwrap();
        assert_eq!(
            extent,
            Extent {
                dtype: DType::F32,
                offset: 8,
                nbytes: 24
            }
        );
        // Exactly up to the end of the address space, and one byte past it.
        assert!(check_tensor(usize::MAX - 32, f32, &[6], None, 8).is_ok());
        let kind = |r: Result<Extent>| r.unwrap_err().kind();
        let wraps = check_tensor(usize::MAX - 31, f32, &[6], None, 8);
        assert_eq!(kind(wraps), crate::ErrorKind::InvalidArgument);
        assert_eq!(
            kind(check_tensor(0x1000, f32, &[1], None, u64::MAX)),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(check_tensor(0x1000, f32, &[1 << 62], None, 0)),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(check_tensor(0x1000, f32, &[-1], None, 0)),
            crate::ErrorKind::Format
        );
        assert_eq!(
            kind(check_tensor(0, f32, &[1], None, 0)),
            crate::ErrorKind::Format
        );
        assert!(check_tensor(0, f32, &[0], None, 0).is_ok());
    }
}
