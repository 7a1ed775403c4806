//! Passkeys over JSON: registering one, listing and removing them, and the sign-in
//! ceremony (passwordless, or the second step after a password), answered with tokens
//! (`/auth/webauthn/login/finish`) or a cookie session (`/session/webauthn/login/finish`).
//! The work is `crate::passkeys`'s. The pages drive the same endpoints from
//! `/assets/passkeys.js`.

use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::body::JsonBody;
use super::client_addr::ClientAddr;
use super::cookie::{Person, refuse_cross_site};
use super::token_json;
use crate::error::ApiError;
use crate::state::AppState;

/// `{password}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterStart {
    /// The account's current password.
    password: String,
}

/// `{ceremony, credential, label?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinish {
    /// The `ceremony` of the start's answer.
    ceremony: String,
    /// What `navigator.credentials.create` returned, its binary members base64url.
    #[schema(value_type = Object)]
    credential: RegisterPublicKeyCredential,
    /// A name for the passkey (at most 64 characters).
    #[serde(default)]
    label: String,
}

/// `{}` or `{mfa_token}`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginStart {
    /// The password step's `mfa_token`: the passkey is its second step.
    #[serde(default)]
    mfa_token: Option<String>,
}

/// `{ceremony, credential}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginFinish {
    /// The `ceremony` of the start's answer.
    ceremony: String,
    /// What `navigator.credentials.get` returned, its binary members base64url.
    #[schema(value_type = Object)]
    credential: PublicKeyCredential,
}

/// `{password}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemovePasskey {
    /// The account's current password.
    password: String,
}

/// `POST /auth/webauthn/register/start {password}` → 200 `{"publicKey": …, "ceremony"}`.
#[utoipa::path(post, path = "/auth/webauthn/register/start", tag = "second factors", request_body = RegisterStart,
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "PublicKeyCredentialCreationOptions (binary members base64url) and the ceremony's token"),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "wrong_password, or access_denied", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found: passkeys need an issuer whose host is a domain name", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict: the account has ten passkeys", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn register_start(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Person(identity): Person,
    JsonBody(body): JsonBody<RegisterStart>,
) -> Result<Response, ApiError> {
    let started =
        crate::passkeys::register_start(&state, client, identity.subject(), body.password).await?;
    Ok(token_json(started.json()))
}

/// `POST /auth/webauthn/register/finish {ceremony, credential, label}` → 201 `{id, label}`.
#[utoipa::path(post, path = "/auth/webauthn/register/finish", tag = "second factors", request_body = RegisterFinish,
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 201, description = "The passkey is the account's: `{id, label}`, and `recovery_codes` (shown once) when it is the account's first second factor"),
        (status = 400, description = "invalid_request (the label)", body = super::schemas::ErrorBody),
        (status = 401, description = "invalid_passkey (the ceremony is unknown, used, expired or another account's, or the credential does not verify)", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict: registered already, or ten passkeys", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
    ))]
