//! The mail outbox: [`MailStore`].

use super::{Backend, SqlStore};
use crate::{Error, MailQueue, MailStore, NewMail, QueuedMail};

/// Queues a message inside a write transaction (the transactional outbox: it commits
/// or rolls back with the change that caused it). Due at once.
pub(super) async fn insert_mail<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    mail: &NewMail,
    now: i64,
) -> Result<(), Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO outbox (message_id, recipient, subject, text_body, html_body, \
         created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(mail.message_id.as_str())
    .bind(mail.recipient.as_str())
    .bind(mail.subject.as_str())
    .bind(mail.text_body.as_str())
    .bind(mail.html_body.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl<DB> MailStore for SqlStore<DB>
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
    async fn enqueue_mail(&self, mail: &NewMail, now: i64) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        insert_mail(&mut tx, mail, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim_mail(&self, now: i64, lease: i64, limit: i64) -> Result<Vec<QueuedMail>, Error> {
        // Asked every second on every instance, and nearly always with nothing due: a
        // plain read first, so that an idle outbox never takes the write lock (on
        // SQLite, the whole database's).
        let (due,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM outbox \
             WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
             AND (claimed_until IS NULL OR claimed_until <= $1)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        if due == 0 {
            return Ok(Vec::new());
        }
        let (_turn, mut tx) = self.begin_write().await?;
        // The conditions twice: the inner query picks, the outer one re-checks each row
        // once it holds its lock, so that of two senders racing on PostgreSQL the
        // second, which waited for the first's row locks, skips what the first claimed.
        let mut claimed: Vec<QueuedMail> = sqlx::query_as(
            "UPDATE outbox SET claimed_until = $1, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM outbox \
                 WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $2 \
                 AND (claimed_until IS NULL OR claimed_until <= $2) \
                 ORDER BY id LIMIT $3) \
             AND sent_at IS NULL AND failed_at IS NULL \
             AND (claimed_until IS NULL OR claimed_until <= $2) \
             RETURNING id, message_id, recipient, subject, text_body, html_body, created_at, \
             attempts",
        )
        .bind(now.saturating_add(lease.max(1)))
        .bind(now)
        .bind(limit.max(1))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        claimed.sort_by_key(|m| m.id);
        Ok(claimed)
    }

    async fn mail_sent(&self, id: i64, now: i64) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        sqlx::query("UPDATE outbox SET sent_at = $1, claimed_until = NULL WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mail_failed(
        &self,
        id: i64,
        now: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let query = match retry_at {
            Some(at) => sqlx::query(
                "UPDATE outbox SET next_attempt_at = $1, claimed_until = NULL, last_error = $2 \
                 WHERE id = $3",
            )
            .bind(at),
            None => sqlx::query(
                "UPDATE outbox SET failed_at = $1, claimed_until = NULL, last_error = $2 \
                 WHERE id = $3",
            )
            .bind(now),
        };
        query.bind(error).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mail_queue(&self) -> Result<MailQueue, Error> {
        let (waiting, sent, failed): (i64, i64, i64) = sqlx::query_as(
            "SELECT \
             COALESCE(SUM(CASE WHEN sent_at IS NULL AND failed_at IS NULL THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN sent_at IS NOT NULL THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN failed_at IS NOT NULL THEN 1 ELSE 0 END), 0) \
             FROM outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(MailQueue {
            waiting,
            sent,
            failed,
        })
    }
}
