//! Limits on what the library takes, so that no input can exhaust the
//! stack or make an operation grow without bound.
//!
//! The operations walk trees, filters and metadata values recursively, one
//! stack frame per level. Bounding the nesting bounds the stack they use,
//! whatever thread calls them; every way in (setting at a path, nesting a
//! state into another, building from a flat list, loading a file, building
//! a filter, setting metadata) refuses what would pass the limit, with
//! [`ErrorKind::TooDeep`](crate::ErrorKind::TooDeep), before anything is
//! written.

use crate::error::{bail, Result};

/// The deepest nesting the library takes: a path of at most this many keys
/// (so a state at most this many levels deep), a filter of at most this
/// many levels of `Any`/`All`/`Not`, a metadata value of at most this many
/// levels of lists, tuples and maps.
///
/// Why 128: real models nest far less (Flax NNX states are 3 to 12 levels
/// deep: `model/layers/0/attn/query/kernel`, an optimizer's
/// `opt_state/0/mu/...`, a few more for nested `Sequential`s), so this
/// leaves them a margin of ten. At 128 levels the deepest recursion of any
/// operation, in a debug build, uses well under a quarter of a 256 KiB
/// thread stack (`tests/c/deep.c` runs every operation at the limit on
/// such a thread), leaving the rest to the caller. It is also the nesting
/// limit of serde_json and of many JSON parsers, which our checkpoint
/// records pass through.
pub const MAX_DEPTH: usize = 128;

/// The most parts a filter may have, counted as if written out (a filter
/// used twice inside another counts twice): composite filters share their
/// parts, so a few calls can build a filter whose written-out form is
/// exponentially large, and compiling or printing it would never end.
pub const MAX_FILTER_PARTS: u64 = 1 << 20;

/// Fails with `TooDeep` unless `depth` levels are within [`MAX_DEPTH`];
/// `what` names what is that deep, for the message.
#[allow(dead_code)] // used by the checks that follow in this series
pub(crate) fn check_depth(depth: usize, what: impl FnOnce() -> String) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!(
            TooDeep,
            "{} is {depth} levels deep, past the nesting limit of {MAX_DEPTH} (NNX_MAX_DEPTH)",
            what()
        );
    }
    Ok(())
}
