//! The site a session belongs to: its origin, the cookie's attributes that follow from
//! it, and the timeouts.

use std::time::Duration;

use super::origin::{is_loopback_origin, origin_of};

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
/// The cookie name on `https` origins whose cookie covers a whole domain
/// ([`SessionConfig::with_cookie_domain`]): `__Host-` forbids a `Domain`, so the
/// `__Secure-` prefix (secure only) it is.
pub const SECURE_DOMAIN_COOKIE_NAME: &str = "__Secure-portcullis_session";
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
    /// A cookie domain that is not a domain name of two labels or more containing the
    /// origin's host.
    #[error(
        "cookie domain {0:?}: expected a domain name (two labels or more, not an address) that the origin's host is or is under"
    )]
    CookieDomain(String),
}

/// How sessions behave. Build with [`SessionConfig::for_origin`].
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub(super) origin: String,
    pub(super) extra_origins: Vec<String>,
    pub(super) secure: bool,
    pub(super) idle: Duration,
    pub(super) absolute: Duration,
    pub(super) touch_interval: Duration,
    pub(super) cookie_domain: Option<String>,
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
            cookie_domain: None,
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

    /// Sends the cookie to every host under `domain` as well (`Domain=`), so one
    /// sign-in covers sibling subdomains (apps behind a forward-authenticating proxy).
    /// The origin's host must be `domain` or under it. On `https` the cookie is then
    /// named [`SECURE_DOMAIN_COOKIE_NAME`]. Every host under `domain` receives the
    /// cookie and can set one of that name: use it only when all of them are yours.
    /// State-changing requests must still come from the session's origin (or an
    /// allowed one): a sibling's `Origin` is refused as any other site's.
    pub fn with_cookie_domain(mut self, domain: &str) -> Result<SessionConfig, ConfigError> {
        let refused = || ConfigError::CookieDomain(domain.to_owned());
        let wanted = domain.trim().trim_start_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = wanted.split('.').collect();
        let name_ok = labels.len() >= 2
            && wanted.len() <= 253
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            // The last label of a domain name is never all digits: that is an address.
            && !labels[labels.len() - 1].bytes().all(|b| b.is_ascii_digit());
        if !name_ok {
            return Err(refused());
        }
        let host = url::Url::parse(&self.origin)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .ok_or_else(refused)?;
        if host != wanted && !host.ends_with(&format!(".{wanted}")) {
            return Err(refused());
        }
        self.cookie_domain = Some(wanted);
        Ok(self)
    }

    /// The domain the cookie covers, when [`SessionConfig::with_cookie_domain`] set one.
    pub fn cookie_domain(&self) -> Option<&str> {
        self.cookie_domain.as_deref()
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
}

fn normalize_origin(origin: &str) -> Result<String, ConfigError> {
    origin_of(origin).ok_or_else(|| ConfigError::InvalidOrigin(origin.to_owned()))
}
