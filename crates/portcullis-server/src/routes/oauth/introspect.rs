//! `POST /oauth/introspect` (RFC 7662) and `POST /oauth/revoke` (RFC 7009).
//!
//! Introspection is for confidential clients. A token is `active` only when it is ours,
//! verifies, has not expired and is not revoked (its session, its family or its user's
//! "not before"), *and* the asking client may know about it (RFC 7662 §4: only tokens
//! issued to it or meant for it): it was issued to that client; or it is an access
//! token meant for this server's API (its `aud`) and the client is a machine client
//! holding the `token:introspect` scope — a resource server checking the tokens
//! presented to it. A sign-in client with that scope sees its own tokens only, and a
//! refresh token is its owner's alone. Anything else is `{"active": false}` and nothing
//! more, so a client learns nothing about tokens that are not its own.
//!
//! Revocation takes a refresh token or an access token a client holds and ends the
//! grant behind it (the refresh family, whose id is the access tokens' `sid`): RFC 7009
//! §2.1 allows revoking the whole grant, and a lone access token cannot be revoked
//! more narrowly without a per-token denylist. A token that is unknown, not the
//! client's, or already dead gets the same 200, as the RFC asks.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portcullis::jwt::{Claims, VerifiedToken};
use portcullis::refresh::RefreshToken;
use portcullis::strategy::RevocationCheck as _;
use portcullis_store::{Client, EventKind, TokenHash};
use serde::Deserialize;
use serde_json::{Value, json};

use super::client_auth::{Public, authenticate};
use crate::error::ApiError;
use crate::routes::token_json;
use crate::state::AppState;

/// The scope that lets a client introspect tokens issued to other clients.
pub(crate) const INTROSPECT_SCOPE: &str = "token:introspect";

/// The form of an introspection or revocation request.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenQuery {
    token: Option<String>,
    /// A hint only (`access_token` or `refresh_token`); both kinds are tried.
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// The asking client and the token it asks about.
async fn read(
    state: &AppState,
    request: Request,
    public: Public,
) -> Result<(Client, String), ApiError> {
    let (headers, form): (_, TokenQuery) = super::client_form(request).await?;
    let client = authenticate(
        state,
        &headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
        public,
    )
    .await?;
    // A hint only: both kinds are tried whatever it says.
    let _ = form.token_type_hint;
    let token = form
        .token
        .ok_or_else(|| ApiError::InvalidRequest("token is missing".into()))?;
    Ok((client, token))
}

/// An access token of ours that verifies and is not revoked.
fn live_access_token(state: &AppState, token: &str) -> Option<std::sync::Arc<VerifiedToken>> {
    let verified = state.0.verifier.verify(token).ok()?;
    state
        .0
        .revocations
        .check(verified.registered_claims())
        .ok()?;
    Some(verified)
}

/// May `client` learn that this access token is live?
fn may_see_access(state: &AppState, client: &Client, claims: &Claims) -> bool {
    let owner = claims.extra.get("client_id").and_then(Value::as_str);
    if owner == Some(client.id.as_str()) {
        return true;
    }
    // A resource server: a machine client (no redirect URIs), allowed by its scope, and
    // the token is meant for the API it serves.
    let resource_server = client.redirect_uris.is_empty()
        && client
            .scope
            .split_whitespace()
            .any(|s| s == INTROSPECT_SCOPE);
    resource_server
        && claims
            .aud
            .as_ref()
            .is_some_and(|aud| aud.contains(&state.0.config.audience))
}

/// May `client` learn that a refresh token of `owner`'s is live? Only its owner: no
/// resource server is ever sent one.
fn may_see_refresh(client: &Client, owner: Option<&str>) -> bool {
    owner == Some(client.id.as_str())
}

fn inactive() -> Response {
    token_json(json!({ "active": false }))
}

