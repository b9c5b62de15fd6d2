//! Keys and paths.
//!
//! A key is a UTF-8 string or a signed 64-bit integer; `"0"` and `0` are
//! different keys. Keys order as NNX sorts paths: integers before strings,
//! integers numerically, strings by UTF-8 bytes (which equals Python's
//! code-point order).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::{LazyLock, RwLock};

use crate::error::{bail, Result};

/// A string key, interned: each distinct text is stored once for the life of
/// the process, followed by a NUL byte (so the C layer can lend
/// NUL-terminated pointers that never dangle). Copying, comparing for
/// equality and hashing a key are pointer operations, which keeps the
/// operations' per-leaf bookkeeping small; the price is that a process that
/// makes unboundedly many distinct key texts keeps them all.
#[derive(Clone, Copy)]
pub struct KeyStr(&'static &'static str);

/// The interned texts, each with its NUL terminator. A B-tree rather than a
/// hash set: its nodes are held by pointers to their start, so leak checkers
/// see these process-lifetime texts as reachable.
static INTERNED: LazyLock<RwLock<BTreeSet<Interned>>> = LazyLock::new(Default::default);

/// An interned text with its NUL, looked up by the text alone: its `Ord`
/// and `Eq` are those of the text, as `Borrow<str>` requires.
#[derive(Clone, Copy)]
struct Interned(&'static &'static str);

impl Borrow<str> for Interned {
    fn borrow(&self) -> &str {
        &self.0[..self.0.len() - 1]
    }
}

impl PartialEq for Interned {
    fn eq(&self, other: &Self) -> bool {
        Borrow::<str>::borrow(self) == Borrow::<str>::borrow(other)
    }
}
impl Eq for Interned {}
impl Ord for Interned {
    fn cmp(&self, other: &Self) -> Ordering {
        Borrow::<str>::borrow(self).cmp(Borrow::<str>::borrow(other))
    }
}
impl PartialOrd for Interned {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl KeyStr {
    pub fn new(text: &str) -> Self {
        if let Some(found) = INTERNED.read().unwrap_or_else(|p| p.into_inner()).get(text) {
            return KeyStr(found.0);
        }
        let mut set = INTERNED.write().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = set.get(text) {
            return KeyStr(found.0);
        }
        // A thin pointer to the text's (fat) reference keeps a key two words
        // long, which is most of a node entry.
        let with_nul: &'static str = Box::leak(format!("{text}\0").into_boxed_str());
        let thin: &'static &'static str = Box::leak(Box::new(with_nul));
        set.insert(Interned(thin));
        KeyStr(thin)
    }

    pub fn as_str(&self) -> &'static str {
        &self.0[..self.0.len() - 1]
    }

    /// The text followed by its NUL terminator, valid for the life of the
    /// process.
    pub fn as_bytes_with_nul(&self) -> &'static [u8] {
        (*self.0).as_bytes()
    }
}

// Interning makes equal texts the same allocation, so identity is equality.
impl PartialEq for KeyStr {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}
impl Eq for KeyStr {}
impl std::hash::Hash for KeyStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (std::ptr::from_ref(self.0) as usize).hash(state)
    }
}
impl fmt::Debug for KeyStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One element of a path. `Copy`: string keys are interned.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Key {
    Int(i64),
    Str(KeyStr),
}

impl Key {
    pub fn str(text: &str) -> Self {
        Key::Str(KeyStr::new(text))
    }

    pub fn int(value: i64) -> Self {
        Key::Int(value)
    }

    /// Builds a string key from bytes, rejecting invalid UTF-8.
    pub fn from_utf8(bytes: &[u8]) -> Result<Self> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(Key::str(text)),
            Err(e) => bail!(InvalidUtf8, "key is not valid UTF-8: {e}"),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Key::Str(s) => Some(s.as_str()),
            Key::Int(_) => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Key::Int(i) => Some(*i),
            Key::Str(_) => None,
        }
    }

    /// Writes the key as Python's `str(key)` would: the text, or the integer
    /// in decimal.
    pub fn write_plain(&self, out: &mut String) {
        match self {
            Key::Str(s) => out.push_str(s.as_str()),
            Key::Int(i) => {
                use std::fmt::Write;
                let _ = write!(out, "{i}");
            }
        }
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Key::Int(a), Key::Int(b)) => a.cmp(b),
            (Key::Int(_), Key::Str(_)) => Ordering::Less,
            (Key::Str(_), Key::Int(_)) => Ordering::Greater,
            (Key::Str(a), Key::Str(b)) if a == b => Ordering::Equal,
            (Key::Str(a), Key::Str(b)) => a.as_str().as_bytes().cmp(b.as_str().as_bytes()),
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl From<&str> for Key {
    fn from(text: &str) -> Self {
        Key::str(text)
    }
}

impl From<i64> for Key {
    fn from(value: i64) -> Self {
        Key::Int(value)
    }
}

/// Displays a key as Python's `repr` does: `'name'` or `3`.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(i) => write!(f, "{i}"),
            Key::Str(s) => write_python_str_repr(f, s.as_str()),
        }
    }
}

