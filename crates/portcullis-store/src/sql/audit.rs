//! The audit trail and webhooks: [`AuditStore`].

use super::{Affected as _, Backend, SqlStore};
use crate::{
    AuditFilter, AuditRecord, AuditStore, Error, NewAudit, NewWebhook, QueuedDelivery,
    WebhookEvent, WebhookInfo,
};

/// The endpoints subscribed to the event bound as `$1` (`*` takes every event).
const SUBSCRIBED: &str = "(events = '*' OR (' ' || events || ' ') LIKE ('% ' || $1 || ' %'))";

#[async_trait::async_trait]
impl<DB> AuditStore for SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q [u8]>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Vec<u8>: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> i64: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> bool: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<String>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<i64>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<bool>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> &'r str: sqlx::ColumnIndex<DB::Row>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    async fn append_audit(&self, r: &NewAudit, now: i64) -> Result<i64, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let id = append_audit_in(&mut tx, r, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn audit(&self, f: &AuditFilter<'_>) -> Result<Vec<AuditRecord>, Error> {
        Ok(sqlx::query_as(
            "SELECT id, at, kind, actor, subject, address, user_agent, detail FROM audit \
             WHERE ($1 IS NULL OR subject = $1) AND ($2 IS NULL OR kind = $2) \
             AND id > $3 AND at >= $4 ORDER BY id LIMIT $5",
        )
        .bind(f.subject)
        .bind(f.kind)
        .bind(f.after.unwrap_or(0))
        .bind(f.since.unwrap_or(i64::MIN))
        .bind(f.limit.max(1))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn add_webhook(&self, h: &NewWebhook, now: i64) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO webhooks (id, url, events, secret, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(h.id.as_str())
        .bind(h.url.as_str())
        .bind(h.events.as_str())
        .bind(h.sealed_secret.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn webhooks(&self) -> Result<Vec<WebhookInfo>, Error> {
        Ok(sqlx::query_as(
            "SELECT w.id, w.url, w.events, w.created_at, \
             COALESCE(SUM(CASE WHEN d.id IS NOT NULL AND d.delivered_at IS NULL \
                 AND d.failed_at IS NULL THEN 1 ELSE 0 END), 0) AS waiting, \
             COALESCE(SUM(CASE WHEN d.delivered_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS delivered, \
             COALESCE(SUM(CASE WHEN d.failed_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS failed, \
             (SELECT e.last_error FROM webhook_deliveries e WHERE e.webhook_id = w.id \
                 AND e.last_error IS NOT NULL ORDER BY e.id DESC LIMIT 1) AS last_error \
             FROM webhooks w LEFT JOIN webhook_deliveries d ON d.webhook_id = w.id \
             GROUP BY w.id, w.url, w.events, w.created_at ORDER BY w.created_at, w.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn remove_webhook(&self, id: &str) -> Result<bool, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(removed == 1)
    }

    async fn enqueue_webhook(&self, id: &str, w: &WebhookEvent, now: i64) -> Result<bool, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let queued = sqlx::query(
            "INSERT INTO webhook_deliveries \
             (webhook_id, message_id, event, payload, created_at, next_attempt_at) \
             SELECT id, $2, $3, $4, $5, $5 FROM webhooks WHERE id = $1",
        )
        .bind(id)
        .bind(w.message_id.as_str())
        .bind(w.event.as_str())
        .bind(w.payload.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(queued == 1)
    }

    async fn claim_deliveries(
        &self,
        now: i64,
        lease: i64,
        limit: i64,
    ) -> Result<Vec<QueuedDelivery>, Error> {
        // As the mail outbox: a plain read first, so that an idle outbox never takes
        // the write lock; the conditions twice, so that of two senders racing on
        // PostgreSQL the second skips what the first claimed.
        let (due,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM webhook_deliveries \
             WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
             AND (claimed_until IS NULL OR claimed_until <= $1)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        if due == 0 {
            return Ok(Vec::new());
        }
        let (_turn, mut tx) = self.begin_write().await?;
        let ids: Vec<(i64,)> = sqlx::query_as(
            "UPDATE webhook_deliveries SET claimed_until = $1, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM webhook_deliveries \
                 WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $2 \
                 AND (claimed_until IS NULL OR claimed_until <= $2) \
                 ORDER BY id LIMIT $3) \
             AND delivered_at IS NULL AND failed_at IS NULL \
             AND (claimed_until IS NULL OR claimed_until <= $2) \
             RETURNING id",
        )
        .bind(now.saturating_add(lease.max(1)))
        .bind(now)
        .bind(limit.max(1))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for (id,) in ids {
            let d: QueuedDelivery = sqlx::query_as(
                "SELECT d.id, d.webhook_id, w.url, w.secret, d.message_id, d.event, d.payload, \
                 d.attempts FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE d.id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            claimed.push(d);
        }
        tx.commit().await?;
        claimed.sort_by_key(|d| d.id);
        Ok(claimed)
    }

    async fn delivery_done(&self, id: i64, now: i64) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET delivered_at = $1, claimed_until = NULL WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delivery_failed(
        &self,
        id: i64,
        now: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let query = match retry_at {
            Some(at) => sqlx::query(
                "UPDATE webhook_deliveries SET next_attempt_at = $1, claimed_until = NULL, \
                 last_error = $2 WHERE id = $3",
            )
            .bind(at),
            None => sqlx::query(
                "UPDATE webhook_deliveries SET failed_at = $1, claimed_until = NULL, \
                 last_error = $2 WHERE id = $3",
            )
            .bind(now),
        };
        query.bind(error).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sealed_webhook_secrets(&self) -> Result<Vec<(String, String)>, Error> {
        Ok(
            sqlx::query_as("SELECT id, secret FROM webhooks ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn reseal_webhook_secret(&self, id: &str, old: &str, new: &str) -> Result<bool, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let replaced = sqlx::query("UPDATE webhooks SET secret = $1 WHERE id = $2 AND secret = $3")
            .bind(new)
            .bind(id)
            .bind(old)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(replaced == 1)
    }
}

/// Inside a write transaction: appends `r` at `now`, with one delivery of its webhook
/// event to every endpoint subscribed to it ([`AuditStore::append_audit`]).
pub(super) async fn append_audit_in<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    r: &NewAudit,
    now: i64,
) -> Result<i64, Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> i64: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO audit (at, kind, actor, subject, address, user_agent, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(now)
    .bind(r.kind.as_str())
    .bind(r.actor.as_deref())
    .bind(r.subject.as_deref())
    .bind(r.address.as_deref())
    .bind(r.user_agent.as_deref())
    .bind(r.detail.as_str())
    .fetch_one(&mut **tx)
    .await?;
    if let Some(w) = &r.webhook {
        sqlx::query(&format!(
            "INSERT INTO webhook_deliveries \
             (webhook_id, message_id, event, payload, created_at, next_attempt_at) \
             SELECT id, $2, $1, $3, $4, $4 FROM webhooks WHERE {SUBSCRIBED}"
        ))
        .bind(w.event.as_str())
        .bind(w.message_id.as_str())
        .bind(w.payload.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(id)
}
