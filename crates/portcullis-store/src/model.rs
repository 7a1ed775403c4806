//! What the store keeps.

use std::fmt;

/// A stored account.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
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
    /// Its UTS #39 confusable skeleton (`portcullis::username::skeleton`): unique, so a
    /// look-alike of an existing name is [`crate::Error::Conflict`].
    pub skeleton: String,
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

/// The outcome of redeeming a refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was the family's live one, or the one just rotated presented again
    /// within the grace window (`retry`); `next` is now the family's one live token.
    Rotated {
        /// True for a retry within the grace window (the successor issued before died).
        retry: bool,
        /// The family (the `sid` of its access tokens).
        family_id: String,
        /// Its user.
        user_id: String,
        /// The scope the family was granted.
        scope: String,
    },
    /// Another token of the family (rotated, or replaced by a retry): the family is
    /// now revoked.
    ReuseDetected {
        /// The revoked family.
        family_id: String,
    },
    /// Unknown token, revoked or expired family, or disabled user.
    Refused,
}

/// A machine client (OAuth 2.0 client credentials).
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Client {
    /// The public client id, the `sub` and `client_id` of its tokens.
    pub id: String,
    /// A unique name for people (`portcullis clients add NAME`).
    pub name: String,
    /// SHA-256 of its secret.
    pub secret_hash: Vec<u8>,
    /// Space-separated scopes it may get.
    pub scope: String,
    /// A disabled client gets no tokens.
    pub disabled: bool,
    /// Its access tokens issued before this time (seconds) are refused.
    pub not_before: i64,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("secret_hash", &"[redacted]")
            .field("scope", &self.scope)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A live refresh family, as its user sees it in a list of logins.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct FamilyInfo {
    /// The family id (the `sid` of its access tokens).
    pub id: String,
    /// What started it (the login's User-Agent), or empty.
    pub label: String,
    /// When the login happened.
    pub created_at: i64,
    /// When a refresh token of it was last redeemed (or the login, if never).
    pub last_used_at: i64,
}

/// A stored signing key.
#[derive(Clone, sqlx::FromRow)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// JOSE algorithm name.
    pub alg: String,
    /// The private JWK, sealed under the key-encryption key. A secret.
    pub private_jwk: String,
    /// Creation time (it is published from then on).
    pub created_at: i64,
    /// When it starts signing; it stops when the next key starts.
    pub activates_at: i64,
    /// The key an automatic rotation made it to succeed (one successor per key).
    pub predecessor: Option<String>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_jwk", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .field("predecessor", &self.predecessor)
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

/// What [`crate::EventStore::prune`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events.
    pub events: u64,
    /// Ended cookie sessions.
    pub sessions: u64,
    /// Ended refresh families (their tokens go with them).
    pub families: u64,
    /// Spent throttle counters.
    pub throttle: u64,
    /// Devices unused past their lifetime.
    pub devices: u64,
}

/// What [`crate::UserStore::set_scope`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScopeChange {
    /// A scope was taken away: access tokens issued before the change are refused.
    pub removed: bool,
    /// Live refresh families re-scoped (their next refresh mints the new scope).
    pub families: u64,
    /// Live cookie sessions re-scoped.
    pub sessions: u64,
}

/// How long ended records are kept, for [`crate::EventStore::prune`] (seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// How long a revocation can still refuse a live access token: the longest
    /// access-token lifetime plus leeway.
    pub keep: i64,
    /// Refresh lifetimes.
    pub rotation: portcullis::refresh::RotationPolicy,
    /// A known device unused for this long is forgotten.
    pub device_idle: i64,
    /// A throttle counter with no attempt for this long is spent.
    pub throttle_idle: i64,
}
