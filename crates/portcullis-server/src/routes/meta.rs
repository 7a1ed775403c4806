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

/// `GET /readyz`: whether this instance should get traffic. 200 `{"status": "ready",
/// "checks": {…}}` when the store answers (within 2 s), a signing key is current, and
/// this instance has applied the whole event log (revocations and key changes from
/// every instance); otherwise 503 `{"status": "not_ready", "checks": {…}}` saying which
/// check failed. `/healthz` stays the liveness check: the process is up.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let now = state.now();
    let mut ready = true;
    let mut fail = |what: String| {
        ready = false;
        what
    };
    let last = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.0.store.last_event_id(),
    )
    .await;
    let (store, events) = match last {
        Ok(Ok(last)) => {
            crate::events::catch_up(&state).await;
            let applied = state.0.events.lock().await.id;
            let events = if applied >= last {
                "ok".to_owned()
            } else {
                fail(format!(
                    "{} events not applied yet (waiting at a gap in the log, or reading failed)",
                    last - applied
                ))
            };
            ("ok".to_owned(), events)
        }
        Ok(Err(e)) => (fail(format!("unreachable: {e}")), fail("unknown".into())),
        Err(_) => (fail("no answer within 2 s".into()), fail("unknown".into())),
    };
    // A current key, and a lifecycle that keeps up (a state change more than a few
    // seconds overdue means the task that moves keys on time is not running).
    let keys = state.0.keys.current();
    let current = keys
        .listing
        .iter()
        .any(|k| k.state == crate::keyring::KeyState::Current);
    let signing = match keys.next_change {
        _ if !current => fail("no current signing key".into()),
        Some(at) if at + 5 < now => fail(format!("the key lifecycle is {} s behind", now - at)),
        _ => "ok".to_owned(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "not_ready" },
            "checks": { "store": store, "signing_key": signing, "event_log": events },
        })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Unknown routes, in the same error shape as the rest.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not_found", "error_description": "no such route" })),
    )
        .into_response()
}