pub(crate) fn write_python_str_repr(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    // Python prefers single quotes unless the text holds one and no double.
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    f.write_fmt(format_args!("{quote}"))?;
    for c in text.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c == quote => write!(f, "\\{c}")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\x{:02x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_fmt(format_args!("{quote}"))
}

/// Compares two paths as NNX sorts them: element by element, a shorter
/// prefix first.
pub fn compare_paths<A: std::borrow::Borrow<Key>, B: std::borrow::Borrow<Key>>(
    a: &[A],
    b: &[B],
) -> Ordering {
    for (x, y) in a.iter().zip(b.iter()) {
        match x.borrow().cmp(y.borrow()) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    a.len().cmp(&b.len())
}

/// Parses `"layers/0/kernel"`: components separated by `/`, a component that
/// is a canonical decimal integer (`0`, `12`, `-3`, not `007` or `-0`)
/// becomes an int key. The empty string is the empty path; an empty
/// component (`a//b`, a leading or trailing `/`) is an error.
pub fn parse_path(text: &str) -> Result<Vec<Key>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split('/')
        .map(|component| {
            if component.is_empty() {
                bail!(
                    InvalidArgument,
                    "path {text:?} has an empty component (paths look like \"layers/0/kernel\")"
                );
            }
            Ok(parse_component(component))
        })
        .collect()
}

/// One path component as a key: a canonical decimal integer (`0`, `12`,
/// `-3`; not `007`, `-0` or `+1`) that fits an i64 is an int key, anything
/// else a str key. The one rule for `/`-paths, dotted tensor names and
/// filter text.
pub fn parse_component(component: &str) -> Key {
    let digits = component.strip_prefix('-').unwrap_or(component);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && component != "-0";
    if canonical {
        if let Ok(value) = component.parse::<i64>() {
            return Key::Int(value);
        }
    }
    Key::str(component)
}

/// Formats a path as `a/0/b` for messages.
pub fn format_path<K: std::borrow::Borrow<Key>>(path: &[K]) -> String {
    let mut out = String::new();
    for (i, key) in path.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        key.borrow().write_plain(&mut out);
    }
    out
}

/// Formats a path as `a/0/b` for messages, shortened to its first and last
/// keys when it is long (a path past the nesting limit may have thousands).
pub fn format_path_short<K: std::borrow::Borrow<Key>>(path: &[K]) -> String {
    const HEAD: usize = 4;
    const TAIL: usize = 2;
    if path.len() <= HEAD + TAIL + 2 {
        return format_path(path);
    }
    format!(
        "{}/.../{} ({} keys)",
        format_path(&path[..HEAD]),
        format_path(&path[path.len() - TAIL..]),
        path.len()
    )
}

/// Formats a path as Python's tuple repr, `('a', 0, 'b')`, for messages that
/// must read like NNX's.
pub fn format_path_tuple<K: std::borrow::Borrow<Key>>(path: &[K]) -> String {
    let parts: Vec<String> = path.iter().map(|k| k.borrow().to_string()).collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_sort_before_strings_and_numerically() {
        let mut keys = vec![Key::str("b"), Key::int(10), Key::str("a"), Key::int(-2)];
        keys.sort();
        assert_eq!(
            keys,
            vec![Key::int(-2), Key::int(10), Key::str("a"), Key::str("b")]
        );
    }

    #[test]
    fn strings_sort_by_code_point() {
        assert!(Key::str("Z") < Key::str("a"));
        assert!(Key::str("a") < Key::str("ä"));
        assert!(Key::str("é") < Key::str("名"));
    }

    #[test]
    fn int_and_str_keys_differ() {
        assert_ne!(Key::int(0), Key::str("0"));
    }

    #[test]
    fn shorter_prefix_sorts_first() {
        let a = [Key::str("a")];
        let ab = [Key::str("a"), Key::str("b")];
        assert_eq!(compare_paths(&a, &ab), Ordering::Less);
        assert_eq!(compare_paths(&ab, &ab), Ordering::Equal);
    }

    #[test]
    fn parses_slash_paths() {
        assert_eq!(
            parse_path("layers/0/kernel").unwrap(),
            vec![Key::str("layers"), Key::int(0), Key::str("kernel")]
        );
        assert_eq!(
            parse_path("-3/007/-0").unwrap(),
            vec![Key::int(-3), Key::str("007"), Key::str("-0")]
        );
        assert_eq!(parse_path("").unwrap(), Vec::<Key>::new());
        assert_eq!(
            parse_path("99999999999999999999").unwrap(),
            vec![Key::str("99999999999999999999")]
        );
        for bad in ["a//b", "/a", "a/"] {
            assert_eq!(
                parse_path(bad).unwrap_err().kind(),
                crate::ErrorKind::InvalidArgument
            );
        }
    }

    #[test]
    fn key_text_is_nul_terminated_and_interned() {
        let key = KeyStr::new("abc");
        assert_eq!(key.as_str(), "abc");
        assert_eq!(key.as_bytes_with_nul(), b"abc\0");
        let again = KeyStr::new(&String::from("abc"));
        assert!(std::ptr::eq(key.as_str(), again.as_str()));
        assert_eq!(KeyStr::new("").as_bytes_with_nul(), b"\0");
    }

    #[test]
    fn rejects_invalid_utf8() {
        assert_eq!(
            Key::from_utf8(&[0xff, 0xfe]).unwrap_err().kind(),
            crate::ErrorKind::InvalidUtf8
        );
    }

    #[test]
    fn displays_like_python_repr() {
        assert_eq!(Key::str("a").to_string(), "'a'");
        assert_eq!(Key::str("it's").to_string(), "\"it's\"");
        assert_eq!(Key::int(3).to_string(), "3");
        assert_eq!(format_path_tuple(&[Key::str("a")]), "('a',)");
        assert_eq!(format_path(&[Key::str("a"), Key::int(0)]), "a/0");
    }
}
