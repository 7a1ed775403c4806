//! The audit trail: one appended record per security event, and the webhook message
//! it raises, written together (`AuditStore::append_audit`).
//!
//! Who, what, on whom, when, from which address and user agent. The address and user
//! agent come from the request the event happens in: [`RequestContext`]
//! (`startup.rs`) runs every request inside [`Origin::scope`], so a record made
//! anywhere below a handler finds them without every function passing them on.
//! Records made outside a request (the CLI, background tasks) have none.
//!
//! Nothing secret enters a record: details are ids, reasons, factor names and field
//! names, never a password, code, token, secret or address the person typed. Webhook
//! payloads carry the same ids (never a username or email address): a receiver that
//! wants more asks the admin API.
//!
//! A record is written after the change it describes, not in its transaction: should
//! the process die between the two, the change stands unrecorded (a gap the docs
//! name). A record that cannot be written is logged as an error and the request goes
//! on: the change has happened, and refusing the answer would not undo it.
//!
//! [`RequestContext`]: crate::startup::RequestContext

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue};
use portcullis_store::{NewAudit, WebhookEvent};
use serde_json::{Value, json};

use crate::state::AppState;

tokio::task_local! {
    static ORIGIN: Origin;
}

/// Where a request came from, as the audit trail records it.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    peer: Option<IpAddr>,
    /// The forwarding headers, when the request had any (for trusted proxies).
    forwarded: Option<Box<HeaderMap>>,
    user_agent: Option<HeaderValue>,
}

impl Origin {
    /// Of a request: its TCP peer and the headers that say more.
    pub fn of(peer: Option<IpAddr>, headers: &HeaderMap) -> Origin {
        let mut forwarded: Option<Box<HeaderMap>> = None;
        for name in ["x-forwarded-for", "forwarded"] {
            for value in headers.get_all(name) {
                forwarded
                    .get_or_insert_default()
                    .append(name, value.clone());
            }
        }
        Origin {
            peer,
            forwarded,
            user_agent: headers.get(axum::http::header::USER_AGENT).cloned(),
        }
    }

    /// Runs `future` with this origin as its request's.
    pub fn scope<F: Future>(self, future: F) -> tokio::task::futures::TaskLocalFuture<Origin, F> {
        ORIGIN.scope(self, future)
    }

    /// The client address (through trusted proxies) and user agent.
    fn resolve(&self, state: &AppState) -> (Option<String>, Option<String>) {
        let address = self.peer.map(|peer| {
            let empty = HeaderMap::new();
            let headers = self.forwarded.as_deref().unwrap_or(&empty);
            state
                .0
                .config
                .trusted_proxies
                .client(peer, headers)
                .to_string()
        });
        let user_agent = self
            .user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect());
        (address, user_agent)
    }
}

/// Who did something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A person, signed in (or proving who they are in this very request).
    User(String),
    /// A machine client, by its client credentials.
    Client(String),
    /// Someone with a shell on the server (the CLI).
    Operator,
    /// The server itself (an automatic key rotation).
    System,
    /// Nobody known (a failed sign-in).
    Nobody,
}

impl Actor {
    /// The actor of a bearer token's holder: its client for a client-credentials token
    /// (whose subject is the client), else the person.
    pub fn of_token(subject: &str, client_id: Option<&str>) -> Actor {
        match client_id {
            Some(client) if client == subject => Actor::Client(client.to_owned()),
            _ => Actor::User(subject.to_owned()),
        }
    }

    /// The actor of a verified bearer token.
    pub fn of_identity(identity: &portcullis::strategy::Identity) -> Actor {
        let client = identity
            .token()
            .and_then(|t| t.claim("client_id"))
            .and_then(Value::as_str);
        Actor::of_token(identity.subject(), client)
    }

    fn text(&self) -> Option<String> {
        match self {
            Actor::User(id) => Some(format!("user:{id}")),
            Actor::Client(id) => Some(format!("client:{id}")),
            Actor::Operator => Some("operator".to_owned()),
            Actor::System => Some("system".to_owned()),
            Actor::Nobody => None,
        }
    }
}

/// What happened. The names are the `kind` of the records, documented in
/// docs/operations.md "Audit and webhooks".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    UserCreated,
    UserUpdated,
    UserDisabled,
    UserEnabled,
    UserDeleted,
    LoginSucceeded,
    LoginFailed,
    RefreshReused,
    Logout,
    LogoutEverywhere,
    PasswordChanged,
    PasswordReset,
    EmailVerified,
    MfaEnrolled,
    MfaRemoved,
    MfaUsed,
    MfaFailed,
    MfaReset,
    ConsentGranted,
    ConsentWithdrawn,
    ClientCreated,
    ClientUpdated,
    ClientDeleted,
    ClientSecretRotated,
    KeyRotated,
    WebhookAdded,
    WebhookRemoved,
    UsersImported,
    ResetLinkMade,
    IdentityLinked,
    IdentityUnlinked,
    ProviderAdded,
    ProviderRemoved,
}

