//! Server-rendered pages for people in a browser: sign in, create an account, and the
//! account page (who am I, my sessions with a revoke button each, sign out, sign out
//! everywhere). Plain HTML forms, no script; maud escapes every value it prints.
//!
//! Every page is sent with a strict Content-Security-Policy (no script at all, styles
//! from our own stylesheet only, forms posting only to us, no framing) and
//! `Cache-Control: no-store`. Every form that changes state carries the session's
//! synchronizer token, on top of the Fetch Metadata / Origin checks.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use portcullis::session::{SessionContext, SessionRecord};
use portcullis_store::{Consent, EventKind, FamilyInfo, Provider};
use serde::Deserialize;

use super::client_addr::ClientAddr;
use super::cookie::{
    CookieSession, TokenForm, end_login, read_form, redirect_with_cookie, refuse_cross_site,
    start_session,
};
use super::html::{
    error_box, failed, failed_with_target, layout, page_with_form_target, page_with_script,
    refused, when,
};
use crate::accounts::{create_account, end_everything};
use crate::error::ApiError;
use crate::state::AppState;

/// The sign-up form's email field: what was typed, and whether it is required.
struct EmailField<'a> {
    value: &'a str,
    required: bool,
}

fn credentials_form(
    action: &str,
    button: &str,
    password_autocomplete: &str,
    username: &str,
    error: Option<&str>,
    return_to: Option<&str>,
    email: Option<EmailField<'_>>,
) -> Markup {
    // With an error, the fields point at it, so assistive technology reads it with them.
    let described = error.map(|_| "form-error");
    html! {
        (error_box(error))
        form method="post" action=(action) {
            label for="username" { "Username" }
            input #username name="username" type="text" autocomplete="username"
                required autofocus[username.is_empty()] value=(username)
                aria-describedby=[described] aria-invalid=[error.map(|_| "true")];
            label for="password" { "Password" }
            input #password name="password" type="password"
                autocomplete=(password_autocomplete) required minlength="8"
                autofocus[!username.is_empty()] aria-describedby=[described];
            @if let Some(field) = email {
                label for="email" {
                    "Email" @if !field.required { " (optional: to get back in if you forget your password)" }
                }
                input #email name="email" type="email" autocomplete="email" maxlength="254"
                    required[field.required] value=(field.value) aria-describedby=[described];
            }
            @if let Some(to) = return_to {
                input type="hidden" name="return_to" value=(to);
            }
            button type="submit" { (button) }
        }
    }
}

/// Where a sign-in or sign-up page is headed: back to an authorization request
/// (`return_to`), and the application that sent it, when it is a known one.
#[derive(Default)]
struct Onward {
    return_to: Option<String>,
    app: Option<super::oauth::AppAsking>,
    /// The origin of a protected app's URL to go back to (forward authentication).
    forward_origin: Option<String>,
    /// The upstream providers to offer ("Continue with …").
    providers: Vec<Provider>,
}

impl Onward {
    /// From a `return_to` that may be anything: kept only if it is an authorization
    /// request of ours, or a URL of an app behind forward authentication
    /// (`forward_auth_domains`).
    async fn read(state: &AppState, return_to: Option<&str>) -> Onward {
        // A store that fails here fails the sign-in too; the page still shows the form.
        let providers = state.0.store.providers().await.unwrap_or_default();
        Onward {
            providers,
            ..Onward::toward(state, return_to).await
        }
    }

    async fn toward(state: &AppState, return_to: Option<&str>) -> Onward {
        let Some(to) = return_to else {
            return Onward::default();
        };
        if let Some(to) = super::oauth::return_target(to) {
            return Onward {
                return_to: Some(to.to_owned()),
                app: super::oauth::app_asking(state, to).await,
                forward_origin: None,
                providers: Vec::new(),
            };
        }
        match super::forward::forward_target(&state.0.config, to) {
            Some(url) => Onward {
                forward_origin: super::forward::origin_of(&url),
                return_to: Some(url),
                app: None,
                providers: Vec::new(),
            },
            None => Onward::default(),
        }
    }

