//! The ledger's error type. Every variant is a value a caller can act on; none carries a
//! secret (events are never quoted, only their seq).

use std::io;
use std::path::PathBuf;

use crate::keys::KeyId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed; the batch it belonged to was not acknowledged.
    #[error("ledger I/O error during {op}: {detail}")]
    Io { op: &'static str, kind: io::ErrorKind, detail: String },
    /// The disk is full. The batch was rolled back; writes may succeed once space is freed.
    #[error("ledger storage is full")]
    Full,
    /// The ledger on disk breaks its own rules somewhere other than a torn tail.
    #[error("ledger is corrupt at seq {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
    /// The writer stopped after an error it cannot recover from in place (a failed
    /// `fdatasync`); reopening the ledger runs recovery.
    #[error("ledger writer failed and refuses writes until reopened: {0}")]
    Failed(String),
    #[error("ledger is closed")]
    Closed,
    /// The caller submitted something the format cannot hold.
    #[error("invalid ledger request: {0}")]
    Invalid(String),
    #[error("no ledger at {}", .0.display())]
    NotFound(PathBuf),
    #[error("a ledger already exists at {}", .0.display())]
    AlreadyExists(PathBuf),
    /// The key given to open a ledger is not one of its active checkpoint keys; `expected`
    /// is the most recently registered active key.
    #[error("the signing key is not an active key of the ledger (its current key is {expected})")]
    WrongKey { expected: KeyId },
    #[error("ledger index: {0}")]
    Index(String),
    #[error("operating system randomness unavailable")]
    Randomness,
}

impl Error {
    pub(crate) fn io(op: &'static str, e: &io::Error) -> Error {
        if e.raw_os_error() == Some(28) || e.kind() == io::ErrorKind::StorageFull {
            return Error::Full;
        }
        Error::Io { op, kind: e.kind(), detail: e.to_string() }
    }
}

impl From<crate::index::IndexError> for Error {
    fn from(e: crate::index::IndexError) -> Self {
        Error::Index(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
