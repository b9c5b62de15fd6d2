//! A small textual syntax for filters, shared by the CLI and the C API
//! (`nnx_filter_parse`).
//!
//! ```text
//! expr    := and ('|' and)*                 Any(...) when there are several
//! and     := unary ('&' unary)*             All(...) when there are several
//! unary   := '~' unary | atom               Not(...)
//! atom    := '(' expr ')'
//!          | '...' | '*'                    Everything
//!          | 'none'                         Nothing
//!          | TYPE | 'type:' VALUE           OfType: the type and its subtypes
//!          | 'tag:' VALUE                   WithTag
//!          | 'path:' VALUE                  PathContains(key, exact=True)
//!          | 'path~:' VALUE                 PathContains(text, exact=False)
//!          | 'at:' VALUE                    PathIn(one path, "a/0/b")
//! VALUE   := a bare word | "quoted"
//! ```
//!
//! - Precedence: `~` binds tightest, then `&`, then `|`; parentheses group.
//!   Whitespace between tokens is ignored.
//! - A bare word runs until whitespace or one of `( ) & | ~ "`; a TYPE also
//!   stops at `:`. Quoted values may hold anything; inside them `\"` is a
//!   quote and `\\` a backslash.
//! - TYPE names resolve through the type registry at parse time (built-in
//!   names like `Param`, `BatchStat`, and registered ones); an unknown name
//!   is an `UnknownType` error. `type:"name"` reaches names that are not
//!   bare words, or that are keywords (`none`).
//! - `path:KEY`: a bare KEY that is a canonical decimal integer (`0`, `12`,
//!   `-3`; not `007`) is an int key, as in `"layers/0/kernel"` paths;
//!   anything else, and any quoted KEY (`path:"0"`), is a str key. Int and
//!   str keys never match each other.
//! - `path~:TEXT` matches when TEXT is a substring of some path element
//!   (ints in decimal), as `PathContains(TEXT, exact=False)`.
//! - `...` and `*` are the Everything filter that NNX writes `...`: in a
//!   list of filters it must come last.
//! - Errors are `InvalidArgument` (or `UnknownType`) naming the column
//!   (1-based, in characters) where the problem is.

use std::iter::Peekable;
use std::str::CharIndices;

use crate::error::{Error, ErrorKind, Result};
use crate::filter::Filter;
use crate::key::{parse_component, parse_path, Key};
use crate::limits::MAX_DEPTH;
use crate::types;

/// Parses a filter expression (see the module documentation).
pub fn parse_filter(text: &str) -> Result<Filter> {
    let mut parser = Parser {
        text,
        chars: text.char_indices().peekable(),
        depth: 0,
    };
    let filter = parser.expr()?;
    parser.skip_space();
    if let Some((at, c)) = parser.chars.peek().copied() {
        return Err(parser.error_at(at, format!("unexpected {c:?} after a complete filter")));
    }
    Ok(filter)
}

struct Parser<'a> {
    text: &'a str,
    chars: Peekable<CharIndices<'a>>,
    depth: usize,
}

/// A group being parsed: the whole text, or what a `(` opened.
struct Group {
    /// Where its `(` is; `None` for the whole text.
    open_at: Option<usize>,
    /// The `|` alternatives finished so far, and where the first began.
    any: Vec<Filter>,
    any_at: usize,
    /// The `&` run being read, and where it began.
    all: Vec<Filter>,
    all_at: usize,
    /// The `~`s read before the next operand, innermost last.
    nots: Vec<usize>,
}

impl Group {
    fn new(open_at: Option<usize>, first: usize) -> Group {
        Group {
            open_at,
            any: Vec::new(),
            any_at: first,
            all: Vec::new(),
            all_at: first,
            nots: Vec::new(),
        }
    }

    /// Takes the `&` run read so far (with where it began); the next one
    /// begins at `next`.
    fn take_all(&mut self, next: usize) -> (usize, Vec<Filter>) {
        let at = std::mem::replace(&mut self.all_at, next);
        (at, std::mem::take(&mut self.all))
    }
}

fn is_operator(c: char) -> bool {
    matches!(c, '(' | ')' | '&' | '|' | '~' | '"')
}

