//! The audit trail and webhooks: [`AuditStore`] and its types.
//!
//! One security event is one appended row; the webhook deliveries it causes are
//! written in the same transaction (the webhooks' transactional outbox), so an event
//! is either recorded and queued for every endpoint that wants it, or neither.

use std::fmt;

use crate::Error;

/// A security event to append to the trail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewAudit {
    /// What happened (`login.failed`, `user.disabled`, …).
    pub kind: String,
    /// Who did it: `user:<id>`, `client:<id>`, `operator` (the CLI), or nobody.
    pub actor: Option<String>,
    /// The account it was done to.
    pub subject: Option<String>,
    /// The client address of the request, when there was one.
    pub address: Option<String>,
    /// Its User-Agent, when there was one (at most 256 characters).
    pub user_agent: Option<String>,
    /// A JSON object: the reason, the factor, the client, the fields changed.
    pub detail: String,
    /// The webhook event it raises, if any.
    pub webhook: Option<WebhookEvent>,
}

/// A webhook message: queued once for every endpoint that subscribed to `event`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEvent {
    /// Its type (`user.created`, …).
    pub event: String,
    /// The `webhook-id` header: the same on every attempt and every endpoint.
    pub message_id: String,
    /// The JSON body.
    pub payload: String,
}

/// One row of the trail.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRecord {
    /// Its place in the trail (ascending).
    pub id: i64,
    /// When (Unix seconds).
    pub at: i64,
    /// What happened.
    pub kind: String,
    /// Who did it.
    pub actor: Option<String>,
    /// To which account.
    pub subject: Option<String>,
    /// From which address.
    pub address: Option<String>,
    /// With which User-Agent.
    pub user_agent: Option<String>,
    /// The JSON detail.
    pub detail: String,
}

/// Which rows of the trail to read, oldest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter<'a> {
    /// Only those about this account.
    pub subject: Option<&'a str>,
    /// Only those of this kind.
    pub kind: Option<&'a str>,
    /// Only those after this row (a cursor).
    pub after: Option<i64>,
    /// Only those at or after this time.
    pub since: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// A webhook endpoint to add.
#[derive(Clone, PartialEq, Eq)]
pub struct NewWebhook {
    /// Its id (`wh_…`).
    pub id: String,
    /// Where deliveries go.
    pub url: String,
    /// The event types it gets, space separated.
    pub events: String,
    /// Its signing secret, sealed with the key-encryption key.
    pub sealed_secret: String,
}

impl fmt::Debug for NewWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewWebhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// A webhook endpoint and how its deliveries went.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookInfo {
    /// Its id.
    pub id: String,
    /// Where deliveries go.
    pub url: String,
    /// The event types it gets, space separated.
    pub events: String,
    /// When it was added.
    pub created_at: i64,
    /// Deliveries neither made nor given up on.
    pub waiting: i64,
    /// Deliveries made.
    pub delivered: i64,
    /// Deliveries given up on after their last retry.
    pub failed: i64,
    /// The error of the latest failed attempt, if any.
    pub last_error: Option<String>,
}

/// A delivery a sender has claimed: make it, then say how it went.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QueuedDelivery {
    /// The outbox row.
    pub id: i64,
    /// The endpoint.
    pub webhook_id: String,
    /// Its URL.
    pub url: String,
    /// Its sealed secret.
    pub secret: String,
    /// The `webhook-id` header.
    pub message_id: String,
    /// The event type.
    pub event: String,
    /// The JSON body.
    pub payload: String,
    /// Claims so far, this one included.
    pub attempts: i64,
}

impl fmt::Debug for QueuedDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedDelivery")
            .field("id", &self.id)
            .field("webhook_id", &self.webhook_id)
            .field("message_id", &self.message_id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// The audit trail and webhook endpoints with their outbox. Part of [`crate::Store`].
///
/// Deliveries are claimed, retried and given up on as the mail outbox's messages
/// ([`crate::MailStore`]): at least once, never by two senders at once.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends `record` at `now` and, in the same transaction, one delivery of its
    /// webhook event to every endpoint subscribed to it. Returns the row's id.
    async fn append_audit(&self, record: &NewAudit, now: i64) -> Result<i64, Error>;

    /// Rows of the trail, oldest first.
    async fn audit(&self, filter: &AuditFilter<'_>) -> Result<Vec<AuditRecord>, Error>;

    /// Adds an endpoint.
    async fn add_webhook(&self, hook: &NewWebhook, now: i64) -> Result<(), Error>;

    /// Every endpoint with its deliveries in numbers.
    async fn webhooks(&self) -> Result<Vec<WebhookInfo>, Error>;

    /// Removes an endpoint and what it had waiting; false if there was none.
    async fn remove_webhook(&self, id: &str) -> Result<bool, Error>;

    /// Queues `event` for the endpoint `id` alone (a test message); false if there is
    /// no such endpoint.
    async fn enqueue_webhook(
        &self,
        id: &str,
        event: &WebhookEvent,
        now: i64,
    ) -> Result<bool, Error>;

    /// Claims up to `limit` due deliveries until `now + lease`, oldest first.
    async fn claim_deliveries(
        &self,
        now: i64,
        lease: i64,
        limit: i64,
    ) -> Result<Vec<QueuedDelivery>, Error>;

    /// The claimed delivery `id` was made.
    async fn delivery_done(&self, id: i64, now: i64) -> Result<(), Error>;

    /// Making `id` failed with `error`: try again from `retry_at`, or never.
    async fn delivery_failed(
        &self,
        id: i64,
        now: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), Error>;

    /// Every endpoint's id and sealed secret (for `keys rewrap`).
    async fn sealed_webhook_secrets(&self) -> Result<Vec<(String, String)>, Error>;

    /// Replaces a sealed secret, if it is still `old`.
    async fn reseal_webhook_secret(&self, id: &str, old: &str, new: &str) -> Result<bool, Error>;
}
