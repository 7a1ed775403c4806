//! The validation policy: which claims a token must carry and what they must say.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::claims::{Claims, OtherClaims};
use super::error::{Error, Reason};
use crate::clock::{Clock, SystemClock, UnixTime, secs};

/// Defaults to 30 seconds: room for clock skew between issuer and verifier.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The largest leeway the builder accepts: five minutes.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Defaults to 24 hours: an access token that claims to live longer is refused.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Defaults to 8 KiB, checked before any parsing.
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 8 * 1024;

/// Which `typ` header a token must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypPolicy {
    /// `at+jwt` or `application/at+jwt`, case-insensitive (RFC 9068 §2.1). The default:
    /// a refresh token, an ID token or an untyped JWT never passes as an access token.
    AccessToken,
    /// This media type, compared case-insensitively, with or without `application/`.
    Exact(String),
    /// Any `typ`, or none. Only for tokens that are not access tokens and are told apart
    /// some other way; see RFC 8725 §3.11 before using it.
    InsecureAny,
}

impl TypPolicy {
    fn check(&self, typ: Option<&str>) -> Result<(), Error> {
        let want = match self {
            TypPolicy::InsecureAny => return Ok(()),
            TypPolicy::AccessToken => "at+jwt",
            TypPolicy::Exact(t) => crate::strict_json::media_subtype(t),
        };
        let Some(typ) = typ else {
            return Err(Error::new(Reason::InvalidType, "missing typ header"));
        };
        if crate::strict_json::media_subtype(typ).eq_ignore_ascii_case(want) {
            Ok(())
        } else {
            Err(Error::new(
                Reason::InvalidType,
                format!("typ {:?} is not {want:?}", super::header::truncate(typ)),
            ))
        }
    }
}

/// A checked validation policy. Build it with [`Validation::builder`].
#[derive(Clone)]
pub struct Validation {
    issuer: Option<String>,
    audiences: Vec<String>,
    typ: TypPolicy,
    leeway: i64,
    max_lifetime: Option<i64>,
    max_token_size: usize,
    required: Vec<String>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Validation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validation")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("typ", &self.typ)
            .field("leeway", &self.leeway)
            .field("max_lifetime", &self.max_lifetime)
            .field("max_token_size", &self.max_token_size)
            .field("required", &self.required)
            .field("clock", &self.clock)
            .finish()
    }
}

/// Builds a [`Validation`]. An issuer and an audience are required unless explicitly
/// waived with the `insecure_` methods.
#[derive(Clone, Debug)]
pub struct ValidationBuilder {
    inner: Validation,
    skip_issuer: bool,
    skip_audience: bool,
}

/// A policy that cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// No issuer was set and the check was not waived.
    #[error("an issuer is required (or call insecure_skip_issuer)")]
    MissingIssuer,
    /// No audience was set and the check was not waived.
    #[error("an audience is required (or call insecure_skip_audience)")]
    MissingAudience,
    /// The leeway is above [`MAX_LEEWAY`].
    #[error("leeway of {0} s is above the maximum of 300 s")]
    LeewayTooLarge(i64),
    /// The maximum token size is outside 256 bytes ..= 64 KiB.
    #[error("maximum token size {0} is outside 256 ..= 65536 bytes")]
    TokenSize(usize),
}

impl Validation {
    /// A builder with the documented defaults: `typ` must be `at+jwt`, leeway 30 s,
    /// maximum lifetime 24 h, maximum token size 8 KiB, required claims `exp`, `iat`
    /// and `sub`, the system clock.
    pub fn builder() -> ValidationBuilder {
        ValidationBuilder {
            inner: Validation {
                issuer: None,
                audiences: Vec::new(),
                typ: TypPolicy::AccessToken,
                leeway: secs(DEFAULT_LEEWAY),
                max_lifetime: Some(secs(DEFAULT_MAX_LIFETIME)),
                max_token_size: DEFAULT_MAX_TOKEN_SIZE,
                required: vec!["exp".into(), "iat".into(), "sub".into()],
                clock: Arc::new(SystemClock),
            },
            skip_issuer: false,
            skip_audience: false,
        }
    }

    /// The maximum token size in bytes.
    pub fn max_token_size(&self) -> usize {
        self.max_token_size
    }

