//! The one error type of the core. Each variant carries the bad value, and `py` maps each
//! to a built-in Python exception in exactly one place.

use std::fmt;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// Reading or writing `path` failed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The corpus is not valid UTF-8; `offset` is the byte offset of the first bad byte
    /// from the start of `path` (or of the text when there is no path).
    InvalidUtf8 { path: Option<PathBuf>, offset: u64 },
    /// `vocab_size` cannot hold the 256 byte tokens plus the special tokens.
    VocabTooSmall { vocab_size: usize, minimum: usize },
    /// The same special token was given twice.
    DuplicateSpecialToken(String),
    /// A special token is the empty string.
    EmptySpecialToken,
    /// A token id that is not in the vocabulary.
    UnknownTokenId { id: u32, vocab_size: usize },
    /// The pretokenization pattern does not compile (or fails while matching).
    BadPattern { pattern: String, message: String },
    /// A vocabulary or merge list that does not describe a valid BPE model.
    BadModel(String),
    /// An allocation sized by the input failed.
    OutOfMemory { bytes: usize },
    /// The input exceeds a fixed limit of the core's data structures (not a failed
    /// allocation): `what` says which limit.
    TooLarge { what: &'static str, limit: u64 },
    /// A thread pool of `threads` threads could not be started.
    ThreadPool { threads: usize, message: String },
    /// The caller's interruption check (Ctrl-C, or an exception raised by a progress
    /// callback) asked the run to stop.
    Interrupted,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {}", path.display(), source),
            Error::InvalidUtf8 {
                path: Some(path),
                offset,
            } => write!(
                f,
                "{} is not valid UTF-8: invalid byte at offset {}",
                path.display(),
                offset
            ),
            Error::InvalidUtf8 { path: None, offset } => {
                write!(
                    f,
                    "text is not valid UTF-8: invalid byte at offset {offset}"
                )
            }
            Error::VocabTooSmall {
                vocab_size,
                minimum,
            } => write!(
                f,
                "vocab_size ({vocab_size}) must be at least {minimum} \
                 (256 byte tokens + the special tokens)"
            ),
            Error::DuplicateSpecialToken(token) => {
                write!(f, "special token {token:?} is given more than once")
            }
            Error::EmptySpecialToken => write!(f, "special tokens must not be empty strings"),
            Error::UnknownTokenId { id, vocab_size } => write!(
                f,
                "token id {id} is not in the vocabulary (size {vocab_size})"
            ),
            Error::BadPattern { pattern, message } => {
                write!(f, "bad pretokenization pattern {pattern:?}: {message}")
            }
            Error::BadModel(message) => write!(f, "invalid BPE model: {message}"),
            Error::OutOfMemory { bytes } => {
                write!(f, "out of memory: could not allocate {bytes} bytes")
            }
            Error::TooLarge { what, limit } => {
                write!(f, "input too large: {what} (the limit is {limit})")
            }
            Error::ThreadPool { threads, message } => {
                write!(f, "cannot start a pool of {threads} threads: {message}")
            }
            Error::Interrupted => write!(f, "interrupted"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Reserve room for `additional` more items, turning an allocation failure into
/// [`Error::OutOfMemory`] instead of an abort.
pub fn try_reserve<T>(v: &mut Vec<T>, additional: usize) -> Result<()> {
    v.try_reserve(additional).map_err(|_| Error::OutOfMemory {
        bytes: additional.saturating_mul(std::mem::size_of::<T>()),
    })
}

/// `vec![value; len]`, with a failed allocation as [`Error::OutOfMemory`].
pub fn try_filled<T: Clone>(len: usize, value: T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    try_reserve(&mut v, len)?;
    v.resize(len, value);
    Ok(v)
}

/// Reserve room for `additional` more entries in a hash map, as [`try_reserve`].
pub fn try_reserve_map<K: Eq + std::hash::Hash, V, S: std::hash::BuildHasher>(
    map: &mut std::collections::HashMap<K, V, S>,
    additional: usize,
) -> Result<()> {
    map.try_reserve(additional).map_err(|_| Error::OutOfMemory {
        bytes: additional.saturating_mul(std::mem::size_of::<(K, V)>() + 1),
    })
}
