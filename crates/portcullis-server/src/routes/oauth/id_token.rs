//! OpenID Connect ID tokens (OpenID Connect Core 1.0 §2): what a client learns of the
//! sign-in, signed with the same keys as access tokens but told apart from them by
//! `typ: JWT` and by `aud` (the client, not the resource servers).

use aws_lc_rs::digest;
use base64::Engine as _;
use portcullis::jwt::{Claims, TokenBuilder, TypPolicy, Validation, Verifier};
use portcullis::keys::Algorithm;

use crate::error::ApiError;
use crate::state::AppState;

/// What an ID token says.
#[derive(Clone, Copy, Debug)]
pub(super) struct IdTokenFacts<'a> {
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub username: &'a str,
    /// The account's email address and whether it is verified, if it has one.
    pub email: Option<(&'a str, bool)>,
    pub scope: &'a str,
    pub nonce: Option<&'a str>,
    pub auth_time: i64,
    /// The cookie session the person signed in with: what RP-initiated logout ends.
    pub sid: &'a str,
    /// How that session's sign-in was authenticated (RFC 8176 values): `amr`, and the
    /// `acr` it makes.
    pub amr: &'a str,
}

/// The left half of the hash of `access_token` with the hash function of `alg`,
/// base64url (Core §3.1.3.6). EdDSA on Ed25519 takes SHA-512, as the OpenID Connect
/// libraries that support it do.
pub(super) fn at_hash(alg: Algorithm, access_token: &str) -> String {
    let function = match alg.as_str() {
        name if name.ends_with("384") => &digest::SHA384,
        name if name.ends_with("512") || name == "EdDSA" => &digest::SHA512,
        _ => &digest::SHA256,
    };
    let d = digest::digest(function, access_token.as_bytes());
    let bytes = d.as_ref();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

/// Signs an ID token for the access token `access_token` of the same response.
pub(super) fn id_token(
    state: &AppState,
    facts: &IdTokenFacts<'_>,
    access_token: &str,
) -> Result<String, ApiError> {
    let s = &state.0;
    let keys = s.keys.current();
    let mut builder = TokenBuilder::new()
        .typ(Some("JWT".into()))
        .issuer(&s.config.issuer)
        .subject(facts.user_id)
        .audience(facts.client_id)
        .claim("auth_time", facts.auth_time)
        .claim("at_hash", at_hash(keys.active.algorithm(), access_token))
        .session_id(facts.sid)
        .expires_in(s.config.access_token_ttl);
    builder = crate::accounts::amr_claims(builder, facts.amr);
    if let Some(nonce) = facts.nonce {
        builder = builder.claim("nonce", nonce);
    }
    if facts.scope.split_whitespace().any(|s| s == "profile") {
        builder = builder.claim("preferred_username", facts.username);
    }
    if facts.scope.split_whitespace().any(|s| s == "email")
        && let Some((email, verified)) = facts.email
    {
        builder = builder
            .claim("email", email)
            .claim("email_verified", verified);
    }
    builder
        .sign_at(&keys.active, s.clock.as_ref())
        .map_err(|e| ApiError::Unexpected(e.into()))
}

/// The claims of an ID token this server issued and that has not expired (an
/// `id_token_hint`), or `None`. Whose it is (`aud`) is the caller's to check.
pub(super) fn read_back(state: &AppState, token: &str) -> Option<Claims> {
    let s = &state.0;
    let validation = Validation::builder()
        .issuer(&s.config.issuer)
        .insecure_skip_audience()
        .typ(TypPolicy::Exact("JWT".into()))
        .required_claims(["exp", "iat", "sub", "aud"])
        .max_lifetime(s.config.access_token_ttl)
        .clock(s.clock.clone())
        .build()
        .ok()?;
    let keys = s.keys.current().verifying.clone();
    Verifier::new(keys, validation)
        .verify_uncached(token)
        .ok()
        .map(|v| v.claims().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenID Connect Core §A.3's example: the access token
    /// `jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y` signed RS256 has this `at_hash`.
    #[test]
    fn at_hash_is_the_left_half_of_the_sha_256() {
        assert_eq!(
            at_hash(
                Algorithm::RS256,
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(at_hash(Algorithm::ES384, "x").len(), 32);
        assert_eq!(at_hash(Algorithm::EdDSA, "x").len(), 43);
    }
}
