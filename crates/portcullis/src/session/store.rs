//! What a session store keeps, and the trait a store implements.

use super::error::Error;
use super::secret::SessionHash;
use crate::clock::secs;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A session to store.
#[derive(Clone, Debug)]
pub struct NewSession {
    /// The public id (safe to show and log; it is not the secret).
    pub id: String,
    /// The hash of the secret.
    pub hash: SessionHash,
    /// The user.
    pub subject: String,
    /// Scopes granted, space separated.
    pub scope: String,
    /// What started it, for the user's device list (a browser's `User-Agent`).
    pub label: String,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// When it ends at the latest (absolute timeout).
    pub expires_at: i64,
}

/// A live session, as the store returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionRecord {
    /// The public id.
    pub id: String,
    /// The user.
    pub subject: String,
    /// Scopes granted, space separated.
    pub scope: String,
    /// What started it.
    pub label: String,
    /// When it started.
    pub created_at: i64,
    /// When it was last used (written at most once per touch interval).
    pub last_seen_at: i64,
    /// When it ends at the latest.
    pub expires_at: i64,
    /// How its sign-in was authenticated: RFC 8176 `amr` values, space separated
    /// (`pwd`, `otp`, `hwk`, `mfa`, …); empty when the store does not say.
    pub amr: String,
}

impl SessionRecord {
    /// A session as a store reads it back: started at `created_at`, used last then,
    /// ending at `expires_at` at the latest, with no label. (The struct will grow; a
    /// store builds it here and with the `with_` methods.)
    pub fn new(
        id: impl Into<String>,
        subject: impl Into<String>,
        scope: impl Into<String>,
        created_at: i64,
        expires_at: i64,
    ) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            subject: subject.into(),
            scope: scope.into(),
            label: String::new(),
            created_at,
            last_seen_at: created_at,
            expires_at,
            amr: String::new(),
        }
    }

    /// How its sign-in was authenticated (RFC 8176 values, space separated).
    #[must_use]
    pub fn with_amr(mut self, amr: impl Into<String>) -> SessionRecord {
        self.amr = amr.into();
        self
    }

    /// What started it (the label the account page shows).
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> SessionRecord {
        self.label = label.into();
        self
    }

    /// When it was last used.
    #[must_use]
    pub fn with_last_seen_at(mut self, at: i64) -> SessionRecord {
        self.last_seen_at = at;
        self
    }

    /// True when the session has ended by time: idle too long, or past its end.
    pub fn is_expired(&self, now: i64, idle: Duration) -> bool {
        now >= self.expires_at || now.saturating_sub(self.last_seen_at) >= secs(idle)
    }
}

/// The future a [`SessionStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Where sessions live. Object-safe (`Arc<dyn SessionStore>`): the server picks SQLite
/// or PostgreSQL at run time (portcullis-store implements this for both);
/// [`super::MemorySessionStore`] is for unit tests and single-process toys.
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session.
    fn create_session<'a>(&'a self, session: &'a NewSession) -> StoreFuture<'a, ()>;

    /// The live (not revoked) session with this secret hash, if any. A store may also
    /// refuse sessions of users it knows to be disabled.
    fn find_session<'a>(&'a self, hash: &'a SessionHash) -> StoreFuture<'a, Option<SessionRecord>>;

    /// [`find_session`](Self::find_session), as a shared record: what
    /// [`super::Sessions::lookup`] calls on every request with a cookie. A store that
    /// keeps records in memory (a cache in front of a database) overrides it to hand
    /// out its own copy instead of cloning the record's strings per request; the
    /// default wraps `find_session`.
    fn find_session_shared<'a>(
        &'a self,
        hash: &'a SessionHash,
    ) -> StoreFuture<'a, Option<Arc<SessionRecord>>> {
        Box::pin(async move { Ok(self.find_session(hash).await?.map(Arc::new)) })
    }

    /// The live session with this secret hash when the store can say so at once, from
    /// memory, without waiting; `None` when it would have to ask (a miss, or a store
    /// that keeps nothing in memory: the default), which says nothing about whether
    /// the session exists. [`super::Sessions`] answers a request from it without a
    /// boxed future when it can, and otherwise calls
    /// [`find_session_shared`](Self::find_session_shared). A store that answers here
    /// must be as strict as `find_session_shared` would be at the same moment.
    fn cached_session(&self, hash: &SessionHash) -> Option<Arc<SessionRecord>> {
        let _ = hash;
        None
    }

    /// Records that the session was used at `at`.
    fn touch_session<'a>(&'a self, id: &'a str, at: i64) -> StoreFuture<'a, ()>;

    /// Revokes the session `id` if it belongs to `subject` (or whoever's it is, when
    /// `subject` is `None`); true when a live session was revoked.
    fn revoke_session<'a>(
        &'a self,
        id: &'a str,
        subject: Option<&'a str>,
        at: i64,
    ) -> StoreFuture<'a, bool>;

    /// Revokes every live session of `subject`; their ids.
    fn revoke_sessions_of<'a>(&'a self, subject: &'a str, at: i64) -> StoreFuture<'a, Vec<String>>;

    /// The live sessions of `subject`, newest first (expired ones may be included; the
    /// caller filters by time).
    fn sessions_of<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Vec<SessionRecord>>;
}
