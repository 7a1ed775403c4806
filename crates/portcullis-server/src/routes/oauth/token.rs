//! `POST /oauth/token`: the OAuth 2.1 token endpoint.
//!
//! - `authorization_code` (RFC 6749 §4.1.3 with PKCE, RFC 7636): a client of the code
//!   flow exchanges a code with the `redirect_uri` it was issued for and the
//!   `code_verifier` whose S256 challenge it was bound to. It gets an access token for
//!   the person, a refresh token (a new rotating family bound to the client) and, when
//!   `openid` was granted, an ID token.
//! - `refresh_token`: the same rotation with reuse detection as `/auth/refresh`, for
//!   the client that owns the family only.
//! - `client_credentials` (§4.4): a confidential machine client gets an access token as
//!   itself (`sub` and `client_id` are its id), no refresh token (§4.4.3).
//!
//! Errors are RFC 6749 §5.2 bodies; a failed client authentication is 401
//! `invalid_client` with a `Basic` challenge.

use axum::extract::{Request, State};
use axum::response::Response;
use portcullis::jwt::{TokenBuilder, random_id};
use portcullis::refresh::RefreshToken;
use portcullis_store::{Client, CodeExchange, EventKind, Exchanged, Rotation, TokenHash};
use serde::Deserialize;
use serde_json::json;

use super::client_auth::{Public, authenticate};
use super::id_token::{IdTokenFacts, id_token};
use crate::error::ApiError;
use crate::routes::token_json;
use crate::state::AppState;

/// The form of a token request. Unknown parameters are ignored (RFC 6749 §3.2); a
/// parameter given twice is `invalid_request`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
}

fn missing(what: &'static str) -> ApiError {
    ApiError::InvalidRequest(format!("{what} is missing"))
}

fn grant_refused(description: &'static str) -> ApiError {
    ApiError::OAuth {
        error: "invalid_grant",
        description,
    }
}

fn unauthorized(description: &'static str) -> ApiError {
    ApiError::OAuth {
        error: "unauthorized_client",
        description,
    }
}

/// `POST /oauth/token` (form) → 200 token response; RFC 6749 §5.2 errors.
#[utoipa::path(post, path = "/oauth/token", tag = "oauth", operation_id = "oauth_token",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client" = []), ()),
    responses(
        (status = 200, description = "Tokens: an access token; a refresh token and, with openid, an ID token for the code and refresh grants", body = crate::routes::schemas::OAuthTokenResponse),
        (status = 400, description = "invalid_request, invalid_grant, unauthorized_client, unsupported_grant_type or invalid_scope", body = crate::routes::schemas::ErrorBody),
        (status = 401, description = "invalid_client", body = crate::routes::schemas::ErrorBody),
        (status = 413, description = "body over max_body_bytes", body = crate::routes::schemas::ErrorBody),
        (status = 415, description = "not a form", body = crate::routes::schemas::ErrorBody),
    ))]
pub async fn token(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (headers, form): (_, TokenRequest) = super::client_form(request).await?;
    let grant = form
        .grant_type
        .as_deref()
        .ok_or_else(|| missing("grant_type"))?;
    // The client is authenticated before the grant is looked at: an unknown client
    // learns nothing else.
    let client = authenticate(
        &state,
        &headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
        Public::Allowed,
    )
    .await?;
    // The code and refresh grants are for clients that sign people in.
    if matches!(grant, "authorization_code" | "refresh_token") && client.redirect_uris.is_empty() {
        return Err(unauthorized(
            "this client is registered for client_credentials only",
        ));
    }
    match grant {
        "authorization_code" => authorization_code(&state, &client, &form).await,
        "refresh_token" => refresh_token(&state, &client, &form).await,
        "client_credentials" => client_credentials(&state, &client, form.scope.as_deref()),
        _ => Err(ApiError::UnsupportedGrantType),
    }
}

/// The scopes asked for, once each, in order; `None` when none were asked for.
fn asked(scope: Option<&str>) -> Result<Option<Vec<&str>>, ApiError> {
    let Some(scope) = scope else {
        return Ok(None);
    };
    let mut unique: Vec<&str> = Vec::new();
    for s in scope.split_whitespace() {
        if !unique.contains(&s) {
            unique.push(s);
        }
    }
    if unique.is_empty() {
        return Err(ApiError::InvalidScope);
    }
    Ok(Some(unique))
}

