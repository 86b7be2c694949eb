//! cairn's HTTP server: the Vault-compatible API, its configuration and listeners.

pub mod audit;
pub mod audit_config;
pub mod audit_file;
pub mod auth;
pub mod auth_token;
pub mod cluster;
pub mod config;
pub mod core;
pub mod duration;
pub mod engines;
pub mod http;
pub mod identity;
pub mod leases;
pub mod listener;
pub mod refusals;
pub mod remote;
pub mod routes;
pub mod seal;
pub mod server;
pub mod sys;
pub mod time;
