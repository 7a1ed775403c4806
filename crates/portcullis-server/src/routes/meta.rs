//! JWKS, health, and the answer for unknown routes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// `GET /.well-known/jwks.json`: the public keys (next, current and retired),
/// cacheable for `JWKS_MAX_AGE`; a key is published `key_publication_delay` (longer)
/// before it signs and until its last token has expired.
pub async fn jwks(State(state): State<AppState>) -> Response {
    let keys = state.0.keys.current();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, jwks_cache_control()),
        ],
        keys.jwks_json.clone(),
    )
        .into_response()
}

fn jwks_cache_control() -> HeaderValue {
    HeaderValue::from_str(&format!(
        "public, max-age={}",
        crate::config::JWKS_MAX_AGE.as_secs()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("public, max-age=300"))
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Unknown routes, in the same error shape as the rest.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not_found", "error_description": "no such route" })),
    )
        .into_response()
}
