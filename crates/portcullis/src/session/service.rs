//! [`Sessions`]: starting, finding, listing and ending sessions.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use super::config::SessionConfig;
use super::context::SessionContext;
use super::error::Error;
use super::secret::SessionSecret;
use super::store::{NewSession, SessionRecord, SessionStore};
use crate::clock::{Clock, secs};

/// Starts, lists and ends sessions, and writes their cookies. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    config: Arc<SessionConfig>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A session just started: its context and the `Set-Cookie` value to send.
#[non_exhaustive]
pub struct Started {
    /// The new session.
    pub context: SessionContext,
    /// The `Set-Cookie` header value that installs it.
    pub set_cookie: HeaderValue,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("context", &self.context)
            .field("set_cookie", &"[redacted]")
            .finish()
    }
}

impl Sessions {
    /// Sessions in `store`, configured by `config`, timed by `clock`.
    pub fn new(
        store: Arc<dyn SessionStore>,
        config: SessionConfig,
        clock: Arc<dyn Clock>,
    ) -> Sessions {
        Sessions {
            store,
            config: Arc::new(config),
            clock,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Starts a session for `subject` with a brand-new secret (call it after a
    /// successful login; whatever cookie the request carried is not reused). `label`
    /// is shown in the user's device list; it is cut to 200 characters.
    pub async fn start(&self, subject: &str, scope: &str, label: &str) -> Result<Started, Error> {
        let secret = SessionSecret::generate()?;
        let now = self.now();
        let session = NewSession {
            id: crate::jwt::random_id().map_err(|_| Error::Random)?,
            hash: secret.hash(),
            subject: subject.to_owned(),
            scope: scope.to_owned(),
            label: label
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect(),
            created_at: now,
            expires_at: now + secs(self.config.absolute),
        };
        self.store.create_session(&session).await?;
        let record = SessionRecord {
            id: session.id,
            subject: session.subject,
            scope: session.scope,
            label: session.label,
            created_at: now,
            last_seen_at: now,
            expires_at: session.expires_at,
            amr: String::new(),
        };
        let set_cookie = self.config.set_cookie(&secret);
        Ok(Started {
            context: SessionContext::new(std::sync::Arc::new(record), secret),
            set_cookie,
        })
    }

    /// Ends session `id` if it belongs to `subject`; true when it was live.
    pub async fn end(&self, id: &str, subject: &str) -> Result<bool, Error> {
        self.store
            .revoke_session(id, Some(subject), self.now())
            .await
    }

    /// Ends every session of `subject`; their ids.
    pub async fn end_all(&self, subject: &str) -> Result<Vec<String>, Error> {
        self.store.revoke_sessions_of(subject, self.now()).await
    }

    /// The live sessions of `subject`, newest first.
    pub async fn list(&self, subject: &str) -> Result<Vec<SessionRecord>, Error> {
        let now = self.now();
        let mut sessions = self.store.sessions_of(subject).await?;
        sessions.retain(|s| !s.is_expired(now, self.config.idle));
        sessions.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(sessions)
    }

    /// [`Sessions::lookup`] when it can answer without waiting: the store has the
    /// session in memory ([`SessionStore::cached_session`]), it is live, and its "last
    /// seen" is not due to be written. `None` otherwise (no cookie, a miss, a session
    /// that looks ended or is due a touch): then `lookup` decides, and does what it
    /// must (ask the store, revoke, touch).
    pub fn lookup_now(&self, headers: &HeaderMap) -> Option<SessionContext> {
        self.cached(self.config.secret_from(headers)?)
    }

    /// [`Sessions::lookup_now`] for a secret already read from the cookie.
    pub(crate) fn cached(&self, secret: SessionSecret) -> Option<SessionContext> {
        let record = self.store.cached_session(&secret.hash())?;
        let now = self.now();
        if record.is_expired(now, self.config.idle) || self.touch_due(&record, now) {
            return None;
        }
        Some(SessionContext::new(record, secret))
    }

    /// True when the session's "last seen" is due to be written.
    fn touch_due(&self, record: &SessionRecord, now: i64) -> bool {
        now - record.last_seen_at >= secs(self.config.touch_interval)
    }

    /// The session a request's cookie names, if it is live: expired sessions are
    /// revoked on sight, and "last seen" is refreshed once per touch interval.
    pub async fn lookup(&self, headers: &HeaderMap) -> Result<Option<SessionContext>, Error> {
        let Some(secret) = self.config.secret_from(headers) else {
            return Ok(None);
        };
        let Some(mut record) = self.store.find_session_shared(&secret.hash()).await? else {
            return Ok(None);
        };
        let now = self.now();
        if record.is_expired(now, self.config.idle) {
            if let Err(e) = self.store.revoke_session(&record.id, None, now).await {
                tracing::warn!(error = %e, "could not revoke an expired session");
            }
            return Ok(None);
        }
        if self.touch_due(&record, now) {
            match self.store.touch_session(&record.id, now).await {
                // Our own copy from here on (a cache's stays as the store keeps it).
                Ok(()) => std::sync::Arc::make_mut(&mut record).last_seen_at = now,
                Err(e) => tracing::warn!(error = %e, "could not record session use"),
            }
        }
        Ok(Some(SessionContext::new(record, secret)))
    }
}
