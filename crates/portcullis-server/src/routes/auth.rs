//! Accounts and tokens: signup, login, refresh, logout, logout everywhere, me.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis::jwt::{TokenBuilder, random_id};
use portcullis::password::{Password, PasswordError, Verification};
use portcullis::refresh::RefreshToken;
use portcullis::rejection::Rejection;
use portcullis::throttle::Attempt;
use portcullis::username::{check_new_username, normalize_username, skeleton};
use portcullis_store::{Admission, NewUser, Rotation, Settlement, TokenHash, User};
use serde::Deserialize;
use serde_json::json;

use super::body::JsonBody;
use super::client_addr::ClientAddr;
use super::cookie::Person;
use crate::device::{self, DeviceToken};
use crate::error::ApiError;
use crate::state::AppState;

/// `{username, password}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 1–64 characters after normalisation (docs/http-api.md).
    #[schema(min_length = 1, max_length = 64)]
    username: String,
    /// 8–1024 bytes.
    #[schema(min_length = 8, max_length = 256)]
    password: String,
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

fn password(text: String) -> Result<Password, ApiError> {
    Password::new(text).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

fn hashing(e: PasswordError) -> ApiError {
    match e {
        PasswordError::Busy => ApiError::Busy,
        PasswordError::TooShort | PasswordError::TooLong => ApiError::InvalidRequest(e.to_string()),
        other => ApiError::Unexpected(anyhow::anyhow!(other)),
    }
}

/// `POST /auth/signup` → 201 `{id, username}`.
#[utoipa::path(post, path = "/auth/signup", tag = "accounts", request_body = Credentials,
    responses(
        (status = 201, description = "The account", body = super::schemas::Account),
        (status = 400, description = "invalid_request", body = super::schemas::ErrorBody),
        (status = 409, description = "username_taken (the name or a look-alike)", body = super::schemas::ErrorBody),
        (status = 413, description = "body over max_body_bytes", body = super::schemas::ErrorBody),
        (status = 415, description = "not JSON", body = super::schemas::ErrorBody),
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
        (status = 503, description = "temporarily_unavailable, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn signup(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    let user = create_account(&state, client, &body.username, body.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": user.id, "username": user.username })),
    )
        .into_response())
}

/// Creates an account (signup, by JSON or by the signup page): throttled per client
/// address, and a taken name costs the same hash as a free one, so the answer's timing
/// says nothing the 409 does not.
pub(super) async fn create_account(
    state: &AppState,
    client: IpAddr,
    username: &str,
    password_text: String,
) -> Result<User, ApiError> {
    let username =
        normalize_username(username).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    check_new_username(&username).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let password = password(password_text)?;
    let attempts = state.0.throttle.signup(client);
    admit(state, &attempts).await?;
    let hash = match state.0.hasher.hash(password).await {
        Ok(hash) => hash,
        Err(e) => {
            settle(state, &attempts, Settlement::NotChecked).await;
            return Err(hashing(e));
        }
    };
    let user = state
        .0
        .store
        .create_user(NewUser {
            id: random_id()?,
            skeleton: skeleton(&username),
            username,
            password_hash: hash,
            scope: state.0.config.default_scope.clone(),
            created_at: state.now(),
        })
        .await
        .map_err(|e| match e {
            // The name, or a look-alike of it (UTS #39 skeleton), is taken.
            portcullis_store::Error::Conflict => ApiError::UsernameTaken,
            other => other.into(),
        })?;
    tracing::info!(user = %user.id, "account created");
    Ok(user)
}

/// Takes a slot in every counter of `attempts`, or answers 429.
async fn admit(state: &AppState, attempts: &[Attempt]) -> Result<(), ApiError> {
    match state.0.store.admit(attempts, state.now()).await? {
        Admission::Admitted => Ok(()),
        Admission::Refused { retry_after } => Err(ApiError::Throttled {
            retry_after: retry_after.max(1),
        }),
    }
}

