//! The answer to "may this request pass?": the tightest applicable limit, the pure GCRA and
//! quota arithmetic shared by the local and Redis counters, and the response headers.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::plan::{PlanLimits, QuotaPeriod, RateWindow, Window};

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// A per-second/minute/hour rate window is full (429).
    Rate,
    /// The daily or monthly quota is used up (429).
    Quota,
    /// Redis is unreachable and the plan fails closed (503).
    CounterUnavailable,
}

/// Which counter made the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The plan has no limits: nothing was counted.
    Unlimited,
    Local,
    Redis,
    /// Redis was unreachable: counted locally with this node's share.
    Fallback,
}

/// Which rate-limit fields a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderStyle {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    #[default]
    Ietf,
    /// The older `RateLimit-Limit`, `-Remaining`, `-Reset` and their `X-RateLimit-*` twins.
    Legacy,
    /// Both sets.
    Both,
}

/// The decision for one request, describing the tightest applicable limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The plan's N of the tightest window or quota.
    pub limit: u64,
    /// Units that could pass right now (for a rate window: before the tolerance is used up).
    pub remaining: u64,
    /// Until the tightest limit is fully available again.
    pub reset: Duration,
    /// Set on denial: when the same request could pass.
    pub retry_after: Option<Duration>,
    pub denied_by: Option<Denial>,
    pub backend: Backend,
    /// The tightest window or quota.
    pub window: Window,
    /// The plan's `RateLimit-Policy` value (set by the caller that knows the plan).
    pub policy: Option<HeaderValue>,
    pub style: HeaderStyle,
}

/// The outcome of one window or quota, before the tightest one is picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    pub reset_ns: u64,
    pub retry_ns: u64,
    pub denial: Denial,
    pub window: Window,
}

/// GCRA for one window: the outcome and the new theoretical arrival time if admitted.
///
/// A request costing more than the units admitted at once passes when the window is fully
/// available (its TAT not ahead of now), so every route stays callable; such a window then
/// holds at most N + cost − 1 units instead of N + B.
pub(crate) fn gcra(tat: u64, now: u64, cost: u64, w: &RateWindow) -> (Outcome, u64) {
    let base = tat.max(now);
    let needed = cost.saturating_mul(w.interval_ns);
    let new_tat = base.saturating_add(needed);
    let ahead = new_tat - now;
    let tolerance = w.tolerance_ns.max(needed);
    let allowed = ahead <= tolerance;
    let used = if allowed { ahead } else { base - now };
    let out = Outcome {
        allowed,
        limit: w.limit,
        remaining: w.tolerance_ns.saturating_sub(used) / w.interval_ns,
        reset_ns: used,
        retry_ns: if allowed { 0 } else { ahead - tolerance },
        denial: Denial::Rate,
        window: Window::of_slot(w.slot),
    };
    (out, new_tat)
}

/// A calendar quota with `used` units spent before this request, the window ending in `left_ns`.
pub(crate) fn quota(period: QuotaPeriod, used: u64, cost: u64, limit: u64, left_ns: u64) -> Outcome {
    let allowed = used.saturating_add(cost) <= limit;
    let after = if allowed { used + cost } else { used };
    Outcome {
        allowed,
        limit,
        remaining: limit.saturating_sub(after),
        reset_ns: left_ns,
        retry_ns: if allowed { 0 } else { left_ns },
        denial: Denial::Quota,
        window: if period == QuotaPeriod::Day { Window::Day } else { Window::Month },
    }
}

impl Decision {
    /// A plan without limits.
    pub fn unlimited() -> Self {
        Decision {
            allowed: true,
            limit: u64::MAX,
            remaining: u64::MAX,
            reset: Duration::ZERO,
            retry_after: None,
            denied_by: None,
            backend: Backend::Unlimited,
            window: Window::Second,
            policy: None,
            style: HeaderStyle::Ietf,
        }
    }

    /// Refusal while Redis is down and the plan fails closed.
    pub fn unavailable(retry: Duration) -> Self {
        Decision {
            allowed: false,
            limit: 0,
            remaining: 0,
            reset: retry,
            retry_after: Some(retry),
            denied_by: Some(Denial::CounterUnavailable),
            backend: Backend::Redis,
            window: Window::Second,
            policy: None,
            style: HeaderStyle::Ietf,
        }
    }

    /// The tightest outcome: on denial the one to wait longest for, else the fewest remaining.
    pub(crate) fn tightest(outcomes: &[Outcome], backend: Backend) -> Self {
        let denied = outcomes.iter().filter(|o| !o.allowed).max_by_key(|o| o.retry_ns);
        let pick = denied
            .or_else(|| outcomes.iter().min_by(|a, b| a.remaining.cmp(&b.remaining).then(b.reset_ns.cmp(&a.reset_ns))));
        let Some(o) = pick else { return Decision::unlimited() };
        Decision {
            allowed: denied.is_none(),
            limit: o.limit,
            remaining: if denied.is_some() { 0 } else { o.remaining },
            reset: Duration::from_nanos(o.reset_ns),
            retry_after: denied.map(|d| Duration::from_nanos(d.retry_ns)),
            denied_by: denied.map(|d| d.denial),
            backend,
            window: o.window,
            policy: None,
            style: HeaderStyle::Ietf,
        }
    }

