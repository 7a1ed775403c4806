//! `portcullis serve` and the admin commands that work on the configured database.

use portcullis::clock::secs;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use portcullis::clock::{Clock as _, SystemClock};
use portcullis::jwt::random_id;
use portcullis::keys::Algorithm;
use portcullis::password::{HashParams, Password, PasswordHasher};
use portcullis::username::{check_new_username, normalize_username, skeleton};
use portcullis_store::NewUser;

use super::args::{ConfigArgs, open_existing, runtime};
use crate::audit::{Actor, Entry, Kind};
use crate::{keyring, startup, telemetry};

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
    /// No start-up banner (the log still says what happens).
    #[arg(long)]
    quiet: bool,
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<()> {
    telemetry::init();
    let config = args.config.load(args.bind, args.issuer)?;
    runtime()?.block_on(startup::run(config, args.quiet))
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
    /// Show one account: its id, scope, address, second factors, and the upstream
    /// providers linked to it.
    Show {
        #[command(flatten)]
        config: ConfigArgs,
        /// The username.
        username: String,
    },
    /// Disable an account: it can no longer log in or refresh, and every session,
    /// refresh family and access token it has ends.
    Disable {
        #[command(flatten)]
        config: ConfigArgs,
        /// The username.
        username: String,
    },
    /// Enable a disabled account again.
    Enable {
        #[command(flatten)]
        config: ConfigArgs,
        /// The username.
        username: String,
    },
    /// Set an account's email address, unverified unless --verified (an address you
    /// know to be the person's); `--remove` takes it away.
    SetEmail {
        #[command(flatten)]
        config: ConfigArgs,
        /// The username.
        username: String,
        /// The address.
        #[arg(required_unless_present = "remove", conflicts_with = "remove")]
        email: Option<String>,
        /// Mark the address as proven.
        #[arg(long)]
        verified: bool,
        /// Remove the account's address.
        #[arg(long)]
        remove: bool,
    },
    /// Import accounts from another system (JSON Lines, one per line; `-` for stdin),
    /// with their password hashes: bcrypt, Argon2, scrypt or PBKDF2-SHA256 (PHC). Each
    /// first login rehashes to Argon2id. Exit 2 when a line was refused (each is
    /// listed with its number; the others are imported). docs/migrating-from-passport.md.
    Import(super::import::ImportArgs),
    /// Print a one-time password-reset link for an account (for deployments without
    /// mail): it works once, for reset_token_ttl, and voids the account's earlier reset
    /// links. The account needs a verified email address, as a mailed link does.
    ResetLink {
        #[command(flatten)]
        config: ConfigArgs,
        /// The username.
        username: String,
    },
    /// Remove every second factor of an account (its authenticator app and recovery
    /// codes), for a person who lost them: their sessions, refresh families and access
    /// tokens end too, and the event log records it. Their password alone signs them
    /// in again; they should set up a new factor.
    ResetMfa {
        #[command(flatten)]
        config: ConfigArgs,
        /// The username.
        username: String,
    },
    /// Set an account's scopes: replace them all (SCOPE), or --add and --remove some.
    /// Live refresh families and sessions take the new scopes at once; when a scope is
    /// taken away, access tokens issued before are refused on every instance.
    GrantScope {
        #[command(flatten)]
        config: ConfigArgs,
        /// The username.
        username: String,
        /// The new scopes, space separated, replacing the old ones.
        #[arg(conflicts_with_all = ["add", "remove"], required_unless_present_any = ["add", "remove"])]
        scope: Option<String>,
        /// A scope to add (repeatable).
        #[arg(long, value_name = "SCOPE")]
        add: Vec<String>,
        /// A scope to remove (repeatable).
        #[arg(long, value_name = "SCOPE")]
        remove: Vec<String>,
    },
    /// Take scopes away from an account (the same as grant-scope --remove).
    RevokeScope {
        #[command(flatten)]
        config: ConfigArgs,
        /// The username.
        username: String,
        /// The scopes to remove.
        #[arg(required = true)]
        scope: Vec<String>,
    },
}

