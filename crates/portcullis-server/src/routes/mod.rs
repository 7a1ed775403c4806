//! The HTTP contract of docs/http-api.md.

mod admin;
pub(crate) mod admin_clients;
mod auth;
mod body;
mod client_addr;
mod cookie;
mod factors;
mod feed;
mod forward;
mod html;
mod me;
mod meta;
mod metadata;
mod oauth;
mod openapi;
mod pages;
mod passkeys;
mod recovery;
mod schemas;
mod session;
mod upstream;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Json, Router};
use portcullis::middleware::{AuthLayer, RequireScope};
use portcullis::strategy::Chain;

use crate::error::REALM;

use crate::state::AppState;

pub(crate) use admin::ADMIN_SCOPE;

/// Every route. The routes that need to know who is asking sit behind the library's
/// `AuthLayer` (the server's strategy chain: a bearer token, else the session cookie
/// with its CSRF checks) and read the result with the `Person` and `CookieSession`
/// extractors (`cookie.rs`); the feed takes bearer tokens with its scope only.
pub fn router(state: AppState) -> Router {
    // Refusals are recorded once, with the request id, by the layer that logs every
    // answer (`error::finish`), from the `Refusal` each one carries: not by these.
    let layer = |chain: Chain, required: bool| {
        let layer = if required {
            AuthLayer::required(chain)
        } else {
            AuthLayer::optional(chain)
        };
        layer.with_realm(REALM).record_refusals(false)
    };
    let who = layer(state.0.chain.clone(), false);
    let feed = layer(Chain::new().with(state.0.bearer.clone()), true)
        .require(RequireScope::all([feed::FEED_SCOPE]));
    let userinfo = layer(Chain::new().with(state.0.bearer.clone()), true)
        .require(RequireScope::all(["openid"]));
    // The admin API: bearer tokens with scope `admin` only (a cookie is no credential
    // there: no page posts to it, and no CSRF check is then needed).
    let admin_layer = layer(Chain::new().with(state.0.bearer.clone()), true)
        .require(RequireScope::all([admin::ADMIN_SCOPE]));
    let admin_routes = Router::new()
        .route(
            "/admin/users",
            get(admin::list_users).post(admin::create_user),
        )
        .route(
            "/admin/users/{id}",
            get(admin::get_user)
                .patch(admin::patch_user)
                .delete(admin::delete_user),
        )
        .route("/admin/users/{id}/logout", post(admin::logout_user))
        .route("/admin/users/{id}/sessions", get(admin::user_sessions))
        .route("/admin/users/{id}/mfa", delete(admin::reset_mfa))
        .route(
            "/admin/clients",
            get(admin_clients::list_clients).post(admin_clients::create_client),
        )
        .route(
            "/admin/clients/{id}",
            get(admin_clients::get_client)
                .patch(admin_clients::patch_client)
                .delete(admin_clients::delete_client),
        )
        .route(
            "/admin/clients/{id}/secret",
            post(admin_clients::rotate_secret),
        )
        .route("/admin/audit", get(admin::audit_trail))
        .route("/admin/keys/rotate", post(admin::rotate_key))
        .route_layer(admin_layer);
    // A form a browser posts, on a path whose GET is a page for anyone: the session
    // (with its CSRF checks) for the POST only, and refusals as pages.
    let form = |route: MethodRouter<AppState>| {
        route
            .route_layer(who.clone())
            .route_layer(axum::middleware::from_fn(html::html_refusals))
    };
    // What a single-page app on another origin calls with `fetch`: no cookie is read
    // there (a code and its verifier, a refresh token, a bearer token, a client id), so
    // any origin may read the answers, and none may send credentials the browser holds.
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
        ])
        .max_age(std::time::Duration::from_secs(3600));
    let identified = Router::new()
        .route("/auth/logout-all", post(auth::logout_all))
        .route("/auth/me", get(auth::me).delete(me::delete_me))
        .route("/auth/me/export", get(me::export_me))
        .route("/auth/email/resend", post(recovery::resend))
        .route("/auth/email/change", post(recovery::change_email))
        .route("/auth/password/change", post(recovery::change_password))
        .route("/auth/mfa", get(factors::status))
        .route(
            "/auth/mfa/totp",
            post(factors::totp_begin).delete(factors::totp_remove),
        )
        .route("/auth/mfa/totp/confirm", post(factors::totp_confirm))
        .route("/auth/mfa/recovery-codes", post(factors::recovery_codes))
        .route(
            "/auth/webauthn/register/start",
            post(passkeys::register_start),
        )
        .route(
            "/auth/webauthn/register/finish",
            post(passkeys::register_finish),
        )
        .route("/auth/webauthn/credentials", get(passkeys::list))
        .route("/auth/webauthn/credentials/{id}", delete(passkeys::remove))
        .route("/session/list", get(session::list))
        .route("/session/token", post(session::token))
        .route("/session/{id}", delete(session::delete))
        .route_layer(who.clone());
    // Routes browsers post forms to: the layer's refusals become HTML pages there (and
    // only there: the JSON routes above, `/auth/me` among them, pay nothing for it).
    let pages_identified = Router::new()
        .route("/session/logout", post(session::logout))
        .route("/account", get(pages::account))
        .route("/account/sessions/{id}/revoke", post(pages::revoke))
        .route("/account/logout-all", post(pages::logout_all))
        .route("/account/apps/{id}/revoke", post(pages::revoke_app))
        .route("/account/password", post(recovery::account_password))
        .route("/account/delete", post(me::account_delete))
        .route("/account/providers/{name}/link", post(upstream::link))
        .route("/account/providers/{name}/unlink", post(upstream::unlink))
        .route("/account/email", post(recovery::account_email))
        .route("/account/email/resend", post(recovery::account_resend))
        .route("/account/mfa/totp", post(factors::account_totp))
        .route(
            "/account/passkeys/{id}/remove",
            post(passkeys::account_remove),
        )
        .route(
            "/account/mfa/totp/confirm",
            post(factors::account_totp_confirm),
        )
        .route(
            "/account/mfa/totp/remove",
            post(factors::account_totp_remove),
        )
        .route(
            "/account/mfa/recovery-codes",
            post(factors::account_recovery_codes),
        )
        .route_layer(who.clone())
        .route_layer(axum::middleware::from_fn(html::html_refusals));
    Router::new()
        .route("/auth/signup", post(auth::signup))
        .route("/auth/login", post(auth::login))
        .route("/auth/login/mfa", post(auth::login_second_step))
        .route("/auth/webauthn/login/start", post(passkeys::login_start))
        .route("/auth/webauthn/login/finish", post(passkeys::login_finish))
        .route(
            "/session/webauthn/login/finish",
            post(passkeys::session_login_finish),
        )
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/forward", axum::routing::any(forward::forward))
        .route("/auth/email/verify", post(recovery::verify))
        .route("/auth/password/forgot", post(recovery::forgot))
        .route("/auth/password/reset", post(recovery::reset))
        .route(
            "/auth/revocations",
            get(feed::revocations).route_layer(feed),
        )
        .route("/oauth/token", post(oauth::token).layer(cors.clone()))
        .route(
            "/oauth/authorize",
            get(oauth::authorize).merge(form(post(oauth::authorize_decision))),
        )
        .route(
            "/oauth/userinfo",
            get(oauth::userinfo)
                .post(oauth::userinfo)
                .route_layer(userinfo)
                .layer(cors.clone()),
        )
        .route("/oauth/introspect", post(oauth::introspect))
        .route("/oauth/revoke", post(oauth::revoke).layer(cors.clone()))
        .route(
            "/oauth/logout",
            get(oauth::end_session).merge(form(post(oauth::end_session_confirmed))),
        )
        .route(
            "/.well-known/jwks.json",
            get(meta::jwks).layer(cors.clone()),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::metadata).layer(cors.clone()),
        )
        .route(
            "/.well-known/openid-configuration",
            get(metadata::metadata).layer(cors),
        )
        .route("/session/login", post(session::login))
        .route("/session/login/mfa", post(session::login_second_step))
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form))
        .route("/login/{name}", get(upstream::start))
        .route("/login/{name}/callback", get(upstream::callback))
        .route(
            "/signup",
            get(pages::signup_form).post(pages::signup_submit),
        )
        .route(
            "/forgot",
            get(recovery::forgot_form).post(recovery::forgot_submit),
        )
        .route(
            "/reset-password",
            get(recovery::reset_form).post(recovery::reset_submit),
        )
        .route(
            "/verify-email",
            get(recovery::verify_form).post(recovery::verify_submit),
        )
        .route("/assets/portcullis.css", get(pages::stylesheet))
        .route("/assets/passkeys.js", get(pages::passkeys_script))
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(identified)
        .merge(admin_routes)
        .merge(pages_identified)
        .fallback(meta::not_found)
        .with_state(state)
}

/// Why `uri` cannot be registered as an OAuth redirect URI (for `portcullis clients`).
pub(crate) fn redirect_check(uri: &str) -> Result<(), String> {
    oauth::redirect::check_registrable(uri)
}

/// A token response: JSON that no cache may keep (RFC 6749 §5.1).
pub(crate) fn token_json(body: serde_json::Value) -> Response {
    let mut response = Json(body).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