    /// Calls `field` with each rate-limit field of the response, in the chosen style: the
    /// plan's `RateLimit-Policy` and `RateLimit: "<window>";r=<remaining>;t=<seconds>` (on
    /// denial `t` is the `Retry-After` value), and/or the legacy fields. Nothing for an
    /// unlimited plan; only `Retry-After` while the counter is unavailable (no limit to claim).
    /// (Each value is given in parts, written one after the other.)
    fn fields(&self, mut field: impl FnMut(&HeaderName, &[&[u8]])) {
        if self.backend == Backend::Unlimited {
            return;
        }
        let retry = self.retry_after.map(|r| ceil_secs(r).max(1));
        if self.denied_by != Some(Denial::CounterUnavailable) {
            let reset = retry.unwrap_or_else(|| ceil_secs(self.reset));
            if self.style != HeaderStyle::Legacy {
                if let Some(policy) = &self.policy {
                    field(&NAMES[0], &[policy.as_bytes()]);
                }
                let (mut r, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
                let (r, t) = (r.format(self.remaining).as_bytes(), t.format(reset).as_bytes());
                field(&NAMES[1], &[b"\"", self.window.name().as_bytes(), b"\";r=", r, b";t=", t]);
            }
            if self.style != HeaderStyle::Ietf {
                let values = [self.limit, self.remaining, reset];
                for (names, value) in NAMES[2..8].chunks_exact(2).zip(values) {
                    let mut text = itoa::Buffer::new();
                    let text = text.format(value).as_bytes();
                    for name in names {
                        field(name, &[text]);
                    }
                }
            }
        }
        if let Some(retry) = retry {
            let mut text = itoa::Buffer::new();
            field(&NAMES[8], &[text.format(retry).as_bytes()]);
        }
    }

    /// Whether a field `name` from the upstream gives way to the gateway's: every rate-limit
    /// field of either style (one account of the limits, the plan's), and `Retry-After` when
    /// this decision sets one.
    fn replaces(&self, name: &HeaderName) -> bool {
        if name == http::header::RETRY_AFTER {
            return self.retry_after.is_some();
        }
        NAMES[..8].contains(name)
    }

    /// Sets the fields (see [`Self::fields`]) in a header map, after removing the rate-limit
    /// fields already there (see [`Self::replaces`]).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        if self.backend != Backend::Unlimited {
            for name in &NAMES[..8] {
                headers.remove(name);
            }
        }
        headers.reserve(4);
        self.fields(|name, parts| {
            if let Ok(v) = HeaderValue::from_bytes(&parts.concat()) {
                headers.insert(name.clone(), v);
            }
        });
    }

    /// Writes the fields (see [`Self::fields`]) as HTTP/1.1 header lines.
    pub fn write_lines(&self, out: &mut Vec<u8>) {
        // Room for the usual fields at once (the policy, `RateLimit` with two 20-digit
        // numbers); more is rare and grows as it goes.
        out.reserve(self.policy.as_ref().map_or(0, HeaderValue::len) + 96);
        self.fields(|name, parts| {
            let name = name.as_str().as_bytes();
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            for part in parts {
                out.extend_from_slice(part);
            }
            out.extend_from_slice(b"\r\n");
        });
    }
}

/// Names built once (a runtime `from_static` validates the name on every call).
static NAMES: [HeaderName; 9] = [
    HeaderName::from_static("ratelimit-policy"),
    HeaderName::from_static("ratelimit"),
    HeaderName::from_static("ratelimit-limit"),
    HeaderName::from_static("x-ratelimit-limit"),
    HeaderName::from_static("ratelimit-remaining"),
    HeaderName::from_static("x-ratelimit-remaining"),
    HeaderName::from_static("ratelimit-reset"),
    HeaderName::from_static("x-ratelimit-reset"),
    http::header::RETRY_AFTER,
];

/// The `RateLimit-Policy` value of a plan: one item per window and quota, named like the
/// `RateLimit` field's, with its promise (`q` units in any `w` seconds; for quotas the UTC
/// calendar day or month). `None` for a plan without limits.
pub fn policy_header(plan: &PlanLimits) -> Option<HeaderValue> {
    let items: Vec<String> =
        plan.promises().map(|(window, q, w)| format!("\"{}\";q={q};w={w}", window.name())).collect();
    if items.is_empty() {
        return None;
    }
    HeaderValue::from_str(&items.join(", ")).ok()
}

/// Whole seconds, rounded up: a client waiting that long is never early.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl crate::wire::ExtraFields for Decision {
    fn each(&self, field: &mut dyn FnMut(&HeaderName, &[u8])) {
        self.fields(|name, parts| match parts {
            [one] => field(name, one),
            _ => field(name, &parts.concat()),
        });
    }

    fn write_lines(&self, out: &mut Vec<u8>) {
        Decision::write_lines(self, out);
    }

    fn write_headers(&self, headers: &mut HeaderMap) {
        Decision::write_headers(self, headers);
    }

    fn replaces(&self, name: &HeaderName) -> bool {
        self.backend != Backend::Unlimited && Decision::replaces(self, name)
    }
}
