//! Webhooks, as the Standard Webhooks specification has them: a JSON body, the headers
//! `webhook-id` (the same on every attempt), `webhook-timestamp` (Unix seconds) and
//! `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under the
//! endpoint's `whsec_` secret), so that any receiver verifies them with an existing
//! library.
//!
//! Messages are queued by the audit trail (`audit.rs`) in the transaction of their
//! record and delivered from the outbox by [`run`], on every instance, at least once:
//! claimed for a lease, retried 30 s after a failure, doubling to an hour, for about a
//! day (`mail::retry_at`, the mail outbox's schedule); a receiver down for an hour
//! loses nothing.
//!
//! Where deliveries may go is checked twice. When an endpoint is added ([`check_url`]):
//! `https`, no credentials in the URL, no address that is not public. When a delivery
//! is made: the host's DNS answers are filtered by [`PublicOnly`], so a name that
//! resolves (or is re-pointed) to a private, loopback or link-local address (a cloud's
//! metadata service, the database) is refused; redirects are never followed.
//! `webhook_allow_loopback` lets loopback addresses through, over `http` too, for tests
//! and a receiver on the same machine.
//!
//! The HMAC is aws-lc-rs's (the crypto backend of the rest); the signing is a dozen
//! lines of ours because the specification is that small, and a crate for it would
//! bring its own HTTP client and crypto.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use aws_lc_rs::hmac;
use base64::Engine as _;
use portcullis_store::QueuedDelivery;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::state::AppState;

const STANDARD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// The prefix of a secret's text.
const SECRET_PREFIX: &str = "whsec_";
/// Deliveries claimed at once.
const BATCH: i64 = 20;

/// A new secret: 32 random bytes, and its `whsec_` text (shown once).
pub fn generate_secret() -> anyhow::Result<(Zeroizing<Vec<u8>>, Zeroizing<String>)> {
    let mut key = Zeroizing::new(vec![0u8; 32]);
    aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow!("no randomness"))?;
    let text = Zeroizing::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(&*key)));
    Ok((key, text))
}

/// The key of a secret's text (`whsec_` + base64 of 24 to 64 bytes, as the
/// specification's libraries make them).
pub fn parse_secret(text: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let Some(body) = text.trim().strip_prefix(SECRET_PREFIX) else {
        bail!("a webhook secret starts with {SECRET_PREFIX}");
    };
    let key = Zeroizing::new(
        STANDARD
            .decode(body)
            .map_err(|_| anyhow!("a webhook secret is {SECRET_PREFIX} and base64"))?,
    );
    if !(24..=64).contains(&key.len()) {
        bail!("a webhook secret holds 24 to 64 bytes");
    }
    Ok(key)
}

fn context(id: &str) -> String {
    format!("webhook:{id}")
}

/// A secret sealed under the key-encryption key, the endpoint's id as authenticated
/// data.
pub fn seal(kek: &crate::kek::Kek, id: &str, key: &[u8]) -> anyhow::Result<String> {
    let text = Zeroizing::new(STANDARD.encode(key));
    kek.seal(&context(id), "WHSEC", &text)
}

fn open(keks: &crate::kek::Keks, id: &str, sealed: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let text = keks.open(&context(id), "WHSEC", sealed)?;
    Ok(Zeroizing::new(STANDARD.decode(text.as_bytes())?))
}

/// `portcullis keys rewrap`: every webhook secret re-sealed under `new`; how many.
pub async fn rewrap_secrets(
    store: &dyn portcullis_store::Store,
    old: &crate::kek::Keks,
    new: &crate::kek::Kek,
) -> anyhow::Result<usize> {
    let mut moved = 0;
    for (id, sealed) in store.sealed_webhook_secrets().await? {
        if crate::kek::sealed_under(&sealed) == Some(new.id()) {
            continue;
        }
        let key = open(old, &id, &sealed)?;
        let resealed = seal(new, &id, &key)?;
        if store.reseal_webhook_secret(&id, &sealed, &resealed).await? {
            moved += 1;
        }
    }
    Ok(moved)
}

/// The `webhook-signature` of a message: `v1,` + base64 HMAC-SHA256 of
/// `id.timestamp.body`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// Whether deliveries may go to `ip`: a public address, or a loopback one when
/// allowed. Private (RFC 1918, unique local), link-local (a cloud's metadata service),
/// shared, documentation, benchmarking, multicast and reserved ranges never.
pub fn allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() {
        return allow_loopback;
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)
                || (first == 0x0064 && v6.segments()[1] == 0xff9b))
        }
    }
}

/// Checks a webhook URL as it is added: absolute, `https` (or `http` to a loopback
/// address when allowed), no user or password, no fragment, and, when its host is an
/// address, an allowed one. A name is checked when delivering (its addresses may
/// change).
pub fn check_url(text: &str, allow_loopback: bool) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(text.trim()).map_err(|e| anyhow!("not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        bail!("a webhook URL carries no user or password (the signature authenticates)");
    }
    if url.fragment().is_some() {
        bail!("a webhook URL has no #fragment");
    }
    let loopback_name =
        matches!(url.host(), Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost"));
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
        None => bail!("a webhook URL names a host"),
    };
    let loopback = loopback_name || ip.is_some_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if allow_loopback && loopback => {}
        "http" if loopback => {
            bail!("http to a loopback address needs webhook_allow_loopback = true (for tests)")
        }
        _ => bail!("a webhook URL is https"),
    }
    if loopback && !allow_loopback {
        bail!("a loopback address needs webhook_allow_loopback = true (for tests)");
    }
    if let Some(ip) = ip
        && !allowed(ip, allow_loopback)
    {
        bail!("{ip} is not a public address: webhooks go to public addresses only");
    }
    Ok(url)
}

