//! `GET /oauth/authorize` and `POST /oauth/authorize`: the authorization-code flow
//! (OAuth 2.1 §4.1, PKCE S256 only) for a person in a browser.
//!
//! The request is checked in an order that decides where its errors go (RFC 6749
//! §4.1.2.1, RFC 9700 §4.11): until the client and its redirect URI are known good, an
//! error is shown to the person and never redirected (an open redirector is how codes
//! and tokens are stolen); after that, every error goes back to the client as
//! `error`, `error_description`, `state` and `iss` on its redirect URI.
//!
//! Then the person: without a session (or with one older than `max_age`, or with
//! `prompt=login`, or signed in with a password alone when `acr_values` asks for `aal2`
//! and the account has a second factor) they go to the sign-in page, which sends them
//! back here; a client
//! that is not first-party gets the consent page until the person allowed it every
//! scope it asks for; then a single-use code, bound to the client, the redirect URI and
//! the PKCE challenge, goes back with `state` and `iss` (RFC 9207).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use portcullis::opaque::Opaque;
use portcullis::session::SessionContext;
use portcullis_store::{AuthCode, Client, User, effective_scope};
use serde::Deserialize;

use super::redirect;
use crate::error::ApiError;
use crate::routes::cookie::{CookieSession, form_session, read_form};
use crate::routes::html::{error_box, layout, page, page_with_form_target};
use crate::state::AppState;

/// The longest value of any one parameter (a `state` or `nonce` is a few dozen bytes).
const MAX_PARAM_LEN: usize = 2048;

/// The longest query an authorization request may have.
const MAX_QUERY_LEN: usize = 8 * 1024;

/// How recent a sign-in `prompt=login` asks for, once the person has signed in again.
const FRESH_LOGIN: i64 = 120;

/// How recent a sign-in counts as the one this request asked for.
const FRESH_SLACK: i64 = 5;

/// An authorization request that passed every check that does not need the person.
struct AuthRequest {
    client: Client,
    redirect_uri: String,
    state: Option<String>,
    /// The scopes asked for (or the client's, when none were), once each.
    scope: Vec<String>,
    challenge: String,
    nonce: Option<String>,
    prompt_none: bool,
    prompt_consent: bool,
    prompt_login: bool,
    max_age: Option<i64>,
    /// `acr_values` asked for `aal2`: a sign-in with two factors, when the account has
    /// a second factor (OpenID Connect Core §3.1.2.1: a voluntary request; the ID
    /// token's `acr` says what was done).
    wants_two_factors: bool,
    /// The parameters, to send the person back here after signing in.
    params: BTreeMap<String, String>,
}

/// Why an authorization request gets no code.
enum Refusal {
    /// Shown to the person: the client or its redirect URI cannot be trusted with an
    /// answer.
    Page(String),
    /// Sent back to the client's redirect URI (RFC 6749 §4.1.2.1).
    Client {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: &'static str,
    },
    /// Something on our side failed.
    Unexpected(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Unexpected(e)
    }
}

impl From<portcullis_store::Error> for Refusal {
    fn from(e: portcullis_store::Error) -> Self {
        Refusal::Unexpected(e.into())
    }
}

/// The parameters of a query, and the names given more than once.
fn params(query: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut map = BTreeMap::new();
    let mut twice = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if map.contains_key(name.as_ref()) {
            twice.push(name.into_owned());
        } else {
            map.insert(name.into_owned(), value.into_owned());
        }
    }
    (map, twice)
}

