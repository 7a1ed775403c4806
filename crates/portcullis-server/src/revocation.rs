//! The server's own revocation state: the library's [`RevocationList`], filled at
//! start from the database and kept current from the event log, so no request waits on
//! the database.

use portcullis::revocation::RevocationList;
use portcullis_store::{Event, EventKind, RevokedState};

/// Where this instance is in the event log (`events.rs` moves it).
#[derive(Debug)]
pub struct Cursor(tokio::sync::Mutex<CursorState>);

/// The last event applied in order, and since when (on this instance's own clock) the
/// reader has been waiting at a gap after it.
#[derive(Debug)]
pub struct CursorState {
    /// Every event up to this id has been applied.
    pub id: i64,
    /// When the reader first found the next id missing.
    pub waiting_since: Option<std::time::Instant>,
}

impl Cursor {
    /// Starting after event `id`.
    pub fn new(id: i64) -> Cursor {
        Cursor(tokio::sync::Mutex::new(CursorState {
            id,
            waiting_since: None,
        }))
    }

    /// Holds the cursor: one reader of the log at a time.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, CursorState> {
        self.0.lock().await
    }

    /// The cursor if nobody holds it now (for a look that must not wait).
    pub fn try_lock(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, CursorState>, tokio::sync::TryLockError> {
        self.0.try_lock()
    }
}

/// Builds the list from what the database says is still relevant.
pub fn from_state(state: RevokedState) -> RevocationList {
    let list = RevocationList::new();
    for family in &state.families {
        list.revoke_session(family);
    }
    for (user, at) in &state.not_before {
        list.set_not_before(user, *at);
    }
    list
}

/// Applies one event from the log; true when it was a key change.
pub fn apply(list: &RevocationList, event: &Event) -> bool {
    match event.kind {
        EventKind::FamilyRevoked | EventKind::SessionRevoked => {
            list.revoke_session(&event.subject);
        }
        EventKind::UserNotBefore => {
            list.set_not_before(&event.subject, event.at);
        }
        EventKind::KeysChanged => return true,
        EventKind::FactorsReset => {}
    }
    false
}
