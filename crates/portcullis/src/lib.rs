//! Portcullis: strict, fast token authentication for Rust HTTP APIs.
//!
//! This crate is the library half of Portcullis. It has no database and no server; it
//! holds the parts every protected request goes through:
//!
//! - [`jwt`]: JWS compact parsing, signing and verification, JWT claims and the
//!   validation policy, with a cache of already-verified tokens;
//! - [`keys`]: signing and verifying keys (the key fixes the algorithm), JWK and JWKS,
//!   PEM import and export, and the [`keys::KeySet`] that verification looks keys up in;
//! - [`clock`]: injected time, so tests move the clock instead of sleeping.
//!
//! # Quick start
//!
//! ```
//! use portcullis::jwt::{Validation, Verifier, TokenBuilder};
//! use portcullis::keys::{Algorithm, KeySet, SigningKey};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::generate(Algorithm::EdDSA, Some("k1".into()))?;
//! let token = TokenBuilder::access_token("https://issuer.example", "api")
//!     .subject("user-42")
//!     .expires_in(std::time::Duration::from_secs(900))
//!     .sign(&key)?;
//!
//! let keys = KeySet::new(vec![key.verifying_key()?])?;
//! let validation = Validation::builder()
//!     .issuer("https://issuer.example")
//!     .audience("api")
//!     .build()?;
//! let verifier = Verifier::new(keys, validation);
//! let verified = verifier.verify(&token)?;
//! assert_eq!(verified.claims().sub.as_deref(), Some("user-42"));
//! # Ok(())
//! # }
//! ```
//!
//! The rules the verifier enforces, and the reasons, are in `docs/security-model.md`;
//! every default is listed in `docs/defaults.md`.
#![warn(missing_docs)]

mod b64;
pub mod clock;
mod flat_json;
pub mod jwt;
pub mod keys;
pub mod middleware;
pub mod password;
pub mod refresh;
pub mod rejection;
pub mod revocation;
pub mod strategy;
mod strict_json;
pub mod username;