/// Checks a request in the order RFC 6749 §4.1.2.1 needs.
async fn parse(state: &AppState, query: &str) -> Result<AuthRequest, Refusal> {
    if query.len() > MAX_QUERY_LEN {
        return Err(Refusal::Page(format!(
            "the sign-in request is longer than {MAX_QUERY_LEN} bytes"
        )));
    }
    let (params, twice) = params(query);
    let once = |name: &str| -> Result<Option<&String>, Refusal> {
        if twice.iter().any(|t| t == name) {
            return Err(Refusal::Page(format!("{name} is given more than once")));
        }
        Ok(params.get(name))
    };
    let Some(client_id) = once("client_id")? else {
        return Err(Refusal::Page(
            "the request names no client (client_id)".into(),
        ));
    };
    let client = state
        .0
        .store
        .client_by_id(client_id)
        .await?
        .filter(|c| !c.disabled && !c.redirect_uris.is_empty())
        .ok_or_else(|| Refusal::Page("the application asking is not known here".into()))?;
    let Some(redirect_uri) = once("redirect_uri")? else {
        return Err(Refusal::Page(
            "the request has no redirect_uri, which is required here".into(),
        ));
    };
    if !redirect::matches(client.redirect_uri_list(), redirect_uri, client.public) {
        return Err(Refusal::Page(
            "the address to send you back to is not one the application registered".into(),
        ));
    }
    // From here on, the client hears of every error.
    let state_param = params
        .get("state")
        .filter(|s| s.len() <= MAX_PARAM_LEN && !twice.iter().any(|t| t == "state"))
        .cloned();
    let redirect_uri = redirect_uri.clone();
    let back = |error: &'static str, description: &'static str| Refusal::Client {
        redirect_uri: redirect_uri.clone(),
        state: state_param.clone(),
        error,
        description,
    };
    if !twice.is_empty() {
        return Err(back(
            "invalid_request",
            "a parameter is given more than once",
        ));
    }
    if params.values().any(|v| v.len() > MAX_PARAM_LEN) {
        return Err(back(
            "invalid_request",
            "a parameter is longer than 2048 bytes",
        ));
    }
    if params.contains_key("request") {
        return Err(back(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if params.contains_key("request_uri") {
        return Err(back(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    match params.get("response_type").map(String::as_str) {
        None => return Err(back("invalid_request", "response_type is missing")),
        Some("code") => {}
        Some(_) => {
            return Err(back(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    if params
        .get("response_mode")
        .is_some_and(|m| m.as_str() != "query")
    {
        return Err(back(
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }
    let Some(challenge) = params.get("code_challenge") else {
        return Err(back(
            "invalid_request",
            "code_challenge is missing: PKCE with S256 is required",
        ));
    };
    if params.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return Err(back(
            "invalid_request",
            "code_challenge_method must be S256 (plain is refused)",
        ));
    }
    // BASE64URL of a SHA-256: 43 characters.
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(back(
            "invalid_request",
            "code_challenge is not a base64url SHA-256 (43 characters)",
        ));
    }
    let allowed: Vec<&str> = client.scope.split_whitespace().collect();
    let mut scope: Vec<String> = Vec::new();
    match params.get("scope") {
        None => scope.extend(allowed.iter().map(|s| (*s).to_owned())),
        Some(asked) => {
            for s in asked.split_whitespace() {
                if !allowed.contains(&s) {
                    return Err(back(
                        "invalid_scope",
                        "a scope asked for is not one this client may have",
                    ));
                }
                if !scope.iter().any(|x| x == s) {
                    scope.push(s.to_owned());
                }
            }
        }
    }
    if scope.is_empty() {
        return Err(back("invalid_scope", "no scope is asked for"));
    }
    let prompt: Vec<&str> = params
        .get("prompt")
        .map(|p| p.split_whitespace().collect())
        .unwrap_or_default();
    if prompt.contains(&"none") && prompt.len() > 1 {
        return Err(back(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        ));
    }
    if prompt
        .iter()
        .any(|p| !matches!(*p, "none" | "login" | "consent"))
    {
        return Err(back(
            "invalid_request",
            "prompt may be none, login or consent",
        ));
    }
    let max_age = match params.get("max_age") {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(age) if age >= 0 => Some(age),
            _ => {
                return Err(back("invalid_request", "max_age is a number of seconds"));
            }
        },
    };
    Ok(AuthRequest {
        redirect_uri,
        state: state_param,
        scope,
        challenge: challenge.clone(),
        nonce: params.get("nonce").cloned(),
        prompt_none: prompt.contains(&"none"),
        prompt_consent: prompt.contains(&"consent"),
        prompt_login: prompt.contains(&"login"),
        max_age,
        wants_two_factors: params
            .get("acr_values")
            .is_some_and(|v| v.split_whitespace().any(|v| v == "aal2")),
        client,
        params,
    })
}

/// The answer to a refused request.
fn refused(state: &AppState, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(message) => {
            tracing::info!(reason = %message, "authorization request refused");
            problem_page(StatusCode::BAD_REQUEST, &message)
        }
        Refusal::Client {
            redirect_uri,
            state: client_state,
            error,
            description,
        } => {
            let mut params = vec![("error", error), ("error_description", description)];
            if let Some(s) = client_state.as_deref() {
                params.push(("state", s));
            }
            params.push(("iss", state.0.config.issuer.as_str()));
            back_to_client(&redirect_uri, &params)
        }
        Refusal::Unexpected(e) => {
            let failure = crate::error::Failure::Unexpected(format!("{e:?}"));
            let mut r = problem_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "something went wrong on our side; try again",
            );
            r.extensions_mut().insert(failure);
            r
        }
    }
}

fn problem_page(status: StatusCode, message: &str) -> Response {
    let mut text = message.to_owned();
    if let Some(first) = text.get(..1) {
        text.replace_range(..1, &first.to_uppercase());
    }
    text.push('.');
    page(
        status,
        layout(
            "Sign-in refused",
            html! {
                h1 { "This sign-in cannot go on" }
                (error_box(Some(&text)))
                p { "Go back to the application and try again, or tell its developers." }
            },
        ),
    )
}

/// A 303 to the client's redirect URI with `params` added.
fn back_to_client(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let Some(target) = redirect::with_params(redirect_uri, params) else {
        return problem_page(
            StatusCode::BAD_REQUEST,
            "the address to send you back to is not a URI",
        );
    };
    let mut r = Redirect::to(&target).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The code is in the URL: it must not leak to the next site in a Referer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// `GET /oauth/authorize`: an authorization request, from the client through the
/// person's browser.
#[utoipa::path(get, path = "/oauth/authorize", tag = "oauth",
    params(
        ("response_type" = String, Query, description = "code"),
        ("client_id" = String, Query, description = "The client"),
        ("redirect_uri" = String, Query, description = "One of the client's registered redirect URIs, exactly"),
        ("code_challenge" = String, Query, description = "BASE64URL(SHA-256(code_verifier))"),
        ("code_challenge_method" = String, Query, description = "S256"),
        ("scope" = Option<String>, Query, description = "Within the client's scopes (default: all of them)"),
        ("state" = Option<String>, Query, description = "Sent back as is"),
        ("nonce" = Option<String>, Query, description = "Put in the ID token"),
        ("prompt" = Option<String>, Query, description = "none, login or consent"),
        ("max_age" = Option<i64>, Query, description = "Sign in again if the session is older (seconds)"),
        ("acr_values" = Option<String>, Query, description = "aal2: sign in with a second factor, when the account has one"),
    ),
    responses(
        (status = 200, description = "The consent page (HTML)", content_type = "text/html"),
        (status = 303, description = "To the client's redirect URI with code, state and iss (or error, error_description, state and iss); or to /login"),
        (status = 400, description = "An unknown client or an unregistered redirect URI: a page, never a redirect (HTML)", content_type = "text/html"),
    ))]
pub async fn authorize(State(state): State<AppState>, parts: Parts) -> Response {
    let request = match parse(&state, parts.uri.query().unwrap_or("")).await {
        Ok(request) => request,
        Err(refusal) => return refused(&state, refusal),
    };
    let session = match state.0.sessions.lookup(&parts.headers).await {
        Ok(session) => session,
        Err(e) => return refused(&state, Refusal::Unexpected(e.into())),
    };
    match proceed(&state, &request, session.as_ref(), false).await {
        Ok(response) => response,
        Err(refusal) => refused(&state, refusal),
    }
}

/// The consent form.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ConsentForm {
    /// The authorization request's query, as the consent page received it.
    authorization: String,
    /// The session's synchronizer token.
    csrf_token: String,
    /// `allow` or `deny`.
    decision: String,
}

/// `POST /oauth/authorize` (form): the person's answer on the consent page.
#[utoipa::path(post, path = "/oauth/authorize", tag = "oauth",
    request_body(content = ConsentForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 303, description = "To the client with a code (allow) or error=access_denied (deny)"),
        (status = 400, description = "A malformed form or request (HTML)", content_type = "text/html"),
        (status = 401, description = "A bad bearer token: this form is for the session cookie (HTML)", content_type = "text/html"),
        (status = 403, description = "A wrong form token or a cross-site form (HTML)", content_type = "text/html"),
    ))]
pub async fn authorize_decision(
    State(state): State<AppState>,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let (parts, body): (Parts, Body) = request.into_parts();
    let form: ConsentForm = match read_form(parts, body).await {
        Ok(form) => form,
        Err(e) => return crate::routes::html::refused(e),
    };
    let request = match parse(&state, &form.authorization).await {
        Ok(request) => request,
        Err(refusal) => return refused(&state, refusal),
    };
    let identity = match form_session(signed_in, &form.csrf_token) {
        Ok(Some(identity)) => identity,
        Ok(None) => return to_login(&request),
        Err(e) => return crate::routes::html::refused(e),
    };
    let Some(session) = identity.session() else {
        return to_login(&request);
    };
    match form.decision.as_str() {
        "allow" => {}
        "deny" => {
            tracing::info!(client = %request.client.id, user = %identity.subject(), "consent denied");
            return refused(
                &state,
                Refusal::Client {
                    redirect_uri: request.redirect_uri.clone(),
                    state: request.state.clone(),
                    error: "access_denied",
                    description: "the person declined",
                },
            );
        }
        _ => {
            return problem_page(
                StatusCode::BAD_REQUEST,
                "the answer is neither allow nor deny",
            );
        }
    }
    match proceed(&state, &request, Some(session), true).await {
        Ok(response) => response,
        Err(refusal) => refused(&state, refusal),
    }
}

/// The person's part: signed in recently enough, consent, then the code.
async fn proceed(
    state: &AppState,
    request: &AuthRequest,
    session: Option<&SessionContext>,
    consented_now: bool,
) -> Result<Response, Refusal> {
    let login_required = || {
        if request.prompt_none {
            Err(Refusal::Client {
                redirect_uri: request.redirect_uri.clone(),
                state: request.state.clone(),
                error: "login_required",
                description: "the person is not signed in",
            })
        } else {
            Ok(to_login(request))
        }
    };
    let Some(session) = session else {
        return login_required();
    };
    let now = state.now();
    let auth_time = session.record().created_at;
    // A few seconds of slack: `max_age=0` (sign in again, whatever the session) is met
    // by the sign-in that just happened, even across a second boundary, and not by an
    // older one.
    let too_old = request
        .max_age
        .is_some_and(|age| now - auth_time > age.max(FRESH_SLACK));
    if too_old || request.prompt_login {
        return login_required();
    }
    let Some(user) = state
        .0
        .store
        .user_by_id(&session.record().subject)
        .await?
        .filter(|u| !u.disabled)
    else {
        return login_required();
    };
    // `acr_values=aal2`: a session signed in with the password alone signs in again,
    // with the account's second factor. An account without one cannot do more than it
    // did; it goes on, and `acr` says `aal1`.
    let two_factors = session
        .record()
        .amr
        .split_ascii_whitespace()
        .any(|m| m == "mfa");
    if request.wants_two_factors && !two_factors && user.has_second_factor() {
        return login_required();
    }
    let asked = request.scope.join(" ");
    let scope = effective_scope(&asked, &user.scope);
    if scope.is_empty() {
        return Err(Refusal::Client {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            error: "invalid_scope",
            description: "the account has none of the scopes asked for",
        });
    }
    if consented_now {
        state
            .0
            .store
            .grant_consent(&user.id, &request.client.id, &scope, now)
            .await?;
        tracing::info!(client = %request.client.id, user = %user.id, scope = %scope, "consent given");
        crate::audit::record(
            state,
            crate::audit::Entry::own(crate::audit::Kind::ConsentGranted, &user.id)
                .with("client", request.client.id.as_str())
                .with("scope", scope.as_str()),
        )
        .await;
    } else if request.prompt_consent || !request.client.first_party {
        let allowed = state
            .0
            .store
            .consent(&user.id, &request.client.id)
            .await?
            .unwrap_or_default();
        let covered = scope
            .split_whitespace()
            .all(|s| allowed.split_whitespace().any(|a| a == s));
        if request.prompt_consent || !covered {
            if request.prompt_none {
                return Err(Refusal::Client {
                    redirect_uri: request.redirect_uri.clone(),
                    state: request.state.clone(),
                    error: "consent_required",
                    description: "the person has not allowed this application yet",
                });
            }
            return Ok(consent_page(request, &user, &scope, session));
        }
    }
    let code = Opaque::generate()
        .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("the system random generator failed")))?;
    state
        .0
        .store
        .add_code(&AuthCode {
            hash: code.sha256().to_vec(),
            client_id: request.client.id.clone(),
            user_id: user.id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            scope,
            code_challenge: request.challenge.clone(),
            nonce: request.nonce.clone(),
            auth_time,
            session_id: session.id().to_owned(),
            amr: session.record().amr.clone(),
            created_at: now,
            expires_at: now + super::CODE_TTL,
        })
        .await?;
    tracing::info!(client = %request.client.id, user = %user.id, "authorization code issued");
    let mut params = vec![("code", code.expose())];
    if let Some(s) = request.state.as_deref() {
        params.push(("state", s));
    }
    params.push(("iss", state.0.config.issuer.as_str()));
    Ok(back_to_client(&request.redirect_uri, &params))
}