impl Parser<'_> {
    /// 1-based column, in characters, of byte offset `at`.
    fn column(&self, at: usize) -> usize {
        self.text[..at].chars().count() + 1
    }

    fn end(&self) -> usize {
        self.text.len()
    }

    fn error_at(&self, at: usize, message: impl AsRef<str>) -> Error {
        self.error_kind_at(ErrorKind::InvalidArgument, at, message)
    }

    fn error_kind_at(&self, kind: ErrorKind, at: usize, message: impl AsRef<str>) -> Error {
        Error::new(
            kind,
            format!(
                "filter {:?}, column {}: {}",
                self.text,
                self.column(at),
                message.as_ref()
            ),
        )
    }

    fn skip_space(&mut self) {
        while self.chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            self.chars.next();
        }
    }

    fn peek(&mut self) -> Option<(usize, char)> {
        self.skip_space();
        self.chars.peek().copied()
    }

    /// Parentheses and `~` may nest as deep as filters may (the nesting
    /// limit), which also bounds the parser's own recursion.
    fn enter(&mut self, at: usize) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_kind_at(
                ErrorKind::TooDeep,
                at,
                format!(
                    "nested more than {MAX_DEPTH} deep, past the nesting limit (NNX_MAX_DEPTH)"
                ),
            ));
        }
        Ok(())
    }

    /// A composite filter made at `at`, or why it could not be (past a
    /// limit), with the position.
    fn composite(&self, at: usize, made: Result<Filter>) -> Result<Filter> {
        made.map_err(|e| self.error_kind_at(e.kind(), at, e.message()))
    }

    /// `expr`, parsed without recursion: each `(` opens a [`Group`] on an
    /// explicit stack, so the parser's own stack use does not grow with
    /// the nesting (only the filter's does, within the nesting limit).
    fn expr(&mut self) -> Result<Filter> {
        let start = self.peek().map_or(self.end(), |(at, _)| at);
        let mut groups = vec![Group::new(None, start)];
        loop {
            // An operand: `~`s, then a group or an atom.
            while let Some((at, '~')) = self.peek() {
                self.chars.next();
                self.enter(at)?;
                groups.last_mut().expect("a group is open").nots.push(at);
            }
            let Some((at, c)) = self.peek() else {
                return Err(self.error_at(self.end(), "expected a filter, found the end"));
            };
            if c == '(' {
                self.chars.next();
                self.enter(at)?;
                let first = self.peek().map_or(self.end(), |(at, _)| at);
                groups.push(Group::new(Some(at), first));
                continue;
            }
            let mut operand = self.atom(at, c)?;
            // What follows a complete operand: `&` or `|` and the next
            // operand, or `)` closing a group (itself an operand of the
            // group around it), or the end.
            loop {
                let group = groups.last_mut().expect("a group is open");
                while let Some(not_at) = group.nots.pop() {
                    self.depth -= 1;
                    operand = self.composite(not_at, Filter::negate(operand))?;
                }
                group.all.push(operand);
                match self.peek() {
                    Some((_, '&')) => {
                        self.chars.next();
                        break;
                    }
                    Some((next_at, '|')) => {
                        self.chars.next();
                        let run = group.take_all(self.peek().map_or(next_at, |(at, _)| at));
                        let run = self.finish(run)?;
                        groups.last_mut().expect("a group is open").any.push(run);
                        break;
                    }
                    next => {
                        let closing = matches!(next, Some((_, ')')));
                        let group = groups.pop().expect("a group is open");
                        match group.open_at {
                            None => {
                                // The end of the text, or what follows a
                                // complete filter (`parse_filter` says so).
                                return self.finish_group(group);
                            }
                            Some(_) if closing => {
                                self.chars.next();
                                self.depth -= 1;
                                operand = self.finish_group(group)?;
                            }
                            Some(open_at) => {
                                let (found_at, found) = match next {
                                    Some((at, c)) => (at, format!("{c:?}")),
                                    None => (self.end(), "the end".to_owned()),
                                };
                                return Err(self.error_at(
                                    found_at,
                                    format!(
                                        "expected ')' to close the '(' at column {}, found {found}",
                                        self.column(open_at)
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
        }
    }

    /// The filter of a finished `&` run: its one part, or All of them.
    fn finish(&self, (at, mut parts): (usize, Vec<Filter>)) -> Result<Filter> {
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one part"));
        }
        self.composite(at, Filter::all(parts))
    }

    /// The filter of a finished group: its one alternative, or Any of them.
    fn finish_group(&self, mut group: Group) -> Result<Filter> {
        let run = group.take_all(0);
        let last = self.finish(run)?;
        group.any.push(last);
        if group.any.len() == 1 {
            return Ok(group.any.pop().expect("one alternative"));
        }
        self.composite(group.any_at, Filter::any(group.any))
    }

    /// An operand that is not a group, starting with `c` at `at`.
    fn atom(&mut self, at: usize, c: char) -> Result<Filter> {
        match c {
            '*' => {
                self.chars.next();
                Ok(Filter::Everything)
            }
            '"' => Err(self.error_at(
                at,
                "a quoted value must follow a prefix such as tag: or type:",
            )),
            c if is_operator(c) => {
                Err(self.error_at(at, format!("expected a filter, found {c:?}")))
            }
            _ => self.word_atom(at),
        }
    }

    /// A run of bare-word characters; `stop_at_colon` for names.
    fn bare(&mut self, stop_at_colon: bool) -> &str {
        let end_of_text = self.end();
        let start = self.chars.peek().map_or(end_of_text, |(i, _)| *i);
        let mut end = start;
        while let Some(&(i, c)) = self.chars.peek() {
            if c.is_whitespace() || is_operator(c) || (stop_at_colon && c == ':') {
                break;
            }
            self.chars.next();
            end = i + c.len_utf8();
        }
        &self.text[start..end]
    }

    /// A VALUE after a prefix: quoted or bare. Returns it and whether it was
    /// quoted.
    fn value(&mut self, prefix_at: usize, prefix: &str) -> Result<(String, bool)> {
        match self.chars.peek().copied() {
            Some((at, '"')) => {
                self.chars.next();
                let mut out = String::new();
                loop {
                    match self.chars.next() {
                        Some((_, '"')) => return Ok((out, true)),
                        Some((esc_at, '\\')) => {
                            match self.chars.next() {
                                Some((_, c @ ('"' | '\\'))) => out.push(c),
                                _ => return Err(self.error_at(
                                    esc_at,
                                    "only \\\" and \\\\ may follow a backslash in a quoted value",
                                )),
                            }
                        }
                        Some((_, c)) => out.push(c),
                        None => {
                            return Err(
                                self.error_at(at, "the quoted value starting here has no end")
                            )
                        }
                    }
                }
            }
            _ => {
                let word = self.bare(false).to_owned();
                if word.is_empty() {
                    return Err(self.error_at(prefix_at, format!("{prefix} needs a value")));
                }
                Ok((word, false))
            }
        }
    }

    fn type_filter(&self, at: usize, name: &str) -> Result<Filter> {
        match types::lookup(name) {
            Some(id) => Ok(Filter::OfType(id)),
            None => Err(self.error_kind_at(
                ErrorKind::UnknownType,
                at,
                types::unknown_name_message(name),
            )),
        }
    }

    fn word_atom(&mut self, at: usize) -> Result<Filter> {
        if self.text[at..].starts_with("...") {
            for _ in 0..3 {
                self.chars.next();
            }
            return Ok(Filter::Everything);
        }
        let word = self.bare(true).to_owned();
        if word.is_empty() {
            let c = self.chars.peek().map_or(':', |(_, c)| *c);
            return Err(self.error_at(at, format!("expected a filter, found {c:?}")));
        }
        let next = self.chars.peek().copied();
        if word == "path" && self.text[at + word.len()..].starts_with("~:") {
            self.chars.next();
            self.chars.next();
            let (text, _) = self.value(at, "path~:")?;
            return Ok(Filter::PathContains {
                key: Key::str(&text),
                exact: false,
            });
        }
        if let Some((_, ':')) = next {
            self.chars.next();
            let prefix = format!("{word}:");
            return match word.as_str() {
                "tag" => Ok(Filter::with_tag(&self.value(at, &prefix)?.0)),
                "type" => {
                    let (name, _) = self.value(at, &prefix)?;
                    self.type_filter(at, &name)
                }
                "path" => {
                    let (text, quoted) = self.value(at, &prefix)?;
                    let key = if quoted {
                        Key::str(&text)
                    } else {
                        parse_component(&text)
                    };
                    Ok(Filter::PathContains { key, exact: true })
                }
                "at" => {
                    let (text, _) = self.value(at, &prefix)?;
                    if text.is_empty() {
                        return Err(self.error_at(at, "at: needs a path"));
                    }
                    let path = parse_path(&text).map_err(|e| self.error_at(at, e.message()))?;
                    Ok(Filter::path_in(vec![path]))
                }
                other => Err(self.error_at(
                    at,
                    format!(
                        "unknown prefix {other:?}: the prefixes are tag:, type:, path:, path~: and at:"
                    ),
                )),
            };
        }
        if word == "none" {
            return Ok(Filter::Nothing);
        }
        self.type_filter(at, &word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TypeId;

    fn show(text: &str) -> String {
        format!("{:?}", parse_filter(text).unwrap())
    }

    fn error(text: &str) -> Error {
        parse_filter(text).unwrap_err()
    }

    #[test]
    fn atoms() {
        assert_eq!(show("Param"), "OfType(Param)");
        assert_eq!(show("type:BatchStat"), "OfType(BatchStat)");
        assert_eq!(show("tag:dropout"), "WithTag('dropout')");
        assert_eq!(show("tag:\"with space\""), "WithTag('with space')");
        assert_eq!(show("path:0"), "PathContains(0, exact=True)");
        assert_eq!(show("path:\"0\""), "PathContains('0', exact=True)");
        assert_eq!(show("path:007"), "PathContains('007', exact=True)");
        assert_eq!(
            show("path:attention"),
            "PathContains('attention', exact=True)"
        );
        assert_eq!(show("path~:att"), "PathContains('att', exact=False)");
        assert_eq!(
            show("at:layers/0/kernel"),
            "PathIn(('layers', 0, 'kernel'))"
        );
        assert_eq!(show("..."), "Everything()");
        assert_eq!(show("*"), "Everything()");
        assert_eq!(show("none"), "Nothing()");
        assert_eq!(show("tag:a:b"), "WithTag('a:b')");
        assert_eq!(show("tag:\"q\\\"b\\\\\""), "WithTag('q\"b\\\\')");
    }

    #[test]
    fn precedence_and_grouping() {
        assert_eq!(
            show("~Param & tag:x | BatchStat"),
            "Any(All(Not(OfType(Param)), WithTag('x')), OfType(BatchStat))"
        );
        assert_eq!(
            show("~(Param | BatchStat) & path:0"),
            "All(Not(Any(OfType(Param), OfType(BatchStat))), PathContains(0, exact=True))"
        );
        assert_eq!(show("  ( ( Param ) )  "), "OfType(Param)");
        assert_eq!(show("~~Param"), "Not(Not(OfType(Param)))");
        assert_eq!(
            show("Param&Cache|none"),
            "Any(All(OfType(Param), OfType(Cache)), Nothing())"
        );
        assert!(matches!(parse_filter("...").unwrap(), Filter::Everything));
    }

    #[test]
    fn registered_types_resolve() {
        let id = types::register("FilterParseQuant", TypeId::PARAM).unwrap();
        assert!(matches!(parse_filter("FilterParseQuant").unwrap(), Filter::OfType(t) if t == id));
    }

    #[test]
    fn errors_name_the_column() {
        let e = error("Param & Nope");
        assert_eq!(e.kind(), ErrorKind::UnknownType);
        assert!(e.message().contains("column 9"), "{e}");
        let e = error("(Param | BatchStat");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(
            e.message().contains("column 19") && e.message().contains("column 1"),
            "{e}"
        );
        for (text, column) in [
            ("", 1),
            ("Param &", 8),
            ("Param )", 7),
            ("foo:bar", 1),
            ("tag:", 1),
            ("tag:\"open", 5),
            ("tag:\"a\\n\"", 7),
            ("\"x\"", 1),
            ("Param Cache", 7),
            ("at:a//b", 1),
            ("| Param", 1),
            ("tag:ä & :", 9),
        ] {
            let e = error(text);
            assert!(
                e.message().contains(&format!("column {column}:")),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let deep = format!("{}Param{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(error(&deep).message().contains("nested more than"));
        let tildes = format!("{}Param", "~".repeat(10_000));
        assert!(error(&tildes).message().contains("nested more than"));
        assert_eq!(error(&tildes).kind(), ErrorKind::TooDeep);
        let fine = format!("{}Param{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse_filter(&fine).is_ok());
        let past = format!("({fine})");
        assert_eq!(error(&past).kind(), ErrorKind::TooDeep);
        // `~` makes a level of the filter as well as of the parser.
        let nots = format!("{}Param", "~".repeat(MAX_DEPTH - 1));
        assert_eq!(parse_filter(&nots).unwrap().depth(), MAX_DEPTH);
        let past = format!("~{nots}");
        assert_eq!(error(&past).kind(), ErrorKind::TooDeep);
    }
}
