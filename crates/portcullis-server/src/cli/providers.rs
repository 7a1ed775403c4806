//! `portcullis providers`: the upstream identity providers people may sign in with
//! (`/login/NAME`), on the configured database.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use portcullis::clock::{Clock as _, SystemClock};
use portcullis_store::Provider;

use super::args::{ConfigArgs, runtime};
use crate::audit::{Actor, Entry, Kind};
use crate::providers::{
    DEFAULT_SCOPE, GITHUB, GITHUB_SCOPE, KIND_GITHUB, KIND_OIDC, check_name, redirect_uri,
    seal_secret,
};

#[derive(Debug, Subcommand)]
pub(crate) enum ProvidersCommand {
    /// Add an OpenID Connect provider (found by discovery at ISSUER), or GitHub
    /// (`--preset github`). Prints the redirect URI to register there. A running server
    /// offers it at its next sign-in page.
    Add {
        #[command(flatten)]
        config: ConfigArgs,
        /// Its name here: the sign-in path /login/NAME (lower-case letters, digits, -).
        name: String,
        /// A provider that is not OpenID Connect: `github` (GitHub's OAuth app sign-in
        /// and REST API; --issuer is then the site, https://github.com by default, or
        /// a GitHub Enterprise Server).
        #[arg(long, value_parser = ["github"])]
        preset: Option<String>,
        /// The provider's issuer: https (http only on loopback addresses).
        #[arg(long, required_unless_present = "preset")]
        issuer: Option<String>,
        /// This server's client id there.
        #[arg(long)]
        client_id: String,
        /// A file holding the client secret (kept sealed under the key-encryption
        /// key); without it the client is public and uses PKCE alone.
        #[arg(long, value_name = "FILE")]
        client_secret_file: Option<PathBuf>,
        /// The scopes to ask for (default `openid email profile`; with `--preset
        /// github`, `read:user user:email`).
        #[arg(long)]
        scope: Option<String>,
        /// What the sign-in page's button says after "Continue with" (default: NAME).
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List the providers and their redirect URIs.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Remove a provider: nobody signs in through it any more. Its links to accounts
    /// stay, so adding it again under the same name signs the same people in to the
    /// same accounts.
    Remove {
        #[command(flatten)]
        config: ConfigArgs,
        /// Its name.
        name: String,
    },
}

pub(crate) fn run(cmd: ProvidersCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            ProvidersCommand::Add {
                config,
                name,
                preset,
                issuer,
                client_id,
                client_secret_file,
                scope,
                display_name,
            } => {
                check_name(&name)?;
                let github = preset.as_deref() == Some("github");
                let (kind, default_issuer, default_scope, default_display) = if github {
                    (KIND_GITHUB, Some(GITHUB), GITHUB_SCOPE, "GitHub".to_owned())
                } else {
                    (KIND_OIDC, None, DEFAULT_SCOPE, name.clone())
                };
                let issuer = issuer
                    .as_deref()
                    .or(default_issuer)
                    .unwrap_or_default()
                    .trim_end_matches('/')
                    .to_owned();
                if !portcullis::remote::is_https_or_loopback(&issuer) {
                    bail!("--issuer {issuer:?}: https, or http on a loopback address only");
                }
                if client_id.trim().is_empty() {
                    bail!("--client-id: empty");
                }
                let scope = scope.unwrap_or_else(|| default_scope.to_owned());
                if !github && !scope.split_whitespace().any(|s| s == "openid") {
                    bail!("--scope {scope:?}: an OpenID Connect sign-in needs `openid`");
                }
                let display_name = display_name.unwrap_or(default_display);
                if display_name.trim().is_empty() || display_name.chars().count() > 64 {
                    bail!("--display-name: 1 to 64 characters");
                }
                let (config, store) = config.open().await?;
                let sealed = match &client_secret_file {
                    Some(file) => {
                        let text = zeroize::Zeroizing::new(
                            std::fs::read_to_string(file)
                                .with_context(|| format!("reading {}", file.display()))?,
                        );
                        let secret = text.trim();
                        if secret.is_empty() {
                            bail!("{}: empty", file.display());
                        }
                        let (keks, _) = crate::keyring::open_kek(store.as_ref(), &config).await?;
                        Some(seal_secret(keks.current(), &name, secret)?)
                    }
                    None => None,
                };
                let now = SystemClock.now();
                let provider = Provider {
                    name: name.clone(),
                    kind: kind.to_owned(),
                    issuer: issuer.clone(),
                    client_id,
                    sealed_secret: sealed,
                    scope: scope.split_whitespace().collect::<Vec<_>>().join(" "),
                    display_name,
                    created_at: now,
                };
                match store.add_provider(&provider).await {
                    Err(portcullis_store::Error::Conflict) => {
                        bail!("a provider named {name:?} exists (remove it first)")
                    }
                    other => other?,
                }
                crate::audit::record_offline(
                    store.as_ref(),
                    Entry::new(Kind::ProviderAdded, Actor::Operator)
                        .with("provider", name.as_str())
                        .with("issuer", issuer.as_str()),
                    now,
                )
                .await?;
                println!("{}", redirect_uri(&config.issuer, &name));
                eprintln!(
                    "{name}: added; register the redirect URI above with the provider (for client {:?})",
                    provider.client_id
                );
            }
            ProvidersCommand::List { config } => {
                let (config, store) = config.open().await?;
                println!("name\tkind\tissuer\tclient_id\tsecret\tscope\tredirect_uri");
                for p in store.providers().await? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        p.name,
                        p.kind,
                        p.issuer,
                        p.client_id,
                        if p.sealed_secret.is_some() {
                            "sealed"
                        } else {
                            "none"
                        },
                        p.scope,
                        redirect_uri(&config.issuer, &p.name)
                    );
                }
            }
            ProvidersCommand::Remove { config, name } => {
                let (_, store) = config.open().await?;
                if !store.remove_provider(&name).await? {
                    bail!("no such provider: {name}");
                }
                crate::audit::record_offline(
                    store.as_ref(),
                    Entry::new(Kind::ProviderRemoved, Actor::Operator)
                        .with("provider", name.as_str()),
                    SystemClock.now(),
                )
                .await?;
                println!("{name}: removed (its links to accounts are kept)");
            }
        }
        Ok(())
    })
}
