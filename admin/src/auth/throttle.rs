//! Brute-force protection for logins: after `max_failures` failed attempts for an account
//! or from a client address, further attempts are refused until `lockout` has passed since
//! the last failure. In memory: the admin runs as one instance (see docs/admin-api.md).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Bound on tracked keys; past it, expired entries are swept.
const SWEEP_AT: usize = 10_000;
/// An address may fail this many times more often than a single account (shared NATs).
const IP_FACTOR: u32 = 4;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed-login counters per account and per client address.
pub struct LoginThrottle {
    failures: DashMap<String, Failures>,
    max_failures: u32,
    lockout: Duration,
}

impl LoginThrottle {
    /// A throttle allowing `max_failures` failures per account before locking for `lockout`.
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        Self { failures: DashMap::new(), max_failures: max_failures.max(1), lockout }
    }

    fn keys(email: &str, ip: IpAddr) -> [(String, u32); 2] {
        [(format!("user:{}", email.to_lowercase()), 1), (format!("ip:{ip}"), IP_FACTOR)]
    }

    /// Seconds to wait before another attempt is allowed, if locked.
    pub fn locked_for(&self, email: &str, ip: IpAddr) -> Option<u64> {
        let now = Instant::now();
        Self::keys(email, ip).iter().find_map(|(key, factor)| {
            let f = *self.failures.get(key)?;
            let until = f.last + self.lockout;
            (f.count >= self.max_failures * factor && until > now).then(|| (until - now).as_secs().max(1))
        })
    }

    /// Counts a failed attempt.
    pub fn fail(&self, email: &str, ip: IpAddr) {
        let now = Instant::now();
        if self.failures.len() > SWEEP_AT {
            self.failures.retain(|_, f| f.last + self.lockout > now);
        }
        for (key, _) in Self::keys(email, ip) {
            let mut entry = self.failures.entry(key).or_insert(Failures { count: 0, last: now });
            if entry.last + self.lockout <= now {
                entry.count = 0;
            }
            entry.count += 1;
            entry.last = now;
        }
    }

    /// Forgets the account's failures after a successful login.
    pub fn succeed(&self, email: &str) {
        self.failures.remove(&format!("user:{}", email.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_resets_on_success() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        let ip: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..3 {
            assert!(t.locked_for("a@x", ip).is_none());
            t.fail("A@x", ip);
        }
        assert!(t.locked_for("a@x", ip).is_some_and(|s| s > 0 && s <= 60));
        assert!(t.locked_for("b@x", ip).is_none(), "the address is not locked after 3 failures");
        t.succeed("a@x");
        assert!(t.locked_for("a@x", ip).is_none());
    }
}
