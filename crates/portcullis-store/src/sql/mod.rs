//! The SQL store: one implementation, generic over sqlx's [`Database`], for SQLite
//! and PostgreSQL.
//!
//! Both accept `$n` placeholders, `RETURNING` and `ON CONFLICT`, so every statement is
//! written once. What differs lives in [`Backend`] (how a write transaction begins,
//! whether events also wake other instances through `pg_notify`) and in the two files
//! that open a database (`sqlite.rs`, `postgres.rs`). Each narrow store trait has a
//! file of its own (`users.rs`, `admission.rs`, `families.rs`, `clients.rs`,
//! `grants.rs`, `keys.rs`, `events.rs`, `sessions.rs`, `mail.rs`, `recovery.rs`,
//! `factors.rs`, `audit.rs`, `providers.rs`), and `logins.rs` writes what finishes a
//! sign-in across several of them in one transaction.
//!
//! The store is an adapter: it reads and writes under the right locks and leaves every
//! decision to a pure function of the library (`portcullis::refresh::decide`,
//! `portcullis::grant::decide_exchange`, `portcullis::throttle`), which is unit-tested
//! without a database.
//!
//! Every trait impl carries the same `where` clause: what sqlx must be able to do with
//! the backend (run statements, bind and read our column types). Rust does not carry
//! such bounds from a trait's definition to its users (rust-lang/rust#20671), so they
//! cannot be said once on [`Backend`]; both backends meet them.

mod admission;
mod audit;
mod clients;
mod events;
mod factors;
mod families;
mod grants;
mod keys;
mod logins;
mod mail;
mod postgres;
mod providers;
mod recovery;
mod sessions;
mod sqlite;
mod users;

use std::sync::Arc;

use sqlx::{Database, Pool};

use crate::{Error, EventKind, Store};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The channel PostgreSQL instances listen on for new events.
pub const NOTIFY_CHANNEL: &str = "portcullis_events";

/// What sets the two databases apart, beyond the URL they are opened with. Sealed:
/// implemented for [`sqlx::Sqlite`] and [`sqlx::Postgres`] only.
pub trait Backend: Database<QueryResult: Affected> + sealed::Sealed {
    /// Its name, for logs.
    const NAME: &'static str;
    /// Events also wake the other instances (`pg_notify`, delivered at commit).
    const NOTIFY: bool;
    /// The statement that begins a write transaction, when not the default `BEGIN`.
    const BEGIN_WRITE: Option<&'static str>;
    /// What a `SELECT` ends with to lock the rows it reads (PostgreSQL's `FOR
    /// UPDATE`); nothing on SQLite, whose write transaction holds the whole file.
    const LOCK_ROWS: &'static str;
}

/// How many rows a statement changed (each backend's result type has the method; this
/// names it for generic code).
pub trait Affected {
    /// Rows inserted, updated or deleted.
    fn rows_affected(&self) -> u64;
}

impl Affected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::sqlite::SqliteQueryResult::rows_affected(self)
    }
}

impl Affected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::postgres::PgQueryResult::rows_affected(self)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for sqlx::Sqlite {}
    impl Sealed for sqlx::Postgres {}
}

impl Backend for sqlx::Sqlite {
    const NAME: &'static str = "sqlite";
    const NOTIFY: bool = false;
    /// `BEGIN IMMEDIATE` takes SQLite's write lock at once: a deferred transaction
    /// that read first could not wait for it when another process holds it, and
    /// fails.
    const BEGIN_WRITE: Option<&'static str> = Some("BEGIN IMMEDIATE");
    const LOCK_ROWS: &'static str = "";
}

impl Backend for sqlx::Postgres {
    const NAME: &'static str = "postgres";
    const NOTIFY: bool = true;
    /// PostgreSQL's row locks order the writers.
    const BEGIN_WRITE: Option<&'static str> = None;
    const LOCK_ROWS: &'static str = " FOR UPDATE";
}

