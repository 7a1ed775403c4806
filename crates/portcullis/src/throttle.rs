//! Throttling of password checks as *admission*, not bookkeeping: an attempt takes its
//! slot before the password is hashed and counts as a failure while it is in flight,
//! so sending guesses together cannot multiply them (OWASP "Blocking Brute Force
//! Attacks"; NIST SP 800-63B §5.2.2).
//!
//! These are pure decisions over counters; a store keeps the counters and applies a
//! decision to all the counters of one attempt under one lock, so the budgets hold
//! across every instance that shares the store. The Portcullis server keeps them in
//! its database (see `Store::admit` in portcullis-store).
//!
//! Each counter has a [`Budget`]: `free` attempts, then each further one must wait a
//! delay that doubles from one second up to `max_delay`. A counter with no attempt for
//! `reset_after` seconds starts over.
//!
//! **Unstable** (feature `server`): a building block of the Portcullis server, public for
//! it and outside the library's semver promise.

/// How many attempts a counter allows before delays start, and how long they grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Attempts allowed before the first delay (at least 1).
    pub free: u32,
    /// The longest delay, in seconds (at least 1).
    pub max_delay: i64,
    /// A counter with no attempt for this many seconds starts over. Longer than
    /// `max_delay`, so that waiting out a delay never clears the count.
    pub reset_after: i64,
}

impl Budget {
    /// A budget of `free` attempts with delays up to `max_delay` seconds, forgotten after
    /// 15 minutes without an attempt (or `2 × max_delay`, whichever is longer).
    pub fn new(free: u32, max_delay: i64) -> Budget {
        let max_delay = max_delay.max(1);
        Budget {
            free: free.max(1),
            max_delay,
            reset_after: (15 * 60).max(2 * max_delay),
        }
    }

    /// The delay imposed after the `failures`-th counted attempt, if any.
    fn delay(&self, failures: u32) -> Option<i64> {
        let over = failures.checked_sub(self.free)?;
        Some((1i64 << over.min(40)).min(self.max_delay))
    }

    /// The most attempts this budget admits in `window` seconds from a fresh counter,
    /// when every admitted attempt fails: what an attacker gets, at best.
    pub fn most_in(&self, window: i64) -> u64 {
        let mut counter = Counter::default();
        let mut at = 0;
        let mut admitted = 0;
        while at < window {
            if counter.blocked_until > at {
                at = counter.blocked_until;
                continue;
            }
            counter.count(self, at);
            admitted += 1;
        }
        admitted
    }
}

/// One counter as stored: attempts counted, when the last one was, and until when
/// further attempts must wait (seconds since the epoch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Attempts counted (failures, and attempts still in flight).
    pub failures: u32,
    /// When the last attempt was counted.
    pub last_at: i64,
    /// No attempt is admitted before this time.
    pub blocked_until: i64,
}

impl Counter {
    /// True when the counter holds nothing worth keeping at `now` (a store may delete it).
    pub fn is_spent(&self, budget: &Budget, now: i64) -> bool {
        self.failures == 0 || now - self.last_at >= budget.reset_after
    }

    fn count(&mut self, budget: &Budget, now: i64) {
        if now - self.last_at >= budget.reset_after {
            *self = Counter::default();
        }
        self.failures = self.failures.saturating_add(1);
        self.last_at = now;
        if let Some(delay) = budget.delay(self.failures) {
            self.blocked_until = self.blocked_until.max(now + delay);
        }
    }

    /// Takes one attempt off again (it succeeded, or was never checked). The delay it
    /// set, if any, shrinks to what the remaining count implies.
    fn uncount(&mut self, budget: &Budget) {
        self.failures = self.failures.saturating_sub(1);
        let implied = budget
            .delay(self.failures)
            .map_or(0, |delay| self.last_at + delay);
        self.blocked_until = self.blocked_until.min(implied);
    }
}

/// What a counter is for, which decides what a success does to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Attempts on one account from clients it does not know: a success clears it.
    Account,
    /// Attempts on one account from one known device: a success clears it.
    Device,
    /// Attempts from one client address, on any account: a success gives back its own
    /// attempt, so that many people behind one address who know their passwords never
    /// run it down.
    Address,
    /// Something every attempt spends, success or not (account creation per address).
    Spend,
}

/// One counter an attempt spends: its key in the store (`account:NAME`,
/// `address:IP`…), its budget, and its lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The counter's key.
    pub key: String,
    /// Its budget.
    pub budget: Budget,
    /// What a success does to it.
    pub lane: Lane,
}

/// The outcome of asking for admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead: the attempt is counted as a failure until it is settled.
    Admitted,
    /// Wait this many seconds (at least 1); nothing was counted.
    Refused {
        /// Seconds until the earliest counter admits again.
        retry_after: i64,
    },
}

