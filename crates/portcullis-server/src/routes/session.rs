//! Cookie sessions over HTTP: login (JSON or form), logout, the user's own sessions,
//! and the session-to-token exchange for single-page apps.

use portcullis::clock::secs;
use std::net::IpAddr;

use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis::rejection::Rejection;
use portcullis::session::{SessionRecord, Started};
use portcullis::strategy::Identity;
use portcullis_store::FamilyInfo;
use serde::Deserialize;
use serde_json::json;

use super::body::JsonBody;
use super::client_addr::ClientAddr;
use super::cookie::{
    CookieSession, Person, TokenForm, api_logins, end_login, end_session, is_form, read_form,
    redirect_with_cookie, refuse_cross_site, start_session,
};
use super::pages;
use super::token_json;
use crate::accounts::{SignedIn, issued_at, mint_access_token};
use crate::device;
use crate::error::ApiError;
use crate::factors::LoginStep;
use crate::state::AppState;

/// `{username, password}`, as JSON or as a form.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = SessionLoginRequest)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// 1–64 characters after normalisation (docs/http-api.md).
    #[schema(min_length = 1, max_length = 64)]
    pub(super) username: String,
    /// 8–1024 bytes.
    #[schema(min_length = 8, max_length = 256)]
    pub(super) password: String,
    /// Form only: the authorization request (`/oauth/authorize?…`) to go back to after
    /// signing in, instead of the account page. Anything else is ignored.
    #[serde(default)]
    pub(super) return_to: Option<String>,
}

/// `POST /session/login`, JSON → 200 `{session, user, csrf_token}` with the cookie;
/// form → 303 to the account page, or the login page again with the error and the
/// username that was typed (never the password).
#[utoipa::path(post, path = "/session/login", tag = "sessions", operation_id = "session_login",
    request_body(content = LoginRequest, description = "JSON, or the same fields as a form"),
    responses(
        (status = 200, description = "JSON: the session, with Set-Cookie", body = super::schemas::SessionStarted),
        (status = 303, description = "Form: to /account, with Set-Cookie"),
        (status = 400, description = "invalid_request", body = super::schemas::ErrorBody),
        (status = 401, description = "invalid_credentials", body = super::schemas::ErrorBody),
        (status = 403, description = "access_denied (a cross-site form)", body = super::schemas::ErrorBody),
        (status = 413, description = "body over max_body_bytes", body = super::schemas::ErrorBody),
        (status = 415, description = "neither JSON nor a form", body = super::schemas::ErrorBody),
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
        (status = 503, description = "temporarily_unavailable", body = super::schemas::ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let headers = parts.headers.clone();
    if is_form(&headers) {
        let typed: Result<LoginRequest, ApiError> = read_form(parts, body).await;
        let username = typed
            .as_ref()
            .map(|c| c.username.clone())
            .unwrap_or_default();
        let return_to = typed
            .as_ref()
            .ok()
            .and_then(|c| kept_return_to(&state, c.return_to.as_deref()));
        let result = match typed {
            Ok(credentials) => login_with(&state, client, &headers, credentials).await,
            Err(e) => Err(e),
        };
        return Ok(match result {
            Ok(SessionLogin::Started(done)) => {
                let (signed_in, started) = *done;
                signed_in_page(&state, return_to.as_deref(), &signed_in, started)
            }
            Ok(SessionLogin::SecondFactor(pending)) => {
                super::factors::second_step_page(&pending, None, return_to.as_deref())
            }
            Err(e) => pages::login_failed(&state, e, &username, return_to.as_deref()).await,
        });
    }
    let JsonBody(credentials) =
        JsonBody::from_request(Request::from_parts(parts, body), &()).await?;
    match login_with(&state, client, &headers, credentials).await? {
        SessionLogin::Started(done) => {
            let (signed_in, started) = *done;
            Ok(session_json(&state, &signed_in, started))
        }
        SessionLogin::SecondFactor(pending) => Ok(token_json(pending.json())),
    }
}

/// A form's `return_to` when the sign-in may go back there: an authorization request
/// of ours, or an app behind forward authentication (`forward_auth_domains`).
fn kept_return_to(state: &AppState, to: Option<&str>) -> Option<String> {
    let to = to?;
    super::oauth::return_target(to)
        .map(str::to_owned)
        .or_else(|| super::forward::forward_target(&state.0.config, to))
}

/// The 303 of a form sign-in: to where it was headed, with the cookies.
pub(super) fn signed_in_page(
    state: &AppState,
    return_to: Option<&str>,
    signed_in: &SignedIn,
    started: Started,
) -> Response {
    let to = return_to.unwrap_or("/account");
    let mut r = redirect_with_cookie(to, started.set_cookie);
    give_device_cookie(state, &mut r, signed_in);
    r
}

/// The JSON answer of a session sign-in, with the cookies.
fn session_json(state: &AppState, signed_in: &SignedIn, started: Started) -> Response {
    let user = &signed_in.user;
    let record = started.context.record();
    let mut r = Json(json!({
        "session": { "id": record.id, "expires_at": record.expires_at },
        "user": { "id": user.id, "username": user.username },
        "csrf_token": started.context.csrf_token(),
    }))
    .into_response();
    let h = r.headers_mut();
    h.insert(header::SET_COOKIE, started.set_cookie);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    give_device_cookie(state, &mut r, signed_in);
    r
}

/// `{mfa_token, method, code}` as a form, with the way back of the sign-in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecondStepForm {
    mfa_token: String,
    method: String,
    code: String,
    #[serde(default)]
    return_to: Option<String>,
}

