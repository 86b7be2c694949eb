//! cairn's ledger: a hash-chained, signed, append-only event log.
//!
//! What it guarantees:
//! - **Order.** Events get gap-free seqs from 1; each records the hash of the one before.
//! - **Durability.** [`Ledger::append`] returns only after the event's commit batch is on
//!   disk (`fdatasync`); a crash loses nothing acknowledged (see `writer.rs`, `recovery.rs`).
//! - **Verifiability.** Every batch ends in a checkpoint signed with ed25519 over the chain
//!   head and the RFC 9162 Merkle root of all event hashes so far. [`verify`] checks a ledger
//!   or an exported bundle with nothing but public keys.
//! - **Erasure without rewriting history.** Secrets in event bodies are sealed under
//!   per-payload data keys kept outside the hashed bytes ([`seal`]); erasing a key makes the
//!   payload unrecoverable while every hash still verifies.
//!
//! The ledger knows nothing about secrets engines: event bodies are opaque bytes, except
//! for its own kinds in [`system`]. The byte-level format is specified in `FORMAT.md`.

pub mod body;
pub mod bundle;
pub mod chain;
pub mod checkpoint;
pub mod codec;
pub mod envelope;
pub mod error;
pub mod frame;
pub mod fs;
pub mod hash;
pub mod index;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod proof;
mod recovery;
pub mod replica;
pub mod seal;
pub mod segments;
mod store;
pub mod system;
pub mod verify;
pub mod walk;
mod writer;

pub use chain::{ChainState, KeyRecord, Violation};
pub use checkpoint::{Checkpoint, LedgerId, SavedCheckpoint};
pub use envelope::{Actor, Event, EventDraft, FIRST_APPLICATION_KIND};
pub use error::{Error, Result};
pub use hash::Hash;
pub use keys::{KeyId, LedgerKey, PublicKey};
pub use replica::{Applied, Prepared};
pub use seal::{KeySlot, KeyedHasher, Keyring, Sealed};
pub use store::{Clock, Durable, Entry, Events, Ledger, Options, Receipt, StoredEvent, system_clock};
