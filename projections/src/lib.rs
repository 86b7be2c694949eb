//! The read side: folds ledger events into the state cairn serves reads from (mounts,
//! KV versions, tokens, policies), snapshots of it, and point-in-time rebuilds.
//!
//! Projections are pure folds — `State::apply(&Event)` — and hold nothing the ledger does
//! not: deleting them and replaying the ledger gives the same state.

pub mod audit;
pub mod auth;
pub mod database;
pub mod identity;
pub mod kv;
pub mod lease;
pub mod mount;
pub mod policies;
pub mod policy;
pub mod query;
pub mod replay;
pub mod seal;
pub mod snapshot;
pub mod state;
pub mod token;

pub use state::State;
