//! Device credentials (OWASP "Blocking Brute Force Attacks": device cookies). A client
//! that signs in successfully gets a credential: 256 random bits it keeps, of which
//! the server stores only the SHA-256, bound to the account. A later login to the same
//! account that carries it is throttled on that device's own counter, apart from
//! anonymous attempts, so an attacker's guesses never lock out the owner's known
//! device.
//!
//! A stored random credential rather than a signed one (OWASP's cookie is an HMAC over
//! the login name): no signing key to keep and rotate, it can be forgotten server-side,
//! and looking it up is one indexed read on a path that already reads the account.
//!
//! Browsers get it as an `HttpOnly; SameSite=Strict` cookie from the session login and
//! the sign-in page; API clients get `device_token` in the `/auth/login` answer and
//! send it back in the next login's body.

use axum::http::{HeaderMap, HeaderValue};
use portcullis::clock::secs;
use portcullis::cookies::{self, SameSite};
use portcullis::opaque::Opaque;
use portcullis_store::TokenHash;

use crate::error::ApiError;
use crate::state::AppState;

const SECURE_NAME: &str = "__Host-portcullis_device";
const DEV_NAME: &str = "portcullis_device";

/// A device credential: an opaque 256-bit credential, stored as its SHA-256.
pub type DeviceToken = Opaque;

fn cookie_name(state: &AppState) -> &'static str {
    if state.0.config.sessions.is_secure() {
        SECURE_NAME
    } else {
        DEV_NAME
    }
}

/// The device credential a request's cookies carry, if one is well formed (and named
/// once: a planted duplicate makes it count as absent).
pub fn from_cookie(state: &AppState, headers: &HeaderMap) -> Option<DeviceToken> {
    Opaque::parse(cookies::single(headers, cookie_name(state))?)
}

/// The `Set-Cookie` value that gives a browser its device credential.
pub fn set_cookie(state: &AppState, token: &DeviceToken) -> HeaderValue {
    cookies::set(
        cookie_name(state),
        token.expose(),
        SameSite::Strict,
        state.0.config.device_lifetime,
        state.0.config.sessions.is_secure(),
    )
}

/// The account a presented credential belongs to, if the store knows it.
pub async fn owner(state: &AppState, token: &DeviceToken) -> Result<Option<String>, ApiError> {
    Ok(state
        .0
        .store
        .device_owner(
            &TokenHash(token.sha256()),
            state.now(),
            secs(state.0.config.device_lifetime),
        )
        .await?)
}

/// A new device credential, not stored yet.
pub fn mint() -> Result<DeviceToken, ApiError> {
    Opaque::generate().map_err(|_| ApiError::Unexpected(anyhow::anyhow!("no randomness")))
}
