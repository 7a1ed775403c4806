//! The session cookie: its name, the `Set-Cookie` values, reading it back.

use super::config::{
    DEV_COOKIE_NAME, SECURE_COOKIE_NAME, SECURE_DOMAIN_COOKIE_NAME, SessionConfig,
};
use super::secret::SessionSecret;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use crate::cookies::{self, SameSite};

impl SessionConfig {
    /// The cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        match (self.secure, self.cookie_domain.is_some()) {
            (true, false) => SECURE_COOKIE_NAME,
            (true, true) => SECURE_DOMAIN_COOKIE_NAME,
            (false, _) => DEV_COOKIE_NAME,
        }
    }

    /// The `Set-Cookie` value that installs `secret`.
    pub(super) fn set_cookie(&self, secret: &SessionSecret) -> HeaderValue {
        cookies::set_in(
            self.cookie_name(),
            secret.expose(),
            SameSite::Lax,
            self.absolute,
            self.secure,
            self.cookie_domain.as_deref(),
        )
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        cookies::set_in(
            self.cookie_name(),
            "",
            SameSite::Lax,
            Duration::ZERO,
            self.secure,
            self.cookie_domain.as_deref(),
        )
    }

    /// The session secret a request's cookies carry: `None` when there is none, when it
    /// is not the shape we issue, or when the name appears more than once (a cookie
    /// planted beside ours must not choose which one counts).
    pub fn secret_from(&self, headers: &HeaderMap) -> Option<SessionSecret> {
        SessionSecret::parse(cookies::single(headers, self.cookie_name())?)
    }
}
