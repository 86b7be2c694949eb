//! Expected refusals: a request that breaks a rule changes nothing (except its own access
//! event) and gets a 4xx answer in Vault's words.

/// A refused request. Each variant's doc says the HTTP status it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 400, with Vault's message.
    #[error("{0}")]
    Invalid(String),
    /// 403 `permission denied` (missing, unknown, expired or used-up token).
    #[error("permission denied")]
    PermissionDenied,
    /// 404 with an empty error list.
    #[error("not found")]
    NotFound,
    /// 500: something that should not happen (randomness or sealing failed).
    #[error("{0}")]
    Internal(String),
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Invalid(_) => 400,
            Rejection::PermissionDenied => 403,
            Rejection::NotFound => 404,
            Rejection::Internal(_) => 500,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Rejection {
        Rejection::Invalid(msg.into())
    }
}
