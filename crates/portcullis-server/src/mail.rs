//! Delivering the mail outbox (`portcullis_store::MailStore`): a background task on
//! every instance claims due messages for a lease, hands each to the transport, and
//! writes down the outcome.
//!
//! Transports:
//! - **SMTP** (`smtp_url`): lettre over tokio, TLS by rustls on aws-lc-rs.
//!   `smtps://host[:465]` is TLS from the first byte, `smtp+starttls://host[:587]` (or
//!   `smtp://host[:587]?tls=required`) is STARTTLS, required, and plain
//!   `smtp://host:port` (no TLS) is refused unless the host is a loopback address (a
//!   relay on the same machine). Credentials go in the URL
//!   (`smtps://user:password@host`), or the password in `smtp_password_file`.
//! - **A folder** (no `smtp_url`, the embedded default): each message is written as
//!   `<created>-<id, 12 digits>.eml` (so that names sort in queue order) (mode 0600) to a folder of mode 0700, beside the SQLite database
//!   (`<database>.mail`), for an operator or a test to read.
//!
//! Delivery is at least once: a message is marked sent after the transport accepted it,
//! so a process that dies between the two sends it again once its lease (`mail_lease`,
//! 60 s by default) ends,
//! with the same Message-ID, so that mail software can tell the copies apart. A
//! transient failure (4xx, the network, a timeout) is retried after 30 s, doubling up
//! to an hour, for at most [`MAX_ATTEMPTS`] attempts in all; a permanent one (5xx) is
//! not retried. Either way the message stays in the outbox with its last error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use portcullis_store::{QueuedMail, Store};
use tokio::sync::watch;

use crate::state::AppState;

/// Attempts before a message is given up on: with waits doubling from 30 s to an hour,
/// about a day of trying.
pub const MAX_ATTEMPTS: i64 = 30;
/// How long a claim holds a message by default (`mail_lease`): twice the longest a
/// delivery may take.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Messages claimed at once.
const BATCH: i64 = 20;
/// The longest an SMTP conversation for one message may take: half the lease, so
/// that a delivery ends (done or given up) before its claim does and another sender
/// never takes a message still being sent.
fn send_timeout(lease: Duration) -> Duration {
    lease / 2
}

/// Where mail goes.
pub enum Transport {
    /// An SMTP server.
    Smtp {
        mailer: AsyncSmtpTransport<Tokio1Executor>,
        /// The URL without its password, for messages.
        shown: String,
        /// The longest one message's conversation may take.
        timeout: Duration,
    },
    /// `.eml` files in a folder.
    Folder(PathBuf),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Transport {
    /// From the settings: SMTP when `smtp_url` is set, else the folder.
    pub fn from_settings(
        smtp_url: Option<&str>,
        folder: PathBuf,
        lease: Duration,
    ) -> anyhow::Result<Transport> {
        let Some(url) = smtp_url else {
            return Ok(Transport::Folder(folder));
        };
        let mut parsed = url::Url::parse(url).context("smtp_url is not a URL")?;
        // lettre's own spelling of STARTTLS, required: `smtp://…?tls=required`.
        if parsed.scheme() == "smtp+starttls" {
            let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
            let mut again =
                url::Url::parse(&format!("smtp://{rest}")).context("smtp_url is not a URL")?;
            again
                .query_pairs_mut()
                .clear()
                .append_pair("tls", "required");
            parsed = again;
        }
        let url = parsed.to_string();
        let url = url.as_str();
        let host = parsed.host_str().unwrap_or_default().to_owned();
        // `tls=opportunistic` would fall back to plain text whenever the server (or
        // anyone between) leaves STARTTLS out: off this machine only `required` will do.
        let tls = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        match (parsed.scheme(), tls.as_deref()) {
            ("smtps", _) | ("smtp", Some("required")) => {}
            ("smtp", _) => {
                if !crate::client::loopback_host(&host) {
                    bail!(
                        "smtp_url: smtp://{host} without tls=required could send mail, and any \
                         password in the URL, in the clear; use smtps:// (TLS) or \
                         smtp://…?tls=required (STARTTLS), or a relay on this machine (127.0.0.1)"
                    );
                }
            }
            (other, _) => {
                bail!("smtp_url: {other}:// is not smtps://, smtp+starttls:// or smtp://")
            }
        }
        let mut shown = parsed.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("REDACTED"));
        }
        let mailer = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .with_context(|| format!("smtp_url {shown}"))?
            .timeout(Some(send_timeout(lease)))
            .build();
        Ok(Transport::Smtp {
            mailer,
            shown: shown.to_string(),
            timeout: send_timeout(lease),
        })
    }

    /// Where mail goes, in words (no password).
    pub fn describe(&self) -> String {
        match self {
            Transport::Smtp { shown, .. } => format!("sent through {shown}"),
            Transport::Folder(folder) => {
                format!("written to {} (no smtp_url)", folder.display())
            }
        }
    }

    /// Makes the folder (mode 0700) if mail goes to one.
    pub fn prepare(&self) -> anyhow::Result<()> {
        if let Transport::Folder(folder) = self {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("creating the mail folder {}", folder.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("securing the mail folder {}", folder.display()))?;
            }
        }
        Ok(())
    }

    async fn deliver(&self, message: Message, mail: &QueuedMail) -> Result<(), Failure> {
        match self {
            Transport::Smtp {
                mailer, timeout, ..
            } => match tokio::time::timeout(*timeout, mailer.send(message)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(Failure {
                    permanent: e.is_permanent(),
                    text: e.to_string(),
                }),
                Err(_) => Err(Failure {
                    permanent: false,
                    text: format!("no answer within {} s", timeout.as_secs()),
                }),
            },
            Transport::Folder(folder) => write_eml(folder, mail, &message.formatted())
                .await
                .map_err(|e| Failure {
                    permanent: false,
                    text: format!("{e:#}"),
                }),
        }
    }
}

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug)]
struct Failure {
    permanent: bool,
    text: String,
}

