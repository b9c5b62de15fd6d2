//! This library's record of a state in `__metadata__`: paths with their
//! key kinds, types, metadata, typed keys and shared leaves.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use crate::array::Array;
use crate::error::{bail, Error, Result};
use crate::io::json::{self};
use crate::key::{format_path, Key};
use crate::limits::check_depth;
use crate::tree::Leaf;
use crate::types::{self, TypeId};
use crate::value::PrngKey;
use crate::variable::{MetaValue, Variable};

/// The `__metadata__` entry that records a state written by this library.
use super::*;

// ---------------------------------------------------------------------------
// This library's records

pub(crate) fn path_from_json(value: &Value, at: &str) -> Result<Vec<Key>> {
    let Value::Array(items) = value else {
        bail!(Format, "{at}: the path is not a list");
    };
    if items.is_empty() {
        bail!(Format, "{at}: the path is empty");
    }
    check_depth(items.len(), || format!("{at}: the path"))?;
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(Key::str(s)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(Key::Int(i)),
                None => bail!(Format, "{at}: path component {n} is not a 64-bit integer"),
            },
            other => bail!(
                Format,
                "{at}: a path component is {}, not a string or an integer",
                json_kind(other)
            ),
        })
        .collect()
}

pub(crate) fn path_to_json(path: &[Key]) -> Value {
    Value::Array(
        path.iter()
            .map(|k| match k {
                Key::Int(i) => Value::from(*i),
                Key::Str(s) => Value::from(s.as_str()),
            })
            .collect(),
    )
}

/// Resolves a recorded type chain (`["MyQuant", "Param", "Variable"]`),
/// registering the types the registry does not know yet.
pub(crate) fn type_from_json(
    value: &Value,
    at: &str,
    cache: &mut HashMap<Vec<String>, TypeId>,
) -> Result<TypeId> {
    let Value::Array(items) = value else {
        bail!(Format, "{at}: \"type\" is not a list of type names");
    };
    let mut chain = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) if !s.is_empty() && !s.contains('\0') => chain.push(s.clone()),
            _ => bail!(
                Format,
                "{at}: \"type\" holds {item}, which is not a type name"
            ),
        }
    }
    if let Some(&id) = cache.get(&chain) {
        return Ok(id);
    }
    let Some((root, rest)) = chain.split_last() else {
        bail!(Format, "{at}: \"type\" is empty");
    };
    if root != "Variable" {
        bail!(
            Format,
            "{at}: the type chain ends at {root:?}, not at the root type \"Variable\""
        );
    }
    let mut id = TypeId::VARIABLE;
    for name in rest.iter().rev() {
        id = types::register(name, id)?;
    }
    cache.insert(chain, id);
    Ok(id)
}

pub(crate) fn type_to_json(id: TypeId) -> Result<Value> {
    let registry = types::snapshot();
    let mut chain = Vec::new();
    let mut current = Some(id);
    while let Some(t) = current {
        chain.push(Value::from(registry.name(t)?));
        current = registry.parent(t)?;
    }
    Ok(Value::Array(chain))
}

pub(crate) fn meta_from_json(value: &Value, at: &str) -> Result<Vec<(String, MetaValue)>> {
    let Value::Array(entries) = value else {
        bail!(Format, "{at}: \"metadata\" is not a list");
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let bad = || {
            format_error(format!(
                "{at}: metadata entry {entry} is not [name, kind, value]"
            ))
        };
        let Value::Array(parts) = entry else {
            return Err(bad());
        };
        let [Value::String(name), Value::String(kind), value] = parts.as_slice() else {
            return Err(bad());
        };
        if name.is_empty() || name.contains('\0') {
            bail!(Format, "{at}: metadata name {name:?} is empty or holds NUL");
        }
        if !seen.insert(name.clone()) {
            bail!(Format, "{at}: metadata {name:?} is given twice");
        }
        let meta = match (kind.as_str(), value) {
            ("str", Value::String(s)) => MetaValue::Str(s.clone()),
            ("int", Value::Number(n)) if n.as_i64().is_some() => {
                MetaValue::Int(n.as_i64().expect("checked"))
            }
            ("float", Value::Number(n)) if n.as_f64().is_some() => {
                MetaValue::Float(n.as_f64().expect("checked"))
            }
            ("float", Value::String(bits)) => match json::float_from_bits(bits) {
                Some(x) => MetaValue::Float(x),
                None => return Err(bad()),
            },
            ("bool", Value::Bool(b)) => MetaValue::Bool(*b),
            ("null", Value::Null) => MetaValue::Null,
            ("list" | "tuple" | "map", Value::Array(rest)) => json::tagged_from_json(kind, rest)
                .map_err(|e| Error::new(e.kind(), format!("{at}: metadata {name:?}: {e}")))?,
            _ => return Err(bad()),
        };
        out.push((name.clone(), meta));
    }
    Ok(out)
}

