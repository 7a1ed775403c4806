//! Getting back into an account, over JSON and as pages: address verification,
//! forgotten password, reset, and changing the password or the address while signed
//! in. The work is `crate::recovery`'s; this adapts requests and answers.
//!
//! The pages a mailed link opens (`/verify-email`, `/reset-password`) change nothing
//! on `GET`: mail scanners follow links. They show a button (and a password field),
//! and the `POST` does the work. The token travels in the query of the link and in a
//! hidden field of the form; the request log records paths only, never queries.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::body::JsonBody;
use super::client_addr::ClientAddr;
use super::cookie::{CookieSession, Person, public_form};
use super::html::{
    account_form, account_refused, back_to_account, error_box, failed, layout, page,
};
use crate::error::ApiError;
use crate::recovery::{self, Forgotten};
use crate::state::AppState;

/// `{token}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The token of the link in the mail (its `token` query parameter).
    token: String,
}

/// `{email}` or `{username}`: one of the two.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    #[serde(default)]
    #[schema(max_length = 254)]
    email: Option<String>,
    #[serde(default)]
    #[schema(max_length = 64)]
    username: Option<String>,
}

/// `{token, password}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The token of the link in the mail.
    token: String,
    /// The new password: 8–1024 bytes.
    #[schema(min_length = 8, max_length = 256)]
    password: String,
}

/// `{current_password, new_password}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    current_password: String,
    /// 8–1024 bytes.
    #[schema(min_length = 8, max_length = 256)]
    new_password: String,
}

/// `{email, password}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEmailRequest {
    /// The new address.
    #[schema(max_length = 254)]
    email: String,
    /// The account's current password.
    password: String,
}

fn forgotten(email: Option<String>, username: Option<String>) -> Result<Forgotten, ApiError> {
    match (email, username) {
        (Some(email), None) => Ok(Forgotten::Email(email)),
        (None, Some(username)) => Ok(Forgotten::Username(username)),
        _ => Err(ApiError::InvalidRequest(
            "give either email or username".into(),
        )),
    }
}

/// The session or refresh family a request came with (its `sid`): what a password
/// change keeps.
fn current_login(identity: &portcullis::strategy::Identity) -> Option<String> {
    match identity.session() {
        Some(session) => Some(session.id().to_owned()),
        None => identity
            .token()
            .and_then(|t| t.registered_claims().sid.clone()),
    }
}

/// `POST /auth/email/verify {"token"}` → 204: the address of the link is verified.
#[utoipa::path(post, path = "/auth/email/verify", tag = "accounts", request_body = VerifyRequest,
    responses(
        (status = 204, description = "The address is verified (and the account's, for a change of address)"),
        (status = 400, description = "invalid_link (unknown, used, expired, replaced) or invalid_request", body = super::schemas::ErrorBody),
        (status = 409, description = "email_taken: another account verified this address meanwhile", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
    ))]
