//! Filters from text: the syntax the `nnx-state` tool takes.

use std::ffi::c_char;

use super::error::nnx_status;
use super::filter::nnx_filter;
use super::{boundary, box_into_raw, c_str, Out};
use crate::filter_parse::parse_filter;

/// Parses a filter expression, as the `nnx-state` tool takes them:
///
/// - `Param`, `BatchStat`, any registered type name (or `type:NAME`): that
///   type and its subtypes (`OfType`); names resolve when parsing.
/// - `tag:NAME`: `WithTag`.
/// - `path:KEY`: `PathContains(KEY, exact)`; a bare KEY that is a canonical
///   decimal integer (`0`, `-3`, not `007`) is an int key, a quoted one
///   (`path:"0"`) always a str key.
/// - `path~:TEXT`: `PathContains(TEXT, not exact)`, a substring of some
///   path element (ints in decimal).
/// - `at:a/0/b`: `PathIn` of that one path (`/`-separated, decimal
///   components are int keys).
/// - `...` or `*`: Everything (which must come last in a filter list, as
///   NNX's `...`); `none`: Nothing.
/// - `~F` (Not), `F & G` (All), `F | G` (Any), parentheses; `~` binds
///   tightest, then `&`, then `|`.
///
/// Values are bare words (up to whitespace or one of `( ) & | ~ "`) or
/// double-quoted, with `\"` and `\\` inside quotes.
///
/// - `text`: borrowed, NUL-terminated UTF-8; read during the call.
/// - `out_filter`: receives a new filter owned by the caller (free with
///   `nnx_filter_free`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_INVALID_ARGUMENT` (a syntax error: the message names the
/// column), `NNX_ERR_UNKNOWN_TYPE` (a type name not registered; the message
/// names the column), `NNX_ERR_TOO_DEEP` (parentheses and `~` nested more
/// than `NNX_MAX_DEPTH` deep). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_filter_parse(
    text: *const c_char,
    out_filter: *mut *mut nnx_filter,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_filter, "out_filter")?;
        // SAFETY: a C string argument.
        let text = unsafe { c_str(text, "text") }?;
        let filter = parse_filter(text)?;
        out.write(box_into_raw(nnx_filter { filter }));
        Ok(())
    })
}
