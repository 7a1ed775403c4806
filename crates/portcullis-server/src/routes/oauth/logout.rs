//! `GET /oauth/logout` and `POST /oauth/logout`: RP-initiated logout (OpenID Connect
//! RP-Initiated Logout 1.0), the `end_session_endpoint`.
//!
//! A client sends the person here to end their Portcullis session. With an
//! `id_token_hint` that this server issued, that has not expired, that names the person
//! signed in here *and this very session* (its `sid`), and whose client is still
//! enabled, the session ends at once; otherwise the person is asked (a page with a
//! button), so that no other site can sign anyone out with a link: an ID token of an
//! earlier session, of another browser, or of a disabled client proves nothing about
//! this one (OpenID Connect RP-Initiated Logout §2).
//!
//! `post_logout_redirect_uri` is honoured only when it is exactly one the client
//! registered (`--post-logout-redirect-uri`) and the client is known (from `client_id`
//! or the hint's `aud`); anything else is shown as an error page, never redirected.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use portcullis::jwt::Audience;
use portcullis::session::SessionContext;
use serde::Deserialize;

use super::id_token::read_back;
use super::redirect;
use crate::error::ApiError;
use crate::routes::cookie::{
    CookieSession, end_session as end_cookie_session, form_session, read_form,
};
use crate::routes::html::{error_box, layout, page, page_with_form_target};
use crate::state::AppState;

/// Where the person goes afterwards, once checked.
struct Destination {
    client_id: Option<String>,
    uri: Option<String>,
    state: Option<String>,
}

/// The parameters of a logout request (query or form).
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct LogoutRequest {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    /// The form's synchronizer token (`POST` only).
    #[serde(default)]
    csrf_token: String,
}

fn problem(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        layout(
            "Sign-out refused",
            html! {
                h1 { "This sign-out request is not valid" }
                (error_box(Some(message)))
                p { a href="/account" { "Go to your account" } }
            },
        ),
    )
}

/// Checks where the person may be sent; `Err` is the page to show instead.
async fn destination(
    state: &AppState,
    request: &LogoutRequest,
    hinted_client: Option<&str>,
) -> Result<Destination, Response> {
    let client_id = match (request.client_id.as_deref(), hinted_client) {
        (Some(a), Some(b)) if a != b => {
            return Err(problem(
                "The id_token_hint was issued to another application than client_id names.",
            ));
        }
        (Some(id), _) | (None, Some(id)) => Some(id.to_owned()),
        (None, None) => None,
    };
    let Some(uri) = request.post_logout_redirect_uri.as_deref() else {
        return Ok(Destination {
            client_id,
            uri: None,
            state: None,
        });
    };
    let Some(id) = client_id.as_deref() else {
        return Err(problem(
            "A post_logout_redirect_uri needs client_id or id_token_hint to say whose it is.",
        ));
    };
    let client = state
        .0
        .store
        .client_by_id(id)
        .await
        .ok()
        .flatten()
        .filter(|c| !c.disabled);
    let registered = client
        .as_ref()
        .is_some_and(|c| c.post_logout_uri_list().any(|u| u == uri));
    if !registered || uri.len() > redirect::MAX_URI_LEN {
        return Err(problem(
            "The address to send you to afterwards is not one the application registered.",
        ));
    }
    Ok(Destination {
        client_id,
        uri: Some(uri.to_owned()),
        state: request.state.clone().filter(|s| s.len() <= 2048),
    })
}

/// After the session ended (or there was none): to the client, or a page.
fn done(destination: &Destination, clear: Option<HeaderValue>) -> Response {
    let mut r = match &destination.uri {
        Some(uri) => {
            let mut params = Vec::new();
            if let Some(s) = destination.state.as_deref() {
                params.push(("state", s));
            }
            match redirect::with_params(uri, &params) {
                Some(target) => axum::response::Redirect::to(&target).into_response(),
                None => problem("The address to send you to afterwards is not a URI."),
            }
        }
        None => page(
            StatusCode::OK,
            layout(
                "Signed out",
                html! {
                    h1 #signed-out { "You are signed out" }
                    p { a href="/login" { "Sign in again" } }
                },
            ),
        ),
    };
    if let Some(clear) = clear {
        r.headers_mut().insert(header::SET_COOKIE, clear);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn end(state: &AppState, session: &SessionContext) -> Result<HeaderValue, ApiError> {
    end_cookie_session(state, session.id(), &session.record().subject).await?;
    tracing::info!(user = %session.record().subject, "signed out by RP-initiated logout");
    Ok(state.0.sessions.config().clear_cookie())
}

/// `GET /oauth/logout`.
#[utoipa::path(get, path = "/oauth/logout", tag = "oauth",
    params(
        ("id_token_hint" = Option<String>, Query, description = "An ID token this server issued to the client"),
        ("client_id" = Option<String>, Query, description = "The client"),
        ("post_logout_redirect_uri" = Option<String>, Query, description = "One the client registered, exactly"),
        ("state" = Option<String>, Query, description = "Sent back as is"),
    ),
    responses(
        (status = 200, description = "The confirmation page, or the signed-out page (HTML)", content_type = "text/html"),
        (status = 303, description = "Signed out, to post_logout_redirect_uri with state"),
        (status = 400, description = "An unregistered post_logout_redirect_uri or a mismatched client: a page, never a redirect (HTML)", content_type = "text/html"),
    ))]
