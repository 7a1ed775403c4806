//! The two SQL backends, generated from one body of SQL text.
//!
//! SQLite and PostgreSQL both accept `$n` placeholders, `RETURNING` and the statements
//! below, so the implementation is written once (in `store_impl!`) and instantiated for
//! each pool type. The differences live in `connect` and in whether events also wake
//! other instances through `pg_notify`.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use portcullis::refresh::{Decision, FamilyView, decide};
use portcullis::session::{
    self, NewSession, SessionHash, SessionRecord, SessionStore, StoreFuture,
};
use portcullis::throttle::{self, Counter};

use crate::{
    Admission, AdmissionStore, Attempt, AuthCode, Client, ClientStore, CodeExchange, Consent,
    Error, Event, EventKind, EventStore, Exchanged, FamilyInfo, FamilyStore, GrantStore, KeyStore,
    NewUser, Pruned, RefreshInfo, Retention, RevokedState, Rotation, RotationPolicy, ScopeChange,
    Settlement, Store, StoredKey, TokenHash, User, UserStore, effective_scope,
};

/// The channel PostgreSQL instances listen on for new events.
pub const NOTIFY_CHANNEL: &str = "portcullis_events";

/// SQLite, in WAL mode: many readers, one writer at a time (rotations are serialized by
/// the database's write lock, which is what makes them atomic).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// This process's writers take turns here before they begin, in arrival order,
    /// instead of meeting at SQLite's write lock, where a loser sleeps in the busy
    /// handler (1, 2, 5, 10 … 100 ms) whatever happens meanwhile: a 100 ms tail at a
    /// thousand refreshes a second. Other processes on the file (the CLI, a second
    /// instance) still meet at the lock, as before.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Dropped with the last clone of the store: the checkpoint task then ends.
    _checkpoints: Option<std::sync::Arc<tokio::sync::watch::Sender<()>>>,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::Config(format!("{url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a committed transaction survives a crash or restart
            // of the process; only an OS crash or power cut can lose the last ones.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Checkpoints run in the background (`checkpoints`), not in whichever
            // commit crosses 1,000 pages of WAL: that commit used to pay the copy and
            // the fsync, some 80 ms here, with every writer queued behind it.
            .pragma("wal_autocheckpoint", "0");
        let memory = url.contains(":memory:");
        if !memory {
            prepare_private_file(options.get_filename())?;
        }
        let pool = SqlitePoolOptions::new()
            // An in-memory database lives in one connection. A file gets four: a WAL
            // database has five read marks, and a reader that finds them all taken by
            // other snapshots gets SQLITE_BUSY and sleeps in the busy handler (1, 2, 5,
            // 10 … ms), which is what an eight-connection pool did under a thousand
            // refreshes a second. Four connections keep one mark for the checkpointer
            // and another process; two cores do not run more queries at once anyway.
            .max_connections(if memory { 1 } else { 4 })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let checkpointer = (!memory).then(|| {
            let (stop, stopped) = tokio::sync::watch::channel(());
            tokio::spawn(checkpoints(pool.clone(), stopped));
            std::sync::Arc::new(stop)
        });
        let store = SqliteStore {
            pool,
            writer: std::sync::Arc::new(tokio::sync::Mutex::new(())),
            _checkpoints: checkpointer,
        };
        store.fill_skeletons().await?;
        Ok(store)
    }

    /// The pool, for tests and tools.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Begins a write transaction: this process's turn first, then `BEGIN IMMEDIATE`,
    /// which takes SQLite's write lock at once (a deferred transaction that read
    /// first could not wait for it when another process holds it, and fails).
    async fn begin_write(
        &self,
    ) -> Result<
        (
            Option<tokio::sync::OwnedMutexGuard<()>>,
            sqlx::Transaction<'static, sqlx::Sqlite>,
        ),
        sqlx::Error,
    > {
        let turn = self.writer.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok((Some(turn), tx))
    }
}

/// Copies the WAL back into the database every second, without blocking writers
/// (`PASSIVE`: it does what it can around them and readers), until the pool closes.
/// With `wal_autocheckpoint` off, this is what keeps the WAL from growing; a process
/// that only opens the file briefly (the CLI) leaves the rest to the server, or to
/// SQLite's checkpoint when the last connection closes. Ends with the store.
async fn checkpoints(pool: SqlitePool, mut stopped: tokio::sync::watch::Receiver<()>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // The store is gone (every clone dropped): so is this task's pool.
            _ = stopped.changed() => return,
        }
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed; trying again in a second");
        }
    }
}

/// What a failed first connection means, and what to do about it.
fn explain_postgres(e: &sqlx::Error, options: &sqlx::postgres::PgConnectOptions) -> String {
    let (host, port) = (options.get_host(), options.get_port());
    let database = options.get_database().unwrap_or("postgres");
    let user = options.get_username();
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => format!(
            "connection refused at {host}:{port}: is PostgreSQL running there? (start it, or fix the host and port in database_url)"
        ),
        sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000") => format!(
            "database {database:?} does not exist on {host}:{port}: create it with `createdb {database}` (or CREATE DATABASE {database})"
        ),
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("28P01" | "28000")) => {
            format!(
                "PostgreSQL at {host}:{port} refused user {user:?}: check the user and password in database_url"
            )
        }
        other => format!("cannot connect to PostgreSQL at {host}:{port}: {other}"),
    }
}