    fn return_to(&self) -> Option<&str> {
        self.return_to.as_deref()
    }

    fn form_target(&self) -> Option<&str> {
        self.app
            .as_ref()
            .and_then(|a| a.form_target.as_deref())
            .or(self.forward_origin.as_deref())
    }

    /// `path`, keeping the way back (`/signup?return_to=…`).
    fn link(&self, path: &str) -> String {
        match &self.return_to {
            Some(to) => format!(
                "{path}?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("return_to", to)
                    .finish()
            ),
            None => path.to_owned(),
        }
    }

    /// Who asks, in words: the application's name when it is known.
    fn asking(&self, what: &str) -> Option<Markup> {
        self.return_to.as_ref()?;
        Some(html! {
            p #for-app {
                @match &self.app {
                    Some(app) => { strong #app-name { (app.name) } " " (what) }
                    None => { "An application " (what) }
                }
            }
        })
    }
}

/// Where a form that signs this browser out goes: the sign-in page, saying so.
pub(super) const SIGNED_OUT_HERE: &str = "/login?signed_out=here";
/// Where "Sign out everywhere" goes.
const SIGNED_OUT_EVERYWHERE: &str = "/login?signed_out=everywhere";
/// Where a password reset goes: the sign-in page, to sign in with the new password.
pub(super) const PASSWORD_RESET: &str = "/login?signed_out=reset";
/// Where a person's own erasure goes.
pub(super) const ACCOUNT_DELETED: &str = "/login?signed_out=deleted";

/// What the sign-in page says after a sign-out (`?signed_out=`): fixed sentences only,
/// so that a link cannot put words of its own on the page.
fn signed_out_note(signed_out: Option<&str>) -> Option<&'static str> {
    match signed_out? {
        "here" => Some("You are signed out in this browser."),
        "deleted" => Some(
            "Your account is deleted: every sign-in of yours has ended, and what we held \
             about you is gone.",
        ),
        "reset" => Some(
            "Your password is changed, and every sign-in of yours has ended. Sign in with \
             the new password.",
        ),
        "everywhere" => Some(
            "You are signed out everywhere: every browser session and API login of yours \
             has ended, and every access token issued before now is refused. Sign in again \
             to go on.",
        ),
        _ => None,
    }
}

fn login_page(error: Option<&str>, username: &str, onward: &Onward) -> Markup {
    login_page_noting(error, username, onward, None, false)
}

