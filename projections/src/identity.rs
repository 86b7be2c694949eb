//! Identity: entities, their aliases, groups (internal and external) and group aliases.
//! An entity's policies are its own plus those of every group it belongs to, directly,
//! through a login's group claims (external groups), or through a parent group that
//! lists one of its groups as a member.

use std::collections::BTreeSet;
use std::sync::Arc;

use imbl::{HashMap, OrdMap, OrdSet};
use migrations::{Entity, EntityAlias, ExternalGroupsSynced, Group, GroupAlias};

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    entities: HashMap<String, Arc<Entity>>,
    entity_names: HashMap<String, String>,
    aliases: HashMap<String, Arc<EntityAlias>>,
    /// (mount accessor, alias name) → alias id.
    alias_keys: HashMap<(String, String), String>,
    /// entity id → its alias ids.
    entity_aliases: HashMap<String, OrdSet<String>>,
    groups: HashMap<String, Arc<Group>>,
    group_names: HashMap<String, String>,
    /// entity id → ids of the internal groups that list it.
    entity_groups: HashMap<String, OrdSet<String>>,
    /// group id → ids of the groups that list it as a member group.
    group_parents: HashMap<String, OrdSet<String>>,
    group_aliases: HashMap<String, Arc<GroupAlias>>,
    /// (mount accessor, group alias name) → group alias id.
    group_alias_keys: HashMap<(String, String), String>,
    /// entity id → mount accessor → external group ids its last login there reported.
    external: HashMap<String, OrdMap<String, Vec<String>>>,
    /// Bumped by every change that may change someone's policies (ACL caches key on it).
    generation: u64,
}

impl Identity {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn entity(&self, id: &str) -> Option<&Arc<Entity>> {
        self.entities.get(id)
    }

    pub fn entity_by_name(&self, name: &str) -> Option<&Arc<Entity>> {
        self.entity_names.get(name).and_then(|id| self.entities.get(id))
    }

    pub fn entity_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.entities.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn alias(&self, id: &str) -> Option<&Arc<EntityAlias>> {
        self.aliases.get(id)
    }

    pub fn alias_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.aliases.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The alias an auth mount knows by `name`.
    pub fn alias_by_name(&self, mount_accessor: &str, name: &str) -> Option<&Arc<EntityAlias>> {
        self.alias_keys.get(&(mount_accessor.to_string(), name.to_string())).and_then(|id| self.aliases.get(id))
    }

    pub fn aliases_of(&self, entity_id: &str) -> Vec<Arc<EntityAlias>> {
        self.entity_aliases
            .get(entity_id)
            .map(|ids| ids.iter().filter_map(|id| self.aliases.get(id).cloned()).collect())
            .unwrap_or_default()
    }

    pub fn group(&self, id: &str) -> Option<&Arc<Group>> {
        self.groups.get(id)
    }

    pub fn group_by_name(&self, name: &str) -> Option<&Arc<Group>> {
        self.group_names.get(name).and_then(|id| self.groups.get(id))
    }

    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.groups.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn group_alias(&self, id: &str) -> Option<&Arc<GroupAlias>> {
        self.group_aliases.get(id)
    }

    pub fn group_alias_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.group_aliases.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn group_alias_by_name(&self, mount_accessor: &str, name: &str) -> Option<&Arc<GroupAlias>> {
        self.group_alias_keys
            .get(&(mount_accessor.to_string(), name.to_string()))
            .and_then(|id| self.group_aliases.get(id))
    }

    /// The groups an entity belongs to directly (internal lists, external claims).
    pub fn direct_groups(&self, entity_id: &str) -> BTreeSet<String> {
        let mut out: BTreeSet<String> =
            self.entity_groups.get(entity_id).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        if let Some(by_mount) = self.external.get(entity_id) {
            out.extend(by_mount.values().flatten().filter(|g| self.groups.contains_key(*g)).cloned());
        }
        out
    }

    /// Every group an entity belongs to, directly or through member groups.
    pub fn all_groups(&self, entity_id: &str) -> Vec<Arc<Group>> {
        self.groups_and_parents(self.direct_groups(entity_id))
    }

    /// Policies a member of `group_id` gets through it: the group's own and those of every
    /// group that lists it as a member, directly or not (sorted).
    pub fn group_policies(&self, group_id: &str) -> Vec<String> {
        let groups = self.groups_and_parents([group_id.to_string()]);
        let set: BTreeSet<String> = groups.iter().flat_map(|g| g.policies.iter().cloned()).collect();
        set.into_iter().collect()
    }

