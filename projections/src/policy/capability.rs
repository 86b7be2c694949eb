//! Capabilities (what a path rule grants) and operations (what a request asks for).

use std::fmt;

/// One capability a path rule can grant, as written in a policy's `capabilities` list.
///
/// `root` is not a capability one can write: it only appears in output, for the root
/// policy (see [`Capabilities::ROOT`]). `subscribe` is refused by OpenBao 2.7.2, so it is
/// refused here too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Write where the item does not exist yet (POST/PUT).
    Create,
    /// Read (GET).
    Read,
    /// Write where the item exists, and most "action" endpoints (POST/PUT).
    Update,
    /// Partial update (PATCH).
    Patch,
    /// Delete (DELETE).
    Delete,
    /// List children (LIST, `GET ?list=true`).
    List,
    /// Root-protected paths; needed in addition to the operation's capability.
    Sudo,
    /// Overrides everything else granted for the same pattern.
    Deny,
    /// Recursive list (OpenBao: SCAN, `GET ?scan=true`).
    Scan,
}

impl Capability {
    /// Every capability, in Vault's output order (alphabetical).
    pub const ALL: [Capability; 9] = [
        Capability::Create,
        Capability::Delete,
        Capability::Deny,
        Capability::List,
        Capability::Patch,
        Capability::Read,
        Capability::Scan,
        Capability::Sudo,
        Capability::Update,
    ];

    /// The name used in policies and in `sys/capabilities` output.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Read => "read",
            Capability::Update => "update",
            Capability::Patch => "patch",
            Capability::Delete => "delete",
            Capability::List => "list",
            Capability::Sudo => "sudo",
            Capability::Deny => "deny",
            Capability::Scan => "scan",
        }
    }

    /// Parses a capability name; names are case-sensitive (`READ` is invalid, as in Vault).
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }

    fn bit(self) -> u16 {
        match self {
            Capability::Create => 1 << 0,
            Capability::Read => 1 << 1,
            Capability::Update => 1 << 2,
            Capability::Patch => 1 << 3,
            Capability::Delete => 1 << 4,
            Capability::List => 1 << 5,
            Capability::Sudo => 1 << 6,
            Capability::Deny => 1 << 7,
            Capability::Scan => 1 << 8,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of capabilities (a bitset).
///
/// Invariants kept by every constructor: a set holding `deny` holds nothing else, and the
/// root set ([`Capabilities::ROOT`]) holds every capability except `deny`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(u16);

const ROOT_BIT: u16 = 1 << 15;
const GRANTS: u16 = 0b1_0111_1111; // every capability bit but deny

impl Capabilities {
    /// The empty set. It evaluates to `deny` (nothing is allowed).
    pub const EMPTY: Capabilities = Capabilities(0);
    /// Only `deny`.
    pub const DENY: Capabilities = Capabilities(1 << 7);
    /// What the root policy holds: everything, including `sudo`. Renders as `["root"]`.
    pub const ROOT: Capabilities = Capabilities(GRANTS | ROOT_BIT);

    /// This set plus `cap`; adding `deny` gives the deny-only set, and nothing can be
    /// added to a deny-only set.
    #[must_use]
    pub fn with(self, cap: Capability) -> Capabilities {
        self.union(Capabilities(cap.bit()))
    }

    /// The union as Vault merges identical patterns: `deny` on either side wins.
    #[must_use]
    pub fn union(self, other: Capabilities) -> Capabilities {
        if self.is_deny() || other.is_deny() {
            return Capabilities::DENY;
        }
        Capabilities(self.0 | other.0)
    }

    /// Whether `cap` is in the set. The root set contains everything except `deny`.
    pub fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// Whether the set is empty (which evaluates to `deny`).
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether this is the deny-only set.
    pub fn is_deny(self) -> bool {
        self.contains(Capability::Deny)
    }

    /// Whether this is the root set.
    pub fn is_root(self) -> bool {
        self.0 & ROOT_BIT != 0
    }

    /// Whether the set grants anything at all (not empty, not deny).
    pub fn grants_anything(self) -> bool {
        !self.is_deny() && self.0 & GRANTS != 0
    }

    /// The names as `sys/capabilities` reports them: sorted alphabetically; `["deny"]` for
    /// the deny-only and the empty set; `["root"]` for the root set.
    pub fn names(&self) -> Vec<&'static str> {
        if self.is_root() {
            return vec!["root"];
        }
        if !self.grants_anything() {
            return vec!["deny"];
        }
        Capability::ALL.into_iter().filter(|c| self.contains(*c)).map(Capability::name).collect()
    }
}

/// Collecting builds a set; a `deny` anywhere makes it the deny-only set.
impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(caps: I) -> Capabilities {
        caps.into_iter().fold(Capabilities::EMPTY, Capabilities::with)
    }
}

