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
/// Why 64: real models nest far less. A Flax NNX model's paths are 3 to 12
/// keys (`model/layers/0/attn/query/kernel`); an optimizer's state adds the
/// optax chain above them (`opt_state/0/1/mu/...`), about 20 in all for the
/// deepest we know. That leaves a margin of three. And the stack it takes
/// stays small: at this depth the deepest recursion of any operation
/// (split, which builds its outputs level by level) needs under 64 KiB in
/// a release build, a quarter of a 256 KiB worker thread, leaving the rest
/// to the caller; an unoptimized build needs under 160 KiB.
/// `tests/c/deep.c` runs every operation at the limit on a thread of
/// 256 KiB.
pub const MAX_DEPTH: usize = 64;

/// The most parts a filter may have, counted as if written out (a filter
/// used twice inside another counts twice): composite filters share their
/// parts, so a few calls can build a filter whose written-out form is
/// exponentially large, and compiling or printing it would never end.
pub const MAX_FILTER_PARTS: u64 = 1 << 20;

/// Fails with `TooDeep` unless `depth` levels are within [`MAX_DEPTH`];
/// `what` names what is that deep, for the message.
pub(crate) fn check_depth(depth: usize, what: impl FnOnce() -> String) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!(
            TooDeep,
            "{}: {depth} levels, past the nesting limit of {MAX_DEPTH} (NNX_MAX_DEPTH)",
            what()
        );
    }
    Ok(())
}
