//! The admin API, `/admin/…`: what `portcullis users …` does, over HTTP, for access
//! tokens with scope `admin` (a person's, or a machine client's from
//! `client_credentials`). Every change goes through the same store operations as the
//! CLI's, so it takes effect everywhere the CLI's does: the revocation list and feed,
//! the event log other instances follow.
//!
//! Here: the accounts (list with a cursor, create, read, change, erase, log out,
//! sessions, second factors), the audit trail, key rotation; the clients are in
//! `admin_clients.rs`. Every change is recorded in the audit trail with its actor
//! (`audit.rs`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use portcullis::strategy::Identity;
use portcullis_store::User;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::JsonBody;
use super::token_json;
use crate::audit::{self, Actor, Entry, Kind};
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) use crate::accounts::ADMIN_SCOPE;
/// The longest page.
const MAX_LIMIT: u32 = 200;

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "scope": u.scope,
        "disabled": u.disabled,
        "email": u.email,
        "email_verified": u.email_verified,
        "factors": u.factors().collect::<Vec<_>>(),
        "created_at": u.created_at,
    })
}

/// A page's cursor: the last username of the page before, base64url; anything else
/// is refused (a cursor only says where to start, so a made-up one shows nothing the
/// caller may not list anyway).
fn cursor_of(username: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(username)
}

fn after_cursor(cursor: &str) -> Result<String, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|u| !u.is_empty() && u.len() <= 256)
        .ok_or_else(|| ApiError::InvalidRequest("after: not a cursor this API gave".into()))
}

/// `?query=&limit=&after=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Part of a username or an email address, case-insensitive.
    #[serde(default)]
    query: Option<String>,
    /// 1–200, default 50.
    #[serde(default)]
    limit: Option<u32>,
    /// The `next` cursor of the page before.
    #[serde(default)]
    after: Option<String>,
}

/// `GET /admin/users?query=&limit=&after=` → 200 `{"users": [...], "next"}`: accounts
/// by username, `limit` at a time; `next` (absent on the last page) is the `after` of
/// the next page.
#[utoipa::path(get, path = "/admin/users", tag = "admin", params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of accounts"),
        (status = 400, description = "invalid_request (a limit out of range, a cursor this API did not give)", body = super::schemas::ErrorBody),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
    ))]
pub async fn list_users(
    State(state): State<AppState>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let Query(q) = Query::<ListQuery>::try_from_uri(&uri)
        .map_err(|e| ApiError::InvalidRequest(format!("query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::InvalidRequest(format!(
            "limit: from 1 to {MAX_LIMIT}"
        )));
    }
    let after = q.after.as_deref().map(after_cursor).transpose()?;
    let query = q.query.as_deref().map(str::trim).filter(|t| !t.is_empty());
    if query.is_some_and(|t| t.chars().count() > 254) {
        return Err(ApiError::InvalidRequest(
            "query: at most 254 characters".into(),
        ));
    }
    // One more than asked: whether a next page exists.
    let mut users = state
        .0
        .store
        .users_page(query, after.as_deref(), limit + 1)
        .await?;
    let more = users.len() > limit as usize;
    users.truncate(limit as usize);
    let mut body = json!({ "users": users.iter().map(user_json).collect::<Vec<_>>() });
    if more && let Some(last) = users.last() {
        body["next"] = cursor_of(&last.username).into();
    }
    Ok(token_json(body))
}

/// A scope as an admin wrote it: its words, once each, space separated.
fn checked_scope(text: &str) -> Result<String, ApiError> {
    super::admin_clients::checked_scope(text).map_err(ApiError::InvalidRequest)
}

async fn target(state: &AppState, id: &str) -> Result<User, ApiError> {
    state
        .0
        .store
        .user_by_id(id)
        .await?
        .ok_or(ApiError::NotFound("no such account"))
}

/// `GET /admin/users/{id}` → 200 the account.
#[utoipa::path(get, path = "/admin/users/{id}", tag = "admin",
    params(("id" = String, Path, description = "The account's id (its tokens' sub)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account"),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found", body = super::schemas::ErrorBody),
    ))]
pub async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(token_json(user_json(&target(&state, &id).await?)))
}

/// `{disabled?, scope?, email?, email_verified?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// Disable (every sign-in of the account ends) or enable it.
    #[serde(default)]
    disabled: Option<bool>,
    /// The account's whole scope, space separated (taking one away refuses the access
    /// tokens issued before).
    #[serde(default)]
    scope: Option<String>,
    /// An address, or `null` to remove it (absent: unchanged).
    #[serde(default, with = "serde_with_null")]
    email: Option<Option<String>>,
    /// Whether the address is proven (with `email`, or for the current one).
    #[serde(default)]
    email_verified: Option<bool>,
}

