//! Revoked sessions and per-user "not before" times, in memory, consulted after a
//! token verifies. The Portcullis server keeps one for its own bearer checks; a
//! resource server keeps one fed from the server's revocation feed
//! (`GET /auth/revocations?since=CURSOR`, see docs/http-api.md).

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

use crate::jwt::Claims;
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
#[derive(Debug, Default)]
pub struct RevocationList {
    sessions: RwLock<HashSet<String>>,
    not_before: RwLock<HashMap<String, i64>>,
    cursor: AtomicI64,
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> RevocationList {
        RevocationList::default()
    }

    /// Records a revoked session.
    pub fn revoke_session(&self, sid: &str) {
        write(&self.sessions).insert(sid.to_owned());
    }

    /// Moves a user's "not before" (never backwards).
    pub fn set_not_before(&self, sub: &str, at: i64) {
        let mut map = write(&self.not_before);
        let entry = map.entry(sub.to_owned()).or_insert(at);
        *entry = (*entry).max(at);
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
    fn check(&self, claims: &Claims) -> Result<(), TokenFailure> {
        if let Some(sid) = &claims.sid
            && read(&self.sessions).contains(sid)
        {
            return Err(TokenFailure::SessionRevoked);
        }
        if let (Some(sub), Some(iat)) = (&claims.sub, claims.iat)
            && let Some(&nbf) = read(&self.not_before).get(sub)
            && (iat as i64) < nbf
        {
            return Err(TokenFailure::IssuedBeforeLogout);
        }
        Ok(())
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

    fn claims(sid: &str, sub: &str, iat: u64) -> Claims {
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
}
