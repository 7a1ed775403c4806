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
    /// Access tokens issued before this time (seconds) are refused; see
    /// [`not_before_after`].
    pub not_before: i64,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// The account's email address (domain in lower-case ASCII), if it gave one.
    pub email: Option<String>,
    /// True once the address is proven (a link sent to it was followed, or an operator
    /// said so).
    pub email_verified: bool,
    /// The second factors the account has confirmed, space separated (`totp`,
    /// `webauthn`); empty for a password alone.
    pub factors: String,
}

impl User {
    /// The account's confirmed second factors.
    pub fn factors(&self) -> impl Iterator<Item = &str> {
        self.factors.split_ascii_whitespace()
    }

    /// False for an account made through an upstream provider and given no password
    /// since (its hash is empty: no password matches it).
    pub fn has_password(&self) -> bool {
        !self.password_hash.is_empty()
    }

    /// True when a password alone does not sign the account in.
    pub fn has_second_factor(&self) -> bool {
        self.factors().next().is_some()
    }
}

/// The "not before" that a revocation at `now` (seconds) writes: the next second.
///
/// `iat` counts whole seconds, so a token issued in the same second as the
/// revocation, before it, carries `iat == now`; "not before `now`" would let it live
/// for its whole lifetime. "Not before `now + 1`" refuses all of that second, and
/// whoever issues tokens for the subject afterwards must stamp them no earlier than
/// this (the server sets `iat` to the subject's "not before" when its clock has not
/// reached it yet: at most one second ahead).
pub const fn not_before_after(now: i64) -> i64 {
    now.saturating_add(1)
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
            .field("email", &self.email.as_ref().map(|_| "[redacted]"))
            .field("email_verified", &self.email_verified)
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
    /// An email address, unverified.
    pub email: Option<Email>,
}

/// An account to import from another system (`portcullis users import`).
#[derive(Clone, Debug)]
pub struct ImportedUser {
    /// The account; `password_hash` is the other system's hash (the next login
    /// rehashes it) or an unusable marker starting with `!`.
    pub user: NewUser,
    /// Whether the other system had proven the address.
    pub email_verified: bool,
    /// Imported disabled.
    pub disabled: bool,
}

/// What importing one account did (or, in a dry run, would do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Created.
    Imported,
    /// Its username was taken: replaced (`update`).
    Updated,
    /// Its username was taken: left as it was.
    Skipped,
    /// Not imported, for this reason.
    Refused(String),
}

/// An email address as the store keeps it: the address, and the key under which a
/// verified address is unique (the server normalises both).
#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    /// The address to write to.
    pub address: String,
    /// The same mailbox whatever the case: unique among verified addresses.
    pub key: String,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email([redacted])")
    }
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

/// A refresh family just started ([`crate::FamilyStore::create_family`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// The family's scope: the user's as the start read it.
    pub scope: String,
    /// The user's "not before" as the start read it: the access token it leads to
    /// must not be stamped earlier.
    pub not_before: i64,
}

/// What starting a refresh family came to ([`crate::LoginStore::finish_family_login`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FamilyStart {
    /// Started: its scope and the account's "not before".
    Started(Started),
    /// The account is gone or disabled: nothing started.
    Refused,
    /// The account's password or "not before" moved after the sign-in read them (a
    /// reset, a change, a logout everywhere): nothing started.
    Overtaken,
}

/// A sign-in to finish with a refresh family, in one transaction
/// ([`crate::LoginStore::finish_family_login`]). Its `Debug` leaves the password hash
/// out, as [`User`]'s does.
#[derive(Clone)]
pub struct FamilyLogin<'a> {
    /// The new family's id.
    pub family_id: &'a str,
    /// The account.
    pub user_id: &'a str,
    /// The SHA-256 of the family's first refresh token.
    pub token: &'a TokenHash,
    /// What the family is shown as (the client's User-Agent, shortened).
    pub label: &'a str,
    /// How the sign-in was authenticated (RFC 8176 values, space separated).
    pub amr: &'a str,
    /// The account's password hash as the sign-in read it before checking the password.
    pub checked_hash: &'a str,
    /// The account's "not before" as the sign-in read it.
    pub checked_not_before: i64,
    /// The throttle's counters the sign-in was admitted on, to settle as a success
    /// (whether or not the family starts: the password was right).
    pub settle: &'a [crate::Attempt],
    /// A device credential to remember for the account (the SHA-256 of a new one),
    /// when the family starts.
    pub device: Option<&'a TokenHash>,
    /// The sign-in's audit record, appended (with its webhook deliveries) when the
    /// family starts.
    pub audit: Option<&'a crate::NewAudit>,
    /// Now.
    pub now: i64,
}

