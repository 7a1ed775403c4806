//! The bearer-token strategy (RFC 6750): JWTs verified by a [`Verifier`].

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::request::Parts;

use super::{Identity, Outcome, Strategy, StrategyFuture};
use crate::jwt::{Claims, Reason, VerifiedToken, Verifier};
use crate::rejection::{
    Rejection, TokenFailure, bearer_candidate, is_b64token, malformed_bearer_token,
};
use crate::remote::RemoteJwks;

/// Consulted after a token verifies: revoked sessions, per-user "not before" times.
pub trait RevocationCheck: Send + Sync + 'static {
    /// `Err` when the token must be refused although it verifies.
    fn check(&self, claims: &Claims) -> Result<(), TokenFailure>;

    /// [`RevocationCheck::check`] of a verified token: what [`Bearer`] calls. By
    /// default `check(token.claims())`; a check that reads only registered claims
    /// (`sid`, `sub`, `iat`, …) answers from [`VerifiedToken::registered_claims`]
    /// instead, and spares building the map of the token's other claims on every
    /// request (the library's [`RevocationList`](crate::revocation::RevocationList)
    /// and the revocation feed's follower do).
    fn check_token(&self, token: &VerifiedToken) -> Result<(), TokenFailure> {
        self.check(token.claims())
    }

    /// True when the issuer announced signing key `kid` (the revocation feed names the
    /// keys it adds: [`crate::feed`]). A [`Bearer`] with a remote JWKS then refetches
    /// the key set for a token of that key at once, whatever the unknown-kid cooldown
    /// says. By default nothing is announced.
    fn key_announced(&self, kid: &str) -> bool {
        let _ = kid;
        false
    }
}

/// Authenticates `Authorization: Bearer <jwt>`. Skips requests without an
/// `Authorization` header or with one header of another scheme; rejects every bearer
/// token that fails, a token in the query string, and a request with more than one
/// `Authorization` header (whatever their schemes and order).
#[derive(Clone)]
pub struct Bearer {
    verifier: Arc<Verifier>,
    revocation: Option<Arc<dyn RevocationCheck>>,
    remote: Option<Arc<RemoteJwks>>,
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
            remote: None,
        }
    }

    /// Adds a revocation check run after verification.
    #[must_use]
    pub fn with_revocation(mut self, check: Arc<dyn RevocationCheck>) -> Bearer {
        self.revocation = Some(check);
        self
    }

    /// Keeps the verifier's keys in step with a remote JWKS: refreshed when stale, and
    /// refetched (once per cooldown, single-flight) for a kid it does not know.
    #[must_use]
    pub fn with_remote_jwks(mut self, remote: Arc<RemoteJwks>) -> Bearer {
        self.remote = Some(remote);
        self
    }

    /// The token of a bearer request, or the outcome when there is none to verify.
    fn token(parts: &Parts) -> Result<&[u8], Outcome> {
        let in_query = parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("access_token=")));
        let values = parts.headers.get_all(AUTHORIZATION);
        // More than one Authorization header is refused whatever their schemes and
        // order, before any of them is looked at (RFC 6750 §2: one method per request).
        let mut iter = values.iter();
        if iter.next().is_some() && iter.next().is_some() {
            return Err(Outcome::Reject(Rejection::InvalidRequest(
                "more than one Authorization header",
            )));
        }
        let Some(first) = values.iter().next() else {
            return Err(if in_query {
                Outcome::Reject(Rejection::InvalidRequest(
                    "access tokens are not accepted in the query string",
                ))
            } else {
                Outcome::Skip
            });
        };
        // The scheme is what comes before the first space, compared without case.
        let first = first.as_bytes();
        let is_bearer = match first.get(..7) {
            Some(head) => head[..6].eq_ignore_ascii_case(b"bearer") && head[6] == b' ',
            None => first.eq_ignore_ascii_case(b"bearer"),
        };
        if !is_bearer {
            // Another scheme (Basic, ApiKey…): not ours.
            return Err(Outcome::Skip);
        }
        if in_query {
            return Err(Outcome::Reject(Rejection::InvalidRequest(
                "a token in more than one place",
            )));
        }
        bearer_candidate(values.iter().map(|v| v.as_bytes())).map_err(Outcome::Reject)
    }

    fn conclude(
        &self,
        token: &[u8],
        verified: Result<Arc<VerifiedToken>, crate::jwt::Error>,
    ) -> Outcome {
        let verified = match verified {
            Ok(verified) => verified,
            // Checked only now: a token that verifies is always `b64token` syntax.
            Err(_) if !is_b64token(token) => return Outcome::Reject(malformed_bearer_token()),
            Err(e) => {
                return Outcome::Reject(Rejection::InvalidToken(TokenFailure::Verification(
                    e.reason(),
                )));
            }
        };
        if let Some(check) = &self.revocation
            && let Err(failure) = check.check_token(&verified)
        {
            return Outcome::Reject(match failure {
                TokenFailure::RevocationsUnknown => Rejection::Unavailable,
                failure => Rejection::InvalidToken(failure),
            });
        }
        Outcome::Authenticated(Identity::from_token(verified, "bearer"))
    }

    /// A token named a key we do not hold: refetch, behind the cooldown unless the
    /// issuer announced that key. True when the caller should verify again.
    async fn refetch_for(&self, remote: &RemoteJwks, token: &[u8]) -> bool {
        // Unverified, only to choose whether the cooldown applies: an announced kid
        // comes from the issuer's authenticated feed, never from the token.
        let announced = self.revocation.as_ref().and_then(|check| {
            let kid = unverified_kid(token)?;
            check.key_announced(&kid).then_some(kid)
        });
        match announced {
            Some(kid) => remote.refresh_for_announced_kid(&kid).await,
            None => remote.refresh_for_unknown_kid().await,
        }
    }
}

