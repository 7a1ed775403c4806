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

use super::args::{ConfigArgs, runtime};
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

/// A path as an SQL string literal (quotes doubled), made absolute first so that SQLite
/// never reads it as a `file:` URI.
fn literal(path: &Path) -> anyhow::Result<String> {
    let path = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
    let text = path
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
    Ok(format!("'{}'", text.replace('\'', "''")))
}

/// A read-only connection to the database file `path` (by name, not by URL: no `?` or
/// `%` in a path is taken for anything else).
async fn open_read_only(path: &Path) -> anyhow::Result<sqlx::SqliteConnection> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    sqlx::SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("opening {}", path.display()))
}

/// `<to>.partial`: where a copy is written before it takes its name.
fn partial(to: &Path) -> PathBuf {
    let mut name = to.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Copies the database `from` into a new file beside `to`, consistently (one snapshot),
/// checks it, makes it durable, and only then gives it the name `to` (mode 0600): a
/// copy that fails or is interrupted never stands under that name. `to` itself is
/// replaced only by the final rename.
async fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    let tmp = partial(to);
    let _ = std::fs::remove_file(&tmp);
    // Made first with owner-only permissions: VACUUM INTO then writes into it (an empty
    // file is accepted as the target).
    crate::kek::write_private(&tmp, b"").with_context(|| format!("creating {}", tmp.display()))?;
    let result = async {
        let mut conn = open_read_only(from).await?;
        sqlx::query(&format!("VACUUM INTO {}", literal(&tmp)?))
            .execute(&mut conn)
            .await
            .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
        check_is_ours(&tmp).await?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, to)
            .with_context(|| format!("renaming {} to {}", tmp.display(), to.display()))?;
        if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = std::fs::File::open(dir)
        {
            let _ = dir.sync_all();
        }
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Checks that `file` is a sound Portcullis database: an SQLite file with our
/// migrations that passes SQLite's integrity check.
async fn check_is_ours(file: &Path) -> anyhow::Result<i64> {
    let mut conn = open_read_only(file).await?;
    let migrations: Result<i64, _> =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut conn)
            .await;
    let n = match migrations {
        Ok(n) if n > 0 => n,
        _ => bail!("{} is not a Portcullis database", file.display()),
    };
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .with_context(|| format!("checking {}", file.display()))?;
    if integrity != "ok" {
        bail!(
            "{} fails SQLite's integrity check: {integrity}",
            file.display()
        );
    }
    Ok(n)
}

pub(crate) fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let db = database_file(&args.config)?;
    if !db.exists() {
        bail!(
            "no database at {}",
            std::path::absolute(&db).unwrap_or(db).display()
        );
    }
    if args.file.exists() {
        bail!("{} exists; choose a new file", args.file.display());
    }
    runtime()?.block_on(copy(&db, &args.file))?;
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
            // Running servers hold a shared lock on `<db>.lock`: none may be running.
            let _exclusive = crate::kek::lock_database(&db, true).with_context(|| {
                format!(
                    "{} is in use by a running server: stop it first",
                    db.display()
                )
            })?;
            // The copy takes the database's name in one rename; the old write-ahead log
            // and shared memory go only after it (they belong to the old file).
            copy(&args.file, &db).await?;
            for suffix in ["-wal", "-shm"] {
                let mut name = db.as_os_str().to_owned();
                name.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(name));
            }
            return anyhow::Ok(());
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
