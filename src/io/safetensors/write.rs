//! Saving: the plan of tensors and records, the header, and atomic writes.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::array::Array;
use crate::error::{bail, Error, ErrorKind, Result};
use crate::key::{format_path, Key};
use crate::state::State;
use crate::tree::Leaf;
use crate::variable::Variable;

/// The `__metadata__` entry that records a state written by this library.
use super::*;

// ---------------------------------------------------------------------------
// Saving

/// One tensor to write.
#[derive(Clone)]
pub(crate) struct Outgoing {
    pub name: String,
    pub array: Arc<Array>,
}

/// One leaf's record and, if it has one, its tensor.
pub(crate) struct Planned {
    pub record: Value,
    pub tensor: Option<Outgoing>,
    /// For a `same_as` record: the index of the record it points to.
    pub same_as: Option<usize>,
}

/// The records and tensors of a state, in flat order. Fails for arrays
/// whose bytes are not on the CPU and for opaque values, which are never
/// written.
pub(crate) fn plan(state: &State) -> Result<Vec<Planned>> {
    let flat = state.flatten()?;
    let mut planned = Vec::with_capacity(flat.len());
    let mut names: HashSet<String> = HashSet::new();
    let mut seen_variables: HashMap<*const Variable, (usize, Vec<Key>)> = HashMap::new();
    let mut seen_arrays: HashMap<*const Array, (usize, Vec<Key>)> = HashMap::new();
    for (path, leaf) in flat {
        let seen = match &leaf {
            Leaf::Variable(v) => seen_variables.get(&Arc::as_ptr(v)),
            Leaf::Array(a) => seen_arrays.get(&Arc::as_ptr(a)),
        };
        if let Some((index, first)) = seen {
            let record =
                serde_json::json!({"path": path_to_json(&path), "same_as": path_to_json(first)});
            planned.push(Planned {
                record,
                tensor: None,
                same_as: Some(*index),
            });
            continue;
        }
        let index = planned.len();
        let (value, mut record) = match &leaf {
            Leaf::Variable(v) => {
                seen_variables.insert(Arc::as_ptr(v), (index, path.clone()));
                let mut record = serde_json::Map::new();
                record.insert("type".into(), type_to_json(v.type_id())?);
                record.insert("metadata".into(), meta_to_json(&v.metadata_entries()));
                let value = match v.value() {
                    crate::Value::None => None,
                    crate::Value::Array(array) => Some(array),
                    crate::Value::Key(key) => {
                        record.insert(KEY_IMPL.into(), Value::from(key.impl_name()));
                        Some(key.data().clone())
                    }
                    crate::Value::Opaque(opaque) => bail!(
                        InvalidArgument,
                        "cannot save '{}': its value is an opaque value ({}), which is \
                         never written to a checkpoint",
                        format_path(&path),
                        opaque.type_name()
                    ),
                };
                (value, record)
            }
            Leaf::Array(a) => {
                seen_arrays.insert(Arc::as_ptr(a), (index, path.clone()));
                (Some(a.clone()), serde_json::Map::new())
            }
        };
        record.insert("path".into(), path_to_json(&path));
        let tensor = match value {
            None => {
                record.insert("tensor".into(), Value::Null);
                None
            }
            Some(array) => {
                if array.bytes().is_none() {
                    bail!(
                        InvalidArgument,
                        "cannot save '{}': its array lives on device {}, not in CPU memory",
                        format_path(&path),
                        array.device()
                    );
                }
                let name = unique_name(&path, &mut names);
                record.insert("tensor".into(), Value::from(name.as_str()));
                Some(Outgoing { name, array })
            }
        };
        planned.push(Planned {
            record: Value::Object(record),
            tensor,
            same_as: None,
        });
    }
    Ok(planned)
}

/// The dotted name of a path, made unique among `names`.
pub(crate) fn unique_name(path: &[Key], names: &mut HashSet<String>) -> String {
    let mut base = String::new();
    for (i, key) in path.iter().enumerate() {
        if i > 0 {
            base.push('.');
        }
        key.write_plain(&mut base);
    }
    let mut name = base.clone();
    let mut n = 1;
    while name == "__metadata__" || names.contains(&name) {
        name = format!("{base}~{n}");
        n += 1;
    }
    names.insert(name.clone());
    name
}

/// Fails for a `__metadata__` name that a caller may not set: those
/// starting with `nnx_state.v`, which name this library's own records.
pub fn check_metadata_name(name: &str) -> Result<()> {
    if name.starts_with(FORMAT_KEY_PREFIX) {
        bail!(
            InvalidArgument,
            "metadata name {name:?} is reserved for nnx-state's own record"
        );
    }
    Ok(())
}

/// The `__metadata__` of a file holding `records`.
pub(crate) fn file_metadata(
    records: Vec<Value>,
    options: &SaveOptions,
) -> Result<HashMap<String, String>> {
    let mut metadata: HashMap<String, String> = HashMap::new();
    for (k, v) in &options.metadata {
        check_metadata_name(k)?;
        metadata.insert(k.clone(), v.clone());
    }
    let record = serde_json::json!({ "leaves": records });
    metadata.insert(FORMAT_KEY.to_owned(), record.to_string());
    Ok(metadata)
}

