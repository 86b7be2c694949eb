//! Helpers for access events: keyed hashes of request and response fields, the way
//! Vault's audit log HMACs them (every string value, so a known value can be searched
//! for, and nothing can be read back).

use std::collections::BTreeMap;

/// Keyed hashes of the top-level fields of `data`, each over the field's JSON text.
pub fn hmac_fields(
    data: &serde_json::Map<String, serde_json::Value>,
    hash: impl Fn(&[u8]) -> [u8; 32],
) -> BTreeMap<String, String> {
    data.iter().map(|(k, v)| (k.clone(), hex::encode(hash(v.to_string().as_bytes())))).collect()
}
