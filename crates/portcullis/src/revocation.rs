//! Revoked sessions and per-user "not before" times, in memory, consulted after a
//! token verifies. The Portcullis server keeps one for its own bearer checks; a
//! resource server keeps one fed from the server's revocation feed
//! (`GET /auth/revocations?since=CURSOR`, see docs/http-api.md).

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

use crate::jwt::{Claims, VerifiedToken};
use crate::rejection::TokenFailure;
use crate::strategy::RevocationCheck;

/// One page of the revocation feed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationFeed {
    /// Pass this as `since` next time.
    pub cursor: i64,
    /// Sessions (`sid`) revoked since the previous cursor.
    pub revoked_sessions: Vec<String>,
    /// Users whose tokens issued before `at` are refused.
    pub not_before: Vec<NotBefore>,
    /// More pages are waiting: ask again at once.
    pub more: bool,
}

/// A user's "not before" time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotBefore {
    /// The user (`sub`).
    pub sub: String,
    /// Seconds since the epoch.
    pub at: i64,
}

/// The in-memory revocation state. Reads take a shared lock; no I/O.
///
/// It stays small if [`RevocationList::prune`] is called now and then: an entry only
/// matters while a token it could refuse is still unexpired.
#[derive(Debug, Default)]
pub struct RevocationList {
    sessions: RwLock<Generations>,
    not_before: RwLock<HashMap<String, i64>>,
    cursor: AtomicI64,
}

/// Revoked `sid`s in two generations: each prune drops the older one, so an entry is
/// kept for at least one pruning period and at most two.
#[derive(Debug, Default)]
struct Generations {
    current: HashSet<String>,
    previous: HashSet<String>,
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> RevocationList {
        RevocationList::default()
    }

    /// Records a revoked session.
    pub fn revoke_session(&self, sid: &str) {
        write(&self.sessions).current.insert(sid.to_owned());
    }

    /// Forgets what can no longer refuse any token. Call it every `period`, where
    /// `period` is at least the longest lifetime of a token you accept plus the
    /// verifier's leeway, with `before = now - period`: revoked sessions are kept for
    /// one to two periods after their revocation and "not before" times earlier than
    /// `before` are dropped, and by then every token they could refuse has expired.
    pub fn prune(&self, before: i64) {
        {
            let mut sessions = write(&self.sessions);
            sessions.previous = std::mem::take(&mut sessions.current);
        }
        write(&self.not_before).retain(|_, at| *at >= before);
    }

    /// How many revoked sessions and "not before" times are held, for metrics.
    pub fn len(&self) -> (usize, usize) {
        let sessions = read(&self.sessions);
        (
            sessions.current.len() + sessions.previous.len(),
            read(&self.not_before).len(),
        )
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// Moves a user's "not before" (never backwards).
    pub fn set_not_before(&self, sub: &str, at: i64) {
        let mut map = write(&self.not_before);
        let entry = map.entry(sub.to_owned()).or_insert(at);
        *entry = (*entry).max(at);
    }

    /// A subject's "not before", if one is held: its tokens with an `iat` earlier
    /// than this are refused.
    pub fn not_before(&self, sub: &str) -> Option<i64> {
        read(&self.not_before).get(sub).copied()
    }

    /// Applies a page of the feed and advances the cursor.
    pub fn apply(&self, feed: &RevocationFeed) {
        for sid in &feed.revoked_sessions {
            self.revoke_session(sid);
        }
        for nb in &feed.not_before {
            self.set_not_before(&nb.sub, nb.at);
        }
        self.cursor.fetch_max(feed.cursor, Ordering::AcqRel);
    }

    /// The cursor to ask the feed from.
    pub fn cursor(&self) -> i64 {
        self.cursor.load(Ordering::Acquire)
    }
}

impl RevocationCheck for RevocationList {
    // Reads `sid`, `sub` and `iat` alone.
    fn check_token(&self, token: &VerifiedToken) -> Result<(), TokenFailure> {
        self.check(token.registered_claims())
    }

    fn check(&self, claims: &Claims) -> Result<(), TokenFailure> {
        if let Some(sid) = &claims.sid
            && read(&self.sessions).contains(sid)
        {
            return Err(TokenFailure::SessionRevoked);
        }
        if let (Some(sub), Some(iat)) = (&claims.sub, claims.iat)
            && let Some(&nbf) = read(&self.not_before).get(sub)
            && iat < nbf
        {
            return Err(TokenFailure::IssuedBeforeLogout);
        }
        Ok(())
    }
}

impl Generations {
    fn contains(&self, sid: &str) -> bool {
        self.current.contains(sid) || self.previous.contains(sid)
    }
}

// A poisoned lock only means a writer panicked between two complete updates of a set;
// the data is still consistent, so keep serving.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sid: &str, sub: &str, iat: i64) -> Claims {
        Claims {
            sid: Some(sid.into()),
            sub: Some(sub.into()),
            iat: Some(iat),
            ..Claims::default()
        }
    }

    #[test]
    fn revoked_sessions_and_old_tokens_are_refused() {
        let list = RevocationList::new();
        assert!(list.check(&claims("s1", "u1", 100)).is_ok());
        list.apply(&RevocationFeed {
            cursor: 7,
            revoked_sessions: vec!["s1".into()],
            not_before: vec![NotBefore {
                sub: "u2".into(),
                at: 200,
            }],
            more: false,
        });
        assert_eq!(
            list.check(&claims("s1", "u1", 100)),
            Err(TokenFailure::SessionRevoked)
        );
        assert_eq!(
            list.check(&claims("s2", "u2", 199)),
            Err(TokenFailure::IssuedBeforeLogout)
        );
        assert!(list.check(&claims("s2", "u2", 200)).is_ok());
        assert_eq!(list.cursor(), 7);
        list.set_not_before("u2", 150);
        assert_eq!(
            list.check(&claims("s2", "u2", 199)),
            Err(TokenFailure::IssuedBeforeLogout),
            "never backwards"
        );
    }

    #[test]
    fn pruning_keeps_entries_for_one_to_two_periods() {
        let list = RevocationList::new();
        list.revoke_session("old");
        list.set_not_before("u1", 100);
        list.set_not_before("u2", 1000);
        assert_eq!(list.len(), (1, 2));
        // First prune: "old" survives (one period), u1's time is before the cut.
        list.prune(500);
        list.revoke_session("new");
        assert_eq!(
            list.check(&claims("old", "x", 0)),
            Err(TokenFailure::SessionRevoked)
        );
        assert!(list.check(&claims("s", "u1", 50)).is_ok());
        assert_eq!(
            list.check(&claims("s", "u2", 999)),
            Err(TokenFailure::IssuedBeforeLogout)
        );
        // Second prune: "old" goes, "new" stays.
        list.prune(600);
        assert!(list.check(&claims("old", "x", 0)).is_ok());
        assert_eq!(
            list.check(&claims("new", "x", 0)),
            Err(TokenFailure::SessionRevoked)
        );
        assert_eq!(list.len(), (1, 1));
        list.prune(2000);
        list.prune(2000);
        assert!(list.is_empty());
    }
}
