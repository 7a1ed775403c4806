//! Signing in through upstream providers: `GET /login/{name}` (off to the provider),
//! `GET /login/{name}/callback` (back, signed in, a new account made, or a link added)
//! and the account page's `POST /account/providers/{name}/link|unlink`.
//!
//! The library's OpenID Connect client checks the provider's answer
//! (`providers.rs`); what it leads to is `upstream.rs`'s. Every failure is a page that
//! says what to do next, and the log says why.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use portcullis::oidc::{OidcClient, OidcError};
use portcullis_store::{Provider, Unlinked};

use super::client_addr::ClientAddr;
use super::cookie::{CookieSession, TokenForm};
use super::html::{account_form, layout, page};
use crate::error::ApiError;
use crate::state::AppState;
use crate::upstream::{LinkOutcome, Outcome, Person};

/// How a link's sign-in is told from a plain one: its way back, sealed in the flow
/// cookie (so no one can make a browser's plain sign-in into a link), names the
/// session that asked by a digest of its id.
const LINKING: &str = "/account/providers/linked?for=";

fn session_tag(session_id: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, session_id.as_bytes());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A page about a sign-in through `provider` that did not work, with the way back.
fn trouble(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        layout(
            title,
            html! {
                h1 { (title) }
                p #upstream-error .error role="alert" { (message) }
                p { a #try-again href="/login" { "Back to sign in" } }
            },
        ),
    )
}

/// The provider of that name, or the page for an unknown one.
async fn provider(state: &AppState, name: &str) -> Result<Provider, Response> {
    let found = match state.0.store.providers().await {
        Ok(all) => all.into_iter().find(|p| p.name == name),
        Err(e) => return Err(super::html::refused(e.into())),
    };
    found.ok_or_else(|| {
        trouble(
            StatusCode::NOT_FOUND,
            "No such way to sign in",
            "This server does not sign people in through that provider.",
        )
    })
}

/// The provider's client, or the page saying it is not answering.
async fn client(state: &AppState, p: &Provider) -> Result<OidcClient, Response> {
    state
        .0
        .upstreams
        .client(p, state.0.keys.keks(), &state.0.config.issuer)
        .await
        .map_err(|e| {
            tracing::warn!(provider = %p.name, error = %e, "upstream provider unusable");
            unreachable_page(p)
        })
}

fn unreachable_page(p: &Provider) -> Response {
    trouble(
        StatusCode::BAD_GATEWAY,
        "Could not sign you in",
        &format!(
            "{} is not answering as it should right now. Try again in a moment, or sign in \
             another way.",
            p.display_name
        ),
    )
}

/// Off to the provider: a 303 with the flow cookie.
fn begin(client: &OidcClient, p: &Provider, return_to: &str) -> Response {
    match client.begin(return_to) {
        Ok(begun) => {
            let mut r = Redirect::to(&begun.location).into_response();
            r.headers_mut().insert(header::SET_COOKIE, begun.set_cookie);
            r
        }
        Err(e) => {
            tracing::warn!(provider = %p.name, error = %e, "upstream sign-in could not begin");
            unreachable_page(p)
        }
    }
}

/// `GET /login/{name}?return_to=…`: off to the provider to sign in.
#[utoipa::path(get, path = "/login/{name}", tag = "pages",
    params(
        ("name" = String, Path, description = "An upstream provider's name (`portcullis providers list`)"),
        ("return_to" = Option<String>, Query, description = "An authorization request (/oauth/authorize?…) to go back to after signing in"),
    ),
    responses(
        (status = 303, description = "To the provider, with the flow cookie"),
        (status = 404, description = "No such provider (HTML)", content_type = "text/html"),
        (status = 502, description = "The provider cannot be reached or is misconfigured (HTML)", content_type = "text/html"),
    ))]
pub async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    parts: axum::http::request::Parts,
) -> Response {
    #[derive(serde::Deserialize, Default)]
    struct Query {
        return_to: Option<String>,
    }
    let query = axum::extract::Query::<Query>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let p = match provider(&state, &name).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let client = match client(&state, &p).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    // Only an authorization request of ours survives the trip; anything else (a link's
    // way back among them) is dropped.
    let return_to = query
        .return_to
        .as_deref()
        .and_then(super::oauth::return_target)
        .unwrap_or("/account");
    begin(&client, &p, return_to)
}

/// `GET /login/{name}/callback?code=…&state=…`: back from the provider.
#[utoipa::path(get, path = "/login/{name}/callback", tag = "pages",
    params(("name" = String, Path, description = "The upstream provider's name")),
    responses(
        (status = 200, description = "The second-factor page, for an account that has one (HTML)", content_type = "text/html"),
        (status = 303, description = "Signed in (with the session cookie), or linked: on to where the sign-in was headed"),
        (status = 400, description = "Not a sign-in this browser started, or it took too long (HTML)", content_type = "text/html"),
        (status = 403, description = "Declined at the provider, or a disabled account (HTML)", content_type = "text/html"),
        (status = 404, description = "No such provider (HTML)", content_type = "text/html"),
        (status = 409, description = "Not linked: the address or the identity belongs to another account (HTML)", content_type = "text/html"),
        (status = 502, description = "The provider answered something unusable, or not at all (HTML)", content_type = "text/html"),
    ))]