/// `POST /session/login/mfa`, JSON `{mfa_token, method, code}` → 200 as
/// `/session/login`; form (the second-step page) → 303 on, or the page again with the
/// error while the challenge has attempts left, else the sign-in page.
#[utoipa::path(post, path = "/session/login/mfa", tag = "sessions", operation_id = "session_login_mfa",
    request_body(content = super::auth::SecondStepRequest, description = "JSON, or the same fields as a form (with return_to)"),
    responses(
        (status = 200, description = "JSON: the session, with Set-Cookie", body = super::schemas::SessionStarted),
        (status = 303, description = "Form: on to where the sign-in was headed, with Set-Cookie"),
        (status = 400, description = "invalid_mfa_token (sign in again) or invalid_request", body = super::schemas::ErrorBody),
        (status = 401, description = "invalid_code", body = super::schemas::ErrorBody),
        (status = 403, description = "access_denied (a cross-site form)", body = super::schemas::ErrorBody),
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn login_second_step(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let headers = parts.headers.clone();
    if is_form(&headers) {
        let form: SecondStepForm = match read_form(parts, body).await {
            Ok(form) => form,
            Err(e) => return Ok(pages::login_failed(&state, e, "", None).await),
        };
        let return_to = kept_return_to(&state, form.return_to.as_deref());
        let result = async {
            refuse_cross_site(&state, &headers)?;
            let method = crate::factors::Method::parse(&form.method)?;
            let signed_in =
                crate::factors::second_step(&state, client, &form.mfa_token, method, &form.code)
                    .await?;
            start_signed_in(&state, &headers, signed_in).await
        }
        .await;
        return Ok(match result {
            Ok((signed_in, started)) => {
                signed_in_page(&state, return_to.as_deref(), &signed_in, started)
            }
            // A wrong code: the same challenge again, while it has attempts left.
            Err(e @ ApiError::InvalidCode) => {
                super::factors::second_step_retry(e, &form.mfa_token, return_to.as_deref())
            }
            Err(e) => pages::login_failed(&state, e, "", return_to.as_deref()).await,
        });
    }
    let JsonBody(body) = JsonBody::<super::auth::SecondStepRequest>::from_request(
        Request::from_parts(parts, body),
        &(),
    )
    .await?;
    refuse_cross_site(&state, &headers)?;
    let (method, code) = body.parts()?;
    let signed_in =
        crate::factors::second_step(&state, client, body.mfa_token(), method, code).await?;
    let (signed_in, started) = start_signed_in(&state, &headers, signed_in).await?;
    Ok(session_json(&state, &signed_in, started))
}

/// A cookie session for a finished sign-in (a passkey's), answered as the JSON
/// `/session/login` is.
pub(super) async fn session_signed_in(
    state: &AppState,
    headers: &HeaderMap,
    signed_in: SignedIn,
) -> Result<Response, ApiError> {
    let (signed_in, started) = start_signed_in(state, headers, signed_in).await?;
    Ok(session_json(state, &signed_in, started))
}

/// What a session sign-in's password step led to.
enum SessionLogin {
    Started(Box<(SignedIn, Started)>),
    SecondFactor(crate::factors::Pending),
}

/// Adds the device cookie when the login made this browser a known device.
pub(super) fn give_device_cookie(state: &AppState, r: &mut Response, signed_in: &SignedIn) {
    if let Some(token) = &signed_in.new_device {
        r.headers_mut()
            .append(header::SET_COOKIE, device::set_cookie(state, token));
    }
}

async fn login_with(
    state: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
    credentials: LoginRequest,
) -> Result<SessionLogin, ApiError> {
    refuse_cross_site(state, headers)?;
    let device = device::from_cookie(state, headers);
    match crate::factors::password_step(
        state,
        client,
        device,
        &credentials.username,
        credentials.password,
    )
    .await?
    {
        LoginStep::Done(signed_in) => {
            let done = start_signed_in(state, headers, *signed_in).await?;
            Ok(SessionLogin::Started(Box::new(done)))
        }
        LoginStep::SecondFactor(pending) => Ok(SessionLogin::SecondFactor(pending)),
    }
}

/// A session for a finished sign-in, unless a password change or a revocation
/// overtook it.
pub(super) async fn start_signed_in(
    state: &AppState,
    headers: &HeaderMap,
    mut signed_in: SignedIn,
) -> Result<(SignedIn, Started), ApiError> {
    let user = signed_in.user.clone();
    crate::accounts::write_deferred(state, &mut signed_in).await?;
    let started = start_session(state, headers, &user.id, &user.scope, &signed_in.amr).await?;
    if !crate::accounts::login_stands(state, &mut signed_in).await? {
        let id = started.context.id().to_owned();
        super::cookie::end_session(state, &id, &user.id).await?;
        tracing::info!(user = %user.id, "session login overtaken by a password change or revocation: refused");
        return Err(ApiError::InvalidCredentials);
    }
    Ok((signed_in, started))
}

/// `POST /session/logout` → 204 (JSON) or 303 to the login page (form, which must carry
/// the synchronizer token): the session ends server-side and the cookie is cleared.
#[utoipa::path(post, path = "/session/logout", tag = "sessions", operation_id = "session_logout",
    security(("session" = [])),
    responses(
        (status = 204, description = "JSON: the session ended, cookie cleared"),
        (status = 303, description = "Form: to /login, cookie cleared"),
        (status = 401, description = "unauthorized (an HTML page for a form)", body = super::schemas::ErrorBody, content_type = "application/json"),
        (status = 403, description = "access_denied (an HTML page for a form)", body = super::schemas::ErrorBody, content_type = "application/json"),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    signed_in: Option<CookieSession>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let form = is_form(&parts.headers);
    let identity = match signed_in {
        Some(CookieSession(identity)) => identity,
        // Already signed out: where a signed-out person belongs.
        None if form => return Ok(Redirect::to("/login").into_response()),
        None => return Err(ApiError::Auth(Rejection::MissingCredentials)),
    };
    let Some(session) = identity.session() else {
        return Err(ApiError::Auth(Rejection::MissingCredentials));
    };
    if form {
        let TokenForm { csrf_token } = read_form(parts, body).await?;
        session
            .check_csrf_token(&csrf_token)
            .map_err(ApiError::Auth)?;
    }
    end_session(&state, session.id(), identity.subject()).await?;
    let clear = state.0.sessions.config().clear_cookie();
    if form {
        return Ok(redirect_with_cookie(pages::SIGNED_OUT_HERE, clear));
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, clear);
    Ok(response)
}

fn describe(record: &SessionRecord, current: bool) -> serde_json::Value {
    json!({
        "id": record.id,
        "label": record.label,
        "device": crate::user_agent::describe(&record.label),
        "created_at": record.created_at,
        "last_seen_at": record.last_seen_at,
        "expires_at": record.expires_at,
        "current": current,
    })
}

/// The session id a request is in: the cookie's, or a token's `sid`.
pub(super) fn current_sid(identity: &Identity) -> Option<&str> {
    identity.session().map(|s| s.id()).or_else(|| {
        identity
            .token()
            .and_then(|t| t.registered_claims().sid.as_deref())
    })
}

/// An API login (a live refresh family) as `GET /session/list` shows it.
fn describe_family(family: &FamilyInfo, current: bool) -> serde_json::Value {
    json!({
        "id": family.id,
        "label": family.label,
        "device": crate::user_agent::describe(&family.label),
        "created_at": family.created_at,
        "last_used_at": family.last_used_at,
        "current": current,
    })
}

/// `GET /session/list` (bearer or cookie) → 200 `{sessions: [...], api_logins: [...]}`:
/// browser sessions newest first, then the API logins (live refresh families) most
/// recently used first. Either kind ends with `DELETE /session/{id}`.
#[utoipa::path(get, path = "/session/list", tag = "sessions",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "Browser sessions and API logins", body = super::schemas::Logins),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "access_denied (a machine client)", body = super::schemas::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Person(identity): Person,
) -> Result<Response, ApiError> {
    let current = current_sid(&identity);
    let sessions = state
        .0
        .sessions
        .list(identity.subject())
        .await
        .map_err(ApiError::from)?;
    let items: Vec<_> = sessions
        .iter()
        .map(|s| describe(s, Some(s.id.as_str()) == current))
        .collect();
    let families = api_logins(&state, identity.subject()).await?;
    let api_logins: Vec<_> = families
        .iter()
        .map(|f| describe_family(f, Some(f.id.as_str()) == current))
        .collect();
    let mut r = Json(json!({ "sessions": items, "api_logins": api_logins })).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `DELETE /session/{id}` (bearer or cookie) → 204, or 404 when it is neither a live
/// session nor an API login of yours. Ending the current cookie session also clears
/// the cookie.
#[utoipa::path(delete, path = "/session/{id}", tag = "sessions",
    params(("id" = String, Path, description = "A session's or an API login's id")),
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 204, description = "Ended"),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "access_denied", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found: neither a live session nor an API login of yours", body = super::schemas::ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Person(identity): Person,
) -> Result<Response, ApiError> {
    if !end_login(&state, &id, identity.subject()).await? {
        return Err(ApiError::NotFound("no such session"));
    }
    Ok(super::cookie::no_content(
        &state,
        identity.session().is_some_and(|s| s.id() == id),
    ))
}

