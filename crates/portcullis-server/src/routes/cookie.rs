//! The steps cookie-session routes and pages share: reading forms, starting and ending
//! sessions, the login-CSRF check, and finding the session a request is in. Both the
//! JSON routes (`session.rs`) and the pages (`pages.rs`) build on these; neither on the
//! other's handlers.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis::rejection::Rejection;
use portcullis::session::{Started, csrf};
use portcullis::strategy::{Identity, Outcome, Session, Strategy as _};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::auth::identify;
use crate::error::ApiError;
use crate::state::AppState;

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
        crate::events::catch_up(state).await;
    }
    let started = sessions
        .start(user_id, scope, &crate::user_agent::label(headers))
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

/// A user's live API logins (refresh families), most recently used first.
pub(super) async fn api_logins(
    state: &AppState,
    user_id: &str,
) -> Result<Vec<portcullis_store::FamilyInfo>, ApiError> {
    let policy = state.0.config.rotation_policy();
    Ok(state
        .0
        .store
        .families_of(user_id, state.now(), policy)
        .await?)
}

/// Ends one of a user's logins by id: a cookie session, or else an API login (a
/// refresh family). False when the user has neither by that id.
pub(super) async fn end_login(state: &AppState, id: &str, subject: &str) -> Result<bool, ApiError> {
    if end_session(state, id, subject).await? {
        return Ok(true);
    }
    let ended = state
        .0
        .store
        .revoke_family(subject, id, state.now())
        .await?;
    if ended {
        // Its access tokens carry the family id as `sid`: refused from here on.
        crate::events::catch_up(state).await;
        tracing::info!(user = %subject, sid = %id, "API login ended");
    }
    Ok(ended)
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
        // Access tokens minted from it carry its id as `sid`: they die here before the
        // answer (the store logged a `session_revoked` event), everywhere else soon.
        crate::events::catch_up(state).await;
        tracing::info!(user = %subject, sid = %id, "session ended");
    }
    Ok(ended)
}
