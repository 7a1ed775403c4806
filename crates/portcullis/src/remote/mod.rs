//! A remote JWKS: fetched through a caller-supplied HTTP client, cached per
//! `Cache-Control: max-age` within a floor and a ceiling, refetched once (behind a
//! cooldown, single-flight) when a token names a kid we do not know, and kept when the
//! issuer is down.
//!
//! The library has no HTTP client of its own: implement [`JwksFetcher`] with the one
//! your service already uses (with its timeouts, proxies and TLS settings).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{Clock, UnixTime, secs};
use crate::jwt::Verifier;
use crate::keys::KeySet;

/// What a fetch returned: the body and the `max-age` of its `Cache-Control`, if any.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The JWK Set document.
    pub body: String,
    /// `Cache-Control: max-age`, if the response had one (see [`max_age`]).
    pub max_age: Option<Duration>,
}

/// The future of a fetch.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Fetched, String>> + Send + 'a>>;

/// Fetches a URL. Implement it with your HTTP client; errors are messages for the log.
pub trait JwksFetcher: Send + Sync + 'static {
    /// GETs `url`.
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a>;
}

/// Reads `max-age` out of a `Cache-Control` value (`no-store`/`no-cache` give zero).
pub fn max_age(cache_control: &str) -> Option<Duration> {
    let mut age = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

/// An issuer's metadata (RFC 8414 / OpenID Connect Discovery): the members this library
/// uses. Read by [`discover`], which checks `issuer` and `jwks_uri` first.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct IssuerMetadata {
    /// The issuer, exactly as asked for.
    pub issuer: String,
    /// Where its signing keys are published.
    pub jwks_uri: String,
    /// The OAuth token endpoint, if it has one (machine clients get tokens there).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The grant types the token endpoint takes.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// A Portcullis server's revocation feed.
    #[serde(default)]
    pub portcullis_revocation_feed: Option<String>,
    /// Where a browser is sent to sign in (the authorization-code flow).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where a browser is sent to sign out (RP-initiated logout).
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// The PKCE methods the issuer takes.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// The issuer names itself in authorization responses (`iss`, RFC 9207).
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// Why [`discover`] found no usable metadata: the URLs it tried, and what was wrong
/// with the last answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryError {
    /// The issuer asked about.
    pub issuer: String,
    /// The metadata URLs tried, in order.
    pub tried: Vec<String>,
    /// What went wrong.
    pub reason: String,
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no usable metadata for issuer {} (tried {}): {}",
            self.issuer,
            self.tried.join(", "),
            self.reason
        )
    }
}

impl std::error::Error for DiscoveryError {}

/// True for an `https` URL, or an `http` one whose host is `localhost` or a loopback
/// address.
pub fn is_https_or_loopback(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => is_loopback(&url),
        _ => false,
    }
}

