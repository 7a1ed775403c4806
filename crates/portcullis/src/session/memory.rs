//! An in-memory [`SessionStore`], for unit tests and single-process toys: sessions
//! vanish with the process.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Error, NewSession, SessionHash, SessionRecord, SessionStore, StoreFuture};

#[derive(Clone)]
struct Row {
    hash: SessionHash,
    record: SessionRecord,
    revoked: bool,
}

/// Sessions in a mutex-guarded map.
#[derive(Default)]
pub struct MemorySessionStore {
    rows: Mutex<HashMap<String, Row>>,
}

impl std::fmt::Debug for MemorySessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySessionStore").finish_non_exhaustive()
    }
}

impl MemorySessionStore {
    /// An empty store.
    pub fn new() -> MemorySessionStore {
        MemorySessionStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Row>) -> T) -> Result<T, Error> {
        let mut rows = self
            .rows
            .lock()
            .map_err(|_| Error::Unavailable("a thread panicked holding the lock".into()))?;
        Ok(f(&mut rows))
    }
}

fn ready<'a, T: Send + 'a>(value: Result<T, Error>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl SessionStore for MemorySessionStore {
    fn create_session<'a>(&'a self, s: &'a NewSession) -> StoreFuture<'a, ()> {
        ready(self.with(|rows| {
            rows.insert(
                s.id.clone(),
                Row {
                    hash: s.hash,
                    record: SessionRecord {
                        id: s.id.clone(),
                        subject: s.subject.clone(),
                        scope: s.scope.clone(),
                        label: s.label.clone(),
                        created_at: s.created_at,
                        last_seen_at: s.created_at,
                        expires_at: s.expires_at,
                        amr: String::new(),
                    },
                    revoked: false,
                },
            );
        }))
    }

    fn find_session<'a>(&'a self, hash: &'a SessionHash) -> StoreFuture<'a, Option<SessionRecord>> {
        ready(self.with(|rows| {
            rows.values()
                .find(|r| !r.revoked && r.hash == *hash)
                .map(|r| r.record.clone())
        }))
    }

    fn touch_session<'a>(&'a self, id: &'a str, at: i64) -> StoreFuture<'a, ()> {
        ready(self.with(|rows| {
            if let Some(r) = rows.get_mut(id) {
                r.record.last_seen_at = r.record.last_seen_at.max(at);
            }
        }))
    }

    fn revoke_session<'a>(
        &'a self,
        id: &'a str,
        subject: Option<&'a str>,
        _at: i64,
    ) -> StoreFuture<'a, bool> {
        ready(self.with(|rows| match rows.get_mut(id) {
            Some(r) if !r.revoked && subject.is_none_or(|s| s == r.record.subject) => {
                r.revoked = true;
                true
            }
            _ => false,
        }))
    }

    fn revoke_sessions_of<'a>(
        &'a self,
        subject: &'a str,
        _at: i64,
    ) -> StoreFuture<'a, Vec<String>> {
        ready(self.with(|rows| {
            rows.values_mut()
                .filter(|r| !r.revoked && r.record.subject == subject)
                .map(|r| {
                    r.revoked = true;
                    r.record.id.clone()
                })
                .collect()
        }))
    }

    fn sessions_of<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Vec<SessionRecord>> {
        ready(self.with(|rows| {
            rows.values()
                .filter(|r| !r.revoked && r.record.subject == subject)
                .map(|r| r.record.clone())
                .collect()
        }))
    }
}
