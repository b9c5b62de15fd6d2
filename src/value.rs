//! What a variable holds: nothing, an array, a typed PRNG key, or a
//! caller's opaque object.
//!
//! A typed key is what `jax.random.key` makes and `nnx.Rngs` keeps in every
//! `RngKey`: an array of key data (`jax.random.key_data`, always `uint32`,
//! the key shape last) and the name of the implementation
//! (`jax.random.key_impl`, such as `threefry2x32`). An opaque value is an
//! object the library holds for a caller and never looks into (a jax array
//! on a device, a tracer, a `ShapeDtypeStruct`): an address, a type name
//! the caller chose, and a release callback run once when the last holder
//! lets go.

use std::fmt::{self, Write};
use std::sync::{Arc, Mutex};

use crate::array::{Array, DType};
use crate::buffer::Release;
use crate::error::{bail, Result};
use crate::key::KeyStr;

/// A variable's value. Cloning shares what it holds.
#[derive(Clone, Debug, Default)]
pub enum Value {
    #[default]
    None,
    Array(Arc<Array>),
    Key(Arc<PrngKey>),
    Opaque(Arc<Opaque>),
}

impl Value {
    /// What the value is, for messages: `an array`, `a typed PRNG key
    /// (threefry2x32)`, `an opaque value (python:jax.Array)`, `no value`.
    pub fn describe(&self) -> String {
        match self {
            Value::None => "no value".to_owned(),
            Value::Array(_) => "an array".to_owned(),
            Value::Key(k) => format!("a typed PRNG key ({})", k.impl_name()),
            Value::Opaque(o) => format!("an opaque value ({})", o.type_name()),
        }
    }

    /// The array, if the value is one.
    pub fn as_array(&self) -> Option<&Arc<Array>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A copy that shares nothing mutable with this one: arrays and key
    /// data are copied; an opaque value is shared, since the library never
    /// changes it (as `nnx.clone` shares jax arrays, which are immutable).
    /// Fails for arrays off the CPU.
    pub fn deep_copy(&self) -> Result<Value> {
        Ok(match self {
            Value::None => Value::None,
            Value::Array(a) => Value::Array(Arc::new(a.deep_copy()?)),
            Value::Key(k) => Value::Key(Arc::new(PrngKey {
                data: Arc::new(k.data.deep_copy()?),
                impl_name: k.impl_name,
            })),
            Value::Opaque(o) => Value::Opaque(o.clone()),
        })
    }
}

impl From<Option<Arc<Array>>> for Value {
    fn from(value: Option<Arc<Array>>) -> Value {
        value.map_or(Value::None, Value::Array)
    }
}

impl From<Arc<Array>> for Value {
    fn from(array: Arc<Array>) -> Value {
        Value::Array(array)
    }
}

impl From<PrngKey> for Value {
    fn from(key: PrngKey) -> Value {
        Value::Key(Arc::new(key))
    }
}

impl From<Opaque> for Value {
    fn from(opaque: Opaque) -> Value {
        Value::Opaque(Arc::new(opaque))
    }
}

/// A PRNG implementation that jax registers: its name, the shape of one
/// key's data, and the short tag its dtype prints with (`key<fry>`).
struct KnownImpl {
    name: &'static str,
    key_len: i64,
    tag: &'static str,
}

/// jax's own implementations (jax 0.10, `jax._src.random.prng.prngs`).
/// Others (made with `jax.extend.random.define_prng_impl`) are accepted
/// with the checks every key passes.
const KNOWN_IMPLS: [KnownImpl; 6] = [
    KnownImpl {
        name: "threefry2x32",
        key_len: 2,
        tag: "fry",
    },
    KnownImpl {
        name: "rbg",
        key_len: 4,
        tag: "rbg",
    },
    KnownImpl {
        name: "unsafe_rbg",
        key_len: 4,
        tag: "urbg",
    },
    KnownImpl {
        name: "threefry4x32",
        key_len: 4,
        tag: "fry4",
    },
    KnownImpl {
        name: "philox2x32",
        key_len: 1,
        tag: "phx2",
    },
    KnownImpl {
        name: "philox4x32",
        key_len: 2,
        tag: "phx4",
    },
];

/// A typed PRNG key (or an array of them): key data and an implementation
/// name.
#[derive(Debug)]
pub struct PrngKey {
    data: Arc<Array>,
    impl_name: KeyStr,
}

