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

/// Creates each of `n` counters that is missing and returns them all, locked (their
/// keys bound as `$1…$n`, in key order): the upsert takes the rows' locks
/// (PostgreSQL, in the order of its rows) or the write lock (SQLite) until the
/// transaction ends. One statement for all of an attempt's counters.
fn lock_counters_statement(n: usize) -> String {
    let rows: Vec<String> = (1..=n).map(|i| format!("(${i}, 0, 0, 0)")).collect();
    format!(
        "INSERT INTO throttle (key, failures, last_at, blocked_until) VALUES {} \
         ON CONFLICT (key) DO UPDATE SET failures = throttle.failures \
         RETURNING key, failures, last_at, blocked_until",
        rows.join(", ")
    )
}

/// Writes `n` counters (`$1…$4n`: key, failures, last_at, blocked_until each), whether
/// or not their rows are still there.
fn write_counters_statement(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let b = 4 * i;
            format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4)
        })
        .collect();
    format!(
        "INSERT INTO throttle (key, failures, last_at, blocked_until) VALUES {} \
         ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, \
         last_at = excluded.last_at, blocked_until = excluded.blocked_until",
        rows.join(", ")
    )
}

/// A throttle counter row.
#[derive(sqlx::FromRow)]
pub(super) struct CounterRow {
    key: String,
    failures: i64,
    last_at: i64,
    blocked_until: i64,
}

fn counter(row: &CounterRow) -> Counter {
    Counter {
        failures: u32::try_from(row.failures).unwrap_or(u32::MAX),
        last_at: row.last_at,
        blocked_until: row.blocked_until,
    }
}

/// Inside a write transaction: creates the counters of `sorted` (in key order, no key
/// twice) that are missing, locks them, and returns them in that order.
async fn lock_counters<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    sorted: &[&Attempt],
) -> Result<Vec<Counter>, Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    CounterRow: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    if sorted.is_empty() {
        return Ok(Vec::new());
    }
    let statement = lock_counters_statement(sorted.len());
    let mut query = sqlx::query_as::<_, CounterRow>(&statement);
    for attempt in sorted {
        query = query.bind(attempt.key.as_str());
    }
    let rows = query.fetch_all(&mut **tx).await?;
    sorted
        .iter()
        .map(|attempt| {
            rows.iter()
                .find(|row| row.key == attempt.key)
                .map(counter)
                .ok_or_else(|| Error::Database(sqlx::Error::RowNotFound))
        })
        .collect()
}

/// Inside the write transaction that locked them: writes `counters` back, and, when
/// `drop_empty`, deletes those that came back to nothing instead.
async fn store_counters<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    counters: &[(&Attempt, Counter)],
    drop_empty: bool,
) -> Result<(), Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let (gone, kept): (Vec<_>, Vec<_>) = counters
        .iter()
        .partition(|(_, c)| drop_empty && *c == Counter::default());
    if !kept.is_empty() {
        let statement = write_counters_statement(kept.len());
        let mut query = sqlx::query(&statement);
        for (attempt, c) in &kept {
            query = query
                .bind(attempt.key.as_str())
                .bind(i64::from(c.failures))
                .bind(c.last_at)
                .bind(c.blocked_until);
        }
        query.execute(&mut **tx).await?;
    }
    if !gone.is_empty() {
        let keys: Vec<String> = (1..=gone.len()).map(|i| format!("${i}")).collect();
        let statement = format!("DELETE FROM throttle WHERE key IN ({})", keys.join(", "));
        let mut query = sqlx::query(&statement);
        for (attempt, _) in &gone {
            query = query.bind(attempt.key.as_str());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Inside a write transaction: ends admitted attempts ([`AdmissionStore::settle`]).
pub(super) async fn settle_in<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    attempts: &[Attempt],
    how: Settlement,
) -> Result<(), Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    CounterRow: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    if how == Settlement::Failure || attempts.is_empty() {
        // Counted at admission already.
        return Ok(());
    }
    let sorted = in_key_order(attempts);
    let counters = lock_counters(tx, &sorted).await?;
    let settled: Vec<(&Attempt, Counter)> = sorted
        .into_iter()
        .zip(counters)
        .map(|(attempt, mut c)| {
            throttle::settle(attempt.lane, &attempt.budget, &mut c, how);
            (attempt, c)
        })
        .collect();
    store_counters(tx, &settled, true).await
}

/// Inside a write transaction: remembers a device ([`AdmissionStore::add_device`]).
pub(super) async fn add_device_in<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    hash: &TokenHash,
    user_id: &str,
    now: i64,
) -> Result<(), Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO devices (hash, user_id, created_at, last_used_at) VALUES ($1, $2, $3, $3)",
    )
    .bind(&hash.0[..])
    .bind(user_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    // A client that never sends its credential back would add a row per login: keep
    // the most recently used ones only.
    sqlx::query(
        "DELETE FROM devices WHERE user_id = $1 AND hash NOT IN \
         (SELECT hash FROM devices WHERE user_id = $1 \
          ORDER BY last_used_at DESC, created_at DESC LIMIT $2)",
    )
    .bind(user_id)
    .bind(crate::MAX_DEVICES_PER_USER)
    .execute(&mut **tx)
    .await?;
    Ok(())
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
        let locked = lock_counters(&mut tx, &sorted).await?;
        let mut counters: Vec<_> = sorted.iter().map(|a| a.budget).zip(locked).collect();
        let admission = throttle::admit(&mut counters, now);
        if admission != Admission::Admitted {
            // Rolled back: a refusal counts nothing.
            return Ok(admission);
        }
        let counted: Vec<(&Attempt, Counter)> = sorted
            .into_iter()
            .zip(counters)
            .map(|(attempt, (_, c))| (attempt, c))
            .collect();
        store_counters(&mut tx, &counted, false).await?;
        tx.commit().await?;
        Ok(admission)
    }

    async fn settle(&self, attempts: &[Attempt], how: Settlement) -> Result<(), Error> {
        if how == Settlement::Failure {
            // Nothing to write (`settle_in` says why): no transaction either.
            return Ok(());
        }
        let (_turn, mut tx) = self.begin_write().await?;
        settle_in(&mut tx, attempts, how).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_device(&self, hash: &TokenHash, user_id: &str, now: i64) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        add_device_in(&mut tx, hash, user_id, now).await?;
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
