//! Store errors.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A unique value is taken (a username).
    #[error("already exists")]
    Conflict,
    /// What the caller decided on has changed since it was read (the signing keys were
    /// re-sealed or added meanwhile): read again.
    #[error("changed meanwhile: {0}")]
    Outdated(&'static str),
    /// The database URL or options are unusable.
    #[error("database configuration: {0}")]
    Config(String),
    /// The database cannot be reached or refused us; the message says why and what to
    /// do.
    #[error("{0}")]
    Connect(String),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database answered with an error, or could not be reached.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict,
            _ => Error::Database(e),
        }
    }
}
