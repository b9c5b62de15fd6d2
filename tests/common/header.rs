//! The function declarations of `include/nnx_state.h`, for the tests that
//! check every C function is tested (`ffi_coverage.rs`, `ffi_contract.rs`).

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

/// The crate's directory.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The text with C comments blanked out (string literals kept as they are).
pub fn strip_c_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'/', Some(b'*')) => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    if bytes[i] == b'\n' {
                        out.push(b'\n');
                    }
                    i += 1;
                }
                i += 2;
                out.push(b' ');
            }
            (b'/', Some(b'/')) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            (b'"', _) => {
                out.push(b'"');
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        out.push(bytes[i]);
                        i += 1;
                    }
                    if i < bytes.len() {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
                if i < bytes.len() {
                    out.push(b'"');
                    i += 1;
                }
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("the header is UTF-8")
}

pub fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The identifiers of `text`, each once.
pub fn identifiers(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// The names of the functions `include/nnx_state.h` declares: identifiers
/// starting with `nnx_` followed by `(` outside comments. Function pointer
/// typedefs (`(*nnx_filter_fn)(`) are not declarations and do not match.
pub fn header_functions() -> BTreeSet<String> {
    let path = root().join("include").join("nnx_state.h");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let code = strip_c_comments(&text);
    let bytes = code.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_ident_byte(bytes[i - 1]);
        if starts_word && code[i..].starts_with("nnx_") {
            let end = i + code[i..].bytes().take_while(|&b| is_ident_byte(b)).count();
            let next = code[end..].bytes().find(|b| !b.is_ascii_whitespace());
            if next == Some(b'(') {
                names.insert(code[i..end].to_owned());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    names
}