/// Tells an absent member (`None`) from `null` (`Some(None)`).
mod serde_with_null {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// `PATCH /admin/users/{id}` `{disabled?, scope?, email?, email_verified?}` → 200 the
/// account as it is now. Disabling also ends every sign-in of the account, as `users
/// disable` does; an admin cannot disable itself, nor take `admin` from itself.
#[utoipa::path(patch, path = "/admin/users/{id}", tag = "admin", request_body = UserChange,
    params(("id" = String, Path, description = "The account's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account, changed"),
        (status = 400, description = "invalid_request (a malformed address or scope; email_verified with no address)", body = super::schemas::ErrorBody),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict (yourself: disabling, or removing admin), or email_taken", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
    ))]
pub async fn patch_user(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Identity>,
    Path(id): Path<String>,
    JsonBody(change): JsonBody<UserChange>,
) -> Result<Response, ApiError> {
    let user = target(&state, &id).await?;
    let store = &state.0.store;
    let now = state.now();
    let itself = actor.subject() == user.id;
    // Everything is checked before anything changes.
    let scope = match &change.scope {
        Some(text) => {
            let scope = checked_scope(text)?;
            if itself && !scope.split(' ').any(|w| w == ADMIN_SCOPE) {
                return Err(ApiError::Conflict("an admin cannot take admin from itself"));
            }
            Some(scope)
        }
        None => None,
    };
    if itself && change.disabled == Some(true) {
        return Err(ApiError::Conflict("an admin cannot disable itself"));
    }
    let email = match &change.email {
        Some(Some(text)) => {
            Some(Some(crate::email::normalize(text).map_err(|e| {
                ApiError::InvalidRequest(format!("email: {}", e.0))
            })?))
        }
        Some(None) => Some(None),
        None => None,
    };
    if change.email_verified.is_some() && email.is_none() && user.email.is_none() {
        return Err(ApiError::InvalidRequest(
            "email_verified: the account has no address".into(),
        ));
    }
    if let Some(email) = &email {
        let verified = change.email_verified.unwrap_or(false);
        match store
            .set_email(&user.username, email.as_ref(), verified)
            .await
        {
            Ok(_) => {}
            Err(portcullis_store::Error::Conflict) => return Err(ApiError::EmailTaken),
            Err(e) => return Err(e.into()),
        }
    } else if let Some(verified) = change.email_verified {
        let current = crate::email::normalize(user.email.as_deref().unwrap_or_default())
            .map_err(|e| ApiError::InvalidRequest(format!("email: {}", e.0)))?;
        match store
            .set_email(&user.username, Some(&current), verified)
            .await
        {
            Ok(_) => {}
            Err(portcullis_store::Error::Conflict) => return Err(ApiError::EmailTaken),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(scope) = &scope {
        store.set_scope(&user.username, scope, now).await?;
    }
    match change.disabled {
        Some(true) if !user.disabled => {
            store.set_disabled(&user.username, true).await?;
            crate::accounts::end_everything(&state, &user.id, Actor::of_identity(&actor)).await?;
        }
        Some(false) if user.disabled => {
            store.set_disabled(&user.username, false).await?;
        }
        _ => {}
    }
    state.0.session_cache.forget_user(&user.id);
    tracing::warn!(actor = %actor.subject(), user = %user.id, "account changed by an admin");
    let who = Actor::of_identity(&actor);
    let mut fields: Vec<&str> = Vec::new();
    if scope.is_some() {
        fields.push("scope");
    }
    if email.is_some() {
        fields.push("email");
    }
    if change.email_verified.is_some() {
        fields.push("email_verified");
    }
    if !fields.is_empty() {
        audit::record(
            &state,
            Entry::new(Kind::UserUpdated, who.clone())
                .on(&user.id)
                .with("fields", fields),
        )
        .await;
    }
    match change.disabled {
        Some(true) if !user.disabled => {
            audit::record(&state, Entry::new(Kind::UserDisabled, who).on(&user.id)).await;
        }
        Some(false) if user.disabled => {
            audit::record(&state, Entry::new(Kind::UserEnabled, who).on(&user.id)).await;
        }
        _ => {}
    }
    Ok(token_json(user_json(&target(&state, &id).await?)))
}

/// `POST /admin/users/{id}/logout` → 204: every session, refresh family and access
/// token of the account ends, as its own "sign out everywhere" does.
#[utoipa::path(post, path = "/admin/users/{id}/logout", tag = "admin",
    params(("id" = String, Path, description = "The account's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every sign-in of the account ended"),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found", body = super::schemas::ErrorBody),
    ))]
