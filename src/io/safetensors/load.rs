//! Loading: tensor names as paths, arrays over the (mapped) file, and the
//! state made of them.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::array::Array;
use crate::buffer::{Buffer, MappedFile};
use crate::error::{bail, Result};
use crate::io::json::parse_strict;
use crate::key::{compare_paths, format_path, parse_component, Key};
use crate::limits::check_depth;
use crate::state::State;
use crate::tree::Leaf;
use crate::types::{self};
use crate::variable::Variable;

/// The `__metadata__` entry that records a state written by this library.
use super::*;

// ---------------------------------------------------------------------------
// Arrays over the file

/// Where tensor bytes come from.
#[derive(Clone)]
pub(crate) enum Data {
    Mapped(Arc<MappedFile>),
    Shared(Arc<[u8]>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Mapped(m) => m.bytes(),
            Data::Shared(s) => s,
        }
    }
}

pub(crate) fn array_for(
    data: &Data,
    header: &Header,
    t: &TensorEntry,
    copy: bool,
) -> Result<Arc<Array>> {
    let range = header.data_start + t.begin..header.data_start + t.end;
    let bytes = data.bytes();
    let aligned = (bytes.as_ptr() as usize + range.start) % t.dtype.size() == 0;
    let array = if copy || !aligned {
        Array::new(t.dtype, &t.shape, Some(&bytes[range]))?
    } else {
        let buffer = match data {
            Data::Mapped(m) => Buffer::from_mapped(m, range)?,
            Data::Shared(s) => Buffer::from_shared(s.clone(), range)?,
        };
        Array::from_buffer(t.dtype, &t.shape, buffer)?
    };
    Ok(Arc::new(array))
}

/// The tensors and records of one or more files, before they become a
/// state.
#[derive(Default)]
pub(crate) struct Collected {
    /// Tensor name to array, names unique across files.
    pub tensors: HashMap<String, Arc<Array>>,
    /// Names in the order they were met (by file, then by offset).
    pub order: Vec<String>,
    /// This library's records (`leaves` lists), one per file that has them.
    pub records: Vec<Value>,
    /// How many files had no record.
    pub files_without_records: usize,
    pub metadata: BTreeMap<String, String>,
}