fn client_credentials(
    state: &AppState,
    client: &Client,
    scope: Option<&str>,
) -> Result<Response, ApiError> {
    if client.public {
        return Err(unauthorized(
            "a public client cannot use the client_credentials grant",
        ));
    }
    // A client that signs people in was given its scopes as a ceiling on what people
    // may delegate to it, not as permissions of its own.
    if !client.redirect_uris.is_empty() {
        return Err(unauthorized(
            "this client signs people in; client_credentials is for machine clients",
        ));
    }
    let allowed: Vec<&str> = client.scope.split_whitespace().collect();
    let scope = match asked(scope)? {
        None => allowed.join(" "),
        Some(asked) if asked.iter().all(|s| allowed.contains(s)) => asked.join(" "),
        Some(_) => return Err(ApiError::InvalidScope),
    };
    let s = &state.0;
    let ttl = s.config.access_token_ttl;
    let keys = s.keys.current();
    // Every token of ours carries a `sid`; a client token's is its own, fresh each time
    // (there is no session to end: disabling the client ends its tokens).
    let sid = random_id()?;
    let access = TokenBuilder::access_token(&s.config.issuer, &s.config.audience)
        .subject(&client.id)
        .session_id(&sid)
        .claim("client_id", client.id.as_str())
        .scope(&scope)
        .expires_in(ttl)
        .sign_at(&keys.active, s.clock.as_ref())
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    tracing::info!(client = %client.id, name = %client.name, "client token issued");
    Ok(token_json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "scope": scope,
    })))
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
fn check_verifier(verifier: &str) -> Result<(), ApiError> {
    let ok = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(
            "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636)".into(),
        ))
    }
}

/// BASE64URL(SHA-256(ASCII(code_verifier))), RFC 7636 §4.2.
pub(super) fn s256(verifier: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(portcullis::opaque::sha256(verifier.as_bytes()))
}

async fn authorization_code(
    state: &AppState,
    client: &Client,
    form: &TokenRequest,
) -> Result<Response, ApiError> {
    let code = form.code.as_deref().ok_or_else(|| missing("code"))?;
    let redirect_uri = form
        .redirect_uri
        .as_deref()
        .ok_or_else(|| missing("redirect_uri"))?;
    let verifier = form
        .code_verifier
        .as_deref()
        .ok_or_else(|| missing("code_verifier (PKCE is required)"))?;
    check_verifier(verifier)?;
    let Some(code) = portcullis::opaque::Opaque::parse(code) else {
        return Err(grant_refused("the authorization code is invalid"));
    };
    let family_id = random_id()?;
    let refresh = RefreshToken::generate()?;
    let challenge = s256(verifier);
    let code_hash = TokenHash(code.sha256());
    let refresh_hash = TokenHash(refresh.hash());
    let exchange = CodeExchange {
        code: &code_hash,
        client_id: &client.id,
        redirect_uri,
        challenge: &challenge,
        family_id: &family_id,
        refresh: &refresh_hash,
        label: &client.name,
    };
    let now = state.now();
    match state.0.store.exchange_code(&exchange, now).await? {
        Exchanged::Granted {
            code,
            scope,
            username,
            not_before,
            email,
            email_verified,
        } => {
            tracing::info!(client = %client.id, user = %code.user_id, sid = %family_id, "authorization code exchanged");
            let facts = IdTokenFacts {
                client_id: &client.id,
                user_id: &code.user_id,
                username: &username,
                email: email.as_deref().map(|e| (e, email_verified)),
                scope: &scope,
                nonce: code.nonce.as_deref(),
                auth_time: code.auth_time,
                sid: &code.session_id,
                amr: &code.amr,
            };
            let iat = crate::accounts::issued_at(state, &code.user_id, not_before).await?;
            grant_response(
                state,
                client,
                &code.user_id,
                &username,
                &scope,
                &family_id,
                &refresh,
                &code.amr,
                Some(facts),
                iat,
            )
        }
        Exchanged::Replayed { family_id } => {
            // Its access tokens die here before the answer, and everywhere through the log.
            if let Some(family_id) = &family_id {
                crate::events::apply_own(state, EventKind::FamilyRevoked, family_id, now);
            }
            tracing::warn!(client = %client.id, sid = ?family_id, "authorization code used twice: what it issued is revoked");
            crate::audit::record(
                state,
                crate::audit::Entry::new(
                    crate::audit::Kind::RefreshReused,
                    crate::audit::Actor::Client(client.id.clone()),
                )
                .with("sid", family_id.as_deref())
                .with("client", client.id.as_str())
                .with("grant", "authorization_code"),
            )
            .await;
            Err(grant_refused(
                "the authorization code was used before; the tokens it gave are revoked",
            ))
        }
        Exchanged::Refused => Err(grant_refused(
            "the authorization code is invalid or expired, was issued to another client or redirect_uri, or the code_verifier does not match",
        )),
    }
}