pub async fn callback(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Path(name): Path<String>,
    parts: axum::http::request::Parts,
) -> Response {
    let p = match provider(&state, &name).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let client = match client(&state, &p).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let query = parts.uri.query().unwrap_or("");
    let signed_in = match client.complete(&parts.headers, query).await {
        Ok(s) => s,
        Err(e) => return refused_callback(&p, &client, e),
    };
    let clear_flow = signed_in.clear_cookie.clone();
    let person = if p.kind == crate::providers::KIND_GITHUB {
        let (_, _, api) = crate::providers::github_endpoints(&p.issuer);
        Person::from_github(&api, &signed_in.access_token).await
    } else {
        Person::from_claims(&signed_in.claims)
            .ok_or_else(|| "an ID token without a subject, or with one over 255 bytes".to_owned())
    };
    let person = match person {
        Ok(person) => person,
        Err(e) => {
            tracing::warn!(provider = %p.name, error = %e, "upstream sign-in: who signed in is not known");
            return unreachable_page(&p);
        }
    };
    let mut r = match signed_in.return_to.strip_prefix(LINKING) {
        Some(tag) => linked(&state, &parts.headers, &p, &person, tag).await,
        None => {
            signed_in_through(
                &state,
                addr,
                &parts.headers,
                &p,
                &person,
                &signed_in.return_to,
            )
            .await
        }
    };
    r.headers_mut().append(header::SET_COOKIE, clear_flow);
    r
}

/// The page for a callback the client refused.
fn refused_callback(p: &Provider, client: &OidcClient, e: OidcError) -> Response {
    match &e {
        OidcError::Provider { error, .. } if error == "access_denied" => {
            tracing::info!(provider = %p.name, "upstream sign-in declined");
            trouble(
                StatusCode::FORBIDDEN,
                "Not signed in",
                &format!("You did not allow the sign-in at {}.", p.display_name),
            )
        }
        _ if e.is_user_error() => {
            tracing::info!(provider = %p.name, error = %e, "upstream callback refused");
            trouble(
                StatusCode::BAD_REQUEST,
                "Not signed in",
                "This sign-in was not started in this browser, or it took too long. Start \
                 again.",
            )
        }
        OidcError::IssuerMismatch => {
            tracing::warn!(provider = %p.name, client = ?client, "upstream callback names another issuer");
            trouble(
                StatusCode::BAD_REQUEST,
                "Not signed in",
                "The answer did not come from the provider this sign-in went to. Start again.",
            )
        }
        _ => {
            tracing::warn!(provider = %p.name, error = %e, "upstream sign-in failed at the provider");
            unreachable_page(p)
        }
    }
}

/// A plain sign-in through `p`.
async fn signed_in_through(
    state: &AppState,
    addr: std::net::IpAddr,
    headers: &HeaderMap,
    p: &Provider,
    person: &Person,
    return_to: &str,
) -> Response {
    let outcome = match crate::upstream::sign_in(state, addr, &p.name, person).await {
        Ok(o) => o,
        Err(e) => return super::html::refused(e),
    };
    let onward = super::oauth::return_target(return_to);
    match outcome {
        Outcome::SignedIn(done) => {
            match super::session::start_signed_in(state, headers, *done).await {
                Ok((signed_in, started)) => {
                    super::session::signed_in_page(state, onward, &signed_in, started)
                }
                Err(e) => super::html::refused(e),
            }
        }
        Outcome::SecondFactor(pending) => super::factors::second_step_page(&pending, None, onward),
        Outcome::Disabled => trouble(
            StatusCode::FORBIDDEN,
            "Not signed in",
            "The account you signed in to is disabled.",
        ),
        Outcome::AddressTaken => trouble(
            StatusCode::CONFLICT,
            "Sign in to your account first",
            &format!(
                "An account here already uses the address {} gave us. If it is yours, sign \
                 in to it as you usually do, then link {} from your account page.",
                p.display_name, p.display_name
            ),
        ),
    }
}

