//! `portcullis clients`: OAuth clients. A machine client (no redirect URI) gets access
//! tokens as itself with the client-credentials grant; an application that signs people
//! in (with `--redirect-uri`) uses the authorization-code flow with PKCE, as a
//! confidential client (with a secret) or a public one (`--public`: single-page and
//! native apps, which cannot keep a secret).

use anyhow::bail;
use clap::Subcommand;
use portcullis::clock::{Clock as _, SystemClock};
use portcullis::jwt::random_id;
use portcullis::opaque::Opaque;
use portcullis_store::Client;

use super::args::{ConfigArgs, runtime};

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

fn shown_once(client: &Client, secret: Option<&Opaque>) {
    let mut shown = serde_json::json!({
        "client_id": client.id,
        "name": client.name,
        "scope": client.scope,
        "type": kind(client),
    });
    if let Some(secret) = secret {
        shown["client_secret"] = secret.expose().into();
    }
    if !client.redirect_uris.is_empty() {
        shown["redirect_uris"] = client.redirect_uri_list().collect::<Vec<_>>().into();
        shown["first_party"] = client.first_party.into();
    }
    if !client.post_logout_redirect_uris.is_empty() {
        shown["post_logout_redirect_uris"] =
            client.post_logout_uri_list().collect::<Vec<_>>().into();
    }
    println!("{shown}");
    if secret.is_some() {
        eprintln!(
            "{}: keep the client_secret now; it is not shown again (only its SHA-256 is stored)",
            client.name
        );
    }
}

/// What kind of client, in words.
fn kind(client: &Client) -> &'static str {
    match (client.redirect_uris.is_empty(), client.public) {
        (true, _) => "machine",
        (false, false) => "confidential",
        (false, true) => "public",
    }
}

/// The URIs, checked, as stored (space separated).
fn uri_list(uris: &[String], what: &str) -> anyhow::Result<String> {
    for uri in uris {
        if let Err(why) = crate::routes::redirect_check(uri) {
            bail!("{what} {uri:?}: {why}");
        }
    }
    let mut unique: Vec<&str> = Vec::new();
    for uri in uris {
        if !unique.contains(&uri.as_str()) {
            unique.push(uri);
        }
    }
    Ok(unique.join(" "))
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
                check_name(&name)?;
                let redirect_uris = uri_list(&redirect_uris, "--redirect-uri")?;
                let post_logout_redirect_uris =
                    uri_list(&post_logout_redirect_uris, "--post-logout-redirect-uri")?;
                if redirect_uris.is_empty() && !post_logout_redirect_uris.is_empty() {
                    bail!("--post-logout-redirect-uri is for clients with a --redirect-uri");
                }
                let (_, store) = config.open().await?;
                let secret = if public { None } else { Some(secret()?) };
                let scope = scope.split_whitespace().collect::<Vec<_>>().join(" ");
                let client = Client {
                    id: random_id()?,
                    name,
                    secret_hash: secret
                        .as_ref()
                        .map(|s| s.sha256().to_vec())
                        .unwrap_or_default(),
                    scope,
                    disabled: false,
                    not_before: 0,
                    created_at: SystemClock.now(),
                    redirect_uris,
                    post_logout_redirect_uris,
                    public,
                    first_party,
                };
                store.add_client(&client).await.map_err(|e| match e {
                    portcullis_store::Error::Conflict => {
                        anyhow::anyhow!("a client named {:?} exists", client.name)
                    }
                    other => other.into(),
                })?;
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
                        kind(&c),
                        c.scope,
                        c.disabled,
                        c.first_party,
                        c.redirect_uris
                    );
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
                if store
                    .clients()
                    .await?
                    .iter()
                    .any(|c| c.name == name && c.public)
                {
                    bail!("{name} is a public client: it has no secret");
                }
                let secret = secret()?;
                let Some(client) = store.set_client_secret(&name, &secret.sha256()).await? else {
                    bail!("no such client: {name}");
                };
                shown_once(&client, Some(&secret));
            }
        }
        Ok(())
    })
}
