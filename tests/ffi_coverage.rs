//! Every function the header declares is exercised by some test.
//!
//! Parses `include/nnx_state.h` for its function declarations and looks for
//! each name, as a whole word, in the tests (`tests/`, without this file and
//! `tests/data/`), the C examples (`examples-c/`) and the Python package
//! (`python/`). The C-ABI contract table (`ffi_contract.rs`) must call every
//! function on its own as well, so that coverage does not hang on tests
//! written elsewhere (its own test also checks there is one row for each).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::header::{header_functions, identifiers, root, strip_c_comments};

/// The `pub extern "C" fn` names of `src/ffi/`, to check the header parser.
fn source_functions() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in files_under(&root().join("src").join("ffi"), &[]) {
        let text = fs::read_to_string(&file).unwrap_or_default();
        for (at, _) in text.match_indices("extern \"C\" fn ") {
            let rest = &text[at + "extern \"C\" fn ".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // Only definitions of exported functions, not pointer types.
            let before = &text[..at];
            if name.starts_with("nnx_") && before.trim_end().ends_with("pub") {
                names.insert(name);
            }
        }
    }
    names
}

/// Every file below `dir` (recursively), skipping `skip`, hidden entries,
/// build output and Python caches.
fn files_under(dir: &Path, skip: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.')
            || matches!(name, "__pycache__" | "target" | "build" | "dist")
            || skip.iter().any(|s| s == &path)
        {
            continue;
        }
        if path.is_dir() {
            out.extend(files_under(&path, skip));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}

/// The `nnx_` identifiers used in `files`. Binary files (with NUL bytes)
/// are ignored.
fn names_used_in(files: &[PathBuf]) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for file in files {
        let Ok(bytes) = fs::read(file) else { continue };
        if bytes.contains(&0) {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        used.extend(
            identifiers(&text)
                .into_iter()
                .filter(|w| w.starts_with("nnx_"))
                .map(str::to_owned),
        );
    }
    used
}

fn missing(declared: &BTreeSet<String>, used: &BTreeSet<String>) -> Vec<String> {
    declared.difference(used).cloned().collect()
}

fn relative(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .map(|f| f.strip_prefix(root()).unwrap_or(f).display().to_string())
        .collect()
}

#[test]
fn header_parser_finds_exactly_the_exported_functions() {
    let declared = header_functions();
    assert!(
        declared.len() >= 90,
        "only {} functions found in the header: {declared:?}",
        declared.len()
    );
    for expected in [
        "nnx_last_error_message",
        "nnx_status_name",
        "nnx_version",
        "nnx_state_new",
        "nnx_state_split",
        "nnx_array_release",
        "nnx_string_free",
    ] {
        assert!(declared.contains(expected), "{expected} not found");
    }
    for not_a_function in ["nnx_filter_fn", "nnx_release_fn", "nnx_status", "nnx_key"] {
        assert!(
            !declared.contains(not_a_function),
            "{not_a_function} taken for a function"
        );
    }
    let exported = source_functions();
    let only_in_header: Vec<_> = declared.difference(&exported).collect();
    let only_in_source: Vec<_> = exported.difference(&declared).collect();
    assert!(
        only_in_header.is_empty() && only_in_source.is_empty(),
        "header and src/ffi disagree (is include/nnx_state.h stale?)\n  \
         only in the header: {only_in_header:?}\n  only in src/ffi: {only_in_source:?}"
    );
}

#[test]
fn every_header_function_is_exercised_by_some_test() {
    let root = root();
    let this_file = root.join("tests").join("ffi_coverage.rs");
    let data = root.join("tests").join("data");
    let mut files = files_under(&root.join("tests"), &[this_file, data]);
    files.extend(files_under(&root.join("examples-c"), &[]));
    files.extend(files_under(&root.join("python"), &[]));
    assert!(!files.is_empty(), "no test files found");

    let declared = header_functions();
    let missing = missing(&declared, &names_used_in(&files));
    assert!(
        missing.is_empty(),
        "{} of {} functions of include/nnx_state.h appear in no test, example or \
         Python file:\n  {}\n(searched {} files: {:?})",
        missing.len(),
        declared.len(),
        missing.join("\n  "),
        files.len(),
        relative(&files)
    );
}

#[test]
fn the_contract_table_alone_calls_every_function() {
    let files = [root().join("tests").join("ffi_contract.rs")];
    let missing = missing(&header_functions(), &names_used_in(&files));
    assert!(
        missing.is_empty(),
        "{} functions of include/nnx_state.h are not called by tests/ffi_contract.rs:\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}

#[test]
fn comment_stripping_and_word_matching() {
    let code = strip_c_comments(
        "/* nnx_a(x) */ int nnx_b(void); // nnx_c(\n\
         typedef int (*nnx_d)(int);\n#define S \"/* nnx_e( */\"\nvoid nnx_f (int);",
    );
    assert!(!code.contains("nnx_a"));
    assert!(!code.contains("nnx_c"));
    assert!(code.contains("nnx_b(void)"));
    assert!(
        code.contains("\"/* nnx_e( */\""),
        "string literals are kept"
    );
    assert!(code.contains("nnx_f (int)"));

    let words = identifiers("nnx_array_data_mut(x); foo_nnx_array_data;");
    assert!(words.contains("nnx_array_data_mut"));
    assert!(
        !words.contains("nnx_array_data"),
        "a longer name is not a use of its prefix"
    );
}
