//! Why a token was refused.

use std::borrow::Cow;
use std::fmt;

/// The stable reason code of a refusal. Logs and metrics use [`Reason::code`]; HTTP
/// responses never reveal it (RFC 6750 §3 answers every token failure alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Not a well-formed compact JWS/JWT: bad characters, segment count, base64url,
    /// JSON, or a registered header member of the wrong type.
    Malformed,
    /// Longer than the configured maximum token size.
    TooLarge,
    /// `alg` is unknown, `none`, or not the algorithm of the selected key.
    UnsupportedAlgorithm,
    /// The header carries a member we never act on (`crit`, `jku`, `jwk`, `x5u`, `x5c`,
    /// `zip`, `b64`) or a nested-JWT `cty`.
    UnsupportedHeader,
    /// No key in the set matches the token's `kid` (or, without `kid`, the set does not
    /// have exactly one key of the token's algorithm).
    UnknownKey,
    /// The signature or MAC does not verify.
    InvalidSignature,
    /// `now >= exp + leeway`.
    Expired,
    /// `now + leeway < nbf`.
    NotYetValid,
    /// `iat > now + leeway`.
    IssuedInFuture,
    /// `exp - iat` exceeds the configured maximum lifetime.
    LifetimeTooLong,
    /// `iss` is not the configured issuer.
    InvalidIssuer,
    /// `aud` does not contain a configured audience.
    InvalidAudience,
    /// The `typ` header is missing or not the one the policy requires.
    InvalidType,
    /// A required claim is absent.
    MissingClaim,
    /// A claim has the wrong type or an impossible value.
    InvalidClaim,
}

impl Reason {
    /// Every reason, for exhaustive metrics.
    pub const ALL: [Reason; 15] = [
        Reason::Malformed,
        Reason::TooLarge,
        Reason::UnsupportedAlgorithm,
        Reason::UnsupportedHeader,
        Reason::UnknownKey,
        Reason::InvalidSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::IssuedInFuture,
        Reason::LifetimeTooLong,
        Reason::InvalidIssuer,
        Reason::InvalidAudience,
        Reason::InvalidType,
        Reason::MissingClaim,
        Reason::InvalidClaim,
    ];

    /// The stable snake_case code, e.g. `"invalid_signature"`.
    pub const fn code(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::TooLarge => "too_large",
            Reason::UnsupportedAlgorithm => "unsupported_algorithm",
            Reason::UnsupportedHeader => "unsupported_header",
            Reason::UnknownKey => "unknown_key",
            Reason::InvalidSignature => "invalid_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::IssuedInFuture => "issued_in_future",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::InvalidIssuer => "invalid_issuer",
            Reason::InvalidAudience => "invalid_audience",
            Reason::InvalidType => "invalid_type",
            Reason::MissingClaim => "missing_claim",
            Reason::InvalidClaim => "invalid_claim",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refused token: a [`Reason`] and a human-readable detail. The detail may name
/// claims and times but never contains the token or key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Error {
    reason: Reason,
    detail: Cow<'static, str>,
}

impl Error {
    pub(crate) fn new(reason: Reason, detail: impl Into<Cow<'static, str>>) -> Self {
        Error {
            reason,
            detail: detail.into(),
        }
    }

    /// The reason code.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The key could not sign.
    #[error(transparent)]
    Key(#[from] crate::keys::Error),
    /// The claims could not be serialized as a JSON object.
    #[error("claims must serialize to a JSON object: {0}")]
    Claims(String),
}
