//! `GET /auth/revocations?since=CURSOR`: revoked sessions and "not before" times for
//! resource servers that verify our tokens themselves (they apply it to a
//! `portcullis::revocation::RevocationList`), and the ids of signing keys added since
//! the cursor, so that a follower fetches a new key at once instead of behind its
//! unknown-kid cooldown (`portcullis::feed`). Needs a bearer token with scope
//! `revocations:read`: the route's `AuthLayer` (bearer only, with that scope rule)
//! checks it before the handler runs.

use axum::Json;
use axum::extract::{Query, State};
use portcullis::revocation::{NotBefore, RevocationFeed};
use portcullis_store::EventKind;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

/// The scope a service needs to read the feed.
pub const FEED_SCOPE: &str = "revocations:read";
/// Events per page.
const PAGE: i64 = 1000;

/// `?since=CURSOR` (default 0: from the start).
#[derive(Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Since {
    /// The cursor: the `next` of the previous page (0, or none, for the start).
    since: Option<i64>,
}

/// A page as sent: the library's feed and the key announcements (a field the
/// library's `RevocationFeed` does not carry, so that older followers read it too).
#[derive(Serialize)]
pub struct Page {
    #[serde(flatten)]
    feed: RevocationFeed,
    keys: Vec<String>,
}

/// One page of the feed.
#[utoipa::path(get, path = "/auth/revocations", tag = "resource servers", params(Since),
    security(("bearer" = ["revocations:read"])),
    responses(
        (status = 200, description = "One page of the revocation feed", body = super::schemas::Feed),
        (status = 400, description = "invalid_request", body = super::schemas::ErrorBody),
        (status = 401, description = "unauthorized or invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope", body = super::schemas::ErrorBody),
    ))]
pub async fn revocations(
    State(state): State<AppState>,
    query: Result<Query<Since>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(Since { since }) =
        query.map_err(|e| ApiError::InvalidRequest(format!("since: {e}")))?;
    let since = since.unwrap_or(0).max(0);
    // Event ids are handed out before their transactions commit, and PostgreSQL may
    // commit them out of order: a reader that jumped past a gap would never see the
    // event that fills it. This instance's own cursor waits at gaps (`events.rs`), so the
    // page ends there: events beyond it are not handed out until everything before them
    // is known (applying one twice would be harmless; missing one is not). The feed is
    // the log's reader for other processes, so it reads the log up to now first (the
    // one route that does; the others apply what they wrote: `events::apply_own`).
    crate::events::catch_up(&state).await;
    let settled = state.0.events.lock().await.id;
    let mut events = state.0.store.events_after(since, PAGE).await?;
    let full = events.len() as i64 == PAGE;
    events.retain(|e| e.id <= settled);
    let capped = full && (events.len() as i64) < PAGE;
    let mut feed = RevocationFeed {
        cursor: events.last().map_or(since, |e| e.id),
        more: full && !capped,
        ..RevocationFeed::default()
    };
    let mut keys = Vec::new();
    for event in events {
        match event.kind {
            EventKind::FamilyRevoked | EventKind::SessionRevoked => {
                feed.revoked_sessions.push(event.subject);
            }
            EventKind::UserNotBefore => feed.not_before.push(NotBefore {
                sub: event.subject,
                at: event.at,
            }),
            EventKind::KeysChanged => keys.push(event.subject),
            // A record for operators; its sessions' and families' own events follow.
            EventKind::FactorsReset => {}
        }
    }
    Ok(Json(Page { feed, keys }))
}
