//! The safetensors loader on arbitrary bytes: it must return a state or an
//! error (a `Format` error for every malformed file), never crash, hang or
//! read out of bounds; and what it loads must be consistent.
//!
//! Each input is loaded as a file in memory (arrays share the input), with
//! the default options and with copies as bare arrays. A state that loads
//! is flattened and listed (which reads every array's bytes), and each
//! array's byte count must match its dtype and shape. The same input's
//! header is checked on its own and must agree with the full load.

#![no_main]

use std::sync::Arc;

use ::nnx_state::array::byte_size;
use ::nnx_state::io::{self, LoadOptions};
use ::nnx_state::{ErrorKind, Leaf, Value};
use libfuzzer_sys::fuzz_target;

fn check(data: &Arc<[u8]>, options: &LoadOptions) {
    match io::load_bytes(data.clone(), options) {
        Ok(loaded) => {
            let flat = loaded.state.flatten().expect("a loaded state flattens");
            for (_, leaf) in &flat {
                let array = match leaf {
                    Leaf::Array(a) => Some(a.clone()),
                    Leaf::Variable(v) => match v.value() {
                        Value::Array(a) => Some(a),
                        Value::Key(k) => Some(k.data().clone()),
                        Value::None | Value::Opaque(_) => None,
                    },
                };
                if let Some(a) = array {
                    let n = byte_size(a.dtype(), a.shape()).expect("a valid shape");
                    assert_eq!(n, a.nbytes());
                    assert_eq!(a.bytes().expect("CPU memory").len(), n);
                }
            }
            let _ = loaded.state.to_string_tree().expect("a loaded state lists");
        }
        Err(e) => {
            // A malformed file is a Format error; a file that names a
            // custom type registered here under another parent is a type
            // conflict; a name or path past the nesting limit is too deep.
            // Nothing else may fail.
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::Format | ErrorKind::TypeConflict | ErrorKind::TooDeep
                ),
                "unexpected error kind {:?}: {e}",
                e.kind()
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let data: Arc<[u8]> = Arc::from(data);
    let header_ok = io::parse_header(&data).is_ok();
    check(&data, &LoadOptions::default());
    check(
        &data,
        &LoadOptions {
            leaf_type: None,
            copy: true,
            str_keys: true,
        },
    );
    // A header that fails its checks fails the load too.
    if !header_ok {
        assert!(io::load_bytes(data, &LoadOptions::default()).is_err());
    }
});
