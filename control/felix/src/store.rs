//! The policy store that Policy Sync messages build (semantics.md sections 2.1 and 2.2).
//!
//! Bodies are kept as they arrive on the wire (egress rules included, though never evaluated);
//! [`crate::to_snapshot`] turns the store into what the engine evaluates.

use crate::wire::felix::{
    ip_set_update::IpSetType, to_dataplane::Payload, ActivePolicyRemove, ActivePolicyUpdate,
    ActiveProfileRemove, ActiveProfileUpdate, IpSetDeltaUpdate, IpSetRemove, IpSetUpdate,
    NamespaceRemove, NamespaceUpdate, Policy, PolicyId as WirePolicyId, Profile, ServiceAccountId,
    ServiceAccountRemove, ServiceAccountUpdate, ToDataplane, WorkloadEndpoint,
};
use alp_engine::ipset::Members;
use alp_engine::snapshot::{IpSetKind, Labels, PolicyId};
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use thiserror::Error;

/// Service-account key: `(namespace, name)`.
pub type ServiceAccountKey = (String, String);

/// Everything Felix told us about one workload, keyed as semantics.md section 2.1 says.
/// All keys are exact, case-sensitive strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Store {
    /// `None` body: the id was sent without a policy; evaluation treats it as missing.
    policies: BTreeMap<PolicyId, Option<Policy>>,
    /// `None` body: the id was sent without a profile; evaluation skips it.
    profiles: BTreeMap<String, Option<Profile>>,
    ip_sets: BTreeMap<String, Members>,
    endpoint: Option<WorkloadEndpoint>,
    service_accounts: BTreeMap<ServiceAccountKey, Labels>,
    namespaces: BTreeMap<String, Labels>,
}