/// The end of a link's sign-in: the browser's session must be the one that asked.
async fn linked(
    state: &AppState,
    headers: &HeaderMap,
    p: &Provider,
    person: &Person,
    tag: &str,
) -> Response {
    let session = match state.0.sessions.lookup(headers).await {
        Ok(Some(s)) if session_tag(s.id()) == tag => s,
        Ok(_) => {
            return trouble(
                StatusCode::BAD_REQUEST,
                "Not linked",
                "You signed out, or signed in again, while the link was being made. Sign in \
                 and link it again from your account page.",
            );
        }
        Err(e) => return super::html::refused(ApiError::from(e)),
    };
    let user_id = session.record().subject.clone();
    match crate::upstream::link(state, &user_id, &p.name, person).await {
        Ok(LinkOutcome::Linked) => super::html::back_to_account("linked"),
        Ok(LinkOutcome::Taken) => trouble(
            StatusCode::CONFLICT,
            "Not linked",
            &format!(
                "That {} account already signs in to another account here. Sign in to that \
                 one and unlink it first.",
                p.display_name
            ),
        ),
        Ok(LinkOutcome::OtherAtProvider) => trouble(
            StatusCode::CONFLICT,
            "Not linked",
            &format!(
                "Your account is already linked to another {} account. Unlink it first.",
                p.display_name
            ),
        ),
        Ok(LinkOutcome::NoAccount) => Redirect::to("/login").into_response(),
        Err(e) => super::html::refused(e),
    }
}

/// `POST /account/providers/{name}/link` (form): off to the provider to link it.
#[utoipa::path(post, path = "/account/providers/{name}/link", tag = "pages",
    params(("name" = String, Path, description = "The upstream provider's name")),
    request_body(content = super::cookie::TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 200, description = "A page that goes on to the provider by itself (HTML, with the flow cookie)", content_type = "text/html"),
        (status = 303, description = "To /login when signed out"),
        (status = 400, description = "Not a form, or a malformed Authorization header (HTML)", content_type = "text/html"),
        (status = 401, description = "A bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 403, description = "A wrong form token or a cross-site form (HTML)", content_type = "text/html"),
        (status = 404, description = "No such provider (HTML)", content_type = "text/html"),
        (status = 502, description = "The provider cannot be reached (HTML)", content_type = "text/html"),
    ))]
pub async fn link(
    State(state): State<AppState>,
    Path(name): Path<String>,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let identity = match account_form(signed_in, request, |f: &TokenForm| &f.csrf_token).await {
        Ok((identity, _)) => identity,
        Err(page) => return page,
    };
    let Some(session) = identity.session() else {
        return Redirect::to("/login").into_response();
    };
    let p = match provider(&state, &name).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let client = match client(&state, &p).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    // Not a 303: the page's `form-action 'self'` holds the redirects that follow a
    // form too, and the provider is another origin. A page that goes on by itself (the
    // `Refresh` header, no script) with a link to click if it does not.
    match client.begin(&format!("{LINKING}{}", session_tag(session.id()))) {
        Ok(begun) => {
            let mut r = page(
                StatusCode::OK,
                layout(
                    "Linking",
                    html! {
                        h1 { "Off to " (p.display_name) }
                        p { "Sign in there to link it to your account. " a #continue href=(begun.location) { "Continue" } }
                    },
                ),
            );
            let h = r.headers_mut();
            h.insert(header::SET_COOKIE, begun.set_cookie);
            if let Ok(refresh) = format!("0;url={}", begun.location).parse() {
                h.insert(header::REFRESH, refresh);
            }
            r
        }
        Err(e) => {
            tracing::warn!(provider = %p.name, error = %e, "upstream link could not begin");
            unreachable_page(&p)
        }
    }
}

/// `POST /account/providers/{name}/unlink` (form): removes the link, unless it is the
/// account's last way in.
#[utoipa::path(post, path = "/account/providers/{name}/unlink", tag = "pages",
    params(("name" = String, Path, description = "The upstream provider's name")),
    request_body(content = super::cookie::TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 303, description = "Back to /account (or to /login when signed out)"),
        (status = 400, description = "Not a form, or a malformed Authorization header (HTML)", content_type = "text/html"),
        (status = 401, description = "A bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 403, description = "A wrong form token or a cross-site form (HTML)", content_type = "text/html"),
        (status = 409, description = "It is the account's last way to sign in (HTML)", content_type = "text/html"),
    ))]
pub async fn unlink(
    State(state): State<AppState>,
    Path(name): Path<String>,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let identity = match account_form(signed_in, request, |f: &TokenForm| &f.csrf_token).await {
        Ok((identity, _)) => identity,
        Err(page) => return page,
    };
    let user_id = identity.subject();
    match state.0.store.unlink_identity(user_id, &name).await {
        Ok(Unlinked::Done) => {
            tracing::info!(user = %user_id, provider = %name, "upstream identity unlinked");
            crate::audit::record(
                &state,
                crate::audit::Entry::own(crate::audit::Kind::IdentityUnlinked, user_id)
                    .with("provider", name.as_str()),
            )
            .await;
            super::html::back_to_account("unlinked")
        }
        Ok(Unlinked::NotFound) => super::html::back_to_account("unlinked"),
        Ok(Unlinked::LastWayIn) => page(
            StatusCode::CONFLICT,
            layout(
                "Not unlinked",
                html! {
                    h1 { "Not unlinked" }
                    p #upstream-error .error role="alert" {
                        "This is the only way you can sign in to your account. Add a passkey, or "
                        "link another provider, before you unlink it."
                    }
                    p { a href="/account" { "Back to your account" } }
                },
            ),
        ),
        Err(e) => super::html::refused(e.into()),
    }
}