pub async fn end_session(State(state): State<AppState>, parts: Parts) -> Response {
    let request: LogoutRequest = match axum::extract::Query::try_from_uri(&parts.uri) {
        Ok(axum::extract::Query(r)) => r,
        Err(e) => return problem(&format!("The request is malformed: {}.", e.body_text())),
    };
    let hint = request
        .id_token_hint
        .as_deref()
        .and_then(|h| read_back(&state, h));
    let hinted_client = hint.as_ref().and_then(|c| match &c.aud {
        Some(Audience::One(aud)) => Some(aud.clone()),
        _ => None,
    });
    let destination = match destination(&state, &request, hinted_client.as_deref()).await {
        Ok(d) => d,
        Err(page) => return page,
    };
    let session = match state.0.sessions.lookup(&parts.headers).await {
        Ok(session) => session,
        Err(e) => return crate::routes::html::refused(e.into()),
    };
    let Some(session) = session else {
        return done(&destination, None);
    };
    let this_session = hint.as_ref().is_some_and(|c| {
        c.sub.as_deref() == Some(session.record().subject.as_str())
            && c.sid.as_deref() == Some(session.id())
    });
    let named = this_session && client_enabled(&state, hinted_client.as_deref()).await;
    if named {
        return match end(&state, &session).await {
            Ok(clear) => done(&destination, Some(clear)),
            Err(e) => crate::routes::html::refused(e),
        };
    }
    confirm_page(&destination, &session)
}

/// The client an ID token hint was issued to is registered and enabled.
async fn client_enabled(state: &AppState, client_id: Option<&str>) -> bool {
    let Some(id) = client_id else {
        return false;
    };
    matches!(state.0.store.client_by_id(id).await, Ok(Some(c)) if !c.disabled)
}

fn confirm_page(destination: &Destination, session: &SessionContext) -> Response {
    let markup = layout(
        "Sign out",
        html! {
            h1 { "Sign out of Portcullis?" }
            p { "An application asks to end your session here." }
            form method="post" action="/oauth/logout" {
                @if let Some(id) = &destination.client_id {
                    input type="hidden" name="client_id" value=(id);
                }
                @if let Some(uri) = &destination.uri {
                    input type="hidden" name="post_logout_redirect_uri" value=(uri);
                }
                @if let Some(s) = &destination.state {
                    input type="hidden" name="state" value=(s);
                }
                input type="hidden" name="csrf_token" value=(session.csrf_token());
                div.actions {
                    button #sign-out type="submit" { "Sign out" }
                }
            }
            p { a href="/account" { "Stay signed in" } }
        },
    );
    let target = destination.uri.as_deref().and_then(redirect::csp_source);
    page_with_form_target(StatusCode::OK, markup, target.as_deref())
}

/// `POST /oauth/logout` (form, from the confirmation page).
#[utoipa::path(post, path = "/oauth/logout", tag = "oauth",
    request_body(content = LogoutRequest, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 200, description = "Signed out (HTML)", content_type = "text/html"),
        (status = 303, description = "Signed out, to post_logout_redirect_uri with state"),
        (status = 400, description = "An unregistered post_logout_redirect_uri (HTML)", content_type = "text/html"),
        (status = 401, description = "A bad bearer token: this form is for the session cookie (HTML)", content_type = "text/html"),
        (status = 403, description = "A wrong form token or a cross-site form (HTML)", content_type = "text/html"),
    ))]
pub async fn end_session_confirmed(
    State(state): State<AppState>,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let (parts, body): (Parts, Body) = request.into_parts();
    let form: LogoutRequest = match read_form(parts, body).await {
        Ok(form) => form,
        Err(e) => return crate::routes::html::refused(e),
    };
    let destination = match destination(&state, &form, None).await {
        Ok(d) => d,
        Err(page) => return page,
    };
    let identity = match form_session(signed_in, &form.csrf_token) {
        Ok(Some(identity)) => identity,
        Ok(None) => return done(&destination, None),
        Err(e) => return crate::routes::html::refused(e),
    };
    let Some(session) = identity.session() else {
        return done(&destination, None);
    };
    match end(&state, session).await {
        Ok(clear) => done(&destination, Some(clear)),
        Err(e) => crate::routes::html::refused(e),
    }
}
