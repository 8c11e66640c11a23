//! The identity tables of a snapshot: consumers (with their identity headers prepared),
//! developers that are not active, subscriptions by consumer and API, plans with their
//! compiled limits, and token bindings. API keys live in the separately sharded
//! [`crate::config::keys::KeyIndex`].
//!
//! The big tables are [`Sharded`] maps updated per changed entity: a change to one consumer,
//! subscription or binding copies one shard, whatever the number of consumers. Plans are few
//! and rebuilt whole when one changes.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use uuid::Uuid;

use super::sharded::Sharded;
use crate::config::model::{CertificateBindingDef, ConfigData, ConsumerDef, PlanDef, SubscriptionDef, TokenBindingDef};
use crate::fx::FxBuildHasher;
use crate::limits::{PlanLimits, policy_header};
use crate::wire::headers::uuid_value;

/// The identity headers the gateway sends upstream (see `edge`, which sets them and removes
/// clients' copies).
pub static X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
pub static X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
pub static X_CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
pub static X_CREDENTIAL_ID: HeaderName = HeaderName::from_static("x-credential-id");
pub static X_PLAN: HeaderName = HeaderName::from_static("x-plan");
pub static X_ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");

/// A consumer as the request path needs it.
#[derive(Debug)]
pub struct ConsumerRt {
    pub id: Uuid,
    pub enabled: bool,
    pub developer_id: Option<Uuid>,
    pub id_header: HeaderValue,
    pub name_header: Option<HeaderValue>,
    pub custom_id_header: Option<HeaderValue>,
    /// The three fields above as the header lines an upstream request carries, written once
    /// here instead of field by field on every request.
    pub lines: Box<[u8]>,
}

/// A plan: its limits and the value of `X-Plan`.
#[derive(Debug)]
pub struct PlanRt {
    pub id: Uuid,
    pub api_id: Uuid,
    pub name_header: Option<HeaderValue>,
    /// `name_header` as a header line (empty without one), as [`ConsumerRt::lines`].
    pub line: Box<[u8]>,
    pub limits: PlanLimits,
    /// The `RateLimit-Policy` value of its limits.
    pub policy: Option<HeaderValue>,
    /// Per-route cost overrides (route ids come from the configuration, not from clients:
    /// Fx-hashed like the other identity tables).
    pub(crate) route_costs: HashMap<Uuid, u32, FxBuildHasher>,
}

impl PlanRt {
    /// What a request on `route` costs under this plan.
    pub fn cost(&self, route: Uuid, route_cost: u32) -> u32 {
        self.route_costs.get(&route).copied().unwrap_or(route_cost)
    }
}

/// State of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubStatus {
    Active,
    Pending,
    Suspended,
}

/// A consumer's subscription to an API.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionRt {
    pub status: SubStatus,
    pub plan_id: Uuid,
}

/// Who a token's issuer and subject are bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub id: Uuid,
    pub consumer_id: Uuid,
}

/// The compiled identity tables.
#[derive(Debug, Default, Clone)]
pub struct Identities {
    consumers: Sharded<Uuid, Arc<ConsumerRt>>,
    /// Developers whose status is not `active` (their consumers are refused).
    inactive_developers: Sharded<Uuid, ()>,
    /// By (consumer, API) ...
    subscriptions: Sharded<(Uuid, Uuid), SubscriptionRt>,
    /// ... and where each subscription id is filed.
    subscription_keys: Sharded<Uuid, (Uuid, Uuid)>,
    /// (Fx-hashed: the ids are the admin's, not a client's.)
    plans: Arc<HashMap<Uuid, Arc<PlanRt>, FxBuildHasher>>,
    /// By `issuer \0 subject` ...
    bindings: Sharded<String, Binding>,
    /// ... and where each binding id is filed.
    binding_keys: Sharded<Uuid, String>,
    /// Client certificates by [`cert_key`] ...
    cert_bindings: Sharded<String, Binding>,
    /// ... and where each certificate binding id is filed.
    cert_binding_keys: Sharded<Uuid, String>,
}

/// What a client certificate binding is filed under: `sha256:<hex>` or `subject:<name>`.
fn cert_key(b: &CertificateBindingDef) -> Option<String> {
    match (&b.fingerprint, &b.subject) {
        (Some(f), _) => Some(format!("sha256:{f}")),
        (None, Some(s)) => Some(format!("subject:{s}")),
        (None, None) => None,
    }
}