/// True when `url`'s host is this machine: a loopback address, or `localhost`, the one
/// name that always means it; never a name that merely starts like a loopback address
/// (`127.0.0.1.example.net`). The one loopback rule of the library and the server.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Reads an issuer's metadata: `/.well-known/openid-configuration` (OpenID Connect
/// Discovery), else `/.well-known/oauth-authorization-server` (RFC 8414). The document's
/// `issuer` must equal `issuer` exactly (RFC 8414 §3.3), and the `jwks_uri` must be on
/// the issuer's origin or served over https; so must the `token_endpoint` and the
/// revocation feed, when present.
pub async fn discover(
    issuer: &str,
    fetcher: &dyn JwksFetcher,
) -> Result<IssuerMetadata, DiscoveryError> {
    let base = issuer.trim_end_matches('/');
    let mut tried = Vec::new();
    let mut reason = String::new();
    let fail = |tried: Vec<String>, reason: String| DiscoveryError {
        issuer: issuer.to_owned(),
        tried,
        reason,
    };
    // Keys and client secrets over plain http can be swapped or read by anyone on the
    // path: an issuer is https, except on this machine (development, tests).
    if !is_https_or_loopback(issuer) {
        return Err(fail(
            tried,
            "the issuer must be an https URL (plain http only for localhost and loopback addresses)"
                .into(),
        ));
    }
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let url = format!("{base}{path}");
        tried.push(url.clone());
        let fetched = match fetcher.fetch(&url).await {
            Ok(f) => f,
            Err(e) => {
                reason = e;
                continue;
            }
        };
        let doc = crate::strict_json::parse_object(fetched.body.as_bytes())
            .map_err(|e| fail(tried.clone(), format!("{url}: {e}")))?;
        let metadata: IssuerMetadata = serde_json::from_value(serde_json::Value::Object(doc))
            .map_err(|e| fail(tried.clone(), format!("{url}: {e}")))?;
        if metadata.issuer != issuer {
            return Err(fail(
                tried,
                format!("{url}: the document's issuer is not {issuer:?}"),
            ));
        }
        // Origins compared as origins (scheme, host, port with defaults), not as text.
        let issuer_origin = url::Url::parse(issuer).ok().map(|i| i.origin());
        let endpoints = [
            ("jwks_uri", Some(&metadata.jwks_uri)),
            ("token_endpoint", metadata.token_endpoint.as_ref()),
            (
                "portcullis_revocation_feed",
                metadata.portcullis_revocation_feed.as_ref(),
            ),
        ];
        for (name, value) in endpoints {
            let Some(value) = value else { continue };
            let parsed = url::Url::parse(value)
                .map_err(|e| fail(tried.clone(), format!("{url}: {name}: {e}")))?;
            let same_origin = issuer_origin
                .as_ref()
                .is_some_and(|o| o.is_tuple() && *o == parsed.origin());
            if !(same_origin || parsed.scheme() == "https") {
                return Err(fail(
                    tried,
                    format!("{url}: {name} {value:?} is neither https nor on the issuer's origin"),
                ));
            }
        }
        return Ok(metadata);
    }
    Err(fail(tried, reason))
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    expires_at: UnixTime,
    /// The last fetch of any kind: a failed scheduled refresh waits a cooldown.
    last_attempt: Option<UnixTime>,
    /// The last fetch an unknown kid asked for: the cooldown of such fetches counts
    /// from it alone, so a scheduled fetch (or the first one) never delays a key that
    /// was published since.
    last_unknown_kid: Option<UnixTime>,
    /// Announced kids a fetch was made for, newest last (at most 32): each gets one
    /// fetch past the cooldown.
    announced_fetched: std::collections::VecDeque<String>,
}

/// Keeps a [`Verifier`]'s keys in step with a remote JWKS.
pub struct RemoteJwks {
    url: String,
    fetcher: Arc<dyn JwksFetcher>,
    verifier: Arc<Verifier>,
    clock: Arc<dyn Clock>,
    floor: Duration,
    ceiling: Duration,
    cooldown: Duration,
    state: Mutex<State>,
    single_flight: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// Keys for `verifier` from `url`. Defaults: cache at least 60 s and at most 24 h
    /// whatever `max-age` says; at most one refetch for unknown kids per 30 s.
    pub fn new(
        url: impl Into<String>,
        fetcher: Arc<dyn JwksFetcher>,
        verifier: Arc<Verifier>,
        clock: Arc<dyn Clock>,
    ) -> RemoteJwks {
        RemoteJwks {
            url: url.into(),
            fetcher,
            verifier,
            clock,
            floor: Duration::from_secs(60),
            ceiling: Duration::from_secs(24 * 3600),
            cooldown: Duration::from_secs(30),
            state: Mutex::default(),
            single_flight: tokio::sync::Mutex::new(()),
        }
    }

    /// Sets the cache floor and ceiling.
    #[must_use]
    pub fn with_cache_bounds(mut self, floor: Duration, ceiling: Duration) -> RemoteJwks {
        self.floor = floor;
        self.ceiling = ceiling.max(floor);
        self
    }

