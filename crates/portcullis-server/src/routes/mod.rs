//! The HTTP contract of docs/http-api.md.

mod auth;
mod body;
mod feed;
mod meta;
mod metadata;

use axum::Router;
use axum::routing::{get, post};

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
        .route("/.well-known/jwks.json", get(meta::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::metadata),
        )
        .route("/.well-known/openid-configuration", get(metadata::metadata))
        .route("/healthz", get(meta::healthz))
        .fallback(meta::not_found)
        .with_state(state)
}
