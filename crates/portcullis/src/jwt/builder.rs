//! Building and signing tokens.

use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::SignError;
use super::jws;
use crate::b64;
use crate::clock::{Clock, SystemClock, UnixTime, secs};
use crate::keys::SigningKey;

/// Defaults to 15 minutes, the access-token lifetime of the token profile.
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Builds a JWT's claims and signs it. `iat` defaults to now and `exp` to
/// `iat + lifetime` unless set explicitly.
#[derive(Clone, Debug)]
pub struct TokenBuilder {
    typ: Option<String>,
    claims: Map<String, Value>,
    lifetime: Duration,
    random_jti: bool,
}

impl Default for TokenBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenBuilder {
    /// An empty claims set with `typ: at+jwt` and a 15-minute lifetime.
    pub fn new() -> Self {
        TokenBuilder {
            typ: Some("at+jwt".to_owned()),
            claims: Map::new(),
            lifetime: DEFAULT_ACCESS_TOKEN_LIFETIME,
            random_jti: false,
        }
    }

    /// An access token (RFC 9068) for `audience` from `issuer`, with a random `jti`
    /// unless one is set.
    pub fn access_token(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        let mut builder = Self::new().issuer(issuer).audience(audience);
        builder.random_jti = true;
        builder
    }

    /// Sets `iss`.
    pub fn issuer(self, iss: impl Into<String>) -> Self {
        self.claim("iss", iss.into())
    }

    /// Sets `aud` to one audience.
    pub fn audience(self, aud: impl Into<String>) -> Self {
        self.claim("aud", aud.into())
    }

    /// Sets `sub`.
    pub fn subject(self, sub: impl Into<String>) -> Self {
        self.claim("sub", sub.into())
    }

    /// Sets `scope` (space separated).
    pub fn scope(self, scope: impl Into<String>) -> Self {
        self.claim("scope", scope.into())
    }

    /// Sets `sid`, the session (refresh family) the token belongs to.
    pub fn session_id(self, sid: impl Into<String>) -> Self {
        self.claim("sid", sid.into())
    }

    /// Sets `jti`.
    pub fn jwt_id(self, jti: impl Into<String>) -> Self {
        self.claim("jti", jti.into())
    }

    /// Sets `iat`, seconds since the epoch (default: now).
    pub fn issued_at(self, iat: UnixTime) -> Self {
        self.claim("iat", iat)
    }

    /// Sets `exp`, seconds since the epoch (default: `iat` + lifetime).
    pub fn expires_at(self, exp: UnixTime) -> Self {
        self.claim("exp", exp)
    }

    /// Sets `nbf`, seconds since the epoch.
    pub fn not_before(self, nbf: UnixTime) -> Self {
        self.claim("nbf", nbf)
    }

    /// Sets the lifetime used when `exp` is not given. Defaults to 15 minutes.
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Sets the `typ` header, or `None` for no `typ`. Defaults to `at+jwt`.
    pub fn typ(mut self, typ: Option<String>) -> Self {
        self.typ = typ;
        self
    }

    /// Sets any claim, replacing an earlier value of the same name.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Merges claims from any value that serializes to a JSON object.
    pub fn claims(mut self, claims: &impl Serialize) -> Result<Self, SignError> {
        match serde_json::to_value(claims) {
            Ok(Value::Object(map)) => {
                self.claims.extend(map);
                Ok(self)
            }
            Ok(_) => Err(SignError::Claims("not an object".into())),
            Err(e) => Err(SignError::Claims(e.to_string())),
        }
    }

    /// Signs with the system clock.
    pub fn sign(self, key: &SigningKey) -> Result<String, SignError> {
        self.sign_at(key, &SystemClock)
    }

    /// Signs, taking "now" from `clock` for the default `iat`.
    pub fn sign_at(mut self, key: &SigningKey, clock: &dyn Clock) -> Result<String, SignError> {
        let iat = match self.claims.get("iat").and_then(Value::as_i64) {
            Some(iat) => iat,
            None => {
                let now = clock.now();
                self.claims.entry("iat").or_insert(now.into());
                now
            }
        };
        if self.random_jti && !self.claims.contains_key("jti") {
            self.claims.insert("jti".into(), random_id()?.into());
        }
        self.claims
            .entry("exp")
            .or_insert(iat.saturating_add(secs(self.lifetime)).into());
        let payload = Value::Object(self.claims).to_string();
        Ok(jws::sign(payload.as_bytes(), self.typ.as_deref(), key)?)
    }
}

/// 128 random bits, base64url: for `jti` and other identifiers.
pub fn random_id() -> Result<String, crate::keys::Error> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(b64::encode(&bytes))
}
