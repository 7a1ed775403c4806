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
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "resource servers",
    responses((status = 200, description = "The public keys (JWK Set)", body = super::schemas::Jwks)))]
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
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = super::schemas::Status)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: whether this instance should get traffic. 200 `{"status": "ready",
/// "checks": {…}}` when the store answers (within 2 s) and a signing key is current and
/// on time; otherwise 503 `{"status": "not_ready", "checks": {…}}` naming the check that
/// failed. `event_log` reports how many events this instance has still to apply, for
/// information only: a gap in the log (PostgreSQL commits ids out of order) makes every
/// instance wait at once, and failing them all together would leave no backend.
/// `/healthz` stays the liveness check.
///
/// The route is public, so it is cheap: the answer is reused for a second (one store
/// query per second however often it is asked), it takes no lock the event follower
/// holds, and its texts are fixed (no error detail from the store).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = super::schemas::Readiness),
        (status = 503, description = "Not ready, naming the failed check", body = super::schemas::Readiness),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let cached = state
        .0
        .readiness
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        .filter(|(at, _, _)| at.elapsed() < std::time::Duration::from_secs(1));
    let (ready, body) = match cached {
        Some((_, ready, body)) => (ready, body),
        None => {
            let (ready, body) = check_readiness(&state).await;
            *state
                .0
                .readiness
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((std::time::Instant::now(), ready, body.clone()));
            (ready, body)
        }
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn check_readiness(state: &AppState) -> (bool, serde_json::Value) {
    let now = state.now();
    let last = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.0.store.last_event_id(),
    )
    .await;
    let (store, events) = match last {
        Ok(Ok(last)) => {
            // Read without waiting: the follower may hold the cursor for a while.
            let applied = state.0.events.try_lock().map(|c| c.id).ok();
            let events = match applied {
                Some(applied) if applied >= last => "ok".to_owned(),
                Some(applied) => format!("{} events not applied yet", last - applied),
                None => "being read".to_owned(),
            };
            ("ok", events)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store does not answer");
            ("unreachable", "unknown".to_owned())
        }
        Err(_) => ("no answer within 2 s", "unknown".to_owned()),
    };
    // A current key, and a lifecycle that keeps up (a state change more than a few
    // seconds overdue means the task that moves keys on time is not running).
    let keys = state.0.keys.current();
    let current = keys
        .listing
        .iter()
        .any(|k| k.state == crate::keyring::KeyState::Current);
    let signing = match keys.next_change {
        _ if !current => "no current signing key".to_owned(),
        Some(at) if at + 5 < now => format!("the key lifecycle is {} s behind", now - at),
        _ => "ok".to_owned(),
    };
    let ready = store == "ok" && signing == "ok";
    (
        ready,
        json!({
            "status": if ready { "ready" } else { "not_ready" },
            "checks": { "store": store, "signing_key": signing, "event_log": events },
        }),
    )
}

/// Unknown routes, in the same error shape as the rest.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not_found", "error_description": "no such route" })),
    )
        .into_response()
}