/// To the sign-in page, which sends the person back to this request. `prompt=login`
/// becomes "a sign-in within the last two minutes", which the new session meets and
/// an old one does not (so the person is not asked twice).
fn to_login(request: &AuthRequest) -> Response {
    let mut params = request.params.clone();
    if request.prompt_login {
        let rest: Vec<&str> = params
            .get("prompt")
            .map(|p| p.split_whitespace().filter(|p| *p != "login").collect())
            .unwrap_or_default();
        if rest.is_empty() {
            params.remove("prompt");
        } else {
            params.insert("prompt".into(), rest.join(" "));
        }
        let age = request.max_age.map_or(FRESH_LOGIN, |a| a.min(FRESH_LOGIN));
        params.insert("max_age".into(), age.to_string());
    }
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let return_to = format!("/oauth/authorize?{query}");
    let login: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", &return_to)
        .finish();
    let mut r = Redirect::to(&format!("/login?{login}")).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `return_to` when it is a place the sign-in page may send a person back to: an
/// authorization request of ours, and nothing else (no open redirect).
pub(in crate::routes) fn return_target(return_to: &str) -> Option<&str> {
    let ok = return_to.starts_with("/oauth/authorize?")
        && return_to.len() <= MAX_QUERY_LEN
        && !return_to
            .bytes()
            .any(|b| b.is_ascii_control() || b == b'\\');
    ok.then_some(return_to)
}

/// The application an authorization request comes from, for the sign-in and sign-up
/// pages on its way: its name, to tell the person who asks, and the CSP source of its
/// redirect URI (the page's form ends there, after the redirects). Only for a request
/// that names an enabled client and one of its registered redirect URIs: a made-up
/// link cannot put a name on the page that the consent page would not show.
pub(in crate::routes) struct AppAsking {
    pub name: String,
    pub form_target: Option<String>,
}

pub(in crate::routes) async fn app_asking(state: &AppState, return_to: &str) -> Option<AppAsking> {
    let query = return_target(return_to)?.strip_prefix("/oauth/authorize?")?;
    let (params, _) = params(query);
    let client = state
        .0
        .store
        .client_by_id(params.get("client_id")?)
        .await
        .ok()??;
    let uri = params.get("redirect_uri")?;
    (!client.disabled && redirect::matches(client.redirect_uri_list(), uri, client.public)).then(
        || AppAsking {
            form_target: redirect::csp_source(uri),
            name: client.name,
        },
    )
}

fn consent_page(
    request: &AuthRequest,
    user: &User,
    scope: &str,
    session: &SessionContext,
) -> Response {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(request.params.iter())
        .finish();
    let client = &request.client;
    let destination = url::Url::parse(&request.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| request.redirect_uri.clone());
    let markup = layout(
        "Allow access",
        html! {
            h1 { "Allow " (client.name) "?" }
            p { "Signed in as " strong #who { (user.username) } "." }
            p { strong { (client.name) } " asks to:" }
            ul #scopes {
                @for s in scope.split_whitespace() {
                    li data-scope=(s) { (scope_line(s)) }
                }
            }
            p.hint { "You will be sent back to " strong { (destination) } ". You can remove this access at any time on your account page." }
            form method="post" action="/oauth/authorize" {
                input type="hidden" name="authorization" value=(query);
                input type="hidden" name="csrf_token" value=(session.csrf_token());
                div.actions {
                    button #allow type="submit" name="decision" value="allow" { "Allow" }
                    button #deny .secondary type="submit" name="decision" value="deny" { "Deny" }
                }
            }
        },
    );
    let target = redirect::csp_source(&request.redirect_uri);
    page_with_form_target(StatusCode::OK, markup, target.as_deref())
}

fn scope_line(scope: &str) -> Markup {
    match super::describe_scope(scope) {
        Some(text) => html! { (text) },
        None => html! { "Use your " code { (scope) } " access" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_in_page_returns_only_to_an_authorization_request() {
        assert!(return_target("/oauth/authorize?client_id=a").is_some());
        for bad in [
            "https://evil.example/oauth/authorize?x",
            "//evil.example/oauth/authorize?x",
            "/oauth/authorize",
            "/account",
            "/oauth/authorize?x=\r\nLocation: https://evil.example",
            "/oauth/authorize?\\evil",
        ] {
            assert!(return_target(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn repeated_parameters_are_found() {
        let (map, twice) = params("a=1&b=2&a=3&c=%20x");
        assert_eq!(map.get("a").map(String::as_str), Some("1"));
        assert_eq!(map.get("c").map(String::as_str), Some(" x"));
        assert_eq!(twice, ["a"]);
    }
}
