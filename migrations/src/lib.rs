//! The event catalogue: every kind of event cairn writes to its ledger, declared once,
//! with its kind number, its version, and how old versions are read.
//!
//! The ledger reserves kinds below 0x0100 for itself (genesis, key rotation, payload
//! erasure) and treats every other body as opaque bytes. Here each family gets a block of
//! kind numbers, each event a struct encoded with the ledger's frozen bincode
//! configuration. This crate sits below both the write side (`commands`) and the read side
//! (`projections`), so neither can invent a kind the other does not know.
//!
//! Rules (FORMAT.md §6): kind numbers are never reused, fields are never reordered or
//! removed within a version, and a changed struct gets a new version whose decoder stays
//! here forever with an upcaster to the current shape.

pub mod catalogue;

use ledger::envelope::Event as LedgerEvent;
use ledger::system::SystemEvent;

pub use catalogue::access::*;
pub use catalogue::audit::*;
pub use catalogue::auth::*;
pub use catalogue::database::*;
pub use catalogue::identity::*;
pub use catalogue::kv::*;
pub use catalogue::lease::*;
pub use catalogue::mount::*;
pub use catalogue::policy::*;
pub use catalogue::seal::*;
pub use catalogue::token::*;

/// Why an event body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("unknown event kind {kind:#06x} version {version}")]
    Unknown { kind: u16, version: u16 },
    #[error("event kind {kind:#06x}: {source}")]
    Body { kind: u16, source: ledger::body::BodyError },
    #[error("system event: {0}")]
    System(ledger::codec::DecodeError),
}

macro_rules! catalogue {
    ($( $kind:literal => $variant:ident($ty:ty) $(@ $current:literal { $( $old:literal => $old_ty:ty ),* })? ),* $(,)?) => {
        /// Every application event cairn writes. Serialized (`cairn ledger show`) as
        /// `{"<name>": {fields}}`: bodies hold no secret in clear (sealed or keyed-hashed).
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        pub enum Event {
            $( $variant($ty), )*
        }

        /// `(kind, version written)` of every catalogue event: what a projection snapshot
        /// records, so a build whose catalogue differs does not trust it.
        pub const CATALOGUE: &[(u16, u16)] = &[ $( ($kind, current_version!($($current)?)), )* ];

        impl Event {
            /// The ledger kind number of this event.
            pub fn kind(&self) -> u16 {
                match self { $( Event::$variant(_) => $kind, )* }
            }

            /// A short stable name, for logs and query output.
            pub fn name(&self) -> &'static str {
                match self { $( Event::$variant(_) => stringify!($variant), )* }
            }

            /// The version this build writes for this event's kind.
            pub fn version(&self) -> u16 {
                match self { $( Event::$variant(_) => current_version!($($current)?), )* }
            }

            /// `(kind, version, body)` as the ledger stores them.
            pub fn encode(&self) -> Result<(u16, u16, Vec<u8>), ledger::body::BodyError> {
                let body = match self { $( Event::$variant(e) => ledger::body::encode(e)?, )* };
                Ok((self.kind(), self.version(), body))
            }

            /// Reads a stored body of `kind` at `version`, upcasting older versions to the
            /// current shape (each old shape converts with `From`).
            pub fn decode(kind: u16, version: u16, body: &[u8]) -> Result<Event, CatalogueError> {
                let err = |source| CatalogueError::Body { kind, source };
                $(
                    if kind == $kind {
                        if version == current_version!($($current)?) {
                            return ledger::body::decode::<$ty>(body).map(Event::$variant).map_err(err);
                        }
                        $($(
                            if version == $old {
                                return ledger::body::decode::<$old_ty>(body)
                                    .map(|old| Event::$variant(<$ty>::from(old)))
                                    .map_err(err);
                            }
                        )*)?
                        return Err(CatalogueError::Unknown { kind, version });
                    }
                )*
                Err(CatalogueError::Unknown { kind, version })
            }
        }
    };
}

/// The version written for a kind: 1 unless the catalogue names a later one.
macro_rules! current_version {
    () => {
        1
    };
    ($v:literal) => {
        $v
    };
}