    /// The groups `ids` and every group above them (through member-group links), by id.
    fn groups_and_parents(&self, ids: impl IntoIterator<Item = String>) -> Vec<Arc<Group>> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = ids.into_iter().collect();
        while let Some(id) = todo.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(parents) = self.group_parents.get(&id) {
                todo.extend(parents.iter().cloned());
            }
        }
        seen.iter().filter_map(|id| self.groups.get(id).cloned()).collect()
    }

    /// Policies the entity and its groups add to a token's own, sorted (none for an unknown
    /// entity).
    pub fn policies_of(&self, entity_id: &str) -> Vec<String> {
        let Some(e) = self.entities.get(entity_id) else { return Vec::new() };
        let mut set: BTreeSet<String> = e.policies.iter().cloned().collect();
        for g in self.all_groups(entity_id) {
            set.extend(g.policies.iter().cloned());
        }
        set.into_iter().collect()
    }

    pub(crate) fn entity_written(&mut self, e: &Entity) {
        if let Some(old) = self.entities.get(&e.id)
            && old.name != e.name
        {
            self.entity_names.remove(&old.name);
        }
        self.entity_names.insert(e.name.clone(), e.id.clone());
        self.entities.insert(e.id.clone(), Arc::new(e.clone()));
        self.generation += 1;
    }

    pub(crate) fn entity_deleted(&mut self, id: &str) {
        if let Some(old) = self.entities.remove(id) {
            self.entity_names.remove(&old.name);
        }
        if let Some(aliases) = self.entity_aliases.remove(id) {
            for a in aliases {
                if let Some(alias) = self.aliases.remove(&a) {
                    self.alias_keys.remove(&(alias.mount_accessor.clone(), alias.name.clone()));
                }
            }
        }
        self.external.remove(id);
        self.generation += 1;
    }

    pub(crate) fn alias_written(&mut self, a: &EntityAlias) {
        if let Some(old) = self.aliases.get(&a.id).cloned() {
            self.alias_keys.remove(&(old.mount_accessor.clone(), old.name.clone()));
            if let Some(set) = self.entity_aliases.get_mut(&old.canonical_id) {
                set.remove(&a.id);
            }
        }
        self.alias_keys.insert((a.mount_accessor.clone(), a.name.clone()), a.id.clone());
        self.entity_aliases.entry(a.canonical_id.clone()).or_default().insert(a.id.clone());
        self.aliases.insert(a.id.clone(), Arc::new(a.clone()));
        self.generation += 1;
    }

    pub(crate) fn alias_deleted(&mut self, id: &str) {
        if let Some(old) = self.aliases.remove(id) {
            self.alias_keys.remove(&(old.mount_accessor.clone(), old.name.clone()));
            if let Some(set) = self.entity_aliases.get_mut(&old.canonical_id) {
                set.remove(id);
            }
        }
        self.generation += 1;
    }

    pub(crate) fn group_written(&mut self, g: &Group) {
        self.unlink_group(&g.id);
        for member in &g.member_entity_ids {
            self.entity_groups.entry(member.clone()).or_default().insert(g.id.clone());
        }
        for member in &g.member_group_ids {
            self.group_parents.entry(member.clone()).or_default().insert(g.id.clone());
        }
        self.group_names.insert(g.name.clone(), g.id.clone());
        self.groups.insert(g.id.clone(), Arc::new(g.clone()));
        self.generation += 1;
    }

    pub(crate) fn group_deleted(&mut self, id: &str) {
        self.unlink_group(id);
        self.groups.remove(id);
        self.group_parents.remove(id);
        let aliases: Vec<String> =
            self.group_aliases.iter().filter(|(_, a)| a.canonical_id == id).map(|(k, _)| k.clone()).collect();
        for a in aliases {
            self.group_alias_deleted(&a);
        }
        self.generation += 1;
    }

    /// Forgets a group's name and member links (before it is rewritten or deleted).
    fn unlink_group(&mut self, id: &str) {
        let Some(old) = self.groups.get(id).cloned() else { return };
        self.group_names.remove(&old.name);
        for member in &old.member_entity_ids {
            if let Some(set) = self.entity_groups.get_mut(member) {
                set.remove(id);
            }
        }
        for member in &old.member_group_ids {
            if let Some(set) = self.group_parents.get_mut(member) {
                set.remove(id);
            }
        }
    }

    pub(crate) fn group_alias_written(&mut self, a: &GroupAlias) {
        if let Some(old) = self.group_aliases.get(&a.id).cloned() {
            self.group_alias_keys.remove(&(old.mount_accessor.clone(), old.name.clone()));
        }
        self.group_alias_keys.insert((a.mount_accessor.clone(), a.name.clone()), a.id.clone());
        self.group_aliases.insert(a.id.clone(), Arc::new(a.clone()));
        self.generation += 1;
    }

    pub(crate) fn group_alias_deleted(&mut self, id: &str) {
        if let Some(old) = self.group_aliases.remove(id) {
            self.group_alias_keys.remove(&(old.mount_accessor.clone(), old.name.clone()));
        }
        self.generation += 1;
    }

    pub(crate) fn external_synced(&mut self, e: &ExternalGroupsSynced) {
        let by_mount = self.external.entry(e.entity_id.clone()).or_default();
        if e.group_ids.is_empty() {
            by_mount.remove(&e.mount_accessor);
        } else {
            by_mount.insert(e.mount_accessor.clone(), e.group_ids.clone());
        }
        self.generation += 1;
    }

    /// External groups the entity's last login through `mount_accessor` reported.
    pub fn external_groups(&self, entity_id: &str, mount_accessor: &str) -> Vec<String> {
        self.external.get(entity_id).and_then(|m| m.get(mount_accessor).cloned()).unwrap_or_default()
    }
}
