//! Accounts and tokens: signup, login, refresh, logout, logout everywhere, me.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis::jwt::random_id;
use portcullis::refresh::RefreshToken;
use portcullis::rejection::Rejection;
use portcullis_store::{EventKind, FamilyLogin, FamilyStart, Rotation, TokenHash};
use serde::Deserialize;
use serde_json::json;

use super::body::JsonBody;
use super::client_addr::ClientAddr;
use super::cookie::Person;
use super::token_json;
use crate::accounts::{
    Grant, SignedIn, create_account, end_everything, issued_at, mint_access_token,
};
use crate::device::DeviceToken;
use crate::error::ApiError;
use crate::factors::LoginStep;
use crate::state::AppState;

/// `{username, password, email?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 1–64 characters after normalisation (docs/http-api.md).
    #[schema(min_length = 1, max_length = 64)]
    username: String,
    /// 8–1024 bytes.
    #[schema(min_length = 8, max_length = 256)]
    password: String,
    /// An email address, unverified until proven (required with `require_email`).
    #[schema(max_length = 254)]
    #[serde(default)]
    email: Option<String>,
}

/// `{username, password, device_token?}`: a login may carry the device credential an
/// earlier login of this account returned.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// 1–64 characters after normalisation (docs/http-api.md).
    #[schema(min_length = 1, max_length = 64)]
    username: String,
    /// 8–1024 bytes.
    #[schema(min_length = 8, max_length = 256)]
    password: String,
    #[serde(default)]
    device_token: Option<String>,
}

