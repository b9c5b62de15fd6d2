//! The core's error type: a kind that the C layer maps to a status code, and
//! a message for people.

use std::fmt;

/// What went wrong, in terms a caller can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A value is out of its domain (a negative dimension, an empty path
    /// component, zero filters, ...).
    InvalidArgument,
    /// A string that must be UTF-8 is not.
    InvalidUtf8,
    /// Nothing is stored at the path, or a metadata entry is missing.
    KeyNotFound,
    /// Something is stored, but of another kind than asked for.
    WrongKind,
    /// A path runs through a leaf, where a nested state was needed.
    PathThroughLeaf,
    /// dtype, shape and byte count disagree.
    ShapeMismatch,
    /// A variable type id that the registry does not know.
    UnknownType,
    /// A type name already registered under another parent.
    TypeConflict,
    /// `split` left leaves that no filter matched.
    NonExhaustive,
    /// An Everything filter stands before a filter that is not Everything.
    FilterOrder,
    /// An index past the end of a sequence.
    IndexOutOfRange,
    /// A caller's filter callback reported a failure.
    Callback,
    /// Writing to memory that was lent read-only.
    ReadOnly,
    /// Memory for a new buffer could not be had.
    OutOfMemory,
    /// A file (a safetensors checkpoint, its index) or an exchanged tensor
    /// (DLPack) is malformed: the message names the problem.
    Format,
    /// The operating system failed a file operation (open, read, write,
    /// rename, ...): the message names the file and the cause.
    Io,
    /// Nesting past [`crate::limits::MAX_DEPTH`]: a path, a state, a filter
    /// or a metadata value deeper than the library takes.
    TooDeep,
}

/// An error of the core: its kind and a message naming the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for building an `Err` of a kind with a formatted message.
macro_rules! bail {
    ($kind:ident, $($arg:tt)+) => {
        return Err($crate::error::Error::new(
            $crate::error::ErrorKind::$kind,
            format!($($arg)+),
        ))
    };
}
pub(crate) use bail;
