//! Cookie sessions over HTTP: login (JSON or form), logout, the user's own sessions,
//! and the session-to-token exchange for single-page apps.

use std::net::IpAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis::rejection::Rejection;
use portcullis::session::{SessionRecord, Started, csrf};
use portcullis::strategy::{Identity, Outcome, Session, Strategy as _};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::auth::{SignedIn, check_password, identify, mint_access_token};
use super::body::JsonBody;
use super::pages;
use crate::client::ClientAddr;
use crate::device;
use crate::error::ApiError;
use crate::state::AppState;

/// `{username, password}`, as JSON or as a form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub(super) username: String,
    pub(super) password: String,
}

/// A form that carries the session's synchronizer token.
#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    pub(super) csrf_token: String,
}

/// True when the request body is an HTML form.
pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
}

/// Reads a form body, with our error shape.
pub(super) async fn read_form<T: DeserializeOwned>(
    parts: Parts,
    body: Body,
) -> Result<T, ApiError> {
    match axum::Form::<T>::from_request(Request::from_parts(parts, body), &()).await {
        Ok(axum::Form(value)) => Ok(value),
        Err(e) => Err(ApiError::InvalidRequest(format!(
            "invalid form: {}",
            e.body_text()
        ))),
    }
}

/// What started a session, for the user's device list.
pub(super) fn label(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown client")
        .to_owned()
}

/// Starts a session after a successful login or signup. The cookie the request came
/// with, if any, names a session this browser is leaving: it ends (and an id we never
/// issued ends nothing and is replaced, never adopted).
pub(super) async fn start_session(
    state: &AppState,
    headers: &HeaderMap,
    user_id: &str,
    scope: &str,
) -> Result<Started, ApiError> {
    let sessions = &state.0.sessions;
    if let Ok(Some(previous)) = sessions.lookup(headers).await
        && sessions
            .end(previous.id(), &previous.record().subject)
            .await
            .is_ok()
    {
        state.0.revocations.revoke_session(previous.id());
    }
    let started = sessions
        .start(user_id, scope, &label(headers))
        .await
        .map_err(ApiError::from)?;
    tracing::info!(user = %user_id, sid = %started.context.id(), "session started");
    Ok(started)
}

/// Refuses a cross-site login or signup form (login CSRF). Requests that carry neither
/// `Sec-Fetch-Site` nor `Origin` are not from a browser and pass.
pub(super) fn refuse_cross_site(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match csrf::check_origin(headers, state.0.sessions.config()) {
        Err(csrf::Refused::CrossSite) => Err(ApiError::Auth(Rejection::CrossSiteRequest)),
        Ok(()) | Err(csrf::Refused::Unknown) => Ok(()),
    }
}

/// `POST /session/login`, JSON → 200 `{session, user, csrf_token}` with the cookie;
/// form → 303 to the account page, or the login page again with the error and the
/// username that was typed (never the password).
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
        let result = match typed {
            Ok(credentials) => login_with(&state, client, &headers, credentials).await,
            Err(e) => Err(e),
        };
        return Ok(match result {
            Ok((signed_in, started)) => {
                let mut r = redirect_with_cookie("/account", started.set_cookie);
                give_device_cookie(&state, &mut r, &signed_in);
                r
            }
            Err(e) => pages::login_failed(e, &username),
        });
    }
    let JsonBody(credentials) =
        JsonBody::from_request(Request::from_parts(parts, body), &()).await?;
    let (signed_in, started) = login_with(&state, client, &headers, credentials).await?;
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
    give_device_cookie(&state, &mut r, &signed_in);
    Ok(r)
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
) -> Result<(SignedIn, Started), ApiError> {
    refuse_cross_site(state, headers)?;
    let device = device::from_cookie(state, headers);
    let signed_in = check_password(
        state,
        client,
        device,
        &credentials.username,
        credentials.password,
    )
    .await?;
    let user = &signed_in.user;
    let started = start_session(state, headers, &user.id, &user.scope).await?;
    Ok((signed_in, started))
}

/// A 303 to `to` that also sets (or clears) the session cookie.
pub(super) fn redirect_with_cookie(to: &str, cookie: HeaderValue) -> Response {
    let mut r = Redirect::to(to).into_response();
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    r
}

