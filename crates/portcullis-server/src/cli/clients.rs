//! `portcullis clients`: machine clients, which get access tokens as themselves with the
//! OAuth 2.0 client-credentials grant (`POST /oauth/token`), not with a user's password.

use anyhow::bail;
use clap::Subcommand;
use portcullis::clock::{Clock as _, SystemClock};
use portcullis::jwt::random_id;
use portcullis::opaque::Opaque;
use portcullis_store::Client;

use super::serve::{ConfigArgs, runtime};

#[derive(Debug, Subcommand)]
pub(crate) enum ClientsCommand {
    /// Register a client. Prints its id and secret as JSON, once: only the secret's
    /// SHA-256 is kept.
    Add {
        #[command(flatten)]
        config: ConfigArgs,
        /// A unique name, for people.
        name: String,
        /// Scopes it may get, space separated (e.g. revocations:read).
        #[arg(long, default_value = "")]
        scope: String,
    },
    /// List clients.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Disable a client: it gets no more tokens, and the ones it has are refused.
    Disable {
        #[command(flatten)]
        config: ConfigArgs,
        /// The client's name.
        name: String,
    },
    /// Enable a disabled client again.
    Enable {
        #[command(flatten)]
        config: ConfigArgs,
        /// The client's name.
        name: String,
    },
    /// Give a client a new secret (printed once); the old one stops working at once.
    RotateSecret {
        #[command(flatten)]
        config: ConfigArgs,
        /// The client's name.
        name: String,
    },
}

/// What a name may be: what fits in a log line and a table.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        bail!("a client name is 1–64 of the characters a-z A-Z 0-9 - _ .");
    }
    Ok(())
}

fn secret() -> anyhow::Result<Opaque> {
    Opaque::generate().map_err(|_| anyhow::anyhow!("the system random generator failed"))
}

fn shown_once(client: &Client, secret: &Opaque) {
    println!(
        "{}",
        serde_json::json!({
            "client_id": client.id,
            "client_secret": secret.expose(),
            "name": client.name,
            "scope": client.scope,
        })
    );
    eprintln!(
        "{}: keep the client_secret now; it is not shown again (only its SHA-256 is stored)",
        client.name
    );
}

pub(crate) fn run(cmd: ClientsCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            ClientsCommand::Add {
                config,
                name,
                scope,
            } => {
                check_name(&name)?;
                let (_, store) = config.open().await?;
                let secret = secret()?;
                let scope = scope.split_whitespace().collect::<Vec<_>>().join(" ");
                let client = Client {
                    id: random_id()?,
                    name,
                    secret_hash: secret.sha256().to_vec(),
                    scope,
                    disabled: false,
                    not_before: 0,
                    created_at: SystemClock.now(),
                };
                store.add_client(&client).await.map_err(|e| match e {
                    portcullis_store::Error::Conflict => {
                        anyhow::anyhow!("a client named {:?} exists", client.name)
                    }
                    other => other.into(),
                })?;
                shown_once(&client, &secret);
            }
            ClientsCommand::List { config } => {
                let (_, store) = config.open().await?;
                println!("id\tname\tscope\tdisabled");
                for c in store.clients().await? {
                    println!("{}\t{}\t{}\t{}", c.id, c.name, c.scope, c.disabled);
                }
            }
            ClientsCommand::Disable { config, name } => {
                let (_, store) = config.open().await?;
                if store
                    .set_client_disabled(&name, true, SystemClock.now())
                    .await?
                    .is_none()
                {
                    bail!("no such client: {name}");
                }
                println!("{name}: disabled; its access tokens issued before now are refused");
            }
            ClientsCommand::Enable { config, name } => {
                let (_, store) = config.open().await?;
                if store
                    .set_client_disabled(&name, false, SystemClock.now())
                    .await?
                    .is_none()
                {
                    bail!("no such client: {name}");
                }
                println!("{name}: enabled; it can get tokens again");
            }
            ClientsCommand::RotateSecret { config, name } => {
                let (_, store) = config.open().await?;
                let secret = secret()?;
                let Some(client) = store.set_client_secret(&name, &secret.sha256()).await? else {
                    bail!("no such client: {name}");
                };
                shown_once(&client, &secret);
            }
        }
        Ok(())
    })
}
