//! `State`: everything the server answers reads from, folded from ledger events.
//!
//! Cloning a `State` is cheap (persistent maps), so the sequencer works on a copy while
//! readers keep the last published one.

use migrations::{Body, Envelope, Event};

use crate::audit::AuditDevices;
use crate::auth::AuthMethods;
use crate::database::Databases;
use crate::identity::Identity;
use crate::kv::KvStore;
use crate::lease::Leases;
use crate::mount::Mounts;
use crate::policies::Policies;
use crate::seal::SealState;
use crate::token::Tokens;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Seq of the last event folded in.
    pub last_seq: u64,
    pub seal: SealState,
    pub mounts: Mounts,
    pub policies: Policies,
    pub tokens: Tokens,
    pub kv: KvStore,
    pub leases: Leases,
    pub databases: Databases,
    pub auth: AuthMethods,
    pub identity: Identity,
    pub audit: AuditDevices,
}

impl State {
    /// Folds one event into the state. Pure: the same events in the same order always
    /// give the same state.
    pub fn apply(&mut self, env: &Envelope) {
        self.last_seq = env.seq;
        match &env.body {
            Body::System(ledger::system::SystemEvent::PayloadErased { target, .. }) => self.kv.erased(*target),
            Body::System(_) => {}
            Body::App(event) => self.apply_event(env, event),
        }
    }

    fn apply_event(&mut self, env: &Envelope, event: &Event) {
        match event {
            Event::Initialized(e) => self.seal.initialized(e),
            Event::KeyringRotated(e) => self.seal.keyring_rotated(e, env.time),
            Event::RootKeyAutoSealed(e) => self.seal.auto_sealed = Some(e.clone()),
            Event::Unsealed(_) | Event::SealedByOperator(_) => {}
            Event::MountEnabled(e) => self.mounts.enabled(e, env.time),
            Event::MountTuned(e) => self.mounts.tuned(e),
            Event::MountDisabled(e) => {
                if let Some(m) = self.mounts.disabled(&e.uuid) {
                    self.kv.drop_mount(&m.uuid);
                    self.databases.drop_mount(&m.uuid);
                    self.auth.drop_mount(&m.uuid);
                }
            }
            Event::PolicyWritten(e) => self.policies.written(e),
            Event::PolicyDeleted(e) => self.policies.deleted(&e.name),
            Event::TokenCreated(e) => self.tokens.created(e),
            Event::TokenRenewed(e) => self.tokens.renewed(e),
            Event::TokensRevoked(e) => {
                for accessor in &e.accessors {
                    self.kv.drop_mount(&crate::kv::cubbyhole_mount(accessor));
                }
                self.leases.tokens_revoked(&e.accessors);
                self.tokens.revoked(e, env.time);
            }
            Event::LeaseIssued(e) => self.leases.issued(e),
            Event::LeaseRenewed(e) => self.leases.renewed(e),
            Event::LeaseRevoked(e) => self.leases.revoked(&e.lease_id),
            Event::LeaseRevocationFailed(e) => self.leases.revocation_failed(e),
            Event::DbConnectionWritten(e) => self.databases.connection_written(e, env),
            Event::DbConnectionDeleted(e) => self.databases.connection_deleted(&e.mount, &e.name),
            Event::DbRootPasswordStaged(e) => self.databases.root_staged(e, env),
            Event::DbRootRotated(e) => self.databases.root_rotated(&e.mount, &e.name, env.seq),
            Event::DbRoleWritten(e) => self.databases.role_written(&e.mount, &e.name, &e.role),
            Event::DbRoleDeleted(e) => self.databases.role_deleted(&e.mount, &e.name),
            Event::DbStaticRoleWritten(e) => self.databases.static_written(&e.mount, &e.name, &e.role),
            Event::DbStaticRoleDeleted(e) => self.databases.static_deleted(&e.mount, &e.name),
            Event::DbStaticPasswordStaged(e) => self.databases.static_staged(e, env),
            Event::DbStaticPasswordRotated(e) => self.databases.static_rotated(&e.mount, &e.name, e.time),
            Event::DbStaticRotationFailed(e) => self.databases.static_failed(e),
            Event::TokenRoleWritten(e) => self.tokens.role_written(&e.role),
            Event::TokenRoleDeleted(e) => self.tokens.role_deleted(&e.name),
            Event::KvWritten(e) => self.kv.written(e, env),
            Event::KvVersionsDeleted(e) => self.kv.versions_deleted(e),
            Event::KvVersionsUndeleted(e) => self.kv.versions_undeleted(e),
            Event::KvMetadataWritten(e) => self.kv.metadata_written(e),
            Event::KvMetadataDeleted(e) => self.kv.metadata_deleted(e),
            Event::KvConfigWritten(e) => self.kv.config_written(e),
            Event::KvV1Written(e) => self.kv.v1_written(e, env),
            Event::KvV1Deleted(e) => self.kv.v1_deleted(e),
            Event::AppRoleWritten(e) => self.auth.approle_written(&e.mount, &e.role),
            Event::AppRoleDeleted(e) => self.auth.approle_deleted(&e.mount, &e.name),
            Event::SecretIdIssued(e) => self.auth.secret_id_issued(e),
            Event::SecretIdUsed(e) => self.auth.secret_id_used(&e.mount, &e.role, &e.accessor, env.time),
            Event::SecretIdsDestroyed(e) => self.auth.secret_ids_destroyed(e),
            Event::UserpassUserWritten(e) => self.auth.user_written(e, env),
            Event::UserpassUserDeleted(e) => self.auth.user_deleted(&e.mount, &e.name),
            Event::JwtConfigWritten(e) => self.auth.jwt_config_written(&e.mount, &e.config),
            Event::JwtRoleWritten(e) => self.auth.jwt_role_written(&e.mount, &e.role),
            Event::JwtRoleDeleted(e) => self.auth.jwt_role_deleted(&e.mount, &e.name),
            Event::KubernetesConfigWritten(e) => self.auth.k8s_config_written(e, env),
            Event::KubernetesRoleWritten(e) => self.auth.k8s_role_written(&e.mount, &e.role),
            Event::KubernetesRoleDeleted(e) => self.auth.k8s_role_deleted(&e.mount, &e.name),
            Event::EntityWritten(e) => self.identity.entity_written(&e.entity),
            Event::EntityDeleted(e) => self.identity.entity_deleted(&e.id),
            Event::EntityAliasWritten(e) => self.identity.alias_written(&e.alias),
            Event::EntityAliasDeleted(e) => self.identity.alias_deleted(&e.id),
            Event::GroupWritten(e) => self.identity.group_written(&e.group),
            Event::GroupDeleted(e) => self.identity.group_deleted(&e.id),
            Event::GroupAliasWritten(e) => self.identity.group_alias_written(&e.alias),
            Event::GroupAliasDeleted(e) => self.identity.group_alias_deleted(&e.id),
            Event::ExternalGroupsSynced(e) => self.identity.external_synced(e),
            Event::AuditDeviceEnabled(e) => self.audit.enabled(e, env),
            Event::AuditDeviceDisabled(e) => self.audit.disabled(&e.path),
            // Counts of refused requests: the ledger keeps them, the state has no use for them.
            Event::RefusalsCounted(_) => {}
            Event::Access(e) => {
                if e.used_token {
                    self.tokens.used(&env.actor.accessor);
                }
            } // (`used` changes nothing for tokens with unlimited uses, and so copies nothing.)
        }
    }
}