/// Shows the names as `sys/capabilities` would (`Capabilities["list", "read"]`), except
/// that the empty set shows as `Capabilities[]`.
impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = if self.is_empty() { Vec::new() } else { self.names() };
        write!(f, "Capabilities{names:?}")
    }
}

/// A logical operation a request performs, for [`crate::policy::Acl::check`].
///
/// Vault's `revoke`, `renew` and `rollback` operations check `update`: pass
/// [`Operation::Update`] for them. Help requests are always allowed and need no check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// POST/PUT of an item that does not exist.
    Create,
    /// GET.
    Read,
    /// POST/PUT of an existing item, or an action.
    Update,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// LIST (the path includes its trailing `/`).
    List,
    /// SCAN (OpenBao recursive list).
    Scan,
}

impl Operation {
    /// The capability this operation needs.
    pub fn capability(self) -> Capability {
        match self {
            Operation::Create => Capability::Create,
            Operation::Read => Capability::Read,
            Operation::Update => Capability::Update,
            Operation::Patch => Capability::Patch,
            Operation::Delete => Capability::Delete,
            Operation::List => Capability::List,
            Operation::Scan => Capability::Scan,
        }
    }

    /// Whether this operation lists (LIST or SCAN), which changes path lookup and
    /// pagination handling.
    pub fn is_listing(self) -> bool {
        matches!(self, Operation::List | Operation::Scan)
    }

    /// Whether parameter constraints apply (Vault checks them on read, create, update and
    /// patch only).
    pub fn checks_parameters(self) -> bool {
        matches!(self, Operation::Read | Operation::Create | Operation::Update | Operation::Patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sorted_like_vault_output() {
        let caps: Capabilities = [Capability::Update, Capability::Read, Capability::List].into_iter().collect();
        assert_eq!(caps.names(), ["list", "read", "update"]);
        assert_eq!(Capabilities::EMPTY.names(), ["deny"]);
        assert_eq!(Capabilities::DENY.names(), ["deny"]);
        assert_eq!(Capabilities::ROOT.names(), ["root"]);
    }

    #[test]
    fn deny_absorbs_everything() {
        let caps: Capabilities = [Capability::Read, Capability::Deny, Capability::Sudo].into_iter().collect();
        assert_eq!(caps, Capabilities::DENY);
        assert!(!caps.contains(Capability::Read) && !caps.grants_anything());
        assert_eq!(Capabilities::ROOT.union(Capabilities::DENY), Capabilities::DENY);
    }

    #[test]
    fn root_contains_every_grant_but_not_deny() {
        for cap in Capability::ALL {
            assert_eq!(Capabilities::ROOT.contains(cap), cap != Capability::Deny, "{cap}");
        }
        assert!(Capabilities::ROOT.is_root() && Capabilities::ROOT.grants_anything());
    }

    #[test]
    fn names_round_trip() {
        for cap in Capability::ALL {
            assert_eq!(Capability::from_name(cap.name()), Some(cap));
        }
        assert_eq!(Capability::from_name("root"), None);
        assert_eq!(Capability::from_name("subscribe"), None);
        assert_eq!(format!("{:?}", Capabilities::EMPTY), "Capabilities[]");
    }

    #[test]
    fn operations_map_to_capabilities() {
        assert_eq!(Operation::Patch.capability(), Capability::Patch);
        assert!(Operation::Scan.is_listing() && !Operation::Read.is_listing());
        assert!(Operation::Read.checks_parameters() && !Operation::Delete.checks_parameters());
    }
}
