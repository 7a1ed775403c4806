//! SQLite and PostgreSQL stores for the Portcullis server: accounts, refresh-token
//! families, cookie sessions, signing keys and the event log that carries revocations
//! and key changes to every instance.
//!
//! One [`Store`] trait, chosen at run time from the database URL ([`open`]), made of
//! narrow traits, each implemented once for both backends by [`SqlStore`], generic
//! over sqlx's `Database` (both accept `$n` placeholders, `RETURNING` and
//! `ON CONFLICT`), and one conformance suite run against both (`tests/it/main.rs`).
//!
//! The store is an adapter: it reads and writes under the right locks. Every decision
//! about what a read means (may this refresh token rotate, may this code start a
//! grant, is this attempt admitted) is a pure function of the library
//! (`portcullis::refresh`, `portcullis::grant`, `portcullis::throttle`), tested
//! without a database.

mod audit;
mod error;
mod model;
mod providers;
mod sql;

use std::sync::Arc;

use portcullis::session::SessionStore;

pub use audit::{
    AuditFilter, AuditRecord, AuditStore, NewAudit, NewWebhook, QueuedDelivery, WebhookEvent,
    WebhookInfo,
};
pub use error::Error;
pub use model::{
    AccountRecords, AuthCode, Ceremony, CeremonyKind, Challenge, Client, ClientChange,
    ClientChanged, CodeExchange, Completion, Consent, Deleted, Email, EmailTokenKind, Event,
    EventKind, Exchanged, FamilyInfo, FamilyLogin, FamilyStart, ImportOutcome, ImportedUser,
    MailLink, MailQueue, MailRecord, NewCeremony, NewChallenge, NewEmailToken, NewMail, NewPasskey,
    NewUser, Pruned, Purpose, QueuedMail, Redeemed, RefreshInfo, Retention, RevokedState, Rotation,
    ScopeChange, SecondFactor, Started, StoredKey, StoredPasskey, TokenHash, TotpSecret, User,
    not_before_after,
};
pub use portcullis::grant::{IDENTITY_SCOPES, effective_scope};
pub use portcullis::refresh::RotationPolicy;
pub use portcullis::throttle::{Admission, Attempt, Settlement};
pub use providers::{Linked, LinkedIdentity, Provider, ProviderStore, Unlinked};

/// Everything the server keeps. Object-safe: the backend is chosen at run time. It is
/// the narrow traits together ([`UserStore`], [`FamilyStore`], [`AdmissionStore`],
/// [`ClientStore`], [`GrantStore`], [`KeyStore`], [`EventStore`]) and the library's [`SessionStore`], so an
/// `Arc<dyn Store>` coerces to any of them (`Arc<dyn SessionStore>` is what
/// `portcullis::session::Sessions` takes).
pub trait Store:
    UserStore
    + FamilyStore
    + AdmissionStore
    + ClientStore
    + GrantStore
    + KeyStore
    + EventStore
    + SessionStore
    + MailStore
    + RecoveryStore
    + FactorStore
    + AuditStore
    + ProviderStore
    + LoginStore
{
    /// Which backend this is, for logs.
    fn backend(&self) -> &'static str;
}

/// The writes that finish a sign-in, together: one transaction instead of one per
/// narrow trait. Part of [`Store`].
#[async_trait::async_trait]
pub trait LoginStore: Send + Sync + 'static {
    /// Finishes a password sign-in (with or without a second factor) with a refresh
    /// family, in one transaction: locks the account's row ([`FamilyStore::create_family`]'s
    /// lock order), starts the family unless the account is gone or disabled or its
    /// password hash or "not before" moved since `login` read them (then nothing is
    /// started: the sign-in was overtaken by a reset, a change or a logout everywhere,
    /// which either committed before and is read here, or waits for this and then
    /// ends the family like any other), remembers the new device and appends the
    /// audit record with the family, and settles the throttle's counters as a success
    /// in every case.
    async fn finish_family_login(&self, login: &FamilyLogin<'_>) -> Result<FamilyStart, Error>;
}

