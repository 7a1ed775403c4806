//! Injected time.
//!
//! Validation never reads the system clock directly: it asks a [`Clock`]. Production
//! code uses [`SystemClock`]; tests use [`ManualClock`] and move it instead of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in whole seconds since 1970-01-01T00:00:00Z: the one time type of
/// the library, the server and the store (JWT dates, database columns and clocks alike;
/// signed, as SQL integers are, so that differences need no casts).
pub type UnixTime = i64;

/// A length of time in whole seconds, as [`UnixTime`] arithmetic wants it. Durations
/// beyond `i64::MAX` seconds (never configured in practice) saturate.
pub fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The [`SystemTime`] of a [`UnixTime`], for formatting; times before 1970 show as 1970.
pub fn system_time(t: UnixTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t.max(0).unsigned_abs())
}

/// A source of the current time, in whole seconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since 1970-01-01T00:00:00Z.
    fn now(&self) -> UnixTime;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        // A clock set before 1970 is a broken host; treating it as the epoch makes every
        // token look issued in the future, which fails closed.
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, secs)
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing `now` seconds since the epoch.
    pub fn new(now: UnixTime) -> Self {
        Self(Arc::new(AtomicI64::new(now)))
    }

    /// Sets the time.
    pub fn set(&self, now: UnixTime) {
        self.0.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(100);
        let shared = clock.clone();
        assert_eq!(clock.now(), 100);
        shared.advance(5);
        assert_eq!(clock.now(), 105);
        clock.set(7);
        assert_eq!(shared.now(), 7);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > 1_577_836_800);
    }
}