/// The sign-in page; with `passkeys`, a button that signs in with one (the page is
/// then sent with [`page_with_script`]).
fn login_page_noting(
    error: Option<&str>,
    username: &str,
    onward: &Onward,
    note: Option<&str>,
    passkeys: bool,
) -> Markup {
    layout(
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some(note) = note { p #signed-out .notice role="status" { (note) } }
            @if let Some(asking) = onward.asking("asks you to sign in.") { (asking) }
            (credentials_form("/session/login", "Sign in", "current-password", username, error, onward.return_to(), None))
            @if passkeys {
                p #passkey-error .error role="alert" hidden {}
                p { button #passkey-sign-in type="button" data-passkey="sign-in" data-then=(onward.return_to().unwrap_or("/account")) { "Sign in with a passkey" } }
                script src="/assets/passkeys.js" defer {}
            }
            @for p in &onward.providers {
                p { a.button data-provider=(p.name) href=(onward.link(&format!("/login/{}", p.name))) { "Continue with " (p.display_name) } }
            }
            p { a #forgot href="/forgot" { "Forgot your password?" } }
            p { "No account yet? " a #create-account href=(onward.link("/signup")) { "Create one" } }
        },
    )
}

fn signup_page(error: Option<&str>, typed: &Typed, onward: &Onward, require_email: bool) -> Markup {
    let email = EmailField {
        value: &typed.email,
        required: require_email,
    };
    let username = typed.username.as_str();
    layout(
        "Create an account",
        html! {
            h1 { "Create an account" }
            @if let Some(asking) = onward.asking("asks you to sign in: create an account, and you go on to it.") { (asking) }
            (credentials_form("/signup", "Create account", "new-password", username, error, onward.return_to(), Some(email)))
            p.hint { "Passwords need at least 8 bytes: 8 plain letters or digits, or fewer letters of other scripts. Any characters work." }
            p { "Already have an account? " a #sign-in href=(onward.link("/login")) { "Sign in" } }
        },
    )
}

/// The login page again, after a failed form login (still on its way back to an
/// authorization request, if it was).
pub(super) async fn login_failed(
    state: &AppState,
    e: ApiError,
    username: &str,
    return_to: Option<&str>,
) -> Response {
    let onward = Onward::read(state, return_to).await;
    failed_with_target(
        e,
        |message| login_page(Some(message), username, &onward),
        onward.form_target(),
    )
}

/// `GET /` → the account page, which sends strangers on to sign in.
#[utoipa::path(get, path = "/", tag = "pages", responses((status = 303, description = "To /account")))]
pub async fn home() -> Redirect {
    Redirect::to("/account")
}

/// `GET /login`: the sign-in page, or on to the account page when already signed in.
#[utoipa::path(get, path = "/login", tag = "pages",
    params(
        ("return_to" = Option<String>, Query, description = "An authorization request (/oauth/authorize?…) to go back to after signing in"),
        ("signed_out" = Option<String>, Query, description = "`here` or `everywhere`: the page says the person was just signed out so"),
    ),
    responses((status = 200, description = "The sign-in page (HTML)", content_type = "text/html")))]
pub async fn login_form(State(state): State<AppState>, parts: Parts) -> Response {
    // On the way to an authorization request, the form is shown even to someone signed
    // in: the request sent them here because their sign-in is not recent enough.
    let query = page_query(&parts);
    let onward = Onward::read(&state, query.return_to.as_deref()).await;
    if onward.return_to.is_none()
        && let Ok(Some(_)) = state.0.sessions.lookup(&parts.headers).await
    {
        return Redirect::to("/account").into_response();
    }
    let note = signed_out_note(query.signed_out.as_deref());
    let passkeys = state.0.webauthn.is_some();
    let markup = login_page_noting(None, "", &onward, note, passkeys);
    if passkeys {
        page_with_script(StatusCode::OK, markup, onward.form_target())
    } else {
        page_with_form_target(StatusCode::OK, markup, onward.form_target())
    }
}

/// The query of a page, if it parses.
fn page_query(parts: &Parts) -> PageQuery {
    axum::extract::Query::<PageQuery>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// `GET /login?return_to=…&signed_out=…`, `GET /signup?return_to=…`.
#[derive(Deserialize, Default)]
struct PageQuery {
    return_to: Option<String>,
    signed_out: Option<String>,
}

/// `GET /signup`: the sign-up page; on the way to an authorization request, it names
/// the application and goes on to it once the account is made.
#[utoipa::path(get, path = "/signup", tag = "pages",
    params(("return_to" = Option<String>, Query, description = "An authorization request (/oauth/authorize?…) to go on to once the account is made")),
    responses((status = 200, description = "The sign-up page (HTML)", content_type = "text/html")))]
pub async fn signup_form(State(state): State<AppState>, parts: Parts) -> Response {
    let onward = Onward::read(&state, page_query(&parts).return_to.as_deref()).await;
    page_with_form_target(
        StatusCode::OK,
        signup_page(
            None,
            &Typed::default(),
            &onward,
            state.0.config.require_email,
        ),
        onward.form_target(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupForm {
    username: String,
    password: String,
    /// An email address (optional unless `require_email`).
    #[serde(default)]
    email: Option<String>,
    /// An authorization request to go on to.
    return_to: Option<String>,
}

/// What a failed sign-up form shows again (never the password).
#[derive(Default)]
struct Typed {
    username: String,
    email: String,
}

/// `POST /signup` (form): creates the account and signs it in (303 to the account
/// page, or on to the authorization request it came from), or shows the form again
/// with the error and the username.
#[utoipa::path(post, path = "/signup", tag = "pages",
    request_body(content = super::auth::Credentials, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "To /account, or on to the authorization request of return_to, signed in"),
        (status = 400, description = "The page again, with the error (HTML)", content_type = "text/html"),
        (status = 403, description = "A cross-site form (HTML)", content_type = "text/html"),
        (status = 409, description = "The page again: the name is taken (HTML)", content_type = "text/html"),
        (status = 429, description = "The page again: too many attempts (HTML)", content_type = "text/html"),
    ))]
pub async fn signup_submit(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers.clone();
    let typed: Result<SignupForm, ApiError> = read_form(parts, body).await;
    let shown = typed.as_ref().map_or_else(
        |_| Typed::default(),
        |f| Typed {
            username: f.username.clone(),
            email: f.email.clone().unwrap_or_default(),
        },
    );
    let onward = Onward::read(
        &state,
        typed.as_ref().ok().and_then(|f| f.return_to.as_deref()),
    )
    .await;
    let require_email = state.0.config.require_email;
    let result = async {
        let form = typed?;
        refuse_cross_site(&state, &headers)?;
        let user = create_account(
            &state,
            crate::accounts::Creator::Signup(client),
            &form.username,
            form.password,
            form.email.as_deref(),
        )
        .await?;
        start_session(
            &state,
            &headers,
            &user.id,
            &user.scope,
            crate::accounts::AMR_PASSWORD,
        )
        .await
    };
    match result.await {
        Ok(started) => {
            redirect_with_cookie(onward.return_to().unwrap_or("/account"), started.set_cookie)
        }
        Err(e) => failed_with_target(
            e,
            |message| signup_page(Some(message), &shown, &onward, require_email),
            onward.form_target(),
        ),
    }
}

/// A count and its noun: "1 API login", "3 API logins".
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// What "Sign out everywhere" ends, in words (never "all 1 of your sessions").
fn ending_everything(sessions: usize, api_logins: usize) -> String {
    let tail = "and every access token issued before now stops working.";
    match (sessions, api_logins) {
        (0 | 1, 0) => format!("This signs you out of this browser, your only session, {tail}"),
        (_, 0) => format!(
            "This ends all {}, this browser's included, {tail}",
            count(sessions, "browser session")
        ),
        _ => format!(
            "This ends all {} and {}, this browser's included, {tail}",
            count(sessions, "browser session"),
            count(api_logins, "API login")
        ),
    }
}

/// Scopes as people read them: what each lets a holder do, where we know, else its
/// name; `none` when there are none.
fn scope_words(scope: &str, none: &str) -> Markup {
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    html! {
        @if scopes.is_empty() { (none) } @else {
            ul.scopes {
                @for s in scopes {
                    li {
                        @match super::oauth::describe_scope(s) {
                            Some(words) => { (words) }
                            None => { code { (s) } }
                        }
                    }
                }
            }
        }
    }
}

/// What the account page says after one of its forms (`?done=`): fixed sentences.
fn done_note(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "password" => Some(
            "Your password is changed. Every other sign-in of yours has ended; this one goes on.",
        ),
        "email" => Some(
            "A link to confirm the new address is on its way to it. The address changes when \
             you open the link.",
        ),
        "resent" => Some("A new confirmation link is on its way to your address."),
        "passkey-added" => {
            Some("Your passkey is added: sign in with it alone, or use it after your password.")
        }
        "passkey-removed" => Some("That passkey is removed."),
        "linked" => Some("Linked: you can sign in with it from now on."),
        "unlinked" => Some("Unlinked: it no longer signs you in."),
        "totp-removed" => {
            Some("Your authenticator app is turned off: your password alone signs you in again.")
        }
        _ => None,
    }
}