    /// Sets the minimum time between two fetches triggered by unknown kids, counted from
    /// the last such fetch (scheduled refreshes do not count).
    #[must_use]
    pub fn with_cooldown(mut self, cooldown: Duration) -> RemoteJwks {
        self.cooldown = cooldown;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True while the keys last fetched are within their cache lifetime: tokens can be
    /// verified without asking the issuer.
    pub fn is_fresh(&self) -> bool {
        let st = self.state();
        st.loaded && self.clock.now() < st.expires_at
    }

    /// How long until the keys go stale (zero when they are, or were never loaded): when
    /// a background refresher should fetch next.
    pub fn refresh_due_in(&self) -> Duration {
        let st = self.state();
        let left = st.expires_at - self.clock.now();
        if st.loaded && left > 0 {
            Duration::from_secs(left.unsigned_abs())
        } else {
            Duration::ZERO
        }
    }

    /// The JWKS URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetches when the cached keys have expired (or were never loaded). On failure the
    /// last good keys keep serving.
    pub async fn refresh_if_stale(&self) -> Result<(), String> {
        let now = self.clock.now();
        {
            let st = self.state();
            if st.loaded && now < st.expires_at {
                return Ok(());
            }
        }
        let _flight = self.single_flight.lock().await;
        {
            let st = self.state();
            let fresh = st.loaded && self.clock.now() < st.expires_at;
            let cooling = st
                .last_attempt
                .is_some_and(|t| self.clock.now() - t < secs(self.cooldown));
            if fresh || (st.loaded && cooling) {
                return Ok(());
            }
        }
        self.fetch().await
    }

    /// Called when a token names a kid we do not know: refetches at most once per
    /// cooldown, however many requests ask at once. True when a fetch succeeded (the
    /// caller may retry its verification).
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        let _flight = self.single_flight.lock().await;
        let now = self.clock.now();
        {
            let mut st = self.state();
            let cooling = st
                .last_unknown_kid
                .is_some_and(|t| now - t < secs(self.cooldown));
            if cooling {
                return false;
            }
            st.last_unknown_kid = Some(now);
        }
        self.fetch().await.is_ok()
    }

    /// Called when a token names a kid the issuer has announced (in its revocation
    /// feed: [`crate::feed`]) that we do not hold: refetches at once, past the
    /// unknown-kid cooldown, so that tokens with made-up kids cannot delay an emergency
    /// rotation. Once per announced kid (single-flight); after that, as for any unknown
    /// kid. True when the caller may retry its verification.
    pub async fn refresh_for_announced_kid(&self, kid: &str) -> bool {
        let flight = self.single_flight.lock().await;
        // Fetched by another request while this one waited.
        if self
            .verifier
            .with_keys(|set| set.iter().any(|k| k.kid() == Some(kid)))
        {
            return true;
        }
        let first = {
            let mut st = self.state();
            let first = !st.announced_fetched.iter().any(|k| k == kid);
            if first {
                st.announced_fetched.push_back(kid.to_owned());
                if st.announced_fetched.len() > 32 {
                    st.announced_fetched.pop_front();
                }
            }
            first
        };
        if !first {
            drop(flight);
            return self.refresh_for_unknown_kid().await;
        }
        tracing::info!(url = %self.url, kid, "refetching the keys for a key the issuer announced");
        self.fetch().await.is_ok()
    }

    async fn fetch(&self) -> Result<(), String> {
        let now = self.clock.now();
        self.state().last_attempt = Some(now);
        let fetched = self.fetcher.fetch(&self.url).await?;
        let mut jwks = crate::keys::Jwks::from_json(&fetched.body)
            .map_err(|e| format!("{}: {e}", self.url))?;
        // A published key set holds public keys. A symmetric (`oct`) key in it is a
        // secret anyone can read, and trusting it would let anyone sign: left out.
        let before = jwks.keys.len();
        jwks.keys.retain(|k| k.kty != "oct");
        if jwks.keys.len() != before {
            tracing::warn!(url = %self.url, "the JWKS publishes a symmetric (oct) key; it is ignored");
        }
        // An RSA key must name its algorithm here (RS… or PS…: the same key, two
        // algorithms). Some issuers leave `alg` off; for those the key is bound to
        // RS256, the algorithm JWT issuers use when they name none (OpenID Connect's
        // default), and a token of that key under any other algorithm is refused.
        for key in &mut jwks.keys {
            if key.kty == "RSA" && key.alg.is_none() {
                key.alg = Some("RS256".to_owned());
            }
        }
        let keys = KeySet::from_jwks(&jwks).map_err(|e| format!("{}: {e}", self.url))?;
        let kids = |set: &KeySet| -> Vec<String> {
            let mut kids: Vec<String> = set
                .iter()
                .filter_map(|k| k.kid().map(str::to_owned))
                .collect();
            kids.sort();
            kids
        };
        let (before, after) = (self.verifier.with_keys(kids), kids(&keys));
        if before != after {
            tracing::info!(url = %self.url, kids = ?after, "keys refreshed: the key set changed");
        } else {
            tracing::debug!(url = %self.url, "keys refreshed: unchanged");
        }
        self.verifier.set_keys(keys);
        let ttl = fetched
            .max_age
            .unwrap_or(self.floor)
            .clamp(self.floor, self.ceiling);
        let mut st = self.state();
        st.loaded = true;
        st.expires_at = now.saturating_add(secs(ttl));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