fn describe_access(claims: &Claims) -> Value {
    let mut body = json!({
        "active": true,
        "token_type": "Bearer",
        "scope": claims.scope.as_deref().unwrap_or_default(),
        "client_id": claims.extra.get("client_id"),
        "sub": claims.sub,
        "iss": claims.iss,
        "aud": claims.aud,
        "exp": claims.exp,
        "iat": claims.iat,
        "jti": claims.jti,
        "sid": claims.sid,
    });
    if let Some(name) = claims.extra.get("preferred_username") {
        body["username"] = name.clone();
    }
    body
}

/// `POST /oauth/introspect` (form, confidential client) → `{"active": …}`.
#[utoipa::path(post, path = "/oauth/introspect", tag = "oauth",
    request_body(content = TokenQuery, content_type = "application/x-www-form-urlencoded"),
    security(("client" = [])),
    responses(
        (status = 200, description = "active:true with the token's claims, or active:false", body = crate::routes::schemas::Introspection),
        (status = 400, description = "invalid_request (no token)", body = crate::routes::schemas::ErrorBody),
        (status = 401, description = "invalid_client (public clients cannot introspect)", body = crate::routes::schemas::ErrorBody),
        (status = 415, description = "not a form", body = crate::routes::schemas::ErrorBody),
    ))]
pub async fn introspect(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (client, token) = read(&state, request, Public::Refused).await?;
    let token = token.as_str();
    if let Some(verified) = live_access_token(&state, token) {
        let claims = verified.claims();
        if !may_see_access(&state, &client, claims) {
            return Ok(inactive());
        }
        return Ok(token_json(describe_access(claims)));
    }
    if let Some(refresh) = RefreshToken::parse(token) {
        let info = state
            .0
            .store
            .refresh_info(
                &TokenHash(refresh.hash()),
                state.now(),
                state.0.config.rotation_policy(),
            )
            .await?;
        if let Some(info) = info
            && may_see_refresh(&client, info.client_id.as_deref())
        {
            let user = state.0.store.user_by_id(&info.user_id).await?;
            let mut body = json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": info.scope,
                "client_id": info.client_id,
                "sub": info.user_id,
                "iss": state.0.config.issuer,
                "exp": info.expires_at,
                "iat": info.created_at,
                "sid": info.family_id,
            });
            if let Some(user) = user
                && info.scope.split_whitespace().any(|s| s == "profile")
            {
                body["username"] = user.username.into();
            }
            return Ok(token_json(body));
        }
    }
    Ok(inactive())
}

/// `POST /oauth/revoke` (form; a public client names itself with `client_id`) → 200.
#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth", operation_id = "oauth_revoke",
    request_body(content = TokenQuery, content_type = "application/x-www-form-urlencoded"),
    security(("client" = []), ()),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke (the same answer)"),
        (status = 400, description = "invalid_request (no token)", body = crate::routes::schemas::ErrorBody),
        (status = 401, description = "invalid_client", body = crate::routes::schemas::ErrorBody),
        (status = 415, description = "not a form", body = crate::routes::schemas::ErrorBody),
    ))]
pub async fn revoke(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (client, token) = read(&state, request, Public::Allowed).await?;
    let token = token.as_str();
    let family = if let Some(refresh) = RefreshToken::parse(token) {
        state
            .0
            .store
            .family_of(&TokenHash(refresh.hash()))
            .await?
            .filter(|(_, owner)| owner.as_deref() == Some(client.id.as_str()))
            .map(|(family, _)| family)
    } else {
        // Expired or already revoked access tokens have nothing left to end.
        live_access_token(&state, token).and_then(|verified| {
            let owner = verified.claim("client_id").and_then(Value::as_str);
            (owner == Some(client.id.as_str()))
                .then(|| verified.registered_claims().sid.clone())
                .flatten()
        })
    };
    let now = state.now();
    if let Some(family) = family
        && state
            .0
            .store
            .revoke_client_family(&client.id, &family, now)
            .await?
    {
        crate::events::apply_own(&state, EventKind::FamilyRevoked, &family, now);
        tracing::info!(client = %client.id, sid = %family, "grant revoked by its client");
    }
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}