/// Ends an admitted attempt. A store failure here is logged, never answered: it leaves
/// the attempt counted, which is the safe side.
async fn settle(state: &AppState, attempts: &[Attempt], how: Settlement) {
    if let Err(e) = state.0.store.settle(attempts, how).await {
        tracing::warn!(error = %e, "settling a throttled attempt failed");
    }
}

/// `POST /auth/login` → 200 token response, with `device_token` when this client was
/// not a known device of the account yet.
#[utoipa::path(post, path = "/auth/login", tag = "tokens", request_body = LoginRequest,
    responses(
        (status = 200, description = "Tokens (with device_token for a new device)", body = super::schemas::TokenResponse),
        (status = 400, description = "invalid_request", body = super::schemas::ErrorBody),
        (status = 401, description = "invalid_credentials", body = super::schemas::ErrorBody),
        (status = 413, description = "body over max_body_bytes", body = super::schemas::ErrorBody),
        (status = 415, description = "not JSON", body = super::schemas::ErrorBody),
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
        (status = 503, description = "temporarily_unavailable", body = super::schemas::ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let s = &state.0;
    // A malformed credential is no credential: the login is simply anonymous.
    let device = body.device_token.as_deref().and_then(DeviceToken::parse);
    let signed_in = check_password(&state, client, device, &body.username, body.password).await?;
    let user = &signed_in.user;
    let now = state.now();
    let family = random_id()?;
    let refresh = RefreshToken::generate()?;
    // The family takes the account's scope as it is now, not as it was read before the
    // password check: a scope removed meanwhile is not minted.
    let scope = s
        .store
        .create_family(
            &family,
            &user.id,
            &TokenHash(refresh.hash()),
            &crate::user_agent::label(&headers),
            now,
        )
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    tracing::info!(user = %user.id, sid = %family, "login");
    token_response(
        &state,
        &user.id,
        &user.username,
        &scope,
        &family,
        &refresh,
        signed_in.new_device.as_ref(),
    )
}

/// A successful password check.
pub(super) struct SignedIn {
    pub user: User,
    /// A credential for this client, when it was not a known device of the account.
    pub new_device: Option<DeviceToken>,
}

/// A password login, admitted by the throttle before the password is hashed, with one
/// full verify for unknown and disabled accounts and a rehash in the background when
/// the parameters changed. Shared by token login, session login and the login page.
pub(super) async fn check_password(
    state: &AppState,
    client: IpAddr,
    device: Option<DeviceToken>,
    username_text: &str,
    password_text: String,
) -> Result<SignedIn, ApiError> {
    let checked = check_password_once(state, client, device, username_text, password_text).await;
    crate::prometheus::login(match &checked {
        Ok(_) => "success",
        Err(ApiError::InvalidCredentials) => "invalid_credentials",
        Err(ApiError::Throttled { .. }) => "throttled",
        Err(ApiError::Busy) => "busy",
        Err(ApiError::InvalidRequest(_)) => "invalid_request",
        Err(_) => "error",
    });
    checked
}

async fn check_password_once(
    state: &AppState,
    client: IpAddr,
    device: Option<DeviceToken>,
    username_text: &str,
    password_text: String,
) -> Result<SignedIn, ApiError> {
    let s = &state.0;
    // An unusable name cannot match any account: answer like a wrong password.
    let username = normalize_username(username_text).ok();
    let password = password(password_text)?;
    let account_key = username
        .clone()
        .unwrap_or_else(|| username_text.chars().take(64).collect());
    let user = match &username {
        Some(name) => s.store.user_by_username(name).await?,
        None => None,
    };
    // A device credential counts only for the account it was issued to. It is looked
    // up whether or not the account exists, so the lookup tells nothing about that.
    let known_device = match &device {
        Some(token) => device::owner(state, token)
            .await?
            .filter(|owner| user.as_ref().is_some_and(|u| u.id == *owner))
            .map(|_| TokenHash(token.sha256())),
        None => None,
    };
    let attempts = s
        .throttle
        .login(&account_key, client, known_device.as_ref());
    admit(state, &attempts).await?;
    let usable = user.filter(|u| !u.disabled);
    // Unknown, disabled and wrong-password logins all run one full verify.
    let verification = match s
        .hasher
        .verify(
            password_clone(&password)?,
            usable.as_ref().map(|u| u.password_hash.as_str()),
        )
        .await
    {
        Ok(verification) => verification,
        Err(e) => {
            settle(state, &attempts, Settlement::NotChecked).await;
            return Err(hashing(e));
        }
    };
    let (Verification::Match { needs_rehash }, Some(user)) = (verification, usable) else {
        // Counted when admitted: nothing more to write.
        tracing::info!(peer = %client, known_device = known_device.is_some(), "login refused");
        return Err(ApiError::InvalidCredentials);
    };
    settle(state, &attempts, Settlement::Success).await;
    let new_device = match known_device {
        Some(_) => None,
        None => Some(device::issue(state, &user.id).await?),
    };
    if needs_rehash {
        let (state, user_id) = (state.clone(), user.id.clone());
        tokio::spawn(async move {
            if let Ok(hash) = state.0.hasher.hash(password).await
                && let Err(e) = state.0.store.set_password_hash(&user_id, &hash).await
            {
                tracing::warn!(error = %e, "could not store the rehashed password");
            }
        });
    }
    Ok(SignedIn { user, new_device })
}

/// `Password` is not `Clone` (it is a secret); a rehash needs it once more.
fn password_clone(p: &Password) -> Result<Password, ApiError> {
    Password::new(p.expose().to_owned()).map_err(hashing)
}

/// `POST /auth/refresh` → 200 token response, or 400 `invalid_grant`.
#[utoipa::path(post, path = "/auth/refresh", tag = "tokens", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair; the presented token is used up", body = super::schemas::TokenResponse),
        (status = 400, description = "invalid_grant or invalid_request", body = super::schemas::ErrorBody),
        (status = 413, description = "body over max_body_bytes", body = super::schemas::ErrorBody),
        (status = 415, description = "not JSON", body = super::schemas::ErrorBody),
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
            token_response(
                &state,
                &user.id,
                &user.username,
                &scope,
                &family_id,
                &next,
                None,
            )
        }
        Rotation::ReuseDetected { family_id } => {
            crate::prometheus::refresh("reuse_detected");
            // Its access tokens die here before the answer, and everywhere through the log.
            crate::events::catch_up(&state).await;
            tracing::warn!(sid = %family_id, "refresh token reused: family revoked");
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
        (status = 413, description = "body over max_body_bytes", body = super::schemas::ErrorBody),
        (status = 415, description = "not JSON", body = super::schemas::ErrorBody),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<Response, ApiError> {
    let presented = RefreshToken::parse(&body.refresh_token).ok_or(ApiError::InvalidGrant)?;
    let family = state
        .0
        .store
        .revoke_family_of(&TokenHash(presented.hash()), state.now())
        .await?
        .ok_or(ApiError::InvalidGrant)?;
    crate::events::catch_up(&state).await;
    tracing::info!(sid = %family, "logout");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /auth/logout-all` (bearer, or a session cookie with the CSRF checks) → 204:
/// every refresh family and every cookie session of the user ends, and every access
/// token issued before now is refused.
#[utoipa::path(post, path = "/auth/logout-all", tag = "tokens",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 204, description = "Every session and refresh family ended"),
        (status = 400, description = "invalid_request (RFC 6750)", body = super::schemas::ErrorBody),
        (status = 401, description = "unauthorized or invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "access_denied (cross-site, or a machine client)", body = super::schemas::ErrorBody),
    ))]
pub async fn logout_all(
    State(state): State<AppState>,
    Person(identity): Person,
) -> Result<Response, ApiError> {
    end_everything(&state, identity.subject()).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if identity.session().is_some() {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, state.0.sessions.config().clear_cookie());
    }
    Ok(response)
}

/// Logout everywhere: one transaction in the store (with its events), applied here
/// before the answer; other instances follow the event log.
pub(super) async fn end_everything(state: &AppState, user_id: &str) -> Result<(), ApiError> {
    let now = state.now();
    let ended = state.0.store.revoke_user(user_id, now).await?;
    // Refused here before the answer even if reading the event log back fails.
    state.0.session_cache.forget_user(user_id);
    crate::events::catch_up(state).await;
    tracing::info!(user = %user_id, sessions = ended.len(), "logout everywhere");
    Ok(())
}

/// `GET /auth/me` (bearer or session cookie) → 200 `{id, username, scope}`: from the
/// token for a bearer request, from the session and the account for a cookie.
#[utoipa::path(get, path = "/auth/me", tag = "accounts",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "Who is asking", body = super::schemas::Me),
        (status = 400, description = "invalid_request (RFC 6750)", body = super::schemas::ErrorBody),
        (status = 401, description = "unauthorized or invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "access_denied (a machine client)", body = super::schemas::ErrorBody),
    ))]
pub async fn me(
    State(state): State<AppState>,
    Person(identity): Person,
) -> Result<Response, ApiError> {
    /// The answer, its members in the order they always had (alphabetical).
    #[derive(serde::Serialize)]
    struct Me<'a> {
        id: &'a str,
        scope: std::borrow::Cow<'a, str>,
        username: Option<&'a str>,
    }
    // A bearer request is answered from the token alone; this path is as hot as
    // `/public`-style routes get, so it builds no JSON tree.
    if let Some(claims) = identity.claims() {
        let mut response = Json(Me {
            id: claims.sub.as_deref().unwrap_or_default(),
            scope: claims.scope.as_deref().unwrap_or_default().into(),
            username: claims
                .extra
                .get("preferred_username")
                .and_then(serde_json::Value::as_str),
        })
        .into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(response);
    }
    let id = identity.subject();
    let store = &state.0.store;
    let username = state
        .0
        .session_cache
        .username(id, || async {
            Ok::<_, ApiError>(store.user_by_id(id).await?.map(|u| u.username))
        })
        .await?
        .ok_or(ApiError::Auth(Rejection::MissingCredentials))?;
    let body = Me {
        id,
        scope: identity.scopes().collect::<Vec<_>>().join(" ").into(),
        username: Some(&username),
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub(super) fn token_response(
    state: &AppState,
    user_id: &str,
    username: &str,
    scope: &str,
    family: &str,
    refresh: &RefreshToken,
    device: Option<&DeviceToken>,
) -> Result<Response, ApiError> {
    let s = &state.0;
    let access = mint_access_token(
        state,
        user_id,
        username,
        scope,
        family,
        s.config.access_token_ttl,
    )?;
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": s.config.access_token_ttl.as_secs(),
        "refresh_token": refresh.expose(),
        "scope": scope,
    });
    if let Some(device) = device {
        body["device_token"] = device.expose().into();
    }
    Ok(token_json(body))
}

/// A token response: JSON that no cache may keep (RFC 6749 §5.1).
pub(super) fn token_json(body: serde_json::Value) -> Response {
    let mut response = Json(body).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Signs an access token for `user_id` in session (or refresh family) `sid`.
pub(super) fn mint_access_token(
    state: &AppState,
    user_id: &str,
    username: &str,
    scope: &str,
    sid: &str,
    ttl: std::time::Duration,
) -> Result<String, ApiError> {
    let s = &state.0;
    let keys = s.keys.current();
    TokenBuilder::access_token(&s.config.issuer, &s.config.audience)
        .subject(user_id)
        .session_id(sid)
        .scope(scope)
        .claim("preferred_username", username)
        .expires_in(ttl)
        .sign_at(&keys.active, s.clock.as_ref())
        .map_err(|e| ApiError::Unexpected(e.into()))
}