/// Decides whether an attempt that spends every counter in `counters` may go ahead at
/// `now`, and if so counts it in each. All or nothing: when one counter refuses, none
/// is changed.
pub fn admit(counters: &mut [(Budget, Counter)], now: i64) -> Admission {
    let wait = counters
        .iter()
        .filter(|(budget, c)| now - c.last_at < budget.reset_after)
        .map(|(_, c)| c.blocked_until - now)
        .max()
        .unwrap_or(0);
    if wait > 0 {
        return Admission::Refused { retry_after: wait };
    }
    for (budget, counter) in counters.iter_mut() {
        counter.count(budget, now);
    }
    Admission::Admitted
}

/// How an admitted attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// The password was right.
    Success,
    /// The password was wrong (the attempt stays counted).
    Failure,
    /// The password was never checked (the hasher was busy, the store failed): the
    /// attempt is given back everywhere except on [`Lane::Spend`] counters.
    NotChecked,
}

/// Applies the end of an admitted attempt to one of its counters.
pub fn settle(lane: Lane, budget: &Budget, counter: &mut Counter, how: Settlement) {
    match (how, lane) {
        (Settlement::Failure, _) | (_, Lane::Spend) => {}
        (Settlement::Success, Lane::Account | Lane::Device) => *counter = Counter::default(),
        (Settlement::Success, Lane::Address) | (Settlement::NotChecked, _) => {
            counter.uncount(budget);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(budget: Budget) -> (Budget, Counter) {
        (budget, Counter::default())
    }

    #[test]
    fn delays_start_after_the_free_attempts_double_and_are_capped() {
        let b = Budget::new(3, 60);
        let mut c = [fresh(b)];
        for _ in 0..2 {
            assert_eq!(admit(&mut c, 1000), Admission::Admitted);
        }
        assert_eq!(admit(&mut c, 1000), Admission::Admitted);
        // The third set a one-second delay.
        assert_eq!(admit(&mut c, 1000), Admission::Refused { retry_after: 1 });
        assert_eq!(admit(&mut c, 1001), Admission::Admitted);
        assert_eq!(admit(&mut c, 1001), Admission::Refused { retry_after: 2 });
        let mut at = 1003;
        for _ in 0..20 {
            if let Admission::Refused { retry_after } = admit(&mut c, at) {
                at += retry_after;
            }
        }
        assert_eq!(c[0].1.blocked_until - c[0].1.last_at, 60, "capped");
    }

    #[test]
    fn refusals_count_nothing() {
        let b = Budget::new(5, 60);
        let mut c = [fresh(b)];
        let admitted = (0..60)
            .filter(|_| admit(&mut c, 5000) == Admission::Admitted)
            .count();
        assert_eq!(admitted, 5);
        assert_eq!(c[0].1.failures, 5);
    }

    #[test]
    fn one_blocked_counter_refuses_and_leaves_the_others_unchanged() {
        let mut c = [fresh(Budget::new(1, 60)), fresh(Budget::new(10, 60))];
        assert_eq!(admit(&mut c, 0), Admission::Admitted);
        let before = c;
        assert!(matches!(admit(&mut c, 0), Admission::Refused { .. }));
        assert_eq!(c, before);
    }

    #[test]
    fn success_clears_account_and_device_gives_back_on_address_and_spends_signups() {
        let b = Budget::new(2, 60);
        let mut account = Counter::default();
        let mut device = Counter::default();
        let mut address = Counter::default();
        let mut spend = Counter::default();
        for c in [&mut account, &mut device, &mut address, &mut spend] {
            c.count(&b, 10);
            c.count(&b, 10);
        }
        assert_eq!(address.blocked_until, 11);
        settle(Lane::Account, &b, &mut account, Settlement::Success);
        settle(Lane::Device, &b, &mut device, Settlement::Success);
        settle(Lane::Address, &b, &mut address, Settlement::Success);
        settle(Lane::Spend, &b, &mut spend, Settlement::Success);
        assert_eq!(account, Counter::default());
        assert_eq!(device, Counter::default());
        assert_eq!(address.failures, 1);
        assert_eq!(
            address.blocked_until, 0,
            "the success's own delay is lifted"
        );
        assert_eq!(spend.failures, 2);
        settle(Lane::Account, &b, &mut spend, Settlement::Failure);
        assert_eq!(spend.failures, 2);
    }

    #[test]
    fn old_attempts_are_forgotten() {
        let b = Budget::new(1, 60);
        let mut c = [fresh(b)];
        assert_eq!(admit(&mut c, 0), Admission::Admitted);
        assert!(matches!(admit(&mut c, 0), Admission::Refused { .. }));
        assert_eq!(admit(&mut c, b.reset_after), Admission::Admitted);
        assert_eq!(c[0].1.failures, 1);
        assert!(c[0].1.is_spent(&b, 2 * b.reset_after));
    }

    #[test]
    fn the_attack_budget_matches_the_schedule() {
        // 5 free, then waits of 1, 2, 4, 8, 16, 32, 60, 60… seconds.
        let b = Budget::new(5, 60);
        assert_eq!(b.most_in(1), 5);
        assert_eq!(b.most_in(2), 6);
        assert_eq!(b.most_in(180), 12);
        // 5 at 0 s, one each at 1, 3, 7, 15 and 31 s, then one a minute from 63 s.
        assert_eq!(b.most_in(3600), 5 + 5 + (3600u64 - 63).div_ceil(60));
    }
}