async fn refresh_token(
    state: &AppState,
    client: &Client,
    form: &TokenRequest,
) -> Result<Response, ApiError> {
    let presented = form
        .refresh_token
        .as_deref()
        .ok_or_else(|| missing("refresh_token"))?;
    let refused = || grant_refused("the refresh token is invalid, expired or revoked");
    let presented = RefreshToken::parse(presented).ok_or_else(refused)?;
    let asked = asked(form.scope.as_deref())?;
    let s = &state.0;
    let within = |granted: &str, asked: &[&str]| {
        asked
            .iter()
            .all(|a| granted.split_whitespace().any(|g| g == *a))
    };
    // A scope beyond the grant is refused before the token is redeemed, so that the
    // refusal does not use it up (a retry after the grace window would be reuse).
    if let Some(asked) = &asked
        && let Some(info) = s
            .store
            .refresh_info(
                &TokenHash(presented.hash()),
                state.now(),
                s.config.rotation_policy(),
            )
            .await?
        && !within(&info.scope, asked)
    {
        return Err(ApiError::InvalidScope);
    }
    let next = RefreshToken::generate()?;
    let now = state.now();
    let rotation = s
        .store
        .rotate_for(
            Some(&client.id),
            &TokenHash(presented.hash()),
            &TokenHash(next.hash()),
            now,
            s.config.rotation_policy(),
        )
        .await?;
    match rotation {
        Rotation::Rotated {
            family_id,
            user_id,
            scope,
            not_before,
            amr,
            ..
        } => {
            crate::prometheus::refresh("rotated");
            // What an admin took from the client since the grant is left out: a
            // grant never reaches past the client's scope as it is now.
            let scope = scope
                .split_whitespace()
                .filter(|s| client.scope.split_whitespace().any(|c| c == *s))
                .collect::<Vec<_>>()
                .join(" ");
            // A narrower scope may be asked for this access token (RFC 6749 §6); the
            // family keeps what was granted. The token is redeemed by now: what the
            // grant lost since the check above is left out, not refused.
            let scope = match asked {
                Some(asked) if within(&scope, &asked) => asked.join(" "),
                Some(asked) => {
                    let kept: Vec<&str> = asked
                        .into_iter()
                        .filter(|a| scope.split_whitespace().any(|s| s == *a))
                        .collect();
                    if kept.is_empty() {
                        scope
                    } else {
                        kept.join(" ")
                    }
                }
                None => scope,
            };
            let user = s.store.user_by_id(&user_id).await?.ok_or_else(refused)?;
            let iat = crate::accounts::issued_at(state, &user.id, not_before).await?;
            grant_response(
                state,
                client,
                &user.id,
                &user.username,
                &scope,
                &family_id,
                &next,
                &amr,
                None,
                iat,
            )
        }
        Rotation::ReuseDetected { family_id, user_id } => {
            crate::prometheus::refresh("reuse_detected");
            crate::events::apply_own(state, EventKind::FamilyRevoked, &family_id, now);
            tracing::warn!(client = %client.id, sid = %family_id, "refresh token reused: family revoked");
            crate::audit::record(
                state,
                crate::audit::Entry::new(
                    crate::audit::Kind::RefreshReused,
                    crate::audit::Actor::Client(client.id.clone()),
                )
                .on(&user_id)
                .with("sid", family_id.as_str())
                .with("client", client.id.as_str()),
            )
            .await;
            Err(refused())
        }
        Rotation::Refused => {
            crate::prometheus::refresh("refused");
            Err(refused())
        }
    }
}

/// The answer to the code and refresh grants: an access token for the person, for this
/// client (`client_id`), in family `family_id` (its `sid`); the family's next refresh
/// token; and an ID token when asked for. The access token is issued at `iat`
/// (`accounts::issued_at`).
#[allow(clippy::too_many_arguments)] // one call site per grant; a struct would only rename them
fn grant_response(
    state: &AppState,
    client: &Client,
    user_id: &str,
    username: &str,
    scope: &str,
    family_id: &str,
    refresh: &RefreshToken,
    amr: &str,
    id: Option<IdTokenFacts<'_>>,
    iat: i64,
) -> Result<Response, ApiError> {
    let s = &state.0;
    let scope = &*crate::accounts::granted_scope(&s.config, scope, amr);
    let ttl = s.config.access_token_ttl;
    let keys = s.keys.current();
    let profile = scope.split_whitespace().any(|s| s == "profile");
    let mut builder = TokenBuilder::access_token(&s.config.issuer, &s.config.audience)
        .subject(user_id)
        .session_id(family_id)
        .claim("client_id", client.id.as_str())
        .scope(scope)
        .issued_at(iat)
        .expires_in(ttl);
    builder = crate::accounts::amr_claims(builder, amr);
    // The username is personal data: a client sees it with `profile` only.
    if profile {
        builder = builder.claim("preferred_username", username);
    }
    let access = builder
        .sign_at(&keys.active, s.clock.as_ref())
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "refresh_token": refresh.expose(),
        "scope": scope,
    });
    if let Some(facts) = id
        && scope.split_whitespace().any(|s| s == "openid")
    {
        body["id_token"] = id_token(state, &facts, &access)?.into();
    }
    Ok(token_json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    #[test]
    fn the_s256_challenge_is_the_one_of_rfc_7636() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_verifier_has_rfc_7636s_length_and_characters() {
        assert!(check_verifier(&"a".repeat(43)).is_ok());
        assert!(check_verifier(&"A-._~9".repeat(22)[..128]).is_ok());
        assert!(check_verifier(&"a".repeat(42)).is_err());
        assert!(check_verifier(&"a".repeat(129)).is_err());
        assert!(check_verifier(&format!("{}+", "a".repeat(43))).is_err());
    }
}
