//! Building and signing tokens.

use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;

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
    /// In the order set; a name set again replaces its value in place. A short list
    /// (a token has a handful of claims) is faster to build, search and write than a
    /// map, and the registered names are never copied.
    claims: Vec<(Cow<'static, str>, Value)>,
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
            claims: Vec::new(),
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
        self.set("iss", iss.into().into())
    }

    /// Sets `aud` to one audience.
    pub fn audience(self, aud: impl Into<String>) -> Self {
        self.set("aud", aud.into().into())
    }

    /// Sets `sub`.
    pub fn subject(self, sub: impl Into<String>) -> Self {
        self.set("sub", sub.into().into())
    }

    /// Sets `scope` (space separated).
    pub fn scope(self, scope: impl Into<String>) -> Self {
        self.set("scope", scope.into().into())
    }

    /// Sets `sid`, the session (refresh family) the token belongs to.
    pub fn session_id(self, sid: impl Into<String>) -> Self {
        self.set("sid", sid.into().into())
    }

    /// Sets `jti`.
    pub fn jwt_id(self, jti: impl Into<String>) -> Self {
        self.set("jti", jti.into().into())
    }

    /// Sets `iat`, seconds since the epoch (default: now).
    pub fn issued_at(self, iat: UnixTime) -> Self {
        self.set("iat", iat.into())
    }

    /// Sets `exp`, seconds since the epoch (default: `iat` + lifetime).
    pub fn expires_at(self, exp: UnixTime) -> Self {
        self.set("exp", exp.into())
    }

    /// Sets `nbf`, seconds since the epoch.
    pub fn not_before(self, nbf: UnixTime) -> Self {
        self.set("nbf", nbf.into())
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
        self.put(Cow::Owned(name.into()), value.into());
        self
    }

    fn set(mut self, name: &'static str, value: Value) -> Self {
        self.put(Cow::Borrowed(name), value);
        self
    }

    fn put(&mut self, name: Cow<'static, str>, value: Value) {
        match self.claims.iter_mut().find(|(n, _)| *n == name) {
            Some((_, old)) => *old = value,
            None => self.claims.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.claims.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Merges claims from any value that serializes to a JSON object.
    pub fn claims(mut self, claims: &impl Serialize) -> Result<Self, SignError> {
        match serde_json::to_value(claims) {
            Ok(Value::Object(map)) => {
                for (name, value) in map {
                    self.put(Cow::Owned(name), value);
                }
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
        let iat = match self.get("iat").map(Value::as_i64) {
            Some(Some(iat)) => iat,
            // Not a whole number: kept as set; `exp` counts from now.
            Some(None) => clock.now(),
            None => {
                let now = clock.now();
                self.put(Cow::Borrowed("iat"), now.into());
                now
            }
        };
        if self.random_jti && self.get("jti").is_none() {
            self.put(Cow::Borrowed("jti"), random_id()?.into());
        }
        if self.get("exp").is_none() {
            self.put(
                Cow::Borrowed("exp"),
                iat.saturating_add(secs(self.lifetime)).into(),
            );
        }
        // Straight into bytes: `to_string` would go through `fmt::Write`, a third of
        // the cost of an HS256 token.
        let payload = serde_json::to_vec(&Ordered(&self.claims))
            .map_err(|e| SignError::Claims(e.to_string()))?;
        Ok(jws::sign(&payload, self.typ.as_deref(), key)?)
    }
}

/// The claims as one JSON object, in the order they were set.
struct Ordered<'a>(&'a [(Cow<'static, str>, Value)]);

impl Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name.as_ref(), value)?;
        }
        map.end()
    }
}

/// 128 random bits, base64url: for `jti` and other identifiers.
///
/// The bits come from aws-lc's generator (a DRBG seeded from the operating system),
/// drawn 1 KiB at a time into a per-thread buffer and handed out once
/// each: one call into the generator per 64 identifiers instead of one per token,
/// which was a fifth of the cost of signing an HS256 token. The buffer never leaves
/// its thread, and a byte is zeroed as it is taken. (A process that `fork`s without
/// `exec` would give the child a copy of the unused bytes, as with any userspace
/// generator without fork detection; servers built on tokio do not fork.)
pub fn random_id() -> Result<String, crate::keys::Error> {
    Ok(b64::encode(&random_bits()?))
}

/// 128 random bits from the same per-thread buffer as [`random_id`]: for identifiers
/// in other shapes (a request id as a UUID), without a system call each.
pub fn random_bits() -> Result<[u8; 16], crate::keys::Error> {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes)?;
    Ok(bytes)
}

/// Bytes drawn from the generator at once, per thread, for [`random_id`].
const RANDOM_BATCH: usize = 1024;

struct RandomBuffer {
    bytes: [u8; RANDOM_BATCH],
    /// Bytes before this index were handed out (and zeroed).
    used: usize,
}

thread_local! {
    static RANDOM: std::cell::RefCell<RandomBuffer> = const {
        std::cell::RefCell::new(RandomBuffer { bytes: [0; RANDOM_BATCH], used: RANDOM_BATCH })
    };
}

fn fill_random(out: &mut [u8; 16]) -> Result<(), crate::keys::Error> {
    RANDOM.with(|cell| {
        let mut buffer = cell.borrow_mut();
        if buffer.used + out.len() > RANDOM_BATCH {
            SystemRandom::new().fill(&mut buffer.bytes)?;
            buffer.used = 0;
        }
        let start = buffer.used;
        let taken = &mut buffer.bytes[start..start + out.len()];
        out.copy_from_slice(taken);
        taken.fill(0);
        buffer.used += out.len();
        Ok(())
    })
}