/// Accounts. Part of [`Store`]; callers take the narrowest trait they need.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Creates an account. A taken username, or one whose skeleton an account already
    /// has, is [`Error::Conflict`].
    async fn create_user(&self, user: NewUser) -> Result<User, Error>;

    /// Looks an account up by its normalised username.
    async fn user_by_username(&self, username: &str) -> Result<Option<User>, Error>;

    /// Looks an account up by id.
    async fn user_by_id(&self, id: &str) -> Result<Option<User>, Error>;

    /// The account that has verified the address with this key (`Email::key`), if
    /// one has: unverified addresses never match.
    async fn user_by_verified_email(&self, key: &str) -> Result<Option<User>, Error>;

    /// Every account, by username.
    async fn list_users(&self) -> Result<Vec<User>, Error>;

    /// Up to `limit` accounts by username, after the username `after` when given,
    /// whose username or address contains `query` (case-insensitive) when given.
    async fn users_page(
        &self,
        query: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<User>, Error>;

    /// Imports accounts in one transaction (all or none of the batch), each in turn:
    /// created; or, when its username is taken, [`ImportOutcome::Skipped`] (with
    /// `update`, its password hash, scope, address and disabled flag replaced:
    /// [`ImportOutcome::Updated`]); or [`ImportOutcome::Refused`] when its name looks
    /// like another account's (UTS #39 skeleton) or its verified address is another
    /// account's. With `dry_run` nothing is kept: the outcomes say what would happen.
    async fn import_users(
        &self,
        users: &[ImportedUser],
        update: bool,
        dry_run: bool,
    ) -> Result<Vec<ImportOutcome>, Error>;

    /// Replaces a password hash (a rehash after a login) if it is still `expected`, the
    /// one the login checked; false when it changed since (a reset or a change won, and
    /// must not be undone by the old password's rehash).
    async fn set_password_hash(
        &self,
        user_id: &str,
        expected: &str,
        hash: &str,
    ) -> Result<bool, Error>;

    /// Erases an account in one transaction: its refresh families and sessions end
    /// (with their events) and its "not before" moves (so every instance refuses its
    /// tokens), then its row goes, and with it everything that references it
    /// (devices, factors, mail tokens, consents, codes). Refused
    /// ([`Deleted::LastWith`]) when it is the last enabled account whose scope has
    /// `keep_one_with`; every holder is locked first, so two erasures at once cannot
    /// remove the last two.
    async fn delete_user(
        &self,
        user_id: &str,
        keep_one_with: &str,
        now: i64,
    ) -> Result<Deleted, Error>;

    /// What the store keeps about an account beside its row (devices, mail links,
    /// mail), for the person's own export; empty lists for an unknown id.
    async fn account_records(&self, user_id: &str) -> Result<AccountRecords, Error>;

    /// Disables or enables an account; false when there is no such user.
    async fn set_disabled(&self, username: &str, disabled: bool) -> Result<bool, Error>;

    /// Sets an account's email address (or removes it), verified or not; false when
    /// there is no such user. A verified address that another account has verified is
    /// [`Error::Conflict`], and nothing changes.
    async fn set_email(
        &self,
        username: &str,
        email: Option<&Email>,
        verified: bool,
    ) -> Result<bool, Error>;

    /// Replaces an account's scope, atomically with the scope of every live refresh
    /// family and cookie session of the account (their next refresh or token mints the
    /// new scope). When a scope is taken away, the user's "not before" moves to `now`
    /// and an event tells every instance, so access tokens issued before are refused.
    /// `None` when there is no such user.
    async fn set_scope(
        &self,
        username: &str,
        scope: &str,
        now: i64,
    ) -> Result<Option<ScopeChange>, Error>;
}

