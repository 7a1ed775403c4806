//! `portcullis audit` (the audit trail) and `portcullis webhooks` (the endpoints that
//! hear of security events), on the configured database.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use portcullis::clock::{Clock as _, SystemClock};
use portcullis_store::{AuditFilter, NewWebhook, WebhookEvent};

use super::args::{ConfigArgs, runtime};
use crate::audit::{Actor, Entry, Kind, WEBHOOK_EVENTS};

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only records this recent: a duration (`24h`, `7d`) or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only records about this account (username or id).
    #[arg(long)]
    user: Option<String>,
    /// Only records of this kind (`login.failed`, `user.disabled`, …).
    #[arg(long)]
    kind: Option<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// At most this many records (default: all).
    #[arg(long)]
    limit: Option<i64>,
}

fn now() -> i64 {
    SystemClock.now()
}

/// `--since`: a duration back from now, or a time.
fn since(text: &str) -> anyhow::Result<i64> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(now() - i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2));
    }
    let t = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("--since {text:?}: a duration (24h, 7d) or an RFC 3339 time"))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0)))
}

pub(crate) fn audit(args: AuditArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let (_, store) = args.config.open().await?;
        let since = args.since.as_deref().map(since).transpose()?;
        if let Some(kind) = &args.kind
            && !crate::audit::KINDS.iter().any(|k| k.as_str() == kind)
        {
            bail!(
                "--kind {kind:?}: one of {}",
                crate::audit::KINDS
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        // A username is looked up (an erased account's id still finds its records).
        let subject = match &args.user {
            Some(text) => {
                let found = match portcullis::username::normalize_username(text) {
                    Ok(name) => store.user_by_username(&name).await?,
                    Err(_) => None,
                };
                found.map_or_else(|| text.clone(), |u| u.id)
            }
            None => String::new(),
        };
        let mut left = args.limit.unwrap_or(i64::MAX).max(0);
        let mut after = 0;
        let mut out = std::io::stdout().lock();
        if !args.json {
            writeln!(out, "id\ttime\tkind\tactor\tuser\taddress\tdetail")?;
        }
        while left > 0 {
            let page = store
                .audit(&AuditFilter {
                    subject: args.user.as_ref().map(|_| subject.as_str()),
                    kind: args.kind.as_deref(),
                    after: Some(after),
                    since,
                    limit: left.min(1000),
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            left -= page.len() as i64;
            for r in &page {
                if args.json {
                    let detail: serde_json::Value =
                        serde_json::from_str(&r.detail).unwrap_or_default();
                    let line = serde_json::json!({
                        "id": r.id, "at": r.at, "kind": r.kind, "actor": r.actor,
                        "user": r.subject, "address": r.address,
                        "user_agent": r.user_agent, "detail": detail,
                    });
                    writeln!(out, "{line}")?;
                } else {
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        r.id,
                        crate::audit::timestamp(r.at),
                        r.kind,
                        r.actor.as_deref().unwrap_or("-"),
                        r.subject.as_deref().unwrap_or("-"),
                        r.address.as_deref().unwrap_or("-"),
                        r.detail
                    )?;
                }
            }
        }
        Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebhooksCommand {
    /// Add an endpoint. Prints its id and (unless --secret-file) its new secret, once.
    Add {
        #[command(flatten)]
        config: ConfigArgs,
        /// Where deliveries go: https (or http to a loopback address, with
        /// webhook_allow_loopback).
        url: String,
        /// The events it gets, comma separated: user.created, user.updated,
        /// user.disabled, user.deleted, session.revoked, password.changed,
        /// mfa.changed, client.changed; or `*` for all.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// Use the `whsec_…` secret in FILE instead of making one.
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
    },
    /// List the endpoints with their deliveries: waiting, delivered, given up on, and
    /// the latest error.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Remove an endpoint (what it had waiting goes with it).
    Remove {
        #[command(flatten)]
        config: ConfigArgs,
        /// Its id (`wh_…`).
        id: String,
    },
    /// Queue a `webhook.test` message for one endpoint; a running server delivers it.
    Test {
        #[command(flatten)]
        config: ConfigArgs,
        /// Its id (`wh_…`).
        id: String,
    },
}

/// The `--events` list, checked, as stored.
fn events(list: &[String]) -> anyhow::Result<String> {
    let mut kept: Vec<&str> = Vec::new();
    for e in list.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        if e != "*" && !WEBHOOK_EVENTS.contains(&e) {
            bail!("--events {e:?}: one of {}, or *", WEBHOOK_EVENTS.join(", "));
        }
        if !kept.contains(&e) {
            kept.push(e);
        }
    }
    if kept.is_empty() {
        bail!("--events: at least one event");
    }
    if kept.contains(&"*") {
        return Ok("*".to_owned());
    }
    Ok(kept.join(" "))
}

pub(crate) fn webhooks(cmd: WebhooksCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            WebhooksCommand::Add {
                config,
                url,
                events: list,
                secret_file,
            } => {
                let (config, store) = config.open().await?;
                let url = crate::webhooks::check_url(&url, config.webhook_allow_loopback)
                    .with_context(|| format!("{url:?}"))?;
                let events = events(&list)?;
                let (key, shown) = match &secret_file {
                    Some(file) => {
                        let text = zeroize::Zeroizing::new(
                            std::fs::read_to_string(file)
                                .with_context(|| format!("reading {}", file.display()))?,
                        );
                        (crate::webhooks::parse_secret(&text)?, None)
                    }
                    None => {
                        let (key, text) = crate::webhooks::generate_secret()?;
                        (key, Some(text))
                    }
                };
                let (keks, _) = crate::keyring::open_kek(store.as_ref(), &config).await?;
                let id = format!("wh_{}", portcullis::jwt::random_id()?);
                let sealed = crate::webhooks::seal(keks.current(), &id, &key)?;
                store
                    .add_webhook(
                        &NewWebhook {
                            id: id.clone(),
                            url: url.to_string(),
                            events: events.clone(),
                            sealed_secret: sealed,
                        },
                        now(),
                    )
                    .await?;
                crate::audit::record_offline(
                    store.as_ref(),
                    Entry::new(Kind::WebhookAdded, Actor::Operator)
                        .with("webhook", id.as_str())
                        .with("events", events.as_str()),
                    now(),
                )
                .await?;
                let mut shown_json = serde_json::json!({
                    "id": id, "url": url.as_str(), "events": events.split(' ').collect::<Vec<_>>(),
                });
                if let Some(secret) = &shown {
                    shown_json["secret"] = secret.as_str().into();
                }
                println!("{shown_json}");
                if shown.is_some() {
                    eprintln!(
                        "{id}: give the secret to the receiver now; it is not shown again (it is kept sealed under the key-encryption key)"
                    );
                }
            }
            WebhooksCommand::List { config } => {
                let (_, store) = config.open().await?;
                println!("id\turl\tevents\twaiting\tdelivered\tfailed\tlast_error");
                for w in store.webhooks().await? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        w.id,
                        w.url,
                        w.events.replace(' ', ","),
                        w.waiting,
                        w.delivered,
                        w.failed,
                        w.last_error.as_deref().unwrap_or("-")
                    );
                }
            }
            WebhooksCommand::Remove { config, id } => {
                let (_, store) = config.open().await?;
                if !store.remove_webhook(&id).await? {
                    bail!("no such webhook: {id}");
                }
                crate::audit::record_offline(
                    store.as_ref(),
                    Entry::new(Kind::WebhookRemoved, Actor::Operator).with("webhook", id.as_str()),
                    now(),
                )
                .await?;
                println!("{id}: removed");
            }
            WebhooksCommand::Test { config, id } => {
                let (_, store) = config.open().await?;
                let at = now();
                let message_id = format!("msg_{}", portcullis::jwt::random_id()?);
                let payload = serde_json::json!({
                    "type": "webhook.test",
                    "timestamp": crate::audit::timestamp(at),
                    "data": { "webhook": id },
                });
                let queued = store
                    .enqueue_webhook(
                        &id,
                        &WebhookEvent {
                            event: "webhook.test".into(),
                            message_id: message_id.clone(),
                            payload: payload.to_string(),
                        },
                        at,
                    )
                    .await?;
                if !queued {
                    bail!("no such webhook: {id}");
                }
                println!(
                    "{message_id}: queued; a running server delivers it (see `portcullis webhooks list`)"
                );
            }
        }
        Ok(())
    })
}