/// A DNS resolver that drops every address deliveries may not go to, and fails when
/// none is left.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnly {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| allowed(a.ip(), allow_loopback))
                .collect();
            if kept.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client deliveries use: the resolver above, no redirects, the timeout of
/// the settings.
pub fn client(timeout: Duration, allow_loopback: bool) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .dns_resolver(Arc::new(PublicOnly { allow_loopback }))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("Portcullis-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The sender: every second, claims what is due and delivers it. Runs on every
/// instance; the store's claims keep two from making one delivery at once.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let config = &state.0.config;
    let http = match client(config.webhook_timeout, config.webhook_allow_loopback) {
        Ok(http) => http,
        Err(e) => return tracing::error!(error = %e, "webhooks: no HTTP client; none are sent"),
    };
    // Longer than a delivery can take, so that a delivery is never claimed twice.
    let lease = i64::try_from(config.webhook_timeout.as_secs()).unwrap_or(60) * 3 + 10;
    loop {
        let store = state.0.store.as_ref();
        match store.claim_deliveries(state.now(), lease, BATCH).await {
            Ok(claimed) => {
                for delivery in &claimed {
                    deliver(&state, &http, delivery).await;
                }
                if claimed.len() as i64 == BATCH {
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: reading the outbox failed; trying again")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One attempt.
async fn attempt(
    state: &AppState,
    http: &reqwest::Client,
    d: &QueuedDelivery,
) -> Result<(), (String, bool)> {
    let allow_loopback = state.0.config.webhook_allow_loopback;
    // The URL again: an endpoint added before a setting changed is held to the new one.
    check_url(&d.url, allow_loopback).map_err(|e| (e.to_string(), true))?;
    let key = open(state.0.keys.keks(), &d.webhook_id, &d.secret)
        .map_err(|e| (format!("the secret does not open: {e}"), true))?;
    // The real time, not the server's clock: receivers hold the timestamp to theirs.
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let signature = sign(&key, &d.message_id, timestamp, &d.payload);
    let response = http
        .post(&d.url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(d.payload.clone())
        .send()
        .await
        .map_err(|e| (describe(&e), false))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err((format!("the receiver answered {status}"), false))
    }
}

/// A transport error with its causes (reqwest's own text says little).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "no answer in time".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn deliver(state: &AppState, http: &reqwest::Client, d: &QueuedDelivery) {
    let outcome = attempt(state, http, d).await;
    let store = state.0.store.as_ref();
    let now = state.now();
    let written = match outcome {
        Ok(()) => {
            crate::prometheus::webhook("delivered");
            tracing::info!(webhook = %d.webhook_id, message_id = %d.message_id, event = %d.event, attempts = d.attempts, "webhook delivered");
            store.delivery_done(d.id, now).await
        }
        Err((error, permanent)) => {
            let again = if permanent {
                None
            } else {
                crate::mail::retry_at(now, d.attempts)
            };
            crate::prometheus::webhook(if again.is_some() { "retry" } else { "failed" });
            tracing::warn!(webhook = %d.webhook_id, message_id = %d.message_id, attempts = d.attempts, retry_at = ?again, %error, "webhook not delivered");
            store.delivery_failed(d.id, now, &error, again).await
        }
    };
    if let Err(e) = written {
        tracing::warn!(error = %e, message_id = %d.message_id, "webhooks: writing the outcome failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_specifications() {
        // The example the Standard Webhooks libraries test with; the expected value is
        // what the Python library (standardwebhooks 1.3.0, `Webhook.sign`) gives.
        let key = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_whsec_and_base64_of_enough_bytes() {
        let (key, text) = generate_secret().unwrap();
        assert_eq!(parse_secret(&text).unwrap().as_slice(), key.as_slice());
        assert!(parse_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(parse_secret("whsec_!!!").is_err());
        assert!(parse_secret("whsec_AAAA").is_err());
    }

    #[test]
    fn only_public_addresses_unless_loopback_is_allowed() {
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(!allowed(ip, true), "{private}");
        }
        assert!(allowed("93.184.215.14".parse().unwrap(), false));
        assert!(allowed("2606:4700::1111".parse().unwrap(), false));
        assert!(!allowed("127.0.0.1".parse().unwrap(), false));
        assert!(allowed("127.0.0.1".parse().unwrap(), true));
        assert!(allowed("::1".parse().unwrap(), true));
    }

    #[tokio::test]
    async fn the_resolver_drops_addresses_that_are_not_public() {
        use reqwest::dns::Resolve as _;
        let name = || "localhost".parse::<reqwest::dns::Name>().unwrap();
        let refused = PublicOnly {
            allow_loopback: false,
        }
        .resolve(name())
        .await;
        assert!(refused.is_err(), "localhost is no public address");
        let kept: Vec<SocketAddr> = PublicOnly {
            allow_loopback: true,
        }
        .resolve(name())
        .await
        .unwrap()
        .collect();
        assert!(!kept.is_empty() && kept.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn urls_are_https_to_public_hosts() {
        assert!(check_url("https://hooks.example.com/in", false).is_ok());
        assert!(check_url("http://hooks.example.com/in", false).is_err());
        assert!(check_url("http://hooks.example.com/in", true).is_err());
        assert!(check_url("https://10.0.0.5/in", true).is_err());
        assert!(check_url("https://169.254.169.254/latest", true).is_err());
        assert!(check_url("http://127.0.0.1:9000/in", false).is_err());
        assert!(check_url("http://127.0.0.1:9000/in", true).is_ok());
        assert!(check_url("http://localhost:9000/in", true).is_ok());
        assert!(check_url("https://user:pw@hooks.example.com/", false).is_err());
        assert!(check_url("ftp://hooks.example.com/", false).is_err());
        assert!(check_url("not a url", false).is_err());
    }
}