/// Every kind, for the docs test and `--kind` checks.
pub const KINDS: &[Kind] = &[
    Kind::UserCreated,
    Kind::UserUpdated,
    Kind::UserDisabled,
    Kind::UserEnabled,
    Kind::UserDeleted,
    Kind::LoginSucceeded,
    Kind::LoginFailed,
    Kind::RefreshReused,
    Kind::Logout,
    Kind::LogoutEverywhere,
    Kind::PasswordChanged,
    Kind::PasswordReset,
    Kind::EmailVerified,
    Kind::MfaEnrolled,
    Kind::MfaRemoved,
    Kind::MfaUsed,
    Kind::MfaFailed,
    Kind::MfaReset,
    Kind::ConsentGranted,
    Kind::ConsentWithdrawn,
    Kind::ClientCreated,
    Kind::ClientUpdated,
    Kind::ClientDeleted,
    Kind::ClientSecretRotated,
    Kind::KeyRotated,
    Kind::WebhookAdded,
    Kind::WebhookRemoved,
    Kind::UsersImported,
    Kind::ResetLinkMade,
    Kind::IdentityLinked,
    Kind::IdentityUnlinked,
    Kind::ProviderAdded,
    Kind::ProviderRemoved,
];

/// The webhook event types, for `webhooks add --events`.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "user.created",
    "user.updated",
    "user.disabled",
    "user.deleted",
    "session.revoked",
    "password.changed",
    "mfa.changed",
    "client.changed",
];

impl Kind {
    /// The record's `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::UserCreated => "user.created",
            Kind::UserUpdated => "user.updated",
            Kind::UserDisabled => "user.disabled",
            Kind::UserEnabled => "user.enabled",
            Kind::UserDeleted => "user.deleted",
            Kind::LoginSucceeded => "login.succeeded",
            Kind::LoginFailed => "login.failed",
            Kind::RefreshReused => "refresh.reused",
            Kind::Logout => "logout",
            Kind::LogoutEverywhere => "logout.everywhere",
            Kind::PasswordChanged => "password.changed",
            Kind::PasswordReset => "password.reset",
            Kind::EmailVerified => "email.verified",
            Kind::MfaEnrolled => "mfa.enrolled",
            Kind::MfaRemoved => "mfa.removed",
            Kind::MfaUsed => "mfa.used",
            Kind::MfaFailed => "mfa.failed",
            Kind::MfaReset => "mfa.reset",
            Kind::ConsentGranted => "consent.granted",
            Kind::ConsentWithdrawn => "consent.withdrawn",
            Kind::ClientCreated => "client.created",
            Kind::ClientUpdated => "client.updated",
            Kind::ClientDeleted => "client.deleted",
            Kind::ClientSecretRotated => "client.secret_rotated",
            Kind::KeyRotated => "key.rotated",
            Kind::WebhookAdded => "webhook.added",
            Kind::WebhookRemoved => "webhook.removed",
            Kind::UsersImported => "users.imported",
            Kind::ResetLinkMade => "password.reset_link",
            Kind::IdentityLinked => "identity.linked",
            Kind::IdentityUnlinked => "identity.unlinked",
            Kind::ProviderAdded => "provider.added",
            Kind::ProviderRemoved => "provider.removed",
        }
    }

    /// The webhook event it raises, if any.
    pub fn webhook(self) -> Option<&'static str> {
        Some(match self {
            Kind::UserCreated => "user.created",
            Kind::UserUpdated
            | Kind::UserEnabled
            | Kind::EmailVerified
            | Kind::IdentityLinked
            | Kind::IdentityUnlinked => "user.updated",
            Kind::UserDisabled => "user.disabled",
            Kind::UserDeleted => "user.deleted",
            Kind::RefreshReused | Kind::Logout | Kind::LogoutEverywhere => "session.revoked",
            Kind::PasswordChanged | Kind::PasswordReset => "password.changed",
            Kind::MfaEnrolled | Kind::MfaRemoved | Kind::MfaReset => "mfa.changed",
            Kind::ClientCreated
            | Kind::ClientUpdated
            | Kind::ClientDeleted
            | Kind::ClientSecretRotated => "client.changed",
            Kind::LoginSucceeded
            | Kind::LoginFailed
            | Kind::MfaUsed
            | Kind::MfaFailed
            | Kind::ConsentGranted
            | Kind::ConsentWithdrawn
            | Kind::KeyRotated
            | Kind::WebhookAdded
            | Kind::WebhookRemoved
            | Kind::UsersImported
            | Kind::ResetLinkMade
            | Kind::ProviderAdded
            | Kind::ProviderRemoved => return None,
        })
    }
}

/// One record to write.
#[derive(Clone, Debug)]
pub struct Entry {
    kind: Kind,
    actor: Actor,
    subject: Option<String>,
    detail: serde_json::Map<String, Value>,
    /// Written without the request's address and user agent.
    without_origin: bool,
}