impl fmt::Debug for FamilyLogin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FamilyLogin")
            .field("family_id", &self.family_id)
            .field("user_id", &self.user_id)
            .field("token", &self.token)
            .field("label", &self.label)
            .field("amr", &self.amr)
            .field("checked_hash", &"[redacted]")
            .field("checked_not_before", &self.checked_not_before)
            .field("settle", &self.settle)
            .field("device", &self.device)
            .field("audit", &self.audit)
            .field("now", &self.now)
            .finish()
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
        /// Its user's "not before" as the rotation read it: the access token it
        /// leads to must not be stamped earlier.
        not_before: i64,
        /// How the family's sign-in was authenticated (RFC 8176 values, space
        /// separated): its access tokens' `amr`.
        amr: String,
    },
    /// Another token of the family (rotated, or replaced by a retry): the family is
    /// now revoked.
    ReuseDetected {
        /// The revoked family.
        family_id: String,
        /// Its account.
        user_id: String,
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
    /// Where the authorization-code flow may send a person back (space separated,
    /// matched exactly); empty for a machine client, which has no code flow.
    pub redirect_uris: String,
    /// Where RP-initiated logout may send a person afterwards (space separated).
    pub post_logout_redirect_uris: String,
    /// A public client (a single-page or native app) has no secret (`secret_hash` is
    /// empty) and must use PKCE; it cannot use the client-credentials grant.
    pub public: bool,
    /// A first-party client gets no consent page.
    pub first_party: bool,
}

impl Client {
    /// Its registered redirect URIs.
    pub fn redirect_uri_list(&self) -> impl Iterator<Item = &str> {
        self.redirect_uris.split_whitespace()
    }

    /// Its registered post-logout redirect URIs.
    pub fn post_logout_uri_list(&self) -> impl Iterator<Item = &str> {
        self.post_logout_redirect_uris.split_whitespace()
    }
}

/// What the store keeps about an account beside its row and the records other
/// methods list: for the person's own export ([`crate::UserStore::account_records`]).
/// Never a hash or a message's body (a mail may hold a live link).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountRecords {
    /// Devices that signed in before: `(created_at, last_used_at)`.
    pub devices: Vec<(i64, i64)>,
    /// Mail links issued to it, used or not.
    pub mail_links: Vec<MailLink>,
    /// Mail written to its addresses (the current one and those of its links).
    pub mail: Vec<MailRecord>,
}

/// A mail link of an account, as its export shows it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct MailLink {
    /// `verify`, `change` or `reset`.
    pub kind: String,
    /// The address it went to.
    pub email: String,
    /// When it was issued.
    pub created_at: i64,
    /// When it stops working.
    pub expires_at: i64,
    /// When it was used, if it was.
    pub used_at: Option<i64>,
}

/// A mail of the outbox, as an export shows it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct MailRecord {
    /// The address.
    pub recipient: String,
    /// Its subject.
    pub subject: String,
    /// When it was written.
    pub created_at: i64,
    /// When the relay took it, if it has.
    pub sent_at: Option<i64>,
}

/// What [`crate::ClientStore::update_client`] changes: each `Some` member, the rest
/// left as it is (checked by the caller: the store writes what it is given).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientChange<'a> {
    /// A new unique name.
    pub name: Option<&'a str>,
    /// The whole scope, space separated.
    pub scope: Option<&'a str>,
    /// The whole list of redirect URIs, space separated.
    pub redirect_uris: Option<&'a str>,
    /// The whole list of post-logout redirect URIs, space separated.
    pub post_logout_redirect_uris: Option<&'a str>,
    /// Whether people are asked to consent.
    pub first_party: Option<bool>,
    /// Disable or enable.
    pub disabled: Option<bool>,
}

/// A client as [`crate::ClientStore::update_client`] left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientChanged {
    /// The client, changed.
    pub client: Client,
    /// Whether this change disabled it (it was enabled before).
    pub disabled_now: bool,
    /// Whether the tokens issued to it so far are now refused: it was disabled, or
    /// lost a scope (its "not before" moved, with an event).
    pub tokens_refused: bool,
    /// The grants (refresh families) revoked because it was disabled.
    pub ended: Vec<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("secret_hash", &"[redacted]")
            .field("scope", &self.scope)
            .field("disabled", &self.disabled)
            .field("redirect_uris", &self.redirect_uris)
            .field("public", &self.public)
            .field("first_party", &self.first_party)
            .finish_non_exhaustive()
    }
}

