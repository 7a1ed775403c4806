//! Cookie sessions, beside tokens: the classic way for browsers and server-rendered
//! pages (what `express-session` is to Express).
//!
//! A session is a row in a [`SessionStore`], found by the SHA-256 of a random secret
//! that lives only in the browser's cookie. [`Sessions`] starts and ends them and
//! writes the cookie; the [`crate::strategy::Session`] strategy authenticates requests
//! that carry it, so one route can accept a bearer token or a session.
//!
//! The rules (../shared/SECURITY.md, "Cookie sessions"), and where they hold:
//!
//! - **Cookie attributes.** `__Host-` prefix, `Secure`, `HttpOnly`, `SameSite=Lax`,
//!   `Path=/`, no `Domain` ([`SessionConfig::for_origin`] with an `https` origin).
//!   Plain `http` on a loopback host (`localhost`, `127.0.0.1`, `[::1]`) is the one
//!   documented exception, for development: the cookie then drops the prefix and
//!   `Secure`, which browsers refuse over plain HTTP. Any other `http` origin is a
//!   configuration error unless explicitly allowed with
//!   [`SessionConfig::insecure_allow_http`].
//! - **A new id at login.** [`Sessions::start`] always makes a fresh 256-bit secret; an
//!   id the server did not issue matches no row, so it is never adopted.
//! - **Ids stored hashed.** The store sees the SHA-256 of the secret only.
//! - **Server-side invalidation.** [`Sessions::end`] and [`Sessions::end_all`] mark
//!   rows revoked; the cookie stops working at once on every instance.
//! - **Idle and absolute timeouts**, checked on every request by the strategy.
//! - **CSRF.** Every state-changing request authenticated by the cookie passes
//!   [`csrf::check_request`] (Fetch Metadata, then `Origin`, then an `X-CSRF-Token`
//!   header); HTML forms also carry the session's synchronizer token, checked with
//!   [`SessionContext::check_csrf_token`].
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use portcullis::clock::SystemClock;
//! use portcullis::middleware::{AuthLayer, Authenticated};
//! use portcullis::session::{MemorySessionStore, SessionConfig, Sessions};
//! use portcullis::strategy::{Chain, Session};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sessions = Sessions::new(
//!     // portcullis-store implements the store on SQLite and PostgreSQL.
//!     Arc::new(MemorySessionStore::new()),
//!     SessionConfig::for_origin("https://app.example")?,
//!     Arc::new(SystemClock),
//! );
//! let app: Router = Router::new()
//!     .route("/me", get(|auth: Authenticated| async move {
//!         auth.identity.subject().to_owned()
//!     }))
//!     .layer(AuthLayer::required(Chain::new().with(Session::new(sessions.clone()))));
//!
//! // In your login handler, once the password checked out: a brand-new session, and
//! // the `Set-Cookie` value to answer with.
//! let started = sessions.start("user-42", "read", "Firefox on Linux").await?;
//! assert!(started.set_cookie.to_str()?.starts_with("__Host-portcullis_session="));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

pub mod csrf;
mod memory;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use http::{HeaderMap, HeaderValue, header};
pub use memory::MemorySessionStore;

use crate::b64;
use crate::clock::Clock;
use crate::rejection::Rejection;

/// Defaults to 30 minutes: a session unused for longer ends.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Defaults to 12 hours: no session lives longer, however busy.
pub const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);
/// Defaults to 60 seconds: "last seen" is written at most this often per session, so a
/// busy session does not cost a database write per request.
pub const DEFAULT_TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// The cookie name on `https` origins (the `__Host-` prefix binds it to this host, path
/// `/`, secure only).
pub const SECURE_COOKIE_NAME: &str = "__Host-portcullis_session";
/// The cookie name in plain-`http` development.
pub const DEV_COOKIE_NAME: &str = "portcullis_session";

