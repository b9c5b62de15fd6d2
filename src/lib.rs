//! Flax NNX's `State` in Rust: a nested, ordered tree of typed variables
//! with NNX's `filter`, `split`, `merge`, `diff`, `update` and flat views,
//! and a C ABI (`include/nnx_state.h`).
//!
//! The core (this crate's public modules) is plain Rust and knows nothing of
//! C; the C boundary lives in the private `ffi` module.
//!
//! ```
//! use std::sync::Arc;
//! use nnx_state::{Array, Filter, State, TypeId, Variable, parse_path};
//!
//! let state = State::new();
//! let kernel = Array::from_slice(&[2, 3], &[0.0f32; 6]).unwrap();
//! let var = Arc::new(Variable::new(TypeId::PARAM, Some(Arc::new(kernel))).unwrap());
//! state.set_variable(&parse_path("linear/kernel").unwrap(), var).unwrap();
//! let mean = Arc::new(Variable::new(TypeId::BATCH_STAT, None).unwrap());
//! state.set_variable(&parse_path("bn/mean").unwrap(), mean).unwrap();
//!
//! let parts = state
//!     .split(&[Filter::of_type(TypeId::PARAM), Filter::of_type(TypeId::BATCH_STAT)])
//!     .unwrap();
//! assert_eq!(parts[0].num_leaves().unwrap(), 1);
//! let merged = State::merge(&[&parts[0], &parts[1]]).unwrap();
//! assert_eq!(merged.num_leaves().unwrap(), 2);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

pub mod array;
pub mod buffer;
pub mod display;
pub mod error;
pub mod filter;
pub mod filter_parse;
pub mod io;
pub mod key;
pub mod limits;
pub mod meta;
pub mod ops;
pub mod state;
pub mod suggest;
pub mod table;
pub mod tree;
pub mod types;
pub mod value;
pub mod variable;

pub mod ffi;

pub use array::{Array, DType};
pub use buffer::{Buffer, Device};
pub use error::{Error, ErrorKind, Result};
pub use filter::Filter;
pub use filter_parse::parse_filter;
pub use key::{parse_path, Key};
pub use limits::MAX_DEPTH;
pub use meta::{MetaMap, MetaSeq};
pub use state::{Entry, State};
pub use tree::{Child, Kind, Leaf, Node};
pub use types::TypeId;
pub use value::{Opaque, PrngKey, Value};
pub use variable::{MetaValue, Variable};
