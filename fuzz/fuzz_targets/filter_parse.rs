//! The textual filter syntax on arbitrary text: parsing must return a
//! filter or an `InvalidArgument` / `UnknownType` / `TooDeep` error naming a column,
//! never crash or overflow the stack; a filter it returns must print and
//! must run on a small state.

#![no_main]

use std::sync::Arc;

use ::nnx_state::{parse_filter, parse_path, Array, ErrorKind, MetaValue, State, TypeId, Variable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_filter(text) {
        Ok(filter) => {
            let _ = format!("{filter:?}");
            let state = State::new();
            for (path, t) in [
                ("layers/0/kernel", TypeId::PARAM),
                ("bn/mean", TypeId::BATCH_STAT),
            ] {
                let array = Arc::new(Array::from_slice(&[1], &[1.0f32]).unwrap());
                let var = Variable::new(t, Some(array)).unwrap();
                var.set_metadata("tag", MetaValue::Str("dropout".into()))
                    .unwrap();
                state
                    .set_variable(&parse_path(path).unwrap(), Arc::new(var))
                    .unwrap();
            }
            let parts = state.filter(std::slice::from_ref(&filter)).unwrap();
            assert!(parts[0].num_leaves().unwrap() <= 2);
        }
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::InvalidArgument | ErrorKind::UnknownType | ErrorKind::TooDeep
                ),
                "unexpected error kind {:?}: {e}",
                e.kind()
            );
            assert!(e.message().contains("column "), "{e}");
        }
    }
});
