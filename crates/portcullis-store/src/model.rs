//! What the store keeps.

use std::fmt;

/// A stored account.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Opaque id, the `sub` of its tokens.
    pub id: String,
    /// Normalised username.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Space-separated scopes.
    pub scope: String,
    /// A disabled account cannot log in or refresh.
    pub disabled: bool,
    /// Access tokens issued before this time (seconds) are refused.
    pub not_before: i64,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"[redacted]")
            .field("scope", &self.scope)
            .field("disabled", &self.disabled)
            .field("not_before", &self.not_before)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A new account.
#[derive(Clone)]
pub struct NewUser {
    /// Opaque id.
    pub id: String,
    /// Normalised username.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Creation time.
    pub created_at: i64,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 of a refresh token: all the store ever sees of it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash([redacted])")
    }
}

/// Lifetimes that govern a rotation, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    /// A just-rotated token may be redeemed again within this window, each time issuing
    /// a new pair in the same family (0 turns it off).
    pub grace: i64,
    /// A family unused for this long is over.
    pub idle: i64,
    /// A family older than this is over.
    pub absolute: i64,
}

/// The outcome of redeeming a refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was valid; `next` now stands in its place.
    Rotated {
        /// The family (the `sid` of its access tokens).
        family_id: String,
        /// Its user.
        user_id: String,
        /// The scope the family was granted.
        scope: String,
    },
    /// An already-rotated token outside the grace window: the family is now revoked.
    ReuseDetected {
        /// The revoked family.
        family_id: String,
    },
    /// Unknown token, revoked or expired family, or disabled user.
    Refused,
}

/// A stored signing key.
#[derive(Clone)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// JOSE algorithm name.
    pub alg: String,
    /// The private JWK. A secret.
    pub private_jwk: String,
    /// Creation time.
    pub created_at: i64,
    /// When it stopped signing, if it has.
    pub retired_at: Option<i64>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_jwk", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// What an event says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A refresh family was revoked; `subject` is its id (a `sid`).
    FamilyRevoked,
    /// A cookie session was revoked; `subject` is its id (the `sid` of access tokens
    /// minted from it).
    SessionRevoked,
    /// A user's "not before" moved; `subject` is the user id.
    UserNotBefore,
    /// The signing keys changed; `subject` is the new kid.
    KeysChanged,
}

impl EventKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventKind::FamilyRevoked => "family_revoked",
            EventKind::SessionRevoked => "session_revoked",
            EventKind::UserNotBefore => "user_not_before",
            EventKind::KeysChanged => "keys_changed",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<EventKind> {
        match s {
            "family_revoked" => Some(EventKind::FamilyRevoked),
            "session_revoked" => Some(EventKind::SessionRevoked),
            "user_not_before" => Some(EventKind::UserNotBefore),
            "keys_changed" => Some(EventKind::KeysChanged),
            _ => None,
        }
    }
}

/// One entry of the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Increasing id: the cursor.
    pub id: i64,
    /// What happened.
    pub kind: EventKind,
    /// To what.
    pub subject: String,
    /// When (seconds).
    pub at: i64,
}

/// Revocations that may still matter for live access tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevokedState {
    /// Revoked family and session ids (`sid`s).
    pub families: Vec<String>,
    /// (user id, not before) pairs.
    pub not_before: Vec<(String, i64)>,
}

/// What [`crate::Store::prune`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events.
    pub events: u64,
    /// Ended cookie sessions.
    pub sessions: u64,
    /// Ended refresh families (their tokens go with them).
    pub families: u64,
}
