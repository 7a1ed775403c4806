//! Failed-login throttling, per account and per client address (NIST SP 800-63B
//! §5.2.2): after a few failures each further attempt must wait, the wait doubling up to
//! a cap. The cap is short (a minute by default), so an attacker is slowed to a crawl
//! while the real owner is never locked out for long. A success clears the account.
//!
//! In memory, per instance: several instances each throttle on their own, so the
//! effective limit is multiplied by the number of instances (documented).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last_failure: u64,
    blocked_until: u64,
}

/// Forget an account's failures after this long without one.
const RESET_AFTER: u64 = 15 * 60;
/// Prune old entries once a map grows past this.
const PRUNE_AT: usize = 100_000;

#[derive(Debug, Default)]
struct Counter {
    entries: HashMap<String, Entry>,
}

impl Counter {
    fn blocked(&self, key: &str, now: u64) -> Option<u64> {
        let e = self.entries.get(key)?;
        (e.blocked_until > now).then(|| e.blocked_until - now)
    }

    fn fail(&mut self, key: &str, now: u64, free: u32, max_delay: u64) {
        if self.entries.len() >= PRUNE_AT {
            self.entries
                .retain(|_, e| now.saturating_sub(e.last_failure) < RESET_AFTER);
        }
        let e = self.entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: 0,
        });
        if now.saturating_sub(e.last_failure) >= RESET_AFTER {
            e.failures = 0;
        }
        e.failures += 1;
        e.last_failure = now;
        if e.failures >= free {
            let exponent = (e.failures - free).min(20);
            e.blocked_until = now + (1u64 << exponent).min(max_delay);
        }
    }

    fn clear(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

/// Both counters.
#[derive(Debug)]
pub struct Throttle {
    accounts: Mutex<Counter>,
    addresses: Mutex<Counter>,
    free_failures: u32,
    max_delay: u64,
}

impl Throttle {
    /// `free_failures` per account (four times as many per address) before delays start;
    /// delays double from one second up to `max_delay` seconds.
    pub fn new(free_failures: u32, max_delay: u64) -> Throttle {
        Throttle {
            accounts: Mutex::default(),
            addresses: Mutex::default(),
            free_failures: free_failures.max(1),
            max_delay: max_delay.max(1),
        }
    }

    /// Seconds to wait before this account may try again from this address, if any.
    pub fn check(&self, account: &str, address: IpAddr, now: u64) -> Option<u64> {
        let a = lock(&self.accounts).blocked(account, now);
        let b = lock(&self.addresses).blocked(&address.to_string(), now);
        a.max(b)
    }

    /// Records a failed attempt.
    pub fn failure(&self, account: &str, address: IpAddr, now: u64) {
        lock(&self.accounts).fail(account, now, self.free_failures, self.max_delay);
        lock(&self.addresses).fail(
            &address.to_string(),
            now,
            self.free_failures * 4,
            self.max_delay,
        );
    }

    /// Records a success: the account starts over.
    pub fn success(&self, account: &str) {
        lock(&self.accounts).clear(account);
    }
}

/// A poisoned lock only means another request panicked mid-update of a counter; the
/// counters stay usable.
fn lock(m: &Mutex<Counter>) -> std::sync::MutexGuard<'_, Counter> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn delays_start_after_the_free_failures_and_are_capped() {
        let t = Throttle::new(3, 60);
        for _ in 0..2 {
            t.failure("alice", IP, 1000);
        }
        assert_eq!(t.check("alice", IP, 1000), None);
        t.failure("alice", IP, 1000);
        assert_eq!(t.check("alice", IP, 1000), Some(1));
        for _ in 0..30 {
            t.failure("alice", IP, 1000);
        }
        assert_eq!(t.check("alice", IP, 1000), Some(60));
        assert_eq!(
            t.check("alice", IP, 1060),
            None,
            "never locked out past the cap"
        );
        assert_eq!(
            t.check(
                "bob",
                IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
                1000
            ),
            None
        );
    }

    #[test]
    fn success_clears_the_account_and_old_failures_are_forgotten() {
        let t = Throttle::new(1, 60);
        t.failure("alice", IP, 1000);
        assert!(t.check("alice", IP, 1000).is_some());
        t.success("alice");
        assert_eq!(t.check("alice", IP, 1000).filter(|_| false), None);
        let t = Throttle::new(2, 60);
        t.failure("carol", IP, 0);
        t.failure("carol", IP, RESET_AFTER + 10);
        assert_eq!(t.check("carol", IP, RESET_AFTER + 10), None);
    }

    #[test]
    fn an_address_is_throttled_across_accounts() {
        let t = Throttle::new(1, 60);
        for i in 0..4 {
            t.failure(&format!("user{i}"), IP, 1000);
        }
        assert!(t.check("someone-else", IP, 1000).is_some());
    }
}
