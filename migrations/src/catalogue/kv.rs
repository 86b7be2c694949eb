//! Key/value secrets (KV v2 and v1) and cubbyholes. Values are sealed (`ledger::Sealed`,
//! key slot 0 of the event); metadata is not secret and is stored as written.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use ledger::Sealed;

/// A new version of a KV v2 secret. `value` seals the JSON object of the data.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KvWritten {
    pub mount: String,
    pub path: String,
    pub version: u64,
    pub value: Sealed,
    /// Creation time (ns since epoch), as the writer answered it.
    pub created: u64,
    /// Absolute deletion time from `delete_version_after` (ns since epoch), 0 for none.
    pub delete_at: u64,
}

/// Soft delete of versions (a read then answers 404 with metadata).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KvVersionsDeleted {
    pub mount: String,
    pub path: String,
    pub versions: Vec<u64>,
    /// Deletion time (ns since epoch).
    pub time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KvVersionsUndeleted {
    pub mount: String,
    pub path: String,
    pub versions: Vec<u64>,
}

/// The metadata of one KV v2 secret (`secret/metadata/<p>`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KvMetadata {
    pub max_versions: u64,
    pub cas_required: bool,
    /// Seconds; 0 for never.
    pub delete_version_after: u64,
    pub custom_metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KvMetadataWritten {
    pub mount: String,
    pub path: String,
    pub metadata: KvMetadata,
    /// Time of the write (ns since epoch).
    pub time: u64,
}

/// All versions and the metadata of a secret are gone (their payloads are erased by
/// PayloadErased events of the ledger).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KvMetadataDeleted {
    pub mount: String,
    pub path: String,
}

/// Mount-wide KV v2 settings (`secret/config`).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KvConfigWritten {
    pub mount: String,
    pub max_versions: u64,
    pub cas_required: bool,
    pub delete_version_after: u64,
}

/// A KV v1 (or cubbyhole) write. For a cubbyhole, `mount` is "cubbyhole/" followed by the
/// owning token's accessor, so every token has its own store.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KvV1Written {
    pub mount: String,
    pub path: String,
    pub value: Sealed,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct KvV1Deleted {
    pub mount: String,
    pub path: String,
}