pub(crate) fn meta_to_json(entries: &[(String, MetaValue)]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|(name, value)| {
                let (kind, v) = match value {
                    MetaValue::Str(s) => ("str", Value::from(s.as_str())),
                    MetaValue::Int(i) => ("int", Value::from(*i)),
                    MetaValue::Float(f) => (
                        "float",
                        match serde_json::Number::from_f64(*f) {
                            Some(n) => Value::Number(n),
                            None => Value::from(json::float_bits(*f)),
                        },
                    ),
                    MetaValue::Bool(b) => ("bool", Value::from(*b)),
                    MetaValue::Null => ("null", Value::Null),
                    MetaValue::List(_) | MetaValue::Tuple(_) | MetaValue::Map(_) => {
                        let mut contents = Vec::new();
                        let tag = json::container_to_json(value, &mut contents);
                        (tag, Value::Array(contents))
                    }
                };
                Value::Array(vec![Value::from(name.as_str()), Value::from(kind), v])
            })
            .collect(),
    )
}

/// The record field naming the PRNG implementation of a variable whose
/// tensor is the data of a typed key.
pub(crate) const KEY_IMPL: &str = "key_impl";

/// The typed key a record with [`KEY_IMPL`] holds.
pub(crate) fn key_from_json(
    name: &Value,
    data: Option<Arc<Array>>,
    at: &str,
) -> Result<crate::Value> {
    let Value::String(name) = name else {
        bail!(
            Format,
            "{at}: \"{KEY_IMPL}\" is {}, not a string",
            json_kind(name)
        );
    };
    let Some(data) = data else {
        bail!(Format, "{at}: a typed PRNG key needs a tensor of key data");
    };
    match PrngKey::new(data, name) {
        Ok(key) => Ok(key.into()),
        Err(e) => bail!(Format, "{at}: {}", e.message()),
    }
}

