//! `portcullis serve` and the admin commands that work on the configured database.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use portcullis::clock::{Clock as _, SystemClock};
use portcullis::jwt::random_id;
use portcullis::keys::Algorithm;
use portcullis::password::{HashParams, Password, PasswordHasher};
use portcullis::username::normalize_username;
use portcullis_store::NewUser;

use crate::config::{Config, Overrides};
use crate::{keyring, startup, telemetry};

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

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    bind: Option<String>,
    /// The `iss` of issued tokens (default http:// + the bind address).
    #[arg(long)]
    issuer: Option<String>,
}

impl ConfigArgs {
    fn load(&self, bind: Option<String>, issuer: Option<String>) -> anyhow::Result<Config> {
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<()> {
    telemetry::init();
    let config = args.config.load(args.bind, args.issuer)?;
    runtime()?.block_on(startup::run(config))
}

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Create an account (the password is read from stdin).
    Add {
        #[command(flatten)]
        config: ConfigArgs,
        /// The username.
        username: String,
        /// Scopes, space separated (default: the server's default_scope).
        #[arg(long)]
        scope: Option<String>,
    },
    /// List accounts.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Disable an account: it can no longer log in or refresh.
    Disable {
        #[command(flatten)]
        config: ConfigArgs,
        /// The username.
        username: String,
    },
    /// Set an account's scopes (space separated), replacing the old ones.
    GrantScope {
        #[command(flatten)]
        config: ConfigArgs,
        /// The username.
        username: String,
        /// The scopes.
        scope: String,
    },
}

pub(crate) fn users(cmd: UsersCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            UsersCommand::Add {
                config,
                username,
                scope,
            } => {
                let config = config.load(None, None)?;
                let store = startup::open_store(&config.database_url).await?;
                let username = normalize_username(&username)?;
                let password = Password::new(
                    super::read_stdin()?
                        .trim_end_matches(['\n', '\r'])
                        .to_owned(),
                )?;
                let hasher = PasswordHasher::new(HashParams::default(), 1, 1)?;
                let hash = hasher.hash(password).await?;
                let user = store
                    .create_user(NewUser {
                        id: random_id()?,
                        username,
                        password_hash: hash,
                        scope: scope.unwrap_or(config.default_scope),
                        created_at: now(),
                    })
                    .await
                    .map_err(|e| match e {
                        portcullis_store::Error::Conflict => {
                            anyhow::anyhow!("that username is taken")
                        }
                        other => other.into(),
                    })?;
                println!("{}\t{}", user.id, user.username);
            }
            UsersCommand::List { config } => {
                let config = config.load(None, None)?;
                let store = startup::open_store(&config.database_url).await?;
                println!("id\tusername\tscope\tdisabled");
                for u in store.list_users().await? {
                    println!("{}\t{}\t{}\t{}", u.id, u.username, u.scope, u.disabled);
                }
            }
            UsersCommand::Disable { config, username } => {
                let config = config.load(None, None)?;
                let store = startup::open_store(&config.database_url).await?;
                let name = normalize_username(&username)?;
                let Some(user) = store.user_by_username(&name).await? else {
                    bail!("no such user: {username}");
                };
                store.set_disabled(&name, true).await?;
                // Logout everywhere too: sessions, refresh families and every access
                // token issued until now end on every running instance.
                store
                    .revoke_user(&user.id, SystemClock.now() as i64)
                    .await?;
            }
            UsersCommand::GrantScope {
                config,
                username,
                scope,
            } => {
                let config = config.load(None, None)?;
                let store = startup::open_store(&config.database_url).await?;
                if !store
                    .set_scope(&normalize_username(&username)?, scope.trim())
                    .await?
                {
                    bail!("no such user: {username}");
                }
            }
        }
        Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServerKeysCommand {
    /// Make a new signing key active; the old one keeps verifying until its tokens expire.
    Rotate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Algorithm of the new key (default: the configured signing_alg).
        #[arg(long)]
        alg: Option<Algorithm>,
    },
    /// List the signing keys in the database.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub(crate) fn server_keys(cmd: ServerKeysCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            ServerKeysCommand::Rotate { config, alg } => {
                let config = config.load(None, None)?;
                let store = startup::open_store(&config.database_url).await?;
                let kid = keyring::rotate(store.as_ref(), alg.unwrap_or(config.signing_alg), now())
                    .await?;
                println!("{kid}");
            }
            ServerKeysCommand::List { config } => {
                let config = config.load(None, None)?;
                let store = startup::open_store(&config.database_url).await?;
                println!("kid\talg\tcreated_at\tstatus");
                for k in store.signing_keys().await? {
                    let status = match k.retired_at {
                        None => "active".to_owned(),
                        Some(at) => format!("retired at {at}"),
                    };
                    println!("{}\t{}\t{}\t{status}", k.kid, k.alg, k.created_at);
                }
            }
        }
        Ok(())
    })
}

fn now() -> i64 {
    use portcullis::clock::Clock as _;
    portcullis::clock::SystemClock.now() as i64
}
