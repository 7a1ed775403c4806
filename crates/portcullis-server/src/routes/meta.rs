//! JWKS, health, and the answer for unknown routes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// `GET /.well-known/jwks.json`: the public keys, cacheable for five minutes (a key is
/// published well before it signs and long after it stops).
pub async fn jwks(State(state): State<AppState>) -> Response {
    let keys = state.0.keys.current();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        keys.jwks_json.clone(),
    )
        .into_response()
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