/// What [`Store::apply`] did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The store changed.
    Changed,
    /// A well-formed update or remove that left the store as it was (same content, or removal
    /// of an absent key).
    Unchanged,
    /// Not a store message: `in_sync` (handled by [`crate::sync::SyncState`]), `config_update`,
    /// or a payload this subset does not know.
    Ignored,
    /// Logged and ignored; the store is unchanged.
    Malformed(Malformed),
}

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Malformed {
    /// An update or remove without its `id` (for IP sets: an empty id).
    #[error("{payload} without id")]
    MissingId { payload: &'static str },
    /// `ipset_delta_update` for a set the store does not hold.
    #[error("ipset_delta_update for unknown IP set {id:?}")]
    UnknownIpSet { id: String },
    /// `ipset_update` with a type number this subset does not know.
    #[error("ipset_update {id:?} has unknown type {value}")]
    UnknownIpSetType { id: String, value: i32 },
}

impl Applied {
    pub(crate) fn changed_if(changed: bool) -> Self {
        if changed {
            Applied::Changed
        } else {
            Applied::Unchanged
        }
    }
}

impl Store {
    /// An empty store (no endpoint).
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one message. Malformed messages are logged (`warn`) and change nothing.
    ///
    /// Each message is applied atomically: everything that can reject it is checked before the
    /// first mutation, and `&mut self` keeps readers out until it returns.
    pub fn apply(&mut self, msg: &ToDataplane) -> Applied {
        let applied = match &msg.payload {
            Some(Payload::IpsetUpdate(u)) => self.ipset_update(u),
            Some(Payload::IpsetDeltaUpdate(u)) => self.ipset_delta_update(u),
            Some(Payload::IpsetRemove(u)) => self.ipset_remove(u),
            Some(Payload::ActiveProfileUpdate(u)) => self.profile_update(u),
            Some(Payload::ActiveProfileRemove(u)) => self.profile_remove(u),
            Some(Payload::ActivePolicyUpdate(u)) => self.policy_update(u),
            Some(Payload::ActivePolicyRemove(u)) => self.policy_remove(u),
            Some(Payload::WorkloadEndpointUpdate(u)) => set(&mut self.endpoint, u.endpoint.clone()),
            Some(Payload::WorkloadEndpointRemove(_)) => set(&mut self.endpoint, None),
            Some(Payload::ServiceAccountUpdate(u)) => self.service_account_update(u),
            Some(Payload::ServiceAccountRemove(u)) => self.service_account_remove(u),
            Some(Payload::NamespaceUpdate(u)) => self.namespace_update(u),
            Some(Payload::NamespaceRemove(u)) => self.namespace_remove(u),
            Some(Payload::InSync(_)) | Some(Payload::ConfigUpdate(_)) | None => Applied::Ignored,
        };
        if let Applied::Malformed(why) = &applied {
            log::warn!(
                "ignoring malformed message (sequence {}): {why}",
                msg.sequence_number
            );
        }
        applied
    }

    /// Policies by `(name, namespace, kind)`; `None` is an id stored without a body.
    pub fn policies(&self) -> &BTreeMap<PolicyId, Option<Policy>> {
        &self.policies
    }

    /// Profiles by name; `None` is an id stored without a body.
    pub fn profiles(&self) -> &BTreeMap<String, Option<Profile>> {
        &self.profiles
    }

    pub fn ip_sets(&self) -> &BTreeMap<String, Members> {
        &self.ip_sets
    }

    /// The workload endpoint (one per store), if any.
    pub fn endpoint(&self) -> Option<&WorkloadEndpoint> {
        self.endpoint.as_ref()
    }

    /// Service-account labels by `(namespace, name)`.
    pub fn service_accounts(&self) -> &BTreeMap<ServiceAccountKey, Labels> {
        &self.service_accounts
    }

    /// Namespace labels by name.
    pub fn namespaces(&self) -> &BTreeMap<String, Labels> {
        &self.namespaces
    }

    fn ipset_update(&mut self, u: &IpSetUpdate) -> Applied {
        if u.id.is_empty() {
            return missing_id("ipset_update");
        }
        let kind = match IpSetType::try_from(u.r#type) {
            Ok(IpSetType::Ip) => IpSetKind::Ip,
            Ok(IpSetType::IpAndPort) => IpSetKind::IpAndPort,
            Ok(IpSetType::Net) => IpSetKind::Net,
            Err(_) => {
                return Applied::Malformed(Malformed::UnknownIpSetType {
                    id: u.id.clone(),
                    value: u.r#type,
                })
            }
        };
        let mut members = Members::new(kind);
        for member in &u.members {
            add_member(&mut members, &u.id, member);
        }
        let changed = self
            .ip_sets
            .get(&u.id)
            .is_none_or(|old| old.kind() != kind || old.to_strings() != members.to_strings());
        self.ip_sets.insert(u.id.clone(), members);
        Applied::changed_if(changed)
    }

    /// Adds every `added_members` entry, then removes every `removed_members` entry, so a member
    /// in both lists ends removed.
    fn ipset_delta_update(&mut self, u: &IpSetDeltaUpdate) -> Applied {
        if u.id.is_empty() {
            return missing_id("ipset_delta_update");
        }
        let Some(set) = self.ip_sets.get_mut(&u.id) else {
            return Applied::Malformed(Malformed::UnknownIpSet { id: u.id.clone() });
        };
        // The set can only change at the members the delta names: compare their membership
        // before and after (O(delta), not O(set): sets can hold 100 k members).
        let touched: Vec<&String> = u.added_members.iter().chain(&u.removed_members).collect();
        let before: Vec<bool> = touched.iter().map(|m| set.has_member(m)).collect();
        for member in &u.added_members {
            add_member(set, &u.id, member);
        }
        for member in &u.removed_members {
            set.remove(member);
        }
        let changed = touched
            .iter()
            .zip(before)
            .any(|(m, was)| set.has_member(m) != was);
        Applied::changed_if(changed)
    }

    fn ipset_remove(&mut self, u: &IpSetRemove) -> Applied {
        if u.id.is_empty() {
            return missing_id("ipset_remove");
        }
        Applied::changed_if(self.ip_sets.remove(&u.id).is_some())
    }

    fn profile_update(&mut self, u: &ActiveProfileUpdate) -> Applied {
        let Some(id) = &u.id else {
            return missing_id("active_profile_update");
        };
        upsert(&mut self.profiles, id.name.clone(), u.profile.clone())
    }

    fn profile_remove(&mut self, u: &ActiveProfileRemove) -> Applied {
        let Some(id) = &u.id else {
            return missing_id("active_profile_remove");
        };
        Applied::changed_if(self.profiles.remove(&id.name).is_some())
    }

    fn policy_update(&mut self, u: &ActivePolicyUpdate) -> Applied {
        let Some(id) = &u.id else {
            return missing_id("active_policy_update");
        };
        upsert(&mut self.policies, policy_key(id), u.policy.clone())
    }

    fn policy_remove(&mut self, u: &ActivePolicyRemove) -> Applied {
        let Some(id) = &u.id else {
            return missing_id("active_policy_remove");
        };
        Applied::changed_if(self.policies.remove(&policy_key(id)).is_some())
    }

    fn service_account_update(&mut self, u: &ServiceAccountUpdate) -> Applied {
        let Some(id) = &u.id else {
            return missing_id("service_account_update");
        };
        upsert(
            &mut self.service_accounts,
            service_account_key(id),
            u.labels.clone(),
        )
    }

    fn service_account_remove(&mut self, u: &ServiceAccountRemove) -> Applied {
        let Some(id) = &u.id else {
            return missing_id("service_account_remove");
        };
        Applied::changed_if(
            self.service_accounts
                .remove(&service_account_key(id))
                .is_some(),
        )
    }

    fn namespace_update(&mut self, u: &NamespaceUpdate) -> Applied {
        let Some(id) = &u.id else {
            return missing_id("namespace_update");
        };
        upsert(&mut self.namespaces, id.name.clone(), u.labels.clone())
    }

    fn namespace_remove(&mut self, u: &NamespaceRemove) -> Applied {
        let Some(id) = &u.id else {
            return missing_id("namespace_remove");
        };
        Applied::changed_if(self.namespaces.remove(&id.name).is_some())
    }
}

/// The store's key for a wire `PolicyID`.
pub fn policy_key(id: &WirePolicyId) -> PolicyId {
    PolicyId {
        name: id.name.clone(),
        namespace: id.namespace.clone(),
        kind: id.kind.clone(),
    }
}

fn service_account_key(id: &ServiceAccountId) -> ServiceAccountKey {
    (id.namespace.clone(), id.name.clone())
}

fn missing_id(payload: &'static str) -> Applied {
    Applied::Malformed(Malformed::MissingId { payload })
}

/// Inserts or replaces `key`, reporting whether the stored value differs.
fn upsert<K: Ord, V: PartialEq>(map: &mut BTreeMap<K, V>, key: K, value: V) -> Applied {
    match map.entry(key) {
        Entry::Vacant(e) => {
            e.insert(value);
            Applied::Changed
        }
        Entry::Occupied(mut e) if *e.get() != value => {
            e.insert(value);
            Applied::Changed
        }
        Entry::Occupied(_) => Applied::Unchanged,
    }
}

fn set<T: PartialEq>(slot: &mut Option<T>, value: Option<T>) -> Applied {
    let changed = *slot != value;
    *slot = value;
    Applied::changed_if(changed)
}

/// Adds one member; an unparsable member is logged and skipped (the rest of the message still
/// applies, as semantics.md 2.2 says for NET sets).
fn add_member(set: &mut Members, id: &str, member: &str) {
    if let Err(e) = set.add(member) {
        log::warn!("IP set {id:?}: {e}; member ignored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::msg;

    use Applied::{Changed, Ignored, Unchanged};

    fn run(store: &mut Store, steps: &[(&str, Applied)]) {
        for (text, want) in steps {
            assert_eq!(&store.apply(&msg(text)), want, "{text}");
        }
    }

    fn members(store: &Store, id: &str) -> Option<Vec<String>> {
        store.ip_sets().get(id).map(Members::to_strings)
    }

    fn pid(name: &str, namespace: &str, kind: &str) -> PolicyId {
        PolicyId {
            name: name.into(),
            namespace: namespace.into(),
            kind: kind.into(),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn policies_keyed_by_name_namespace_kind() {
        let mut s = Store::new();
        run(
            &mut s,
            &[
                (
                    r#"{"activePolicyUpdate": {"id": {"name": "p", "namespace": "ns", "kind": "NetworkPolicy"},
                     "policy": {"namespace": "ns", "inboundRules": [{"action": "allow"}]}}}"#,
                    Changed,
                ),
                (
                    r#"{"activePolicyUpdate": {"id": {"name": "p", "kind": "GlobalNetworkPolicy"},
                     "policy": {}}}"#,
                    Changed,
                ),
                (
                    r#"{"activePolicyUpdate": {"id": {"name": "p", "namespace": "ns", "kind": "StagedNetworkPolicy"},
                     "policy": {}}}"#,
                    Changed,
                ),
                // Same content again.
                (
                    r#"{"activePolicyUpdate": {"id": {"name": "p", "kind": "GlobalNetworkPolicy"},
                     "policy": {}}}"#,
                    Unchanged,
                ),
                // Case matters.
                (
                    r#"{"activePolicyUpdate": {"id": {"name": "P", "kind": "GlobalNetworkPolicy"}}}"#,
                    Changed,
                ),
            ],
        );
        let keys: Vec<_> = s.policies().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                pid("P", "", "GlobalNetworkPolicy"),
                pid("p", "", "GlobalNetworkPolicy"),
                pid("p", "ns", "NetworkPolicy"),
                pid("p", "ns", "StagedNetworkPolicy"),
            ]
        );
        let body = s.policies()[&pid("p", "ns", "NetworkPolicy")]
            .as_ref()
            .map(|p| p.inbound_rules.len());
        assert_eq!(body, Some(1));
        // An update without a body stores the id with no body.
        assert_eq!(s.policies()[&pid("P", "", "GlobalNetworkPolicy")], None);

        run(
            &mut s,
            &[
                // Replace with a new body.
                (
                    r#"{"activePolicyUpdate": {"id": {"name": "p", "namespace": "ns", "kind": "NetworkPolicy"},
                     "policy": {"inboundRules": []}}}"#,
                    Changed,
                ),
                (
                    r#"{"activePolicyRemove": {"id": {"name": "p", "namespace": "ns", "kind": "NetworkPolicy"}}}"#,
                    Changed,
                ),
                (
                    r#"{"activePolicyRemove": {"id": {"name": "p", "namespace": "ns", "kind": "NetworkPolicy"}}}"#,
                    Unchanged,
                ),
                (
                    r#"{"activePolicyRemove": {"id": {"name": "p"}}}"#,
                    Unchanged,
                ),
            ],
        );
        assert!(!s.policies().contains_key(&pid("p", "ns", "NetworkPolicy")));
        assert_eq!(s.policies().len(), 3);
    }

    #[test]
    fn profiles_labels_update_and_remove() {
        let mut s = Store::new();
        run(
            &mut s,
            &[
                (
                    r#"{"activeProfileUpdate": {"id": {"name": "kns.a"}, "profile": {"inboundRules": [{"action": "allow"}]}}}"#,
                    Changed,
                ),
                (
                    r#"{"activeProfileUpdate": {"id": {"name": "kns.b"}}}"#,
                    Changed,
                ),
                (
                    r#"{"activeProfileRemove": {"id": {"name": "kns.c"}}}"#,
                    Unchanged,
                ),
                (
                    r#"{"serviceAccountUpdate": {"id": {"namespace": "ns", "name": "sa"}, "labels": {"app": "x"}}}"#,
                    Changed,
                ),
                (
                    r#"{"serviceAccountUpdate": {"id": {"namespace": "ns", "name": "sa"}, "labels": {"app": "x"}}}"#,
                    Unchanged,
                ),
                (
                    r#"{"serviceAccountUpdate": {"id": {"namespace": "ns2", "name": "sa"}}}"#,
                    Changed,
                ),
                (
                    r#"{"namespaceUpdate": {"id": {"name": "ns"}, "labels": {"env": "prod"}}}"#,
                    Changed,
                ),
                (
                    r#"{"namespaceUpdate": {"id": {"name": "ns"}, "labels": {"env": "dev"}}}"#,
                    Changed,
                ),
                (r#"{"namespaceUpdate": {"id": {"name": "other"}}}"#, Changed),
            ],
        );
        assert_eq!(s.profiles().len(), 2);
        assert_eq!(s.profiles()["kns.b"], None);
        let sa = &s.service_accounts()[&("ns".to_string(), "sa".to_string())];
        assert_eq!(sa.get("app").map(String::as_str), Some("x"));
        assert!(s.service_accounts()[&("ns2".to_string(), "sa".to_string())].is_empty());
        assert_eq!(
            s.namespaces()["ns"].get("env").map(String::as_str),
            Some("dev")
        );

        run(
            &mut s,
            &[
                (
                    r#"{"activeProfileRemove": {"id": {"name": "kns.a"}}}"#,
                    Changed,
                ),
                (
                    r#"{"serviceAccountRemove": {"id": {"namespace": "ns", "name": "sa"}}}"#,
                    Changed,
                ),
                (
                    r#"{"serviceAccountRemove": {"id": {"namespace": "ns", "name": "sa"}}}"#,
                    Unchanged,
                ),
                (r#"{"namespaceRemove": {"id": {"name": "ns"}}}"#, Changed),
            ],
        );
        assert_eq!(s.profiles().keys().collect::<Vec<_>>(), ["kns.b"]);
        assert_eq!(s.service_accounts().len(), 1);
        assert_eq!(s.namespaces().keys().collect::<Vec<_>>(), ["other"]);
    }

    #[test]
    fn absent_id_is_logged_and_ignored() {
        let cases = [
            (
                r#"{"ipsetUpdate": {"members": ["10.0.0.1"]}}"#,
                "ipset_update",
            ),
            (
                r#"{"ipsetDeltaUpdate": {"addedMembers": ["10.0.0.1"]}}"#,
                "ipset_delta_update",
            ),
            (r#"{"ipsetRemove": {}}"#, "ipset_remove"),
            (
                r#"{"activeProfileUpdate": {"profile": {}}}"#,
                "active_profile_update",
            ),
            (r#"{"activeProfileRemove": {}}"#, "active_profile_remove"),
            (
                r#"{"activePolicyUpdate": {"policy": {}}}"#,
                "active_policy_update",
            ),
            (r#"{"activePolicyRemove": {}}"#, "active_policy_remove"),
            (
                r#"{"serviceAccountUpdate": {"labels": {"a": "b"}}}"#,
                "service_account_update",
            ),
            (r#"{"serviceAccountRemove": {}}"#, "service_account_remove"),
            (
                r#"{"namespaceUpdate": {"labels": {"a": "b"}}}"#,
                "namespace_update",
            ),
            (r#"{"namespaceRemove": {}}"#, "namespace_remove"),
        ];
        for (text, payload) in cases {
            let mut s = Store::new();
            let want = Applied::Malformed(Malformed::MissingId { payload });
            assert_eq!(s.apply(&msg(text)), want, "{text}");
            assert!(s.ip_sets().is_empty() && s.policies().is_empty() && s.profiles().is_empty());
            assert!(s.service_accounts().is_empty() && s.namespaces().is_empty());
        }
    }

    #[test]
    fn endpoint_update_and_remove_apply_whatever_the_id() {
        let mut s = Store::new();
        run(
            &mut s,
            &[
                (
                    r#"{"workloadEndpointUpdate": {"id": {"workloadId": "a"}, "endpoint": {"profileIds": ["p"]}}}"#,
                    Changed,
                ),
                // Another id replaces it: one endpoint per store.
                (
                    r#"{"workloadEndpointUpdate": {"id": {"workloadId": "b"}, "endpoint": {"profileIds": ["q"]}}}"#,
                    Changed,
                ),
            ],
        );
        assert_eq!(
            s.endpoint().map(|e| e.profile_ids.clone()),
            Some(strings(&["q"]))
        );
        // No id at all still applies.
        run(
            &mut s,
            &[(r#"{"workloadEndpointUpdate": {"endpoint": {}}}"#, Changed)],
        );
        assert_eq!(s.endpoint(), Some(&WorkloadEndpoint::default()));
        // An update without an endpoint leaves the store without one.
        run(
            &mut s,
            &[(
                r#"{"workloadEndpointUpdate": {"id": {"workloadId": "a"}}}"#,
                Changed,
            )],
        );
        assert_eq!(s.endpoint(), None);
        run(
            &mut s,
            &[
                (
                    r#"{"workloadEndpointUpdate": {"endpoint": {"profileIds": ["p"]}}}"#,
                    Changed,
                ),
                (
                    r#"{"workloadEndpointRemove": {"id": {"workloadId": "unrelated"}}}"#,
                    Changed,
                ),
                (r#"{"workloadEndpointRemove": {}}"#, Unchanged),
            ],
        );
        assert_eq!(s.endpoint(), None);
    }

    #[test]
    fn ipset_update_replaces_the_whole_set() {
        let mut s = Store::new();
        run(
            &mut s,
            &[
                (
                    r#"{"ipsetUpdate": {"id": "s", "members": ["10.0.0.1", "10.0.0.2"]}}"#,
                    Changed,
                ),
                (
                    r#"{"ipsetUpdate": {"id": "s", "members": ["10.0.0.2", "10.0.0.1"]}}"#,
                    Unchanged,
                ),
                (
                    r#"{"ipsetUpdate": {"id": "s", "members": ["10.0.0.3"]}}"#,
                    Changed,
                ),
            ],
        );
        assert_eq!(members(&s, "s"), Some(strings(&["10.0.0.3"])));
        // Same members, new type: a different set.
        run(
            &mut s,
            &[(
                r#"{"ipsetUpdate": {"id": "s", "members": ["10.0.0.3"], "type": "NET"}}"#,
                Changed,
            )],
        );
        assert_eq!(s.ip_sets()["s"].kind(), IpSetKind::Net);
        run(
            &mut s,
            &[
                (
                    r#"{"ipsetUpdate": {"id": "t", "type": "IP_AND_PORT", "members": ["10.0.0.1,tcp:8080"]}}"#,
                    Changed,
                ),
                (r#"{"ipsetRemove": {"id": "s"}}"#, Changed),
                (r#"{"ipsetRemove": {"id": "s"}}"#, Unchanged),
            ],
        );
        assert_eq!(members(&s, "s"), None);
        assert_eq!(s.ip_sets()["t"].kind(), IpSetKind::IpAndPort);
        assert!(s.ip_sets()["t"].contains("10.0.0.1,tcp:8080"));
    }

    #[test]
    fn ipset_delta_adds_then_removes() {
        let mut s = Store::new();
        run(
            &mut s,
            &[
                (
                    r#"{"ipsetUpdate": {"id": "s", "members": ["10.0.0.1", "10.0.0.2"]}}"#,
                    Changed,
                ),
                (
                    r#"{"ipsetDeltaUpdate": {"id": "s", "addedMembers": ["10.0.0.3", "10.0.0.4"],
                     "removedMembers": ["10.0.0.1", "10.0.0.4", "10.9.9.9"]}}"#,
                    Changed,
                ),
            ],
        );
        // 10.0.0.4 was in both lists: it ends removed. Removing an absent member is harmless.
        assert_eq!(members(&s, "s"), Some(strings(&["10.0.0.2", "10.0.0.3"])));
        run(
            &mut s,
            &[
                (
                    r#"{"ipsetDeltaUpdate": {"id": "s", "addedMembers": ["10.0.0.2"]}}"#,
                    Unchanged,
                ),
                (r#"{"ipsetDeltaUpdate": {"id": "s"}}"#, Unchanged),
            ],
        );
        let unknown = msg(r#"{"ipsetDeltaUpdate": {"id": "nope", "addedMembers": ["10.0.0.1"]}}"#);
        assert_eq!(
            s.apply(&unknown),
            Applied::Malformed(Malformed::UnknownIpSet { id: "nope".into() })
        );
        assert_eq!(members(&s, "nope"), None);
    }

    #[test]
    fn net_sets_skip_unparsable_members() {
        let mut s = Store::new();
        run(
            &mut s,
            &[
                (
                    r#"{"ipsetUpdate": {"id": "n", "type": "NET", "members": ["10.0.0.0/8", "bogus", "fd00::/64"]}}"#,
                    Changed,
                ),
                (
                    r#"{"ipsetDeltaUpdate": {"id": "n", "addedMembers": ["also-bogus", "192.168.1.0/24"]}}"#,
                    Changed,
                ),
            ],
        );
        let set = &s.ip_sets()["n"];
        assert!(set.contains("10.1.2.3"));
        assert!(set.contains("fd00::1"));
        assert!(set.contains("192.168.1.7"));
        assert!(!set.contains("bogus"));
        assert_eq!(set.len(), 3);
        run(
            &mut s,
            &[(
                r#"{"ipsetDeltaUpdate": {"id": "n", "removedMembers": ["10.0.0.0/8"]}}"#,
                Changed,
            )],
        );
        assert!(!s.ip_sets()["n"].contains("10.1.2.3"));
    }

    #[test]
    fn unknown_ipset_type_is_rejected() {
        // JSON rejects unknown enum values; the binary wire keeps them as numbers.
        let m = ToDataplane {
            sequence_number: 1,
            payload: Some(Payload::IpsetUpdate(IpSetUpdate {
                id: "s".into(),
                members: strings(&["10.0.0.1"]),
                r#type: 7,
            })),
        };
        let mut s = Store::new();
        assert_eq!(
            s.apply(&m),
            Applied::Malformed(Malformed::UnknownIpSetType {
                id: "s".into(),
                value: 7
            })
        );
        assert!(s.ip_sets().is_empty());
    }

    #[test]
    fn non_store_payloads_are_ignored() {
        for text in [
            r#"{"inSync": {}}"#,
            r#"{"configUpdate": {"config": {"a": "b"}}}"#,
            r#"{"routeUpdate": {"dst": "10.0.0.0/8"}}"#,
            r#"{"sequenceNumber": 4}"#,
        ] {
            let mut s = Store::new();
            assert_eq!(s.apply(&msg(text)), Ignored, "{text}");
            assert_eq!(
                s.snapshot(),
                alp_engine::snapshot::Snapshot::default(),
                "{text}"
            );
        }
    }
}