pub async fn verify(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<VerifyRequest>,
) -> Result<Response, ApiError> {
    recovery::verify(&state, &body.token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /auth/email/resend` (bearer, or a session cookie with the CSRF checks) → 202:
/// a new confirmation link for the account's unverified address.
#[utoipa::path(post, path = "/auth/email/resend", tag = "accounts",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 202, description = "A new link is queued (earlier ones stop working)"),
        (status = 400, description = "invalid_request: no address, or already verified", body = super::schemas::ErrorBody),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "access_denied (cross-site, or a machine client)", body = super::schemas::ErrorBody),
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn resend(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Person(identity): Person,
) -> Result<Response, ApiError> {
    recovery::resend(&state, client, identity.subject()).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST /auth/password/forgot {"email"}` or `{"username"}` → 202, whether or not an
/// account matches.
#[utoipa::path(post, path = "/auth/password/forgot", tag = "accounts", request_body = ForgotRequest,
    responses(
        (status = 202, description = "Accepted: if an enabled account with a verified address matches, a reset link is mailed to that address"),
        (status = 400, description = "invalid_request (neither or both fields; a malformed address)", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn forgot(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    JsonBody(body): JsonBody<ForgotRequest>,
) -> Result<Response, ApiError> {
    recovery::forgot(&state, client, forgotten(body.email, body.username)?).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST /auth/password/reset {"token", "password"}` → 204: the new password is set
/// and every sign-in of the account ended.
#[utoipa::path(post, path = "/auth/password/reset", tag = "accounts", request_body = ResetRequest,
    responses(
        (status = 204, description = "The password is replaced; every refresh family, session, device credential and access token of the account ended"),
        (status = 400, description = "invalid_link or invalid_request (the password)", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
        (status = 503, description = "temporarily_unavailable, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn reset(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    JsonBody(body): JsonBody<ResetRequest>,
) -> Result<Response, ApiError> {
    recovery::reset(&state, client, &body.token, body.password).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /auth/password/change` (bearer, or a session cookie with the CSRF checks) →
/// 204: every other session and refresh family of the account ends.
#[utoipa::path(post, path = "/auth/password/change", tag = "accounts", request_body = ChangePasswordRequest,
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 204, description = "Changed; every other sign-in ended (this one stays)"),
        (status = 400, description = "invalid_request (the new password)", body = super::schemas::ErrorBody),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "wrong_password, or access_denied (cross-site, a machine client)", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
        (status = 503, description = "temporarily_unavailable, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Person(identity): Person,
    JsonBody(body): JsonBody<ChangePasswordRequest>,
) -> Result<Response, ApiError> {
    recovery::change_password(
        &state,
        client,
        identity.subject(),
        current_login(&identity).as_deref(),
        body.current_password,
        body.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /auth/email/change` (bearer, or a session cookie with the CSRF checks) → 202:
/// the new address gets a confirmation link, the old one a notice.
#[utoipa::path(post, path = "/auth/email/change", tag = "accounts", request_body = ChangeEmailRequest,
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 202, description = "A confirmation link is on its way to the new address; the address changes when it is used"),
        (status = 400, description = "invalid_request (a malformed address, or the account's own)", body = super::schemas::ErrorBody),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "wrong_password, or access_denied (cross-site, a machine client)", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn change_email(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Person(identity): Person,
    JsonBody(body): JsonBody<ChangeEmailRequest>,
) -> Result<Response, ApiError> {
    recovery::change_email(
        &state,
        client,
        identity.subject(),
        &body.email,
        body.password,
    )
    .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

// ---- Pages ----

/// The `token` of a link's query, if it has one.
fn token_of(parts: &Parts) -> String {
    #[derive(Deserialize, Default)]
    struct Q {
        token: Option<String>,
    }
    axum::extract::Query::<Q>::try_from_uri(&parts.uri)
        .map(|q| q.0.token.unwrap_or_default())
        .unwrap_or_default()
}

fn forgot_page(error: Option<&str>, typed: &str, sent: bool) -> Markup {
    layout(
        "Forgot your password",
        html! {
            h1 { "Forgot your password?" }
            @if sent {
                p #forgot-sent .notice role="status" {
                    "If an account matches and has a verified email address, a link to choose a new password is on its way to that address. It works once, for a short while. Check your mail."
                }
            } @else {
                p { "Give your account's email address or username. If the account has a verified email address, we send a link to choose a new password there." }
                (error_box(error))
                form method="post" action="/forgot" {
                    label for="who" { "Email address or username" }
                    input #who name="who" type="text" autocomplete="username" required autofocus
                        maxlength="254" value=(typed);
                    button type="submit" { "Send me a link" }
                }
            }
            p { a href="/login" { "Back to sign in" } }
        },
    )
}

/// `GET /forgot`: asks for an address or a username.
#[utoipa::path(get, path = "/forgot", tag = "pages",
    responses((status = 200, description = "The forgotten-password page (HTML)", content_type = "text/html")))]
pub async fn forgot_form() -> Response {
    page(StatusCode::OK, forgot_page(None, "", false))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotForm {
    /// An email address (it has an `@`) or a username.
    who: String,
}

/// `POST /forgot` (form): as `POST /auth/password/forgot`; the page says a link is on
/// its way if an account matches, whether or not one does.
#[utoipa::path(post, path = "/forgot", tag = "pages",
    request_body(content = ForgotForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The page, saying a link is on its way if an account matches (HTML)", content_type = "text/html"),
        (status = 400, description = "The page again, with the error (HTML)", content_type = "text/html"),
        (status = 403, description = "A cross-site form (HTML)", content_type = "text/html"),
        (status = 429, description = "The page again: too many requests (HTML)", content_type = "text/html"),
    ))]
pub async fn forgot_submit(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    request: Request,
) -> Response {
    let form: Result<ForgotForm, ApiError> = public_form(&state, request).await;
    let typed = form.as_ref().map(|f| f.who.clone()).unwrap_or_default();
    let result = async {
        let form = form?;
        let who = form.who.trim().to_owned();
        let asked = if who.contains('@') {
            Forgotten::Email(who)
        } else {
            Forgotten::Username(who)
        };
        recovery::forgot(&state, client, asked).await
    };
    match result.await {
        Ok(()) => page(StatusCode::OK, forgot_page(None, "", true)),
        Err(e) => failed(e, |message| forgot_page(Some(message), &typed, false)),
    }
}

fn reset_page(error: Option<&str>, token: &str) -> Markup {
    layout(
        "Choose a new password",
        html! {
            h1 { "Choose a new password" }
            @if token.is_empty() {
                (error_box(Some("This page needs the link from your mail. Ask for a new one.")))
                p { a href="/forgot" { "Ask for a new link" } }
            } @else {
                p { "Choosing a new password signs you out everywhere: every browser, app and script signed in as you." }
                (error_box(error))
                form method="post" action="/reset-password" {
                    input type="hidden" name="token" value=(token);
                    label for="password" { "New password" }
                    input #password name="password" type="password" autocomplete="new-password"
                        required minlength="8" autofocus;
                    button type="submit" { "Set the new password" }
                }
                p.hint { "Passwords need at least 8 bytes." }
                @if error.is_some() { p { a href="/forgot" { "Ask for a new link" } } }
            }
        },
    )
}

/// `GET /reset-password?token=…`: the page a reset link opens (changes nothing).
#[utoipa::path(get, path = "/reset-password", tag = "pages",
    params(("token" = Option<String>, Query, description = "The token of the mailed link")),
    responses((status = 200, description = "The new-password form (HTML)", content_type = "text/html")))]
pub async fn reset_form(parts: Parts) -> Response {
    page(StatusCode::OK, reset_page(None, &token_of(&parts)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetForm {
    token: String,
    password: String,
}

/// `POST /reset-password` (form): as `POST /auth/password/reset`; then on to the
/// sign-in page, to sign in with the new password.
#[utoipa::path(post, path = "/reset-password", tag = "pages",
    request_body(content = ResetForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "To /login?reset=done: the password is changed, every sign-in ended"),
        (status = 400, description = "The page again, with the error (HTML)", content_type = "text/html"),
        (status = 403, description = "A cross-site form (HTML)", content_type = "text/html"),
        (status = 429, description = "The page again: too many attempts (HTML)", content_type = "text/html"),
    ))]
pub async fn reset_submit(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    request: Request,
) -> Response {
    let form: Result<ResetForm, ApiError> = public_form(&state, request).await;
    let token = form.as_ref().map(|f| f.token.clone()).unwrap_or_default();
    let result = async {
        let form = form?;
        recovery::reset(&state, client, &form.token, form.password).await
    };
    match result.await {
        // The reset ended every session, this browser's too: its cookie is cleared.
        Ok(()) => super::cookie::redirect_with_cookie(
            super::pages::PASSWORD_RESET,
            state.0.sessions.config().clear_cookie(),
        ),
        Err(e) => failed(e, |message| reset_page(Some(message), &token)),
    }
}

fn verify_page(error: Option<&str>, token: &str, verified: Option<&str>) -> Markup {
    layout(
        "Confirm your email address",
        html! {
            h1 { "Confirm your email address" }
            @if let Some(address) = verified {
                p #verified .notice role="status" { "Thank you: " strong { (address) } " is verified." }
                p { a href="/account" { "Go to your account" } }
            } @else if token.is_empty() {
                (error_box(Some("This page needs the link from your mail.")))
            } @else {
                (error_box(error))
                @if error.is_none() {
                    p { "Confirm that the address this link was sent to is yours." }
                    form method="post" action="/verify-email" {
                        input type="hidden" name="token" value=(token);
                        button #confirm type="submit" { "Confirm my address" }
                    }
                }
            }
        },
    )
}

/// `GET /verify-email?token=…`: the page a confirmation link opens: a button
/// (following the link changes nothing).
#[utoipa::path(get, path = "/verify-email", tag = "pages",
    params(("token" = Option<String>, Query, description = "The token of the mailed link")),
    responses((status = 200, description = "The confirmation page (HTML)", content_type = "text/html")))]
pub async fn verify_form(parts: Parts) -> Response {
    page(StatusCode::OK, verify_page(None, &token_of(&parts), None))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyForm {
    token: String,
}

/// `POST /verify-email` (form): as `POST /auth/email/verify`.
#[utoipa::path(post, path = "/verify-email", tag = "pages",
    request_body(content = VerifyForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The address is verified (HTML)", content_type = "text/html"),
        (status = 400, description = "The link does not work any more (HTML)", content_type = "text/html"),
        (status = 403, description = "A cross-site form (HTML)", content_type = "text/html"),
        (status = 409, description = "Another account uses the address (HTML)", content_type = "text/html"),
    ))]
pub async fn verify_submit(State(state): State<AppState>, request: Request) -> Response {
    let form: Result<VerifyForm, ApiError> = public_form(&state, request).await;
    let token = form.as_ref().map(|f| f.token.clone()).unwrap_or_default();
    let result = async {
        let form = form?;
        recovery::verify(&state, &form.token).await
    };
    match result.await {
        Ok(address) => page(StatusCode::OK, verify_page(None, &token, Some(&address))),
        Err(e) => failed(e, |message| verify_page(Some(message), &token, None)),
    }
}

// ---- The account page's forms ----

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountPasswordForm {
    #[serde(default)]
    csrf_token: String,
    current_password: String,
    new_password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountEmailForm {
    #[serde(default)]
    csrf_token: String,
    email: String,
    password: String,
}

/// `POST /account/password` (form): changes the password (every other sign-in ends).
#[utoipa::path(post, path = "/account/password", tag = "pages",
    request_body(content = AccountPasswordForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 303, description = "Back to /account?done=password"),
        (status = 400, description = "The new password is refused (HTML)", content_type = "text/html"),
        (status = 401, description = "Signed out meanwhile, or a bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 403, description = "The current password is wrong, a wrong form token, or a cross-site form (HTML)", content_type = "text/html"),
        (status = 429, description = "Too many attempts (HTML)", content_type = "text/html"),
    ))]
pub async fn account_password(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let (identity, form) =
        match account_form(signed_in, request, |f: &AccountPasswordForm| &f.csrf_token).await {
            Ok(found) => found,
            Err(page) => return page,
        };
    match recovery::change_password(
        &state,
        client,
        identity.subject(),
        current_login(&identity).as_deref(),
        form.current_password,
        form.new_password,
    )
    .await
    {
        Ok(()) => back_to_account("password"),
        Err(e) => account_refused(e),
    }
}

/// `POST /account/email` (form): asks to change the address (a link to the new one).
#[utoipa::path(post, path = "/account/email", tag = "pages",
    request_body(content = AccountEmailForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 303, description = "Back to /account?done=email"),
        (status = 400, description = "A malformed address (HTML)", content_type = "text/html"),
        (status = 401, description = "Signed out meanwhile, or a bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 403, description = "The password is wrong, a wrong form token, or a cross-site form (HTML)", content_type = "text/html"),
        (status = 429, description = "Too many attempts (HTML)", content_type = "text/html"),
    ))]
pub async fn account_email(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let (identity, form) =
        match account_form(signed_in, request, |f: &AccountEmailForm| &f.csrf_token).await {
            Ok(found) => found,
            Err(page) => return page,
        };
    match recovery::change_email(
        &state,
        client,
        identity.subject(),
        &form.email,
        form.password,
    )
    .await
    {
        Ok(()) => back_to_account("email"),
        Err(e) => account_refused(e),
    }
}

/// `POST /account/email/resend` (form): a new confirmation link.
#[utoipa::path(post, path = "/account/email/resend", tag = "pages",
    request_body(content = super::cookie::TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 303, description = "Back to /account?done=resent"),
        (status = 400, description = "No address to confirm (HTML)", content_type = "text/html"),
        (status = 401, description = "Signed out meanwhile, or a bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 403, description = "A wrong form token or a cross-site form (HTML)", content_type = "text/html"),
        (status = 429, description = "Too many requests (HTML)", content_type = "text/html"),
    ))]
pub async fn account_resend(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let (identity, _) = match account_form(signed_in, request, |f: &super::cookie::TokenForm| {
        &f.csrf_token
    })
    .await
    {
        Ok(found) => found,
        Err(page) => return page,
    };
    match recovery::resend(&state, client, identity.subject()).await {
        Ok(()) => back_to_account("resent"),
        Err(e) => account_refused(e),
    }
}
