//! Identity: entities (one per workload or person), their aliases (one per auth method
//! that knows them), and groups. Logins create entities and aliases; their policies add to
//! the token's own.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};

#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct Entity {
    /// A UUID.
    pub id: String,
    pub name: String,
    pub policies: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub disabled: bool,
}

/// An entity was created or changed (the whole entity as it is now).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct EntityWritten {
    pub entity: Entity,
    pub time: u64,
}

/// An entity and its aliases.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct EntityDeleted {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct EntityAlias {
    pub id: String,
    /// The entity it belongs to.
    pub canonical_id: String,
    pub mount_accessor: String,
    /// The name the auth method knows the caller by (username, role id, `sub`, uid, …).
    pub name: String,
    /// Set by the auth method at login.
    pub metadata: BTreeMap<String, String>,
    /// Set by operators.
    pub custom_metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct EntityAliasWritten {
    pub alias: EntityAlias,
    pub time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct EntityAliasDeleted {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub id: String,
    pub name: String,
    /// "internal" (members listed here) or "external" (members from logins' group claims).
    pub kind: String,
    pub policies: Vec<String>,
    pub member_entity_ids: Vec<String>,
    pub member_group_ids: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct GroupWritten {
    pub group: Group,
    pub time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct GroupDeleted {
    pub id: String,
}

/// Maps a group name an auth method reports (a JWT `groups` claim) to an external group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct GroupAlias {
    pub id: String,
    pub name: String,
    pub mount_accessor: String,
    pub canonical_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct GroupAliasWritten {
    pub alias: GroupAlias,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct GroupAliasDeleted {
    pub id: String,
}

/// A login reported the entity's external groups for one auth mount: membership of
/// those groups through that mount is exactly this list from now on.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct ExternalGroupsSynced {
    pub entity_id: String,
    pub mount_accessor: String,
    pub group_ids: Vec<String>,
}
