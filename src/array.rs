//! Arrays: dtype, shape (C order, contiguous) and a buffer.

use std::fmt::{self, Write};

use crate::buffer::{Buffer, Device};
use crate::error::{bail, Result};

/// Element types. The numbers are the C API's `NNX_DTYPE_*` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum DType {
    Bool = 1,
    I8 = 2,
    I16 = 3,
    I32 = 4,
    I64 = 5,
    U8 = 6,
    U16 = 7,
    U32 = 8,
    U64 = 9,
    F16 = 10,
    BF16 = 11,
    F32 = 12,
    F64 = 13,
    F8E4M3FN = 14,
    F8E5M2 = 15,
}

impl DType {
    pub const ALL: [DType; 15] = [
        DType::Bool,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::F8E4M3FN,
        DType::F8E5M2,
    ];

    pub fn from_code(code: u32) -> Option<DType> {
        DType::ALL.iter().copied().find(|d| *d as u32 == code)
    }

    pub fn code(self) -> u32 {
        self as u32
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::I8 | DType::U8 | DType::F8E4M3FN | DType::F8E5M2 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// The numpy name (`float32`, `bfloat16`, `float8_e4m3fn`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F8E4M3FN => "float8_e4m3fn",
            DType::F8E5M2 => "float8_e5m2",
        }
    }

    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.iter().copied().find(|d| d.name() == name)
    }
}

/// Number of bytes an array of this dtype and shape takes; rejects negative
/// dimensions and sizes that overflow or pass `isize::MAX`. As numpy does,
/// the dimensions other than zeros must multiply within those bounds even
/// when a zero makes the array empty, so that its strides fit too and no
/// shape's verdict depends on the order of its dimensions.
pub fn byte_size(dtype: DType, shape: &[i64]) -> Result<usize> {
    let mut total = dtype.size();
    let mut empty = false;
    for (axis, &dim) in shape.iter().enumerate() {
        if dim < 0 {
            bail!(
                InvalidArgument,
                "shape {shape:?}: dimension {axis} is negative"
            );
        }
        if dim == 0 {
            empty = true;
            continue;
        }
        let Some(next) = usize::try_from(dim).ok().and_then(|d| total.checked_mul(d)) else {
            bail!(InvalidArgument, "shape {shape:?}: byte size overflows");
        };
        total = next;
    }
    if total > isize::MAX as usize {
        bail!(InvalidArgument, "shape {shape:?}: byte size overflows");
    }
    Ok(if empty { 0 } else { total })
}

/// A dense, C-ordered tensor. Immutable in shape and dtype; its bytes may be
/// written in place through the C API where the buffer is writable.
#[derive(Debug)]
pub struct Array {
    dtype: DType,
    shape: Box<[i64]>,
    buffer: Buffer,
}

/// Rust element types that map onto a dtype, for building arrays from slices.
pub trait Element: Copy {
    const DTYPE: DType;
    fn extend_bytes(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn extend_bytes(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_ne_bytes());
            }
        }
    )*};
}
element!(i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16,
         u32 => U32, u64 => U64, f32 => F32, f64 => F64);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn extend_bytes(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
}

impl Array {
    /// A new array holding a copy of `data`, or zeros when `data` is `None`.
    pub fn new(dtype: DType, shape: &[i64], data: Option<&[u8]>) -> Result<Array> {
        let nbytes = byte_size(dtype, shape)?;
        let buffer = match data {
            Some(bytes) => {
                check_len(dtype, shape, nbytes, bytes.len())?;
                Buffer::copy_from(bytes)?
            }
            None => Buffer::zeroed(nbytes)?,
        };
        Ok(Array {
            dtype,
            shape: shape.into(),
            buffer,
        })
    }

    /// An array over an existing buffer, which must hold exactly the bytes
    /// the dtype and shape call for.
    pub fn from_buffer(dtype: DType, shape: &[i64], buffer: Buffer) -> Result<Array> {
        let nbytes = byte_size(dtype, shape)?;
        check_len(dtype, shape, nbytes, buffer.len())?;
        Ok(Array {
            dtype,
            shape: shape.into(),
            buffer,
        })
    }

