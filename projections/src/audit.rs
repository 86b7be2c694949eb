//! Audit devices by path, with their sealed salts and the seq of their enable event
//! (where their tailer starts).

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::OrdMap;
use migrations::{AuditDeviceEnabled, Envelope};

use crate::kv::SealedValue;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditDevice {
    /// "file/", always with a trailing slash.
    pub path: String,
    pub kind: String,
    pub description: String,
    pub options: BTreeMap<String, String>,
    pub local: bool,
    /// The HMAC key (key slot 0 of the enable event); `None` if it could not be read.
    pub salt: Option<SealedValue>,
    /// Seq of the enable event: the device writes the access events after it.
    pub enabled_seq: u64,
    pub enabled_at: u64,
    /// Declared in the server's configuration: the API may not disable it, and a start
    /// whose configuration no longer declares it disables it.
    pub from_config: bool,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditDevices {
    by_path: OrdMap<Arc<str>, Arc<AuditDevice>>,
}

impl AuditDevices {
    pub fn enabled(&mut self, e: &AuditDeviceEnabled, env: &Envelope) {
        let salt = env.slots.first().map(|slot| SealedValue { sealed: e.salt.clone(), slot: *slot, seq: env.seq });
        let d = AuditDevice {
            path: e.path.clone(),
            kind: e.kind.clone(),
            description: e.description.clone(),
            options: e.options.clone(),
            local: e.local,
            salt,
            enabled_seq: env.seq,
            enabled_at: e.enabled_at,
            from_config: e.from_config,
        };
        self.by_path.insert(Arc::from(e.path.as_str()), Arc::new(d));
    }

    pub fn disabled(&mut self, path: &str) {
        self.by_path.remove(path);
    }

    pub fn get(&self, path: &str) -> Option<&Arc<AuditDevice>> {
        self.by_path.get(path)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<AuditDevice>> {
        self.by_path.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enable_then_disable() {
        let e = AuditDeviceEnabled {
            path: "file/".into(),
            kind: "file".into(),
            description: String::new(),
            options: BTreeMap::new(),
            local: false,
            salt: ledger::Sealed { slot: 0, nonce: [1; 12], ciphertext: vec![1; 48] },
            enabled_at: 5,
            from_config: true,
        };
        let env = Envelope {
            seq: 9,
            time: 5,
            actor: ledger::Actor::system(),
            request_id: [0; 16],
            body: migrations::Body::App(migrations::Event::AuditDeviceEnabled(e.clone())),
            slots: vec![ledger::KeySlot([0; ledger::seal::SLOT_LEN])],
        };
        let mut d = AuditDevices::default();
        d.enabled(&e, &env);
        let dev = d.get("file/").expect("enabled");
        assert_eq!((dev.enabled_seq, dev.salt.as_ref().map(|s| s.seq), dev.from_config), (9, Some(9), true));
        d.disabled("file/");
        assert!(d.is_empty());
    }
}
