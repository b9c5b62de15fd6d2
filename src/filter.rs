//! Filters: which leaves an operation selects, as in `flax.nnx.filterlib`.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::FxHasher;

use crate::error::{bail, Error, ErrorKind, Result};
use crate::key::{format_path, Key};
use crate::limits::{check_depth, MAX_FILTER_PARTS};
use crate::tree::{Leaf, LeafTypes};
use crate::types::{Registry, TypeId};

/// A caller's predicate over (path, leaf). `Err` carries a message and fails
/// the whole operation.
pub type Predicate = dyn Fn(&[&Key], &Leaf) -> Result<bool, String> + Send + Sync;

/// A filter of NNX's `filterlib`. Cloning one is cheap: composite
/// filters share their parts (see [`Parts`]), and the other kinds are a
/// word or two.
#[derive(Clone)]
pub enum Filter {
    /// Variables of this type or a descendant of it.
    OfType(TypeId),
    /// Variables whose `tag` metadata equals this string.
    WithTag(Arc<str>),
    /// Some path element equals `key` (`exact`), or `str(key)` is a
    /// substring of `str(element)` for some element.
    PathContains {
        key: Key,
        exact: bool,
    },
    /// The path equals one of these.
    PathIn(Arc<[Vec<Key>]>),
    /// Some part matches; made by [`Filter::any`].
    Any(Parts),
    /// Every part matches; made by [`Filter::all`].
    All(Parts),
    /// The one part does not match; made by [`Filter::negate`].
    Not(Parts),
    /// Matches everything; as NNX's `...` and `True`, it may only be followed
    /// by more Everything filters in a filter list.
    Everything,
    Nothing,
    Callback(Arc<Predicate>),
}

/// The parts of a composite filter, shared by every filter built on it,
/// so that building a filter of `n` parts takes O(n) whatever its shape.
/// Knows the nesting depth and the written-out size of the filter it makes
/// up, so that both limits (see [`crate::limits`]) are checked in constant
/// time as filters are built.
#[derive(Clone)]
pub struct Parts(Arc<PartsInner>);

struct PartsInner {
    filters: Box<[Filter]>,
    /// Levels of the composite filter, itself included.
    depth: usize,
    /// Parts of the composite filter written out, itself included.
    size: u64,
}

impl Parts {
    fn new(filters: Vec<Filter>) -> Result<Parts> {
        let depth = 1 + filters.iter().map(Filter::depth).max().unwrap_or(0);
        check_depth(depth, || "the filter".to_owned())?;
        let size = filters
            .iter()
            .fold(1u64, |sum, f| sum.saturating_add(f.size()));
        if size > MAX_FILTER_PARTS {
            bail!(
                InvalidArgument,
                "the filter would have {size} parts written out, past the limit of \
                 {MAX_FILTER_PARTS} (a filter used several times in another counts each time)"
            );
        }
        Ok(Parts(Arc::new(PartsInner {
            filters: filters.into_boxed_slice(),
            depth,
            size,
        })))
    }

    /// The one part of a `Not`.
    pub fn only(&self) -> &Filter {
        &self.0.filters[0]
    }
}

impl std::ops::Deref for Parts {
    type Target = [Filter];

    fn deref(&self) -> &[Filter] {
        &self.0.filters
    }
}

/// Filters this many levels deep or less are freed the ordinary way; deeper
/// ones without a nested call per level.
const FREED_RECURSIVELY: usize = 16;

impl Drop for PartsInner {
    fn drop(&mut self) {
        if self.depth <= FREED_RECURSIVELY {
            return;
        }
        let mut pending: Vec<Filter> = std::mem::take(&mut self.filters).into_vec();
        while let Some(filter) = pending.pop() {
            if let Filter::Any(p) | Filter::All(p) | Filter::Not(p) = filter {
                if let Some(mut inner) = Arc::into_inner(p.0) {
                    pending.extend(std::mem::take(&mut inner.filters).into_vec());
                }
            }
        }
    }
}

impl Filter {
    pub fn of_type(type_id: TypeId) -> Filter {
        Filter::OfType(type_id)
    }

    pub fn with_tag(tag: &str) -> Filter {
        Filter::WithTag(tag.into())
    }

    /// NNX's `Any(*filters)`: some part matches; none for no parts. Fails
    /// past the nesting limit or the size limit (see [`crate::limits`]).
    pub fn any(filters: Vec<Filter>) -> Result<Filter> {
        Ok(Filter::Any(Parts::new(filters)?))
    }