impl Strategy for Bearer {
    fn name(&self) -> &'static str {
        "bearer"
    }

    fn authenticate_now(&self, parts: &Parts) -> Option<Outcome> {
        // Remote keys that are fresh verify here too; stale keys, or a kid the keys do
        // not have, take the asynchronous path (which may fetch).
        if let Some(remote) = &self.remote
            && !remote.is_fresh()
        {
            return None;
        }
        Some(match Self::token(parts) {
            Ok(token) => {
                let verified = self.verifier.verify_bytes(token);
                if self.remote.is_some()
                    && verified
                        .as_ref()
                        .is_err_and(|e| e.reason() == Reason::UnknownKey)
                {
                    return None;
                }
                self.conclude(token, verified)
            }
            Err(outcome) => outcome,
        })
    }

    fn authenticate<'a>(&'a self, parts: &'a Parts) -> StrategyFuture<'a> {
        let token = match Self::token(parts) {
            Ok(token) => token,
            Err(outcome) => return Box::pin(std::future::ready(outcome)),
        };
        let Some(remote) = &self.remote else {
            // Local keys: verification is synchronous and takes microseconds.
            return Box::pin(std::future::ready(
                self.conclude(token, self.verifier.verify_bytes(token)),
            ));
        };
        Box::pin(async move {
            if let Err(e) = remote.refresh_if_stale().await {
                tracing::warn!(error = %e, "remote JWKS refresh failed; serving the last good keys");
            }
            let mut verified = self.verifier.verify_bytes(token);
            if verified
                .as_ref()
                .is_err_and(|e| e.reason() == Reason::UnknownKey)
                && self.refetch_for(remote, token).await
            {
                verified = self.verifier.verify_bytes(token);
            }
            self.conclude(token, verified)
        })
    }
}

/// The `kid` of a token's header, unverified.
fn unverified_kid(token: &[u8]) -> Option<String> {
    let token = std::str::from_utf8(token).ok()?;
    let (header, _) = crate::jwt::jws::insecure_decode(token, token.len()).ok()?;
    header.get("kid")?.as_str().map(str::to_owned)
}

/// Bearer tokens from several issuers: the token's `iss` picks the [`Bearer`]
/// configured for that issuer (an allow-list), which then verifies everything,
/// `iss` included, with that issuer's own keys and policy. A token from any other
/// issuer is refused without touching a key.
#[derive(Clone, Debug, Default)]
pub struct Issuers {
    by_issuer: std::collections::HashMap<String, Bearer>,
}

impl Issuers {
    /// No issuers yet.
    pub fn new() -> Issuers {
        Issuers::default()
    }

    /// Trusts `issuer`, verified by `bearer` (whose verifier must require that issuer).
    #[must_use]
    pub fn with(mut self, issuer: impl Into<String>, bearer: Bearer) -> Issuers {
        self.by_issuer.insert(issuer.into(), bearer);
        self
    }

    /// The unverified `iss` of a token, only to choose whom to ask.
    fn issuer_of(token: &[u8]) -> Option<String> {
        let token = std::str::from_utf8(token).ok()?;
        let (_, payload) =
            crate::jwt::jws::insecure_decode(token, crate::jwt::DEFAULT_MAX_TOKEN_SIZE).ok()?;
        let claims = crate::strict_json::parse_object(&payload).ok()?;
        claims.get("iss")?.as_str().map(str::to_owned)
    }
}

impl Strategy for Issuers {
    fn name(&self) -> &'static str {
        "bearer"
    }

    fn authenticate<'a>(&'a self, parts: &'a Parts) -> StrategyFuture<'a> {
        let token = match Bearer::token(parts) {
            Ok(token) => token,
            Err(outcome) => return Box::pin(std::future::ready(outcome)),
        };
        match Self::issuer_of(token).and_then(|iss| self.by_issuer.get(&iss)) {
            Some(bearer) => bearer.authenticate(parts),
            None if !is_b64token(token) => Box::pin(std::future::ready(Outcome::Reject(
                malformed_bearer_token(),
            ))),
            None => Box::pin(std::future::ready(Outcome::Reject(
                Rejection::InvalidToken(TokenFailure::Verification(Reason::InvalidIssuer)),
            ))),
        }
    }
}
