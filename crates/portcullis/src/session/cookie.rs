//! The session cookie: its name, the `Set-Cookie` values, reading it back.

use super::config::{DEV_COOKIE_NAME, SECURE_COOKIE_NAME, SessionConfig};
use super::secret::SessionSecret;
use http::{HeaderMap, HeaderValue, header};

impl SessionConfig {
    /// The cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            SECURE_COOKIE_NAME
        } else {
            DEV_COOKIE_NAME
        }
    }

    /// The `Set-Cookie` value that installs `secret`.
    pub(super) fn set_cookie(&self, secret: &SessionSecret) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let value = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            self.cookie_name(),
            secret.expose(),
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
