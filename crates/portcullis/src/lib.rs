//! Portcullis: strict, fast token authentication for Rust HTTP APIs.
//!
//! This crate is the library half of Portcullis. It has no database and no server; it
//! holds the parts every protected request goes through:
//!
//! - [`jwt`]: JWS compact parsing, signing and verification, JWT claims and the
//!   validation policy, with a cache of already-verified tokens;
//! - [`keys`]: signing and verifying keys (the key fixes the algorithm), JWK and JWKS,
//!   PEM import and export, and the [`keys::KeySet`] that verification looks keys up in;
//! - [`strategy`] and [`middleware`]: Passport-style strategy chains (bearer tokens,
//!   API keys, your own), a tower layer, the `Authenticated<C>` extractor and the
//!   `RequireScope` layer;
//! - [`remote`], `http` and `feed`: trusting a remote issuer (`Bearer::from_issuer`) and
//!   following its revocation feed ([`revocation`]);
//! - [`rejection`]: the one place an authentication failure becomes an HTTP answer;
//! - `session`: cookie sessions with CSRF checks, for browsers and server-rendered
//!   pages, beside tokens (the `Session` strategy);
//! - `password`, `refresh`, `throttle`, `username`, `grant`: the pieces the Portcullis
//!   server is built from;
//! - [`clock`]: injected time, so tests move the clock instead of sleeping.
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `remote` | on | `http` (`Bearer::from_issuer`, `HttpFetcher`: reqwest over rustls on aws-lc-rs), `feed` (`RevocationFollower`), `oidc` (`OidcClient`) and `cookies` |
//! | `sessions` | off | `session`, the `Session` strategy and `cookies` |
//! | `webapp` | off | `oidc::web`: a server-rendered axum application signs people in with an OpenID Connect provider (routes, `Person`, `CsrfForm`; implies `remote` and `sessions`) |
//! | `password` | off | `password`: Argon2id hashing with a bounded queue |
//! | `legacy-hashes` | off | `password::legacy`: `PasswordHasher::verify` also checks bcrypt, Argon2i, scrypt and PBKDF2-SHA256 hashes of other systems, and asks for their rehash (implies `password`) |
//! | `server` | off | `username`, `refresh`, `throttle`, `grant`: the Portcullis server's rules. **Unstable**: public for the server, outside the semver promise below |
//!
//! # Stability
//!
//! The public API is checked against the last published baseline on every change
//! (`cargo semver-checks`, in CI), with two exceptions: the items of the `server`
//! feature, which are the Portcullis server's building blocks and change with it, and
//! anything `#[doc(hidden)]`. Types that will grow are `#[non_exhaustive]` (match them
//! with a wildcard; a store builds a `session::SessionRecord` with its constructor).
//! No type of another crate appears in a signature where a new version of that crate
//! could break you: reqwest stays inside `http`, aws-lc-rs's errors inside
//! [`keys::Error`].
//!
//! A resource server needs the default only; `default-features = false` leaves the
//! token core, keys, strategies and middleware, with remote keys through your own
//! [`remote::JwksFetcher`].
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
//! # Protecting an axum API
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use portcullis::jwt::{Validation, Verifier};
//! use portcullis::keys::KeySet;
//! use portcullis::middleware::{AuthLayer, Authenticated};
//! use portcullis::strategy::{Bearer, Chain};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let jwks = portcullis::keys::Jwks { keys: vec![] }.to_json();
//! // The issuer's public keys (e.g. its /.well-known/jwks.json) and your policy.
//! let keys = KeySet::from_jwks_json(&jwks)?;
//! let policy = Validation::builder().issuer("https://auth.example").audience("api").build()?;
//! let verifier = Arc::new(Verifier::new(keys, policy));
//!
//! let app: Router = Router::new()
//!     .route("/me", get(|auth: Authenticated| async move {
//!         auth.identity.require_all(&["read"])?;
//!         Ok::<_, portcullis::rejection::Rejection>(auth.identity.subject().to_owned())
//!     }))
//!     .layer(AuthLayer::required(Chain::new().with(Bearer::new(verifier))));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! No token is 401 with `WWW-Authenticate: Bearer realm="api"`; any bad token is 401
//! `invalid_token` (the reason goes to the log and to the `portcullis_rejections_total`
//! counter of the `metrics` facade, see [`rejection::Rejection::count`]); a missing scope
//! is 403 `insufficient_scope`.
//!
//! The rules the verifier enforces, and the reasons, are in `docs/security-model.md`;
//! every default is listed in `docs/defaults.md`.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod b64;
pub mod clock;
#[cfg(any(feature = "sessions", feature = "remote"))]
pub mod cookies;
#[cfg(feature = "remote")]
pub mod feed;
mod flat_json;
#[cfg(feature = "server")]
pub mod grant;
#[cfg(feature = "remote")]
pub mod http;
pub mod jwt;
pub mod keys;
pub mod middleware;
#[cfg(feature = "remote")]
pub mod oidc;
pub mod opaque;
#[cfg(feature = "password")]
pub mod password;
#[cfg(feature = "server")]
pub mod refresh;
pub mod rejection;
pub mod remote;
pub mod revocation;
#[cfg(feature = "sessions")]
pub mod session;
pub mod strategy;
mod strict_json;
#[cfg(feature = "server")]
pub mod throttle;
#[cfg(feature = "server")]
pub mod username;

/// The README's Rust examples compile (and the quick start runs) as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// What `benches/ratios.rs owned` measures against the crates it stands in for
/// (docs/BENCHMARKS.md, "Code we own, and why"). Not part of the API: no semver
/// promise, may go at any time.
#[doc(hidden)]
pub mod __bench {
    /// The strict base64url decoder every token segment goes through.
    pub fn b64_decode(input: &[u8]) -> Option<Vec<u8>> {
        crate::b64::decode(input)
    }

    /// The flat-object fast path for headers and claims: how many members it read.
    pub fn flat_json(input: &[u8]) -> Option<usize> {
        crate::flat_json::parse(input).map(|members| members.len())
    }

    /// The full strict parser the fast path falls back to: how many members it read.
    pub fn strict_json(input: &[u8]) -> Option<usize> {
        crate::strict_json::parse_object(input)
            .ok()
            .map(|map| map.len())
    }
}