/// An authorization code as stored (by its SHA-256): what the person granted, to whom,
/// and what the exchange must match.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuthCode {
    /// SHA-256 of the code.
    pub hash: Vec<u8>,
    /// The client it was issued to.
    pub client_id: String,
    /// The person who signed in.
    pub user_id: String,
    /// The redirect URI of the authorization request; the exchange must send the same.
    pub redirect_uri: String,
    /// The scope granted.
    pub scope: String,
    /// The PKCE challenge (S256, base64url).
    pub code_challenge: String,
    /// The OpenID Connect `nonce` of the request, for the ID token.
    pub nonce: Option<String>,
    /// When the person signed in (the session's start), for `auth_time`.
    pub auth_time: i64,
    /// The cookie session the person was in: the ID token's `sid`.
    pub session_id: String,
    /// How that session's sign-in was authenticated (RFC 8176 values, space
    /// separated): the `amr` of the tokens the code leads to.
    pub amr: String,
    /// When it was issued.
    pub created_at: i64,
    /// When it stops being redeemable.
    pub expires_at: i64,
}

impl fmt::Debug for AuthCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthCode")
            .field("client_id", &self.client_id)
            .field("user_id", &self.user_id)
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What the exchange of a code must match, and the refresh family it starts.
#[derive(Clone, Debug)]
pub struct CodeExchange<'a> {
    /// SHA-256 of the presented code.
    pub code: &'a TokenHash,
    /// The authenticated client.
    pub client_id: &'a str,
    /// The `redirect_uri` of the token request.
    pub redirect_uri: &'a str,
    /// BASE64URL(SHA-256(code_verifier)) of the token request.
    pub challenge: &'a str,
    /// The id of the refresh family to start.
    pub family_id: &'a str,
    /// Its first refresh token.
    pub refresh: &'a TokenHash,
    /// A label for the account page (the client's name).
    pub label: &'a str,
}

/// The outcome of exchanging a code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exchanged {
    /// The code was good: the family is started, with `scope` (what was granted, less
    /// anything the account lost since).
    Granted {
        /// The code as it was stored.
        code: Box<AuthCode>,
        /// The scope of the new family.
        scope: String,
        /// The account's username.
        username: String,
        /// The account's "not before": the access token must not be stamped earlier.
        not_before: i64,
        /// The account's email address, for an ID token with the `email` scope.
        email: Option<String>,
        /// Whether that address is verified.
        email_verified: bool,
    },
    /// The code was used before: what it issued is now revoked (`family_id`).
    Replayed {
        /// The family the first exchange started, now revoked.
        family_id: Option<String>,
    },
    /// Unknown, expired, or not matching (client, redirect URI, PKCE), or the account
    /// is disabled. The code is used up all the same.
    Refused,
}

/// A client a person allowed, as the account page lists it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Consent {
    /// The client's id.
    pub client_id: String,
    /// Its name.
    pub client_name: String,
    /// What the person allowed.
    pub scope: String,
    /// When.
    pub created_at: i64,
}

/// A refresh token as introspection sees it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RefreshInfo {
    /// Its family (the `sid` of its access tokens).
    pub family_id: String,
    /// The account.
    pub user_id: String,
    /// The client the family belongs to, if any.
    pub client_id: Option<String>,
    /// The family's scope.
    pub scope: String,
    /// When the token was issued.
    pub created_at: i64,
    /// When the family stops at the latest (absolute lifetime).
    pub expires_at: i64,
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
    /// An operator removed every second factor of an account (`portcullis users
    /// reset-mfa`); `subject` is the user id. A record: nothing to apply.
    FactorsReset,
}

impl EventKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventKind::FamilyRevoked => "family_revoked",
            EventKind::SessionRevoked => "session_revoked",
            EventKind::UserNotBefore => "user_not_before",
            EventKind::KeysChanged => "keys_changed",
            EventKind::FactorsReset => "factors_reset",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<EventKind> {
        match s {
            "family_revoked" => Some(EventKind::FamilyRevoked),
            "session_revoked" => Some(EventKind::SessionRevoked),
            "user_not_before" => Some(EventKind::UserNotBefore),
            "keys_changed" => Some(EventKind::KeysChanged),
            "factors_reset" => Some(EventKind::FactorsReset),
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
    /// Outbox messages sent or given up on long enough ago.
    pub mail: u64,
    /// One-time mail tokens expired long enough ago.
    pub email_tokens: u64,
    /// Second-factor challenges past their time.
    pub challenges: u64,
    /// Rows of the audit trail past their retention.
    pub audit: u64,
    /// Webhook deliveries made or given up on long enough ago.
    pub deliveries: u64,
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
    /// A message of the outbox (mail or webhook) sent or given up on this long ago is
    /// deleted.
    pub mail_kept: i64,
    /// A row of the audit trail this old is deleted.
    pub audit_kept: i64,
}

/// A message to put in the outbox.
#[derive(Clone, PartialEq, Eq)]
pub struct NewMail {
    /// The Message-ID header's value (without angle brackets): unique, the same on
    /// every attempt.
    pub message_id: String,
    /// The one recipient's address.
    pub recipient: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text_body: String,
    /// The HTML body.
    pub html_body: String,
}

impl fmt::Debug for NewMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bodies hold one-time links: never in a log.
        f.debug_struct("NewMail")
            .field("message_id", &self.message_id)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// A message a sender has claimed: deliver it, then say how it went.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QueuedMail {
    /// The outbox row.
    pub id: i64,
    /// The Message-ID header's value.
    pub message_id: String,
    /// The one recipient's address.
    pub recipient: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text_body: String,
    /// The HTML body.
    pub html_body: String,
    /// When it was queued.
    pub created_at: i64,
    /// Claims so far, this one included.
    pub attempts: i64,
}

