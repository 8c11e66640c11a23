//! The identity tables of a snapshot: consumers (with their identity headers prepared),
//! subscriptions by consumer and API, plans with their compiled limits, and token bindings.
//! Rebuilt when consumers, developers, subscriptions, plans or bindings change; API keys live
//! in the separately sharded [`crate::credentials::KeyIndex`].

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderValue;
use uuid::Uuid;

use crate::config::model::{ConfigData, ConsumerDef, PlanDef};
use crate::limits::PlanLimits;

/// A consumer as the request path needs it.
#[derive(Debug)]
pub struct ConsumerRt {
    pub id: Uuid,
    /// Enabled, and its developer (if any) is active.
    pub active: bool,
    pub id_header: HeaderValue,
    pub name_header: Option<HeaderValue>,
    pub custom_id_header: Option<HeaderValue>,
}

/// A plan: its limits and the value of `X-Plan`.
#[derive(Debug)]
pub struct PlanRt {
    pub id: Uuid,
    pub api_id: Uuid,
    pub name_header: Option<HeaderValue>,
    pub limits: PlanLimits,
    /// Per-route cost overrides.
    pub route_costs: HashMap<Uuid, u32>,
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
#[derive(Debug, Clone)]
pub struct SubscriptionRt {
    pub status: SubStatus,
    pub plan: Arc<PlanRt>,
}

/// Who a token's issuer and subject are bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub id: Uuid,
    pub consumer_id: Uuid,
}

/// The compiled identity tables.
#[derive(Debug, Default)]
pub struct Identities {
    pub consumers: HashMap<Uuid, Arc<ConsumerRt>>,
    /// By (consumer, API).
    pub subscriptions: HashMap<(Uuid, Uuid), SubscriptionRt>,
    pub plans: HashMap<Uuid, Arc<PlanRt>>,
    /// Issuer → subject → binding.
    bindings: HashMap<String, HashMap<String, Binding>>,
}

fn header(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

fn consumer_rt(c: &ConsumerDef, data: &ConfigData) -> ConsumerRt {
    let developer_active =
        c.developer_id.is_none_or(|d| data.developers.get(&d).is_some_and(|dev| dev.status == "active"));
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    ConsumerRt {
        id: c.id,
        active: c.enabled && developer_active,
        id_header: uuid_header(c.id, &mut buf),
        name_header: header(&c.name),
        custom_id_header: c.custom_id.as_deref().and_then(header),
    }
}

/// A UUID as a header value (always valid ASCII).
pub fn uuid_header(id: Uuid, buf: &mut [u8; uuid::fmt::Hyphenated::LENGTH]) -> HeaderValue {
    HeaderValue::from_bytes(id.hyphenated().encode_lower(buf).as_bytes()).unwrap_or(HeaderValue::from_static(""))
}

fn plan_rt(p: &PlanDef) -> PlanRt {
    PlanRt {
        id: p.id,
        api_id: p.api_id,
        name_header: header(&p.name),
        limits: PlanLimits::from(p),
        route_costs: p.route_costs.iter().filter_map(|(r, c)| Some((*r, u32::try_from(*c).ok()?))).collect(),
    }
}

impl Identities {
    /// Compiles the tables from the configuration.
    pub fn build(data: &ConfigData) -> Self {
        let consumers = data.consumers.values().map(|c| (c.id, Arc::new(consumer_rt(c, data)))).collect();
        let plans: HashMap<Uuid, Arc<PlanRt>> = data.plans.values().map(|p| (p.id, Arc::new(plan_rt(p)))).collect();
        let subscriptions = data
            .subscriptions
            .values()
            .filter_map(|s| {
                let plan = plans.get(&s.plan_id)?.clone();
                let status = match s.status.as_str() {
                    "active" => SubStatus::Active,
                    "pending" => SubStatus::Pending,
                    _ => SubStatus::Suspended,
                };
                Some(((s.consumer_id, s.api_id), SubscriptionRt { status, plan }))
            })
            .collect();
        let mut bindings: HashMap<String, HashMap<String, Binding>> = HashMap::new();
        for b in data.token_bindings.values() {
            bindings
                .entry(b.issuer.clone())
                .or_default()
                .insert(b.subject.clone(), Binding { id: b.id, consumer_id: b.consumer_id });
        }
        Identities { consumers, subscriptions, plans, bindings }
    }

    /// The binding of a token's issuer and subject.
    pub fn binding(&self, issuer: &str, subject: &str) -> Option<Binding> {
        self.bindings.get(issuer)?.get(subject).copied()
    }
}