/// `POST /session/token` (cookie session, with the CSRF checks) → 200
/// `{access_token, token_type, expires_in, scope}`: a short-lived access token for a
/// single-page app to call APIs with. Its `sid` is the session's, so ending the session
/// revokes it. No refresh token: the session is the long-lived credential.
#[utoipa::path(post, path = "/session/token", tag = "sessions", operation_id = "session_token",
    security(("session" = [])),
    responses(
        (status = 200, description = "A short-lived access token of the session", body = super::schemas::ClientTokenResponse),
        (status = 401, description = "unauthorized", body = super::schemas::ErrorBody),
        (status = 403, description = "access_denied", body = super::schemas::ErrorBody),
    ))]
pub async fn token(
    State(state): State<AppState>,
    CookieSession(identity): CookieSession,
) -> Result<Response, ApiError> {
    let Some(session) = identity.session() else {
        return Err(ApiError::Auth(Rejection::MissingCredentials));
    };
    let user = state
        .0
        .store
        .user_by_id(identity.subject())
        .await?
        .ok_or(ApiError::Auth(Rejection::MissingCredentials))?;
    // The session as the database has it now, not as this instance's memory does: a
    // scope taken away a moment ago on another instance must not be minted into a
    // token that every instance would accept for minutes (`iat` after the change).
    let fresh = portcullis::session::SessionStore::sessions_of(state.0.store.as_ref(), &user.id)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .find(|s| s.id == session.id())
        .ok_or(ApiError::Auth(Rejection::MissingCredentials))?;
    let record = &fresh;
    let scope = &*crate::accounts::granted_scope(&state.0.config, &record.scope, &record.amr);
    // Never outliving the session: not past its absolute end, nor past the moment it
    // would time out if this were its last use (no event marks either).
    let now = state.now();
    let idle_end = now + secs(state.0.sessions.config().idle_timeout());
    let left = (record.expires_at.min(idle_end) - now)
        .max(1)
        .unsigned_abs();
    let ttl = state
        .0
        .config
        .session_token_ttl
        .min(std::time::Duration::from_secs(left));
    let iat = issued_at(&state, &user.id, user.not_before).await?;
    let grant = crate::accounts::Grant {
        sid: session.id(),
        scope,
        amr: &record.amr,
    };
    let access = mint_access_token(&state, &user, grant, ttl, iat)?;
    Ok(token_json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "scope": scope,
    })))
}
