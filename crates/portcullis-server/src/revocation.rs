//! The server's own revocation state: the library's [`RevocationList`], filled at
//! start from the database and kept current from the event log, so no request waits on
//! the database.

use portcullis::revocation::RevocationList;
use portcullis_store::{Event, EventKind, RevokedState};

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
        EventKind::UserNotBefore => list.set_not_before(&event.subject, event.at),
        EventKind::KeysChanged => return true,
    }
    false
}
