//! Throttle counters and known devices: [`AdmissionStore`].

use portcullis::throttle::{self, Counter};

use super::{Backend, SqlStore};
use crate::{Admission, AdmissionStore, Attempt, Error, Settlement, TokenHash};

/// Counters are taken in key order, so two attempts that share counters lock them in
/// the same order and never deadlock.
fn in_key_order(attempts: &[Attempt]) -> Vec<&Attempt> {
    let mut sorted: Vec<&Attempt> = attempts.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    sorted.dedup_by(|a, b| a.key == b.key);
    sorted
}

/// Creates a counter if it is missing and returns it, locked: the upsert takes the
/// row lock (PostgreSQL) or the write lock (SQLite) until the transaction ends.
const LOCK_COUNTER: &str = "INSERT INTO throttle (key, failures, last_at, blocked_until) \
     VALUES ($1, 0, 0, 0) ON CONFLICT (key) DO UPDATE SET failures = throttle.failures \
     RETURNING failures, last_at, blocked_until";

const UPDATE_COUNTER: &str =
    "UPDATE throttle SET failures = $1, last_at = $2, blocked_until = $3 WHERE key = $4";

/// A throttle counter row.
#[derive(sqlx::FromRow)]
struct CounterRow {
    failures: i64,
    last_at: i64,
    blocked_until: i64,
}

fn counter(row: CounterRow) -> Counter {
    Counter {
        failures: u32::try_from(row.failures).unwrap_or(u32::MAX),
        last_at: row.last_at,
        blocked_until: row.blocked_until,
    }
}

#[async_trait::async_trait]
impl<DB> AdmissionStore for SqlStore<DB>
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
    async fn admit(&self, attempts: &[Attempt], now: i64) -> Result<Admission, Error> {
        let sorted = in_key_order(attempts);
        let (_turn, mut tx) = self.begin_write().await?;
        let mut counters = Vec::with_capacity(sorted.len());
        for attempt in &sorted {
            let row: CounterRow = sqlx::query_as(LOCK_COUNTER)
                .bind(&attempt.key)
                .fetch_one(&mut *tx)
                .await?;
            counters.push((attempt.budget, counter(row)));
        }
        let admission = throttle::admit(&mut counters, now);
        if admission != Admission::Admitted {
            // Rolled back: a refusal counts nothing.
            return Ok(admission);
        }
        for (attempt, (_, c)) in sorted.iter().zip(&counters) {
            sqlx::query(UPDATE_COUNTER)
                .bind(i64::from(c.failures))
                .bind(c.last_at)
                .bind(c.blocked_until)
                .bind(&attempt.key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(admission)
    }

    async fn settle(&self, attempts: &[Attempt], how: Settlement) -> Result<(), Error> {
        if how == Settlement::Failure {
            // Counted at admission already.
            return Ok(());
        }
        let (_turn, mut tx) = self.begin_write().await?;
        for attempt in in_key_order(attempts) {
            let row: CounterRow = sqlx::query_as(LOCK_COUNTER)
                .bind(&attempt.key)
                .fetch_one(&mut *tx)
                .await?;
            let mut c = counter(row);
            throttle::settle(attempt.lane, &attempt.budget, &mut c, how);
            if c == Counter::default() {
                sqlx::query("DELETE FROM throttle WHERE key = $1")
                    .bind(&attempt.key)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(UPDATE_COUNTER)
                    .bind(i64::from(c.failures))
                    .bind(c.last_at)
                    .bind(c.blocked_until)
                    .bind(&attempt.key)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn add_device(&self, hash: &TokenHash, user_id: &str, now: i64) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO devices (hash, user_id, created_at, last_used_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(&hash.0[..])
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // A client that never sends its credential back would add a row per
        // login: keep the most recently used ones only.
        sqlx::query(
            "DELETE FROM devices WHERE user_id = $1 AND hash NOT IN \
             (SELECT hash FROM devices WHERE user_id = $1 \
              ORDER BY last_used_at DESC, created_at DESC LIMIT $2)",
        )
        .bind(user_id)
        .bind(crate::MAX_DEVICES_PER_USER)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn device_owner(
        &self,
        hash: &TokenHash,
        now: i64,
        idle: i64,
    ) -> Result<Option<String>, Error> {
        let owner: Option<(String,)> = sqlx::query_as(
            "UPDATE devices SET last_used_at = $1 WHERE hash = $2 AND last_used_at >= $3 \
             RETURNING user_id",
        )
        .bind(now)
        .bind(&hash.0[..])
        .bind(now - idle)
        .fetch_optional(&self.pool)
        .await?;
        Ok(owner.map(|(id,)| id))
    }
}