    /// A new array from Rust values.
    pub fn from_slice<T: Element>(shape: &[i64], values: &[T]) -> Result<Array> {
        let mut bytes = Vec::with_capacity(values.len() * T::DTYPE.size());
        for v in values {
            v.extend_bytes(&mut bytes);
        }
        Array::new(T::DTYPE, shape, Some(&bytes))
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    pub fn nbytes(&self) -> usize {
        self.buffer.len()
    }

    /// Number of elements.
    pub fn size(&self) -> usize {
        self.nbytes() / self.dtype.size()
    }

    pub fn buffer(&self) -> &Buffer {
        &self.buffer
    }

    pub fn device(&self) -> Device {
        self.buffer.device()
    }

    /// The bytes, if they live on the CPU.
    pub fn bytes(&self) -> Option<&[u8]> {
        self.buffer.bytes()
    }

    /// A copy with its own heap buffer. Fails for memory off the CPU.
    pub fn deep_copy(&self) -> Result<Array> {
        let Some(bytes) = self.bytes() else {
            bail!(
                InvalidArgument,
                "cannot copy an array on device {}: its memory is not the CPU's",
                self.device()
            );
        };
        Array::new(self.dtype, &self.shape, Some(bytes))
    }

    /// Element `index` (flat, C order) widened to a number for display.
    fn element(&self, bytes: &[u8], index: usize) -> Number {
        let size = self.dtype.size();
        let raw = &bytes[index * size..(index + 1) * size];
        let mut word = [0u8; 8];
        word[..size].copy_from_slice(raw);
        let u = u64::from_ne_bytes(word);
        // Sign-extend from the element's width.
        let s = |bits: u32| ((u << (64 - bits)) as i64) >> (64 - bits);
        match self.dtype {
            DType::Bool => Number::Bool(u != 0),
            DType::I8 => Number::Int(s(8)),
            DType::I16 => Number::Int(s(16)),
            DType::I32 => Number::Int(s(32)),
            DType::I64 => Number::Int(u as i64),
            DType::U8 | DType::U16 | DType::U32 => Number::Int(u as i64),
            DType::U64 => Number::UInt(u),
            // Narrow floats print at single precision, as numpy prints them.
            DType::F16 => Number::Float32(half_to_f64(u as u16) as f32),
            DType::BF16 => Number::Float32(f32::from_bits((u as u32) << 16)),
            DType::F32 => Number::Float32(f32::from_bits(u as u32)),
            DType::F64 => Number::Float(f64::from_bits(u)),
            DType::F8E4M3FN => Number::Float32(f8_to_f64(u as u8, 3, 7, true) as f32),
            DType::F8E5M2 => Number::Float32(f8_to_f64(u as u8, 2, 15, false) as f32),
        }
    }

    /// The elements as `f64` (bools as 0/1), for tests and tools. `None` off
    /// the CPU.
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        let bytes = self.bytes()?;
        Some(
            (0..self.size())
                .map(|i| match self.element(bytes, i) {
                    Number::Bool(b) => b as u8 as f64,
                    Number::Int(v) => v as f64,
                    Number::UInt(v) => v as f64,
                    Number::Float(v) => v,
                    Number::Float32(v) => v as f64,
                })
                .collect(),
        )
    }

    /// A short description: `float32[2,3] [0.0, 1.0, ...]`, at most
    /// `max_values` elements shown.
    pub fn summary(&self, max_values: usize) -> String {
        let mut out = format!("{}{:?}", self.dtype.name(), self.shape).replace(' ', "");
        let Some(bytes) = self.bytes() else {
            let _ = write!(out, " <device {}:{}>", self.device().kind, self.device().id);
            return out;
        };
        out.push_str(" [");
        let n = self.size();
        for i in 0..n.min(max_values) {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}", self.element(bytes, i));
        }
        if n > max_values {
            out.push_str(", ...");
        }
        out.push(']');
        out
    }
}

fn check_len(dtype: DType, shape: &[i64], expected: usize, got: usize) -> Result<()> {
    if expected != got {
        bail!(
            ShapeMismatch,
            "{} array of shape {:?} needs {} bytes, got {}",
            dtype.name(),
            shape,
            expected,
            got
        );
    }
    Ok(())
}

enum Number {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Float32(f32),
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            Number::Int(v) => write!(f, "{v}"),
            Number::UInt(v) => write!(f, "{v}"),
            Number::Float(v) => write!(f, "{v:?}"),
            Number::Float32(v) => write!(f, "{v:?}"),
        }
    }
}