impl Entry {
    /// `kind`, done by `actor`.
    pub fn new(kind: Kind, actor: Actor) -> Entry {
        Entry {
            kind,
            actor,
            subject: None,
            detail: serde_json::Map::new(),
            without_origin: false,
        }
    }

    /// `kind`, done by the person `user_id` to their own account.
    pub fn own(kind: Kind, user_id: &str) -> Entry {
        Entry::new(kind, Actor::User(user_id.to_owned())).on(user_id)
    }

    /// To the account `user_id`.
    pub fn on(mut self, user_id: &str) -> Entry {
        self.subject = Some(user_id.to_owned());
        self
    }

    /// With `key: value` in the detail. Never a secret.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Entry {
        self.detail.insert(key.to_owned(), value.into());
        self
    }

    /// Without the request's address and user agent: the record of a person's own
    /// erasure, which they would otherwise outlive in.
    pub fn without_origin(mut self) -> Entry {
        self.without_origin = true;
        self
    }

    /// The record and its webhook message, at `now`, from `origin`.
    fn build(self, now: i64, address: Option<String>, user_agent: Option<String>) -> NewAudit {
        let actor = self.actor.text();
        let detail = Value::Object(self.detail);
        let webhook = self.kind.webhook().map(|event| {
            let message_id = format!("msg_{}", portcullis::jwt::random_id().unwrap_or_default());
            let payload = json!({
                "type": event,
                "timestamp": timestamp(now),
                "data": {
                    "kind": self.kind.as_str(),
                    "user_id": self.subject,
                    "actor": actor,
                    "detail": detail,
                },
            });
            WebhookEvent {
                event: event.to_owned(),
                message_id,
                payload: payload.to_string(),
            }
        });
        NewAudit {
            kind: self.kind.as_str().to_owned(),
            actor,
            subject: self.subject,
            address,
            user_agent,
            detail: detail.to_string(),
            webhook,
        }
    }
}

/// RFC 3339 in UTC, seconds.
pub fn timestamp(at: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(at).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Appends `entry` to the trail, with the address and user agent of the request it
/// is made in, and queues its webhook message.
pub async fn record(state: &AppState, entry: Entry) {
    let kind = entry.kind;
    let now = state.now();
    let record = build(state, entry, now);
    if let Err(e) = state.0.store.append_audit(&record, now).await {
        tracing::error!(error = %e, kind = kind.as_str(), "the audit record could not be written");
    }
}

/// The row [`record`] appends, for a caller that writes it in a transaction of its own
/// (a login's, with its refresh family).
pub fn build(state: &AppState, entry: Entry, now: i64) -> portcullis_store::NewAudit {
    let (address, user_agent) = if entry.without_origin {
        (None, None)
    } else {
        ORIGIN
            .try_with(|origin| origin.resolve(state))
            .unwrap_or_default()
    };
    entry.build(now, address, user_agent)
}

/// Appends `entry` from the CLI (actor and time as given; no request).
pub async fn record_offline(
    store: &dyn portcullis_store::AuditStore,
    entry: Entry,
    now: i64,
) -> anyhow::Result<()> {
    let record = entry.build(now, None, None);
    store.append_audit(&record, now).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_distinct_names_and_raise_only_the_documented_events() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        for kind in KINDS {
            if let Some(event) = kind.webhook() {
                assert!(WEBHOOK_EVENTS.contains(&event), "{event}");
            }
        }
        for event in WEBHOOK_EVENTS {
            assert!(KINDS.iter().any(|k| k.webhook() == Some(event)), "{event}");
        }
    }

    #[test]
    fn a_record_carries_ids_and_its_webhook_message_no_more() {
        let entry = Entry::new(Kind::UserDisabled, Actor::Client("c1".into()))
            .on("u1")
            .with("reason", "test");
        let record = entry.build(1_700_000_000, Some("192.0.2.1".into()), None);
        assert_eq!(record.kind, "user.disabled");
        assert_eq!(record.actor.as_deref(), Some("client:c1"));
        assert_eq!(record.subject.as_deref(), Some("u1"));
        assert_eq!(record.detail, r#"{"reason":"test"}"#);
        let webhook = record.webhook.expect("user.disabled raises a webhook");
        assert_eq!(webhook.event, "user.disabled");
        assert!(webhook.message_id.starts_with("msg_"));
        let payload: Value = serde_json::from_str(&webhook.payload).unwrap();
        assert_eq!(payload["type"], "user.disabled");
        assert_eq!(payload["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(payload["data"]["user_id"], "u1");
        assert_eq!(payload["data"]["actor"], "client:c1");
        let failed = Entry::new(Kind::LoginFailed, Actor::Nobody).build(0, None, None);
        assert_eq!(failed.actor, None);
        assert!(failed.webhook.is_none());
    }
}
