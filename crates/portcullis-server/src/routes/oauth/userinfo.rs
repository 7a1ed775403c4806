//! `GET|POST /oauth/userinfo` (OpenID Connect Core §5.3): who the bearer of an access
//! token with the `openid` scope is. The route sits behind the bearer strategy with
//! that scope required, so a missing, bad or revoked token is refused there (RFC 6750).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use portcullis::rejection::{Rejection, TokenFailure};
use portcullis::strategy::Identity;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /oauth/userinfo` (bearer, scope `openid`) → `{sub}`, with `preferred_username`
/// under `profile` and `email`, `email_verified` under `email` (when the account has an
/// address).
#[utoipa::path(get, path = "/oauth/userinfo", tag = "oauth",
    security(("bearer" = ["openid"])),
    responses(
        (status = 200, description = "The person: sub; preferred_username with the profile scope; email and email_verified with the email scope", body = crate::routes::schemas::UserInfo),
        (status = 401, description = "unauthorized or invalid_token", body = crate::routes::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope (no openid)", body = crate::routes::schemas::ErrorBody),
    ))]
pub async fn userinfo(
    State(state): State<AppState>,
    axum::Extension(identity): axum::Extension<Identity>,
) -> Result<Response, ApiError> {
    let sub = identity.subject();
    // Read fresh: the account may have been disabled since the token was issued (its
    // "not before" refuses the token then, but a disabled flag alone does not).
    let user = state
        .0
        .store
        .user_by_id(sub)
        .await?
        .filter(|u| !u.disabled)
        .ok_or(ApiError::Auth(Rejection::InvalidToken(
            TokenFailure::IssuedBeforeLogout,
        )))?;
    let mut body = json!({ "sub": user.id });
    if identity.scopes().any(|s| s == "profile") {
        body["preferred_username"] = user.username.into();
    }
    if identity.scopes().any(|s| s == "email")
        && let Some(email) = user.email
    {
        body["email"] = email.into();
        body["email_verified"] = user.email_verified.into();
    }
    let mut r = Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