/// `{refresh_token}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// `POST /auth/signup` → 201 `{id, username}`.
#[utoipa::path(post, path = "/auth/signup", tag = "accounts", request_body = Credentials,
    responses(
        (status = 201, description = "The account", body = super::schemas::Account),
        (status = 400, description = "invalid_request", body = super::schemas::ErrorBody),
        (status = 409, description = "username_taken (the name or a look-alike)", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
        (status = 503, description = "temporarily_unavailable, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn signup(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    let user = create_account(
        &state,
        crate::accounts::Creator::Signup(client),
        &body.username,
        body.password,
        body.email.as_deref(),
    )
    .await?;
    let mut answer = json!({ "id": user.id, "username": user.username });
    if let Some(email) = &user.email {
        answer["email"] = email.as_str().into();
        answer["email_verified"] = user.email_verified.into();
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `POST /auth/login` → 200 token response, with `device_token` when this client was
/// not a known device of the account yet.
#[utoipa::path(post, path = "/auth/login", tag = "tokens", request_body = LoginRequest,
    responses(
        (status = 200, description = "Tokens (with device_token for a new device)", body = super::schemas::TokenResponse),
        (status = 400, description = "invalid_request", body = super::schemas::ErrorBody),
        (status = 401, description = "invalid_credentials", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
        (status = 503, description = "temporarily_unavailable", body = super::schemas::ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    // A malformed credential is no credential: the login is simply anonymous.
    let device = body.device_token.as_deref().and_then(DeviceToken::parse);
    match crate::factors::password_step(&state, client, device, &body.username, body.password)
        .await?
    {
        LoginStep::Done(signed_in) => grant_tokens(&state, &headers, *signed_in).await,
        LoginStep::SecondFactor(pending) => Ok(token_json(pending.json())),
    }
}

/// `{mfa_token, method, code}`: the second step of a sign-in.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondStepRequest {
    /// The `mfa_token` of the password step's answer.
    mfa_token: String,
    /// `totp` or `recovery_code`.
    method: String,
    /// Six digits from the authenticator app, or a recovery code.
    #[schema(max_length = 64)]
    code: String,
}

impl SecondStepRequest {
    pub(super) fn mfa_token(&self) -> &str {
        &self.mfa_token
    }

    /// Checks the shape before anything is spent.
    pub(super) fn parts(&self) -> Result<(crate::factors::Method, &str), ApiError> {
        let method = crate::factors::Method::parse(&self.method)?;
        if self.code.len() > 64 {
            return Err(ApiError::InvalidRequest("code: too long".into()));
        }
        Ok((method, self.code.as_str()))
    }
}

/// `POST /auth/login/mfa` → 200 token response: the second step of a login whose
/// password step answered `mfa_required`.
#[utoipa::path(post, path = "/auth/login/mfa", tag = "tokens", request_body = SecondStepRequest,
    responses(
        (status = 200, description = "Tokens (with device_token for a new device)", body = super::schemas::TokenResponse),
        (status = 400, description = "invalid_mfa_token (sign in again) or invalid_request", body = super::schemas::ErrorBody),
        (status = 401, description = "invalid_code", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn login_second_step(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SecondStepRequest>,
) -> Result<Response, ApiError> {
    let (method, code) = body.parts()?;
    let signed_in =
        crate::factors::second_step(&state, client, body.mfa_token(), method, code).await?;
    grant_tokens(&state, &headers, signed_in).await
}

/// A refresh family and its first tokens for a finished sign-in: the family, what the
/// sign-in's last step deferred (the throttle's settlement, the new device) and the
/// audit record are written in one transaction, which also finds whether a reset, a
/// password change or a logout everywhere overtook the sign-in (then nothing but the
/// settlement is written, and the login is refused).
pub(super) async fn grant_tokens(
    state: &AppState,
    headers: &HeaderMap,
    mut signed_in: SignedIn,
) -> Result<Response, ApiError> {
    let s = &state.0;
    let user = signed_in.user.clone();
    let user = &user;
    let now = state.now();
    let family = random_id()?;
    let refresh = RefreshToken::generate()?;
    let deferred = signed_in.take_deferred();
    let audit = crate::audit::build(
        state,
        crate::audit::Entry::own(crate::audit::Kind::LoginSucceeded, &user.id)
            .with("amr", &*signed_in.amr)
            .with("sid", family.as_str())
            .with("via", "token"),
        now,
    );
    let label = crate::user_agent::label(headers);
    // The family takes the account's scope as it is now, not as it was read before the
    // password check: a scope removed meanwhile is not minted.
    let finished = s
        .store
        .finish_family_login(&FamilyLogin {
            family_id: &family,
            user_id: &user.id,
            token: &TokenHash(refresh.hash()),
            label: &label,
            amr: &signed_in.amr,
            checked_hash: &user.password_hash,
            checked_not_before: user.not_before,
            settle: &deferred.settle,
            device: deferred.device.as_ref(),
            audit: Some(&audit),
            now,
        })
        .await?;
    let started = match finished {
        FamilyStart::Started(started) => started,
        FamilyStart::Refused => return Err(ApiError::InvalidCredentials),
        FamilyStart::Overtaken => {
            tracing::info!(user = %user.id, "login overtaken by a password change or revocation: refused");
            return Err(ApiError::InvalidCredentials);
        }
    };
    crate::accounts::rehash_later(state, &mut signed_in);
    tracing::info!(user = %user.id, sid = %family, amr = %signed_in.amr, "login");
    let iat = issued_at(state, &user.id, started.not_before).await?;
    let scope = crate::accounts::granted_scope(&s.config, &started.scope, &signed_in.amr);
    let grant = Grant {
        sid: &family,
        scope: &scope,
        amr: &signed_in.amr,
    };
    token_response(
        state,
        user,
        grant,
        &refresh,
        signed_in.new_device.as_ref(),
        iat,
    )
}

/// `POST /auth/refresh` → 200 token response, or 400 `invalid_grant`.
#[utoipa::path(post, path = "/auth/refresh", tag = "tokens", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair; the presented token is used up", body = super::schemas::TokenResponse),
        (status = 400, description = "invalid_grant or invalid_request", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<Response, ApiError> {
    let s = &state.0;
    let presented = RefreshToken::parse(&body.refresh_token).ok_or(ApiError::InvalidGrant)?;
    let next = RefreshToken::generate()?;
    let policy = s.config.rotation_policy();
    let now = state.now();
    match s
        .store
        .rotate(
            &TokenHash(presented.hash()),
            &TokenHash(next.hash()),
            now,
            policy,
        )
        .await?
    {
        Rotation::Rotated {
            retry,
            family_id,
            user_id,
            scope,
            not_before,
            amr,
        } => {
            if retry {
                tracing::info!(sid = %family_id, "refresh retried within the grace window: the earlier successor is dead");
            }
            crate::prometheus::refresh(if retry { "retry_in_grace" } else { "rotated" });
            let user = s
                .store
                .user_by_id(&user_id)
                .await?
                .ok_or(ApiError::InvalidGrant)?;
            let iat = issued_at(&state, &user.id, not_before).await?;
            let scope = crate::accounts::granted_scope(&s.config, &scope, &amr);
            let grant = Grant {
                sid: &family_id,
                scope: &scope,
                amr: &amr,
            };
            token_response(&state, &user, grant, &next, None, iat)
        }
        Rotation::ReuseDetected { family_id, user_id } => {
            crate::prometheus::refresh("reuse_detected");
            // Its access tokens die here before the answer, and everywhere through the log.
            crate::events::apply_own(&state, EventKind::FamilyRevoked, &family_id, now);
            tracing::warn!(sid = %family_id, "refresh token reused: family revoked");
            crate::audit::record(
                &state,
                crate::audit::Entry::new(
                    crate::audit::Kind::RefreshReused,
                    crate::audit::Actor::Nobody,
                )
                .on(&user_id)
                .with("sid", family_id.as_str()),
            )
            .await;
            Err(ApiError::InvalidGrant)
        }
        Rotation::Refused => {
            crate::prometheus::refresh("refused");
            Err(ApiError::InvalidGrant)
        }
    }
}

/// `POST /auth/logout` → 204: the refresh token's family is revoked.
#[utoipa::path(post, path = "/auth/logout", tag = "tokens", request_body = RefreshRequest,
    responses(
        (status = 204, description = "The family is revoked"),
        (status = 400, description = "invalid_grant or invalid_request", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
    ))]
pub async fn logout(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<Response, ApiError> {
    let presented = RefreshToken::parse(&body.refresh_token).ok_or(ApiError::InvalidGrant)?;
    let now = state.now();
    let family = state
        .0
        .store
        .revoke_family_of(&TokenHash(presented.hash()), now)
        .await?
        .ok_or(ApiError::InvalidGrant)?;
    crate::events::apply_own(&state, EventKind::FamilyRevoked, &family, now);
    tracing::info!(sid = %family, "logout");
    crate::audit::record(
        &state,
        crate::audit::Entry::new(crate::audit::Kind::Logout, crate::audit::Actor::Nobody)
            .with("sid", family.as_str())
            .with("via", "refresh_token"),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /auth/logout-all` (bearer, or a session cookie with the CSRF checks) → 204:
/// every refresh family and every cookie session of the user ends, and every access
/// token issued before now is refused.
#[utoipa::path(post, path = "/auth/logout-all", tag = "tokens",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 204, description = "Every session and refresh family ended"),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "access_denied (cross-site, or a machine client)", body = super::schemas::ErrorBody),
    ))]
pub async fn logout_all(
    State(state): State<AppState>,
    Person(identity): Person,
) -> Result<Response, ApiError> {
    end_everything(
        &state,
        identity.subject(),
        crate::audit::Actor::User(identity.subject().to_owned()),
    )
    .await?;
    Ok(super::cookie::no_content(
        &state,
        identity.session().is_some(),
    ))
}

/// `GET /auth/me` (bearer or session cookie) → 200 `{id, username, scope}`, with
/// `email` and `email_verified` when the account has an address: from the token for a
/// bearer request, from the session and the account for a cookie.
#[utoipa::path(get, path = "/auth/me", tag = "accounts",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "Who is asking", body = super::schemas::Me),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "access_denied (a machine client)", body = super::schemas::ErrorBody),
    ))]
pub async fn me(
    State(state): State<AppState>,
    Person(identity): Person,
) -> Result<Response, ApiError> {
    /// The answer, its members in the order they always had (alphabetical).
    #[derive(serde::Serialize)]
    struct Me<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        email: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        email_verified: Option<bool>,
        id: &'a str,
        scope: std::borrow::Cow<'a, str>,
        username: Option<&'a str>,
    }
    // A bearer request is answered from the token alone; this path is as hot as
    // `/public`-style routes get, so it builds no JSON tree.
    if let Some(token) = identity.token() {
        let claims = token.registered_claims();
        let email = token.claim("email").and_then(serde_json::Value::as_str);
        let mut response = Json(Me {
            email,
            email_verified: email.map(|_| {
                token
                    .claim("email_verified")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false)
            }),
            id: claims.sub.as_deref().unwrap_or_default(),
            scope: claims.scope.as_deref().unwrap_or_default().into(),
            username: token
                .claim("preferred_username")
                .and_then(serde_json::Value::as_str),
        })
        .into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(response);
    }
    let id = identity.subject();
    let profile = profile(&state, id).await?;
    let body = Me {
        email: profile.email.as_ref().map(|(e, _)| e.as_str()),
        email_verified: profile.email.as_ref().map(|(_, v)| *v),
        id,
        scope: crate::accounts::person_scope(&state.0.config, &identity),
        username: Some(&profile.username),
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A signed-in person's name and address, from memory when fresh (`session_cache`),
/// else from the store; an account that is gone is no longer signed in.
pub(super) async fn profile(
    state: &AppState,
    id: &str,
) -> Result<std::sync::Arc<crate::session_cache::Profile>, ApiError> {
    let store = &state.0.store;
    state
        .0
        .session_cache
        .profile(id, || async {
            Ok::<_, ApiError>(
                store
                    .user_by_id(id)
                    .await?
                    .map(|u| crate::session_cache::Profile {
                        email: u.email.map(|e| (e, u.email_verified)),
                        username: u.username,
                    }),
            )
        })
        .await?
        .ok_or(ApiError::Auth(Rejection::MissingCredentials))
}

/// The answer to a login or a refresh; the access token is issued at `iat`
/// (`accounts::issued_at`).
pub(super) fn token_response(
    state: &AppState,
    user: &portcullis_store::User,
    grant: Grant<'_>,
    refresh: &RefreshToken,
    device: Option<&DeviceToken>,
    iat: i64,
) -> Result<Response, ApiError> {
    let s = &state.0;
    let access = mint_access_token(state, user, grant, s.config.access_token_ttl, iat)?;
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": s.config.access_token_ttl.as_secs(),
        "refresh_token": refresh.expose(),
        "scope": grant.scope,
    });
    if let Some(device) = device {
        body["device_token"] = device.expose().into();
    }
    Ok(token_json(body))
}