fn header(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

/// `name: value\r\n` for each field that has a value, in order.
fn lines(fields: &[(&HeaderName, Option<&HeaderValue>)]) -> Box<[u8]> {
    let mut out = Vec::new();
    for (name, value) in fields {
        if let Some(value) = value {
            crate::wire::codec::put(&mut out, &[name.as_str().as_bytes(), b": ", value.as_bytes(), b"\r\n"]);
        }
    }
    out.into_boxed_slice()
}

fn consumer_rt(c: &ConsumerDef) -> Arc<ConsumerRt> {
    let id_header = uuid_value(c.id);
    let name_header = header(&c.name);
    let custom_id_header = c.custom_id.as_deref().and_then(header);
    let lines = lines(&[
        (&X_CONSUMER_ID, Some(&id_header)),
        (&X_CONSUMER_USERNAME, name_header.as_ref()),
        (&X_CONSUMER_CUSTOM_ID, custom_id_header.as_ref()),
    ]);
    Arc::new(ConsumerRt {
        id: c.id,
        enabled: c.enabled,
        developer_id: c.developer_id,
        id_header,
        name_header,
        custom_id_header,
        lines,
    })
}

fn plan_rt(p: &PlanDef) -> Arc<PlanRt> {
    let name_header = header(&p.name);
    Arc::new(PlanRt {
        id: p.id,
        api_id: p.api_id,
        line: lines(&[(&X_PLAN, name_header.as_ref())]),
        name_header,
        limits: PlanLimits::from(p),
        policy: policy_header(&PlanLimits::from(p)),
        route_costs: p.route_costs.iter().filter_map(|(r, c)| Some((*r, u32::try_from(*c).ok()?))).collect(),
    })
}

fn plans(data: &ConfigData) -> Arc<HashMap<Uuid, Arc<PlanRt>, FxBuildHasher>> {
    Arc::new(data.plans.values().map(|p| (p.id, plan_rt(p))).collect())
}

fn subscription_rt(s: &SubscriptionDef) -> SubscriptionRt {
    let status = match s.status.as_str() {
        "active" => SubStatus::Active,
        "pending" => SubStatus::Pending,
        _ => SubStatus::Suspended,
    };
    SubscriptionRt { status, plan_id: s.plan_id }
}

fn binding_key(issuer: &str, subject: &str) -> String {
    let mut key = String::with_capacity(issuer.len() + 1 + subject.len());
    key.push_str(issuer);
    key.push('\0');
    key.push_str(subject);
    key
}

impl Identities {
    /// Compiles the tables from the configuration.
    pub fn build(data: &ConfigData) -> Self {
        let mut t = Identities { plans: plans(data), ..Identities::default() };
        for c in data.consumers.values() {
            t.consumers.insert(c.id, consumer_rt(c));
        }
        for d in data.developers.values().filter(|d| d.status != "active") {
            t.inactive_developers.insert(d.id, ());
        }
        for s in data.subscriptions.values() {
            t.file_subscription(s);
        }
        for b in data.token_bindings.values() {
            t.file_binding(b);
        }
        for b in data.certificate_bindings.values() {
            t.file_cert_binding(b);
        }
        t
    }

    /// The tables after the entities `ids` (consumers, developers, subscriptions or token
    /// bindings: added, changed or removed) changed in `data`, and the plans if `plans`;
    /// everything else is shared with `self`.
    pub fn update(&self, data: &ConfigData, ids: &[Uuid], plans_changed: bool) -> Self {
        let mut t = self.clone();
        if plans_changed {
            t.plans = plans(data);
        }
        for id in ids {
            match data.consumers.get(id) {
                Some(c) => t.consumers.insert(c.id, consumer_rt(c)),
                None => drop(t.consumers.remove(id)),
            }
            match data.developers.get(id) {
                Some(d) if d.status != "active" => t.inactive_developers.insert(d.id, ()),
                _ => drop(t.inactive_developers.remove(id)),
            }
            if let Some(key) = t.subscription_keys.remove(id) {
                t.subscriptions.remove(&key);
            }
            if let Some(s) = data.subscriptions.get(id) {
                t.file_subscription(s);
            }
            if let Some(key) = t.binding_keys.remove(id) {
                t.bindings.remove(&key);
            }
            if let Some(b) = data.token_bindings.get(id) {
                t.file_binding(b);
            }
            if let Some(key) = t.cert_binding_keys.remove(id) {
                t.cert_bindings.remove(&key);
            }
            if let Some(b) = data.certificate_bindings.get(id) {
                t.file_cert_binding(b);
            }
        }
        t
    }

    fn file_subscription(&mut self, s: &SubscriptionDef) {
        let key = (s.consumer_id, s.api_id);
        self.subscriptions.insert(key, subscription_rt(s));
        self.subscription_keys.insert(s.id, key);
    }

    fn file_binding(&mut self, b: &TokenBindingDef) {
        let key = binding_key(&b.issuer, &b.subject);
        self.bindings.insert(key.clone(), Binding { id: b.id, consumer_id: b.consumer_id });
        self.binding_keys.insert(b.id, key);
    }

    fn file_cert_binding(&mut self, b: &CertificateBindingDef) {
        if let Some(key) = cert_key(b) {
            self.cert_bindings.insert(key.clone(), Binding { id: b.id, consumer_id: b.consumer_id });
            self.cert_binding_keys.insert(b.id, key);
        }
    }

    /// The binding of a client certificate: by the leaf's SHA-256 first, then by each of
    /// its subject names in order (the names are read only when the fingerprint is not
    /// bound).
    pub fn cert_binding(&self, sha256: &[u8; 32], names: impl FnOnce() -> Vec<String>) -> Option<Binding> {
        let by_fingerprint = format!("sha256:{}", crate::pki::fingerprint_hex(sha256));
        if let Some(b) = self.cert_bindings.get(by_fingerprint.as_str()) {
            return Some(*b);
        }
        if self.cert_bindings.is_empty() {
            return None;
        }
        names().iter().find_map(|n| self.cert_bindings.get(format!("subject:{n}").as_str()).copied())
    }

    /// A consumer by id.
    pub fn consumer(&self, id: &Uuid) -> Option<&Arc<ConsumerRt>> {
        self.consumers.get(id)
    }

    /// Whether `c` may call at all: enabled, and its developer (if any) active.
    pub fn is_active(&self, c: &ConsumerRt) -> bool {
        c.enabled && c.developer_id.is_none_or(|d| self.inactive_developers.get(&d).is_none())
    }

    /// The consumer's subscription to the API.
    pub fn subscription(&self, consumer: Uuid, api: Uuid) -> Option<SubscriptionRt> {
        self.subscriptions.get(&(consumer, api)).copied()
    }

    /// A plan by id.
    pub fn plan(&self, id: &Uuid) -> Option<&Arc<PlanRt>> {
        self.plans.get(id)
    }

    /// The binding of a token's issuer and subject.
    pub fn binding(&self, issuer: &str, subject: &str) -> Option<Binding> {
        self.bindings.get(binding_key(issuer, subject).as_str()).copied()
    }

    /// Number of consumers and subscriptions.
    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        (self.consumers.len(), self.subscriptions.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::DeveloperDef;

    fn consumer(dev: Option<Uuid>) -> ConsumerDef {
        ConsumerDef { id: Uuid::new_v4(), name: "c".into(), developer_id: dev, custom_id: None, enabled: true }
    }

    #[test]
    fn updates_equal_a_rebuild() {
        let mut d = ConfigData::default();
        let dev = DeveloperDef { id: Uuid::new_v4(), status: "active".into() };
        d.developers.insert(dev.id, dev.clone());
        let (a, b) = (consumer(Some(dev.id)), consumer(None));
        d.consumers.insert(a.id, a.clone());
        d.consumers.insert(b.id, b.clone());
        let (api, plan) = (Uuid::new_v4(), Uuid::new_v4());
        let sub = SubscriptionDef {
            id: Uuid::new_v4(),
            consumer_id: a.id,
            plan_id: plan,
            api_id: api,
            status: "active".into(),
        };
        d.subscriptions.insert(sub.id, sub.clone());
        let bind = TokenBindingDef { id: Uuid::new_v4(), consumer_id: b.id, issuer: "i".into(), subject: "s".into() };
        d.token_bindings.insert(bind.id, bind.clone());
        let t = Identities::build(&d);
        let ca = t.consumer(&a.id).expect("a").clone();
        assert!(t.is_active(&ca));
        assert_eq!(t.subscription(a.id, api).map(|s| s.status), Some(SubStatus::Active));
        assert_eq!(t.binding("i", "s").map(|x| x.consumer_id), Some(b.id));

        // The developer is disabled, the subscription moves to b and is suspended, the
        // binding is deleted, consumer b is renamed.
        d.developers.insert(dev.id, DeveloperDef { status: "disabled".into(), ..dev.clone() });
        let moved = SubscriptionDef { consumer_id: b.id, status: "suspended".into(), ..sub.clone() };
        d.subscriptions.insert(sub.id, moved);
        d.token_bindings.clear();
        d.consumers.insert(b.id, ConsumerDef { name: "renamed".into(), ..b.clone() });
        let u = t.update(&d, &[dev.id, sub.id, bind.id, b.id], false);
        assert!(!u.is_active(&ca), "developer disabled");
        assert!(u.subscription(a.id, api).is_none(), "old filing removed");
        assert_eq!(u.subscription(b.id, api).map(|s| s.status), Some(SubStatus::Suspended));
        assert!(u.binding("i", "s").is_none());
        assert_eq!(u.consumer(&b.id).and_then(|c| c.name_header.clone()), Some(HeaderValue::from_static("renamed")));
        let rebuilt = Identities::build(&d);
        assert_eq!(u.sizes(), rebuilt.sizes());
        assert!(t.is_active(&ca) && t.binding("i", "s").is_some(), "the previous tables are unchanged");

        // Consumer a deleted.
        d.consumers.remove(&a.id);
        let v = u.update(&d, &[a.id], false);
        assert!(v.consumer(&a.id).is_none());
    }
}
