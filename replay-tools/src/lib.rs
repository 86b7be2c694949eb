//! cairn's offline tools: they read a ledger directory or an exported bundle and need no
//! server, no unseal keys and no network — only the files and, optionally, public keys.
//! The one exception asks for them: `values` opens the values of a moment with the unseal
//! key shares the user gives.
//!
//! `cairn ledger verify|export|public-key|checkpoint|query|verify-proof` and `cairn replay`
//! are thin wrappers over this crate. The forensic tools (`replay`, `who_can`, `query`)
//! read only events whose commit batch has verified (`read`).

mod ledger_tools;
pub mod progress;
mod proof_tools;
pub mod query;
mod read;
pub mod replay;
pub mod report;
pub mod show;
pub mod time;
pub mod values;
pub mod who_can;

pub use ledger::verify::Verdict;
pub use ledger_tools::{Source, ToolError, VerifyRequest, checkpoint, export, public_keys, read_trusted_keys, verify};
pub use proof_tools::{ProofVerdict, VerifyProofRequest, verify_proof};
