//! The steps cookie-session routes and pages share: reading forms, starting and ending
//! sessions, the login-CSRF check, and finding the session a request is in. Both the
//! JSON routes (`session.rs`) and the pages (`pages.rs`) build on these; neither on the
//! other's handlers.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis::rejection::Rejection;
use portcullis::session::{Started, csrf};
use portcullis::strategy::{Actor, Identity};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use portcullis_store::EventKind;

use crate::error::ApiError;
use crate::state::AppState;

/// A form that carries the session's synchronizer token.
#[derive(Deserialize, utoipa::ToSchema)]
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
    amr: &str,
) -> Result<Started, ApiError> {
    let sessions = &state.0.sessions;
    if let Ok(Some(previous)) = sessions.lookup(headers).await
        && sessions
            .end(previous.id(), &previous.record().subject)
            .await
            .is_ok_and(|ended| ended)
    {
        crate::events::apply_own(state, EventKind::SessionRevoked, previous.id(), state.now());
    }
    let started = sessions
        .start(user_id, scope, &crate::user_agent::label(headers))
        .await
        .map_err(ApiError::from)?;
    // A session row says `pwd` until told otherwise: should this write fail, the
    // session is ended rather than left claiming less than it is (or more).
    if amr != crate::accounts::AMR_PASSWORD
        && let Err(e) = state
            .0
            .store
            .set_session_amr(started.context.id(), amr)
            .await
    {
        let _ = end_session(state, started.context.id(), user_id).await;
        return Err(e.into());
    }
    tracing::info!(user = %user_id, sid = %started.context.id(), amr, "session started");
    crate::audit::record(
        state,
        crate::audit::Entry::own(crate::audit::Kind::LoginSucceeded, user_id)
            .with("amr", amr)
            .with("via", "session"),
    )
    .await;
    Ok(started)
}

/// Refuses a cross-site login or signup form (login CSRF). Requests that carry neither
/// `Sec-Fetch-Site` nor `Origin` are not from a browser and pass.
pub(super) fn refuse_cross_site(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match csrf::check_origin(headers, state.0.sessions.config()) {
        Ok(()) | Err(csrf::Refused::Unknown) => Ok(()),
        // Cross-site, or a refusal this version does not know yet: refused.
        Err(_) => Err(ApiError::Auth(Rejection::CrossSiteRequest)),
    }
}

/// A form posted by someone not signed in (the forgotten-password page, a mailed
/// link's page): read, then refused when another site sent it (login CSRF).
pub(super) async fn public_form<T: DeserializeOwned>(
    state: &AppState,
    request: axum::extract::Request,
) -> Result<T, ApiError> {
    let (parts, body) = request.into_parts();
    let headers = parts.headers.clone();
    let form = read_form(parts, body).await?;
    refuse_cross_site(state, &headers)?;
    Ok(form)
}

/// A 303 to `to` that also sets (or clears) the session cookie.
pub(super) fn redirect_with_cookie(to: &str, cookie: HeaderValue) -> Response {
    let mut r = Redirect::to(to).into_response();
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    r
}

/// 204 No Content, clearing the session cookie when `clear` (the request's own
/// session ended with it).
pub(super) fn no_content(state: &AppState, clear: bool) -> Response {
    let mut response = axum::http::StatusCode::NO_CONTENT.into_response();
    if clear {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, state.0.sessions.config().clear_cookie());
    }
    response
}

/// A person the routes' `AuthLayer` authenticated, by bearer token or session cookie
/// (the library's `Authenticated`, read from the request). A machine client's token is
/// refused here (403): these routes are about a person's sessions and account.
pub(crate) struct Person(pub Identity);