/// Checks a name the caller gives (an implementation, an opaque type).
fn check_name(name: &str, what: &str) -> Result<()> {
    if name.is_empty() {
        bail!(InvalidArgument, "{what} cannot be empty");
    }
    if name.contains('\0') {
        bail!(InvalidArgument, "{what} cannot contain NUL");
    }
    Ok(())
}

impl PrngKey {
    /// A key over `data`, which must be what jax accepts as key data:
    /// `uint32` with at least one dimension, and for jax's own
    /// implementations, the key shape last (`[..., 2]` for `threefry2x32`,
    /// `[..., 4]` for `rbg`).
    pub fn new(data: Arc<Array>, impl_name: &str) -> Result<PrngKey> {
        check_name(impl_name, "a PRNG implementation name")?;
        if data.dtype() != DType::U32 {
            bail!(
                InvalidArgument,
                "key data must be uint32, as jax.random.key_data gives; got {}",
                data.dtype().name()
            );
        }
        let Some(&last) = data.shape().last() else {
            bail!(
                InvalidArgument,
                "key data needs at least one dimension (the key shape); got a scalar"
            );
        };
        if let Some(known) = KNOWN_IMPLS.iter().find(|k| k.name == impl_name) {
            if last != known.key_len {
                bail!(
                    InvalidArgument,
                    "{impl_name} key data has shape [..., {}]; got {:?}",
                    known.key_len,
                    data.shape()
                );
            }
        }
        Ok(PrngKey {
            data,
            impl_name: KeyStr::new(impl_name),
        })
    }

    /// The key data (`jax.random.key_data`).
    pub fn data(&self) -> &Arc<Array> {
        &self.data
    }

    /// The implementation's name (`str(jax.random.key_impl(k))`).
    pub fn impl_name(&self) -> &'static str {
        self.impl_name.as_str()
    }

    /// The name followed by NUL, valid for the life of the process (names
    /// are interned).
    pub fn impl_name_with_nul(&self) -> &'static [u8] {
        self.impl_name.as_bytes_with_nul()
    }

    fn known(&self) -> Option<&'static KnownImpl> {
        KNOWN_IMPLS.iter().find(|k| k.name == self.impl_name())
    }

    /// The number of keys: the data's elements over one key's, where the
    /// implementation is known; else the data's elements.
    pub fn count(&self) -> usize {
        match self.known() {
            Some(k) => self.data.size() / k.key_len as usize,
            None => self.data.size(),
        }
    }

    /// The key array's dtype as jax names it: `key<fry>` for
    /// `threefry2x32` (jax's short tag), `key<NAME>` for an implementation
    /// it does not register.
    pub fn dtype_name(&self) -> String {
        format!("key<{}>", self.known().map_or(self.impl_name(), |k| k.tag))
    }

    /// `key<fry>[] overlaying uint32[2] [0, 0]`, as jax prints a key array
    /// (`Array((), dtype=key<fry>) overlaying: [0 0]`): the key array's
    /// shape where the implementation is known, then the data.
    pub fn summary(&self, max_values: usize) -> String {
        let mut out = self.dtype_name();
        if self.known().is_some() {
            let keys = &self.data.shape()[..self.data.ndim() - 1];
            out.push_str(&format!("{keys:?}").replace(' ', ""));
        }
        let _ = write!(out, " overlaying {}", self.data.summary(max_values));
        out
    }
}

/// A caller's object: held by address, never looked into, released once.
pub struct Opaque {
    type_name: KeyStr,
    address: usize,
    /// Taken and run when the value drops. In a mutex only so that the
    /// value is `Sync`; nothing else touches it.
    release: Mutex<Option<Release>>,
}

impl Opaque {
    /// An opaque value of the caller's `type_name` (a name for people and
    /// for the caller's own checks, such as `python:jax.Array`; not empty)
    /// at `address`. `release` runs exactly once, on the thread that drops
    /// the last holder. On failure `release` is dropped without being run.
    pub fn new(type_name: &str, address: usize, release: Option<Release>) -> Result<Opaque> {
        check_name(type_name, "an opaque value's type name")?;
        Ok(Opaque {
            type_name: KeyStr::new(type_name),
            address,
            release: Mutex::new(release),
        })
    }