/// Throttle counters and known devices: what admits a password check. Part of [`Store`]; callers take the narrowest trait they need.
#[async_trait::async_trait]
pub trait AdmissionStore: Send + Sync + 'static {
    /// Takes one slot in every counter of `attempts` or none (the library's
    /// `throttle::admit`, applied under one lock on those counters, so that concurrent
    /// attempts on any instance serialize).
    async fn admit(&self, attempts: &[Attempt], now: i64) -> Result<Admission, Error>;

    /// Ends an admitted attempt (the library's `throttle::settle` on each counter).
    async fn settle(&self, attempts: &[Attempt], how: Settlement) -> Result<(), Error>;

    /// Remembers a device that signed in as `user_id` by the SHA-256 of its credential;
    /// an account keeps its [`MAX_DEVICES_PER_USER`] most recently used devices.
    async fn add_device(&self, hash: &TokenHash, user_id: &str, now: i64) -> Result<(), Error>;

    /// The user a device credential belongs to, if it is known and was used less than
    /// `idle` seconds ago; marks it used.
    async fn device_owner(
        &self,
        hash: &TokenHash,
        now: i64,
        idle: i64,
    ) -> Result<Option<String>, Error>;
}

/// Refresh-token families, and logout everywhere. Part of [`Store`]; callers take the narrowest trait they need.
#[async_trait::async_trait]
pub trait FamilyStore: Send + Sync + 'static {
    /// Starts a refresh family with its first token, with the user's scope as it is
    /// *now* (the user's row locked first, so a scope change racing a login either
    /// commits before and is read, or waits and then reaches the new family). The
    /// family's scope and the user's "not before", or `None` when the user is gone or
    /// disabled.
    async fn create_family(
        &self,
        family_id: &str,
        user_id: &str,
        token: &TokenHash,
        label: &str,
        now: i64,
    ) -> Result<Option<Started>, Error> {
        self.create_family_with(family_id, user_id, token, label, "pwd", now)
            .await
    }

    /// [`FamilyStore::create_family`] for a sign-in authenticated by `amr` (RFC 8176
    /// values, space separated; `pwd` for a password alone), which every access token
    /// of the family carries.
    async fn create_family_with(
        &self,
        family_id: &str,
        user_id: &str,
        token: &TokenHash,
        label: &str,
        amr: &str,
        now: i64,
    ) -> Result<Option<Started>, Error>;

    /// A user's live refresh families (not revoked, neither idle nor older than the
    /// policy allows at `now`), most recently used first.
    async fn families_of(
        &self,
        user_id: &str,
        now: i64,
        policy: RotationPolicy,
    ) -> Result<Vec<FamilyInfo>, Error>;

    /// Revokes one of a user's families by id, with its event; false when the user has
    /// no such family that is not already revoked.
    async fn revoke_family(&self, user_id: &str, family_id: &str, now: i64) -> Result<bool, Error>;

    /// Redeems `presented`, storing `next` in its place by the library's rotation rule
    /// (`portcullis::refresh::decide`), under a lock on the family: whatever the
    /// concurrency, the family has one live token afterwards. Only a password login's
    /// family (one no OAuth client owns): [`FamilyStore::rotate_for`] with `None`.
    async fn rotate(
        &self,
        presented: &TokenHash,
        next: &TokenHash,
        now: i64,
        policy: RotationPolicy,
    ) -> Result<Rotation, Error> {
        self.rotate_for(None, presented, next, now, policy).await
    }

    /// [`FamilyStore::rotate`] for the family's owner: `client` must be the OAuth
    /// client the family belongs to (`None`: a password login's family). A token of
    /// another owner's family is [`Rotation::Refused`] and changes nothing.
    async fn rotate_for(
        &self,
        client: Option<&str>,
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

    /// The family a refresh token belongs to, with its owner: `(family id, client id)`.
    async fn family_of(&self, token: &TokenHash)
    -> Result<Option<(String, Option<String>)>, Error>;

    /// Families and sessions revoked, and users' "not before" times moved, at or after
    /// `since`.
    async fn revoked_since(&self, since: i64) -> Result<RevokedState, Error>;
}

