//! Opening PostgreSQL: a probe that says what is wrong in plain words, then a pool.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use super::SqlStore;
use crate::Error;

/// PostgreSQL, for several instances behind a load balancer.
pub type PostgresStore = SqlStore<sqlx::Postgres>;

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
        let store = SqlStore {
            pool,
            writer: None,
            url: url.to_owned(),
            _checkpoints: None,
        };
        store.fill_skeletons().await?;
        Ok(store)
    }

    /// The URL it was opened with (the event listener opens its own connection).
    pub fn url(&self) -> &str {
        &self.url
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
