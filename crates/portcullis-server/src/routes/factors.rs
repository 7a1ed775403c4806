//! Second factors over JSON and as pages: setting up an authenticator app, recovery
//! codes, removing them, and the second step of a sign-in in a browser. The work is
//! `crate::factors`'s; this adapts requests and answers.
//!
//! Every change needs the account's password again (throttled as a login), even from
//! a live session: a session left open, or a stolen cookie, must not be enough to take
//! a factor away or to put the thief's own authenticator on the account.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use serde_json::json;

use super::body::JsonBody;
use super::client_addr::ClientAddr;
use super::cookie::{CookieSession, Person};
use super::html::{account_form, account_refused, back_to_account, error_box, layout, page};
use super::token_json;
use crate::error::ApiError;
use crate::factors::{self, Enrolment, Pending};
use crate::state::AppState;

/// `{password}`: the account's password, asked again before a factor changes.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordAgain {
    /// The account's current password.
    password: String,
}

/// `{code}`: six digits from the authenticator app.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    #[schema(max_length = 64)]
    code: String,
}

/// `GET /auth/mfa` → 200 `{methods, totp_pending, recovery_codes_left,
/// recovery_code_last_used_at}`.
#[utoipa::path(get, path = "/auth/mfa", tag = "second factors", operation_id = "mfa_status",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "What the account has set up"),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "access_denied (a machine client)", body = super::schemas::ErrorBody),
    ))]
pub async fn status(
    State(state): State<AppState>,
    Person(identity): Person,
) -> Result<Response, ApiError> {
    let user = crate::recovery::signed_in_user(&state, identity.subject()).await?;
    let o = factors::overview(&state, &user).await?;
    Ok(token_json(json!({
        "methods": o.methods,
        "totp_pending": o.totp_pending,
        "recovery_codes_left": o.recovery_codes_left,
        "recovery_code_last_used_at": o.recovery_code_last_used_at,
    })))
}

/// `POST /auth/mfa/totp {password}` → 200 `{secret, otpauth_uri}`: an enrolment that
/// changes nothing for sign-in until confirmed.
#[utoipa::path(post, path = "/auth/mfa/totp", tag = "second factors", request_body = PasswordAgain,
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The secret (base32) and its otpauth:// URI"),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "wrong_password, or access_denied (cross-site, a machine client)", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict: an authenticator app is already set up", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn totp_begin(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Person(identity): Person,
    JsonBody(body): JsonBody<PasswordAgain>,
) -> Result<Response, ApiError> {
    let e = factors::enrol_totp(&state, client, identity.subject(), body.password).await?;
    Ok(token_json(json!({
        "secret": e.secret.as_str(),
        "otpauth_uri": e.uri.as_str(),
    })))
}

/// `POST /auth/mfa/totp/confirm {code}` → 200 `{recovery_codes}`: the app is set up;
/// from now on a password alone signs nobody in.
#[utoipa::path(post, path = "/auth/mfa/totp/confirm", tag = "second factors", request_body = CodeRequest,
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "Ten recovery codes, shown this once"),
        crate::routes::schemas::CredentialRefusals,
        (status = 401, description = "invalid_code (or a credential refusal)", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict: no enrolment waits for a code", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
    ))]
pub async fn totp_confirm(
    State(state): State<AppState>,
    Person(identity): Person,
    JsonBody(body): JsonBody<CodeRequest>,
) -> Result<Response, ApiError> {
    let codes = factors::confirm_totp(&state, identity.subject(), &body.code).await?;
    Ok(token_json(json!({ "recovery_codes": codes })))
}