/// Machine clients. Part of [`Store`]; callers take the narrowest trait they need.
#[async_trait::async_trait]
pub trait ClientStore: Send + Sync + 'static {
    /// Registers a client; [`Error::Conflict`] when the name is taken.
    async fn add_client(&self, client: &Client) -> Result<(), Error>;

    /// The client with this id, disabled or not.
    async fn client_by_id(&self, id: &str) -> Result<Option<Client>, Error>;

    /// Every client, by name.
    async fn clients(&self) -> Result<Vec<Client>, Error>;

    /// Changes what `change` names, in one transaction; `None` when there is no such
    /// client, [`Error::Conflict`] when a new name is taken. Disabling an enabled
    /// client, or taking a scope from it, moves its "not before" past `now`, with an
    /// event, so that every token issued to it so far is refused everywhere; disabling
    /// also revokes every grant it holds for people, with their events: their ids are
    /// in [`ClientChanged::ended`].
    async fn update_client(
        &self,
        id: &str,
        change: &ClientChange<'_>,
        now: i64,
    ) -> Result<Option<ClientChanged>, Error>;

    /// Replaces a client's secret (the old one stops working at once; tokens already
    /// issued live out their lifetime); `None` when there is no such client or it is
    /// public (it has none).
    async fn set_client_secret(
        &self,
        id: &str,
        secret_hash: &[u8],
    ) -> Result<Option<Client>, Error>;

    /// Deletes a client, in one transaction: every token issued to it is refused (its
    /// "not before", with an event), every grant it holds for people is revoked (with
    /// their events: the ids returned), its authorization codes and the consents people
    /// gave it go with it. `None` when there is no such client.
    async fn delete_client(&self, id: &str, now: i64) -> Result<Option<Vec<String>>, Error>;
}

/// The OAuth 2.1 authorization-code flow: codes, consents, and the grants (refresh
/// families) clients hold. Part of [`Store`]; callers take the narrowest trait they need.
#[async_trait::async_trait]
pub trait GrantStore: Send + Sync + 'static {
    /// Stores a new authorization code.
    async fn add_code(&self, code: &AuthCode) -> Result<(), Error>;

    /// Exchanges a code, all in one transaction: the code is used up whatever the
    /// outcome; a code used before revokes the family its first exchange started (with
    /// its event); a good one (unexpired, same client, same redirect URI, matching PKCE
    /// challenge, account enabled) starts the family with the granted scope less what
    /// the account no longer has.
    async fn exchange_code(
        &self,
        exchange: &CodeExchange<'_>,
        now: i64,
    ) -> Result<Exchanged, Error>;

    /// The scope a person allowed a client, if they did.
    async fn consent(&self, user_id: &str, client_id: &str) -> Result<Option<String>, Error>;

    /// Records that a person allowed a client `scope` (added to what they allowed it
    /// before).
    async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> Result<(), Error>;

    /// The clients a person allowed, by name.
    async fn consents_of(&self, user_id: &str) -> Result<Vec<Consent>, Error>;

    /// Withdraws a person's consent to a client and revokes every grant (refresh
    /// family) the client holds for them, with events: the revoked families' ids, or
    /// `None` when there was neither a consent nor a grant.
    async fn revoke_consent(
        &self,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> Result<Option<Vec<String>>, Error>;

    /// A refresh token's family, when the token is its live one and the family is live
    /// at `now` (for introspection); `None` otherwise.
    async fn refresh_info(
        &self,
        token: &TokenHash,
        now: i64,
        policy: RotationPolicy,
    ) -> Result<Option<RefreshInfo>, Error>;

    /// Revokes a family that `client_id` owns (RFC 7009), with its event; false when it
    /// has no such live family.
    async fn revoke_client_family(
        &self,
        client_id: &str,
        family_id: &str,
        now: i64,
    ) -> Result<bool, Error>;
}

