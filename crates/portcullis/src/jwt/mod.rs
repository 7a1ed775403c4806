//! JSON Web Tokens: strict parsing, signature verification, claim validation and
//! signing.
//!
//! [`Verifier`] is the entry point for verification: a [`KeySet`](crate::keys::KeySet),
//! a [`Validation`] policy and a cache. [`TokenBuilder`] signs tokens. [`jws`] is the
//! layer below, for payloads that are not JWT claims.

mod builder;
mod claims;
mod error;
mod header;
pub mod jws;
mod validation;
mod verifier;

pub use builder::{DEFAULT_ACCESS_TOKEN_LIFETIME, TokenBuilder, random_bits, random_id};
pub use claims::{Audience, Claims, MAX_NUMERIC_DATE};
pub use error::{Error, Reason, SignError};
pub use header::Header;
pub use validation::{
    DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_TOKEN_SIZE, MAX_LEEWAY, PolicyError,
    TypPolicy, Validation, ValidationBuilder,
};
pub use verifier::{
    CACHE_ENTRY_OVERHEAD, CacheStats, DEFAULT_CACHE_ENTRIES, VerifiedToken, Verifier,
};
