//! Brute-force protection for logins. Every attempt reserves a slot before its password is
//! checked, against two counters: the account as tried from this client address
//! (`max_failures`), and the client address whatever the account (`max_failures` × 4, for
//! shared NATs). A full counter refuses the attempt until `lockout` has passed since its last
//! slot was taken. Reserving first means a burst of parallel attempts is cut at the limit,
//! not checked whole; a successful login gives its slots back. Counting the account per
//! address means failures from elsewhere never lock the owner out of an address of theirs.
//! In memory: the admin runs as one instance (see docs/admin-api.md).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Bound on tracked keys; past it, expired entries are swept.
const SWEEP_AT: usize = 10_000;
/// An address may fail this many times more often than a single account (shared NATs).
const IP_FACTOR: u32 = 4;
/// Longest e-mail address kept in a key; no account has a longer one (database check), so
/// longer attempts may share a counter without harm, and keys stay small.
const EMAIL_KEY_MAX: usize = 254;

#[derive(Debug, Clone, Copy)]
struct Slots {
    taken: u32,
    last: Instant,
}

/// Login attempt counters per (account, client address) and per client address.
pub struct LoginThrottle {
    slots: DashMap<String, Slots>,
    max_failures: u32,
    lockout: Duration,
}

/// The slots one attempt took; hand it back with [`LoginThrottle::succeeded`] when the
/// password was right. Dropped otherwise: the attempt stays counted as a failure.
#[must_use = "a successful login must give its slots back"]
pub struct Reservation {
    account: String,
    address: String,
}

/// The address an attempt is counted under: IPv4 as is, IPv6 by its /64, which one client
/// usually holds whole (counting single IPv6 addresses would give it 2^64 tries).
fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

impl LoginThrottle {
    /// A throttle allowing `max_failures` failures per account and address before locking
    /// for `lockout`.
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        Self { slots: DashMap::new(), max_failures: max_failures.max(1), lockout }
    }

    /// Takes a slot for an attempt on `email` from `ip`, or says how many seconds to wait.
    pub fn reserve(&self, email: &str, ip: IpAddr) -> Result<Reservation, u64> {
        let now = Instant::now();
        if self.slots.len() > SWEEP_AT {
            self.slots.retain(|_, s| s.last + self.lockout > now);
        }
        let address = address_key(ip);
        let email: String = email.to_lowercase().chars().take(EMAIL_KEY_MAX).collect();
        let account = format!("user:{email}|{address}");
        self.take(&address, self.max_failures.saturating_mul(IP_FACTOR), now)?;
        if let Err(wait) = self.take(&account, self.max_failures, now) {
            self.give_back(&address);
            return Err(wait);
        }
        Ok(Reservation { account, address })
    }

    /// Takes one slot of `key` unless its `limit` is reached; the entry's lock makes the
    /// check and the increment one step, so parallel attempts cannot all pass the check.
    fn take(&self, key: &str, limit: u32, now: Instant) -> Result<(), u64> {
        let mut entry = self.slots.entry(key.to_owned()).or_insert(Slots { taken: 0, last: now });
        let until = entry.last + self.lockout;
        if until <= now {
            entry.taken = 0;
        }
        if entry.taken >= limit {
            return Err((until - now).as_secs().max(1));
        }
        entry.taken += 1;
        entry.last = now;
        Ok(())
    }

    fn give_back(&self, key: &str) {
        if let Some(mut entry) = self.slots.get_mut(key) {
            entry.taken = entry.taken.saturating_sub(1);
        }
    }

    /// A successful login: forgets the account's failures from this address, and gives the
    /// address its slot back (a right password is not a failure of the address).
    pub fn succeeded(&self, reservation: Reservation) {
        self.slots.remove(&reservation.account);
        self.give_back(&reservation.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn locks_the_account_per_address_and_resets_on_success() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            drop(t.reserve("A@x", A).ok());
        }
        assert!(t.reserve("a@x", A).is_err_and(|s| s > 0 && s <= 60));
        assert!(t.reserve("b@x", A).is_ok(), "other accounts from the address are not locked");
        let elsewhere = t.reserve("a@x", B);
        assert!(elsewhere.is_ok(), "the account is not locked for other addresses");
        if let Ok(r) = elsewhere {
            t.succeeded(r);
        }
        assert!(t.reserve("a@x", A).is_err(), "a success elsewhere does not unlock this address");
    }

    #[test]
    fn success_forgets_failures_and_frees_the_address_slot() {
        let t = LoginThrottle::new(2, Duration::from_secs(60));
        drop(t.reserve("a@x", A).ok());
        if let Ok(r) = t.reserve("a@x", A) {
            t.succeeded(r);
        }
        assert!(t.reserve("a@x", A).is_ok());
        assert!(t.reserve("a@x", A).is_ok());
        assert!(t.reserve("a@x", A).is_err());
        // The address holds 3 slots (the success gave its own back, the refused attempt
        // returned the one it took): 5 more fit under 2 × 4.
        for i in 0..5 {
            assert!(t.reserve(&format!("u{i}@x"), A).is_ok(), "{i}");
        }
        assert!(t.reserve("other@x", A).is_err(), "the address limit holds");
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let t = LoginThrottle::new(1, Duration::from_secs(60));
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap_or(A);
        let two: IpAddr = "2001:db8:1:2::ffff".parse().unwrap_or(A);
        drop(t.reserve("a@x", one).ok());
        assert!(t.reserve("a@x", two).is_err());
        assert_eq!(address_key("::ffff:10.0.0.1".parse().unwrap_or(A)), "ip:10.0.0.1");
    }
}