/// Applies a scope change and says what it did.
async fn change_scope(
    store: &dyn portcullis_store::Store,
    username: &str,
    replace: Option<String>,
    add: &[String],
    remove: &[String],
) -> anyhow::Result<()> {
    let name = normalize_username(username)?;
    let Some(user) = store.user_by_username(&name).await? else {
        bail!("no such user: {username}");
    };
    let words =
        |text: &str| -> Vec<String> { text.split_whitespace().map(str::to_owned).collect() };
    let mut scopes = match replace {
        Some(text) => words(&text),
        None => words(&user.scope),
    };
    for s in add.iter().flat_map(|a| words(a)) {
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    let removing: Vec<String> = remove.iter().flat_map(|r| words(r)).collect();
    scopes.retain(|s| !removing.contains(s));
    let scope = scopes.join(" ");
    let Some(change) = store.set_scope(&name, &scope, now()).await? else {
        bail!("no such user: {username}");
    };
    crate::audit::record_offline(
        store,
        Entry::new(Kind::UserUpdated, Actor::Operator)
            .on(&user.id)
            .with("fields", ["scope"].as_slice())
            .with("via", "cli"),
        now(),
    )
    .await?;
    println!(
        "{name}: scope is now {scope:?} (was {:?}); {} refresh famil{} and {} session{} re-scoped{}",
        user.scope,
        change.families,
        if change.families == 1 { "y" } else { "ies" },
        change.sessions,
        if change.sessions == 1 { "" } else { "s" },
        if change.removed {
            "; access tokens issued before now are refused"
        } else {
            ""
        }
    );
    Ok(())
}

pub(crate) fn users(cmd: UsersCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            UsersCommand::Add {
                config,
                username,
                scope,
            } => {
                let (config, store) = config.open().await?;
                let username = normalize_username(&username)?;
                check_new_username(&username)?;
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
                        skeleton: skeleton(&username),
                        username,
                        password_hash: hash,
                        scope: scope.unwrap_or(config.default_scope),
                        created_at: now(),
                        email: None,
                    })
                    .await
                    .map_err(|e| match e {
                        portcullis_store::Error::Conflict => {
                            anyhow::anyhow!("that username, or one that looks like it, is taken")
                        }
                        other => other.into(),
                    })?;
                operator(store.as_ref(), Kind::UserCreated, &user.id, "cli").await?;
                println!("{}\t{}", user.id, user.username);
            }
            UsersCommand::List { config } => {
                let (_, store) = config.open().await?;
                println!("id\tusername\tscope\tdisabled");
                for u in store.list_users().await? {
                    println!("{}\t{}\t{}\t{}", u.id, u.username, u.scope, u.disabled);
                }
            }
            UsersCommand::Show { config, username } => {
                let (_, store) = config.open().await?;
                let name = normalize_username(&username)?;
                let Some(user) = store.user_by_username(&name).await? else {
                    bail!("no such user: {username}");
                };
                let links = store.identities_of(&user.id).await?;
                let shown = serde_json::json!({
                    "id": user.id,
                    "username": user.username,
                    "scope": user.scope,
                    "disabled": user.disabled,
                    "created_at": user.created_at,
                    "email": user.email,
                    "email_verified": user.email_verified,
                    "password": user.has_password(),
                    "second_factors": user.factors().collect::<Vec<_>>(),
                    "providers": links.iter().map(|l| serde_json::json!({
                        "provider": l.provider, "subject": l.subject, "label": l.label,
                        "linked_at": l.created_at, "last_used_at": l.last_used_at,
                    })).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&shown)?);
            }
            UsersCommand::Disable { config, username } => {
                let (_, store) = config.open().await?;
                let name = normalize_username(&username)?;
                let Some(user) = store.user_by_username(&name).await? else {
                    bail!("no such user: {username}");
                };
                store.set_disabled(&name, true).await?;
                // Logout everywhere too: sessions, refresh families and every access
                // token issued until now end on every running instance.
                let ended = store.revoke_user(&user.id, SystemClock.now()).await?;
                operator(store.as_ref(), Kind::UserDisabled, &user.id, "cli").await?;
                let n = ended.len();
                let what = if n == 1 {
                    "session or refresh family"
                } else {
                    "sessions and refresh families"
                };
                println!(
                    "{name}: disabled; {n} {what} ended, access tokens issued before now refused"
                );
            }
            UsersCommand::Enable { config, username } => {
                let (_, store) = config.open().await?;
                let name = normalize_username(&username)?;
                if !store.set_disabled(&name, false).await? {
                    bail!("no such user: {username}");
                }
                if let Some(user) = store.user_by_username(&name).await? {
                    operator(store.as_ref(), Kind::UserEnabled, &user.id, "cli").await?;
                }
                println!("{name}: enabled; it can log in again (its old sessions stay ended)");
            }
            UsersCommand::SetEmail {
                config,
                username,
                email,
                verified,
                remove: _,
            } => {
                let (_, store) = config.open().await?;
                let name = normalize_username(&username)?;
                let email = match email {
                    Some(text) => Some(
                        crate::email::normalize(&text)
                            .map_err(|e| anyhow::anyhow!("{text:?}: {}", e.0))?,
                    ),
                    None => None,
                };
                match store.set_email(&name, email.as_ref(), verified).await {
                    Ok(true) => {}
                    Ok(false) => bail!("no such user: {username}"),
                    Err(portcullis_store::Error::Conflict) => {
                        bail!("another account has verified that address: nothing changed")
                    }
                    Err(e) => return Err(e.into()),
                }
                tracing::info!(user = %name, verified, removed = email.is_none(), "email address set by an operator");
                if let Some(user) = store.user_by_username(&name).await? {
                    operator(store.as_ref(), Kind::UserUpdated, &user.id, "cli").await?;
                }
                match &email {
                    Some(e) => println!(
                        "{name}: email is now {} ({})",
                        e.address,
                        if verified { "verified" } else { "not verified" }
                    ),
                    None => println!("{name}: email removed"),
                }
            }
            UsersCommand::Import(args) => super::import::import(args).await?,
            UsersCommand::ResetMfa { config, username } => {
                let (_, store) = config.open().await?;
                let name = normalize_username(&username)?;
                let Some(user) = store.user_by_username(&name).await? else {
                    bail!("no such user: {username}");
                };
                let had = user.factors.clone();
                let Some(ended) = store.reset_factors(&user.id, SystemClock.now()).await? else {
                    bail!("no such user: {username}");
                };
                tracing::warn!(user = %user.id, factors = %had, "second factors reset by an operator");
                operator(store.as_ref(), Kind::MfaReset, &user.id, "cli").await?;
                println!(
                    "{name}: second factors removed ({}); {} sessions and refresh families ended, access tokens issued before now refused",
                    if had.is_empty() { "it had none" } else { had.as_str() },
                    ended.len()
                );
            }
            UsersCommand::ResetLink { config, username } => {
                let (config, store) = config.open().await?;
                let name = normalize_username(&username)?;
                let Some(user) = store.user_by_username(&name).await? else {
                    bail!("no such user: {username}");
                };
                if user.disabled {
                    bail!("{name} is disabled: enable it first");
                }
                let now = portcullis::clock::Clock::now(&portcullis::clock::SystemClock);
                let link =
                    crate::recovery::reset_link_for_operator(&config, store.as_ref(), &user, now)
                        .await
                        .map_err(|e| anyhow::anyhow!("{}", e.for_people()))?;
                let Some(link) = link else {
                    bail!(
                        "{name} has no verified email address: a reset link needs one (set one \
                         with `portcullis users set-email {name} ADDRESS --verified`)"
                    );
                };
                tracing::info!(user = %user.id, "reset link made by an operator");
                crate::audit::record_offline(
                    store.as_ref(),
                    Entry::new(Kind::ResetLinkMade, Actor::Operator)
                        .on(&user.id)
                        .with("via", "cli"),
                    now,
                )
                .await?;
                println!("{link}");
            }
            UsersCommand::GrantScope {
                config,
                username,
                scope,
                add,
                remove,
            } => {
                let (_, store) = config.open().await?;
                change_scope(store.as_ref(), &username, scope, &add, &remove).await?;
            }
            UsersCommand::RevokeScope {
                config,
                username,
                scope,
            } => {
                let (_, store) = config.open().await?;
                change_scope(store.as_ref(), &username, None, &[], &scope).await?;
            }
        }
        Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServerKeysCommand {
    /// Make a new signing key: published at once, signing after key_publication_delay
    /// (5 min 30 s by default), when the current one retires (it verifies until its
    /// tokens expire).
    Rotate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Algorithm of the new key (default: the configured signing_alg).
        #[arg(long)]
        alg: Option<Algorithm>,
        /// Sign with it at once (an emergency: resource servers that cached the JWKS
        /// refuse its tokens until they fetch it again).
        #[arg(long)]
        now: bool,
    },
    /// List the signing keys in the database.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Seal every signing key under a new key-encryption key, read from FILE (or made
    /// there, mode 0600, with --generate). Then point every instance at it
    /// (key_encryption_key_file) and restart them.
    Rewrap {
        #[command(flatten)]
        config: ConfigArgs,
        /// The new key-encryption key: a file holding 32 bytes in base64.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Make a new random key in FILE (which must not exist).
        #[arg(long)]
        generate: bool,
    },
}