/// Signing keys, sealed. Part of [`Store`]; callers take the narrowest trait they need.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Every signing key, in the order they start signing (earliest first).
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, Error>;

    /// Adds a signing key, with a `keys_changed` event. A second key naming the same
    /// `predecessor` is [`Error::Conflict`]: of several instances rotating at once, one
    /// adds the key.
    ///
    /// `sealed_with` is how every stored key's material under the new key's
    /// key-encryption key begins (the server's `enc:v2:<KEK id>:`). While any stored
    /// key begins otherwise (a `keys rewrap` moved them to another KEK since the caller
    /// looked) the key is refused with [`Error::Outdated`]: the keys are never left
    /// under two KEKs. The check and the insert are one transaction, ordered with
    /// [`KeyStore::replace_key_material`] by locking every key row first.
    async fn add_signing_key(&self, key: &StoredKey, sealed_with: &str) -> Result<(), Error>;

    /// Replaces the stored private material of keys (sealing plaintext keys, moving to
    /// a new key-encryption key), all or none. With `every`, `keys` must name every
    /// stored key: a key added since the caller read them is [`Error::Outdated`] (read
    /// again and re-seal it too).
    async fn replace_key_material(
        &self,
        keys: &[(String, String)],
        every: bool,
    ) -> Result<(), Error>;
}

/// The event log, and retention. Part of [`Store`]; callers take the narrowest trait they need.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Events after `cursor`, oldest first (at most `limit`).
    async fn events_after(&self, cursor: i64, limit: i64) -> Result<Vec<Event>, Error>;

    /// The id of the newest event, or 0.
    async fn last_event_id(&self) -> Result<i64, Error>;

    /// How many cookie sessions are live at `now` (not revoked, not past their absolute
    /// end), for metrics.
    async fn live_sessions(&self, now: i64) -> Result<i64, Error>;

    /// Deletes what ended more than `retention.keep` seconds before `now` and can no
    /// longer refuse or explain anything: events, cookie sessions that were revoked or
    /// passed their absolute end, refresh families that were revoked or ran out (with
    /// their tokens); and spent throttle counters and forgotten devices. `keep` must
    /// cover the longest access-token lifetime plus leeway: until then, revocations
    /// still matter to live tokens.
    async fn prune(&self, now: i64, retention: &Retention) -> Result<Pruned, Error>;
}

/// How many known devices an account keeps; a new one pushes out the least recently
/// used.
pub const MAX_DEVICES_PER_USER: i64 = 20;

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

/// The mail outbox: messages written with the changes that cause them, delivered by a
/// background sender at least once. Part of [`Store`].
///
/// A sender claims due messages for a lease (`claim_mail`); each claim counts as an
/// attempt. It then reports each one sent (`mail_sent`) or failed (`mail_failed`,
/// with when to try again, or never). A sender that dies leaves its claims to expire;
/// another sender (or the same after a restart) takes them then. So a message is
/// delivered at least once; twice only if a sender dies after the mail server accepted
/// it and before `mail_sent`, and never more often than it was claimed.
#[async_trait::async_trait]
pub trait MailStore: Send + Sync + 'static {
    /// Queues a message on its own (the flows that send mail queue it in the
    /// transaction of their change instead). Due at once.
    async fn enqueue_mail(&self, mail: &NewMail, now: i64) -> Result<(), Error>;

    /// Claims up to `limit` due messages (not sent, not given up on, due by `now`, not
    /// claimed by anyone whose lease is still running) until `now + lease`, oldest
    /// first. Two senders never claim one message at once, on any backend.
    async fn claim_mail(&self, now: i64, lease: i64, limit: i64) -> Result<Vec<QueuedMail>, Error>;

    /// The claimed message `id` was delivered.
    async fn mail_sent(&self, id: i64, now: i64) -> Result<(), Error>;

    /// Delivering `id` failed with `error`: try again from `retry_at`, or, with `None`,
    /// never (it is counted failed).
    async fn mail_failed(
        &self,
        id: i64,
        now: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), Error>;

    /// The outbox in numbers.
    async fn mail_queue(&self) -> Result<MailQueue, Error>;
}

