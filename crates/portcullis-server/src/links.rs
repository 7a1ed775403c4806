//! The one-time links the server mails, and the mails that carry them: a token of 256
//! random bits ([`Opaque`]; the store keeps only its SHA-256), the link to the page it
//! opens, and the message from the templates (`templates.rs`), ready for the outbox.
//! Used by signup (`accounts`), by `recovery`, and by the CLI.

use std::time::Duration;

use portcullis::jwt::random_id;
use portcullis::opaque::Opaque;
use portcullis_store::{EmailTokenKind, NewEmailToken, NewMail, TokenHash};

use crate::error::ApiError;
use crate::state::AppState;
use crate::templates::{MailKind, Values};

/// The page a verification or address-change link opens (a confirm button: a `GET`
/// changes nothing, since mail scanners follow links).
pub const VERIFY_PAGE: &str = "/verify-email";
/// The page a reset link opens.
pub const RESET_PAGE: &str = "/reset-password";

/// A duration in words, for mails: "30 minutes", "24 hours", "1 day".
pub fn in_words(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = if s.is_multiple_of(86_400) && s > 86_400 {
        (s / 86_400, "day")
    } else if s.is_multiple_of(3600) {
        (s / 3600, "hour")
    } else {
        (s.div_ceil(60), "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn opaque() -> Result<Opaque, ApiError> {
    Opaque::generate().map_err(|_| ApiError::Unexpected(anyhow::anyhow!("no randomness")))
}

/// The link to `page` carrying `token`.
pub fn link(issuer: &str, page: &str, token: &Opaque) -> String {
    format!(
        "{}{page}?token={}",
        issuer.trim_end_matches('/'),
        token.expose()
    )
}

/// A message for the outbox: `kind` to `to`, with a Message-ID of its own under the
/// issuer's host.
pub fn mail(
    state: &AppState,
    kind: MailKind,
    to: &str,
    username: &str,
    link: &str,
    valid_for: &str,
    email: &str,
) -> Result<NewMail, ApiError> {
    let config = &state.0.config;
    let rendered = config.mail.templates.render(
        kind,
        &Values {
            username,
            link,
            valid_for,
            issuer: &config.issuer,
            email,
        },
    );
    let host = url::Url::parse(&config.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "portcullis.invalid".into());
    Ok(NewMail {
        message_id: format!("{}.{}@{host}", kind.name(), random_id()?),
        recipient: to.to_owned(),
        subject: rendered.subject,
        text_body: rendered.text,
        html_body: rendered.html,
    })
}

/// A new one-time token of `kind` for `user_id` at `email`, valid from `now` for the
/// kind's lifetime: what the store keeps (its hash), and the link that carries it.
pub(crate) fn new_token(
    config: &crate::config::Config,
    kind: EmailTokenKind,
    user_id: &str,
    email: portcullis_store::Email,
    now: i64,
) -> Result<(NewEmailToken, String), ApiError> {
    let token = opaque()?;
    let page = match kind {
        EmailTokenKind::Verify | EmailTokenKind::Change => VERIFY_PAGE,
        EmailTokenKind::Reset => RESET_PAGE,
    };
    let ttl = token_ttl(config, kind);
    Ok((
        NewEmailToken {
            hash: TokenHash(token.sha256()),
            user_id: user_id.to_owned(),
            kind,
            email,
            expires_at: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        },
        link(&config.issuer, page, &token),
    ))
}

/// How long a token of `kind` works.
fn token_ttl(config: &crate::config::Config, kind: EmailTokenKind) -> Duration {
    match kind {
        EmailTokenKind::Verify | EmailTokenKind::Change => config.mail.verify_token_ttl,
        EmailTokenKind::Reset => config.mail.reset_token_ttl,
    }
}

/// A token of `kind` for `user_id` at `email`, and the mail that carries its link.
pub(crate) fn token_and_mail(
    state: &AppState,
    kind: EmailTokenKind,
    user_id: &str,
    username: &str,
    email: portcullis_store::Email,
) -> Result<(NewEmailToken, NewMail), ApiError> {
    let config = &state.0.config;
    let mail_kind = match kind {
        EmailTokenKind::Verify => MailKind::Verify,
        EmailTokenKind::Change => MailKind::Change,
        EmailTokenKind::Reset => MailKind::Reset,
    };
    let to = email.address.clone();
    let (token, link) = new_token(config, kind, user_id, email, state.now())?;
    let valid_for = in_words(token_ttl(config, kind));
    let message = mail(state, mail_kind, &to, username, &link, &valid_for, &to)?;
    Ok((token, message))
}

/// The store's form of an address the account holds (already normalised).
pub(crate) fn held(address: &str) -> Result<portcullis_store::Email, ApiError> {
    crate::email::normalize(address)
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("a stored address: {}", e.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(in_words(Duration::from_secs(1800)), "30 minutes");
        assert_eq!(in_words(Duration::from_secs(86_400)), "24 hours");
        assert_eq!(in_words(Duration::from_secs(3600)), "1 hour");
        assert_eq!(in_words(Duration::from_secs(2 * 86_400)), "2 days");
        assert_eq!(in_words(Duration::from_secs(90)), "2 minutes");
    }
}
