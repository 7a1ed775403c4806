//! The event log, and the one owner of what this instance keeps in memory from it.
//!
//! Every revocation (logout, logout everywhere, reuse detection, a removed scope, an
//! ended session) and every key change is written to the store with an event, in the
//! same transaction. The in-memory revocation list and the loaded keys change only
//! here: events from the log are applied in order by [`catch_up`] (the follower, woken
//! by PostgreSQL notifications or polling, and the revocation feed before it answers),
//! and a route applies what it has just written itself with [`apply_own`], so its own
//! revocations hold before it answers without a read of the log (read-your-writes).
//! The follower applies that event again when it reads it: applying is idempotent.
//!
//! Event ids come from a sequence. On PostgreSQL, two transactions can commit out of id
//! order, so a reader may see id 11 before id 10 exists. The cursor therefore stops
//! before a gap (events after it are applied anyway — applying is idempotent — and
//! read again next time) until the gap fills, or until this instance has waited
//! [`GAP_WAIT`] at it, by its own monotonic clock, when the gap is taken for a
//! rolled-back transaction. (Not by the events' own times: another instance's clock
//! may run ahead.)

use std::sync::Arc;
use std::time::Duration;

use portcullis_store::{Event, EventKind};
use tokio::sync::{Notify, watch};

use crate::keyring::{KeyState, Keys};
use crate::state::AppState;

/// How long a gap in event ids is waited for before it is taken as a rolled-back
/// transaction (every transaction that writes an event is short).
pub const GAP_WAIT: Duration = Duration::from_secs(10);

/// Where the cursor may move after reading `events` (in id order) from `cursor`: past
/// every event up to the first gap in ids, and past that gap too when `pass_gap` (the
/// reader has waited at it long enough). Also whether it stopped at a gap.
pub fn advance(cursor: i64, events: &[Event], mut pass_gap: bool) -> (i64, bool) {
    let mut to = cursor;
    for event in events {
        if event.id != to + 1 {
            if !pass_gap {
                return (to, true);
            }
            pass_gap = false;
        }
        to = event.id;
    }
    (to, false)
}

/// Applies every event after the cursor, then moves it. Returns once this instance's
/// memory reflects everything the store had committed when it was called.
pub async fn catch_up(state: &AppState) {
    let mut cursor = state.0.events.lock().await;
    loop {
        let events = match state.0.store.events_after(cursor.id, 1000).await {
            Ok(events) => events,
            // The database is away: keep serving from memory; the follower retries.
            Err(e) => {
                tracing::warn!(error = %e, "reading the event log failed");
                return;
            }
        };
        let mut keys_changed = false;
        for event in &events {
            keys_changed |= crate::revocation::apply(&state.0.revocations, event);
            state.0.session_cache.apply(event);
        }
        if keys_changed {
            reload_keys(state).await;
        }
        let waited = cursor
            .waiting_since
            .is_some_and(|t| t.elapsed() >= GAP_WAIT);
        let (moved, at_gap) = advance(cursor.id, &events, waited);
        if moved != cursor.id {
            cursor.waiting_since = None;
        }
        if at_gap && cursor.waiting_since.is_none() {
            cursor.waiting_since = Some(std::time::Instant::now());
        }
        // Each event is counted once, when the cursor passes it (events past a gap are
        // applied again at every read until the gap fills; applying twice is harmless,
        // counting twice would not be).
        for event in events.iter().filter(|e| e.id > cursor.id && e.id <= moved) {
            let kind = match event.kind {
                EventKind::FamilyRevoked | EventKind::SessionRevoked => "session",
                EventKind::UserNotBefore => "not_before",
                EventKind::KeysChanged | EventKind::FactorsReset => continue,
            };
            metrics::counter!("portcullis_revocations_applied_total", "kind" => kind).increment(1);
        }
        let stuck = moved == cursor.id;
        cursor.id = moved;
        if events.len() < 1000 || stuck {
            return;
        }
    }
}

