//! The process-wide registry of variable types: a tree rooted at `Variable`.
//!
//! Built-in types have fixed ids; users add types by name and parent.
//! Registration is rare and reads are hot, so readers take an immutable
//! snapshot (one `Arc` clone) and walk it without locks.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, RwLock};

use crate::error::{bail, Result};

/// A registered variable type. Ids are dense, start at 0 and never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeId(u32);

impl TypeId {
    pub const VARIABLE: TypeId = TypeId(0);
    pub const PARAM: TypeId = TypeId(1);
    pub const BATCH_STAT: TypeId = TypeId(2);
    pub const CACHE: TypeId = TypeId(3);
    pub const INTERMEDIATE: TypeId = TypeId(4);
    pub const PERTURBATION: TypeId = TypeId(5);
    pub const RNG_STATE: TypeId = TypeId(6);
    pub const RNG_KEY: TypeId = TypeId(7);
    pub const RNG_COUNT: TypeId = TypeId(8);
    pub const OPT_STATE: TypeId = TypeId(9);
    pub const OPT_ARRAY: TypeId = TypeId(10);
    pub const OPT_VARIABLE: TypeId = TypeId(11);

    /// The id with this number, whether or not it is registered; operations
    /// that take a `TypeId` check it.
    pub const fn from_raw(raw: u32) -> TypeId {
        TypeId(raw)
    }

    pub const fn raw(self) -> u32 {
        self.0
    }
}

/// The built-in types, in id order, with their parents (as in flax 0.12:
/// `Perturbation` derives from `Intermediate`).
const BUILTINS: [(&str, Option<TypeId>); 12] = [
    ("Variable", None),
    ("Param", Some(TypeId::VARIABLE)),
    ("BatchStat", Some(TypeId::VARIABLE)),
    ("Cache", Some(TypeId::VARIABLE)),
    ("Intermediate", Some(TypeId::VARIABLE)),
    ("Perturbation", Some(TypeId::INTERMEDIATE)),
    ("RngState", Some(TypeId::VARIABLE)),
    ("RngKey", Some(TypeId::RNG_STATE)),
    ("RngCount", Some(TypeId::RNG_STATE)),
    ("OptState", Some(TypeId::VARIABLE)),
    ("OptArray", Some(TypeId::OPT_STATE)),
    ("OptVariable", Some(TypeId::OPT_STATE)),
];

#[derive(Clone, Debug)]
struct TypeInfo {
    /// The name followed by a NUL byte; registry entries live as long as the
    /// process, so the C layer can lend this out with a static lifetime.
    name_with_nul: &'static str,
    parent: Option<TypeId>,
}

/// An immutable view of the registry.
#[derive(Clone, Debug)]
pub struct Registry {
    types: Vec<TypeInfo>,
    // A BTreeMap rather than a hash map: its nodes are held by pointers to
    // their start, so leak checkers see the process-lifetime registry as
    // reachable rather than "possibly lost".
    by_name: BTreeMap<&'static str, TypeId>,
}

impl Registry {
    fn with_builtins() -> Registry {
        let mut registry = Registry {
            types: Vec::new(),
            by_name: BTreeMap::new(),
        };
        for (name, parent) in BUILTINS {
            registry.push(name, parent);
        }
        registry
    }

    fn push(&mut self, name: &str, parent: Option<TypeId>) -> TypeId {
        let id = TypeId(self.types.len() as u32);
        let name_with_nul: &'static str = Box::leak(format!("{name}\0").into_boxed_str());
        self.types.push(TypeInfo {
            name_with_nul,
            parent,
        });
        self.by_name
            .insert(&name_with_nul[..name_with_nul.len() - 1], id);
        id
    }

    fn info(&self, id: TypeId) -> Result<&TypeInfo> {
        match self.types.get(id.0 as usize) {
            Some(info) => Ok(info),
            None => bail!(UnknownType, "unknown variable type id {}", id.0),
        }
    }

    pub fn contains(&self, id: TypeId) -> bool {
        (id.0 as usize) < self.types.len()
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    pub fn lookup(&self, name: &str) -> Option<TypeId> {
        self.by_name.get(name).copied()
    }

    pub fn name(&self, id: TypeId) -> Result<&'static str> {
        let with_nul = self.info(id)?.name_with_nul;
        Ok(&with_nul[..with_nul.len() - 1])
    }

    /// The name with its NUL terminator, valid for the life of the process.
    pub fn name_with_nul(&self, id: TypeId) -> Result<&'static str> {
        Ok(self.info(id)?.name_with_nul)
    }

    pub fn parent(&self, id: TypeId) -> Result<Option<TypeId>> {
        Ok(self.info(id)?.parent)
    }

    /// Whether `id` is `ancestor` or descends from it.
    pub fn is_subtype(&self, id: TypeId, ancestor: TypeId) -> Result<bool> {
        self.info(ancestor)?;
        let mut current = Some(id);
        while let Some(t) = current {
            if t == ancestor {
                return Ok(true);
            }
            current = self.info(t)?.parent;
        }
        Ok(false)
    }

    /// For every registered type, whether it is `ancestor` or descends from
    /// it: a table filters index by type id.
    pub fn subtype_table(&self, ancestor: TypeId) -> Result<Vec<bool>> {
        self.info(ancestor)?;
        let mut table = vec![false; self.types.len()];
        // Parents always have smaller ids than their children, so one
        // forward pass fills the table.
        for (i, info) in self.types.iter().enumerate() {
            table[i] = i == ancestor.0 as usize || info.parent.is_some_and(|p| table[p.0 as usize]);
        }
        Ok(table)
    }
}