/// The session a request's cookie names, with the CSRF checks for state-changing
/// requests. A request that also carries an `Authorization` header is judged by the
/// full chain first, so a bad bearer token is refused here too, never passed over for
/// the cookie; a good one is not a session (401: these routes need the cookie).
pub(super) async fn session_identity(
    state: &AppState,
    parts: &Parts,
) -> Result<Identity, ApiError> {
    let identity = if parts.headers.contains_key(header::AUTHORIZATION) {
        identify(state, parts).await?
    } else {
        let strategy = Session::new(state.0.sessions.clone());
        let outcome = match strategy.authenticate_now(parts) {
            Some(outcome) => outcome,
            None => strategy.authenticate(parts).await,
        };
        match outcome {
            Outcome::Authenticated(identity) => identity,
            Outcome::Skip => return Err(ApiError::Auth(Rejection::MissingCredentials)),
            Outcome::Reject(rejection) => return Err(ApiError::Auth(rejection)),
        }
    };
    if identity.session().is_none() {
        return Err(ApiError::Auth(Rejection::MissingCredentials));
    }
    Ok(identity)
}

/// `POST /session/logout` → 204 (JSON) or 303 to the login page (form, which must carry
/// the synchronizer token): the session ends server-side and the cookie is cleared.
pub async fn logout(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let form = is_form(&parts.headers);
    let identity = match session_identity(&state, &parts).await {
        Ok(identity) => identity,
        // Already signed out: where a signed-out person belongs.
        Err(ApiError::Auth(Rejection::MissingCredentials)) if form => {
            return Ok(Redirect::to("/login").into_response());
        }
        Err(e) if form => return Ok(pages::refused(e)),
        Err(e) => return Err(e),
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
        return Ok(redirect_with_cookie("/login", clear));
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, clear);
    Ok(response)
}

/// Ends one of `subject`'s sessions, here and (through the event log) everywhere;
/// false when it was not a live session of theirs.
pub(super) async fn end_session(
    state: &AppState,
    id: &str,
    subject: &str,
) -> Result<bool, ApiError> {
    let ended = state
        .0
        .sessions
        .end(id, subject)
        .await
        .map_err(ApiError::from)?;
    if ended {
        // Access tokens minted from it carry its id as `sid`.
        state.0.revocations.revoke_session(id);
        tracing::info!(user = %subject, sid = %id, "session ended");
    }
    Ok(ended)
}

fn describe(record: &SessionRecord, current: bool) -> serde_json::Value {
    json!({
        "id": record.id,
        "label": record.label,
        "created_at": record.created_at,
        "last_seen_at": record.last_seen_at,
        "expires_at": record.expires_at,
        "current": current,
    })
}

/// The session id a request is in: the cookie's, or a token's `sid`.
pub(super) fn current_sid(identity: &Identity) -> Option<&str> {
    identity
        .session()
        .map(|s| s.id())
        .or_else(|| identity.claims().and_then(|c| c.sid.as_deref()))
}

/// `GET /session/list` (bearer or cookie) → 200 `{sessions: [...]}`, newest first.
pub async fn list(State(state): State<AppState>, parts: Parts) -> Result<Response, ApiError> {
    let identity = identify(&state, &parts).await?;
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
    let mut r = Json(json!({ "sessions": items })).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `DELETE /session/{id}` (bearer or cookie) → 204, or 404 when it is not a live
/// session of yours. Ending the current cookie session also clears the cookie.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let identity = identify(&state, &parts).await?;
    if !end_session(&state, &id, identity.subject()).await? {
        return Err(ApiError::NotFound("no such session"));
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if identity.session().is_some_and(|s| s.id() == id) {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, state.0.sessions.config().clear_cookie());
    }
    Ok(response)
}

/// `POST /session/token` (cookie session, with the CSRF checks) → 200
/// `{access_token, token_type, expires_in, scope}`: a short-lived access token for a
/// single-page app to call APIs with. Its `sid` is the session's, so ending the session
/// revokes it. No refresh token: the session is the long-lived credential.
pub async fn token(State(state): State<AppState>, parts: Parts) -> Result<Response, ApiError> {
    let identity = session_identity(&state, &parts).await?;
    let Some(session) = identity.session() else {
        return Err(ApiError::Auth(Rejection::MissingCredentials));
    };
    let user = state
        .0
        .store
        .user_by_id(identity.subject())
        .await?
        .ok_or(ApiError::Auth(Rejection::MissingCredentials))?;
    let record = session.record();
    let scope = &record.scope;
    // Never outliving the session: not past its absolute end, nor past the moment it
    // would time out if this were its last use (no event marks either).
    let now = state.now();
    let idle_end = now + state.0.sessions.config().idle_timeout().as_secs() as i64;
    let left = (record.expires_at.min(idle_end) - now).max(1) as u64;
    let ttl = state
        .0
        .config
        .session_token_ttl
        .min(std::time::Duration::from_secs(left));
    let access = mint_access_token(&state, &user.id, &user.username, scope, session.id(), ttl)?;
    let mut r = Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "scope": scope,
    }))
    .into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(r)
}