    /// The clock the policy reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn check_typ(&self, typ: Option<&str>) -> Result<(), Error> {
        self.typ.check(typ)
    }

    /// Checks every claim rule against the clock's current time: `claims` holds the
    /// registered claims, `others` the rest.
    pub(crate) fn check_claims(&self, claims: &Claims, others: &OtherClaims) -> Result<(), Error> {
        for name in &self.required {
            if !claims.has(name) && others.get(name).is_none() {
                return Err(missing(name));
            }
        }
        let Some(exp) = claims.exp else {
            return Err(missing("exp"));
        };
        if let Some(issuer) = &self.issuer {
            match &claims.iss {
                None => return Err(missing("iss")),
                Some(iss) if iss != issuer => {
                    return Err(Error::new(
                        Reason::InvalidIssuer,
                        "iss is not the expected issuer",
                    ));
                }
                Some(_) => {}
            }
        }
        if !self.audiences.is_empty() {
            match &claims.aud {
                None => return Err(missing("aud")),
                Some(aud) if !self.audiences.iter().any(|a| aud.contains(a)) => {
                    return Err(Error::new(
                        Reason::InvalidAudience,
                        "aud does not contain an expected audience",
                    ));
                }
                Some(_) => {}
            }
        }
        let now = self.clock.now();
        self.check_time(claims, now)?;
        if let Some(max) = self.max_lifetime {
            // Without iat, the token stays valid from now until exp.
            let start = claims.iat.unwrap_or(now);
            if exp < start {
                return Err(Error::new(Reason::InvalidClaim, "exp is before iat"));
            }
            let lifetime = exp - start;
            if lifetime > max {
                return Err(Error::new(
                    Reason::LifetimeTooLong,
                    format!("lifetime of {lifetime} s is above the maximum of {max} s"),
                ));
            }
        }
        Ok(())
    }

    /// The time rules alone: also re-checked on every cache hit.
    pub(crate) fn check_time(&self, claims: &Claims, now: UnixTime) -> Result<(), Error> {
        let leeway = self.leeway;
        if let Some(exp) = claims.exp
            && now >= exp.saturating_add(leeway)
        {
            return Err(Error::new(
                Reason::Expired,
                format!("expired at {exp} (now {now}, leeway {leeway} s)"),
            ));
        }
        if let Some(nbf) = claims.nbf
            && now.saturating_add(leeway) < nbf
        {
            return Err(Error::new(
                Reason::NotYetValid,
                format!("not valid before {nbf} (now {now}, leeway {leeway} s)"),
            ));
        }
        if let Some(iat) = claims.iat
            && iat > now.saturating_add(leeway)
        {
            return Err(Error::new(
                Reason::IssuedInFuture,
                format!("issued at {iat}, in the future (now {now}, leeway {leeway} s)"),
            ));
        }
        Ok(())
    }
}

fn missing(name: &str) -> Error {
    Error::new(Reason::MissingClaim, format!("missing claim {name:?}"))
}

impl ValidationBuilder {
    /// The exact `iss` a token must carry.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.inner.issuer = Some(issuer.into());
        self
    }

    /// Adds an accepted audience; `aud` must contain at least one accepted audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.inner.audiences.push(audience.into());
        self
    }

    /// Accepts tokens from any issuer. Only for tests and tools; a resource server that
    /// does this trusts every token signed by any key in its set.
    pub fn insecure_skip_issuer(mut self) -> Self {
        self.skip_issuer = true;
        self
    }

    /// Accepts tokens for any audience. Only for tests and tools: a token minted for
    /// another service would be accepted here.
    pub fn insecure_skip_audience(mut self) -> Self {
        self.skip_audience = true;
        self
    }

    /// The `typ` rule. Defaults to [`TypPolicy::AccessToken`].
    pub fn typ(mut self, typ: TypPolicy) -> Self {
        self.inner.typ = typ;
        self
    }

    /// Clock-skew allowance for `exp`, `nbf` and `iat`. Defaults to 30 s; at most 300 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.inner.leeway = secs(leeway);
        self
    }

    /// The longest `exp - iat` accepted. Defaults to 24 h.
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.inner.max_lifetime = Some(secs(max));
        self
    }

    /// Accepts tokens of any lifetime. A stolen token with a far-off `exp` then stays
    /// usable until then; only for tools inspecting foreign tokens.
    pub fn insecure_unlimited_lifetime(mut self) -> Self {
        self.inner.max_lifetime = None;
        self
    }

    /// The longest token accepted, checked before any parsing. Defaults to 8 KiB.
    pub fn max_token_size(mut self, bytes: usize) -> Self {
        self.inner.max_token_size = bytes;
        self
    }

    /// Claims that must be present, replacing the default (`exp`, `iat`, `sub`).
    /// `exp` is always required whatever this says.
    pub fn required_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner.required = names.into_iter().map(Into::into).collect();
        self
    }

    /// The clock. Defaults to the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.inner.clock = clock;
        self
    }

    /// Checks the policy.
    pub fn build(self) -> Result<Validation, PolicyError> {
        let v = self.inner;
        if v.issuer.is_none() && !self.skip_issuer {
            return Err(PolicyError::MissingIssuer);
        }
        if v.audiences.is_empty() && !self.skip_audience {
            return Err(PolicyError::MissingAudience);
        }
        if v.leeway > secs(MAX_LEEWAY) {
            return Err(PolicyError::LeewayTooLarge(v.leeway));
        }
        if !(256..=65536).contains(&v.max_token_size) {
            return Err(PolicyError::TokenSize(v.max_token_size));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_typ_is_a_case_insensitive_media_type() {
        let p = TypPolicy::AccessToken;
        for ok in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            assert!(p.check(Some(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "JWT",
            "jwt",
            "at+jwt ",
            "application/jwt",
            "refresh+jwt",
            "",
            "application/",
        ] {
            assert_eq!(
                p.check(Some(bad)).unwrap_err().reason(),
                Reason::InvalidType,
                "{bad}"
            );
        }
        assert_eq!(p.check(None).unwrap_err().reason(), Reason::InvalidType);
    }

    #[test]
    fn builder_requires_issuer_and_audience_unless_waived() {
        assert_eq!(
            Validation::builder().build().unwrap_err(),
            PolicyError::MissingIssuer
        );
        assert_eq!(
            Validation::builder().issuer("i").build().unwrap_err(),
            PolicyError::MissingAudience
        );
        assert!(
            Validation::builder()
                .insecure_skip_issuer()
                .insecure_skip_audience()
                .build()
                .is_ok()
        );
    }

    #[test]
    fn leeway_is_bounded() {
        let b = Validation::builder().issuer("i").audience("a");
        assert!(b.clone().leeway(Duration::from_secs(300)).build().is_ok());
        assert_eq!(
            b.leeway(Duration::from_secs(301)).build().unwrap_err(),
            PolicyError::LeewayTooLarge(301)
        );
    }
}
