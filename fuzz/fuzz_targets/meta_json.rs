//! The JSON form of metadata values on arbitrary text: reading must give a
//! value or a `Format` / `TooDeep` error, never crash or overflow the stack;
//! a value it gives must be at most `MAX_DEPTH` levels deep, print as
//! Python's repr, and read back from its own JSON form as the same value
//! (the same JSON form, so floats by their bits).

#![no_main]

use ::nnx_state::io::{meta_from_text, meta_to_text};
use ::nnx_state::{ErrorKind, MAX_DEPTH};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match meta_from_text(text) {
        Ok(value) => {
            assert!(value.levels() <= MAX_DEPTH);
            let _ = value.to_string();
            let form = meta_to_text(&value);
            let again = meta_from_text(&form).expect("our own form reads back");
            assert_eq!(meta_to_text(&again), form);
        }
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::Format | ErrorKind::TooDeep),
            "unexpected error kind {:?}: {e}",
            e.kind()
        ),
    }
});
