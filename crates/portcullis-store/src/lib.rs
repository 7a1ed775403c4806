//! SQLite and PostgreSQL stores for the Portcullis server: accounts, refresh-token
//! families, cookie sessions, signing keys and the event log that carries revocations
//! and key changes to every instance.
//!
//! One [`Store`] trait, chosen at run time from the database URL ([`open`]), with one
//! implementation per backend generated from the same SQL text (both accept `$n`
//! placeholders, `RETURNING` and `ON CONFLICT`), and one conformance suite run against
//! both (`tests/it/conformance.rs`).

mod error;
mod model;
mod sql;

use std::sync::Arc;

use portcullis::session::SessionStore;

pub use error::Error;
pub use model::{
    Event, EventKind, NewUser, Pruned, RevokedState, Rotation, RotationPolicy, StoredKey,
    TokenHash, User,
};

/// Everything the server keeps. Object-safe: the backend is chosen at run time. Every
/// store is also the library's [`SessionStore`], so an `Arc<dyn Store>` coerces to the
/// `Arc<dyn SessionStore>` that `portcullis::session::Sessions` takes.
#[async_trait::async_trait]
pub trait Store: SessionStore + Send + Sync + 'static {
    /// Which backend this is, for logs.
    fn backend(&self) -> &'static str;

    /// Creates an account. A taken username is [`Error::Conflict`].
    async fn create_user(&self, user: NewUser) -> Result<User, Error>;
    /// Looks an account up by its normalised username.
    async fn user_by_username(&self, username: &str) -> Result<Option<User>, Error>;
    /// Looks an account up by id.
    async fn user_by_id(&self, id: &str) -> Result<Option<User>, Error>;
    /// Every account, by username.
    async fn list_users(&self) -> Result<Vec<User>, Error>;
    /// Replaces a password hash (rehash on login).
    async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<(), Error>;
    /// Disables or enables an account; false when there is no such user.
    async fn set_disabled(&self, username: &str, disabled: bool) -> Result<bool, Error>;
    /// Replaces an account's scope; false when there is no such user.
    async fn set_scope(&self, username: &str, scope: &str) -> Result<bool, Error>;

    /// Starts a refresh family with its first token.
    async fn create_family(
        &self,
        family_id: &str,
        user_id: &str,
        scope: &str,
        token: &TokenHash,
        now: i64,
    ) -> Result<(), Error>;
    /// Redeems `presented`, storing `next` in its place: atomic, so that of several
    /// concurrent redemptions of one token at most one is a plain rotation.
    async fn rotate(
        &self,
        presented: &TokenHash,
        next: &TokenHash,
        now: i64,
        policy: RotationPolicy,
    ) -> Result<Rotation, Error>;
    /// Revokes the family a token belongs to; `None` when the token is unknown.
    async fn revoke_family_of(&self, token: &TokenHash, now: i64) -> Result<Option<String>, Error>;
    /// Logout everywhere, atomically: revokes every refresh family and every cookie
    /// session of a user and moves the user's "not before" to `now`; the revoked
    /// families' and sessions' ids.
    async fn revoke_user(&self, user_id: &str, now: i64) -> Result<Vec<String>, Error>;
    /// Families and sessions revoked, and users' "not before" times moved, at or after
    /// `since`.
    async fn revoked_since(&self, since: i64) -> Result<RevokedState, Error>;

    /// Deletes what ended more than `keep` seconds before `now` and can no longer
    /// refuse or explain anything: events, cookie sessions that were revoked or passed
    /// their absolute end, refresh families that were revoked or ran out under
    /// `policy` (with their tokens). `keep` must cover the longest access-token
    /// lifetime plus leeway: until then, revocations still matter to live tokens.
    async fn prune(&self, now: i64, keep: i64, policy: RotationPolicy) -> Result<Pruned, Error>;

    /// Every signing key, newest first.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, Error>;
    /// Adds a signing key and retires the others, atomically.
    async fn add_signing_key(&self, key: &StoredKey) -> Result<(), Error>;

    /// Events after `cursor`, oldest first (at most `limit`).
    async fn events_after(&self, cursor: i64, limit: i64) -> Result<Vec<Event>, Error>;
    /// The id of the newest event, or 0.
    async fn last_event_id(&self) -> Result<i64, Error>;
}

/// Opens (creating and migrating) the database a URL names: `sqlite://PATH`,
/// `sqlite::memory:` (tests), or `postgres://…`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, Error> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(sql::PostgresStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sql::SqliteStore::connect(url).await?))
    } else {
        Err(Error::Config(format!(
            "unsupported database URL {url:?}: use sqlite://PATH or postgres://…"
        )))
    }
}

pub use sql::{NOTIFY_CHANNEL, PostgresStore, SqliteStore};
