//! ACL policies. Policy text is not secret and is stored as written.

use bincode::{Decode, Encode};

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct PolicyWritten {
    pub name: String,
    pub text: String,
    /// Time of the write (ns since epoch), shown as `modified`.
    pub time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct PolicyDeleted {
    pub name: String,
}
