//! Sharded safetensors checkpoints, as huggingface_hub writes them: shards
//! `model-00001-of-00003.safetensors`, ... and an index
//! `model.safetensors.index.json` of the form
//! `{"metadata": {"total_size": N}, "weight_map": {"tensor.name": "model-00001-of-00003.safetensors"}}`.
//!
//! Loading checks that the index and the shards agree exactly: every listed
//! tensor is in the shard the index names, every tensor of a shard is
//! listed for that shard, and no tensor is stored twice. Shard names must be
//! plain file names in the index's directory.
//!
//! Saving fills shards greedily in flat order up to a maximum size (a
//! tensor larger than the maximum gets a shard of its own). With one shard
//! the checkpoint is a single `model.safetensors` and no index is written,
//! as huggingface_hub does. Each file is written atomically and the index
//! last; then files of an earlier save under the same name that the new one
//! does not use (other shards, a single file, a stale index) are removed.
//! A save interrupted between shards can leave new shards beside the old
//! index: what is guaranteed is per file, not for the set.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::json::parse_strict;
use super::safetensors::{
    collect_file, file_metadata, format_error, in_file, io_error, plan, write_atomically,
    write_file, Collected, LoadOptions, Loaded, Outgoing, SaveOptions, MAX_HEADER_LEN,
};
use crate::error::{bail, Result};
use crate::state::State;

/// Loads a sharded checkpoint from its index file.
pub fn load_index(index: &Path, options: &LoadOptions) -> Result<Loaded> {
    let weight_map = read_index(index).map_err(|e| in_file(index, e))?;
    let dir = match index.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The shard files, each once.
    let shards: BTreeSet<&str> = weight_map.values().map(String::as_str).collect();
    let mut collected = Collected::default();
    // Tensor -> the shard that stores it.
    let mut stored_in: BTreeMap<String, &str> = BTreeMap::new();
    for file in shards {
        let before = collected.order.len();
        collect_file(&dir.join(file), &mut collected, options.copy)?;
        for name in &collected.order[before..] {
            stored_in.insert(name.clone(), file);
        }
    }
    for (name, file) in &stored_in {
        match weight_map.get(name) {
            Some(f) if f == file => {}
            Some(f) => bail!(
                Format,
                "{}: tensor {name:?} is stored in {file} but the index puts it in {f}",
                index.display()
            ),
            None => bail!(
                Format,
                "{}: shard {file} holds tensor {name:?}, which the index does not list",
                index.display()
            ),
        }
    }
    if let Some((name, file)) = weight_map.iter().find(|(n, _)| !stored_in.contains_key(*n)) {
        bail!(
            Format,
            "{}: the index lists tensor {name:?} in {file}, which does not hold it",
            index.display()
        );
    }
    collected
        .into_loaded(options)
        .map_err(|e| in_file(index, e))
}

/// The checked `weight_map` of an index file.
fn read_index(index: &Path) -> Result<BTreeMap<String, String>> {
    let size = fs::metadata(index)
        .map_err(|e| io_error(index, "read", e))?
        .len();
    if size > MAX_HEADER_LEN {
        bail!(
            Format,
            "the index is {size} bytes, over the limit of {MAX_HEADER_LEN}"
        );
    }
    let bytes = fs::read(index).map_err(|e| io_error(index, "read", e))?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => bail!(
            Format,
            "the index is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ),
    };
    let value = parse_strict(text)
        .map_err(|e| format_error(format!("the index is not valid JSON: {e}")))?;
    let Some(Value::Object(map)) = value.get("weight_map") else {
        bail!(Format, "the index has no \"weight_map\" object");
    };
    let mut out = BTreeMap::new();
    for (tensor, file) in map {
        let Value::String(file) = file else {
            bail!(
                Format,
                "the index maps tensor {tensor:?} to {file}, not to a file name"
            );
        };
        if !is_plain_file_name(file) {
            bail!(
                Format,
                "the index maps tensor {tensor:?} to {file:?}, which is not a file name in the index's directory"
            );
        }
        out.insert(tensor.clone(), file.clone());
    }
    Ok(out)
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !Path::new(name).is_absolute()
}

/// The file name of shard `i` (from 0) of `n`.
pub fn shard_file_name(name: &str, i: usize, n: usize) -> String {
    format!("{name}-{:05}-of-{n:05}.safetensors", i + 1)
}