/// The database holds password hashes, token hashes and (sealed) private keys: a new
/// file is created readable by its owner only (0600), and SQLite gives its WAL and
/// shared-memory files the same mode. An existing file readable by others is said so.
fn prepare_private_file(path: &std::path::Path) -> Result<(), Error> {
    if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty())
        && !folder.is_dir()
    {
        return Err(Error::Connect(format!(
            "folder {} does not exist: create it, or choose another database_url",
            folder.display()
        )));
    }
    if path.exists() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", meta.permissions().mode() & 0o777),
                    "the database file is readable by other users; chmod 600 it"
                );
            }
        }
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        // Another process made it first: fine, SQLite opens it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Config(format!("creating {}: {e}", path.display()))),
    }
}

/// PostgreSQL, for several instances behind a load balancer.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    url: String,
}

impl PostgresStore {
    /// Connects and migrates.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| Error::Config(format!("database_url is not a PostgreSQL URL: {e}")))?;
        // One connection first, so that what is wrong is said once, in plain words, and
        // within a few seconds (a pool only says "timed out", after ten).
        let probe = tokio::time::timeout(
            Duration::from_secs(3),
            sqlx::ConnectOptions::connect(&options),
        )
        .await;
        match probe {
            Err(_) => {
                return Err(Error::Connect(format!(
                    "no answer from PostgreSQL at {}:{} within 3 s: is it running, and reachable from here?",
                    options.get_host(),
                    options.get_port()
                )));
            }
            Ok(Err(e)) => return Err(Error::Connect(explain_postgres(&e, &options))),
            Ok(Ok(connection)) => {
                let _ = sqlx::Connection::close(connection).await;
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let store = PostgresStore {
            pool,
            url: url.to_owned(),
        };
        store.fill_skeletons().await?;
        Ok(store)
    }

    /// The pool, for tests and tools.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The URL it was opened with (the event listener opens its own connection).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Begins a write transaction (PostgreSQL's row locks order the writers).
    async fn begin_write(
        &self,
    ) -> Result<
        (
            Option<tokio::sync::OwnedMutexGuard<()>>,
            sqlx::Transaction<'static, sqlx::Postgres>,
        ),
        sqlx::Error,
    > {
        Ok((None, self.pool.begin().await?))
    }
}

/// The columns of a [`User`], as a literal so queries are `concat!`ed at compile time.
macro_rules! user_columns {
    () => {
        "id, username, password_hash, scope, disabled, not_before, created_at"
    };
}

/// The columns of a [`Client`], likewise.
macro_rules! client_columns {
    () => {
        "id, name, secret_hash, scope, disabled, not_before, created_at, \
         redirect_uris, post_logout_redirect_uris, public, first_party"
    };
}

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

/// A family row as the rotation reads it.
#[derive(sqlx::FromRow)]
struct FamilyRow {
    id: String,
    user_id: String,
    scope: String,
    created_at: i64,
    last_used_at: i64,
    revoked_at: Option<i64>,
    current_hash: Option<Vec<u8>>,
    previous_hash: Option<Vec<u8>>,
    rotated_at: Option<i64>,
    disabled: bool,
    client_id: Option<String>,
}

fn hash32(bytes: Option<&[u8]>) -> Option<[u8; 32]> {
    bytes.and_then(|b| b.try_into().ok())
}

impl FamilyRow {
    fn view(&self) -> FamilyView {
        FamilyView {
            revoked: self.revoked_at.is_some(),
            user_disabled: self.disabled,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            // A family without a live token (impossible after migration 0003) has
            // nothing that matches: every token of it is reuse.
            current: hash32(self.current_hash.as_deref()).unwrap_or([0; 32]),
            previous: hash32(self.previous_hash.as_deref()).zip(self.rotated_at),
        }
    }
}

/// True when `new` lacks a scope `old` had.
fn removes_scope(old: &str, new: &str) -> bool {
    old.split_whitespace()
        .any(|s| !new.split_whitespace().any(|n| n == s))
}

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

/// An authorization code row, with what its use left behind.
#[derive(sqlx::FromRow)]
struct CodeRow {
    hash: Vec<u8>,
    client_id: String,
    user_id: String,
    redirect_uri: String,
    scope: String,
    code_challenge: String,
    nonce: Option<String>,
    auth_time: i64,
    session_id: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    family_id: Option<String>,
}

impl CodeRow {
    fn code(self) -> AuthCode {
        AuthCode {
            hash: self.hash,
            client_id: self.client_id,
            user_id: self.user_id,
            redirect_uri: self.redirect_uri,
            scope: self.scope,
            code_challenge: self.code_challenge,
            nonce: self.nonce,
            auth_time: self.auth_time,
            session_id: self.session_id,
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}

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

macro_rules! store_impl {
    ($store:ty, $backend:literal, $notify:literal) => {
        impl $store {
            /// Gives accounts created before migration 0003 their skeleton. Two older
            /// accounts that look alike keep working; the later one is left without
            /// a skeleton (and said so in the log), and new look-alikes of either are
            /// still refused.
            async fn fill_skeletons(&self) -> Result<(), Error> {
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT id, username FROM users WHERE skeleton IS NULL ORDER BY created_at, id")
                        .fetch_all(&self.pool)
                        .await?;
                for (id, username) in rows {
                    let skeleton = portcullis::username::skeleton(&username);
                    match sqlx::query("UPDATE users SET skeleton = $1 WHERE id = $2")
                        .bind(&skeleton)
                        .bind(&id)
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

        impl $store {
            /// Revokes a family by id if `sql` (which binds now, the family id and its
            /// owner, and returns the id) finds it live and owned, with its event.
            async fn revoke_owned_family(
                &self,
                sql: &'static str,
                owner: &str,
                family_id: &str,
                now: i64,
            ) -> Result<bool, Error> {
                let (_turn, mut tx) = self.begin_write().await?;
                let revoked: Option<(String,)> = sqlx::query_as(sql)
                    .bind(now)
                    .bind(family_id)
                    .bind(owner)
                    .fetch_optional(&mut *tx)
                    .await?;
                if revoked.is_some() {
                    insert_event(&mut tx, EventKind::FamilyRevoked, family_id, now, $notify).await?;
                }
                tx.commit().await?;
                Ok(revoked.is_some())
            }
        }

        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }
        }

        #[async_trait::async_trait]
        impl UserStore for $store {
            async fn create_user(&self, new: NewUser) -> Result<User, Error> {
                sqlx::query(
                    "INSERT INTO users (id, username, skeleton, password_hash, scope, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&new.id)
                .bind(&new.username)
                .bind(&new.skeleton)
                .bind(&new.password_hash)
                .bind(&new.scope)
                .bind(new.created_at)
                .execute(&self.pool)
                .await?;
                Ok(User {
                    id: new.id,
                    username: new.username,
                    password_hash: new.password_hash,
                    scope: new.scope,
                    disabled: false,
                    not_before: 0,
                    created_at: new.created_at,
                })
            }

            async fn user_by_username(&self, username: &str) -> Result<Option<User>, Error> {
                Ok(sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE username = $1"))
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn user_by_id(&self, id: &str) -> Result<Option<User>, Error> {
                Ok(sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_users(&self) -> Result<Vec<User>, Error> {
                Ok(sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users ORDER BY username"))
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<(), Error> {
                sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(hash)
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn set_disabled(&self, username: &str, disabled: bool) -> Result<bool, Error> {
                let done = sqlx::query("UPDATE users SET disabled = $1 WHERE username = $2")
                    .bind(disabled)
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn set_scope(
                &self,
                username: &str,
                scope: &str,
                now: i64,
            ) -> Result<Option<ScopeChange>, Error> {
                let (_turn, mut tx) = self.begin_write().await?;
                // The write first: it locks the row (or the database) before the read.
                sqlx::query("UPDATE users SET scope = scope WHERE username = $1")
                    .bind(username)
                    .execute(&mut *tx)
                    .await?;
                let Some((user_id, old)): Option<(String, String)> =
                    sqlx::query_as("SELECT id, scope FROM users WHERE username = $1")
                        .bind(username)
                        .fetch_optional(&mut *tx)
                        .await?
                else {
                    return Ok(None);
                };
                let removed = removes_scope(&old, scope);
                sqlx::query(
                    "UPDATE users SET scope = $1, \
                     not_before = CASE WHEN $2 AND not_before < $3 THEN $3 ELSE not_before END \
                     WHERE id = $4",
                )
                .bind(scope)
                .bind(removed)
                .bind(now)
                .bind(&user_id)
                .execute(&mut *tx)
                .await?;
                let mut families = sqlx::query(
                    "UPDATE refresh_families SET scope = $1 \
                     WHERE user_id = $2 AND revoked_at IS NULL AND client_id IS NULL",
                )
                .bind(scope)
                .bind(&user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                // A client's grant keeps what the person allowed it, less what the
                // account lost; it never gains what the account gained.
                let granted: Vec<(String, String)> = sqlx::query_as(
                    "SELECT id, scope FROM refresh_families \
                     WHERE user_id = $1 AND revoked_at IS NULL AND client_id IS NOT NULL",
                )
                .bind(&user_id)
                .fetch_all(&mut *tx)
                .await?;
                for (family_id, family_scope) in granted {
                    let kept = effective_scope(&family_scope, scope);
                    if kept != family_scope {
                        sqlx::query("UPDATE refresh_families SET scope = $1 WHERE id = $2")
                            .bind(&kept)
                            .bind(&family_id)
                            .execute(&mut *tx)
                            .await?;
                        families += 1;
                    }
                }
                let sessions = sqlx::query(
                    "UPDATE sessions SET scope = $1 WHERE user_id = $2 AND revoked_at IS NULL",
                )
                .bind(scope)
                .bind(&user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if removed {
                    insert_event(&mut tx, EventKind::UserNotBefore, &user_id, now, $notify).await?;
                }
                tx.commit().await?;
                Ok(Some(ScopeChange { removed, families, sessions }))
            }
        }

        #[async_trait::async_trait]
        impl AdmissionStore for $store {
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

        #[async_trait::async_trait]
        impl FamilyStore for $store {
            async fn create_family(
                &self,
                family_id: &str,
                user_id: &str,
                token: &TokenHash,
                label: &str,
                now: i64,
            ) -> Result<Option<String>, Error> {
                let (_turn, mut tx) = self.begin_write().await?;
                let scope: Option<(String,)> = sqlx::query_as(
                    "INSERT INTO refresh_families (id, user_id, scope, created_at, last_used_at, current_hash, label) \
                     SELECT $1, id, scope, $3, $3, $4, $5 FROM users WHERE id = $2 AND NOT disabled \
                     RETURNING scope",
                )
                .bind(family_id)
                .bind(user_id)
                .bind(now)
                .bind(&token.0[..])
                .bind(label)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((scope,)) = scope else {
                    return Ok(None);
                };
                sqlx::query("INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES ($1, $2, $3)")
                    .bind(&token.0[..])
                    .bind(family_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(scope))
            }

            async fn rotate_for(
                &self,
                client: Option<&str>,
                presented: &TokenHash,
                next: &TokenHash,
                now: i64,
                policy: RotationPolicy,
            ) -> Result<Rotation, Error> {
                let (_turn, mut tx) = self.begin_write().await?;
                // Lock the family first (a write: the row lock in PostgreSQL, the write
                // lock in SQLite), then read it: concurrent redemptions of any token of
                // one family serialize here, and each decides on what the last one wrote.
                sqlx::query(
                    "UPDATE refresh_families SET last_used_at = last_used_at \
                     WHERE id = (SELECT family_id FROM refresh_tokens WHERE hash = $1)",
                )
                .bind(&presented.0[..])
                .execute(&mut *tx)
                .await?;
                let family: Option<FamilyRow> = sqlx::query_as(
                    "SELECT f.id, f.user_id, f.scope, f.created_at, f.last_used_at, f.revoked_at, \
                     f.current_hash, f.previous_hash, f.rotated_at, u.disabled, f.client_id \
                     FROM refresh_tokens t \
                     JOIN refresh_families f ON f.id = t.family_id \
                     JOIN users u ON u.id = f.user_id \
                     WHERE t.hash = $1",
                )
                .bind(&presented.0[..])
                .fetch_optional(&mut *tx)
                .await?;
                let Some(family) = family else {
                    return Ok(Rotation::Refused);
                };
                // Another owner's token: not this caller's to redeem, nor to burn (a
                // client presenting a stolen token must not revoke its owner's grant).
                if family.client_id.as_deref() != client {
                    return Ok(Rotation::Refused);
                }
                let decision = decide(&presented.0, &family.view(), now, policy);
                let retry = match decision {
                    // Dropping the transaction changes nothing.
                    Decision::Refuse => return Ok(Rotation::Refused),
                    Decision::Reuse => {
                        sqlx::query("UPDATE refresh_families SET revoked_at = $1 WHERE id = $2")
                            .bind(now)
                            .bind(&family.id)
                            .execute(&mut *tx)
                            .await?;
                        insert_event(&mut tx, EventKind::FamilyRevoked, &family.id, now, $notify).await?;
                        tx.commit().await?;
                        return Ok(Rotation::ReuseDetected { family_id: family.id });
                    }
                    Decision::Rotate => false,
                    Decision::RetryWithinGrace => true,
                };
                sqlx::query("INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES ($1, $2, $3)")
                    .bind(&next.0[..])
                    .bind(&family.id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                // The token that stops being live: the presented one on a rotation, the
                // successor a retry replaces.
                sqlx::query("UPDATE refresh_tokens SET rotated_at = $1 WHERE hash = $2 AND rotated_at IS NULL")
                    .bind(now)
                    .bind(family.current_hash.as_deref())
                    .execute(&mut *tx)
                    .await?;
                if retry {
                    sqlx::query(
                        "UPDATE refresh_families SET current_hash = $1, last_used_at = $2 WHERE id = $3",
                    )
                    .bind(&next.0[..])
                    .bind(now)
                    .bind(&family.id)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    sqlx::query(
                        "UPDATE refresh_families SET current_hash = $1, previous_hash = $2, \
                         rotated_at = $3, last_used_at = $3 WHERE id = $4",
                    )
                    .bind(&next.0[..])
                    .bind(&presented.0[..])
                    .bind(now)
                    .bind(&family.id)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(Rotation::Rotated {
                    retry,
                    family_id: family.id,
                    user_id: family.user_id,
                    scope: family.scope,
                })
            }

            async fn families_of(
                &self,
                user_id: &str,
                now: i64,
                policy: RotationPolicy,
            ) -> Result<Vec<FamilyInfo>, Error> {
                // The same bounds as `refresh::decide`: a family past either is over.
                Ok(sqlx::query_as(
                    "SELECT id, label, created_at, last_used_at FROM refresh_families \
                     WHERE user_id = $1 AND revoked_at IS NULL \
                     AND last_used_at >= $2 AND created_at >= $3 \
                     ORDER BY last_used_at DESC, id",
                )
                .bind(user_id)
                .bind(now.saturating_sub(policy.idle))
                .bind(now.saturating_sub(policy.absolute))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn revoke_family(&self, user_id: &str, family_id: &str, now: i64) -> Result<bool, Error> {
                self.revoke_owned_family(
                    "UPDATE refresh_families SET revoked_at = $1 \
                     WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL RETURNING id",
                    user_id,
                    family_id,
                    now,
                )
                .await
            }

            async fn revoke_family_of(&self, token: &TokenHash, now: i64) -> Result<Option<String>, Error> {
                let (_turn, mut tx) = self.begin_write().await?;
                // The write first (it takes the lock before anything is read, so SQLite
                // never has to upgrade a read snapshot), then what it found.
                sqlx::query(
                    "UPDATE refresh_families SET last_used_at = last_used_at \
                     WHERE id = (SELECT family_id FROM refresh_tokens WHERE hash = $1)",
                )
                .bind(&token.0[..])
                .execute(&mut *tx)
                .await?;
                let family: Option<(String, Option<i64>)> = sqlx::query_as(
                    "SELECT f.id, f.revoked_at FROM refresh_tokens t \
                     JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = $1",
                )
                .bind(&token.0[..])
                .fetch_optional(&mut *tx)
                .await?;
                let Some((family_id, revoked_at)) = family else {
                    return Ok(None);
                };
                if revoked_at.is_none() {
                    sqlx::query("UPDATE refresh_families SET revoked_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(&family_id)
                        .execute(&mut *tx)
                        .await?;
                    insert_event(&mut tx, EventKind::FamilyRevoked, &family_id, now, $notify).await?;
                }
                tx.commit().await?;
                Ok(Some(family_id))
            }

            async fn revoke_user(&self, user_id: &str, now: i64) -> Result<Vec<String>, Error> {
                let (_turn, mut tx) = self.begin_write().await?;
                // The user's row first, as `set_scope` does: one lock order, no deadlock.
                sqlx::query("UPDATE users SET not_before = not_before WHERE id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                let revoked: Vec<(String,)> = sqlx::query_as(
                    "UPDATE refresh_families SET revoked_at = $1 \
                     WHERE user_id = $2 AND revoked_at IS NULL RETURNING id",
                )
                .bind(now)
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
                let sessions: Vec<(String,)> = sqlx::query_as(
                    "UPDATE sessions SET revoked_at = $1 \
                     WHERE user_id = $2 AND revoked_at IS NULL RETURNING id",
                )
                .bind(now)
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query("UPDATE users SET not_before = $1 WHERE id = $2")
                    .bind(now)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                // Codes not exchanged yet would start grants after this logout.
                sqlx::query(
                    "UPDATE authorization_codes SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
                )
                .bind(now)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
                for (family_id,) in &revoked {
                    insert_event(&mut tx, EventKind::FamilyRevoked, family_id, now, $notify).await?;
                }
                for (session_id,) in &sessions {
                    insert_event(&mut tx, EventKind::SessionRevoked, session_id, now, $notify).await?;
                }
                insert_event(&mut tx, EventKind::UserNotBefore, user_id, now, $notify).await?;
                tx.commit().await?;
                Ok(revoked.into_iter().chain(sessions).map(|(id,)| id).collect())
            }

            async fn family_of(&self, token: &TokenHash) -> Result<Option<(String, Option<String>)>, Error> {
                Ok(sqlx::query_as(
                    "SELECT f.id, f.client_id FROM refresh_tokens t \
                     JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = $1",
                )
                .bind(&token.0[..])
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn revoked_since(&self, since: i64) -> Result<RevokedState, Error> {
                let families: Vec<(String,)> = sqlx::query_as(
                    "SELECT id FROM refresh_families WHERE revoked_at >= $1 \
                     UNION ALL SELECT id FROM sessions WHERE revoked_at >= $1",
                )
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
                let not_before: Vec<(String, i64)> =
                    sqlx::query_as(
                        "SELECT id, not_before FROM users WHERE not_before >= $1 \
                         UNION ALL SELECT id, not_before FROM clients WHERE not_before >= $1",
                    )
                        .bind(since)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(RevokedState {
                    families: families.into_iter().map(|(id,)| id).collect(),
                    not_before,
                })
            }
        }

        #[async_trait::async_trait]
        impl ClientStore for $store {
            async fn add_client(&self, client: &Client) -> Result<(), Error> {
                // A taken name is a unique violation: `Error::Conflict`.
                sqlx::query(concat!(
                    "INSERT INTO clients (", client_columns!(), ") \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                ))
                .bind(&client.id)
                .bind(&client.name)
                .bind(&client.secret_hash)
                .bind(&client.scope)
                .bind(client.disabled)
                .bind(client.not_before)
                .bind(client.created_at)
                .bind(&client.redirect_uris)
                .bind(&client.post_logout_redirect_uris)
                .bind(client.public)
                .bind(client.first_party)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn client_by_id(&self, id: &str) -> Result<Option<Client>, Error> {
                Ok(sqlx::query_as(concat!("SELECT ", client_columns!(), " FROM clients WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn clients(&self) -> Result<Vec<Client>, Error> {
                Ok(sqlx::query_as(concat!("SELECT ", client_columns!(), " FROM clients ORDER BY name"))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn set_client_disabled(
                &self,
                name: &str,
                disabled: bool,
                now: i64,
            ) -> Result<Option<Client>, Error> {
                let (_turn, mut tx) = self.begin_write().await?;
                // Disabling refuses the tokens already issued, as disabling a user does:
                // all of them, those of the current second included (a disabled client
                // gets no new ones), so "not before" is the next second.
                let not_before = now.saturating_add(1);
                let client: Option<Client> = sqlx::query_as(concat!(
                    "UPDATE clients SET disabled = $1, \
                     not_before = CASE WHEN $1 THEN $2 ELSE not_before END \
                     WHERE name = $3 RETURNING ", client_columns!(),
                ))
                .bind(disabled)
                .bind(not_before)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(c) = &client
                    && disabled
                {
                    insert_event(&mut tx, EventKind::UserNotBefore, &c.id, not_before, $notify).await?;
                    // The grants it holds for people: their access tokens carry the
                    // person's `sub`, so the client's "not before" does not reach them;
                    // their families' ids (`sid`) do.
                    let families: Vec<(String,)> = sqlx::query_as(
                        "UPDATE refresh_families SET revoked_at = $1 \
                         WHERE client_id = $2 AND revoked_at IS NULL RETURNING id",
                    )
                    .bind(now)
                    .bind(&c.id)
                    .fetch_all(&mut *tx)
                    .await?;
                    for (family_id,) in &families {
                        insert_event(&mut tx, EventKind::FamilyRevoked, family_id, now, $notify).await?;
                    }
                }
                tx.commit().await?;
                Ok(client)
            }

            async fn set_client_secret(&self, name: &str, secret_hash: &[u8]) -> Result<Option<Client>, Error> {
                Ok(sqlx::query_as(concat!(
                    "UPDATE clients SET secret_hash = $1 WHERE name = $2 AND NOT public RETURNING ",
                    client_columns!(),
                ))
                .bind(secret_hash)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?)
            }
        }

        #[async_trait::async_trait]
        impl GrantStore for $store {
            async fn add_code(&self, code: &AuthCode) -> Result<(), Error> {
                sqlx::query(
                    "INSERT INTO authorization_codes (hash, client_id, user_id, redirect_uri, scope, \
                     code_challenge, nonce, auth_time, session_id, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&code.hash)
                .bind(&code.client_id)
                .bind(&code.user_id)
                .bind(&code.redirect_uri)
                .bind(&code.scope)
                .bind(&code.code_challenge)
                .bind(code.nonce.as_deref())
                .bind(code.auth_time)
                .bind(&code.session_id)
                .bind(code.created_at)
                .bind(code.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn exchange_code(&self, x: &CodeExchange<'_>, now: i64) -> Result<Exchanged, Error> {
                let (_turn, mut tx) = self.begin_write().await?;
                // Locks in the order the other writers take them: the person's row first
                // (as `set_scope` and `revoke_user` do), so that a scope removal, a
                // disable or a logout everywhere either commits before this exchange
                // reads the account or waits and sees the family it starts; then the
                // client's row (a disable likewise); then the code, where concurrent
                // exchanges of one code serialize and the second sees the first's
                // `used_at`.
                sqlx::query(
                    "UPDATE users SET scope = scope \
                     WHERE id = (SELECT user_id FROM authorization_codes WHERE hash = $1)",
                )
                .bind(&x.code.0[..])
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE clients SET disabled = disabled \
                     WHERE id = (SELECT client_id FROM authorization_codes WHERE hash = $1)",
                )
                .bind(&x.code.0[..])
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE authorization_codes SET used_at = used_at WHERE hash = $1")
                    .bind(&x.code.0[..])
                    .execute(&mut *tx)
                    .await?;
                let row: Option<CodeRow> = sqlx::query_as(
                    "SELECT hash, client_id, user_id, redirect_uri, scope, code_challenge, nonce, \
                     auth_time, session_id, created_at, expires_at, used_at, family_id \
                     FROM authorization_codes WHERE hash = $1",
                )
                .bind(&x.code.0[..])
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Ok(Exchanged::Refused);
                };
                if row.used_at.is_some() {
                    // A second use: whoever holds the code now may not be who held it
                    // first. What the first exchange issued is revoked.
                    if let Some(family_id) = &row.family_id {
                        let revoked: Option<(String,)> = sqlx::query_as(
                            "UPDATE refresh_families SET revoked_at = $1 \
                             WHERE id = $2 AND revoked_at IS NULL RETURNING id",
                        )
                        .bind(now)
                        .bind(family_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if revoked.is_some() {
                            insert_event(&mut tx, EventKind::FamilyRevoked, family_id, now, $notify).await?;
                        }
                    }
                    tx.commit().await?;
                    return Ok(Exchanged::Replayed { family_id: row.family_id });
                }
                sqlx::query("UPDATE authorization_codes SET used_at = $1 WHERE hash = $2")
                    .bind(now)
                    .bind(&x.code.0[..])
                    .execute(&mut *tx)
                    .await?;
                let matches = row.expires_at > now
                    && row.client_id == x.client_id
                    && row.redirect_uri == x.redirect_uri
                    // The challenge is no secret (it travelled in the authorization
                    // request's URL); the verifier it came from is.
                    && row.code_challenge == x.challenge;
                // The person, still enabled; the client, still enabled; and the session
                // the person signed in with, not ended since (a sign-out within the
                // code's minute ends what it would have started). The session's row is
                // locked first, so a sign-out racing this exchange is ordered with it:
                // before, and the code is refused; after, and the exchange came first
                // (its grant, like every grant, outlives the sign-out: docs/oauth.md).
                if matches {
                    sqlx::query("UPDATE sessions SET revoked_at = revoked_at WHERE id = $1")
                        .bind(&row.session_id)
                        .execute(&mut *tx)
                        .await?;
                }
                let account: Option<(String, String)> = if matches {
                    sqlx::query_as(
                        "SELECT u.username, u.scope FROM users u \
                         JOIN clients c ON c.id = $2 AND NOT c.disabled \
                         JOIN sessions s ON s.id = $3 AND s.user_id = u.id AND s.revoked_at IS NULL \
                         WHERE u.id = $1 AND NOT u.disabled",
                    )
                    .bind(&row.user_id)
                    .bind(&row.client_id)
                    .bind(&row.session_id)
                    .fetch_optional(&mut *tx)
                    .await?
                } else {
                    None
                };
                let Some((username, account_scope)) = account else {
                    // Used up all the same: a code is tried once.
                    tx.commit().await?;
                    return Ok(Exchanged::Refused);
                };
                let scope = effective_scope(&row.scope, &account_scope);
                sqlx::query(
                    "INSERT INTO refresh_families (id, user_id, scope, created_at, last_used_at, \
                     current_hash, label, client_id, auth_time) VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8)",
                )
                .bind(x.family_id)
                .bind(&row.user_id)
                .bind(&scope)
                .bind(now)
                .bind(&x.refresh.0[..])
                .bind(x.label)
                .bind(x.client_id)
                .bind(row.auth_time)
                .execute(&mut *tx)
                .await?;
                sqlx::query("INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES ($1, $2, $3)")
                    .bind(&x.refresh.0[..])
                    .bind(x.family_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE authorization_codes SET family_id = $1 WHERE hash = $2")
                    .bind(x.family_id)
                    .bind(&x.code.0[..])
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Exchanged::Granted { code: Box::new(row.code()), scope, username })
            }

            async fn consent(&self, user_id: &str, client_id: &str) -> Result<Option<String>, Error> {
                let scope: Option<(String,)> = sqlx::query_as(
                    "SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2",
                )
                .bind(user_id)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(scope.map(|(s,)| s))
            }

            async fn grant_consent(
                &self,
                user_id: &str,
                client_id: &str,
                scope: &str,
                now: i64,
            ) -> Result<(), Error> {
                let (_turn, mut tx) = self.begin_write().await?;
                // Lock the row (if any) before reading it.
                sqlx::query("UPDATE consents SET scope = scope WHERE user_id = $1 AND client_id = $2")
                    .bind(user_id)
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?;
                let before: Option<(String,)> = sqlx::query_as(
                    "SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2",
                )
                .bind(user_id)
                .bind(client_id)
                .fetch_optional(&mut *tx)
                .await?;
                let mut all: Vec<&str> = before
                    .as_ref()
                    .map(|(s,)| s.split_whitespace().collect())
                    .unwrap_or_default();
                for s in scope.split_whitespace() {
                    if !all.contains(&s) {
                        all.push(s);
                    }
                }
                sqlx::query(
                    "INSERT INTO consents (user_id, client_id, scope, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id, client_id) DO UPDATE SET scope = $3, created_at = $4",
                )
                .bind(user_id)
                .bind(client_id)
                .bind(all.join(" "))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn consents_of(&self, user_id: &str) -> Result<Vec<Consent>, Error> {
                Ok(sqlx::query_as(
                    "SELECT c.client_id, k.name AS client_name, c.scope, c.created_at \
                     FROM consents c JOIN clients k ON k.id = c.client_id \
                     WHERE c.user_id = $1 ORDER BY k.name",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn revoke_consent(&self, user_id: &str, client_id: &str, now: i64) -> Result<bool, Error> {
                let (_turn, mut tx) = self.begin_write().await?;
                // The codes first: an exchange in flight holds its code's lock, so this
                // waits for it to commit, and the families update below then sees the
                // family it started. An unused code is used up: it would start a grant
                // the person just removed.
                sqlx::query(
                    "UPDATE authorization_codes SET used_at = $1 \
                     WHERE user_id = $2 AND client_id = $3 AND used_at IS NULL",
                )
                .bind(now)
                .bind(user_id)
                .bind(client_id)
                .execute(&mut *tx)
                .await?;
                let withdrawn = sqlx::query("DELETE FROM consents WHERE user_id = $1 AND client_id = $2")
                    .bind(user_id)
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let families: Vec<(String,)> = sqlx::query_as(
                    "UPDATE refresh_families SET revoked_at = $1 \
                     WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL RETURNING id",
                )
                .bind(now)
                .bind(user_id)
                .bind(client_id)
                .fetch_all(&mut *tx)
                .await?;
                for (family_id,) in &families {
                    insert_event(&mut tx, EventKind::FamilyRevoked, family_id, now, $notify).await?;
                }
                tx.commit().await?;
                Ok(withdrawn > 0 || !families.is_empty())
            }

            async fn refresh_info(
                &self,
                token: &TokenHash,
                now: i64,
                policy: RotationPolicy,
            ) -> Result<Option<RefreshInfo>, Error> {
                let row: Option<(String, String, Option<String>, String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT f.id, f.user_id, f.client_id, f.scope, t.created_at, f.created_at, f.last_used_at \
                     FROM refresh_tokens t \
                     JOIN refresh_families f ON f.id = t.family_id \
                     JOIN users u ON u.id = f.user_id \
                     WHERE t.hash = $1 AND f.current_hash = t.hash \
                     AND f.revoked_at IS NULL AND NOT u.disabled",
                )
                .bind(&token.0[..])
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.and_then(|(family_id, user_id, client_id, scope, issued, started, used)| {
                    // The same bounds as `refresh::decide`.
                    let expires_at = (started + policy.absolute).min(used + policy.idle);
                    (now <= expires_at).then_some(RefreshInfo {
                        family_id,
                        user_id,
                        client_id,
                        scope,
                        created_at: issued,
                        expires_at,
                    })
                }))
            }

            async fn revoke_client_family(
                &self,
                client_id: &str,
                family_id: &str,
                now: i64,
            ) -> Result<bool, Error> {
                self.revoke_owned_family(
                    "UPDATE refresh_families SET revoked_at = $1 \
                     WHERE id = $2 AND client_id = $3 AND revoked_at IS NULL RETURNING id",
                    client_id,
                    family_id,
                    now,
                )
                .await
            }
        }

        #[async_trait::async_trait]
        impl KeyStore for $store {
            async fn signing_keys(&self) -> Result<Vec<StoredKey>, Error> {
                Ok(sqlx::query_as(
                    "SELECT kid, alg, private_jwk, created_at, activates_at, predecessor FROM signing_keys \
                     ORDER BY activates_at, created_at, kid",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn add_signing_key(&self, key: &StoredKey) -> Result<(), Error> {
                let (_turn, mut tx) = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_jwk, created_at, activates_at, predecessor) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&key.kid)
                .bind(&key.alg)
                .bind(&key.private_jwk)
                .bind(key.created_at)
                .bind(key.activates_at)
                .bind(key.predecessor.as_deref())
                .execute(&mut *tx)
                .await?;
                insert_event(&mut tx, EventKind::KeysChanged, &key.kid, key.created_at, $notify).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn replace_key_material(&self, keys: &[(String, String)]) -> Result<(), Error> {
                let (_turn, mut tx) = self.begin_write().await?;
                for (kid, material) in keys {
                    sqlx::query("UPDATE signing_keys SET private_jwk = $1 WHERE kid = $2")
                        .bind(material)
                        .bind(kid)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl EventStore for $store {
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
                let events = sqlx::query("DELETE FROM events WHERE at < $1")
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let sessions =
                    sqlx::query("DELETE FROM sessions WHERE revoked_at < $1 OR expires_at < $1")
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
                // Codes live a minute; a used one is kept as long as a revocation is,
                // so that a replay can still revoke what it issued.
                sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?;
                let devices = sqlx::query("DELETE FROM devices WHERE last_used_at < $1")
                    .bind(now - retention.device_idle)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(Pruned { events, sessions, families, throttle, devices })
            }
        }
    };
}

/// Appends to the event log; with `notify` (PostgreSQL), also wakes every listening
/// instance when the transaction commits.
async fn insert_event<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    kind: EventKind,
    subject: &str,
    at: i64,
    notify: bool,
) -> Result<(), Error>
where
    DB: sqlx::Database,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'e> &'e mut <DB as sqlx::Database>::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query("INSERT INTO events (kind, subject, at) VALUES ($1, $2, $3)")
        .bind(kind.as_str())
        .bind(subject)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    if notify {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// A session row (the library's `SessionRecord` knows nothing of SQL).
#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    subject: String,
    scope: String,
    label: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
}

fn session_record(row: SessionRow) -> SessionRecord {
    SessionRecord {
        id: row.id,
        subject: row.subject,
        scope: row.scope,
        label: row.label,
        created_at: row.created_at,
        last_seen_at: row.last_seen_at,
        expires_at: row.expires_at,
    }
}

/// The library's session errors carry no sqlx type: the message is enough for a 503.
fn unavailable(e: impl Into<Error>) -> session::Error {
    session::Error::Unavailable(e.into().to_string())
}

/// The columns of a [`SessionRow`], as a literal so the queries are `concat!`ed at
/// compile time (the session lookup runs on every cookie request).
macro_rules! session_columns {
    () => {
        "s.id, s.user_id AS subject, s.scope, s.label, s.created_at, s.last_seen_at, s.expires_at"
    };
}

/// The library's [`SessionStore`] over the same pool. Revoking a session also logs a
/// `session_revoked` event, in the same transaction, so every instance refuses the
/// access tokens minted from it (their `sid` is the session id).
macro_rules! session_impl {
    ($store:ty, $notify:literal) => {
        impl SessionStore for $store {
            fn create_session<'a>(&'a self, s: &'a NewSession) -> StoreFuture<'a, ()> {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO sessions (id, secret_hash, user_id, scope, label, \
                         created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
                    )
                    .bind(&s.id)
                    .bind(&s.hash.0[..])
                    .bind(&s.subject)
                    .bind(&s.scope)
                    .bind(&s.label)
                    .bind(s.created_at)
                    .bind(s.expires_at)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    Ok(())
                })
            }

            fn find_session<'a>(
                &'a self,
                hash: &'a SessionHash,
            ) -> StoreFuture<'a, Option<SessionRecord>> {
                Box::pin(async move {
                    // Sessions of disabled accounts are refused like revoked ones.
                    let row: Option<SessionRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        session_columns!(),
                        " FROM sessions s JOIN users u ON u.id = s.user_id \
                         WHERE s.secret_hash = $1 AND s.revoked_at IS NULL AND NOT u.disabled"
                    ))
                    .bind(&hash.0[..])
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    Ok(row.map(session_record))
                })
            }

            fn touch_session<'a>(&'a self, id: &'a str, at: i64) -> StoreFuture<'a, ()> {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1",
                    )
                    .bind(at)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    Ok(())
                })
            }

            fn revoke_session<'a>(
                &'a self,
                id: &'a str,
                subject: Option<&'a str>,
                at: i64,
            ) -> StoreFuture<'a, bool> {
                Box::pin(async move {
                    let (_turn, mut tx) = self.begin_write().await.map_err(unavailable)?;
                    let revoked = sqlx::query(
                        "UPDATE sessions SET revoked_at = $1 WHERE id = $2 \
                         AND revoked_at IS NULL AND ($3 IS NULL OR user_id = $3)",
                    )
                    .bind(at)
                    .bind(id)
                    .bind(subject)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?
                    .rows_affected()
                        == 1;
                    if revoked {
                        insert_event(&mut tx, EventKind::SessionRevoked, id, at, $notify)
                            .await
                            .map_err(unavailable)?;
                    }
                    tx.commit().await.map_err(unavailable)?;
                    Ok(revoked)
                })
            }

            fn revoke_sessions_of<'a>(
                &'a self,
                subject: &'a str,
                at: i64,
            ) -> StoreFuture<'a, Vec<String>> {
                Box::pin(async move {
                    let (_turn, mut tx) = self.begin_write().await.map_err(unavailable)?;
                    let ids: Vec<(String,)> = sqlx::query_as(
                        "UPDATE sessions SET revoked_at = $1 \
                         WHERE user_id = $2 AND revoked_at IS NULL RETURNING id",
                    )
                    .bind(at)
                    .bind(subject)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                    for (id,) in &ids {
                        insert_event(&mut tx, EventKind::SessionRevoked, id, at, $notify)
                            .await
                            .map_err(unavailable)?;
                    }
                    tx.commit().await.map_err(unavailable)?;
                    Ok(ids.into_iter().map(|(id,)| id).collect())
                })
            }

            fn sessions_of<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Vec<SessionRecord>> {
                Box::pin(async move {
                    let rows: Vec<SessionRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        session_columns!(),
                        " FROM sessions s \
                         WHERE s.user_id = $1 AND s.revoked_at IS NULL \
                         ORDER BY s.created_at DESC, s.id"
                    ))
                    .bind(subject)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    Ok(rows.into_iter().map(session_record).collect())
                })
            }
        }
    };
}

store_impl!(SqliteStore, "sqlite", false);
store_impl!(PostgresStore, "postgres", true);
session_impl!(SqliteStore, false);
session_impl!(PostgresStore, true);