/// Accounts people can get back into: one-time tokens sent by mail (address
/// verification, address change, password reset) and password changes, each written
/// with the mail it causes in one transaction. Part of [`Store`].
///
/// One live token per account and kind: issuing one voids the account's earlier ones
/// of that kind, so of ten reset requests at once one link works. Tokens are kept
/// hashed and used once.
#[async_trait::async_trait]
pub trait RecoveryStore: Send + Sync + 'static {
    /// Creates an account and, in the same transaction, its verification token and
    /// mail (signup with an address). [`Error::Conflict`] as [`UserStore::create_user`].
    async fn create_user_with_token(
        &self,
        user: NewUser,
        token: &NewEmailToken,
        mail: &NewMail,
    ) -> Result<User, Error>;

    /// Issues `token` and queues `mails` in one transaction, under the account's lock;
    /// false (nothing written) unless the account exists, is enabled and still fits
    /// the token: for `Verify`, its address is `token.email` (verified or not); for
    /// `Reset`, its *verified* address is `token.email`. The account's earlier live
    /// tokens of this kind are voided.
    async fn issue_email_token(
        &self,
        token: &NewEmailToken,
        mails: &[NewMail],
        now: i64,
    ) -> Result<bool, Error>;

    /// Uses a token for `purpose`, all in one transaction, or nothing: a `Verify` token
    /// of the account's current address marks it verified; a `Change` token makes its
    /// address the account's, verified; a `Reset` token replaces the password hash,
    /// voids every other reset token, and ends everything the account is signed in
    /// with (families, sessions, codes, devices; events for every instance). An address
    /// another account has verified meanwhile is [`Error::Conflict`] (the token stays
    /// unused).
    async fn redeem_email_token(
        &self,
        hash: &TokenHash,
        purpose: Purpose<'_>,
        now: i64,
    ) -> Result<Redeemed, Error>;

    /// Replaces the password of a signed-in person who proved the current one: voids
    /// every reset token and ends every refresh family and cookie session except
    /// `keep` (the one the change was made from), with their events, and queues
    /// `mails` (a notice), in one transaction. The ids ended, or `None` when the
    /// account is gone or disabled, or its password is no longer `expected_hash` (a
    /// change or reset won the race).
    async fn change_password(
        &self,
        user_id: &str,
        expected_hash: &str,
        new_hash: &str,
        keep: Option<&str>,
        mails: &[NewMail],
        now: i64,
    ) -> Result<Option<Vec<String>>, Error>;
}

pub use sql::{Backend, NOTIFY_CHANNEL, PostgresStore, SqlStore, SqliteStore};

