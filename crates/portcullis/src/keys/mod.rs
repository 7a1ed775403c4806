//! Keys: the [`Algorithm`] a key is bound to, [`SigningKey`] and [`VerifyingKey`], JWK
//! and JWKS documents, PEM import and export, and the [`KeySet`] that verification
//! looks keys up in.
//!
//! The key fixes the algorithm. A token's header can name an algorithm, but it only
//! ever gets compared with the one the selected key was created for.

mod algorithm;
mod error;
mod jwk;
mod keyset;
mod oid;
mod params;
mod rsa_checks;
mod signing;
mod verifying;

pub use algorithm::{Algorithm, KeyFamily, UnknownAlgorithm};
pub use error::Error;
pub use jwk::{Jwk, Jwks};
pub use keyset::KeySet;
pub(crate) use keyset::Miss;
pub use signing::SigningKey;
pub use verifying::VerifyingKey;

#[cfg(test)]
mod tests;
