//! `POST /oauth/token`: the OAuth 2.0 token endpoint, for machine clients (the
//! client-credentials grant, RFC 6749 §4.4). A client authenticates with its id and
//! secret, in an HTTP Basic header (`client_secret_basic`) or in the form
//! (`client_secret_post`), and gets a short-lived access token as itself: `sub` and
//! `client_id` are its id, `scope` what it asked for within what it was registered with.
//! No refresh token (RFC 6749 §4.4.3): it asks again.
//!
//! Secrets are 256 random bits stored as SHA-256, compared in constant time. Guessing
//! one is hopeless, so this endpoint has no throttle.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use base64::Engine as _;
use portcullis::jwt::TokenBuilder;
use portcullis::opaque::Opaque;
use serde::Deserialize;
use serde_json::json;

use super::auth::token_json;
use super::cookie::{is_form, read_form};
use crate::error::ApiError;
use crate::state::AppState;

/// The form of a token request. Unknown parameters are ignored (RFC 6749 §3.2); a
/// parameter given twice is `invalid_request`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// The client's credentials, from the one method it used.
struct Credentials {
    id: String,
    secret: String,
}

fn percent_decoded(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `client_secret_basic` or `client_secret_post`, never both (RFC 6749 §2.3).
fn credentials(headers: &HeaderMap, form: &TokenRequest) -> Result<Credentials, ApiError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| ApiError::InvalidClient)?;
            let Some(encoded) = value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
                .map(|(_, rest)| rest.trim())
            else {
                return Err(ApiError::InvalidClient);
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(ApiError::InvalidClient)?;
            let (id, secret) = decoded.split_once(':').ok_or(ApiError::InvalidClient)?;
            Some(Credentials {
                id: percent_decoded(id).ok_or(ApiError::InvalidClient)?,
                secret: percent_decoded(secret).ok_or(ApiError::InvalidClient)?,
            })
        }
    };
    match (&basic, &form.client_id, &form.client_secret) {
        (Some(_), None, None) | (None, Some(_), Some(_)) => {}
        (Some(_), _, _) => {
            return Err(ApiError::InvalidRequest(
                "use one client authentication method: the Authorization header or the form".into(),
            ));
        }
        (None, _, _) => return Err(ApiError::InvalidClient),
    }
    Ok(basic.unwrap_or_else(|| Credentials {
        id: form.client_id.clone().unwrap_or_default(),
        secret: form.client_secret.clone().unwrap_or_default(),
    }))
}

/// `POST /oauth/token` (form) → 200 `{access_token, token_type, expires_in, scope}`;
/// RFC 6749 §5.2 errors.
#[utoipa::path(post, path = "/oauth/token", tag = "resource servers",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client" = []), ()),
    responses(
        (status = 200, description = "An access token for the client (no refresh token)", body = super::schemas::ClientTokenResponse),
        (status = 400, description = "invalid_request, unsupported_grant_type or invalid_scope", body = super::schemas::ErrorBody),
        (status = 401, description = "invalid_client", body = super::schemas::ErrorBody),
        (status = 413, description = "body over max_body_bytes", body = super::schemas::ErrorBody),
        (status = 415, description = "not a form", body = super::schemas::ErrorBody),
    ))]
pub async fn token(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (parts, body): (_, Body) = request.into_parts();
    if !is_form(&parts.headers) {
        return Err(ApiError::UnsupportedMediaType(
            "a token request is a form: Content-Type: application/x-www-form-urlencoded".into(),
        ));
    }
    let headers = parts.headers.clone();
    let form: TokenRequest = read_form(parts, body).await?;
    let grant = form
        .grant_type
        .as_deref()
        .ok_or_else(|| ApiError::InvalidRequest("grant_type is missing".into()))?;
    // The client is authenticated before the grant is looked at: an unknown client
    // learns nothing else.
    let presented = credentials(&headers, &form)?;
    let client = state
        .0
        .store
        .client_by_id(&presented.id)
        .await?
        .filter(|c| !c.disabled)
        .ok_or(ApiError::InvalidClient)?;
    let secret = Opaque::parse(&presented.secret).ok_or(ApiError::InvalidClient)?;
    aws_lc_rs::constant_time::verify_slices_are_equal(&secret.sha256(), &client.secret_hash)
        .map_err(|_| ApiError::InvalidClient)?;
    if grant != "client_credentials" {
        return Err(ApiError::UnsupportedGrantType);
    }
    let allowed: Vec<&str> = client.scope.split_whitespace().collect();
    let scope = match form.scope.as_deref().map(str::split_whitespace) {
        None => allowed.join(" "),
        Some(asked) => {
            let mut unique: Vec<&str> = Vec::new();
            for s in asked {
                if !unique.contains(&s) {
                    unique.push(s);
                }
            }
            let asked = unique;
            if asked.is_empty() || asked.iter().any(|s| !allowed.contains(s)) {
                return Err(ApiError::InvalidScope);
            }
            asked.join(" ")
        }
    };
    let s = &state.0;
    let ttl = s.config.access_token_ttl;
    let keys = s.keys.current();
    // Every token of ours carries a `sid`; a client token's is its own, fresh each time
    // (there is no session to end: disabling the client ends its tokens).
    let sid = portcullis::jwt::random_id()?;
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
