//! Integration tests of the token core: one binary, so the suite links once.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod middleware;
#[cfg(feature = "remote")]
mod oidc_client;
mod properties;
mod regressions;
#[cfg(feature = "remote")]
mod remote_issuer;
mod rfc;
#[cfg(feature = "sessions")]
mod sessions;
mod support;
mod verifier;
mod wycheproof;