/// Whether `file` looks like a shard of a checkpoint called `name`.
fn is_shard_of(file: &str, name: &str) -> bool {
    let Some(rest) = file
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(".safetensors"))
    else {
        return false;
    };
    let Some((i, n)) = rest.split_once("-of-") else {
        return false;
    };
    let digits = |s: &str| s.len() >= 5 && s.bytes().all(|b| b.is_ascii_digit());
    digits(i) && digits(n)
}

/// Saves `state` into `dir` as a checkpoint called `name` (`model` gives
/// `model.safetensors`, or `model-00001-of-0000N.safetensors` shards and
/// `model.safetensors.index.json`), no shard holding more than
/// `max_shard_size` bytes of tensors unless one tensor alone is larger.
/// Returns the files written, the index last.
pub fn save_sharded(
    state: &State,
    dir: &Path,
    name: &str,
    max_shard_size: u64,
    options: &SaveOptions,
) -> Result<Vec<PathBuf>> {
    if !is_plain_file_name(name) {
        bail!(
            InvalidArgument,
            "checkpoint name {name:?} must be a plain file name"
        );
    }
    if max_shard_size == 0 {
        bail!(
            InvalidArgument,
            "the maximum shard size must be at least 1 byte"
        );
    }
    let planned = plan(state)?;
    // Assign each record to a shard.
    let mut shard_of = Vec::with_capacity(planned.len());
    let mut sizes: Vec<u64> = vec![0];
    for p in &planned {
        let shard = if let Some(t) = &p.tensor {
            let n = t.array.nbytes() as u64;
            let last = sizes.len() - 1;
            if sizes[last] > 0 && sizes[last].saturating_add(n) > max_shard_size {
                sizes.push(n);
            } else {
                sizes[last] += n;
            }
            sizes.len() - 1
        } else if let Some(target) = p.same_as {
            shard_of[target]
        } else {
            0
        };
        shard_of.push(shard);
    }
    let n = sizes.len();
    let mut records: Vec<Vec<Value>> = vec![Vec::new(); n];
    let mut tensors: Vec<Vec<Outgoing>> = vec![Vec::new(); n];
    for (p, shard) in planned.into_iter().zip(&shard_of) {
        records[*shard].push(p.record);
        tensors[*shard].extend(p.tensor);
    }
    let single = dir.join(format!("{name}.safetensors"));
    let index = dir.join(format!("{name}.safetensors.index.json"));
    let mut written = Vec::with_capacity(n + 1);
    if n == 1 {
        let metadata = file_metadata(records.pop().unwrap_or_default(), options)?;
        write_file(&single, &tensors[0], metadata)?;
        written.push(single);
    } else {
        let mut weight_map = serde_json::Map::new();
        for (i, (records, tensors)) in records.into_iter().zip(&tensors).enumerate() {
            let file = shard_file_name(name, i, n);
            for t in tensors {
                weight_map.insert(t.name.clone(), Value::from(file.as_str()));
            }
            let path = dir.join(&file);
            write_file(&path, tensors, file_metadata(records, options)?)?;
            written.push(path);
        }
        let total: u64 = sizes.iter().sum();
        let body = serde_json::json!({
            "metadata": {"total_size": total},
            "weight_map": weight_map,
        });
        let mut text = serde_json::to_string_pretty(&body).expect("JSON values serialize");
        text.push('\n');
        write_atomically(&index, |w| std::io::Write::write_all(w, text.as_bytes()))?;
        written.push(index.clone());
    }
    remove_stale(dir, name, &written)?;
    Ok(written)
}

/// Removes files of an earlier save under `name` that `written` does not
/// include.
fn remove_stale(dir: &Path, name: &str, written: &[PathBuf]) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, "list", e))?;
    let single = format!("{name}.safetensors");
    let index = format!("{name}.safetensors.index.json");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let ours = file == single || file == index || is_shard_of(file, name);
        if ours
            && !written
                .iter()
                .any(|w| w.file_name() == Some(entry.file_name().as_os_str()))
        {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| io_error(&path, "remove", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names() {
        assert_eq!(
            shard_file_name("model", 0, 3),
            "model-00001-of-00003.safetensors"
        );
        assert!(is_shard_of("model-00001-of-00003.safetensors", "model"));
        assert!(!is_shard_of("model-1-of-3.safetensors", "model"));
        assert!(!is_shard_of("other-00001-of-00003.safetensors", "model"));
        assert!(!is_shard_of("model.safetensors", "model"));
        for bad in ["", ".", "..", "a/b", "/abs", "a\\b"] {
            assert!(!is_plain_file_name(bad), "{bad}");
        }
        assert!(is_plain_file_name("model-00001-of-00002.safetensors"));
    }
}