pub(crate) fn leaves_from_records(
    records: &[Value],
    tensors: &HashMap<String, Arc<Array>>,
) -> Result<Vec<Named>> {
    let mut out: Vec<Named> = Vec::new();
    let mut by_path: HashMap<Vec<Key>, Leaf> = HashMap::new();
    let mut aliases: Vec<(Vec<Key>, Vec<Key>, String)> = Vec::new();
    let mut used: HashSet<&str> = HashSet::new();
    let mut types_seen = HashMap::new();
    for list in records {
        let Some(Value::Array(leaves)) = list.get("leaves") else {
            bail!(Format, "the {FORMAT_KEY} metadata has no \"leaves\" list");
        };
        for (i, record) in leaves.iter().enumerate() {
            let at = format!("{FORMAT_KEY} record {i}");
            let Value::Object(fields) = record else {
                bail!(Format, "{at} is not an object");
            };
            let path = path_from_json(fields.get("path").unwrap_or(&Value::Null), &at)?;
            let at = format!("{at} ('{}')", format_path(&path));
            if let Some(target) = fields.get("same_as") {
                if fields.len() != 2 {
                    bail!(Format, "{at}: a \"same_as\" record holds nothing else");
                }
                aliases.push((path_from_json(target, &at)?, path, at));
                continue;
            }
            let array = match fields.get("tensor") {
                None | Some(Value::Null) => None,
                Some(Value::String(name)) => {
                    let Some(array) = tensors.get(name) else {
                        bail!(Format, "{at}: tensor {name:?} is not in the file");
                    };
                    if !used.insert(name.as_str()) {
                        bail!(Format, "{at}: tensor {name:?} is used by two records");
                    }
                    Some(array.clone())
                }
                Some(other) => bail!(Format, "{at}: \"tensor\" is {}", json_kind(other)),
            };
            let leaf = match fields.get("type") {
                None => {
                    let Some(array) = array else {
                        bail!(Format, "{at}: a bare array needs a tensor");
                    };
                    if fields.contains_key("metadata") || fields.contains_key(KEY_IMPL) {
                        bail!(Format, "{at}: a bare array has no metadata and is no key");
                    }
                    Leaf::Array(array)
                }
                Some(chain) => {
                    let type_id = type_from_json(chain, &at, &mut types_seen)?;
                    let value = match fields.get(KEY_IMPL) {
                        None => crate::Value::from(array),
                        Some(name) => key_from_json(name, array, &at)?,
                    };
                    let variable = Variable::new(type_id, value)?;
                    if let Some(meta) = fields.get("metadata") {
                        for (name, value) in meta_from_json(meta, &at)? {
                            variable.set_metadata(&name, value)?;
                        }
                    }
                    Leaf::Variable(Arc::new(variable))
                }
            };
            if by_path.insert(path.clone(), leaf.clone()).is_some() {
                bail!(Format, "{at}: the path is recorded twice");
            }
            out.push((path, leaf, at));
        }
    }
    for (target, path, at) in aliases {
        let Some(leaf) = by_path.get(&target) else {
            bail!(
                Format,
                "{at}: \"same_as\" names '{}', which no record holds",
                format_path(&target)
            );
        };
        out.push((path, leaf.clone(), at));
    }
    if used.len() != tensors.len() {
        let mut unused: Vec<&String> = tensors
            .keys()
            .filter(|n| !used.contains(n.as_str()))
            .collect();
        unused.sort();
        bail!(
            Format,
            "tensor {:?} has no {FORMAT_KEY} record",
            unused.first().map(|s| s.as_str()).unwrap_or("")
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::json::parse_strict;

    #[test]
    fn metadata_values_round_trip() {
        let entries = vec![
            ("s".to_owned(), MetaValue::Str("x".into())),
            ("i".to_owned(), MetaValue::Int(i64::MIN)),
            ("f".to_owned(), MetaValue::Float(0.1)),
            (
                "n".to_owned(),
                MetaValue::Float(f64::from_bits(0x7ff8_0000_0000_0001)),
            ),
            ("z".to_owned(), MetaValue::Float(-0.0)),
            ("b".to_owned(), MetaValue::Bool(true)),
            ("none".to_owned(), MetaValue::Null),
            (
                "t".to_owned(),
                MetaValue::tuple([MetaValue::Null, "model".into()]).unwrap(),
            ),
            (
                "m".to_owned(),
                MetaValue::map([
                    (
                        "z",
                        MetaValue::list([MetaValue::Int(1), 1.0.into()]).unwrap(),
                    ),
                    ("a", MetaValue::Float(f64::NEG_INFINITY)),
                ])
                .unwrap(),
            ),
        ];
        let json = meta_to_json(&entries);
        let text = json.to_string();
        assert!(
            text.ends_with(
                r#"["none","null",null],["t","tuple",[null,"model"]],["m","map",["z",["list",1,1.0],"a",["float","0xfff0000000000000"]]]]"#
            ),
            "{text}"
        );
        let back = meta_from_json(&parse_strict(&text).unwrap(), "t").unwrap();
        assert_eq!(back.len(), entries.len());
        for ((n1, v1), (n2, v2)) in entries.iter().zip(&back) {
            assert_eq!(n1, n2);
            match (v1, v2) {
                (MetaValue::Float(a), MetaValue::Float(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                _ => assert_eq!(v1, v2),
            }
        }
    }
}
