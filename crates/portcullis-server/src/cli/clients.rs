//! `portcullis clients`: OAuth clients. A machine client (no redirect URI) gets access
//! tokens as itself with the client-credentials grant; an application that signs people
//! in (with `--redirect-uri`) uses the authorization-code flow with PKCE, as a
//! confidential client (with a secret) or a public one (`--public`: single-page and
//! native apps, which cannot keep a secret).

use anyhow::bail;
use clap::Subcommand;
use portcullis::clock::{Clock as _, SystemClock};
use portcullis::opaque::Opaque;
use portcullis_store::{Client, ClientChange, Store};

use super::args::{ConfigArgs, runtime};
use crate::audit::{Actor, Entry, Kind};
use crate::error::ApiError;
use crate::routes::admin_clients::{self as rules, NewClient};

#[derive(Debug, Subcommand)]
pub(crate) enum ClientsCommand {
    /// Register a client. Prints its id and (unless public) its secret as JSON, once:
    /// only the secret's SHA-256 is kept.
    Add {
        #[command(flatten)]
        config: ConfigArgs,
        /// A unique name, for people (the consent page shows it).
        name: String,
        /// Scopes it may get, space separated (e.g. "openid profile read", or
        /// revocations:read for a machine client).
        #[arg(long, default_value = "")]
        scope: String,
        /// Where the authorization-code flow may send people back (repeat for more):
        /// https, http on a loopback address, or a native app's com.example.app:/path.
        /// Matched exactly. Without one, the client is a machine client.
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// Where RP-initiated logout may send people afterwards (repeat for more).
        #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
        post_logout_redirect_uris: Vec<String>,
        /// A single-page or native app: no secret, PKCE only, and a loopback redirect
        /// URI may come back on any port (RFC 8252).
        #[arg(long, requires = "redirect_uris")]
        public: bool,
        /// Yours: people are not asked to consent.
        #[arg(long, requires = "redirect_uris")]
        first_party: bool,
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
    /// Delete a client: its tokens are refused, the grants it holds for people end,
    /// the consents people gave it go.
    Remove {
        #[command(flatten)]
        config: ConfigArgs,
        /// The client's name.
        name: String,
    },
}

/// The shared rules' refusal, as the CLI says it.
fn refused(e: ApiError) -> anyhow::Error {
    match e {
        ApiError::InvalidRequest(why) => anyhow::anyhow!(why),
        ApiError::Conflict(why) => anyhow::anyhow!(why),
        ApiError::Unexpected(e) => e,
        other => anyhow::anyhow!(other.for_people()),
    }
}

fn shown_once(client: &Client, secret: Option<&Opaque>) {
    println!("{}", rules::client_json(client, secret));
    if secret.is_some() {
        eprintln!(
            "{}: keep the client_secret now; it is not shown again (only its SHA-256 is stored)",
            client.name
        );
    }
}

async fn by_name(store: &dyn Store, name: &str) -> anyhow::Result<Client> {
    match store.clients().await?.into_iter().find(|c| c.name == name) {
        Some(client) => Ok(client),
        None => bail!("no such client: {name}"),
    }
}

/// Appends the operator's change of `client` to the audit trail.
async fn audited(
    store: &dyn Store,
    kind: Kind,
    client: &Client,
    fields: &[&str],
) -> anyhow::Result<()> {
    let mut entry = Entry::new(kind, Actor::Operator)
        .on(&client.id)
        .with("name", client.name.as_str())
        .with("via", "cli");
    if !fields.is_empty() {
        entry = entry.with("fields", fields);
    }
    crate::audit::record_offline(store, entry, SystemClock.now()).await
}

async fn set_disabled(store: &dyn Store, name: &str, disabled: bool) -> anyhow::Result<()> {
    let client = by_name(store, name).await?;
    let change = ClientChange {
        disabled: Some(disabled),
        ..ClientChange::default()
    };
    let Some(changed) = store
        .update_client(&client.id, &change, SystemClock.now())
        .await?
    else {
        bail!("no such client: {name}");
    };
    let fields = rules::changed_fields(&client, &changed.client);
    if !fields.is_empty() {
        audited(store, Kind::ClientUpdated, &changed.client, &fields).await?;
    }
    Ok(())
}

pub(crate) fn run(cmd: ClientsCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            ClientsCommand::Add {
                config,
                name,
                scope,
                redirect_uris,
                post_logout_redirect_uris,
                public,
                first_party,
            } => {
                let (client, secret) = rules::build(
                    NewClient {
                        name,
                        scope,
                        redirect_uris,
                        post_logout_redirect_uris,
                        public,
                        first_party,
                    },
                    SystemClock.now(),
                )
                .map_err(refused)?;
                let (_, store) = config.open().await?;
                rules::add(store.as_ref(), &client).await.map_err(refused)?;
                audited(store.as_ref(), Kind::ClientCreated, &client, &[]).await?;
                shown_once(&client, secret.as_ref());
            }
            ClientsCommand::List { config } => {
                let (_, store) = config.open().await?;
                println!("id\tname\ttype\tscope\tdisabled\tfirst_party\tredirect_uris");
                for c in store.clients().await? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        c.id,
                        c.name,
                        rules::kind(&c),
                        c.scope,
                        c.disabled,
                        c.first_party,
                        c.redirect_uris
                    );
                }
            }
            ClientsCommand::Disable { config, name } => {
                let (_, store) = config.open().await?;
                set_disabled(store.as_ref(), &name, true).await?;
                println!("{name}: disabled; its access tokens issued before now are refused");
            }
            ClientsCommand::Enable { config, name } => {
                let (_, store) = config.open().await?;
                set_disabled(store.as_ref(), &name, false).await?;
                println!("{name}: enabled; it can get tokens again");
            }
            ClientsCommand::RotateSecret { config, name } => {
                let (_, store) = config.open().await?;
                let client = by_name(store.as_ref(), &name).await?;
                if client.public {
                    bail!("{name} is a public client: it has no secret");
                }
                let secret = rules::new_secret().map_err(refused)?;
                let Some(client) = store.set_client_secret(&client.id, &secret.sha256()).await? else {
                    bail!("no such client: {name}");
                };
                audited(store.as_ref(), Kind::ClientSecretRotated, &client, &[]).await?;
                shown_once(&client, Some(&secret));
            }
            ClientsCommand::Remove { config, name } => {
                let (_, store) = config.open().await?;
                let client = by_name(store.as_ref(), &name).await?;
                let Some(ended) = store.delete_client(&client.id, SystemClock.now()).await? else {
                    bail!("no such client: {name}");
                };
                audited(store.as_ref(), Kind::ClientDeleted, &client, &[]).await?;
                println!(
                    "{name}: deleted; its tokens are refused and {} grant{} it held for people ended",
                    ended.len(),
                    if ended.len() == 1 { "" } else { "s" }
                );
            }
        }
        Ok(())
    })
}
