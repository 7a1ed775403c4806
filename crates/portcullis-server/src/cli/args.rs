//! The settings every admin command opens the database with (`--config`,
//! `--database-url`), and the runtime they run on.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::config::{Config, Overrides};
use crate::startup;

/// Where the configuration comes from; shared by every command that opens the database.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct ConfigArgs {
    /// A TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The database: sqlite://PATH (default sqlite://portcullis.db) or postgres://…
    #[arg(long)]
    database_url: Option<String>,
}

impl ConfigArgs {
    /// The configuration, and its existing database (admin commands never create one).
    pub(crate) async fn open(
        &self,
    ) -> anyhow::Result<(Config, std::sync::Arc<dyn portcullis_store::Store>)> {
        let config = self.load(None, None)?;
        let store = open_existing(&config.database_url).await?;
        Ok((config, store))
    }

    /// The configuration alone.
    pub(crate) fn load_config(&self) -> anyhow::Result<Config> {
        self.load(None, None)
    }

    pub(crate) fn load(
        &self,
        bind: Option<String>,
        issuer: Option<String>,
    ) -> anyhow::Result<Config> {
        Config::load(
            self.config.as_deref(),
            Overrides {
                bind,
                database_url: self.database_url.clone(),
                issuer,
            },
        )
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Opens the configured database for an admin command, which never creates one: a
/// missing SQLite file is almost always the wrong folder or a typo, not a wish for an
/// empty database.
pub(crate) async fn open_existing(
    url: &str,
) -> anyhow::Result<std::sync::Arc<dyn portcullis_store::Store>> {
    if let Some(path) = crate::kek::sqlite_path(url)
        && !path.exists()
    {
        let shown = std::path::absolute(&path).unwrap_or(path);
        bail!(
            "no database at {}; start `portcullis serve` first, or pass --database-url",
            shown.display()
        );
    }
    startup::open_store(url).await
}