impl fmt::Debug for QueuedMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedMail")
            .field("id", &self.id)
            .field("message_id", &self.message_id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// The outbox in numbers, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailQueue {
    /// Messages neither sent nor given up on.
    pub waiting: i64,
    /// Messages sent.
    pub sent: i64,
    /// Messages given up on after their last retry.
    pub failed: i64,
}

/// What a one-time token sent by mail is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailTokenKind {
    /// Proves the account's own address (after signup, or resent).
    Verify,
    /// Proves a new address, which becomes the account's (verified) when confirmed.
    Change,
    /// Sets a new password, ending everything the account is signed in with.
    Reset,
}

impl EmailTokenKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EmailTokenKind::Verify => "verify",
            EmailTokenKind::Change => "change",
            EmailTokenKind::Reset => "reset",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<EmailTokenKind> {
        match s {
            "verify" => Some(EmailTokenKind::Verify),
            "change" => Some(EmailTokenKind::Change),
            "reset" => Some(EmailTokenKind::Reset),
            _ => None,
        }
    }
}

/// A one-time token to issue, with the mail that carries it.
#[derive(Clone, Debug)]
pub struct NewEmailToken {
    /// SHA-256 of the token (the token itself is only in the mail).
    pub hash: TokenHash,
    /// The account it acts on.
    pub user_id: String,
    /// What it does.
    pub kind: EmailTokenKind,
    /// `Verify`: the account's address; `Change`: the new address; `Reset`: the
    /// verified address the link goes to. Issuing checks it against the account under
    /// the account's lock, so a link never reaches an address the account no longer
    /// has.
    pub email: Email,
    /// When it stops working.
    pub expires_at: i64,
}

/// What redeeming a one-time token did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// The address is the account's and verified.
    Verified {
        /// The account.
        user_id: String,
        /// The address now verified.
        email: String,
    },
    /// The password is replaced; every refresh family, cookie session, authorization
    /// code and known device of the account ended, and its "not before" moved.
    PasswordReset {
        /// The account.
        user_id: String,
        /// Ids of the families and sessions ended (each with its event).
        ended: Vec<String>,
        /// The account's new "not before".
        not_before: i64,
    },
    /// Unknown, used, voided, expired, of another purpose, or its account disabled or
    /// no longer at the address: nothing changed.
    Invalid,
}

/// What a token is redeemed for.
#[derive(Clone, Copy, Debug)]
pub enum Purpose<'a> {
    /// Confirming an address (`Verify` or `Change` tokens).
    Address,
    /// Setting this password hash (`Reset` tokens).
    Password(&'a str),
}

/// An account's authenticator-app secret ([`crate::FactorStore::totp_of`]).
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TotpSecret {
    /// The secret, sealed with the key-encryption key.
    pub sealed_secret: String,
    /// When its enrolment was confirmed; `None` while it awaits its first code.
    pub confirmed_at: Option<i64>,
    /// The highest time step a code was accepted for.
    pub last_step: i64,
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpSecret")
            .field("confirmed_at", &self.confirmed_at)
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}

/// A password step awaiting its second factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewChallenge {
    /// SHA-256 of the `mfa_token`.
    pub hash: TokenHash,
    /// The account whose password was checked.
    pub user_id: String,
    /// Its "not before" then: a revocation since voids the challenge.
    pub not_before: i64,
    /// The device credential's throttle lane the password step was admitted in, if any.
    pub device: Option<String>,
    /// When it was made.
    pub created_at: i64,
    /// When it stops being usable.
    pub expires_at: i64,
    /// How the first step was done: `pwd`, or `fed idp:NAME` through an upstream
    /// provider (the second step's `amr` begins with it).
    pub first_step: String,
}

