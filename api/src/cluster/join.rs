//! Joining a cluster, as Vault's Raft join does it: the new node learns from a member what
//! its seal needs, and the join completes only once the node is unsealed with the
//! cluster's keys (or its auto-unseal key service opens the cluster's root key).
//!
//! 1. `sys/storage/raft/join` (or `retry_join`) on the new node: it asks a member's API for
//!    the cluster's seal material (`POST sys/storage/raft/bootstrap/challenge`, Vault's
//!    path, answered without a token): the Shamir configuration and the root key wrapped
//!    under the unseal key, and the auto-unseal ciphertext if there is one. None of it opens
//!    without the unseal key or the key service.
//! 2. `sys/unseal` on the new node (or its auto-unseal): the root key opens, which proves
//!    the operator holds the cluster's keys; the node derives the cluster's TLS credentials
//!    from it ([`CLUSTER_TLS_LABEL`]) and asks the leader, over the cluster listener's mutual
//!    TLS, to add it. A member accepts only a node with those credentials.
//! 3. The ledger arrives by replication, and the node finishes unsealing from it.

use std::time::Duration;

use base64::Engine;
use migrations::RootKeyAutoSealed;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What the cluster's TLS secret is derived under, from the root key.
pub const CLUSTER_TLS_LABEL: &str = "cluster-tls";

/// The cluster's seal material, as a member hands it to a joining node.
#[derive(Debug, Clone)]
pub struct JoinMaterial {
    /// The member's API address that answered (where the join is asked again at unseal).
    pub leader_api_addr: String,
    pub secret_shares: u8,
    pub secret_threshold: u8,
    /// The root key, wrapped under the unseal key.
    pub wrapped_root_key: Vec<u8>,
    /// The root key, wrapped by the auto-unseal key service.
    pub auto_sealed: Option<RootKeyAutoSealed>,
    /// The CA certificates (PEM) that member's API was checked against; empty for the
    /// platform's roots.
    pub leader_ca_cert: String,
}

/// `seal_config` of the challenge answer (Vault's field names).
#[derive(Serialize, Deserialize)]
struct SealConfig {
    #[serde(rename = "type")]
    kind: String,
    secret_shares: u8,
    secret_threshold: u8,
}

/// The wire form of the answer to `sys/storage/raft/bootstrap/challenge`.
#[derive(Serialize, Deserialize)]
struct Challenge {
    seal_config: SealConfig,
    /// The wrapped root key, base64.
    challenge: String,
    #[serde(default)]
    auto_sealed: Option<RootKeyAutoSealed>,
}

/// The answer a member gives, from its projected seal state; `None` before init.
pub fn challenge(seal: &projections::seal::SealState) -> Option<serde_json::Value> {
    let init = seal.init.as_ref()?;
    let answer = Challenge {
        seal_config: SealConfig {
            kind: if seal.auto_sealed.is_some() { "transit" } else { "shamir" }.into(),
            secret_shares: init.secret_shares,
            secret_threshold: init.secret_threshold,
        },
        challenge: base64::engine::general_purpose::STANDARD.encode(&init.wrapped_root_key),
        auto_sealed: seal.auto_sealed.clone(),
    };
    serde_json::to_value(answer).ok()
}

/// Asks the member at `leader_api_addr` for the cluster's seal material; `http` checks its
/// TLS certificate against `ca_pem` if given (kept for the rest of the join).
pub async fn fetch(
    http: &reqwest::Client,
    leader_api_addr: &str,
    node_id: &str,
    ca_pem: &str,
) -> Result<JoinMaterial, String> {
    let base = leader_api_addr.trim_end_matches('/');
    let url = format!("{base}/v1/sys/storage/raft/bootstrap/challenge");
    let r = http
        .post(&url)
        .json(&json!({ "server_id": node_id }))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url}: status {status}: {}", String::from_utf8_lossy(&body)));
    }
    let c: Challenge = serde_json::from_slice(&body).map_err(|e| format!("{url}: unreadable answer: {e}"))?;
    let wrapped_root_key = base64::engine::general_purpose::STANDARD
        .decode(c.challenge.as_bytes())
        .map_err(|e| format!("{url}: unreadable challenge: {e}"))?;
    Ok(JoinMaterial {
        leader_api_addr: base.to_owned(),
        secret_shares: c.seal_config.secret_shares,
        secret_threshold: c.seal_config.secret_threshold,
        wrapped_root_key,
        auto_sealed: c.auto_sealed,
        leader_ca_cert: ca_pem.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn initialized() -> migrations::Initialized {
        migrations::Initialized {
            secret_shares: 5,
            secret_threshold: 3,
            wrapped_root_key: vec![9; 60],
            keyring_term: 1,
            wrapped_keyring_key: vec![1; 60],
            wrapped_signing_key: vec![2; 60],
            wrapped_hmac_key: vec![3; 60],
            cluster_id: "c".into(),
        }
    }

    /// The answer carries what unseals the root key, and nothing wrapped under the root
    /// key itself (the keyring, signing and HMAC keys arrive by replication, after the join).
    #[test]
    fn the_challenge_carries_the_seal_material_only() {
        let mut seal = projections::seal::SealState::default();
        assert!(challenge(&seal).is_none(), "no material before init");
        seal.init = Some(initialized());
        let answer = challenge(&seal).expect("initialized");
        let text = answer.to_string();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        for other in [[1u8; 60], [2; 60], [3; 60]] {
            assert!(!text.contains(&b64(&other)), "{text}");
        }
        let parsed: Challenge = serde_json::from_value(answer).expect("its own shape");
        assert_eq!((parsed.seal_config.kind.as_str(), parsed.seal_config.secret_threshold), ("shamir", 3));
        assert_eq!(parsed.challenge, b64(&[9; 60]));
        assert!(parsed.auto_sealed.is_none());
    }
}
