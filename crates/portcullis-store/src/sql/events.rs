//! The event log and retention: [`EventStore`].

use super::{Affected as _, Backend, SqlStore};
use crate::{Error, Event, EventKind, EventStore, Pruned, Retention, RotationPolicy};

/// An event row, before its kind is parsed.
#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    kind: String,
    subject: String,
    at: i64,
}

impl EventRow {
    /// `None` for a kind this version does not know (written by a newer one).
    fn event(self) -> Option<Event> {
        EventKind::parse(&self.kind).map(|kind| Event {
            id: self.id,
            kind,
            subject: self.subject,
            at: self.at,
        })
    }
}

#[async_trait::async_trait]
impl<DB> EventStore for SqlStore<DB>
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
    async fn events_after(&self, cursor: i64, limit: i64) -> Result<Vec<Event>, Error> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT id, kind, subject, at FROM events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(cursor)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(EventRow::event).collect())
    }

    async fn last_event_id(&self) -> Result<i64, Error> {
        let (id,): (Option<i64>,) = sqlx::query_as("SELECT MAX(id) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0))
    }

    async fn live_sessions(&self, now: i64) -> Result<i64, Error> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn prune(&self, now: i64, retention: &Retention) -> Result<Pruned, Error> {
        let cutoff = now - retention.keep;
        let policy: RotationPolicy = retention.rotation;
        let (_turn, mut tx) = self.begin_write().await?;
        // Codes first, in the order the code exchange takes its locks (code, then the
        // session and family it names), so a prune and an exchange never wait on each
        // other in a cycle. Codes live a minute; a used one is kept as long as a revocation is,
        // so that a replay can still revoke what it issued.
        sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        let events = sqlx::query("DELETE FROM events WHERE at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let sessions = sqlx::query("DELETE FROM sessions WHERE revoked_at < $1 OR expires_at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let families = sqlx::query(
            "DELETE FROM refresh_families \
             WHERE revoked_at < $1 OR last_used_at < $2 OR created_at < $3",
        )
        .bind(cutoff)
        .bind(cutoff - policy.idle)
        .bind(cutoff - policy.absolute)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Spent counters: nothing to wait for, nothing to count (a delay never
        // outlasts throttle_idle, which is longer than the longest delay).
        let throttle = sqlx::query("DELETE FROM throttle WHERE last_at <= $1")
            .bind(now - retention.throttle_idle)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let devices = sqlx::query("DELETE FROM devices WHERE last_used_at < $1")
            .bind(now - retention.device_idle)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Messages waiting to be sent are never deleted, however old.
        let mail = sqlx::query("DELETE FROM outbox WHERE sent_at < $1 OR failed_at < $1")
            .bind(now - retention.mail_kept)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // One-time mail tokens, used or not, once expired: they refuse nothing more
        // than an unknown token does.
        let email_tokens = sqlx::query("DELETE FROM email_tokens WHERE expires_at < $1")
            .bind(now - retention.keep)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Second-factor challenges and WebAuthn ceremonies live five minutes; once
        // expired they are nothing.
        let challenges = sqlx::query("DELETE FROM mfa_challenges WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            + sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at < $1")
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let audit = sqlx::query("DELETE FROM audit WHERE at < $1")
            .bind(now - retention.audit_kept)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Deliveries still waiting are never deleted, however old.
        let deliveries =
            sqlx::query("DELETE FROM webhook_deliveries WHERE delivered_at < $1 OR failed_at < $1")
                .bind(now - retention.mail_kept)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(Pruned {
            events,
            sessions,
            families,
            throttle,
            devices,
            mail,
            email_tokens,
            challenges,
            audit,
            deliveries,
        })
    }
}