catalogue! {
    0x0100 => Initialized(Initialized),
    0x0101 => KeyringRotated(KeyringRotated),
    0x0102 => Unsealed(Unsealed),
    0x0103 => SealedByOperator(SealedByOperator),
    0x0104 => RootKeyAutoSealed(RootKeyAutoSealed),
    0x0200 => MountEnabled(MountEnabled),
    0x0201 => MountTuned(MountTuned),
    0x0202 => MountDisabled(MountDisabled),
    0x0300 => PolicyWritten(PolicyWritten),
    0x0301 => PolicyDeleted(PolicyDeleted),
    0x0400 => TokenCreated(TokenCreated) @2 { 1 => TokenCreatedV1 },
    0x0401 => TokenRenewed(TokenRenewed),
    0x0402 => TokensRevoked(TokensRevoked),
    0x0403 => TokenRoleWritten(TokenRoleWritten),
    0x0404 => TokenRoleDeleted(TokenRoleDeleted),
    0x0500 => KvWritten(KvWritten),
    0x0501 => KvVersionsDeleted(KvVersionsDeleted),
    0x0502 => KvVersionsUndeleted(KvVersionsUndeleted),
    0x0503 => KvMetadataWritten(KvMetadataWritten),
    0x0504 => KvMetadataDeleted(KvMetadataDeleted),
    0x0505 => KvConfigWritten(KvConfigWritten),
    0x0506 => KvV1Written(KvV1Written),
    0x0507 => KvV1Deleted(KvV1Deleted),
    0x0600 => Access(Access),
    0x0601 => RefusalsCounted(RefusalsCounted),
    0x0700 => LeaseIssued(LeaseIssued),
    0x0701 => LeaseRenewed(LeaseRenewed),
    0x0702 => LeaseRevoked(LeaseRevoked),
    0x0703 => LeaseRevocationFailed(LeaseRevocationFailed),
    0x0800 => DbConnectionWritten(DbConnectionWritten),
    0x0801 => DbConnectionDeleted(DbConnectionDeleted),
    0x0802 => DbRootPasswordStaged(DbRootPasswordStaged),
    0x0803 => DbRootRotated(DbRootRotated),
    0x0804 => DbRoleWritten(DbRoleWritten),
    0x0805 => DbRoleDeleted(DbRoleDeleted),
    0x0806 => DbStaticRoleWritten(DbStaticRoleWritten),
    0x0807 => DbStaticRoleDeleted(DbStaticRoleDeleted),
    0x0808 => DbStaticPasswordStaged(DbStaticPasswordStaged),
    0x0809 => DbStaticPasswordRotated(DbStaticPasswordRotated),
    0x080a => DbStaticRotationFailed(DbStaticRotationFailed),
    0x0900 => AppRoleWritten(AppRoleWritten),
    0x0901 => AppRoleDeleted(AppRoleDeleted),
    0x0902 => SecretIdIssued(SecretIdIssued),
    0x0903 => SecretIdUsed(SecretIdUsed),
    0x0904 => SecretIdsDestroyed(SecretIdsDestroyed),
    0x0910 => UserpassUserWritten(UserpassUserWritten),
    0x0911 => UserpassUserDeleted(UserpassUserDeleted),
    0x0920 => JwtConfigWritten(JwtConfigWritten),
    0x0921 => JwtRoleWritten(JwtRoleWritten),
    0x0922 => JwtRoleDeleted(JwtRoleDeleted),
    0x0930 => KubernetesConfigWritten(KubernetesConfigWritten),
    0x0931 => KubernetesRoleWritten(KubernetesRoleWritten),
    0x0932 => KubernetesRoleDeleted(KubernetesRoleDeleted),
    0x0a00 => EntityWritten(EntityWritten),
    0x0a01 => EntityDeleted(EntityDeleted),
    0x0a02 => EntityAliasWritten(EntityAliasWritten),
    0x0a03 => EntityAliasDeleted(EntityAliasDeleted),
    0x0a04 => GroupWritten(GroupWritten),
    0x0a05 => GroupDeleted(GroupDeleted),
    0x0a06 => GroupAliasWritten(GroupAliasWritten),
    0x0a07 => GroupAliasDeleted(GroupAliasDeleted),
    0x0a08 => ExternalGroupsSynced(ExternalGroupsSynced),
    0x0b00 => AuditDeviceEnabled(AuditDeviceEnabled) @2 { 1 => AuditDeviceEnabledV1 },
    0x0b01 => AuditDeviceDisabled(AuditDeviceDisabled),
}

/// An event as the read side sees it: a catalogue event or one of the ledger's own.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    App(Event),
    System(SystemEvent),
}