pub async fn logout_user(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = target(&state, &id).await?;
    crate::accounts::end_everything(&state, &user.id, Actor::of_identity(&actor)).await?;
    tracing::warn!(actor = %actor.subject(), user = %user.id, "account signed out everywhere by an admin");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /admin/users/{id}/sessions` → 200 `{"sessions": [...], "api_logins": [...]}`.
#[utoipa::path(get, path = "/admin/users/{id}/sessions", tag = "admin",
    params(("id" = String, Path, description = "The account's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account's live browser sessions and API logins"),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found", body = super::schemas::ErrorBody),
    ))]
pub async fn user_sessions(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = target(&state, &id).await?;
    let (sessions, api_logins) = super::cookie::sign_ins_json(&state, &user.id).await?;
    Ok(token_json(
        json!({ "sessions": sessions, "api_logins": api_logins }),
    ))
}

/// `DELETE /admin/users/{id}/mfa` → 204: as `portcullis users reset-mfa`.
#[utoipa::path(delete, path = "/admin/users/{id}/mfa", tag = "admin",
    params(("id" = String, Path, description = "The account's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every second factor removed; every sign-in ended"),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found", body = super::schemas::ErrorBody),
    ))]
pub async fn reset_mfa(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = target(&state, &id).await?;
    let now = state.now();
    let ended = state
        .0
        .store
        .reset_factors(&user.id, now)
        .await?
        .ok_or(ApiError::NotFound("no such account"))?;
    crate::accounts::apply_ended(&state, &user.id, &ended, now);
    tracing::warn!(actor = %actor.subject(), user = %user.id, "second factors reset by an admin");
    audit::record(
        &state,
        Entry::new(Kind::MfaReset, Actor::of_identity(&actor)).on(&user.id),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `{username, password, email?, scope?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// 1–64 characters after normalisation.
    #[schema(min_length = 1, max_length = 64)]
    username: String,
    /// 8–1024 bytes.
    #[schema(min_length = 8, max_length = 256)]
    password: String,
    /// An address; a confirmation link is mailed to it, as at signup (`PATCH` with
    /// `email_verified` marks it proven instead).
    #[serde(default)]
    #[schema(max_length = 254)]
    email: Option<String>,
    /// The account's scope (default: `default_scope`).
    #[serde(default)]
    scope: Option<String>,
}

/// `POST /admin/users {username, password, email?, scope?}` → 201 the account.
#[utoipa::path(post, path = "/admin/users", tag = "admin", request_body = NewAccount,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The account"),
        (status = 400, description = "invalid_request", body = super::schemas::ErrorBody),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
        (status = 409, description = "username_taken (the name or a look-alike)", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 503, description = "temporarily_unavailable, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn create_user(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Identity>,
    JsonBody(body): JsonBody<NewAccount>,
) -> Result<Response, ApiError> {
    let scope = match body.scope.as_deref() {
        Some(text) => Some(checked_scope(text)?),
        None => None,
    };
    let user = crate::accounts::create_account(
        &state,
        crate::accounts::Creator::Admin { scope },
        &body.username,
        body.password,
        body.email.as_deref(),
    )
    .await?;
    tracing::warn!(actor = %actor.subject(), user = %user.id, "account created by an admin");
    audit::record(
        &state,
        Entry::new(Kind::UserCreated, Actor::of_identity(&actor))
            .on(&user.id)
            .with("via", "admin"),
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(user_json(&user))).into_response())
}

/// `DELETE /admin/users/{id}` → 204: the account is erased (its sessions, refresh
/// families, devices, factors and mail tokens with it; its tokens refused everywhere).
/// The last enabled account with `admin` is not, and an admin does not erase itself.
#[utoipa::path(delete, path = "/admin/users/{id}", tag = "admin",
    params(("id" = String, Path, description = "The account's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Erased"),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict: yourself, or the last admin", body = super::schemas::ErrorBody),
    ))]