/// `DELETE /auth/mfa/totp {password}` → 204.
#[utoipa::path(delete, path = "/auth/mfa/totp", tag = "second factors", request_body = PasswordAgain,
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 204, description = "Removed (with the recovery codes, when no factor is left)"),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "wrong_password, or access_denied", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict: no authenticator app is set up", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn totp_remove(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Person(identity): Person,
    JsonBody(body): JsonBody<PasswordAgain>,
) -> Result<Response, ApiError> {
    factors::remove_totp(&state, client, identity.subject(), body.password).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /auth/mfa/recovery-codes {password}` → 200 `{recovery_codes}`: a new set; the
/// old codes stop working.
#[utoipa::path(post, path = "/auth/mfa/recovery-codes", tag = "second factors", request_body = PasswordAgain,
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "Ten new recovery codes, shown this once"),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "wrong_password, or access_denied", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict: the account has no second factor", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn recovery_codes(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Person(identity): Person,
    JsonBody(body): JsonBody<PasswordAgain>,
) -> Result<Response, ApiError> {
    let codes =
        factors::regenerate_recovery_codes(&state, client, identity.subject(), body.password)
            .await?;
    Ok(token_json(json!({ "recovery_codes": codes })))
}

// ---- Pages ------------------------------------------------------------------------

/// The second step of a sign-in in a browser: a code from the app, or a recovery code.
fn second_step_markup(
    error: Option<&str>,
    mfa_token: &str,
    methods: &[&str],
    return_to: Option<&str>,
) -> Markup {
    let described = error.map(|_| "form-error");
    let hidden = |method: &str| {
        html! {
            input type="hidden" name="mfa_token" value=(mfa_token);
            input type="hidden" name="method" value=(method);
            @if let Some(to) = return_to { input type="hidden" name="return_to" value=(to); }
        }
    };
    layout(
        "Second step",
        html! {
            h1 { "Second step" }
            (error_box(error))
            @if methods.contains(&"webauthn") {
                p #passkey-error .error role="alert" hidden {}
                p { "Your password is right. Confirm with your passkey" @if methods.contains(&"totp") { ", or enter a code from your authenticator app" } "." }
                p { button #passkey-second-step type="button" data-passkey="second-step" data-mfa-token=(mfa_token) data-then=(return_to.unwrap_or("/account")) { "Use my passkey" } }
                script src="/assets/passkeys.js" defer {}
            }
            @if methods.contains(&"totp") {
                p { "Your password is right. Enter the six-digit code your authenticator app shows now." }
                form #totp-form method="post" action="/session/login/mfa" {
                    (hidden("totp"))
                    label for="code" { "Code" }
                    input #code name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                        pattern="[0-9]{6}" maxlength="6" required autofocus aria-describedby=[described];
                    button type="submit" { "Sign in" }
                }
            }
            details #use-recovery-code open[!methods.contains(&"totp")] {
                summary { "Use a recovery code instead" }
                p { "Each recovery code works once. After using one, make new ones on your account page if few are left." }
                form #recovery-form method="post" action="/session/login/mfa" {
                    (hidden("recovery_code"))
                    label for="recovery-code" { "Recovery code" }
                    input #recovery-code name="code" type="text" autocomplete="off" spellcheck="false"
                        maxlength="64" required aria-describedby=[described];
                    button type="submit" { "Sign in" }
                }
            }
            p { a href="/login" { "Start again" } }
        },
    )
}

/// The second-step page after a right password.
pub(super) fn second_step_page(
    pending: &Pending,
    error: Option<&str>,
    return_to: Option<&str>,
) -> Response {
    let markup = second_step_markup(error, pending.token.expose(), &pending.methods, return_to);
    if pending.methods.contains(&"webauthn") {
        super::html::page_with_script(StatusCode::OK, markup, None)
    } else {
        page(StatusCode::OK, markup)
    }
}

/// The second-step page again after a wrong code, with the same challenge (it counts
/// its attempts; once they are spent the next try goes back to the sign-in page).
pub(super) fn second_step_retry(e: ApiError, mfa_token: &str, return_to: Option<&str>) -> Response {
    super::html::failed(e, |message| {
        second_step_markup(
            Some(message),
            mfa_token,
            &["totp", "recovery_code"],
            return_to,
        )
    })
}

/// The account page's section on second factors.
pub(super) fn account_section(o: &factors::Overview, csrf_token: &str) -> Markup {
    let has_totp = o.methods.iter().any(|m| m == "totp");
    let any = !o.methods.is_empty();
    let password_field = |id: &str| {
        html! {
            label for=(id) { "Your password" }
            input id=(id) name="password" type="password" autocomplete="current-password" required;
        }
    };
    html! {
        h2 #mfa-heading { "Two-step sign-in" }
        @if any {
            p #mfa-state { "On: after your password, signing in asks for "
                @if has_totp && !o.passkeys.is_empty() { "a code from your authenticator app or a passkey." }
                @else if has_totp { "a code from your authenticator app." }
                @else { "a passkey." }
            }
            p #recovery-left {
                (o.recovery_codes_left) " of " (factors::RECOVERY_CODES) " recovery codes left"
                @if let Some(at) = o.recovery_code_last_used_at { " (one was last used " (super::html::when(at)) ")" }
                "."
            }
            details #new-recovery-codes {
                summary { "Make new recovery codes…" }
                p { "The old ones stop working." }
                form method="post" action="/account/mfa/recovery-codes" {
                    input type="hidden" name="csrf_token" value=(csrf_token);
                    (password_field("codes-password"))
                    button type="submit" { "Make new codes" }
                }
            }
        } @else {
            p #mfa-state { "Off: your password alone signs you in. Add an authenticator app or a passkey so that a stolen password is not enough." }
        }
        h3 { "Authenticator app" }
        @if has_totp {
            details #remove-totp {
                summary { "Turn off the authenticator app…" }
                form method="post" action="/account/mfa/totp/remove" {
                    input type="hidden" name="csrf_token" value=(csrf_token);
                    (password_field("remove-totp-password"))
                    button.danger type="submit" { "Turn off" }
                }
            }
        } @else {
            details #setup-totp {
                summary { "Set up an authenticator app…" }
                form method="post" action="/account/mfa/totp" {
                    input type="hidden" name="csrf_token" value=(csrf_token);
                    (password_field("setup-totp-password"))
                    button type="submit" { "Continue" }
                }
            }
        }
        @if o.passkeys_available {
            h3 { "Passkeys" }
            p { "A passkey signs you in with your device's screen lock, with no password, or as the second step after it." }
            @if o.passkeys.is_empty() {
                p #no-passkeys { "You have no passkey yet." }
            } @else {
                ul #passkeys {
                    @for p in &o.passkeys {
                        li data-passkey-id=(p.id) {
                            strong { (p.label) } " — added " (super::html::when(p.created_at))
                            @if let Some(at) = p.last_used_at { ", last used " (super::html::when(at)) }
                            details.remove-passkey {
                                summary { "Remove…" }
                                form method="post" action={ "/account/passkeys/" (p.id) "/remove" } {
                                    input type="hidden" name="csrf_token" value=(csrf_token);
                                    label { "Your password" input name="password" type="password" autocomplete="current-password" required; }
                                    button.danger type="submit" { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
            details #add-passkey {
                summary { "Add a passkey…" }
                p #passkey-error .error role="alert" hidden {}
                label for="passkey-label" { "Name it (which device?)" }
                input #passkey-label type="text" maxlength="64" placeholder="Laptop";
                (password_field("passkey-password"))
                button type="button" data-passkey="register" { "Add a passkey" }
            }
            script src="/assets/passkeys.js" defer {}
        }
    }
}

fn enrolment_page(
    e: &Enrolment,
    csrf_token: &str,
    error: Option<&str>,
) -> Result<Markup, ApiError> {
    let svg = e.qr_svg()?;
    Ok(layout(
        "Set up your authenticator app",
        html! {
            h1 { "Set up your authenticator app" }
            (error_box(error))
            p { "Scan this code with your authenticator app, or type the key below into it. Then enter the six-digit code it shows." }
            div #qr role="img" aria-label="QR code of the authenticator key" { (PreEscaped(svg)) }
            p { "Key: " code #totp-secret { (e.secret.as_str()) } }
            form method="post" action="/account/mfa/totp/confirm" {
                input type="hidden" name="csrf_token" value=(csrf_token);
                label for="code" { "Code from the app" }
                input #code name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                    pattern="[0-9]{6}" maxlength="6" required autofocus;
                button type="submit" { "Turn on" }
            }
            p { a href="/account" { "Not now" } }
        },
    ))
}

fn codes_page(title: &str, codes: &[String]) -> Markup {
    layout(
        title,
        html! {
            h1 { (title) }
            p { strong { "Keep these recovery codes somewhere safe." } " Each one signs you in once if you lose your authenticator app. They are shown this once." }
            ol #recovery-codes {
                @for c in codes { li { code { (c) } } }
            }
            p { a #done href="/account" { "I have saved them" } }
        },
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordForm {
    #[serde(default)]
    csrf_token: String,
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeForm {
    #[serde(default)]
    csrf_token: String,
    code: String,
}

/// `POST /account/mfa/totp` (form): the password, then the QR code and key to scan.
#[utoipa::path(post, path = "/account/mfa/totp", tag = "pages",
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 400, description = "Not a form, or a malformed Authorization header (HTML)", content_type = "text/html"),
        (status = 401, description = "Signed out meanwhile, or a bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 200, description = "The QR code, the key and the confirmation form (HTML)", content_type = "text/html"),
        (status = 403, description = "The password is wrong, a wrong form token, or a cross-site form (HTML)", content_type = "text/html"),
        (status = 409, description = "Already set up (HTML)", content_type = "text/html"),
        (status = 429, description = "Too many attempts (HTML)", content_type = "text/html"),
    ))]
pub async fn account_totp(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let (identity, form) =
        match account_form(signed_in, request, |f: &PasswordForm| &f.csrf_token).await {
            Ok(found) => found,
            Err(page) => return page,
        };
    let result = async {
        let e = factors::enrol_totp(&state, client, identity.subject(), form.password).await?;
        enrolment_page(&e, &form.csrf_token, None)
    }
    .await;
    match result {
        Ok(markup) => page(StatusCode::OK, markup),
        Err(e) => account_refused(e),
    }
}

/// `POST /account/mfa/totp/confirm` (form): the app's code; the recovery codes.
#[utoipa::path(post, path = "/account/mfa/totp/confirm", tag = "pages",
    request_body(content = CodeForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 400, description = "Not a form, or a malformed Authorization header (HTML)", content_type = "text/html"),
        (status = 403, description = "A wrong form token, or a cross-site form (HTML)", content_type = "text/html"),
        (status = 200, description = "The recovery codes, shown once (HTML)", content_type = "text/html"),
        (status = 401, description = "A wrong code, or signed out meanwhile (HTML)", content_type = "text/html"),
        (status = 409, description = "Nothing waits for a code (HTML)", content_type = "text/html"),
    ))]
pub async fn account_totp_confirm(
    State(state): State<AppState>,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let (identity, form) =
        match account_form(signed_in, request, |f: &CodeForm| &f.csrf_token).await {
            Ok(found) => found,
            Err(page) => return page,
        };
    match factors::confirm_totp(&state, identity.subject(), &form.code).await {
        Ok(codes) => page(
            StatusCode::OK,
            codes_page("Your authenticator app is on", &codes),
        ),
        Err(e) => account_refused(e),
    }
}

/// `POST /account/mfa/totp/remove` (form): the password, then the app is removed.
#[utoipa::path(post, path = "/account/mfa/totp/remove", tag = "pages",
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 400, description = "Not a form, or a malformed Authorization header (HTML)", content_type = "text/html"),
        (status = 401, description = "Signed out meanwhile, or a bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 303, description = "Back to /account?done=totp-removed"),
        (status = 403, description = "The password is wrong, a wrong form token, or a cross-site form (HTML)", content_type = "text/html"),
        (status = 409, description = "Nothing to remove (HTML)", content_type = "text/html"),
        (status = 429, description = "Too many attempts (HTML)", content_type = "text/html"),
    ))]
pub async fn account_totp_remove(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let (identity, form) =
        match account_form(signed_in, request, |f: &PasswordForm| &f.csrf_token).await {
            Ok(found) => found,
            Err(page) => return page,
        };
    match factors::remove_totp(&state, client, identity.subject(), form.password).await {
        Ok(()) => back_to_account("totp-removed"),
        Err(e) => account_refused(e),
    }
}

/// `POST /account/mfa/recovery-codes` (form): the password, then a new set.
#[utoipa::path(post, path = "/account/mfa/recovery-codes", tag = "pages",
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 400, description = "Not a form, or a malformed Authorization header (HTML)", content_type = "text/html"),
        (status = 401, description = "Signed out meanwhile, or a bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 200, description = "The new recovery codes, shown once (HTML)", content_type = "text/html"),
        (status = 403, description = "The password is wrong, a wrong form token, or a cross-site form (HTML)", content_type = "text/html"),
        (status = 409, description = "No second factor (HTML)", content_type = "text/html"),
        (status = 429, description = "Too many attempts (HTML)", content_type = "text/html"),
    ))]
pub async fn account_recovery_codes(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let (identity, form) =
        match account_form(signed_in, request, |f: &PasswordForm| &f.csrf_token).await {
            Ok(found) => found,
            Err(page) => return page,
        };
    match factors::regenerate_recovery_codes(&state, client, identity.subject(), form.password)
        .await
    {
        Ok(codes) => page(StatusCode::OK, codes_page("New recovery codes", &codes)),
        Err(e) => account_refused(e),
    }
}