    pub fn type_name(&self) -> &'static str {
        self.type_name.as_str()
    }

    /// The type name followed by NUL, valid for the life of the process.
    pub fn type_name_with_nul(&self) -> &'static [u8] {
        self.type_name.as_bytes_with_nul()
    }

    /// The address the caller gave.
    pub fn address(&self) -> usize {
        self.address
    }
}

impl Drop for Opaque {
    fn drop(&mut self) {
        let release = self
            .release
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(release) = release {
            release();
        }
    }
}

impl fmt::Debug for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opaque")
            .field("type_name", &self.type_name())
            .field("address", &format_args!("{:#x}", self.address))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key_data(shape: &[i64], values: &[u32]) -> Arc<Array> {
        Arc::new(Array::from_slice(shape, values).unwrap())
    }

    #[test]
    fn keys_take_what_jax_takes() {
        let k = PrngKey::new(key_data(&[2], &[0, 42]), "threefry2x32").unwrap();
        assert_eq!(k.impl_name(), "threefry2x32");
        assert_eq!(k.impl_name_with_nul(), b"threefry2x32\0");
        assert_eq!(k.count(), 1);
        assert_eq!(k.summary(8), "key<fry>[] overlaying uint32[2] [0, 42]");
        let batch = PrngKey::new(key_data(&[3, 4], &[7; 12]), "rbg").unwrap();
        assert_eq!(batch.count(), 3);
        assert!(batch
            .summary(2)
            .starts_with("key<rbg>[3] overlaying uint32[3,4] [7, 7, ...]"));
        let custom = PrngKey::new(key_data(&[3], &[1, 2, 3]), "my_prng").unwrap();
        assert_eq!(custom.count(), 3);
        assert_eq!(
            custom.summary(8),
            "key<my_prng> overlaying uint32[3] [1, 2, 3]"
        );

        let wrong_len = PrngKey::new(key_data(&[4], &[0; 4]), "threefry2x32").unwrap_err();
        assert!(wrong_len.message().contains("[..., 2]"), "{wrong_len}");
        let scalar = PrngKey::new(key_data(&[], &[0]), "my_prng").unwrap_err();
        assert!(scalar.message().contains("dimension"), "{scalar}");
        let int32 = Arc::new(Array::from_slice(&[2], &[0i32, 1]).unwrap());
        let err = PrngKey::new(int32, "threefry2x32").unwrap_err();
        assert!(err.message().contains("uint32"), "{err}");
        assert!(PrngKey::new(key_data(&[2], &[0, 1]), "").is_err());
        assert!(PrngKey::new(key_data(&[2], &[0, 1]), "a\0b").is_err());
    }

    #[test]
    fn deep_copies_copy_key_data_and_share_opaque_values() {
        let data = key_data(&[2], &[5, 6]);
        let key = Value::from(PrngKey::new(data.clone(), "threefry2x32").unwrap());
        let Value::Key(copy) = key.deep_copy().unwrap() else {
            panic!("not a key")
        };
        assert!(!Arc::ptr_eq(copy.data(), &data));
        assert_eq!(copy.data().bytes(), data.bytes());
        assert_eq!(copy.impl_name(), "threefry2x32");

        let released = Arc::new(AtomicUsize::new(0));
        let seen = released.clone();
        let opaque = Value::from(
            Opaque::new(
                "test:thing",
                0x1000,
                Some(Box::new(move || {
                    seen.fetch_add(1, Ordering::SeqCst);
                })),
            )
            .unwrap(),
        );
        let shared = opaque.deep_copy().unwrap();
        match (&opaque, &shared) {
            (Value::Opaque(a), Value::Opaque(b)) => assert!(Arc::ptr_eq(a, b)),
            _ => panic!("not opaque"),
        }
        assert_eq!(opaque.describe(), "an opaque value (test:thing)");
        drop(opaque);
        assert_eq!(released.load(Ordering::SeqCst), 0);
        drop(shared);
        assert_eq!(released.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_opaque_never_releases() {
        let released = Arc::new(AtomicUsize::new(0));
        let seen = released.clone();
        let err = Opaque::new(
            "",
            1,
            Some(Box::new(move || {
                seen.fetch_add(1, Ordering::SeqCst);
            })),
        )
        .unwrap_err();
        assert!(err.message().contains("empty"));
        assert_eq!(released.load(Ordering::SeqCst), 0);
    }
}