/// Why a session configuration is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The origin is not `scheme://host[:port]` with an http(s) scheme.
    #[error("invalid origin {0:?}: expected https://host[:port]")]
    InvalidOrigin(String),
    /// Plain `http` on a host that is not loopback.
    #[error(
        "sessions over plain http are only allowed on localhost: {0:?} (use https, or allow it explicitly for tests)"
    )]
    InsecureOrigin(String),
    /// The idle timeout is longer than the absolute one, or either is zero.
    #[error("session timeouts must be positive, with idle <= absolute")]
    Timeouts,
}

/// How sessions behave. Build with [`SessionConfig::for_origin`].
#[derive(Clone, Debug)]
pub struct SessionConfig {
    origin: String,
    extra_origins: Vec<String>,
    secure: bool,
    idle: Duration,
    absolute: Duration,
    touch_interval: Duration,
}

impl SessionConfig {
    /// Sessions for the site at `origin` (`https://app.example`, or
    /// `http://localhost:8080` in development): the cookie's attributes follow from its
    /// scheme, and it is the origin that state-changing requests must come from.
    pub fn for_origin(origin: &str) -> Result<SessionConfig, ConfigError> {
        Self::build(origin, false)
    }

    /// Like [`SessionConfig::for_origin`], but accepts plain `http` on any host, with a
    /// cookie that is not `Secure`. For test setups on private names only: anyone on
    /// the network path can read such a cookie.
    pub fn insecure_allow_http(origin: &str) -> Result<SessionConfig, ConfigError> {
        Self::build(origin, true)
    }

    fn build(origin: &str, allow_http: bool) -> Result<SessionConfig, ConfigError> {
        let origin = normalize_origin(origin)?;
        let secure = origin.starts_with("https://");
        if !secure && !allow_http && !is_loopback_origin(&origin) {
            return Err(ConfigError::InsecureOrigin(origin));
        }
        Ok(SessionConfig {
            origin,
            extra_origins: Vec::new(),
            secure,
            idle: DEFAULT_IDLE_TIMEOUT,
            absolute: DEFAULT_ABSOLUTE_TIMEOUT,
            touch_interval: DEFAULT_TOUCH_INTERVAL,
        })
    }

    /// Sets the idle and absolute timeouts. Defaults to [`DEFAULT_IDLE_TIMEOUT`] and
    /// [`DEFAULT_ABSOLUTE_TIMEOUT`].
    pub fn with_timeouts(
        mut self,
        idle: Duration,
        absolute: Duration,
    ) -> Result<SessionConfig, ConfigError> {
        if idle.is_zero() || absolute.is_zero() || idle > absolute {
            return Err(ConfigError::Timeouts);
        }
        self.idle = idle;
        self.absolute = absolute;
        self.touch_interval = self.touch_interval.min(idle / 2);
        Ok(self)
    }

    /// Also accepts state-changing requests whose `Origin` is `origin` (another front
    /// end of the same site).
    pub fn with_allowed_origin(mut self, origin: &str) -> Result<SessionConfig, ConfigError> {
        self.extra_origins.push(normalize_origin(origin)?);
        Ok(self)
    }

    /// The cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            SECURE_COOKIE_NAME
        } else {
            DEV_COOKIE_NAME
        }
    }

    /// True when the cookie is `Secure` (an `https` origin).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The site's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle
    }

    /// The absolute timeout.
    pub fn absolute_timeout(&self) -> Duration {
        self.absolute
    }

    pub(crate) fn origin_allowed(&self, origin: &str) -> bool {
        self.origin == origin || self.extra_origins.iter().any(|o| o == origin)
    }

    /// The `Set-Cookie` value that installs `secret`.
    fn set_cookie(&self, secret: &SessionSecret) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let value = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            self.cookie_name(),
            secret.0,
            self.absolute.as_secs()
        );
        // The secret is base64url and the rest is fixed ASCII.
        let mut value =
            HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""));
        // Kept out of `Debug` output and of HTTP/2 header compression tables.
        value.set_sensitive(true);
        value
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        if self.secure {
            HeaderValue::from_static(
                "__Host-portcullis_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure",
            )
        } else {
            HeaderValue::from_static(
                "portcullis_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
            )
        }
    }

    /// The session secret a request's cookies carry: `None` when there is none, when it
    /// is not the shape we issue, or when the name appears more than once (a cookie
    /// planted beside ours must not choose which one counts).
    pub fn secret_from(&self, headers: &HeaderMap) -> Option<SessionSecret> {
        let name = self.cookie_name();
        let mut found: Option<&str> = None;
        for value in headers.get_all(header::COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for pair in value.split(';') {
                let Some((k, v)) = pair.trim().split_once('=') else {
                    continue;
                };
                if k == name {
                    if found.is_some() {
                        return None;
                    }
                    found = Some(v);
                }
            }
        }
        SessionSecret::parse(found?)
    }
}