pub async fn register_finish(
    State(state): State<AppState>,
    Person(identity): Person,
    JsonBody(body): JsonBody<RegisterFinish>,
) -> Result<Response, ApiError> {
    let done = crate::passkeys::register_finish(
        &state,
        identity.subject(),
        &body.ceremony,
        &body.credential,
        &body.label,
    )
    .await?;
    let mut answer = json!({ "id": done.id, "label": done.label });
    if let Some(codes) = done.recovery_codes {
        answer["recovery_codes"] = codes.into();
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /auth/webauthn/credentials` → 200 `{"passkeys": [{id, label, created_at, last_used_at}]}`.
#[utoipa::path(get, path = "/auth/webauthn/credentials", tag = "second factors", operation_id = "passkeys_list",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The account's passkeys, oldest first"),
        crate::routes::schemas::CredentialRefusals,
    ))]
pub async fn list(
    State(state): State<AppState>,
    Person(identity): Person,
) -> Result<Response, ApiError> {
    let passkeys = state.0.store.passkeys_of(identity.subject()).await?;
    let list: Vec<_> = passkeys
        .iter()
        .map(|p| json!({ "id": p.id, "label": p.label, "created_at": p.created_at, "last_used_at": p.last_used_at }))
        .collect();
    Ok(token_json(json!({ "passkeys": list })))
}

/// `DELETE /auth/webauthn/credentials/{id} {password}` → 204.
#[utoipa::path(delete, path = "/auth/webauthn/credentials/{id}", tag = "second factors", operation_id = "passkeys_remove", request_body = RemovePasskey,
    params(("id" = String, Path, description = "The passkey's credential id")),
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 204, description = "Removed (with the recovery codes, when no factor is left)"),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "wrong_password, or access_denied", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found: no such passkey of yours", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Person(identity): Person,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RemovePasskey>,
) -> Result<Response, ApiError> {
    crate::passkeys::remove(&state, client, identity.subject(), &id, body.password).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /auth/webauthn/login/start {}` or `{mfa_token}` → 200 `{"publicKey": …, "ceremony"}`.
#[utoipa::path(post, path = "/auth/webauthn/login/start", tag = "second factors", request_body = LoginStart,
    responses(
        (status = 200, description = "PublicKeyCredentialRequestOptions (binary members base64url) and the ceremony's token"),
        (status = 400, description = "invalid_mfa_token, or invalid_request", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found: passkeys need an issuer whose host is a domain name", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict: the account has no passkey", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn login_start(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    request: Request,
) -> Result<Response, ApiError> {
    // No body at all (no Content-Type, nothing to read) is a passwordless sign-in.
    let empty = !request.headers().contains_key(header::CONTENT_TYPE)
        && request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_none_or(|l| l.as_bytes() == b"0");
    let body = if empty {
        LoginStart::default()
    } else {
        JsonBody::<LoginStart>::from_request(request, &()).await?.0
    };
    let started = crate::passkeys::login_start(&state, client, body.mfa_token.as_deref()).await?;
    Ok(token_json(started.json()))
}

/// `POST /auth/webauthn/login/finish {ceremony, credential}` → 200 token response.
#[utoipa::path(post, path = "/auth/webauthn/login/finish", tag = "second factors", request_body = LoginFinish,
    responses(
        (status = 200, description = "Tokens (with device_token)", body = super::schemas::TokenResponse),
        (status = 400, description = "invalid_mfa_token (a second step whose password sign-in ended)", body = super::schemas::ErrorBody),
        (status = 401, description = "invalid_passkey", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
    ))]
pub async fn login_finish(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginFinish>,
) -> Result<Response, ApiError> {
    let signed_in =
        crate::passkeys::login_finish(&state, client, &body.ceremony, &body.credential).await?;
    super::auth::grant_tokens(&state, &headers, signed_in).await
}

/// `POST /session/webauthn/login/finish {ceremony, credential}` → 200 as `/session/login`.
#[utoipa::path(post, path = "/session/webauthn/login/finish", tag = "sessions", request_body = LoginFinish,
    responses(
        (status = 200, description = "The session, with Set-Cookie", body = super::schemas::SessionStarted),
        (status = 400, description = "invalid_mfa_token", body = super::schemas::ErrorBody),
        (status = 401, description = "invalid_passkey", body = super::schemas::ErrorBody),
        (status = 403, description = "access_denied (cross-site)", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
    ))]
pub async fn session_login_finish(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginFinish>,
) -> Result<Response, ApiError> {
    refuse_cross_site(&state, &headers)?;
    let signed_in =
        crate::passkeys::login_finish(&state, client, &body.ceremony, &body.credential).await?;
    super::session::session_signed_in(&state, &headers, signed_in).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveForm {
    #[serde(default)]
    csrf_token: String,
    password: String,
}

/// `POST /account/passkeys/{id}/remove` (form): the password, then the passkey goes.
#[utoipa::path(post, path = "/account/passkeys/{id}/remove", tag = "pages",
    params(("id" = String, Path, description = "The passkey's credential id")),
    request_body(content = RemoveForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 400, description = "Not a form, or a malformed Authorization header (HTML)", content_type = "text/html"),
        (status = 401, description = "Signed out meanwhile, or a bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 303, description = "Back to /account?done=passkey-removed"),
        (status = 403, description = "The password is wrong, a wrong form token, or a cross-site form (HTML)", content_type = "text/html"),
        (status = 404, description = "No such passkey of yours (HTML)", content_type = "text/html"),
        (status = 429, description = "Too many attempts (HTML)", content_type = "text/html"),
    ))]
pub async fn account_remove(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(id): Path<String>,
    signed_in: Result<Option<super::cookie::CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let (identity, form) =
        match super::html::account_form(signed_in, request, |f: &RemoveForm| &f.csrf_token).await {
            Ok(found) => found,
            Err(page) => return page,
        };
    match crate::passkeys::remove(&state, client, identity.subject(), &id, form.password).await {
        Ok(()) => super::html::back_to_account("passkey-removed"),
        Err(e) => super::html::account_refused(e),
    }
}
