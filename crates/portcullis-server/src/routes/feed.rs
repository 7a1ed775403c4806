//! `GET /auth/revocations?since=CURSOR`: revoked sessions and "not before" times for
//! resource servers that verify our tokens themselves (they apply it to a
//! `portcullis::revocation::RevocationList`). Needs a bearer token with scope
//! `revocations:read`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use portcullis::rejection::Rejection;
use portcullis::revocation::{NotBefore, RevocationFeed};
use portcullis_store::EventKind;
use serde::Deserialize;

use super::auth::authenticate;
use crate::error::ApiError;
use crate::state::AppState;

/// The scope a service needs to read the feed.
pub const FEED_SCOPE: &str = "revocations:read";
/// Events per page.
const PAGE: i64 = 1000;

/// `?since=CURSOR` (default 0: from the start).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Since {
    #[serde(default)]
    since: i64,
}

/// One page of the feed.
pub async fn revocations(
    State(state): State<AppState>,
    query: Result<Query<Since>, axum::extract::rejection::QueryRejection>,
    parts: Parts,
) -> Result<Json<RevocationFeed>, ApiError> {
    let claims = authenticate(&state, &parts)?;
    if !claims.scopes().any(|s| s == FEED_SCOPE) {
        return Err(ApiError::Auth(Rejection::InsufficientScope(
            FEED_SCOPE.into(),
        )));
    }
    let Query(Since { since }) =
        query.map_err(|e| ApiError::InvalidRequest(format!("since: {e}")))?;
    let events = state.0.store.events_after(since.max(0), PAGE).await?;
    let mut feed = RevocationFeed {
        cursor: events.last().map_or(since.max(0), |e| e.id),
        more: events.len() as i64 == PAGE,
        ..RevocationFeed::default()
    };
    for event in events {
        match event.kind {
            EventKind::FamilyRevoked | EventKind::SessionRevoked => {
                feed.revoked_sessions.push(event.subject);
            }
            EventKind::UserNotBefore => feed.not_before.push(NotBefore {
                sub: event.subject,
                at: event.at,
            }),
            EventKind::KeysChanged => {}
        }
    }
    Ok(Json(feed))
}
