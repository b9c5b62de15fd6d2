//! Variables: a type, a value (none, an array, a typed PRNG key or an opaque
//! object) and metadata, shared by reference.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::array::Array;
use crate::error::{bail, Result};
pub use crate::meta::MetaValue;
use crate::types::{self, TypeId};
use crate::value::Value;

/// A variable's metadata, in the order entries were first set. Variables
/// hold a few entries at most (a tag, a sharding hint), so a vector searched
/// in order is both smaller than a map (24 bytes, nothing allocated while
/// empty) and as fast.
#[derive(Clone, Debug, Default)]
struct Metadata(Vec<(String, MetaValue)>);

impl Metadata {
    fn get(&self, name: &str) -> Option<&MetaValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn insert(&mut self, name: &str, value: MetaValue) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some((_, slot)) => *slot = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    fn remove(&mut self, name: &str) -> Option<MetaValue> {
        let index = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(index).1)
    }
}

/// The metadata entry that tag filters read.
pub const TAG: &str = "tag";

#[derive(Debug)]
struct Data {
    value: Value,
    metadata: Metadata,
}

/// How many times any variable's value or metadata may have changed since
/// the process started: a reader that saw the same count before reading
/// may keep what it read (see [`changes`]).
static CHANGES: AtomicU64 = AtomicU64::new(0);

/// The count of variable changes (see `CHANGES`), as a counter that lives
/// for the whole process.
pub fn changes() -> &'static AtomicU64 {
    &CHANGES
}

/// A typed slot for a value. States hold variables by `Arc`, so every state
/// that holds one sees its value change.
#[derive(Debug)]
pub struct Variable {
    type_id: TypeId,
    /// See [`Variable::revision`]; 32 bits, so that it fits beside
    /// `type_id` and the variable stays in its allocation size.
    revision: AtomicU32,
    data: RwLock<Data>,
}

impl Variable {
    /// A variable of a registered type holding `value` (`None`, an array,
    /// an `Option<Arc<Array>>`, a [`crate::PrngKey`], an [`crate::Opaque`]
    /// or a [`Value`]).
    pub fn new(type_id: TypeId, value: impl Into<Value>) -> Result<Variable> {
        types::check(type_id)?;
        Ok(Variable::with(type_id, value.into(), Metadata::default()))
    }