/// Second factors: authenticator-app secrets, recovery codes, and the challenges a
/// password step leaves for its second step. Part of [`Store`].
///
/// Every change to an account's factors is one write transaction that takes the
/// account's row first (the lock order of every writer), and keeps `users.factors` in
/// step, so that a password login learns from the row it reads whether a second step
/// follows. Whether a code is right is the caller's decision (it holds the key that
/// opens the secret); the store spends what was accepted, once, on every instance.
#[async_trait::async_trait]
pub trait FactorStore: Send + Sync + 'static {
    /// Starts an authenticator enrolment with a new sealed secret, replacing one not
    /// confirmed yet; false when the account has a confirmed one (remove it first) or
    /// is gone.
    async fn begin_totp(&self, user_id: &str, sealed_secret: &str, now: i64)
    -> Result<bool, Error>;

    /// The account's authenticator secret, confirmed or not.
    async fn totp_of(&self, user_id: &str) -> Result<Option<TotpSecret>, Error>;

    /// Confirms the pending enrolment with a code of time step `step`, and gives the
    /// account `codes` as its recovery codes (replacing any): false when there is no
    /// pending enrolment or `step` is not later than the last accepted one.
    async fn confirm_totp(
        &self,
        user_id: &str,
        step: i64,
        codes: &[TokenHash],
        now: i64,
    ) -> Result<bool, Error>;

    /// Removes the authenticator secret, confirmed or not; with no second factor left,
    /// the recovery codes go too. False when there was none.
    async fn remove_totp(&self, user_id: &str) -> Result<bool, Error>;

    /// Replaces the account's recovery codes; false when it has no second factor.
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        codes: &[TokenHash],
        now: i64,
    ) -> Result<bool, Error>;

    /// How many recovery codes are left unused, and when the last one was used.
    async fn recovery_codes_left(&self, user_id: &str) -> Result<(u32, Option<i64>), Error>;

    /// Stores a password step awaiting its second factor.
    async fn create_challenge(&self, challenge: &NewChallenge) -> Result<(), Error>;

    /// Takes one attempt from a live challenge (not used, not expired, fewer than
    /// `max_attempts` taken), atomically: of many concurrent attempts, `max_attempts`
    /// at most get it. `None` for an unknown, used, expired or spent challenge.
    async fn try_challenge(
        &self,
        hash: &TokenHash,
        max_attempts: i64,
        now: i64,
    ) -> Result<Option<Challenge>, Error>;

    /// Completes a challenge with a second factor the caller checked, in one
    /// transaction under the account's row: the challenge must be unused and
    /// unexpired, the account enabled with the "not before" the password step read,
    /// and the factor unspent (a later TOTP step, an unused recovery code); then the
    /// factor is spent and the challenge used.
    async fn complete_challenge(
        &self,
        hash: &TokenHash,
        factor: SecondFactor<'_>,
        now: i64,
    ) -> Result<Completion, Error>;

    /// Every stored authenticator secret, sealed: `(user id, sealed secret)`, for a
    /// change of key-encryption key.
    async fn sealed_totp_secrets(&self) -> Result<Vec<(String, String)>, Error>;

    /// Replaces a sealed secret with the same secret sealed under another key, if it
    /// is still `old` (a secret replaced meanwhile is left as it is); true when
    /// replaced.
    async fn reseal_totp_secret(&self, user_id: &str, old: &str, new: &str) -> Result<bool, Error>;

    /// Adds a passkey to an account that has fewer than `max` (and `webauthn` to its
    /// factors); false when the credential id is taken (on any account) or the account
    /// has `max` already.
    async fn add_passkey(&self, passkey: &NewPasskey, max: usize, now: i64) -> Result<bool, Error>;

    /// An account's passkeys, oldest first.
    async fn passkeys_of(&self, user_id: &str) -> Result<Vec<StoredPasskey>, Error>;

    /// A passkey by its credential id.
    async fn passkey(&self, id: &str) -> Result<Option<StoredPasskey>, Error>;

    /// Records a passkey's use, with its credential as updated (its counter).
    async fn touch_passkey(&self, id: &str, credential: &str, now: i64) -> Result<(), Error>;

    /// Removes one of an account's passkeys; with no second factor left, the recovery
    /// codes go too. False when the account has no such passkey.
    async fn remove_passkey(&self, user_id: &str, id: &str) -> Result<bool, Error>;

    /// Keeps a WebAuthn ceremony until its finish.
    async fn create_ceremony(&self, ceremony: &NewCeremony) -> Result<(), Error>;

    /// Takes a live ceremony for its finish, once: `None` when unknown, used or expired.
    async fn take_ceremony(&self, hash: &TokenHash, now: i64) -> Result<Option<Ceremony>, Error>;

    /// The account of a live password challenge (unused, unexpired), without taking an
    /// attempt.
    async fn challenge_user(&self, hash: &TokenHash, now: i64) -> Result<Option<String>, Error>;

    /// Counts a wrong authenticator code against the account; the count since its
    /// last successful second step.
    async fn count_factor_failure(&self, user_id: &str) -> Result<i64, Error>;

    /// Records how a cookie session's sign-in was authenticated (RFC 8176 values).
    async fn set_session_amr(&self, session_id: &str, amr: &str) -> Result<(), Error>;

    /// An operator's reset: removes every second factor and recovery code and
    /// challenge of the account, ends its sessions and refresh families and moves its
    /// "not before" (all with their events, and a [`EventKind::FactorsReset`]). The
    /// ids ended, or `None` when there is no such user.
    async fn reset_factors(&self, user_id: &str, now: i64) -> Result<Option<Vec<String>>, Error>;
}