pub async fn delete_user(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if actor.subject() == id {
        return Err(ApiError::Conflict("an admin cannot erase itself"));
    }
    crate::accounts::erase(&state, &id, Actor::of_identity(&actor)).await?;
    tracing::warn!(actor = %actor.subject(), user = %id, "account erased by an admin");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `?user=&kind=&after=&limit=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only records about this account (its id).
    #[serde(default)]
    user: Option<String>,
    /// Only records of this kind (`login.failed`, `user.disabled`, …).
    #[serde(default)]
    kind: Option<String>,
    /// The `next` cursor of the page before.
    #[serde(default)]
    after: Option<String>,
    /// 1–200, default 50.
    #[serde(default)]
    limit: Option<u32>,
}

fn audit_json(r: &portcullis_store::AuditRecord) -> Value {
    json!({
        "id": r.id,
        "at": r.at,
        "kind": r.kind,
        "actor": r.actor,
        "user": r.subject,
        "address": r.address,
        "user_agent": r.user_agent,
        "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::Null),
    })
}

/// `GET /admin/audit?user=&kind=&after=&limit=` → 200 `{"records": [...], "next"}`:
/// the audit trail, oldest first; `next` (absent on the last page) is the `after` of
/// the next page, so a collector that polls with it reads every record once.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the audit trail"),
        (status = 400, description = "invalid_request (a limit out of range, an unknown kind, a cursor this API did not give)", body = super::schemas::ErrorBody),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
    ))]
pub async fn audit_trail(
    State(state): State<AppState>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let Query(q) = Query::<AuditQuery>::try_from_uri(&uri)
        .map_err(|e| ApiError::InvalidRequest(format!("query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::InvalidRequest(format!(
            "limit: from 1 to {MAX_LIMIT}"
        )));
    }
    if let Some(kind) = &q.kind
        && !audit::KINDS.iter().any(|k| k.as_str() == kind)
    {
        return Err(ApiError::InvalidRequest(
            "kind: not a kind of record (docs/operations.md lists them)".into(),
        ));
    }
    if q.user.as_ref().is_some_and(|u| u.len() > 64) {
        return Err(ApiError::InvalidRequest("user: an account id".into()));
    }
    let after =
        match &q.after {
            Some(text) => Some(text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::InvalidRequest("after: not a cursor this API gave".into())
            })?),
            None => None,
        };
    let mut records = state
        .0
        .store
        .audit(&portcullis_store::AuditFilter {
            subject: q.user.as_deref(),
            kind: q.kind.as_deref(),
            after,
            since: None,
            limit: i64::from(limit) + 1,
        })
        .await?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let mut body = json!({ "records": records.iter().map(audit_json).collect::<Vec<_>>() });
    if more && let Some(last) = records.last() {
        body["next"] = last.id.to_string().into();
    }
    Ok(token_json(body))
}

/// `{alg?, now?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    /// The new key's algorithm (default: `signing_alg`, or the newest key's).
    #[serde(default)]
    alg: Option<String>,
    /// Sign with it at once (an emergency: resource servers that cached the JWKS
    /// refuse its tokens until they fetch it again). Default: after
    /// `key_publication_delay`.
    #[serde(default)]
    now: bool,
}

/// `POST /admin/keys/rotate {alg?, now?}` → 201 `{kid, alg, signs_from}`: as
/// `portcullis keys rotate`: the key is published at once (every instance loads it
/// through the event log) and signs from `signs_from`.
#[utoipa::path(post, path = "/admin/keys/rotate", tag = "admin", request_body = KeyRotation,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new key"),
        (status = 400, description = "invalid_request (an algorithm that is not one, or a shared-secret one)", body = super::schemas::ErrorBody),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
    ))]
pub async fn rotate_key(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Identity>,
    JsonBody(body): JsonBody<KeyRotation>,
) -> Result<Response, ApiError> {
    let alg = match body.alg.as_deref() {
        Some(text) => Some(
            text.parse::<portcullis::keys::Algorithm>()
                .map_err(|_| ApiError::InvalidRequest("alg: not a signing algorithm".into()))?,
        ),
        None => None,
    };
    let newest = state.0.keys.current().newest().map(|k| k.alg);
    let alg = alg.unwrap_or_else(|| state.0.config.alg_after(newest));
    crate::config::publishable(alg).map_err(|e| ApiError::InvalidRequest(format!("alg: {e}")))?;
    let now = state.now();
    let activates_at = if body.now {
        now
    } else {
        now + portcullis::clock::secs(state.0.config.key_publication_delay)
    };
    let kid = crate::keyring::add_key(
        state.0.store.as_ref(),
        state.0.keys.keks(),
        alg,
        now,
        activates_at,
        None,
    )
    .await?
    .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("the key was not added")))?;
    crate::events::reload_keys(&state).await;
    tracing::warn!(actor = %actor.subject(), %kid, "signing key added by an admin");
    audit::record(
        &state,
        Entry::new(Kind::KeyRotated, Actor::of_identity(&actor))
            .with("kid", kid.as_str())
            .with("alg", alg.as_str())
            .with("via", "admin"),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "kid": kid, "alg": alg.as_str(), "signs_from": activates_at })),
    )
        .into_response())
}