/// An origin as a browser serializes it in `Origin`: lower-case scheme and host (IDNA
/// applied), and no port when it is the scheme's default — so `https://App.example:443`
/// and `https://app.example` are one origin. Parsed with the `url` crate (the WHATWG
/// URL rules browsers follow), never compared as raw text. Only `http` and `https`
/// origins, with nothing after the authority but an optional `/`.
pub(crate) fn origin_of(text: &str) -> Option<String> {
    let url = url::Url::parse(text.trim()).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    let origin = url.origin();
    (plain && origin.is_tuple()).then(|| origin.ascii_serialization())
}

fn normalize_origin(origin: &str) -> Result<String, ConfigError> {
    origin_of(origin).ok_or_else(|| ConfigError::InvalidOrigin(origin.to_owned()))
}

fn is_loopback_origin(origin: &str) -> bool {
    // An address, or the one name that always means this machine; never a name that
    // merely starts like a loopback address (127.0.0.1.example.net).
    match url::Url::parse(origin)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The secret of a session: 256 random bits, base64url, the cookie's value. Only its
/// hash is ever stored.
pub struct SessionSecret(String);

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecret([redacted])")
    }
}

impl Drop for SessionSecret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl SessionSecret {
    /// A new random secret.
    pub fn generate() -> Result<SessionSecret, Error> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Random)?;
        let secret = SessionSecret(b64::encode(&bytes));
        zeroize::Zeroize::zeroize(&mut bytes);
        Ok(secret)
    }

    /// Parses a presented secret: exactly the shape [`SessionSecret::generate`] makes.
    pub fn parse(text: &str) -> Option<SessionSecret> {
        (text.len() == 43
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| SessionSecret(text.to_owned()))
    }

    /// The hash the store keeps.
    pub fn hash(&self) -> SessionHash {
        let d = digest::digest(&digest::SHA256, self.0.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        SessionHash(out)
    }

    /// The synchronizer (CSRF) token of this session: derived from the secret with a
    /// domain-separated hash, so it needs no storage, cannot be computed without the
    /// cookie, and does not reveal the cookie.
    fn csrf_token(&self) -> String {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"portcullis csrf token v1\0");
        ctx.update(self.0.as_bytes());
        b64::encode(ctx.finish().as_ref())
    }
}

/// SHA-256 of a session secret: what the store looks sessions up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionHash(pub [u8; 32]);

impl std::fmt::Debug for SessionHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionHash([redacted])")
    }
}

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
}

impl SessionRecord {
    /// True when the session has ended by time: idle too long, or past its end.
    pub fn is_expired(&self, now: i64, idle: Duration) -> bool {
        now >= self.expires_at || now.saturating_sub(self.last_seen_at) >= idle.as_secs() as i64
    }
}

/// What a request authenticated by a session knows about it: in
/// [`crate::strategy::Identity::session`].
#[derive(Clone)]
pub struct SessionContext {
    record: SessionRecord,
    csrf_token: String,
}

