//! Metadata values: what a variable's metadata entries hold.
//!
//! A value is `None`, a bool, an int64, a float64, a string, or a list, a
//! tuple or a map (string keys, insertion-ordered) of values, nested: what
//! Flax models carry (`out_sharding=(None, 'model')`, `mesh=None`,
//! optimizer hyper-parameters). Lists and tuples are kept apart, so that a
//! Python tuple comes back as a tuple.
//!
//! Nesting is bounded by construction: the containers ([`MetaSeq`],
//! [`MetaMap`]) can only grow through checked calls, which refuse a value
//! more than [`MAX_DEPTH`](crate::MAX_DEPTH) levels deep with
//! [`ErrorKind::TooDeep`](crate::ErrorKind::TooDeep). So every recursion
//! over a value (display, equality, clone, drop, the JSON codec) is bounded.

use std::fmt;

use indexmap::IndexMap;

use crate::error::Result;
use crate::key::write_python_str_repr;
use crate::limits::check_depth;

/// A metadata value. Build containers with [`MetaValue::list`],
/// [`MetaValue::tuple`] and [`MetaValue::map`] (or [`MetaSeq::push`] and
/// [`MetaMap::insert`]); each refuses to nest deeper than [`MAX_DEPTH`](crate::MAX_DEPTH).
///
/// Equality is structural: `Int(1)` and `Float(1.0)` differ, a list and a
/// tuple with the same items differ, and maps are equal only with the same
/// entries in the same order. Floats compare as `f64` (NaN is unequal to
/// itself).
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Python's `None`.
    Null,
    List(MetaSeq),
    Tuple(MetaSeq),
    Map(MetaMap),
}

impl MetaValue {
    /// The Python name of the value's kind (`str`, `int`, `float`, `bool`,
    /// `None`, `list`, `tuple`, `dict`), for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            MetaValue::Str(_) => "str",
            MetaValue::Int(_) => "int",
            MetaValue::Float(_) => "float",
            MetaValue::Bool(_) => "bool",
            MetaValue::Null => "None",
            MetaValue::List(_) => "list",
            MetaValue::Tuple(_) => "tuple",
            MetaValue::Map(_) => "dict",
        }
    }

    /// A list of `items`; `TooDeep` if it would nest past [`MAX_DEPTH`](crate::MAX_DEPTH).
    pub fn list(items: impl IntoIterator<Item = MetaValue>) -> Result<MetaValue> {
        MetaSeq::from_items(items).map(MetaValue::List)
    }

    /// A tuple of `items`; `TooDeep` if it would nest past [`MAX_DEPTH`](crate::MAX_DEPTH).
    pub fn tuple(items: impl IntoIterator<Item = MetaValue>) -> Result<MetaValue> {
        MetaSeq::from_items(items).map(MetaValue::Tuple)
    }

    /// A map of `entries` in order (a repeated key keeps its first place and
    /// takes the later value, as `dict` does); `TooDeep` if it would nest
    /// past [`MAX_DEPTH`](crate::MAX_DEPTH).
    pub fn map<K: Into<String>>(
        entries: impl IntoIterator<Item = (K, MetaValue)>,
    ) -> Result<MetaValue> {
        let mut map = MetaMap::new();
        for (key, value) in entries {
            map.insert(key, value)?;
        }
        Ok(MetaValue::Map(map))
    }

    /// How many levels of lists, tuples and maps the value has: 0 for a
    /// scalar, 1 for `[]` or `(1, 2)`, 2 for `[(1,)]`. At most [`MAX_DEPTH`](crate::MAX_DEPTH).
    pub fn levels(&self) -> usize {
        match self {
            MetaValue::List(seq) | MetaValue::Tuple(seq) => seq.levels,
            MetaValue::Map(map) => map.levels,
            _ => 0,
        }
    }

    /// The items of a list or tuple.
    pub fn as_seq(&self) -> Option<&MetaSeq> {
        match self {
            MetaValue::List(seq) | MetaValue::Tuple(seq) => Some(seq),
            _ => None,
        }
    }

    /// The string, if the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Fails with `TooDeep` unless a container may hold `item`.
fn check_item(item: &MetaValue) -> Result<()> {
    check_depth(item.levels() + 1, || "a metadata value".to_owned())
}

impl From<&str> for MetaValue {
    fn from(s: &str) -> Self {
        MetaValue::Str(s.to_owned())
    }
}

impl From<String> for MetaValue {
    fn from(s: String) -> Self {
        MetaValue::Str(s)
    }
}

impl From<i64> for MetaValue {
    fn from(i: i64) -> Self {
        MetaValue::Int(i)
    }
}

impl From<f64> for MetaValue {
    fn from(x: f64) -> Self {
        MetaValue::Float(x)
    }
}

impl From<bool> for MetaValue {
    fn from(b: bool) -> Self {
        MetaValue::Bool(b)
    }
}

