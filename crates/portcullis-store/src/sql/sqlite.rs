//! Opening SQLite: WAL mode, a private file, background checkpoints.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::SqlStore;
use crate::Error;

/// SQLite, in WAL mode: many readers, one writer at a time (rotations are serialized by
/// the database's write lock, which is what makes them atomic).
pub type SqliteStore = SqlStore<sqlx::Sqlite>;

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
            // sqlx pings a pooled connection before handing it out, by default: over a
            // network that finds a server that hung up; here the "connection" is a
            // file handle in this process, served by a thread of its own, and the
            // ping a round trip to that thread (two thread switches) before every
            // query or transaction, about one in six of a login's.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let checkpointer = (!memory).then(|| {
            let (stop, stopped) = tokio::sync::watch::channel(());
            tokio::spawn(checkpoints(pool.clone(), stopped));
            Arc::new(stop)
        });
        let store = SqlStore {
            pool,
            writer: Some(Arc::new(tokio::sync::Mutex::new(()))),
            url: url.to_owned(),
            _checkpoints: checkpointer,
        };
        store.fill_skeletons().await?;
        Ok(store)
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