    /// NNX's `All(*filters)`: every part matches; all for no parts. Fails
    /// as [`Filter::any`] does.
    pub fn all(filters: Vec<Filter>) -> Result<Filter> {
        Ok(Filter::All(Parts::new(filters)?))
    }

    /// NNX's `Not(filter)`. Fails as [`Filter::any`] does.
    pub fn negate(filter: Filter) -> Result<Filter> {
        Ok(Filter::Not(Parts::new(vec![filter])?))
    }

    /// Levels of nesting: 1 for a filter that is not composite.
    pub fn depth(&self) -> usize {
        match self {
            Filter::Any(p) | Filter::All(p) | Filter::Not(p) => p.0.depth,
            _ => 1,
        }
    }

    /// Parts written out: 1 for a filter that is not composite.
    pub fn size(&self) -> u64 {
        match self {
            Filter::Any(p) | Filter::All(p) | Filter::Not(p) => p.0.size,
            _ => 1,
        }
    }

    pub fn path_contains(key: impl Into<Key>, exact: bool) -> Filter {
        Filter::PathContains {
            key: key.into(),
            exact,
        }
    }

    pub fn path_in(paths: Vec<Vec<Key>>) -> Filter {
        Filter::PathIn(paths.into())
    }

    pub fn callback(
        f: impl Fn(&[&Key], &Leaf) -> Result<bool, String> + Send + Sync + 'static,
    ) -> Filter {
        Filter::Callback(Arc::new(f))
    }

    /// Whether the filter looks only at paths and variable types, which never
    /// change for a leaf in an unchanged tree (tags and callbacks may).
    pub fn depends_only_on_structure(&self) -> bool {
        match self {
            Filter::OfType(_)
            | Filter::PathContains { .. }
            | Filter::PathIn(_)
            | Filter::Everything
            | Filter::Nothing => true,
            Filter::WithTag(_) | Filter::Callback(_) => false,
            Filter::Any(fs) | Filter::All(fs) | Filter::Not(fs) => {
                fs.iter().all(Filter::depends_only_on_structure)
            }
        }
    }

    /// Resolves type ids against `registry` into something quick to test.
    pub(crate) fn compile(&self, registry: &Registry) -> Result<Matcher<'_>> {
        Ok(match self {
            Filter::OfType(t) => {
                let table = registry.subtype_table(*t)?;
                let mask = (0..LeafTypes::OVERFLOW)
                    .filter(|&i| table.get(i as usize).copied().unwrap_or(false))
                    .fold(0u64, |mask, i| mask | 1 << i);
                Matcher::OfType { table, mask }
            }
            Filter::WithTag(tag) => Matcher::WithTag(tag),
            Filter::PathContains { key, exact: true } => Matcher::PathContains(key),
            Filter::PathContains { key, exact: false } => {
                let mut text = String::new();
                key.write_plain(&mut text);
                Matcher::PathContainsText(text)
            }
            Filter::PathIn(paths) => Matcher::PathIn(PathSet::new(paths)),
            Filter::Any(fs) => Matcher::Any(compile_all(fs, registry)?),
            Filter::All(fs) => Matcher::All(compile_all(fs, registry)?),
            Filter::Not(f) => Matcher::Not(Box::new(f.only().compile(registry)?)),
            Filter::Everything => Matcher::Everything,
            Filter::Nothing => Matcher::Nothing,
            Filter::Callback(f) => Matcher::Callback(f),
        })
    }
}

pub(crate) fn compile_all<'f>(
    filters: &'f [Filter],
    registry: &Registry,
) -> Result<Vec<Matcher<'f>>> {
    filters.iter().map(|f| f.compile(registry)).collect()
}