static REGISTRY: LazyLock<RwLock<Arc<Registry>>> =
    LazyLock::new(|| RwLock::new(Arc::new(Registry::with_builtins())));

/// The registry as it is now. Later registrations are not seen by it.
pub fn snapshot() -> Arc<Registry> {
    REGISTRY
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Registers `name` under `parent` and returns its id. Registering the same
/// name under the same parent again returns the same id; under another
/// parent it fails with `TypeConflict`.
pub fn register(name: &str, parent: TypeId) -> Result<TypeId> {
    if name.is_empty() {
        bail!(InvalidArgument, "a variable type name cannot be empty");
    }
    if name.contains('\0') {
        bail!(InvalidArgument, "a variable type name cannot contain NUL");
    }
    let mut guard = REGISTRY
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    guard.info(parent)?;
    if let Some(existing) = guard.lookup(name) {
        let existing_parent = guard.parent(existing)?;
        if existing_parent == Some(parent) {
            return Ok(existing);
        }
        let was = match existing_parent {
            Some(p) => guard.name(p)?,
            None => "nothing (it is the root)",
        };
        bail!(
            TypeConflict,
            "variable type {name:?} is already registered under {was}, not {}",
            guard.name(parent)?
        );
    }
    if guard.len() >= u32::MAX as usize {
        bail!(InvalidArgument, "too many variable types");
    }
    Ok(Arc::make_mut(&mut guard).push(name, Some(parent)))
}

pub fn lookup(name: &str) -> Option<TypeId> {
    snapshot().lookup(name)
}

pub fn name(id: TypeId) -> Result<&'static str> {
    snapshot().name(id)
}

pub fn parent(id: TypeId) -> Result<Option<TypeId>> {
    snapshot().parent(id)
}

pub fn is_subtype(id: TypeId, ancestor: TypeId) -> Result<bool> {
    snapshot().is_subtype(id, ancestor)
}

/// The message for a type name that no type has: it says so, and names
/// the registered type closest to it (`no variable type is named "Parm";
/// did you mean Param?`).
pub fn unknown_name_message(name: &str) -> String {
    let registry = snapshot();
    match crate::suggest::closest(name, registry.by_name.keys().copied()) {
        Some(close) => format!("no variable type is named {name:?}; did you mean {close}?"),
        None => format!("no variable type is named {name:?}"),
    }
}

/// Fails with `UnknownType` unless `id` is registered.
pub fn check(id: TypeId) -> Result<()> {
    snapshot().info(id).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn builtins_have_fixed_ids_and_parents() {
        assert_eq!(lookup("Param"), Some(TypeId::PARAM));
        assert_eq!(name(TypeId::OPT_VARIABLE).unwrap(), "OptVariable");
        assert_eq!(parent(TypeId::VARIABLE).unwrap(), None);
        assert_eq!(
            parent(TypeId::PERTURBATION).unwrap(),
            Some(TypeId::INTERMEDIATE)
        );
        assert!(is_subtype(TypeId::RNG_KEY, TypeId::RNG_STATE).unwrap());
        assert!(is_subtype(TypeId::RNG_KEY, TypeId::VARIABLE).unwrap());
        assert!(!is_subtype(TypeId::PARAM, TypeId::BATCH_STAT).unwrap());
    }

    #[test]
    fn registration_is_idempotent_and_rejects_conflicts() {
        let id = register("TypesTestQuant", TypeId::PARAM).unwrap();
        assert_eq!(register("TypesTestQuant", TypeId::PARAM).unwrap(), id);
        assert_eq!(register("Param", TypeId::VARIABLE).unwrap(), TypeId::PARAM);
        let err = register("TypesTestQuant", TypeId::BATCH_STAT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TypeConflict);
        assert_eq!(
            register("Param", TypeId::CACHE).unwrap_err().kind(),
            ErrorKind::TypeConflict
        );
        assert!(is_subtype(id, TypeId::PARAM).unwrap());
        assert_eq!(
            register("TypesTestOrphan", TypeId::from_raw(1 << 30))
                .unwrap_err()
                .kind(),
            ErrorKind::UnknownType
        );
        assert_eq!(
            register("", TypeId::PARAM).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn subtype_table_matches_walk() {
        let registry = snapshot();
        for ancestor in 0..registry.len() as u32 {
            let table = registry.subtype_table(TypeId(ancestor)).unwrap();
            for (id, &flag) in table.iter().enumerate() {
                assert_eq!(
                    flag,
                    registry
                        .is_subtype(TypeId(id as u32), TypeId(ancestor))
                        .unwrap()
                );
            }
        }
    }
}
