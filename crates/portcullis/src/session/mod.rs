//! Cookie sessions, beside tokens: the classic way for browsers and server-rendered
//! pages (what `express-session` is to Express).
//!
//! A session is a row in a [`SessionStore`], found by the SHA-256 of a random secret
//! that lives only in the browser's cookie. [`Sessions`] starts and ends them and
//! writes the cookie; the [`crate::strategy::Session`] strategy authenticates requests
//! that carry it, so one route can accept a bearer token or a session.
//!
//! The rules (docs/security-rules.md, "Cookie sessions"), and where they hold:
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

mod config;
mod context;
mod cookie;
pub mod csrf;
mod error;
mod memory;
mod origin;
mod secret;
mod service;
mod store;

pub use config::{
    ConfigError, DEFAULT_ABSOLUTE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_TOUCH_INTERVAL,
    DEV_COOKIE_NAME, SECURE_COOKIE_NAME, SECURE_DOMAIN_COOKIE_NAME, SessionConfig,
};
pub use context::SessionContext;
pub use error::Error;
pub use memory::MemorySessionStore;
pub(crate) use origin::origin_of;
pub use secret::{SessionHash, SessionSecret};
pub use service::{Sessions, Started};
pub use store::{NewSession, SessionRecord, SessionStore, StoreFuture};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use std::time::Duration;

    use http::{HeaderMap, HeaderValue, header};

    /// A session of user `u`, last used at `last_seen_at`, ending at `expires_at`.
    pub(crate) fn record(last_seen_at: i64, expires_at: i64) -> SessionRecord {
        SessionRecord {
            id: "s".into(),
            subject: "u".into(),
            scope: String::new(),
            label: String::new(),
            amr: String::new(),
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
        assert!(!format!("{:?}", c.set_cookie(&secret)).contains(secret.expose()));
    }

    #[test]
    fn a_cookie_domain_covers_the_sites_siblings_with_the_secure_prefix() {
        let c = SessionConfig::for_origin("https://auth.example.com")
            .unwrap()
            .with_cookie_domain(".Example.com")
            .unwrap();
        assert_eq!(c.cookie_domain(), Some("example.com"));
        assert_eq!(c.cookie_name(), "__Secure-portcullis_session");
        let secret = SessionSecret::generate().unwrap();
        let cookie = c.set_cookie(&secret);
        let cookie = cookie.to_str().unwrap();
        assert!(
            cookie.starts_with("__Secure-portcullis_session="),
            "{cookie}"
        );
        for attr in [
            "Domain=example.com",
            "Path=/",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
        ] {
            assert!(cookie.contains(attr), "{cookie}");
        }
        let cleared = c.clear_cookie();
        let cleared = cleared.to_str().unwrap();
        assert!(
            cleared.contains("Domain=example.com") && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
        // The origin's own host as the domain is allowed too.
        let own = SessionConfig::for_origin("https://example.com").unwrap();
        assert!(own.with_cookie_domain("example.com").is_ok());
        // A domain the origin is not under, a single label, an address, a malformed
        // name: refused.
        for bad in [
            "other.com",
            "com",
            "ample.com",
            "1.2.3.4",
            "example..com",
            "-x.com",
            "exa mple.com",
            "",
        ] {
            let c = SessionConfig::for_origin("https://auth.example.com").unwrap();
            assert_eq!(
                c.with_cookie_domain(bad).unwrap_err(),
                ConfigError::CookieDomain(bad.to_owned()),
                "{bad}"
            );
        }
        let ip = SessionConfig::for_origin("http://127.0.0.1:8080").unwrap();
        assert!(ip.with_cookie_domain("0.0.1").is_err());
        // Plain http keeps its development name, with the domain.
        let dev = SessionConfig::insecure_allow_http("http://auth.portcullis.test")
            .unwrap()
            .with_cookie_domain("portcullis.test")
            .unwrap();
        assert_eq!(dev.cookie_name(), "portcullis_session");
        assert!(
            dev.set_cookie(&secret)
                .to_str()
                .unwrap()
                .contains("Domain=portcullis.test")
        );
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
        let good = format!("theme=dark; __Host-portcullis_session={}", secret.expose());
        assert_eq!(
            c.secret_from(&headers(&[&good])).unwrap().hash(),
            secret.hash()
        );
        // Split across two Cookie headers (HTTP/2 does this) still reads.
        assert!(
            c.secret_from(&headers(&[
                "a=b",
                &format!("__Host-portcullis_session={}", secret.expose())
            ]))
            .is_some()
        );
        // Twice: refused, whichever is real.
        let twice = format!("{good}; __Host-portcullis_session={}", secret.expose());
        assert!(c.secret_from(&headers(&[&twice])).is_none());
        // The dev name is not read on an https site, nor junk values.
        assert!(
            c.secret_from(&headers(&[&format!(
                "portcullis_session={}",
                secret.expose()
            )]))
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
        assert_ne!(a.csrf_token(), a.expose());
        let a_token = a.csrf_token();
        let ctx = SessionContext::new(std::sync::Arc::new(record(0, 10)), a);
        assert!(ctx.check_csrf_token(&a_token).is_ok());
        assert!(ctx.check_csrf_token(&b.csrf_token()).is_err());
        assert!(ctx.check_csrf_token("").is_err());
        assert!(!format!("{ctx:?}").contains(ctx.csrf_token()));
        assert!(!format!("{b:?}").contains(b.expose()));
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
