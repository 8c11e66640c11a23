//! The answer to "may this request pass?": the tightest applicable limit, the pure GCRA and
//! quota arithmetic shared by the local and Redis counters, and the response headers.

use std::sync::OnceLock;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::plan::RateWindow;

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

/// The decision for one request, describing the tightest applicable limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Until the tightest limit is fully available again.
    pub reset: Duration,
    /// Set on denial: when the same request could pass.
    pub retry_after: Option<Duration>,
    pub denied_by: Option<Denial>,
    pub backend: Backend,
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
}

/// GCRA for one window: the outcome and the new theoretical arrival time if admitted.
pub(crate) fn gcra(tat: u64, now: u64, cost: u64, w: &RateWindow) -> (Outcome, u64) {
    let base = tat.max(now);
    let new_tat = base.saturating_add(cost.saturating_mul(w.interval_ns));
    let ahead = new_tat - now;
    let allowed = ahead <= w.tolerance_ns;
    let used = if allowed { ahead } else { base - now };
    let out = Outcome {
        allowed,
        limit: w.limit,
        remaining: (w.tolerance_ns.saturating_sub(used) / w.interval_ns).min(w.limit),
        reset_ns: used,
        retry_ns: if allowed { 0 } else { ahead - w.tolerance_ns },
        denial: Denial::Rate,
    };
    (out, new_tat)
}

/// A calendar quota with `used` units spent before this request, the window ending in `left_ns`.
pub(crate) fn quota(used: u64, cost: u64, limit: u64, left_ns: u64) -> Outcome {
    let allowed = used.saturating_add(cost) <= limit;
    let after = if allowed { used + cost } else { used };
    Outcome {
        allowed,
        limit,
        remaining: limit.saturating_sub(after),
        reset_ns: left_ns,
        retry_ns: if allowed { 0 } else { left_ns },
        denial: Denial::Quota,
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
        }
    }

    /// Calls `fields` with each value and the names it goes under: `RateLimit-*` (IETF draft)
    /// with `X-RateLimit-*`, and on denial `Retry-After`. Nothing for an unlimited plan.
    fn fields(&self, mut fields: impl FnMut(&'static [HeaderName], u64)) {
        if self.backend == Backend::Unlimited {
            return;
        }
        // Names built once (a runtime `from_static` validates the name on every call).
        static NAMES: [HeaderName; 7] = [
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            HeaderName::from_static("x-ratelimit-reset"),
            http::header::RETRY_AFTER,
        ];
        let values = [self.limit, self.remaining, ceil_secs(self.reset)];
        for (names, value) in NAMES[..6].chunks_exact(2).zip(values) {
            fields(names, value);
        }
        if let Some(retry) = self.retry_after {
            fields(&NAMES[6..], ceil_secs(retry).max(1));
        }
    }

    /// Sets the fields (see [`Self::fields`]) in a header map.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.reserve(7);
        self.fields(|names, value| {
            for name in names {
                headers.insert(name.clone(), number(value));
            }
        });
    }

    /// Writes the fields (see [`Self::fields`]) as HTTP/1.1 header lines, each number formatted
    /// once for all its names.
    pub fn write_lines(&self, out: &mut Vec<u8>) {
        self.fields(|names, value| {
            let mut text = itoa::Buffer::new();
            let text = text.format(value).as_bytes();
            for name in names {
                crate::wire::codec::put(out, &[name.as_str().as_bytes(), b": ", text, b"\r\n"]);
            }
        });
    }
}

/// `n` as a header value. Values below 4096 come from a table built once: a clone of a shared
/// value is a reference count, where formatting a number allocates.
fn number(n: u64) -> HeaderValue {
    static SMALL: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    let table = SMALL.get_or_init(|| (0..4096u64).map(HeaderValue::from).collect());
    usize::try_from(n).ok().and_then(|i| table.get(i)).cloned().unwrap_or_else(|| HeaderValue::from(n))
}

/// Whole seconds, rounded up: a client waiting that long is never early.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl crate::wire::ExtraFields for Decision {
    fn each(&self, field: &mut dyn FnMut(&HeaderName, &[u8])) {
        self.fields(|names, value| {
            let mut text = itoa::Buffer::new();
            let text = text.format(value).as_bytes();
            for name in names {
                field(name, text);
            }
        });
    }

    fn write_lines(&self, out: &mut Vec<u8>) {
        Decision::write_lines(self, out);
    }

    fn write_headers(&self, headers: &mut HeaderMap) {
        Decision::write_headers(self, headers);
    }
}
