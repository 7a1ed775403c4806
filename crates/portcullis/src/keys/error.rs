//! Errors of key import, export and generation.

use std::borrow::Cow;

/// Why a key could not be generated, imported, exported or added to a key set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The algorithm name is not one we support (or is `none`).
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The key does not fit the algorithm it was declared for.
    #[error("key does not match algorithm {alg}: {reason}")]
    AlgorithmMismatch {
        /// The declared algorithm.
        alg: super::Algorithm,
        /// What did not match.
        reason: Cow<'static, str>,
    },
    /// The key is malformed.
    #[error("invalid key: {0}")]
    InvalidKey(Cow<'static, str>),
    /// The key is well formed but too weak to use (short HMAC secret, small RSA
    /// modulus, unusual exponent, known-vulnerable RSA key).
    #[error("weak key: {0}")]
    WeakKey(Cow<'static, str>),
    /// The JWK says it is not for signature verification (`use` or `key_ops`).
    #[error("key is not for signature verification: {0}")]
    NotForVerification(Cow<'static, str>),
    /// Two keys of one key set share a `kid`.
    #[error("duplicate kid {0:?} in key set")]
    DuplicateKid(String),
    /// The JWK or JWKS document is not valid JSON of the expected shape.
    #[error("invalid JWK: {0}")]
    Jwk(Cow<'static, str>),
    /// The PEM or DER document could not be read.
    #[error("invalid PEM/DER: {0}")]
    Encoding(Cow<'static, str>),
    /// The operation needs a part of the key this key does not have (exporting an HMAC
    /// secret as a public key, a PEM for an HMAC key).
    #[error("unsupported operation: {0}")]
    Unsupported(Cow<'static, str>),
    /// The cryptographic backend failed (random generation, signing).
    #[error("cryptographic backend failure")]
    Crypto,
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

impl From<aws_lc_rs::error::Unspecified> for Error {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        Error::Crypto
    }
}

pub(crate) fn rejected(e: aws_lc_rs::error::KeyRejected) -> Error {
    Error::InvalidKey(Cow::Owned(format!("rejected by the crypto backend: {e}")))
}