impl Collected {
    /// Adds the tensors of one checked file.
    pub(crate) fn add_file(&mut self, data: &Data, header: &Header, copy: bool) -> Result<()> {
        for t in &header.tensors {
            if self.tensors.contains_key(&t.name) {
                bail!(Format, "tensor {:?} is stored twice", t.name);
            }
            let array = array_for(data, header, t, copy)?;
            self.tensors.insert(t.name.clone(), array);
            self.order.push(t.name.clone());
        }
        let mut record = None;
        for (key, value) in &header.metadata {
            if key == FORMAT_KEY {
                record = Some(value);
            } else if key.starts_with(FORMAT_KEY_PREFIX) {
                bail!(
                    Format,
                    "written by a newer nnx-state (format {key:?}); this version reads {FORMAT_KEY:?}"
                );
            } else {
                self.metadata
                    .entry(key.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        match record {
            Some(text) => match parse_strict(text) {
                Ok(v) => self.records.push(v),
                Err(e) => bail!(Format, "the {FORMAT_KEY} metadata is not valid JSON: {e}"),
            },
            None => self.files_without_records += 1,
        }
        Ok(())
    }

    /// The state these files hold.
    pub(crate) fn into_loaded(self, options: &LoadOptions) -> Result<Loaded> {
        let written_by_nnx = !self.records.is_empty();
        if written_by_nnx && self.files_without_records > 0 {
            bail!(
                Format,
                "some files carry the {FORMAT_KEY} record and {} do not",
                self.files_without_records
            );
        }
        let named = if written_by_nnx {
            leaves_from_records(&self.records, &self.tensors)?
        } else {
            leaves_from_names(&self.order, &self.tensors, options)?
        };
        let pairs = check_paths(named)?;
        Ok(Loaded {
            state: State::from_flat(pairs)?,
            metadata: self.metadata,
            written_by_nnx,
        })
    }
}

/// A leaf with its path and the name it came from (for messages).
pub(crate) type Named = (Vec<Key>, Leaf, String);

/// Sorts by path and rejects a path given twice, or a leaf whose path is a
/// prefix of another leaf's.
pub(crate) fn check_paths(mut named: Vec<Named>) -> Result<Vec<(Vec<Key>, Leaf)>> {
    named.sort_by(|a, b| compare_paths(&a.0, &b.0));
    for pair in named.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.0 == b.0 {
            bail!(
                Format,
                "{:?} and {:?} both load to the path '{}'",
                a.2,
                b.2,
                format_path(&a.0)
            );
        }
        if b.0.starts_with(&a.0) {
            bail!(
                Format,
                "{:?} is a leaf and also a prefix of {:?} (path '{}' would be a leaf and a nested state)",
                a.2,
                b.2,
                format_path(&a.0)
            );
        }
    }
    Ok(named.into_iter().map(|(p, l, _)| (p, l)).collect())
}

/// The path a tensor name of a file written by anyone loads to: its
/// dot-separated components, canonical decimal integers as int keys. A
/// name with an empty component (`a..b`, `.a`, `a.`, the empty name) is
/// malformed: no `/`-path could name the `""` key it would give, and no
/// writer we know of makes one on purpose. A name of more components than
/// the nesting limit is refused before any key is made.
pub fn path_of_name(name: &str, str_keys: bool) -> Result<Vec<Key>> {
    let components = 1 + name.bytes().filter(|&b| b == b'.').count();
    check_depth(components, || {
        format!(
            "the tensor name {} ({components} components)",
            short_name(name)
        )
    })?;
    if name.split('.').any(str::is_empty) {
        bail!(
            Format,
            "the tensor name {} has an empty component (between two dots, or at \
             either end); rename the tensor",
            short_name(name)
        );
    }
    Ok(name
        .split('.')
        .map(|c| {
            if str_keys {
                Key::str(c)
            } else {
                parse_component(c)
            }
        })
        .collect())
}

/// A name for a message: quoted, and cut short when long.
pub(crate) fn short_name(name: &str) -> String {
    const SHOWN: usize = 60;
    match name.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{:?}...", &name[..end]),
        None => format!("{name:?}"),
    }
}

pub(crate) fn leaves_from_names(
    order: &[String],
    tensors: &HashMap<String, Arc<Array>>,
    options: &LoadOptions,
) -> Result<Vec<Named>> {
    if let Some(t) = options.leaf_type {
        types::check(t)?;
    }
    order
        .iter()
        .map(|name| {
            let array = tensors[name].clone();
            let leaf = match options.leaf_type {
                Some(t) => Leaf::Variable(Arc::new(Variable::new(t, Some(array))?)),
                None => Leaf::Array(array),
            };
            Ok((path_of_name(name, options.str_keys)?, leaf, name.clone()))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Loading

pub(crate) fn map_file(path: &Path) -> Result<Arc<MappedFile>> {
    let file = File::open(path).map_err(|e| io_error(path, "open", e))?;
    match file.metadata() {
        Ok(m) if m.is_dir() => bail!(Io, "cannot load '{}': it is a directory", path.display()),
        Ok(_) => {}
        Err(e) => return Err(io_error(path, "read", e)),
    }
    MappedFile::map(&file).map_err(|e| in_file(path, e))
}

/// Adds one file to `collected`.
pub(crate) fn collect_file(path: &Path, collected: &mut Collected, copy: bool) -> Result<()> {
    let map = map_file(path)?;
    let header = parse_header(map.bytes()).map_err(|e| in_file(path, e))?;
    collected
        .add_file(&Data::Mapped(map), &header, copy)
        .map_err(|e| in_file(path, e))
}

/// Loads one safetensors file.
pub fn load_file(path: &Path, options: &LoadOptions) -> Result<Loaded> {
    let mut collected = Collected::default();
    collect_file(path, &mut collected, options.copy)?;
    collected.into_loaded(options).map_err(|e| in_file(path, e))
}

/// Loads a safetensors file held in memory. The arrays share `bytes`
/// (read-only) unless `options.copy` is set.
pub fn load_bytes(bytes: Arc<[u8]>, options: &LoadOptions) -> Result<Loaded> {
    let header = parse_header(&bytes)?;
    let mut collected = Collected::default();
    collected.add_file(&Data::Shared(bytes), &header, options.copy)?;
    collected.into_loaded(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_paths() {
        let path = |name: &str, str_keys: bool| path_of_name(name, str_keys).unwrap();
        assert_eq!(
            path("encoder.layer.0.attention.self.query.weight", false),
            crate::parse_path("encoder/layer/0/attention/self/query/weight").unwrap()
        );
        assert_eq!(
            path("a.007.-3.-0.+1", false),
            vec![
                Key::str("a"),
                Key::str("007"),
                Key::int(-3),
                Key::str("-0"),
                Key::str("+1")
            ]
        );
        assert_eq!(path("a.0", true), vec![Key::str("a"), Key::str("0")]);
    }

    #[test]
    fn names_with_empty_components_or_too_many_are_refused() {
        for name in ["", "a..b", ".a", "a.", "."] {
            let e = path_of_name(name, false).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Format, "{name:?}");
            assert!(e.message().contains("empty component"), "{e}");
        }
        let at_limit = vec!["a"; crate::MAX_DEPTH].join(".");
        assert_eq!(
            path_of_name(&at_limit, false).unwrap().len(),
            crate::MAX_DEPTH
        );
        let deep = vec!["a"; 30_000].join(".");
        let e = path_of_name(&deep, false).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::TooDeep);
        assert!(e.message().contains("30000 components"), "{e}");
        assert!(e.message().len() < 300, "the message stays short: {e}");
    }
}
