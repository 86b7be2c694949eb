//! Event families, one module each; the names match the projection and command modules.

pub mod access;
pub mod audit;
pub mod auth;
pub mod database;
pub mod identity;
pub mod kv;
pub mod lease;
pub mod mount;
pub mod policy;
pub mod seal;
pub mod token;
