//! The bearer-token strategy (RFC 6750): JWTs verified by a [`Verifier`].

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::request::Parts;

use super::{Identity, Outcome, Strategy, StrategyFuture};
use crate::jwt::{Claims, Verifier};
use crate::rejection::{Rejection, TokenFailure, bearer_token};

/// Consulted after a token verifies: revoked sessions, per-user "not before" times.
pub trait RevocationCheck: Send + Sync + 'static {
    /// `Err` when the token must be refused although it verifies.
    fn check(&self, claims: &Claims) -> Result<(), TokenFailure>;
}

/// Authenticates `Authorization: Bearer <jwt>`. Skips requests without an
/// `Authorization` header or with another scheme; rejects every bearer token that
/// fails, and a token in the query string.
#[derive(Clone)]
pub struct Bearer {
    verifier: Arc<Verifier>,
    revocation: Option<Arc<dyn RevocationCheck>>,
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bearer")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl Bearer {
    /// A bearer strategy over `verifier`.
    pub fn new(verifier: Arc<Verifier>) -> Bearer {
        Bearer {
            verifier,
            revocation: None,
        }
    }

    /// Adds a revocation check run after verification.
    #[must_use]
    pub fn with_revocation(mut self, check: Arc<dyn RevocationCheck>) -> Bearer {
        self.revocation = Some(check);
        self
    }

    fn decide(&self, parts: &Parts) -> Outcome {
        let in_query = parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("access_token=")));
        let mut values = parts.headers.get_all(AUTHORIZATION).iter().peekable();
        let Some(first) = values.peek() else {
            return if in_query {
                Outcome::Reject(Rejection::InvalidRequest(
                    "access tokens are not accepted in the query string",
                ))
            } else {
                Outcome::Skip
            };
        };
        let scheme = first
            .as_bytes()
            .split(|&b| b == b' ')
            .next()
            .unwrap_or_default();
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return Outcome::Skip;
        }
        if in_query {
            return Outcome::Reject(Rejection::InvalidRequest("a token in more than one place"));
        }
        let token = match bearer_token(values.map(|v| v.as_bytes())) {
            Ok(token) => token,
            Err(rejection) => return Outcome::Reject(rejection),
        };
        let verified = match self.verifier.verify(token) {
            Ok(verified) => verified,
            Err(e) => {
                return Outcome::Reject(Rejection::InvalidToken(TokenFailure::Verification(
                    e.reason(),
                )));
            }
        };
        if let Some(check) = &self.revocation
            && let Err(failure) = check.check(verified.claims())
        {
            return Outcome::Reject(Rejection::InvalidToken(failure));
        }
        Outcome::Authenticated(Identity::from_token(verified, "bearer"))
    }
}

impl Strategy for Bearer {
    fn name(&self) -> &'static str {
        "bearer"
    }

    fn authenticate<'a>(&'a self, parts: &'a Parts) -> StrategyFuture<'a> {
        // Verification is synchronous and fast (microseconds): no need to yield.
        let outcome = self.decide(parts);
        Box::pin(std::future::ready(outcome))
    }
}