    /// A new variable of a type already checked: every constructor ends here.
    fn with(type_id: TypeId, value: Value, metadata: Metadata) -> Variable {
        Variable {
            type_id,
            revision: AtomicU32::new(0),
            data: RwLock::new(Data { value, metadata }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Data> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Data> {
        let guard = self.data.write().unwrap_or_else(|p| p.into_inner());
        // Counted under the lock: a reader that sees the new count (or the
        // new revision) reads the new data.
        CHANGES.fetch_add(1, Ordering::SeqCst);
        self.revision.fetch_add(1, Ordering::SeqCst);
        guard
    }

    pub fn type_id(&self) -> TypeId {
        self.type_id
    }

    /// A count of this variable's changes (value or metadata), wrapping
    /// at 2^32: a reader that finds the same revision again, while fewer
    /// than 2^32 changes of any variable happened in between (see
    /// [`changes`]), may keep what it read of this variable.
    pub fn revision(&self) -> u32 {
        self.revision.load(Ordering::SeqCst)
    }

    pub fn type_name(&self) -> &'static str {
        types::name(self.type_id).unwrap_or("?")
    }

    /// The value (sharing what it holds).
    pub fn value(&self) -> Value {
        self.read().value.clone()
    }

    /// The value if it is an array; `None` for no value, a key or an
    /// opaque value.
    pub fn array(&self) -> Option<Arc<Array>> {
        self.read().value.as_array().cloned()
    }

    /// Replaces the value; every holder of this variable sees the new one.
    pub fn set_value(&self, value: impl Into<Value>) {
        let old = std::mem::replace(&mut self.write().value, value.into());
        // The old value may run a caller's release callback: do that after
        // the lock is gone.
        drop(old);
    }

    pub fn metadata(&self, name: &str) -> Option<MetaValue> {
        self.read().metadata.get(name).cloned()
    }

    pub fn set_metadata(&self, name: &str, value: MetaValue) -> Result<()> {
        if name.is_empty() {
            bail!(InvalidArgument, "a metadata name cannot be empty");
        }
        if name.contains('\0') {
            bail!(InvalidArgument, "a metadata name cannot contain NUL");
        }
        self.write().metadata.insert(name, value);
        Ok(())
    }

    pub fn remove_metadata(&self, name: &str) -> Option<MetaValue> {
        self.write().metadata.remove(name)
    }

    /// All metadata entries, in the order they were first set.
    pub fn metadata_entries(&self) -> Vec<(String, MetaValue)> {
        self.read().metadata.0.clone()
    }

    /// The `tag` metadata, if it is a string.
    pub fn tag(&self) -> Option<String> {
        match self.read().metadata.get(TAG) {
            Some(MetaValue::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// Whether the `tag` metadata is the string `tag` (no copy).
    pub fn has_tag(&self, tag: &str) -> bool {
        matches!(self.read().metadata.get(TAG), Some(MetaValue::Str(s)) if s == tag)
    }

    /// A new variable with the same type, the same value (shared, as every
    /// holder shares it) and a copy of the metadata: Flax's
    /// `Variable.copy()`.
    pub fn shallow_copy(&self) -> Variable {
        let data = self.read();
        Variable::with(self.type_id, data.value.clone(), data.metadata.clone())
    }

    /// A new variable with the same type, a copy of the metadata and
    /// `value`: Flax's `Variable.replace(value)`.
    pub fn replaced(&self, value: impl Into<Value>) -> Variable {
        Variable::with(self.type_id, value.into(), self.read().metadata.clone())
    }

    /// A new variable with the same type and metadata and a copy of the
    /// value ([`Value::deep_copy`]: an opaque value is shared).
    pub fn deep_copy(&self) -> Result<Variable> {
        let data = self.read();
        let value = data.value.deep_copy()?;
        Ok(Variable::with(self.type_id, value, data.metadata.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_move_with_every_change() {
        let var = Variable::new(TypeId::PARAM, None).unwrap();
        let first = var.revision();
        assert_eq!(var.revision(), first, "reading does not move it");
        var.set_value(Arc::new(Array::from_slice(&[1], &[2.0f32]).unwrap()));
        let after_value = var.revision();
        var.set_metadata("sharding", MetaValue::Null).unwrap();
        let after_metadata = var.revision();
        var.remove_metadata("sharding");
        let all = [first, after_value, after_metadata, var.revision()];
        assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
        let copy = var.replaced(None);
        let before = copy.revision();
        copy.set_value(None);
        assert_ne!(copy.revision(), before);
        assert_eq!(var.revision(), all[3], "a copy's changes are its own");
    }

    #[test]
    fn value_changes_are_shared() {
        let var = Arc::new(Variable::new(TypeId::PARAM, None).unwrap());
        let other_holder = var.clone();
        assert!(matches!(var.value(), Value::None));
        let array = Arc::new(Array::from_slice(&[1], &[2.0f32]).unwrap());
        var.set_value(Some(array.clone()));
        assert!(Arc::ptr_eq(&other_holder.array().unwrap(), &array));
    }

    #[test]
    fn metadata_and_tags() {
        let var = Variable::new(TypeId::CACHE, None).unwrap();
        assert_eq!(var.tag(), None);
        var.set_metadata("tag", MetaValue::Str("dropout".into()))
            .unwrap();
        var.set_metadata("sharding", MetaValue::Int(4)).unwrap();
        assert!(var.has_tag("dropout"));
        assert!(!var.has_tag("drop"));
        assert_eq!(var.metadata("sharding"), Some(MetaValue::Int(4)));
        assert_eq!(var.metadata_entries().len(), 2);
        assert_eq!(
            var.remove_metadata("tag"),
            Some(MetaValue::Str("dropout".into()))
        );
        assert_eq!(var.tag(), None);
        var.set_metadata("tag", MetaValue::Int(3)).unwrap();
        assert!(!var.has_tag("3"));
        assert!(var.set_metadata("", MetaValue::Bool(true)).is_err());
    }

    #[test]
    fn unknown_types_are_rejected() {
        let err = Variable::new(TypeId::from_raw(u32::MAX), None).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::UnknownType);
    }

    #[test]
    fn deep_copy_copies_the_value() {
        let var = Variable::new(
            TypeId::PARAM,
            Some(Arc::new(Array::from_slice(&[2], &[1i32, 2]).unwrap())),
        )
        .unwrap();
        var.set_metadata("tag", MetaValue::Str("t".into())).unwrap();
        let copy = var.deep_copy().unwrap();
        assert!(!Arc::ptr_eq(&copy.array().unwrap(), &var.array().unwrap()));
        assert_eq!(copy.array().unwrap().bytes(), var.array().unwrap().bytes());
        assert_eq!(copy.tag().as_deref(), Some("t"));
    }
}