/// Writes the message to `<folder>/<created>-<id>.eml` through a temporary file, so that
/// a reader never sees half of one; mode 0600.
async fn write_eml(folder: &Path, mail: &QueuedMail, bytes: &[u8]) -> anyhow::Result<()> {
    let name = format!("{}-{:012}.eml", mail.created_at, mail.id);
    let tmp = folder.join(format!(".{name}.tmp"));
    crate::kek::write_private(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    tokio::fs::rename(&tmp, folder.join(&name))
        .await
        .with_context(|| format!("writing {name}"))?;
    Ok(())
}

/// The message as sent: From, To, Subject, the fixed Message-ID, the date it was
/// queued, and its text and HTML bodies.
fn message(from: &Mailbox, mail: &QueuedMail) -> Result<Message, Failure> {
    let permanent = |what: &str, e: &dyn std::fmt::Display| Failure {
        permanent: true,
        text: format!("{what}: {e}"),
    };
    let to: Mailbox = mail
        .recipient
        .parse()
        .map_err(|e| permanent("the recipient", &e))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .message_id(Some(format!("<{}>", mail.message_id)))
        .date(portcullis::clock::system_time(mail.created_at))
        .multipart(
            MultiPart::alternative()
                .singlepart(part(ContentType::TEXT_PLAIN, &mail.text_body))
                .singlepart(part(ContentType::TEXT_HTML, &mail.html_body)),
        )
        .map_err(|e| permanent("the message", &e))
}

/// One body part. Plain ASCII whose lines fit SMTP's limit (998 octets, RFC 5322
/// §2.1.1) goes as it is (`7bit`), so that a link stays one line that a person or
/// `grep` can read in the raw message; lettre would quote-print any line over 76.
/// Anything else gets lettre's choice of quoted-printable or base64.
fn part(content_type: ContentType, text: &str) -> SinglePart {
    let plain = text.is_ascii()
        && !text.contains(['\0', '\r'])
        && text.split('\n').all(|line| line.len() <= 998);
    let body = if plain {
        Body::dangerous_pre_encoded(
            text.replace('\n', "\r\n").into_bytes(),
            ContentTransferEncoding::SevenBit,
        )
    } else {
        Body::new(text.to_owned())
    };
    SinglePart::builder().header(content_type).body(body)
}

/// When a message that failed transiently at its `attempts`-th attempt is tried again:
/// 30 s after the first, doubling up to an hour; never after [`MAX_ATTEMPTS`].
pub fn retry_at(now: i64, attempts: i64) -> Option<i64> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let exponent = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    Some(now + (30i64 << exponent).min(3600))
}

