//! cairn's offline tools: they read a ledger directory or an exported bundle and need no
//! server, no unseal keys and no network — only the files and, optionally, public keys.
//!
//! `cairn ledger verify|export|public-key|checkpoint` are thin wrappers over this crate.

mod ledger_tools;
pub mod progress;

pub use ledger_tools::{Source, ToolError, VerifyRequest, checkpoint, export, public_keys, read_trusted_keys, verify};
