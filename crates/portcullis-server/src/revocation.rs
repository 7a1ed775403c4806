//! What the bearer check consults after a token verifies, all in memory: revoked
//! sessions (`sid`) and per-user "not before" times. Filled at start from the database
//! and kept current by reading the event log, so no request ever waits on the database.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use portcullis::jwt::Claims;
use portcullis::rejection::TokenFailure;
use portcullis_store::{Event, EventKind, RevokedState};

/// Revoked sessions and "not before" times.
#[derive(Debug, Default)]
pub struct Revocations {
    families: RwLock<HashSet<String>>,
    not_before: RwLock<HashMap<String, i64>>,
}

impl Revocations {
    /// Starts from what the database says is still relevant.
    pub fn from_state(state: RevokedState) -> Revocations {
        Revocations {
            families: RwLock::new(state.families.into_iter().collect()),
            not_before: RwLock::new(state.not_before.into_iter().collect()),
        }
    }

    /// Records a revoked session.
    pub fn revoke_family(&self, family: &str) {
        write(&self.families).insert(family.to_owned());
    }

    /// Moves a user's "not before".
    pub fn set_not_before(&self, user: &str, at: i64) {
        let mut map = write(&self.not_before);
        let entry = map.entry(user.to_owned()).or_insert(at);
        *entry = (*entry).max(at);
    }

    /// Applies one event from the log; true when it was a key change.
    pub fn apply(&self, event: &Event) -> bool {
        match event.kind {
            EventKind::FamilyRevoked => self.revoke_family(&event.subject),
            EventKind::UserNotBefore => self.set_not_before(&event.subject, event.at),
            EventKind::KeysChanged => return true,
        }
        false
    }

    /// Refuses a verified token whose session is revoked or that predates its user's
    /// last "log out everywhere".
    pub fn check(&self, claims: &Claims) -> Result<(), TokenFailure> {
        if let Some(sid) = &claims.sid
            && read(&self.families).contains(sid)
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