/// A store over one database: [`SqliteStore`] or [`PostgresStore`].
pub struct SqlStore<DB: Database> {
    pool: Pool<DB>,
    /// SQLite only: this process's writers take turns here before they begin, in
    /// arrival order, instead of meeting at SQLite's write lock, where a loser sleeps
    /// in the busy handler (1, 2, 5, 10 … 100 ms) whatever happens meanwhile: a 100 ms
    /// tail at a thousand refreshes a second. Other processes on the file (the CLI, a
    /// second instance) still meet at the lock, as before.
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// The URL it was opened with (PostgreSQL's event listener opens its own
    /// connection).
    url: String,
    /// SQLite only: dropped with the last clone of the store, which ends the
    /// checkpoint task.
    _checkpoints: Option<Arc<tokio::sync::watch::Sender<()>>>,
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
            writer: self.writer.clone(),
            url: self.url.clone(),
            _checkpoints: self._checkpoints.clone(),
        }
    }
}

impl<DB: Database> std::fmt::Debug for SqlStore<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: not shown.
        f.debug_struct("SqlStore")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// A write transaction, with this process's turn when the backend takes turns.
type Write<DB> = (
    Option<tokio::sync::OwnedMutexGuard<()>>,
    sqlx::Transaction<'static, DB>,
);

impl<DB: Backend> SqlStore<DB> {
    /// The pool, for tests and tools.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Begins a write transaction: this process's turn first (SQLite), then the
    /// backend's `BEGIN`.
    async fn begin_write(&self) -> Result<Write<DB>, sqlx::Error> {
        let turn = match &self.writer {
            Some(writer) => Some(writer.clone().lock_owned().await),
            None => None,
        };
        let tx = match DB::BEGIN_WRITE {
            Some(statement) => self.pool.begin_with(statement).await?,
            None => self.pool.begin().await?,
        };
        Ok((turn, tx))
    }
}

impl<DB> SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    /// Gives accounts created before migration 0003 their skeleton. Two older accounts
    /// that look alike keep working; the later one is left without a skeleton (and
    /// said so in the log), and new look-alikes of either are still refused.
    async fn fill_skeletons(&self) -> Result<(), Error> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, username FROM users WHERE skeleton IS NULL ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id, username) in rows {
            let skeleton = portcullis::username::skeleton(&username);
            match sqlx::query("UPDATE users SET skeleton = $1 WHERE id = $2")
                .bind(skeleton.as_str())
                .bind(id.as_str())
                .execute(&self.pool)
                .await
                .map_err(Error::from)
            {
                Ok(_) => {}
                Err(Error::Conflict) => tracing::warn!(
                    user = %id,
                    "an older account's username looks like another's (UTS #39); both keep working"
                ),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<DB> Store for SqlStore<DB>
where
    Self: crate::UserStore
        + crate::FamilyStore
        + crate::AdmissionStore
        + crate::ClientStore
        + crate::GrantStore
        + crate::KeyStore
        + crate::EventStore
        + crate::MailStore
        + crate::RecoveryStore
        + crate::FactorStore
        + crate::AuditStore
        + crate::ProviderStore
        + crate::LoginStore
        + portcullis::session::SessionStore,
    DB: Backend,
{
    fn backend(&self) -> &'static str {
        <DB as Backend>::NAME
    }
}

/// Locks an account's row inside a write transaction (a no-op update: a row lock on
/// PostgreSQL; SQLite's write lock is already held), then reads it with `select` (a
/// query of the `users` row by `$1`, the id): the first step of every writer that
/// changes what an account may do, so that they all take one lock order.
pub(super) async fn lock_user<DB, T>(
    tx: &mut sqlx::Transaction<'static, DB>,
    user_id: &str,
    select: &'static str,
) -> Result<Option<T>, Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    T: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
{
    sqlx::query("UPDATE users SET not_before = not_before WHERE id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(sqlx::query_as(select)
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await?)
}

/// Appends to the event log; on PostgreSQL, also wakes every listening instance when
/// the transaction commits.
async fn insert_event<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    kind: EventKind,
    subject: &str,
    at: i64,
) -> Result<(), Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query("INSERT INTO events (kind, subject, at) VALUES ($1, $2, $3)")
        .bind(kind.as_str())
        .bind(subject)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    if DB::NOTIFY {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
