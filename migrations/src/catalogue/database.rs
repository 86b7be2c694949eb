//! The `database` secrets engine: connections, roles for dynamic users, static roles.
//!
//! Passwords are sealed (`ledger::Sealed`, key slot 0 of their event) and erased once
//! replaced. A password that cairn is about to set in a database is *staged* first and
//! confirmed once the database took it, so a crash between the two never loses the only
//! copy of a live password: the staged one is still in the ledger and is tried next.

use bincode::{Decode, Encode};
use ledger::Sealed;

/// A connection's settings, as `database/config/<name>` reads them back (no password).
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbConnectionConfig {
    /// "postgresql-database-plugin" or "mysql-database-plugin".
    pub plugin_name: String,
    /// With `{{username}}` and `{{password}}` placeholders; never a literal password.
    pub connection_url: String,
    pub username: String,
    pub allowed_roles: Vec<String>,
    pub root_rotation_statements: Vec<String>,
    pub verify_connection: bool,
    pub max_open_connections: u32,
    pub max_idle_connections: u32,
    /// Seconds; 0 for no limit.
    pub max_connection_lifetime: u64,
    pub username_template: String,
    pub password_policy: String,
}

/// A connection was written. `password: None` keeps the password it had.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbConnectionWritten {
    pub mount: String,
    pub name: String,
    pub config: DbConnectionConfig,
    pub password: Option<Sealed>,
    pub time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbConnectionDeleted {
    pub mount: String,
    pub name: String,
}

/// A new root password, about to be set in the database (`rotate-root`).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbRootPasswordStaged {
    pub mount: String,
    pub name: String,
    pub password: Sealed,
    pub time: u64,
}

/// The database took the staged root password: it is the connection's password now.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbRootRotated {
    pub mount: String,
    pub name: String,
    pub time: u64,
}

/// A role issuing dynamic users (`database/roles/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbRole {
    pub db_name: String,
    /// Seconds; 0 means the mount's (then the server's) default.
    pub default_ttl: u64,
    pub max_ttl: u64,
    pub creation_statements: Vec<String>,
    pub revocation_statements: Vec<String>,
    pub rollback_statements: Vec<String>,
    pub renew_statements: Vec<String>,
    pub credential_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbRoleWritten {
    pub mount: String,
    pub name: String,
    pub role: DbRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbRoleDeleted {
    pub mount: String,
    pub name: String,
}

/// A role whose existing database user gets its password rotated (`static-roles/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbStaticRole {
    pub db_name: String,
    pub username: String,
    /// Seconds between rotations.
    pub rotation_period: u64,
    pub rotation_statements: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbStaticRoleWritten {
    pub mount: String,
    pub name: String,
    pub role: DbStaticRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbStaticRoleDeleted {
    pub mount: String,
    pub name: String,
}

/// A static role's next password, about to be set in the database.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbStaticPasswordStaged {
    pub mount: String,
    pub name: String,
    pub password: Sealed,
    pub time: u64,
}

/// The database took the staged password: `static-creds` answers it from now on.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbStaticPasswordRotated {
    pub mount: String,
    pub name: String,
    pub time: u64,
}

/// Setting the staged password failed; it stays staged and is tried again at `next_attempt`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct DbStaticRotationFailed {
    pub mount: String,
    pub name: String,
    pub attempt: u32,
    /// The database's error, with passwords redacted.
    pub error: String,
    pub next_attempt: u64,
    pub time: u64,
}
