//! cairn's HTTP server: the Vault-compatible API, its configuration and listeners.

pub mod config;
pub mod duration;
pub mod listener;