fn half_to_f64(bits: u16) -> f64 {
    let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
    let exponent = ((bits >> 10) & 0x1f) as i32;
    let mantissa = (bits & 0x3ff) as f64;
    match exponent {
        0 => sign * mantissa * 2f64.powi(-24),
        0x1f if mantissa == 0.0 => sign * f64::INFINITY,
        0x1f => f64::NAN,
        e => sign * (1.0 + mantissa / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Decodes an 8-bit float with `mantissa_bits` and `bias`. `fn_variant`:
/// no infinities, and only all-ones is NaN (e4m3fn); otherwise IEEE-like
/// (e5m2).
fn f8_to_f64(bits: u8, mantissa_bits: u32, bias: i32, fn_variant: bool) -> f64 {
    let sign = if bits >> 7 == 1 { -1.0 } else { 1.0 };
    let exponent_bits = 7 - mantissa_bits;
    let exponent_max = (1u8 << exponent_bits) - 1;
    let exponent = (bits >> mantissa_bits) & exponent_max;
    let mantissa_max = (1u8 << mantissa_bits) - 1;
    let mantissa = bits & mantissa_max;
    let scale = (1u32 << mantissa_bits) as f64;
    if fn_variant {
        if exponent == exponent_max && mantissa == mantissa_max {
            return f64::NAN;
        }
    } else if exponent == exponent_max {
        return if mantissa == 0 {
            sign * f64::INFINITY
        } else {
            f64::NAN
        };
    }
    if exponent == 0 {
        sign * (mantissa as f64 / scale) * 2f64.powi(1 - bias)
    } else {
        sign * (1.0 + mantissa as f64 / scale) * 2f64.powi(exponent as i32 - bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_shape_against_bytes() {
        let err = Array::new(DType::F32, &[2, 3], Some(&[0u8; 20])).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::ShapeMismatch);
        assert!(Array::new(DType::F32, &[2, 3], Some(&[0u8; 24])).is_ok());
        assert_eq!(
            Array::new(DType::F32, &[-1], None).unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(
            Array::new(DType::F64, &[i64::MAX, 4], None)
                .unwrap_err()
                .kind(),
            crate::ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn byte_sizes_overflow_whatever_the_order_of_dimensions() {
        assert_eq!(byte_size(DType::F32, &[2, 3]).unwrap(), 24);
        assert_eq!(byte_size(DType::F32, &[]).unwrap(), 4);
        assert_eq!(byte_size(DType::F32, &[0, 1 << 40, 1 << 20]).unwrap(), 0);
        for shape in [[i64::MAX, 0, 2], [0, i64::MAX, 2], [i64::MAX, 2, 0]] {
            let err = byte_size(DType::F32, &shape).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
            assert!(err.message().ends_with("byte size overflows"));
        }
        assert!(byte_size(DType::U8, &[1 << 62, 0, 2]).is_err());
        assert!(byte_size(DType::U8, &[1 << 61, 0, 2]).is_ok());
    }

    #[test]
    fn scalars_and_empty_arrays() {
        let scalar = Array::from_slice(&[], &[3.5f64]).unwrap();
        assert_eq!(scalar.ndim(), 0);
        assert_eq!(scalar.size(), 1);
        let empty = Array::new(DType::I32, &[0, 5], None).unwrap();
        assert_eq!(empty.nbytes(), 0);
    }

    #[test]
    fn summaries_decode_every_dtype() {
        let a = Array::from_slice(&[3], &[1.0f32, -2.5, 0.1]).unwrap();
        assert_eq!(a.summary(8), "float32[3] [1.0, -2.5, 0.1]");
        let h = Array::new(DType::F16, &[2], Some(&[0x00, 0x3c, 0x00, 0xc0])).unwrap();
        assert_eq!(h.to_f64_vec().unwrap(), vec![1.0, -2.0]);
        let b = Array::new(DType::BF16, &[1], Some(&[0x80, 0x3f])).unwrap();
        assert_eq!(b.to_f64_vec().unwrap(), vec![1.0]);
        // e4m3fn: 0x38 = 1.0, 0x7e = 448; e5m2: 0x3c = 1.0, 0x7c = inf.
        let e4 = Array::new(DType::F8E4M3FN, &[2], Some(&[0x38, 0x7e])).unwrap();
        assert_eq!(e4.to_f64_vec().unwrap(), vec![1.0, 448.0]);
        let e5 = Array::new(DType::F8E5M2, &[2], Some(&[0x3c, 0x7c])).unwrap();
        assert_eq!(e5.to_f64_vec().unwrap(), vec![1.0, f64::INFINITY]);
        let i = Array::from_slice(&[2], &[-3i8, 4]).unwrap();
        assert_eq!(i.summary(1), "int8[2] [-3, ...]");
        for dtype in DType::ALL {
            assert_eq!(DType::from_code(dtype.code()), Some(dtype));
            assert_eq!(DType::from_name(dtype.name()), Some(dtype));
            let zeros = Array::new(dtype, &[2], None).unwrap();
            assert_eq!(zeros.to_f64_vec().unwrap(), vec![0.0, 0.0]);
        }
    }
}