impl std::fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionContext")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl SessionContext {
    pub(crate) fn new(record: SessionRecord, secret: &SessionSecret) -> SessionContext {
        SessionContext {
            record,
            csrf_token: secret.csrf_token(),
        }
    }

    /// The session's public id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The stored session.
    pub fn record(&self) -> &SessionRecord {
        &self.record
    }

    /// The synchronizer token to put in this session's HTML forms.
    pub fn csrf_token(&self) -> &str {
        &self.csrf_token
    }

    /// Checks a form's synchronizer token, in constant time.
    pub fn check_csrf_token(&self, presented: &str) -> Result<(), Rejection> {
        if aws_lc_rs::constant_time::verify_slices_are_equal(
            presented.as_bytes(),
            self.csrf_token.as_bytes(),
        )
        .is_ok()
        {
            Ok(())
        } else {
            Err(Rejection::CrossSiteRequest)
        }
    }
}

/// A session store failed, or randomness was unavailable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not answer (down, timed out, …).
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The system's random generator failed.
    #[error("no randomness available")]
    Random,
}

/// The future a [`SessionStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Where sessions live. Object-safe (`Arc<dyn SessionStore>`): the server picks SQLite
/// or PostgreSQL at run time (portcullis-store implements this for both);
/// [`MemorySessionStore`] is for unit tests and single-process toys.
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session.
    fn create_session<'a>(&'a self, session: &'a NewSession) -> StoreFuture<'a, ()>;

    /// The live (not revoked) session with this secret hash, if any. A store may also
    /// refuse sessions of users it knows to be disabled.
    fn find_session<'a>(&'a self, hash: &'a SessionHash) -> StoreFuture<'a, Option<SessionRecord>>;

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
        self.clock.now() as i64
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
            expires_at: now + self.config.absolute.as_secs() as i64,
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
        };
        Ok(Started {
            context: SessionContext::new(record, &secret),
            set_cookie: self.config.set_cookie(&secret),
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

    /// The session a request's cookie names, if it is live: expired sessions are
    /// revoked on sight, and "last seen" is refreshed once per touch interval.
    pub async fn lookup(&self, headers: &HeaderMap) -> Result<Option<SessionContext>, Error> {
        let Some(secret) = self.config.secret_from(headers) else {
            return Ok(None);
        };
        let Some(record) = self.store.find_session(&secret.hash()).await? else {
            return Ok(None);
        };
        let now = self.now();
        if record.is_expired(now, self.config.idle) {
            if let Err(e) = self.store.revoke_session(&record.id, None, now).await {
                tracing::warn!(error = %e, "could not revoke an expired session");
            }
            return Ok(None);
        }
        let mut record = record;
        if now - record.last_seen_at >= self.config.touch_interval.as_secs() as i64 {
            match self.store.touch_session(&record.id, now).await {
                Ok(()) => record.last_seen_at = now,
                Err(e) => tracing::warn!(error = %e, "could not record session use"),
            }
        }
        Ok(Some(SessionContext::new(record, &secret)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A session of user `u`, last used at `last_seen_at`, ending at `expires_at`.
    pub(crate) fn record(last_seen_at: i64, expires_at: i64) -> SessionRecord {
        SessionRecord {
            id: "s".into(),
            subject: "u".into(),
            scope: String::new(),
            label: String::new(),
            created_at: 0,
            last_seen_at,
            expires_at,
        }
    }

    #[test]
    fn https_origins_get_the_host_prefixed_secure_cookie() {
        let c = SessionConfig::for_origin("https://App.Example/").unwrap();
        assert_eq!(c.origin(), "https://app.example");
        assert_eq!(c.cookie_name(), "__Host-portcullis_session");
        let secret = SessionSecret::generate().unwrap();
        let cookie = c.set_cookie(&secret);
        let cookie = cookie.to_str().unwrap();
        for attr in ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"] {
            assert!(cookie.contains(attr), "{cookie}");
        }
        assert!(!cookie.contains("Domain"), "{cookie}");
        assert!(c.clear_cookie().to_str().unwrap().contains("Max-Age=0"));
        assert!(!format!("{:?}", c.set_cookie(&secret)).contains(&secret.0));
    }

    #[test]
    fn plain_http_is_only_for_loopback_unless_explicitly_allowed() {
        for ok in [
            "http://localhost:8080",
            "http://127.0.0.1:3000",
            "http://[::1]:80",
        ] {
            let c = SessionConfig::for_origin(ok).unwrap();
            assert!(!c.is_secure());
            assert_eq!(c.cookie_name(), "portcullis_session");
            assert!(
                !c.set_cookie(&SessionSecret::generate().unwrap())
                    .to_str()
                    .unwrap()
                    .contains("Secure")
            );
        }
        assert_eq!(
            SessionConfig::for_origin("http://app.example").unwrap_err(),
            ConfigError::InsecureOrigin("http://app.example".into())
        );
        for public in [
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "http://127.attacker.example",
            "http://[::2]:80",
        ] {
            assert!(SessionConfig::for_origin(public).is_err(), "{public}");
        }
        assert!(SessionConfig::insecure_allow_http("http://app.test").is_ok());
        for bad in ["ftp://x", "https://", "https://a/b", "app.example"] {
            assert!(SessionConfig::for_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeouts_are_checked() {
        let c = SessionConfig::for_origin("https://a.example").unwrap();
        assert!(
            c.clone()
                .with_timeouts(Duration::from_secs(10), Duration::from_secs(5))
                .is_err()
        );
        assert!(
            c.clone()
                .with_timeouts(Duration::ZERO, Duration::from_secs(5))
                .is_err()
        );
        let c = c
            .with_timeouts(Duration::from_secs(60), Duration::from_secs(600))
            .unwrap();
        assert_eq!(c.touch_interval, Duration::from_secs(30));
    }

    #[test]
    fn the_cookie_is_read_only_when_unambiguous_and_well_formed() {
        let c = SessionConfig::for_origin("https://a.example").unwrap();
        let secret = SessionSecret::generate().unwrap();
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let good = format!("theme=dark; __Host-portcullis_session={}", secret.0);
        assert_eq!(
            c.secret_from(&headers(&[&good])).unwrap().hash(),
            secret.hash()
        );
        // Split across two Cookie headers (HTTP/2 does this) still reads.
        assert!(
            c.secret_from(&headers(&[
                "a=b",
                &format!("__Host-portcullis_session={}", secret.0)
            ]))
            .is_some()
        );
        // Twice: refused, whichever is real.
        let twice = format!("{good}; __Host-portcullis_session={}", secret.0);
        assert!(c.secret_from(&headers(&[&twice])).is_none());
        // The dev name is not read on an https site, nor junk values.
        assert!(
            c.secret_from(&headers(&[&format!("portcullis_session={}", secret.0)]))
                .is_none()
        );
        assert!(
            c.secret_from(&headers(&["__Host-portcullis_session=abc"]))
                .is_none()
        );
        assert!(c.secret_from(&headers(&[])).is_none());
    }

    #[test]
    fn the_csrf_token_is_tied_to_the_secret_and_checked_exactly() {
        let a = SessionSecret::generate().unwrap();
        let b = SessionSecret::generate().unwrap();
        assert_ne!(a.csrf_token(), b.csrf_token());
        assert_ne!(a.csrf_token(), a.0);
        let ctx = SessionContext::new(record(0, 10), &a);
        assert!(ctx.check_csrf_token(&a.csrf_token()).is_ok());
        assert!(ctx.check_csrf_token(&b.csrf_token()).is_err());
        assert!(ctx.check_csrf_token("").is_err());
        assert!(!format!("{ctx:?}").contains(ctx.csrf_token()));
        assert!(!format!("{a:?}").contains(&a.0));
    }

    #[test]
    fn expiry_is_idle_or_absolute() {
        let r = record(100, 1000);
        let idle = Duration::from_secs(60);
        assert!(!r.is_expired(159, idle));
        assert!(r.is_expired(160, idle));
        let busy = SessionRecord {
            last_seen_at: 990,
            ..r
        };
        assert!(!busy.is_expired(999, idle));
        assert!(busy.is_expired(1000, idle));
    }
}