/// An operator's change, in the audit trail (and to the webhooks it raises).
async fn operator(
    store: &dyn portcullis_store::Store,
    kind: Kind,
    user_id: &str,
    via: &str,
) -> anyhow::Result<()> {
    crate::audit::record_offline(
        store,
        Entry::new(kind, Actor::Operator)
            .on(user_id)
            .with("via", via),
        now(),
    )
    .await
}

pub(crate) fn server_keys(cmd: ServerKeysCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            ServerKeysCommand::Rotate {
                config,
                alg,
                now: at_once,
            } => {
                let config = config.load(None, None)?;
                if let Some(alg) = alg {
                    crate::config::publishable(alg)?;
                }
                let store = open_existing(&config.database_url).await?;
                let newest = store
                    .signing_keys()
                    .await?
                    .into_iter()
                    .max_by_key(|k| k.activates_at)
                    .and_then(|k| k.alg.parse().ok());
                let alg = alg.unwrap_or_else(|| config.alg_after(newest));
                crate::config::publishable(alg)?;
                let (kid, activates_at) =
                    keyring::rotate(store.as_ref(), &config, alg, at_once, now()).await?;
                crate::audit::record_offline(
                    store.as_ref(),
                    Entry::new(Kind::KeyRotated, Actor::Operator)
                        .with("kid", kid.as_str())
                        .with("alg", alg.as_str())
                        .with("via", "cli"),
                    now(),
                )
                .await?;
                println!("{kid}");
                eprintln!(
                    "key {kid} ({}) is published now and signs from {}",
                    alg.as_str(),
                    when(activates_at)
                );
            }
            ServerKeysCommand::Rewrap {
                config,
                to,
                generate,
            } => {
                let (config, store) = config.open().await?;
                let (old, _) = keyring::open_kek(store.as_ref(), &config).await?;
                let source = format!("key_encryption_key_file {}", to.display());
                let new = if generate {
                    let (kek, text) = crate::kek::Kek::generate(source)?;
                    crate::kek::write_private(&to, text.as_bytes())
                        .with_context(|| format!("writing {}", to.display()))?;
                    kek
                } else {
                    let text = std::fs::read_to_string(&to)
                        .with_context(|| format!("reading {}", to.display()))?;
                    crate::kek::Kek::from_text(&text, source)?
                };
                let moved = keyring::rewrap(store.as_ref(), &old, &new).await?;
                let secrets = crate::factors::rewrap_secrets(store.as_ref(), &old, &new).await?;
                let hooks = crate::webhooks::rewrap_secrets(store.as_ref(), &old, &new).await?;
                let upstream =
                    crate::providers::rewrap_secrets(store.as_ref(), &old, &new).await?;
                println!(
                    "sealed {moved} signing keys, {secrets} authenticator secrets, {hooks} webhook secrets and {upstream} provider secrets under the key in {} (key-encryption key {}); \
                     instances holding it (as key_encryption_key_file, or beside the old one as \
                     previous_key_encryption_key_file) open them and seal new keys under it. \
                     An instance holding only the old key adds no key until restarted with the \
                     new one: set key_encryption_key_file = {:?} (or \
                     PORTCULLIS_KEY_ENCRYPTION_KEY_FILE) everywhere",
                    to.display(),
                    new.id(),
                    to.display().to_string()
                );
            }
            ServerKeysCommand::List { config } => {
                let (config, store) = config.open().await?;
                let keys = store.signing_keys().await?;
                let keep = secs(config.revocation_window());
                let (states, _) = keyring::lifecycle(&keys, now(), keep);
                println!("kid\talg\tcreated\tsigns from\tstate");
                for (k, state) in keys.iter().zip(states) {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        k.kid,
                        k.alg,
                        when(k.created_at),
                        when(k.activates_at),
                        state.as_str()
                    );
                }
            }
        }
        Ok(())
    })
}

/// A time for people: `2026-12-01 05:03:00 UTC`.
fn when(secs: i64) -> String {
    let t = portcullis::clock::system_time(secs);
    let text = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} {} UTC", &text[..10], &text[11..19])
}

fn now() -> i64 {
    use portcullis::clock::Clock as _;
    portcullis::clock::SystemClock.now()
}