fn person(parts: &Parts) -> Result<Option<Identity>, ApiError> {
    match parts.extensions.get::<Identity>() {
        None => Ok(None),
        Some(identity) => match identity.actor() {
            Actor::Person { .. } => Ok(Some(identity.clone())),
            // An application acting for the person may not manage their account or
            // sessions, nor may a client as itself.
            _ => Err(ApiError::NotForClients),
        },
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Person {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        person(parts)?
            .map(Person)
            .ok_or(ApiError::Auth(Rejection::MissingCredentials))
    }
}

/// The marker of cookie-only routes: a [`Person`] whose request came with the session
/// cookie (the `Session` strategy ran the CSRF checks on it). A good bearer token is no
/// session: 401.
pub(crate) struct CookieSession(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for CookieSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        person(parts)?
            .filter(|i| i.session().is_some())
            .map(CookieSession)
            .ok_or(ApiError::Auth(Rejection::MissingCredentials))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for CookieSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, ApiError> {
        Ok(person(parts)?
            .filter(|i| i.session().is_some())
            .map(CookieSession))
    }
}

/// The session a form was posted in, its synchronizer token checked: `Ok(None)` when
/// the request is in no cookie session (nobody is signed in), `Err` when the layer
/// refused it or the token is not the session's (403). The one check behind every form
/// a signed-in person posts (the account page's, the consent page's, the logout
/// confirmation's).
pub(super) fn form_session(
    signed_in: Result<Option<CookieSession>, ApiError>,
    csrf_token: &str,
) -> Result<Option<Identity>, ApiError> {
    let Some(CookieSession(identity)) = signed_in? else {
        return Ok(None);
    };
    let Some(session) = identity.session() else {
        return Ok(None);
    };
    session
        .check_csrf_token(csrf_token)
        .map_err(ApiError::Auth)?;
    Ok(Some(identity))
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

/// A user's live sign-ins as the admin API and the person's export show them:
/// `(sessions, api_logins)`.
pub(super) async fn sign_ins_json(
    state: &AppState,
    user_id: &str,
) -> Result<(serde_json::Value, serde_json::Value), ApiError> {
    let sessions = state.0.sessions.list(user_id).await?;
    let api_logins = api_logins(state, user_id).await?;
    Ok((
        sessions
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id, "label": s.label, "created_at": s.created_at,
                    "last_seen_at": s.last_seen_at, "expires_at": s.expires_at,
                    "amr": crate::accounts::amr_values(&s.amr).collect::<Vec<_>>().join(" "),
                    "idp": crate::accounts::idp_of(&s.amr),
                })
            })
            .collect(),
        api_logins
            .iter()
            .map(|f| {
                serde_json::json!({
                    "id": f.id, "label": f.label, "created_at": f.created_at,
                    "last_used_at": f.last_used_at,
                })
            })
            .collect(),
    ))
}

/// Ends one of a user's logins by id: a cookie session, or else an API login (a
/// refresh family). False when the user has neither by that id.
pub(super) async fn end_login(state: &AppState, id: &str, subject: &str) -> Result<bool, ApiError> {
    // Ids are `random_id()`s: 22 base64url characters. Anything else (a path segment
    // can be 64 KiB) is no login of anyone's, refused before the database is asked.
    let well_formed = id.len() == 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Ok(false);
    }
    if end_session(state, id, subject).await? {
        return Ok(true);
    }
    let now = state.now();
    let ended = state.0.store.revoke_family(subject, id, now).await?;
    if ended {
        // Its access tokens carry the family id as `sid`: refused from here on.
        crate::events::apply_own(state, EventKind::FamilyRevoked, id, now);
        tracing::info!(user = %subject, sid = %id, "API login ended");
        crate::audit::record(
            state,
            crate::audit::Entry::own(crate::audit::Kind::Logout, subject)
                .with("sid", id)
                .with("via", "account"),
        )
        .await;
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
        crate::events::apply_own(state, EventKind::SessionRevoked, id, state.now());
        tracing::info!(user = %subject, sid = %id, "session ended");
        crate::audit::record(
            state,
            crate::audit::Entry::own(crate::audit::Kind::Logout, subject)
                .with("sid", id)
                .with("via", "session"),
        )
        .await;
    }
    Ok(ended)
}
