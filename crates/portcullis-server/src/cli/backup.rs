//! `portcullis backup FILE` and `portcullis restore FILE`, for the embedded SQLite
//! database: an online, consistent copy (SQLite's `VACUUM INTO`, which reads one
//! snapshot while the server keeps writing) and its way back. The signing keys stay
//! sealed in the copy: it is useless without the key-encryption key, which is backed
//! up separately (`<database>.kek` by default; keep the two apart). PostgreSQL
//! deployments use `pg_dump` / `pg_restore` (docs/operations.md).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use sqlx::Connection as _;

use super::serve::{ConfigArgs, runtime};
use crate::kek::sqlite_path;

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Where to write the copy (must not exist).
    file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// A copy made by `portcullis backup`.
    file: PathBuf,
    /// Replace an existing database (stop every server using it first).
    #[arg(long)]
    force: bool,
}

/// The configured SQLite file, or the reason there is none.
fn database_file(config: &ConfigArgs) -> anyhow::Result<PathBuf> {
    let loaded = config.load_config()?;
    match sqlite_path(&loaded.database_url) {
        Some(path) => Ok(path),
        None if loaded.database_url.starts_with("postgres") => bail!(
            "backup and restore are for the SQLite database; for PostgreSQL use \
             pg_dump and pg_restore (docs/operations.md)"
        ),
        None => bail!("{} is not a database file", loaded.database_url),
    }
}

/// A path as an SQL string literal (quotes doubled).
fn literal(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
    Ok(format!("'{}'", text.replace('\'', "''")))
}

/// Copies the database `from` into the new file `to` (0600), consistently.
async fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        bail!("{} exists; choose a new file", to.display());
    }
    // Made first with owner-only permissions: VACUUM INTO then writes into it (an empty
    // file is accepted as the target).
    crate::kek::write_private(to, b"").with_context(|| format!("creating {}", to.display()))?;
    let url = format!("sqlite://{}?mode=ro", from.display());
    let result = async {
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .with_context(|| format!("opening {}", from.display()))?;
        sqlx::query(&format!("VACUUM INTO {}", literal(to)?))
            .execute(&mut conn)
            .await
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(to);
    }
    result
}

/// Checks that `file` is a Portcullis database: an SQLite file with our migrations.
async fn check_is_ours(file: &Path) -> anyhow::Result<i64> {
    let url = format!("sqlite://{}?mode=ro", file.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let migrations: Result<i64, _> =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut conn)
            .await;
    match migrations {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{} is not a Portcullis database", file.display()),
    }
}

pub(crate) fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let db = database_file(&args.config)?;
    if !db.exists() {
        bail!(
            "no database at {}",
            std::path::absolute(&db).unwrap_or(db).display()
        );
    }
    runtime()?.block_on(async {
        copy(&db, &args.file).await?;
        check_is_ours(&args.file).await
    })?;
    println!(
        "{}: a consistent copy of {}; its signing keys are sealed: keep the \
         key-encryption key ({}) backed up too, apart from it",
        args.file.display(),
        db.display(),
        crate::kek::beside(&db).display()
    );
    Ok(())
}

pub(crate) fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let db = database_file(&args.config)?;
    runtime()?.block_on(async {
        check_is_ours(&args.file).await?;
        if db.exists() {
            if !args.force {
                bail!(
                    "{} exists; stop every server using it and pass --force to replace it",
                    db.display()
                );
            }
            for suffix in ["", "-wal", "-shm"] {
                let mut name = db.as_os_str().to_owned();
                name.push(suffix);
                let path = PathBuf::from(name);
                if path.exists() {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
            }
        }
        copy(&args.file, &db).await
    })?;
    println!(
        "{} restored from {}; start the server with the key-encryption key of the backup",
        db.display(),
        args.file.display()
    );
    Ok(())
}