/// The account page's section: the providers linked, and the ones to link.
fn providers_section(
    linked: &[(portcullis_store::LinkedIdentity, String)],
    available: &[Provider],
    csrf_token: &str,
) -> Markup {
    html! {
        @if !linked.is_empty() || !available.is_empty() {
            h2 #providers-heading { "Other ways to sign in" }
            @if !linked.is_empty() {
                ul #linked-providers {
                    @for (identity, display) in linked {
                        li data-provider=(identity.provider) {
                            (display) " — " (identity.label) " "
                            form.inline method="post" action={ "/account/providers/" (identity.provider) "/unlink" } {
                                input type="hidden" name="csrf_token" value=(csrf_token);
                                button type="submit" aria-label={ "Unlink " (display) } { "Unlink" }
                            }
                        }
                    }
                }
            }
            @for p in available {
                form method="post" action={ "/account/providers/" (p.name) "/link" } {
                    input type="hidden" name="csrf_token" value=(csrf_token);
                    button type="submit" data-link=(p.name) { "Link " (p.display_name) }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn account_page(
    user: &portcullis_store::User,
    done: Option<&str>,
    scopes: &str,
    sessions: &[SessionRecord],
    api_logins: &[FamilyInfo],
    apps: &[Consent],
    current: &SessionContext,
    factors: &crate::factors::Overview,
    providers: (&[(portcullis_store::LinkedIdentity, String)], &[Provider]),
) -> Markup {
    let token = current.csrf_token();
    let (username, user_id) = (user.username.as_str(), user.id.as_str());
    // A program's short name; the full User-Agent only on hover, where it does not
    // crowd the words people read.
    let device = |label: &str| {
        html! {
            span title=(label) { (crate::user_agent::describe(label)) }
        }
    };
    let revoke = |id: &str, what: &str, started: i64, label: &str, text: &str| {
        html! {
            form method="post" action={ "/account/sessions/" (id) "/revoke" } {
                input type="hidden" name="csrf_token" value=(token);
                button type="submit" aria-label={ "Revoke the " (what) " started " (when(started)) " on " (crate::user_agent::describe(label)) } {
                    (text)
                }
            }
        }
    };
    layout(
        "Your account",
        html! {
            h1 { "Your account" }
            @if let Some(note) = done_note(done) { p #done .notice role="status" { (note) } }
            dl.facts {
                dt { "Signed in as" } dd #who { (username) }
                dt { "User id" } dd { code { (user_id) } }
                dt { "Permissions" } dd #scopes { (scope_words(scopes, "none")) }
                dt { "Email" }
                dd #email {
                    @match &user.email {
                        Some(address) => {
                            (address) " "
                            @if user.email_verified { span #email-state { "(verified)" } }
                            @else { span #email-state { "(not verified yet)" } }
                        }
                        None => { "none" }
                    }
                }
            }
            @if user.email.is_some() && !user.email_verified {
                form method="post" action="/account/email/resend" {
                    input type="hidden" name="csrf_token" value=(token);
                    button #resend type="submit" { "Send the confirmation link again" }
                }
            }
            details #change-password {
                summary { "Change your password…" }
                p { "Every other browser, app and script signed in as you is signed out." }
                form method="post" action="/account/password" {
                    input type="hidden" name="csrf_token" value=(token);
                    label for="current-password" { "Current password" }
                    input #current-password name="current_password" type="password" autocomplete="current-password" required;
                    label for="new-password" { "New password" }
                    input #new-password name="new_password" type="password" autocomplete="new-password" required minlength="8";
                    button type="submit" { "Change password" }
                }
            }
            details #change-email {
                summary { @if user.email.is_some() { "Change your email address…" } @else { "Add an email address…" } }
                p { "We send a link to the new address; it becomes yours when you open it." }
                form method="post" action="/account/email" {
                    input type="hidden" name="csrf_token" value=(token);
                    label for="new-email" { "New email address" }
                    input #new-email name="email" type="email" autocomplete="email" required maxlength="254";
                    label for="email-password" { "Your password" }
                    input #email-password name="password" type="password" autocomplete="current-password" required;
                    button type="submit" { "Send the link" }
                }
            }
            (super::factors::account_section(factors, token))
            (providers_section(providers.0, providers.1, token))
            h2 #sessions-heading { "Your browser sessions" }
            p { "Every browser where you are signed in. Revoke any you do not recognise." }
            table aria-labelledby="sessions-heading" {
                thead { tr { th scope="col" { "Browser" } th scope="col" { "Started" } th scope="col" { "Last active" } th scope="col" { "Action" } } }
                tbody {
                    @for s in sessions {
                        @let this = s.id == current.id();
                        tr data-session=(s.id) {
                            td.device {
                                (device(&s.label))
                                @if this { " " strong { "(this browser)" } }
                            }
                            td.when { (when(s.created_at)) }
                            td.when { (when(s.last_seen_at)) }
                            td { (revoke(&s.id, "session", s.created_at, &s.label, if this { "Sign out here" } else { "Revoke" })) }
                        }
                    }
                }
            }
            h2 #api-logins-heading { "Apps and scripts" }
            @if api_logins.is_empty() {
                p #no-api-logins { "No app or script is signed in as you with your password." }
            } @else {
                p { "Programs that signed in with your password and hold a refresh token. Revoking one ends its access at once." }
                table aria-labelledby="api-logins-heading" {
                    thead { tr { th scope="col" { "Program" } th scope="col" { "Signed in" } th scope="col" { "Last refreshed" } th scope="col" { "Action" } } }
                    tbody {
                        @for f in api_logins {
                            tr data-api-login=(f.id) {
                                td.device { (device(&f.label)) }
                                td.when { (when(f.created_at)) }
                                td.when { (when(f.last_used_at)) }
                                td { (revoke(&f.id, "API login", f.created_at, &f.label, "Revoke")) }
                            }
                        }
                    }
                }
            }
            h2 #apps-heading { "Applications you allowed" }
            @if apps.is_empty() {
                p #no-apps { "You have not allowed any application to use your account." }
            } @else {
                p { "Applications that asked for access to your account and that you allowed. " strong { "Removing one signs it out of your account at once:" } " every token it holds stops working, and it has to ask you again." }
                table aria-labelledby="apps-heading" {
                    thead { tr { th scope="col" { "Application" } th scope="col" { "May" } th scope="col" { "Since" } th scope="col" { "Action" } } }
                    tbody {
                        @for app in apps {
                            tr data-app=(app.client_id) {
                                td { (app.client_name) }
                                td { (scope_words(&app.scope, "nothing")) }
                                td.when { (when(app.created_at)) }
                                td {
                                    form method="post" action={ "/account/apps/" (app.client_id) "/revoke" } {
                                        input type="hidden" name="csrf_token" value=(token);
                                        button.danger type="submit" aria-label={ "Remove the access of " (app.client_name) ": its tokens stop working" } { "Remove access" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div.actions {
                form method="post" action="/session/logout" {
                    input type="hidden" name="csrf_token" value=(token);
                    button #sign-out type="submit" { "Sign out" }
                }
            }
            h2 #data-heading { "Your data" }
            p {
                a #export href="/auth/me/export" download="portcullis-account.json" { "Download everything we hold about you" }
                " (JSON: your account, sign-ins, applications, devices, the mail we sent and the security events of your account)."
            }
            details #delete-account {
                summary { "Delete your account…" }
                p #delete-what { "Your account and everything that goes with it are deleted at once, and every sign-in of yours ends. This cannot be undone. The security log keeps only your account's random id, with nothing that names you." }
                form method="post" action="/account/delete" {
                    input type="hidden" name="csrf_token" value=(token);
                    label for="delete-password" { "Your password" }
                    input #delete-password name="password" type="password" autocomplete="current-password" required;
                    button #delete-account-button .danger type="submit" { "Delete my account" }
                }
            }
            details #everywhere {
                summary { "Sign out everywhere…" }
                p #everywhere-what {
                    (ending_everything(sessions.len(), api_logins.len()))
                    " Use it if you think someone else has signed in as you."
                }
                form method="post" action="/account/logout-all" {
                    input type="hidden" name="csrf_token" value=(token);
                    button #sign-out-everywhere .danger type="submit" { "Yes, sign out everywhere" }
                }
            }
        },
    )
}

/// An account's links to upstream providers (with each provider's name to show; a
/// removed provider's links show its name), and the providers it is not linked to.
async fn provider_links(
    state: &AppState,
    user_id: &str,
) -> Result<
    (
        Vec<(portcullis_store::LinkedIdentity, String)>,
        Vec<Provider>,
    ),
    ApiError,
> {
    let providers = state.0.store.providers().await?;
    let identities = state.0.store.identities_of(user_id).await?;
    let linked = identities
        .into_iter()
        .map(|i| {
            let display = providers
                .iter()
                .find(|p| p.name == i.provider)
                .map_or_else(|| i.provider.clone(), |p| p.display_name.clone());
            (i, display)
        })
        .collect::<Vec<_>>();
    let available = providers
        .into_iter()
        .filter(|p| !linked.iter().any(|(i, _)| i.provider == p.name))
        .collect();
    Ok((linked, available))
}

/// `GET /account`: who you are and your sessions; strangers go to the sign-in page.
#[utoipa::path(get, path = "/account", tag = "pages", security(("session" = []), ()),
    params(("done" = Option<String>, Query, description = "`password`, `email` or `resent`: the page says that form's outcome")),
    responses(
        (status = 200, description = "The account page (HTML)", content_type = "text/html"),
        (status = 303, description = "Strangers go to /login"),
        (status = 400, description = "A malformed Authorization header (HTML)", content_type = "text/html"),
        (status = 401, description = "A bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 403, description = "A machine client's token (HTML)", content_type = "text/html"),
    ))]
pub async fn account(
    State(state): State<AppState>,
    parts: Parts,
    signed_in: Result<Option<CookieSession>, ApiError>,
) -> Response {
    #[derive(Deserialize, Default)]
    struct Done {
        done: Option<String>,
    }
    let done = axum::extract::Query::<Done>::try_from_uri(&parts.uri)
        .map(|q| q.0.done)
        .unwrap_or_default();
    let rendered = async {
        let identity = match signed_in? {
            Some(CookieSession(identity)) => identity,
            None => return Ok(None),
        };
        let Some(current) = identity.session() else {
            return Ok(None);
        };
        let Some(user) = state.0.store.user_by_id(identity.subject()).await? else {
            return Ok(None);
        };
        let sessions = state.0.sessions.list(&user.id).await?;
        let api_logins = super::cookie::api_logins(&state, &user.id).await?;
        let apps = state.0.store.consents_of(&user.id).await?;
        let scopes = current.record().scope.clone();
        let factors = crate::factors::overview(&state, &user).await?;
        let (linked, available) = provider_links(&state, &user.id).await?;
        Ok(Some(account_page(
            &user,
            done.as_deref(),
            &scopes,
            &sessions,
            &api_logins,
            &apps,
            current,
            &factors,
            (&linked, &available),
        )))
    };
    match rendered.await {
        Ok(Some(markup)) => page_with_script(StatusCode::OK, markup, None),
        Ok(None) => Redirect::to("/login").into_response(),
        Err(e) => failed(e, |message| {
            layout(
                "Error",
                html! { h1 { "Something went wrong" } (error_box(Some(message))) },
            )
        }),
    }
}

/// Runs a state-changing account form: the cookie session (the layer ran the Fetch
/// Metadata / Origin checks), then the form's synchronizer token.
async fn account_form(
    signed_in: Option<CookieSession>,
    request: Request,
) -> Result<Option<portcullis::strategy::Identity>, ApiError> {
    if signed_in.is_none() {
        return Ok(None);
    }
    let (parts, body): (Parts, Body) = request.into_parts();
    let TokenForm { csrf_token } = read_form(parts, body).await?;
    super::cookie::form_session(Ok(signed_in), &csrf_token)
}

/// `POST /account/sessions/{id}/revoke` (form): ends one of your sessions or API
/// logins; ending this browser's own session signs it out.
#[utoipa::path(post, path = "/account/sessions/{id}/revoke", tag = "pages", operation_id = "account_revoke_session",
    params(("id" = String, Path, description = "A session's or an API login's id")),
    request_body(content = super::cookie::TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 303, description = "Back to /account (or /login?signed_out=here when it was this browser)"),
        (status = 400, description = "Not a form, or a malformed Authorization header (HTML)", content_type = "text/html"),
        (status = 401, description = "A bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 403, description = "A wrong form token or a cross-site form", content_type = "text/html"),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let identity = match async { account_form(signed_in?, request).await }.await {
        Ok(Some(identity)) => identity,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(e) => return refused(e),
    };
    let this = identity.session().is_some_and(|s| s.id() == id);
    match end_login(&state, &id, identity.subject()).await {
        Ok(_) if this => {
            redirect_with_cookie(SIGNED_OUT_HERE, state.0.sessions.config().clear_cookie())
        }
        // Already gone (another tab revoked it): the account page shows the truth.
        Ok(_) => Redirect::to("/account").into_response(),
        Err(e) => refused(e),
    }
}

/// `POST /account/apps/{id}/revoke` (form): withdraws the consent given to an
/// application and ends every grant it holds for you.
#[utoipa::path(post, path = "/account/apps/{id}/revoke", tag = "pages",
    params(("id" = String, Path, description = "The application's client id")),
    request_body(content = super::cookie::TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 303, description = "Back to /account"),
        (status = 400, description = "Not a form, or a malformed Authorization header (HTML)", content_type = "text/html"),
        (status = 401, description = "A bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 403, description = "A wrong form token or a cross-site form", content_type = "text/html"),
    ))]
pub async fn revoke_app(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let identity = match async { account_form(signed_in?, request).await }.await {
        Ok(Some(identity)) => identity,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(e) => return refused(e),
    };
    let user = identity.subject();
    let now = state.now();
    match state.0.store.revoke_consent(user, &id, now).await {
        Ok(ended) => {
            if let Some(families) = ended {
                // The grants' access tokens carry their family as `sid`: refused here
                // before the answer, everywhere else through the event log.
                for family in &families {
                    crate::events::apply_own(&state, EventKind::FamilyRevoked, family, now);
                }
                tracing::info!(user = %user, client = %id, "application access removed");
                crate::audit::record(
                    &state,
                    crate::audit::Entry::own(crate::audit::Kind::ConsentWithdrawn, user)
                        .with("client", id.as_str())
                        .with("ended", families.len()),
                )
                .await;
            }
            Redirect::to("/account").into_response()
        }
        Err(e) => refused(e.into()),
    }
}

/// `POST /account/logout-all` (form): ends every session and refresh family of yours
/// and refuses every access token issued before now.
#[utoipa::path(post, path = "/account/logout-all", tag = "pages", operation_id = "account_logout_all",
    request_body(content = super::cookie::TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 303, description = "To /login?signed_out=everywhere: everything ended"),
        (status = 400, description = "Not a form, or a malformed Authorization header (HTML)", content_type = "text/html"),
        (status = 401, description = "A bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 403, description = "A wrong form token or a cross-site form", content_type = "text/html"),
    ))]
pub async fn logout_all(
    State(state): State<AppState>,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let identity = match async { account_form(signed_in?, request).await }.await {
        Ok(Some(identity)) => identity,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(e) => return refused(e),
    };
    match end_everything(
        &state,
        identity.subject(),
        crate::audit::Actor::User(identity.subject().to_owned()),
    )
    .await
    {
        Ok(()) => redirect_with_cookie(
            SIGNED_OUT_EVERYWHERE,
            state.0.sessions.config().clear_cookie(),
        ),
        Err(e) => refused(e),
    }
}

/// `GET /assets/portcullis.css`: the pages' only stylesheet.
#[utoipa::path(get, path = "/assets/portcullis.css", tag = "pages", responses((status = 200, description = "The stylesheet", content_type = "text/css")))]
pub async fn stylesheet() -> Response {
    asset(
        include_str!("../../assets/portcullis.css"),
        "text/css; charset=utf-8",
    )
}

/// `GET /assets/passkeys.js`: the one script of the pages, which carries passkey
/// ceremonies between the server and `navigator.credentials` (the account page, the
/// sign-in page and the second step load it; no other page runs script).
#[utoipa::path(get, path = "/assets/passkeys.js", tag = "pages",
    responses((status = 200, description = "The script (JavaScript)", content_type = "text/javascript")))]
pub async fn passkeys_script() -> Response {
    asset(
        include_str!("../../assets/passkeys.js"),
        "text/javascript; charset=utf-8",
    )
}

fn asset(text: &'static str, content_type: &'static str) -> Response {
    let mut r = text.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}
