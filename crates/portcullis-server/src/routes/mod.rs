//! The HTTP contract of docs/http-api.md.

mod auth;
mod body;
mod client_addr;
mod cookie;
mod feed;
mod meta;
mod metadata;
mod oauth;
mod pages;
mod session;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::state::AppState;

/// Every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/auth/signup", post(auth::signup))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/logout-all", post(auth::logout_all))
        .route("/auth/me", get(auth::me))
        .route("/auth/revocations", get(feed::revocations))
        .route("/oauth/token", post(oauth::token))
        .route("/.well-known/jwks.json", get(meta::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::metadata),
        )
        .route("/.well-known/openid-configuration", get(metadata::metadata))
        .route("/session/login", post(session::login))
        .route("/session/logout", post(session::logout))
        .route("/session/list", get(session::list))
        .route("/session/token", post(session::token))
        .route("/session/{id}", delete(session::delete))
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form))
        .route(
            "/signup",
            get(pages::signup_form).post(pages::signup_submit),
        )
        .route("/account", get(pages::account))
        .route("/account/sessions/{id}/revoke", post(pages::revoke))
        .route("/account/logout-all", post(pages::logout_all))
        .route("/assets/portcullis.css", get(pages::stylesheet))
        .route("/healthz", get(meta::healthz))
        .fallback(meta::not_found)
        .with_state(state)
}