/// A revocation this instance has just committed, applied to its memory at once, so
/// that the route's answer already holds here (read-your-writes) without reading the
/// log or waiting for its reader: the follower reads the same event later and applies
/// it again, which changes nothing. Other instances learn it from the log.
pub fn apply_own(state: &AppState, kind: EventKind, subject: &str, at: i64) {
    let event = Event {
        id: 0,
        kind,
        subject: subject.to_owned(),
        at,
    };
    // Routes revoke; only key rotations (which reload keys from the store) change keys.
    let _keys_changed = crate::revocation::apply(&state.0.revocations, &event);
    state.0.session_cache.apply(&event);
}

/// Follows the log until `stop`: woken at once by PostgreSQL notifications, and every
/// `event_poll_interval` regardless.
pub async fn follow(state: AppState, mut stop: watch::Receiver<bool>) {
    let wake = Arc::new(Notify::new());
    if state.0.store.backend() == "postgres" {
        tokio::spawn(listen(
            state.0.config.database_url.clone(),
            wake.clone(),
            stop.clone(),
        ));
    }
    let poll = state.0.config.event_poll_interval;
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
        catch_up(&state).await;
    }
}

/// One line per key that is not gone: which signs, which is next and from when.
pub fn log_keys(keys: &Keys, what: &str) {
    for key in keys.listing.iter().filter(|k| k.state != KeyState::Gone) {
        tracing::info!(kid = %key.kid, alg = key.alg.as_str(), state = key.state.as_str(), signs_from = key.activates_at, "{what}");
    }
}

/// Rebuilds the keys from the store (a key was added, or a state changed) and hands the
/// verifier the new set.
pub async fn reload_keys(state: &AppState) {
    let keep_for = state.0.config.revocation_window();
    match state
        .0
        .keys
        .reload(state.0.store.as_ref(), keep_for, state.now())
        .await
    {
        Ok(()) => {
            state
                .0
                .verifier
                .set_keys(state.0.keys.current().verifying.clone());
            log_keys(&state.0.keys.current(), "signing keys reloaded");
        }
        Err(e) => tracing::error!(error = format!("{e:#}"), "reloading signing keys failed"),
    }
}

/// LISTENs for event notifications, reconnecting after the database restarts.
async fn listen(url: String, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => {
                if listener
                    .listen(portcullis_store::NOTIFY_CHANNEL)
                    .await
                    .is_ok()
                {
                    // Catch up on anything missed while disconnected.
                    wake.notify_one();
                    loop {
                        tokio::select! {
                            n = listener.try_recv() => match n {
                                Ok(Some(_)) => wake.notify_one(),
                                // Connection lost: reconnect below.
                                Ok(None) | Err(_) => break,
                            },
                            _ = stop.changed() => return,
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "event listener cannot connect; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_store::EventKind;

    fn event(id: i64, at: i64) -> Event {
        Event {
            id,
            kind: EventKind::FamilyRevoked,
            subject: format!("sid-{id}"),
            at,
        }
    }

    #[test]
    fn the_cursor_stops_before_a_gap_until_it_has_waited_there() {
        // The events' own times do not matter (another instance's clock may run ahead).
        let far_past = 0;
        // Contiguous: all the way.
        assert_eq!(
            advance(10, &[event(11, 1), event(12, 1)], false),
            (12, false)
        );
        // Id 12 not committed yet (13 is visible): stop after 11, read 13 again later.
        assert_eq!(
            advance(10, &[event(11, 1), event(13, far_past)], false),
            (11, true)
        );
        assert_eq!(advance(10, &[event(13, far_past)], false), (10, true));
        // Waited long enough at it: a rolled-back transaction; pass that one gap only.
        assert_eq!(advance(10, &[event(13, 1)], true), (13, false));
        assert_eq!(advance(10, &[event(12, 1), event(14, 1)], true), (12, true));
        assert_eq!(advance(10, &[], true), (10, false));
    }
}