/// The sender: every second (and at once when told), claims what is due and delivers
/// it. Runs on every instance; the store's claims keep them from sending one message
/// twice at once.
pub async fn run(
    state: AppState,
    transport: Arc<Transport>,
    from: Mailbox,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let store: &dyn Store = state.0.store.as_ref();
        let now = state.now();
        let lease = i64::try_from(state.0.config.mail.lease.as_secs()).unwrap_or(60);
        match store.claim_mail(now, lease, BATCH).await {
            Ok(claimed) => {
                for mail in &claimed {
                    send_one(&state, &transport, &from, mail).await;
                }
                if claimed.len() as i64 == BATCH {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "mail: reading the outbox failed; trying again"),
        }
        if let Ok(queue) = store.mail_queue().await {
            crate::prometheus::mail_queue(queue);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn send_one(state: &AppState, transport: &Transport, from: &Mailbox, mail: &QueuedMail) {
    let store = state.0.store.as_ref();
    let outcome = match message(from, mail) {
        Ok(message) => transport.deliver(message, mail).await,
        Err(failure) => Err(failure),
    };
    let now = state.now();
    let written = match outcome {
        Ok(()) => {
            crate::prometheus::mail("sent");
            tracing::info!(message_id = %mail.message_id, attempts = mail.attempts, "mail sent");
            store.mail_sent(mail.id, now).await
        }
        Err(failure) => {
            let again = if failure.permanent {
                None
            } else {
                retry_at(now, mail.attempts)
            };
            crate::prometheus::mail(if again.is_some() { "retry" } else { "failed" });
            tracing::warn!(
                message_id = %mail.message_id,
                attempts = mail.attempts,
                retry_at = ?again,
                error = %failure.text,
                "mail not sent"
            );
            store.mail_failed(mail.id, now, &failure.text, again).await
        }
    };
    if let Err(e) = written {
        // The claim runs out and the message is tried again: at least once.
        tracing::warn!(error = %e, message_id = %mail.message_id, "mail: writing the outcome failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_thirty_seconds_to_an_hour_then_stop() {
        assert_eq!(retry_at(1000, 1), Some(1030));
        assert_eq!(retry_at(1000, 2), Some(1060));
        assert_eq!(retry_at(1000, 3), Some(1120));
        assert_eq!(retry_at(1000, 8), Some(1000 + 3600));
        assert_eq!(retry_at(1000, MAX_ATTEMPTS - 1), Some(1000 + 3600));
        assert_eq!(retry_at(1000, MAX_ATTEMPTS), None);
    }

    #[test]
    fn a_long_link_stays_one_readable_line_and_other_text_is_encoded() {
        let link = format!(
            "https://auth.example.com/reset-password?token={}",
            "A".repeat(43)
        );
        let mail = QueuedMail {
            id: 1,
            message_id: "m@x".into(),
            recipient: "a@example.com".into(),
            subject: "Reset".into(),
            text_body: format!("Open this link:\n\n{link}\n"),
            html_body: "<p>Grüße</p>".into(),
            created_at: 1_800_000_000,
            attempts: 1,
        };
        let from: Mailbox = "Portcullis <noreply@example.com>".parse().unwrap();
        let raw = String::from_utf8(message(&from, &mail).unwrap().formatted()).unwrap();
        assert!(raw.contains(&format!("\r\n{link}\r\n")), "{raw}");
        assert!(raw.contains("Content-Transfer-Encoding: 7bit"), "{raw}");
        assert!(!raw.contains("Grüße"), "non-ASCII is encoded: {raw}");
        // A line over SMTP's 998 octets is never sent as it is.
        let long = QueuedMail {
            text_body: "x".repeat(1200),
            ..mail
        };
        let raw = String::from_utf8(message(&from, &long).unwrap().formatted()).unwrap();
        assert!(raw.lines().all(|l| l.len() <= 998));
    }

    // lettre's connection pool starts a task: a runtime is needed to build one.
    #[tokio::test]
    async fn plain_smtp_is_for_this_machine_only() {
        let folder = PathBuf::from("/tmp/unused");
        for refused in [
            "smtp://mail.example.com:25",
            "smtp://user:secret@mail.example.com",
            "smtp://user:secret@mail.example.com:587?tls=opportunistic",
            "ftp://mail.example.com",
        ] {
            let err = Transport::from_settings(Some(refused), folder.clone(), DEFAULT_LEASE)
                .unwrap_err()
                .to_string();
            assert!(!err.contains("secret"), "{err}");
        }
        for allowed in [
            "smtp://127.0.0.1:2525",
            "smtp://localhost:25",
            "smtp://[::1]:25",
            "smtps://user:secret@mail.example.com",
            "smtp://mail.example.com:587?tls=required",
            "smtp+starttls://user:secret@mail.example.com:587",
        ] {
            let t = Transport::from_settings(Some(allowed), folder.clone(), DEFAULT_LEASE).unwrap();
            assert!(!t.describe().contains("secret"), "{}", t.describe());
        }
        assert!(matches!(
            Transport::from_settings(None, folder, DEFAULT_LEASE).unwrap(),
            Transport::Folder(_)
        ));
    }
}