/// A live challenge, one attempt taken ([`crate::FactorStore::try_challenge`]).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Challenge {
    /// The account.
    pub user_id: String,
    /// The device lane of the password step.
    pub device: Option<String>,
    /// Attempts taken, this one included.
    pub attempts: i64,
    /// How the first step was done ([`NewChallenge::first_step`]).
    pub first_step: String,
}

/// The second factor a challenge is completed with, as checked by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondFactor<'a> {
    /// An authenticator-app code, valid for this time step: accepted only when the
    /// step is later than any accepted before, and the account has fewer than
    /// `failure_limit` wrong codes since its last successful second step.
    Totp {
        /// The RFC 6238 time step the code matched.
        step: i64,
        /// Wrong codes at which codes stop being accepted.
        failure_limit: i64,
    },
    /// A recovery code, by its hash: accepted once.
    RecoveryCode(&'a TokenHash),
    /// A passkey assertion, already verified: nothing to spend here.
    Passkey,
}

/// The outcome of [`crate::FactorStore::complete_challenge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Both steps done: the account, as it is now.
    Done(User),
    /// The challenge is unknown, used, expired, or overtaken (a password change, a
    /// logout everywhere, a disabled account): sign in again.
    Invalid,
    /// The code was wrong, already used, or of a step already used: nothing spent.
    Refused,
    /// Authenticator codes are locked for the account (too many wrong ones): even a
    /// right one is refused, so that guessing on learns nothing.
    Locked,
}

/// A passkey to store ([`crate::FactorStore::add_passkey`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPasskey {
    /// The credential id, base64url: unique across accounts.
    pub id: String,
    /// Its account.
    pub user_id: String,
    /// What the person called it.
    pub label: String,
    /// The credential as the WebAuthn library keeps it (JSON: public key, counter,
    /// flags).
    pub credential: String,
}

/// A stored passkey.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredPasskey {
    /// The credential id, base64url.
    pub id: String,
    /// Its account.
    pub user_id: String,
    /// What the person called it.
    pub label: String,
    /// The credential (JSON).
    pub credential: String,
    /// When it was added.
    pub created_at: i64,
    /// When it last signed in.
    pub last_used_at: Option<i64>,
}

/// What a WebAuthn ceremony is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CeremonyKind {
    /// Adding a passkey to a signed-in account.
    Register,
    /// Signing in with a passkey alone.
    SignIn,
    /// The second step after a password.
    SecondStep,
}

impl CeremonyKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CeremonyKind::Register => "register",
            CeremonyKind::SignIn => "sign_in",
            CeremonyKind::SecondStep => "second_step",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<CeremonyKind> {
        match s {
            "register" => Some(CeremonyKind::Register),
            "sign_in" => Some(CeremonyKind::SignIn),
            "second_step" => Some(CeremonyKind::SecondStep),
            _ => None,
        }
    }
}

/// A ceremony to keep between its start and its finish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCeremony {
    /// SHA-256 of the token the browser holds.
    pub hash: TokenHash,
    /// What it is for.
    pub kind: CeremonyKind,
    /// The account, when known at the start (a registration, a second step).
    pub user_id: Option<String>,
    /// A second step's password challenge (its hash).
    pub challenge: Option<TokenHash>,
    /// The library's state (JSON).
    pub state: String,
    /// When it stops being usable.
    pub expires_at: i64,
}

/// A ceremony taken for its finish ([`crate::FactorStore::take_ceremony`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ceremony {
    /// What it is for.
    pub kind: CeremonyKind,
    /// The account, when known at the start.
    pub user_id: Option<String>,
    /// A second step's password challenge.
    pub challenge: Option<TokenHash>,
    /// The library's state (JSON).
    pub state: String,
}

/// The outcome of [`crate::UserStore::delete_user`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// Erased; the ids of the refresh families and sessions it ended.
    Done(Vec<String>),
    /// No such account.
    NotFound,
    /// It is the last enabled account with the protected scope: kept.
    LastWith,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_login_prints_no_password_hash() {
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
        let token = TokenHash([7; 32]);
        let login = FamilyLogin {
            family_id: "f",
            user_id: "u",
            token: &token,
            label: "l",
            amr: "pwd",
            checked_hash: hash,
            checked_not_before: 0,
            settle: &[],
            device: None,
            audit: None,
            now: 1,
        };
        let printed = format!("{login:?}");
        assert!(!printed.contains("argon2id"), "{printed}");
        assert!(
            printed.contains("checked_hash: \"[redacted]\""),
            "{printed}"
        );
    }
}