/// A decoded ledger event with its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub seq: u64,
    /// Commit time, nanoseconds since the Unix epoch.
    pub time: u64,
    pub actor: ledger::Actor,
    pub request_id: [u8; 16],
    pub body: Body,
    /// The key slots the event owns (to open its sealed payloads).
    pub slots: Vec<ledger::KeySlot>,
}

impl Envelope {
    /// Decodes a stored event.
    pub fn decode(ev: &LedgerEvent, slots: Vec<ledger::KeySlot>) -> Result<Envelope, CatalogueError> {
        let body = if ev.is_system() {
            match SystemEvent::decode(ev.kind, ev.kind_version, &ev.body).map_err(CatalogueError::System)? {
                Some(s) => Body::System(s),
                None => return Err(CatalogueError::Unknown { kind: ev.kind, version: ev.kind_version }),
            }
        } else {
            Body::App(Event::decode(ev.kind, ev.kind_version, &ev.body)?)
        };
        Ok(Envelope { seq: ev.seq, time: ev.time, actor: ev.actor.clone(), request_id: ev.request_id, body, slots })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_unknown_kinds_are_refused() {
        let e = Event::PolicyWritten(PolicyWritten { name: "app".into(), text: "path \"x\" {}".into(), time: 5 });
        let (kind, version, body) = e.encode().expect("encode");
        assert_eq!((kind, version), (0x0300, 1));
        assert_eq!(Event::decode(kind, version, &body).expect("decode"), e);
        assert!(matches!(Event::decode(kind, 2, &body), Err(CatalogueError::Unknown { .. })));
        assert!(matches!(Event::decode(0x7777, 1, &body), Err(CatalogueError::Unknown { .. })));
        let mut longer = body.clone();
        longer.push(0);
        assert!(Event::decode(kind, version, &longer).is_err());
    }

    #[test]
    fn a_version_1_token_is_read_as_the_current_shape() {
        let v1 = TokenCreatedV1 {
            id_hash: [7; 32],
            accessor: "acc".into(),
            parent: None,
            policies: vec!["default".into()],
            meta: Default::default(),
            display_name: "token".into(),
            path: "auth/token/create".into(),
            num_uses: 0,
            ttl: 60,
            explicit_max_ttl: 0,
            period: 0,
            renewable: true,
            role: String::new(),
            entity_id: String::new(),
            issue_time: 1,
            expire_time: 2,
            from_init: false,
        };
        let body = ledger::body::encode(&v1).expect("encode");
        let Event::TokenCreated(t) = Event::decode(0x0400, 1, &body).expect("decode v1") else {
            panic!("not a TokenCreated")
        };
        assert_eq!((t.accessor.as_str(), t.ttl, t.bound_cidrs.len()), ("acc", 60, 0));
        let (kind, version, current) = Event::TokenCreated(t.clone()).encode().expect("encode");
        assert_eq!((kind, version), (0x0400, 2));
        assert_eq!(Event::decode(kind, version, &current).expect("decode v2"), Event::TokenCreated(t));
        assert!(Event::decode(0x0400, 3, &current).is_err());
    }

    #[test]
    fn a_version_1_audit_device_was_enabled_through_the_api() {
        let v1 = AuditDeviceEnabledV1 {
            path: "file/".into(),
            kind: "file".into(),
            description: String::new(),
            options: [("file_path".to_string(), "/var/log/cairn/audit.log".to_string())].into_iter().collect(),
            local: false,
            salt: ledger::Sealed { slot: 0, nonce: [1; 12], ciphertext: vec![2; 48] },
            enabled_at: 7,
        };
        let body = ledger::body::encode(&v1).expect("encode");
        let Event::AuditDeviceEnabled(d) = Event::decode(0x0b00, 1, &body).expect("decode v1") else {
            panic!("not an AuditDeviceEnabled")
        };
        assert_eq!((d.path.as_str(), d.enabled_at, d.from_config), ("file/", 7, false));
        let (kind, version, current) = Event::AuditDeviceEnabled(d.clone()).encode().expect("encode");
        assert_eq!((kind, version), (0x0b00, 2));
        assert_ne!(current, body, "version 2 has one more field");
        assert_eq!(Event::decode(kind, version, &current).expect("decode v2"), Event::AuditDeviceEnabled(d));
    }
}