/// The header bytes (padded to a multiple of 8 with spaces) and the
/// tensors in the order their bytes follow it: by descending alignment,
/// then name, as the reference writer orders them.
pub(crate) fn encode_header(
    tensors: &[Outgoing],
    metadata: HashMap<String, String>,
) -> Result<(Vec<u8>, Vec<Outgoing>)> {
    use ::safetensors::tensor::{Metadata, TensorInfo};
    let mut sorted: Vec<Outgoing> = tensors.to_vec();
    sorted.sort_by(|a, b| {
        st_dtype(b.array.dtype())
            .cmp(&st_dtype(a.array.dtype()))
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut infos = Vec::with_capacity(sorted.len());
    let mut offset = 0usize;
    for t in &sorted {
        let n = t.array.nbytes();
        let shape = t.array.shape().iter().map(|&d| d as usize).collect();
        infos.push((
            t.name.clone(),
            TensorInfo {
                dtype: st_dtype(t.array.dtype()),
                shape,
                data_offsets: (offset, offset + n),
            },
        ));
        offset += n;
    }
    let metadata = Metadata::new(Some(metadata), infos)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("cannot encode: {e}")))?;
    let mut header = serde_json::to_vec(&metadata)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("cannot encode: {e}")))?;
    let padded = header.len().next_multiple_of(LEN_BYTES);
    header.resize(padded, b' ');
    if header.len() as u64 > MAX_HEADER_LEN {
        bail!(
            InvalidArgument,
            "the header would be {} bytes, over the format's limit of {MAX_HEADER_LEN}",
            header.len()
        );
    }
    Ok((header, sorted))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a file atomically: into a new temporary file in the same
/// directory, flushed to disk, then renamed over `path`. On failure the
/// temporary file is removed and `path` is as it was.
/// Creates a new temporary file beside the target. A name already taken (a
/// save killed mid-write may leave its file behind, and a restarted process
/// can have the same pid) is skipped for the next one.
/// Errors name `path`, the file asked for, and its directory: the
/// temporary file's name is of no use to the caller.
pub(crate) fn create_temporary(
    path: &Path,
    dir: &Path,
    file_name: &str,
) -> Result<(PathBuf, File)> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            Io,
            "cannot save '{}': the directory '{}' does not exist",
            path.display(),
            dir.display()
        ),
        Ok(m) if !m.is_dir() => bail!(
            Io,
            "cannot save '{}': '{}' is not a directory",
            path.display(),
            dir.display()
        ),
        _ => {}
    }
    const ATTEMPTS: usize = 1000;
    for _ in 0..ATTEMPTS {
        let temp = dir.join(format!(
            ".{file_name}.tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => bail!(
                Io,
                "cannot save '{}': cannot create a file in '{}': {e}",
                path.display(),
                dir.display()
            ),
        }
    }
    bail!(
        Io,
        "cannot create a temporary file beside '{file_name}' in '{}': {ATTEMPTS} names are taken",
        dir.display()
    )
}

pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> std::io::Result<()>,
) -> Result<()> {
    let Some(file_name) = path.file_name() else {
        bail!(
            InvalidArgument,
            "cannot save to '{}': it names no file",
            path.display()
        );
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (temp, file) = create_temporary(path, &dir, &file_name.to_string_lossy())?;
    let result = (|| {
        let mut writer = BufWriter::with_capacity(1 << 20, &file);
        let failed = |what: &str, e: std::io::Error| {
            Error::new(
                ErrorKind::Io,
                format!(
                    "cannot save '{}': cannot {what} its temporary file '{}': {e}",
                    path.display(),
                    temp.display()
                ),
            )
        };
        write(&mut writer).map_err(|e| failed("write", e))?;
        writer.flush().map_err(|e| failed("write", e))?;
        drop(writer);
        file.sync_all().map_err(|e| failed("flush to disk", e))?;
        fs::rename(&temp, path).map_err(|e| io_error(path, "replace", e))
    })();
    drop(file);
    if result.is_err() {
        let _ = fs::remove_file(&temp);
        return result;
    }
    // Make the rename itself durable. Some file systems cannot sync a
    // directory; the file is in place all the same.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes one safetensors file of `tensors` with `metadata`, atomically.
pub(crate) fn write_file(
    path: &Path,
    tensors: &[Outgoing],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let (header, sorted) = encode_header(tensors, metadata)?;
    write_atomically(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        for t in &sorted {
            // Checked to be CPU memory by `plan`.
            w.write_all(t.array.bytes().unwrap_or(&[]))?;
        }
        Ok(())
    })
}

/// Saves `state` as one safetensors file at `path`, atomically: the file is
/// written to a temporary file in the same directory, flushed to disk and
/// renamed over `path`, so a failed or interrupted save leaves what was at
/// `path` intact.
///
/// Fails with `InvalidArgument` for an array not in CPU memory or an
/// opaque value (before anything is written) and `Io` when the system
/// fails a file operation.
pub fn save(state: &State, path: &Path, options: &SaveOptions) -> Result<()> {
    let planned = plan(state)?;
    let mut records = Vec::with_capacity(planned.len());
    let mut tensors = Vec::new();
    for p in planned {
        records.push(p.record);
        tensors.extend(p.tensor);
    }
    let metadata = file_metadata(records, options)?;
    write_file(path, &tensors, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_avoid_collisions() {
        let mut names = HashSet::new();
        let a = unique_name(&[Key::str("a.b")], &mut names);
        let b = unique_name(&[Key::str("a"), Key::str("b")], &mut names);
        let m = unique_name(&[Key::str("__metadata__")], &mut names);
        assert_eq!((a.as_str(), b.as_str()), ("a.b", "a.b~1"));
        assert_eq!(m, "__metadata__~1");
    }
}
