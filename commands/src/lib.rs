//! The write side: requests, their validation against current state, the events they
//! emit, and the sequencer that appends them to the ledger.
//!
//! Rules are pure functions — [`decide`] takes the state, a request and an [`Env`]
//! (clock, randomness, sealing, keyed hashing) and returns events, erasures and a reply —
//! so every rule is testable given/when/then without disk or network. Only the
//! [`sequencer`] does I/O.

pub mod access;
pub mod audit;
mod auth;
pub mod cidr;
mod database;
mod decide;
pub mod duration;
mod env;
mod identity;
mod ids;
mod kv;
mod lease;
mod login;
mod mount;
mod policy;
mod rejection;
mod request;
pub mod sealing;
pub mod sequencer;
mod token;
mod wrapping;

pub use auth::{SECRET_ID_DOMAIN, secret_id_hash};
pub use decide::{Drafted, Effect, Outcome, decide};
pub use env::Env;
pub use ids::{new_accessor, new_token_id, new_uuid};
pub use rejection::Rejection;
pub use request::{
    AuthCommand, Caller, Command, DbCommand, IdentityCommand, KvMetadataUpdate, Login, LoginProof, Reply, Request,
    Secret, TokenParams, VerifiedLogin,
};
pub use wrapping::{RESPONSE_PATH, WRAPPING_POLICY};