/// The items of a list or a tuple, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct MetaSeq {
    items: Vec<MetaValue>,
    /// 1 + the levels of the deepest item.
    levels: usize,
}

impl MetaSeq {
    /// An empty sequence.
    pub fn new() -> MetaSeq {
        MetaSeq {
            items: Vec::new(),
            levels: 1,
        }
    }

    fn from_items(items: impl IntoIterator<Item = MetaValue>) -> Result<MetaSeq> {
        let mut seq = MetaSeq::new();
        for item in items {
            seq.push(item)?;
        }
        Ok(seq)
    }

    /// Appends `item`; `TooDeep` (and nothing changed) if the sequence would
    /// nest past [`MAX_DEPTH`](crate::MAX_DEPTH).
    pub fn push(&mut self, item: MetaValue) -> Result<()> {
        check_item(&item)?;
        self.levels = self.levels.max(item.levels() + 1);
        self.items.push(item);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&MetaValue> {
        self.items.get(index)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, MetaValue> {
        self.items.iter()
    }

    pub fn as_slice(&self) -> &[MetaValue] {
        &self.items
    }
}

impl Default for MetaSeq {
    fn default() -> Self {
        MetaSeq::new()
    }
}

/// The entries of a map: string keys in insertion order. An index map, so
/// that looking a key up, and refusing a repeated key while reading a file,
/// take constant time however many entries a caller or a file gives.
#[derive(Clone, Debug)]
pub struct MetaMap {
    entries: IndexMap<String, MetaValue>,
    /// 1 + the levels of the deepest value.
    levels: usize,
}

impl MetaMap {
    /// An empty map.
    pub fn new() -> MetaMap {
        MetaMap {
            entries: IndexMap::new(),
            levels: 1,
        }
    }

    /// Sets `key` to `value`: a new key goes last, an existing one keeps its
    /// place (as in a Python `dict`) and its old value is returned.
    /// `TooDeep` (and nothing changed) if the map would nest past
    /// [`MAX_DEPTH`](crate::MAX_DEPTH).
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: MetaValue,
    ) -> Result<Option<MetaValue>> {
        check_item(&value)?;
        let levels = value.levels() + 1;
        let old = self.entries.insert(key.into(), value);
        self.levels = match &old {
            // The replaced value may have been the deepest one.
            Some(_) => {
                1 + self
                    .entries
                    .values()
                    .map(MetaValue::levels)
                    .max()
                    .unwrap_or(0)
            }
            None => self.levels.max(levels),
        };
        Ok(old)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.entries.get(key)
    }

    /// The entry at `index`, in insertion order.
    pub fn get_index(&self, index: usize) -> Option<(&str, &MetaValue)> {
        self.entries.get_index(index).map(|(k, v)| (k.as_str(), v))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl Default for MetaMap {
    fn default() -> Self {
        MetaMap::new()
    }
}

/// Same entries in the same order (an `IndexMap` alone ignores order).
impl PartialEq for MetaMap {
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len() && self.entries.iter().eq(other.entries.iter())
    }
}

/// Writes the value as Python's `repr` would: `None`, `True`, `'model'`,
/// `1.0`, `inf`, `(None, 'model')`, `(1,)`, `[1, 2]`, `{'lr': 0.1}`.
impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::Str(s) => write_python_str_repr(f, s),
            MetaValue::Int(i) => write!(f, "{i}"),
            MetaValue::Float(x) => write_python_float(f, *x),
            MetaValue::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            MetaValue::Null => f.write_str("None"),
            MetaValue::List(seq) => write_items(f, "[", seq, "]"),
            MetaValue::Tuple(seq) if seq.len() == 1 => write_items(f, "(", seq, ",)"),
            MetaValue::Tuple(seq) => write_items(f, "(", seq, ")"),
            MetaValue::Map(map) => {
                f.write_str("{")?;
                for (i, (key, value)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_python_str_repr(f, key)?;
                    write!(f, ": {value}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_items(f: &mut fmt::Formatter<'_>, open: &str, seq: &MetaSeq, close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, item) in seq.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    f.write_str(close)
}

/// Python's `repr(float)`: Rust's shortest round-trip digits switch to an
/// exponent at the same magnitudes (below 1e-4, from 1e16 up); Python
/// writes the exponent with a sign and at least two digits.
fn write_python_float(f: &mut fmt::Formatter<'_>, x: f64) -> fmt::Result {
    if x.is_nan() {
        return f.write_str("nan");
    }
    if x.is_infinite() {
        return f.write_str(if x > 0.0 { "inf" } else { "-inf" });
    }
    let text = format!("{x:?}");
    match text.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(digits) => ('-', digits),
                None => ('+', exp),
            };
            write!(f, "{mantissa}e{sign}{digits:0>2}")
        }
        None => f.write_str(&text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, MAX_DEPTH};

    fn s(text: &str) -> MetaValue {
        MetaValue::from(text)
    }

    #[test]
    fn display_is_python_repr() {
        let sharding = MetaValue::tuple([MetaValue::Null, s("model")]).unwrap();
        assert_eq!(sharding.to_string(), "(None, 'model')");
        assert_eq!(
            MetaValue::tuple([MetaValue::Int(1)]).unwrap().to_string(),
            "(1,)"
        );
        assert_eq!(MetaValue::tuple([]).unwrap().to_string(), "()");
        assert_eq!(MetaValue::list([]).unwrap().to_string(), "[]");
        let nested = MetaValue::map([
            ("lr", MetaValue::Float(0.001)),
            (
                "betas",
                MetaValue::tuple([0.9.into(), 0.999.into()]).unwrap(),
            ),
            ("nesterov", true.into()),
            (
                "it's",
                MetaValue::list([MetaValue::Int(-3), s("a\nb")]).unwrap(),
            ),
            ("empty", MetaValue::map::<&str>([]).unwrap()),
        ])
        .unwrap();
        assert_eq!(
            nested.to_string(),
            "{'lr': 0.001, 'betas': (0.9, 0.999), 'nesterov': True, \"it's\": [-3, 'a\\nb'], \
             'empty': {}}"
        );
        let floats = [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (1e16, "1e+16"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-07"),
            (1e300, "1e+300"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (x, repr) in floats {
            assert_eq!(MetaValue::Float(x).to_string(), repr);
        }
        assert_eq!(s("\0").to_string(), "'\\x00'");
    }

    #[test]
    fn equality_keeps_kinds_and_order() {
        assert_ne!(MetaValue::Int(1), MetaValue::Float(1.0));
        assert_ne!(MetaValue::Int(1), MetaValue::Bool(true));
        let items = || [MetaValue::Null, s("model")];
        assert_ne!(
            MetaValue::list(items()).unwrap(),
            MetaValue::tuple(items()).unwrap()
        );
        assert_eq!(
            MetaValue::tuple(items()).unwrap(),
            MetaValue::tuple(items()).unwrap()
        );
        let ab = MetaValue::map([("a", MetaValue::Int(1)), ("b", MetaValue::Int(2))]).unwrap();
        let ba = MetaValue::map([("b", MetaValue::Int(2)), ("a", MetaValue::Int(1))]).unwrap();
        assert_ne!(ab, ba);
        assert_eq!(ab, ab.clone());
    }

    #[test]
    fn maps_keep_the_first_place_of_a_key() {
        let MetaValue::Map(mut map) = MetaValue::map([
            ("a", MetaValue::Int(1)),
            ("b", MetaValue::Int(2)),
            ("a", MetaValue::Int(3)),
        ])
        .unwrap() else {
            unreachable!()
        };
        assert_eq!(map.len(), 2);
        assert_eq!(map.get_index(0), Some(("a", &MetaValue::Int(3))));
        assert_eq!(
            map.insert("b", MetaValue::Null).unwrap(),
            Some(MetaValue::Int(2))
        );
        assert_eq!(map.get("b"), Some(&MetaValue::Null));
        assert_eq!(map.get("c"), None);
    }

    /// `levels` nested lists around `inner`.
    fn nest(levels: usize, inner: MetaValue) -> Result<MetaValue> {
        let mut value = inner;
        for _ in 0..levels {
            value = MetaValue::list([value])?;
        }
        Ok(value)
    }

    #[test]
    fn nesting_stops_at_the_limit() {
        let deepest = nest(MAX_DEPTH, MetaValue::Int(1)).unwrap();
        assert_eq!(deepest.levels(), MAX_DEPTH);
        let err = MetaValue::tuple([deepest.clone()]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooDeep);
        let past = format!("{} levels", MAX_DEPTH + 1);
        assert!(err.message().contains(&past), "{}", err.message());
        let err = MetaValue::map([("k", deepest.clone())]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooDeep);

        // A failed push changes nothing.
        let mut seq = MetaSeq::new();
        seq.push(MetaValue::Int(0)).unwrap();
        assert!(seq.push(deepest.clone()).is_err());
        assert_eq!((seq.len(), MetaValue::List(seq.clone()).levels()), (1, 1));

        // Replacing the deepest value of a map lowers its levels again.
        let mut map = MetaMap::new();
        map.insert("deep", nest(MAX_DEPTH - 1, MetaValue::Null).unwrap())
            .unwrap();
        assert_eq!(MetaValue::Map(map.clone()).levels(), MAX_DEPTH);
        map.insert("deep", MetaValue::Null).unwrap();
        let map = MetaValue::Map(map);
        assert_eq!(map.levels(), 1);
        assert_eq!(nest(MAX_DEPTH - 1, map).unwrap().levels(), MAX_DEPTH);

        // Everything recursive works at the limit.
        let text = deepest.to_string();
        assert_eq!(text.len(), 2 * MAX_DEPTH + 1);
        assert_eq!(deepest.clone(), deepest);
    }
}
