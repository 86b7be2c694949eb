//! Auto-unseal: the root key wrapped by an outside key service (Vault's `seal` stanza; only
//! `"transit"` is supported), so the server unseals itself at start and after init.
//!
//! At init the root key is wrapped twice: by the key service (its ciphertext is recorded in
//! a `RootKeyAutoSealed` event, useless without the service) and by the recovery key, which
//! exists only as Shamir recovery shares outside the server (the `Initialized` event's
//! wrapped root key). [`Core::auto_unseal`] opens the first; `sys/unseal` with recovery
//! shares opens the second, so the server can be unsealed while the key service is down
//! (Vault's recovery keys cannot unseal: cairn's documented deviation).

pub mod transit;

use std::sync::Arc;
use std::time::Duration;

use migrations::RootKeyAutoSealed;
use zeroize::Zeroizing;

pub use transit::{TransitError, TransitSeal};

use crate::core::Core;

/// The first wait after a failed auto-unseal; it doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// A configured auto-unseal key service.
#[derive(Debug)]
pub enum AutoSeal {
    Transit(TransitSeal),
}

impl AutoSeal {
    /// The seal type, as `sys/seal-status` shows it.
    pub fn kind(&self) -> &'static str {
        match self {
            AutoSeal::Transit(_) => "transit",
        }
    }

    /// Wraps the root key; the result is recorded in the ledger.
    pub async fn wrap(&self, root_key: &[u8; 32]) -> Result<RootKeyAutoSealed, TransitError> {
        match self {
            AutoSeal::Transit(t) => Ok(RootKeyAutoSealed {
                seal_type: "transit".into(),
                mount_path: t.mount_path().to_owned(),
                key_name: t.key_name().to_owned(),
                ciphertext: t.encrypt(root_key).await?,
            }),
        }
    }

    /// Opens what [`AutoSeal::wrap`] recorded.
    pub async fn unwrap(&self, recorded: &RootKeyAutoSealed) -> Result<Zeroizing<[u8; 32]>, TransitError> {
        match self {
            AutoSeal::Transit(t) => {
                if recorded.seal_type != "transit" {
                    return Err(TransitError::Config(format!(
                        "the root key was sealed by seal \"{}\"; seal migration is not supported",
                        recorded.seal_type
                    )));
                }
                let plain = t.decrypt(&recorded.ciphertext).await?;
                let mut key = Zeroizing::new([0u8; 32]);
                if plain.len() != 32 {
                    return Err(TransitError::BadAnswer {
                        url: format!("{}decrypt/{}", t.mount_path(), t.key_name()),
                        why: "the plaintext is not a 32-byte key".into(),
                    });
                }
                key.copy_from_slice(&plain);
                Ok(key)
            }
        }
    }
}

/// Auto-unseals `core`, retrying with back-off (1 s doubling to 30 s) while the key service
/// fails, until the barrier is unsealed (by this or by recovery shares) or there is nothing
/// to auto-unseal (no seal configured, not initialized). Errors are logged without secrets.
pub async fn auto_unseal_with_retry(core: Arc<Core>) {
    let mut wait = RETRY_FIRST;
    loop {
        if core.unsealed().await.is_some() {
            return;
        }
        match core.auto_unseal().await {
            Ok(true) => {
                tracing::info!("auto-unsealed through the key service");
                return;
            }
            // A cluster node that is not initialized yet gets its ledger by replication
            // (after joining): wait for it.
            Ok(false) if core.cluster().is_some() && !core.is_initialized() && core.auto_seal_kind().is_some() => {
                tokio::time::sleep(RETRY_FIRST).await;
                continue;
            }
            Ok(false) => return,
            Err(e) => {
                if core.unsealed().await.is_some() {
                    return;
                }
                tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "auto-unseal failed; staying sealed (recovery shares can unseal with sys/unseal)");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}