/// Filters are equal when they are the same filter: the same kind with
/// equal parts (type ids, tags, keys, paths, in order), callbacks the very
/// same callback. Equal filters select the same leaves, which is what the
/// operations' memo relies on.
impl PartialEq for Filter {
    fn eq(&self, other: &Filter) -> bool {
        match (self, other) {
            (Filter::OfType(a), Filter::OfType(b)) => a == b,
            (Filter::WithTag(a), Filter::WithTag(b)) => a == b,
            (
                Filter::PathContains { key: a, exact: x },
                Filter::PathContains { key: b, exact: y },
            ) => a == b && x == y,
            (Filter::PathIn(a), Filter::PathIn(b)) => Arc::ptr_eq(a, b) || a == b,
            (Filter::Any(a), Filter::Any(b))
            | (Filter::All(a), Filter::All(b))
            | (Filter::Not(a), Filter::Not(b)) => {
                Arc::ptr_eq(&a.0, &b.0) || (a.0.size == b.0.size && a[..] == b[..])
            }
            (Filter::Everything, Filter::Everything) | (Filter::Nothing, Filter::Nothing) => true,
            (Filter::Callback(a), Filter::Callback(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Filter {}

/// NNX's rule for filter lists: an Everything filter must be last, unless
/// every filter after it is Everything too.
pub fn check_order(filters: &[Filter]) -> Result<()> {
    for (i, filter) in filters.iter().enumerate() {
        if matches!(filter, Filter::Everything)
            && !filters[i + 1..]
                .iter()
                .all(|f| matches!(f, Filter::Everything))
        {
            bail!(
                FilterOrder,
                "`...` or `True` can only be used as the last filters, got Everything() at index {i}"
            );
        }
    }
    Ok(())
}

/// Writes the filter as NNX's repr would.
impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, name: &str, fs: &[Filter]| {
            write!(f, "{name}(")?;
            for (i, x) in fs.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{x:?}")?;
            }
            f.write_str(")")
        };
        match self {
            Filter::OfType(t) => {
                let name = crate::types::name(*t).unwrap_or("?");
                write!(f, "OfType({name})")
            }
            Filter::WithTag(tag) => write!(f, "WithTag({})", Key::str(tag)),
            Filter::PathContains { key, exact } => {
                let exact = if *exact { "True" } else { "False" };
                write!(f, "PathContains({key}, exact={exact})")
            }
            Filter::PathIn(paths) => {
                f.write_str("PathIn(")?;
                for (i, p) in paths.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(&crate::key::format_path_tuple(p))?;
                }
                f.write_str(")")
            }
            Filter::Any(fs) => list(f, "Any", fs),
            Filter::All(fs) => list(f, "All", fs),
            Filter::Not(x) => write!(f, "Not({:?})", x.only()),
            Filter::Everything => f.write_str("Everything()"),
            Filter::Nothing => f.write_str("Nothing()"),
            Filter::Callback(_) => f.write_str("Callback()"),
        }
    }
}

/// A filter ready to test leaves.
pub(crate) enum Matcher<'f> {
    /// Indexed by type id: whether that type matches; and the same for the
    /// ids a [`LeafTypes`] set has bits for.
    OfType {
        table: Vec<bool>,
        mask: u64,
    },
    WithTag(&'f str),
    PathContains(&'f Key),
    PathContainsText(String),
    PathIn(PathSet<'f>),
    Any(Vec<Matcher<'f>>),
    All(Vec<Matcher<'f>>),
    Not(Box<Matcher<'f>>),
    Everything,
    Nothing,
    Callback(&'f Arc<Predicate>),
}

impl Matcher<'_> {
    /// Whether every leaf below a node matches (`Some(true)`), none does
    /// (`Some(false)`), or that takes looking at the leaves (`None`), as far
    /// as the node's path `prefix` and the kinds of leaves below it (see
    /// [`LeafTypes`]) can tell.
    pub(crate) fn decide(&self, prefix: &[&Key], kinds: LeafTypes) -> Option<bool> {
        self.decide_for(prefix, kinds, false)
    }

    /// What [`Matcher::matches`] answers for a leaf at `path` whose kind is
    /// `kinds`, when the path and kind alone tell (no tag or callback to
    /// ask): what a columnar state asks before it reads a leaf.
    pub(crate) fn decide_at_leaf(&self, path: &[&Key], kinds: LeafTypes) -> Option<bool> {
        self.decide_for(path, kinds, true)
    }

    /// [`Matcher::decide`] for a node at `path`, or (`at_leaf`) for the
    /// leaf at `path`: a whole path lets the path filters decide.
    fn decide_for(&self, path: &[&Key], kinds: LeafTypes, at_leaf: bool) -> Option<bool> {
        match self {
            Matcher::OfType { mask, .. } => {
                let bits = kinds.bits()?;
                if bits & !mask == 0 {
                    Some(true)
                } else if bits & mask == 0 {
                    Some(false)
                } else {
                    None
                }
            }
            // A bare array has no tag.
            Matcher::WithTag(_) => (kinds.bits()? == 1 << LeafTypes::ARRAY).then_some(false),
            // Below a node, matches once some element on the way does;
            // whether a deeper one would takes the leaves.
            Matcher::PathContains(_) | Matcher::PathContainsText(_) => {
                let found = path.iter().any(|k| self.key_matches(k));
                if at_leaf {
                    Some(found)
                } else {
                    found.then_some(true)
                }
            }
            Matcher::PathIn(set) => at_leaf.then(|| set.contains(path)),
            Matcher::Callback(_) => None,
            // NNX evaluates the parts in order and stops at the first that
            // decides, so a part that needs the leaves (a callback, which
            // may fail or have effects) and comes before the deciding one
            // must run: the answer is then unknown without the leaves.
            Matcher::Any(ms) => {
                for m in ms {
                    if m.decide_for(path, kinds, at_leaf)? {
                        return Some(true);
                    }
                }
                Some(false)
            }
            Matcher::All(ms) => {
                for m in ms {
                    if !m.decide_for(path, kinds, at_leaf)? {
                        return Some(false);
                    }
                }
                Some(true)
            }
            Matcher::Not(m) => m.decide_for(path, kinds, at_leaf).map(|b| !b),
            Matcher::Everything => Some(true),
            Matcher::Nothing => Some(false),
        }
    }

    /// For a path-contains matcher: whether this path element is a match.
    fn key_matches(&self, k: &Key) -> bool {
        match self {
            Matcher::PathContains(key) => k == *key,
            Matcher::PathContainsText(text) => match k {
                Key::Str(s) => s.as_str().contains(text.as_str()),
                Key::Int(i) => DecimalBuf::new(*i).as_str().contains(text.as_str()),
            },
            _ => false,
        }
    }

    pub(crate) fn matches(&self, path: &[&Key], leaf: &Leaf) -> Result<bool> {
        Ok(match self {
            Matcher::OfType { table, .. } => match leaf {
                Leaf::Variable(v) => table
                    .get(v.type_id().raw() as usize)
                    .copied()
                    .unwrap_or(false),
                Leaf::Array(_) => false,
            },
            Matcher::WithTag(tag) => match leaf {
                Leaf::Variable(v) => v.has_tag(tag),
                Leaf::Array(_) => false,
            },
            Matcher::PathContains(_) | Matcher::PathContainsText(_) => {
                path.iter().any(|k| self.key_matches(k))
            }
            Matcher::PathIn(set) => set.contains(path),
            Matcher::Any(ms) => {
                for m in ms {
                    if m.matches(path, leaf)? {
                        return Ok(true);
                    }
                }
                false
            }
            Matcher::All(ms) => {
                for m in ms {
                    if !m.matches(path, leaf)? {
                        return Ok(false);
                    }
                }
                true
            }
            Matcher::Not(m) => !m.matches(path, leaf)?,
            Matcher::Everything => true,
            Matcher::Nothing => false,
            Matcher::Callback(f) => f(path, leaf).map_err(|message| {
                Error::new(
                    ErrorKind::Callback,
                    format!(
                        "filter callback failed at path '{}': {message}",
                        format_path(path)
                    ),
                )
            })?,
        })
    }
}

/// An integer in decimal, formatted on the stack.
struct DecimalBuf {
    bytes: [u8; 20],
    start: usize,
}

impl DecimalBuf {
    fn new(value: i64) -> DecimalBuf {
        let mut bytes = [0u8; 20];
        let mut start = bytes.len();
        let mut magnitude = value.unsigned_abs();
        loop {
            start -= 1;
            bytes[start] = b'0' + (magnitude % 10) as u8;
            magnitude /= 10;
            if magnitude == 0 {
                break;
            }
        }
        if value < 0 {
            start -= 1;
            bytes[start] = b'-';
        }
        DecimalBuf { bytes, start }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[self.start..]).unwrap_or_default()
    }
}

/// A set of paths that answers for borrowed paths without building one.
pub(crate) struct PathSet<'f> {
    by_hash: HashMap<u64, Vec<&'f [Key]>>,
}

fn hash_path<K: std::borrow::Borrow<Key>>(path: &[K]) -> u64 {
    let mut hasher = FxHasher::default();
    path.len().hash(&mut hasher);
    for key in path {
        key.borrow().hash(&mut hasher);
    }
    hasher.finish()
}

impl<'f> PathSet<'f> {
    fn new(paths: &'f [Vec<Key>]) -> PathSet<'f> {
        let mut by_hash: HashMap<u64, Vec<&'f [Key]>> = HashMap::new();
        for path in paths {
            by_hash.entry(hash_path(path)).or_default().push(path);
        }
        PathSet { by_hash }
    }

    fn contains(&self, path: &[&Key]) -> bool {
        self.by_hash
            .get(&hash_path(path))
            .is_some_and(|candidates| {
                candidates
                    .iter()
                    .any(|c| c.len() == path.len() && c.iter().zip(path).all(|(a, b)| a == *b))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variable::Variable;

    fn leaf(type_id: TypeId, tag: Option<&str>) -> Leaf {
        let v = Variable::new(type_id, None).unwrap();
        if let Some(t) = tag {
            v.set_metadata("tag", crate::MetaValue::Str(t.into()))
                .unwrap();
        }
        Leaf::Variable(Arc::new(v))
    }

    fn test(filter: &Filter, path: &[Key], leaf: &Leaf) -> bool {
        let registry = crate::types::snapshot();
        let refs: Vec<&Key> = path.iter().collect();
        filter
            .compile(&registry)
            .unwrap()
            .matches(&refs, leaf)
            .unwrap()
    }

    #[test]
    fn type_and_tag_filters() {
        let key = leaf(TypeId::RNG_KEY, Some("dropout"));
        let p = [Key::str("a")];
        assert!(test(&Filter::of_type(TypeId::RNG_STATE), &p, &key));
        assert!(!test(&Filter::of_type(TypeId::PARAM), &p, &key));
        assert!(test(&Filter::with_tag("dropout"), &p, &key));
        assert!(!test(&Filter::with_tag("drop"), &p, &key));
        let array = Leaf::Array(Arc::new(crate::Array::from_slice(&[1], &[1u8]).unwrap()));
        assert!(!test(&Filter::of_type(TypeId::VARIABLE), &p, &array));
        let not_variable = Filter::negate(Filter::of_type(TypeId::VARIABLE)).unwrap();
        assert!(test(&not_variable, &p, &array));
    }

    #[test]
    fn path_filters_follow_python() {
        let l = leaf(TypeId::PARAM, None);
        let p = [Key::str("a1"), Key::int(12)];
        assert!(test(&Filter::path_contains(12, true), &p, &l));
        assert!(!test(&Filter::path_contains("12", true), &p, &l));
        assert!(test(&Filter::path_contains(1, false), &p, &l));
        assert!(test(&Filter::path_contains("2", false), &p, &l));
        assert!(!test(&Filter::path_contains(-1, false), &p, &l));
        assert!(test(
            &Filter::path_contains(-1, false),
            &[Key::int(-12)],
            &l
        ));
        let path_in = Filter::path_in(vec![p.to_vec(), vec![Key::str("b")]]);
        assert!(test(&path_in, &p, &l));
        assert!(!test(&path_in, &[Key::str("a1")], &l));
        assert!(!test(&path_in, &[Key::str("a1"), Key::str("12")], &l));
    }

    #[test]
    fn combinators() {
        let l = leaf(TypeId::PARAM, None);
        let p = [Key::str("a")];
        assert!(!test(&Filter::any(vec![]).unwrap(), &p, &l));
        assert!(test(&Filter::all(vec![]).unwrap(), &p, &l));
        let parts = || vec![Filter::Nothing, Filter::Everything];
        assert!(test(&Filter::any(parts()).unwrap(), &p, &l));
        assert!(!test(&Filter::all(parts()).unwrap(), &p, &l));
    }

    #[test]
    fn everything_must_come_last() {
        let ok = [
            Filter::of_type(TypeId::PARAM),
            Filter::Everything,
            Filter::Everything,
        ];
        assert!(check_order(&ok).is_ok());
        let bad = [Filter::Everything, Filter::of_type(TypeId::PARAM)];
        assert_eq!(
            check_order(&bad).unwrap_err().kind(),
            ErrorKind::FilterOrder
        );
        // Only a bare Everything is checked, as only `...` and `True` are in NNX.
        let wrapped = [
            Filter::any(vec![Filter::Everything]).unwrap(),
            Filter::Nothing,
        ];
        assert!(check_order(&wrapped).is_ok());
    }

    #[test]
    fn decimal_formatting() {
        for v in [0, 7, -7, 1234567890, i64::MIN, i64::MAX] {
            assert_eq!(DecimalBuf::new(v).as_str(), v.to_string());
        }
    }

    #[test]
    fn repr_reads_like_nnx() {
        let f = Filter::any(vec![
            Filter::of_type(TypeId::PARAM),
            Filter::with_tag("x"),
            Filter::negate(Filter::path_contains(0, false)).unwrap(),
        ])
        .unwrap();
        assert_eq!(
            format!("{f:?}"),
            "Any(OfType(Param), WithTag('x'), Not(PathContains(0, exact=False)))"
        );
    }
}
