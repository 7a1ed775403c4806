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
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(url::Host::Domain(d))) => d.eq_ignore_ascii_case("localhost"),
        ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
        _ => false,
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
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::jwt::Validation;
    use crate::keys::{Algorithm, SigningKey};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fake {
        calls: AtomicUsize,
        body: Mutex<Result<String, String>>,
        max_age: Option<Duration>,
    }

    impl JwksFetcher for Fake {
        fn fetch<'a>(&'a self, _url: &'a str) -> FetchFuture<'a> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let body = self.body.lock().unwrap().clone()?;
                Ok(Fetched {
                    body,
                    max_age: self.max_age,
                })
            })
        }
    }

    fn setup(
        max_age: Option<Duration>,
    ) -> (
        Arc<Fake>,
        RemoteJwks,
        Arc<Verifier>,
        ManualClock,
        SigningKey,
    ) {
        let key = SigningKey::generate(Algorithm::EdDSA, Some("k1".into())).unwrap();
        let jwks = KeySet::new(vec![key.verifying_key().unwrap()])
            .unwrap()
            .to_public_jwks()
            .unwrap()
            .to_json();
        let fake = Arc::new(Fake {
            calls: AtomicUsize::new(0),
            body: Mutex::new(Ok(jwks)),
            max_age,
        });
        let clock = ManualClock::new(1_000_000);
        let verifier = Arc::new(Verifier::new(
            KeySet::default(),
            Validation::builder()
                .issuer("i")
                .audience("a")
                .build()
                .unwrap(),
        ));
        let remote = RemoteJwks::new(
            "https://i/jwks",
            fake.clone(),
            verifier.clone(),
            Arc::new(clock.clone()),
        );
        (fake, remote, verifier, clock, key)
    }

    /// An issuer that leaves `alg` off its RSA keys (some do): the key is taken as
    /// RS256, and only RS256.
    #[tokio::test]
    async fn an_rsa_key_without_alg_is_taken_as_rs256_only() {
        let key = SigningKey::generate(Algorithm::RS256, Some("r1".into())).unwrap();
        let mut jwk = key.verifying_key().unwrap().to_jwk().unwrap();
        jwk.alg = None;
        let body = format!(r#"{{"keys":[{}]}}"#, jwk.to_json());
        let fake = Arc::new(Fake {
            calls: AtomicUsize::new(0),
            body: Mutex::new(Ok(body)),
            max_age: None,
        });
        let clock = ManualClock::new(1_000_000);
        let verifier = Arc::new(Verifier::new(
            KeySet::default(),
            Validation::builder()
                .issuer("i")
                .audience("a")
                .clock(Arc::new(clock.clone()))
                .build()
                .unwrap(),
        ));
        let remote = RemoteJwks::new("https://i/jwks", fake, verifier.clone(), Arc::new(clock));
        remote.refresh_if_stale().await.unwrap();
        let token = crate::jwt::TokenBuilder::access_token("i", "a")
            .subject("s")
            .issued_at(1_000_000)
            .sign(&key)
            .unwrap();
        assert!(verifier.verify(&token).is_ok());
        // The same RSA key under PS256: refused, not tried.
        let ps = SigningKey::from_pkcs8_pem(
            &key.to_pkcs8_pem().unwrap(),
            Some(Algorithm::PS256),
            Some("r1".into()),
        )
        .unwrap();
        let token = crate::jwt::TokenBuilder::access_token("i", "a")
            .subject("s")
            .issued_at(1_000_000)
            .sign(&ps)
            .unwrap();
        assert!(verifier.verify(&token).is_err());
    }

    /// A symmetric key in a published key set is a secret anyone can read: it is
    /// dropped, and a token signed with it is refused.
    #[tokio::test]
    async fn a_published_symmetric_key_is_ignored() {
        let (fake, remote, verifier, _clock, key) = setup(None);
        let secret =
            SigningKey::from_hmac_secret(Algorithm::HS256, &[7; 32], Some("h1".into())).unwrap();
        let body = format!(
            r#"{{"keys":[{},{}]}}"#,
            key.verifying_key().unwrap().to_jwk().unwrap().to_json(),
            secret.to_jwk().unwrap().to_json()
        );
        *fake.body.lock().unwrap() = Ok(body);
        remote.refresh_if_stale().await.unwrap();
        assert_eq!(verifier.with_keys(|k| k.len()), 1);
        let forged = crate::jwt::TokenBuilder::access_token("i", "a")
            .subject("s")
            .sign(&secret)
            .unwrap();
        assert!(verifier.verify(&forged).is_err());
    }

    struct Docs(Vec<(&'static str, String)>);

    impl JwksFetcher for Docs {
        fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a> {
            let found = self
                .0
                .iter()
                .find(|(u, _)| *u == url)
                .map(|(_, b)| b.clone());
            Box::pin(std::future::ready(
                found
                    .map(|body| Fetched {
                        body,
                        max_age: None,
                    })
                    .ok_or_else(|| "404".to_owned()),
            ))
        }
    }

    #[tokio::test]
    async fn discovery_checks_the_issuer_and_the_jwks_uri() {
        let oidc = "https://i.example/.well-known/openid-configuration";
        let rfc8414 = "https://i.example/.well-known/oauth-authorization-server";
        let doc = |iss: &str, uri: &str| format!(r#"{{"issuer":"{iss}","jwks_uri":"{uri}"}}"#);
        let ok = Docs(vec![(
            oidc,
            doc("https://i.example", "https://i.example/jwks"),
        )]);
        assert_eq!(
            discover("https://i.example", &ok).await.unwrap().jwks_uri,
            "https://i.example/jwks"
        );
        let fallback = Docs(vec![(
            rfc8414,
            doc("https://i.example", "https://keys.example/j"),
        )]);
        assert_eq!(
            discover("https://i.example", &fallback)
                .await
                .unwrap()
                .jwks_uri,
            "https://keys.example/j"
        );
        let impostor = Docs(vec![(
            oidc,
            doc("https://evil.example", "https://evil.example/jwks"),
        )]);
        assert!(discover("https://i.example", &impostor).await.is_err());
        let plain = Docs(vec![(
            oidc,
            doc("https://i.example", "http://elsewhere/jwks"),
        )]);
        assert!(discover("https://i.example", &plain).await.is_err());
        let local = Docs(vec![(
            "http://127.0.0.1:8080/.well-known/openid-configuration",
            doc(
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/.well-known/jwks.json",
            ),
        )]);
        assert!(
            discover("http://127.0.0.1:8080", &local).await.is_ok(),
            "same origin over http is fine"
        );
        let none = discover("https://i.example", &Docs(vec![]))
            .await
            .unwrap_err();
        assert_eq!(
            none.tried,
            [oidc, rfc8414],
            "the error names the URLs tried"
        );
        assert!(none.to_string().contains(oidc), "{none}");
        let token_elsewhere = Docs(vec![(
            oidc,
            r#"{"issuer":"https://i.example","jwks_uri":"https://i.example/jwks","token_endpoint":"http://evil.example/token"}"#.to_owned(),
        )]);
        assert!(
            discover("https://i.example", &token_elsewhere)
                .await
                .is_err()
        );
        // Plain http is for this machine only.
        let remote_http = Docs(vec![(
            "http://auth.internal/.well-known/openid-configuration",
            doc("http://auth.internal", "http://auth.internal/jwks"),
        )]);
        let refused = discover("http://auth.internal", &remote_http)
            .await
            .unwrap_err();
        assert!(refused.reason.contains("https"), "{refused}");
        for ok in [
            "https://a.example",
            "http://localhost:8080",
            "http://127.0.0.1",
            "http://[::1]:1",
        ] {
            assert!(is_https_or_loopback(ok), "{ok}");
        }
        for bad in [
            "http://10.0.0.1",
            "http://auth.internal",
            "ftp://a.example",
            "not a url",
        ] {
            assert!(!is_https_or_loopback(bad), "{bad}");
        }
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("Max-Age=\"60\""), Some(Duration::from_secs(60)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_concurrent_unknown_kids_cause_one_fetch() {
        let (fake, remote, verifier, _clock, _key) = setup(None);
        let remote = Arc::new(remote);
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let remote = remote.clone();
                tokio::spawn(async move { remote.refresh_for_unknown_kid().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        assert_eq!(verifier.with_keys(KeySet::len), 1);
    }

    /// Issue 10: the cooldown counted from any fetch, start-up included, so a key
    /// published just after start was refused for up to a cooldown.
    #[tokio::test]
    async fn the_unknown_kid_cooldown_counts_from_unknown_kid_fetches_only() {
        let (fake, remote, _verifier, clock, _key) = setup(None);
        remote.refresh_if_stale().await.unwrap();
        clock.advance(1);
        assert!(
            remote.refresh_for_unknown_kid().await,
            "not delayed by start-up"
        );
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        clock.advance(29);
        assert!(
            !remote.refresh_for_unknown_kid().await,
            "within its own cooldown"
        );
        clock.advance(1);
        assert!(remote.refresh_for_unknown_kid().await);
        assert_eq!(fake.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn max_age_is_followed_between_the_floor_and_the_ceiling() {
        let (fake, remote, _verifier, clock, _key) = setup(Some(Duration::from_secs(300)));
        remote.refresh_if_stale().await.unwrap();
        clock.advance(299);
        remote.refresh_if_stale().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "fresh for 300 s");
        clock.advance(1);
        remote.refresh_if_stale().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2, "stale at 300 s");
        // Two days asked for: a day at most.
        let (fake, remote, _verifier, clock, _key) = setup(Some(Duration::from_secs(2 * 86_400)));
        remote.refresh_if_stale().await.unwrap();
        clock.advance(86_399);
        remote.refresh_if_stale().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        clock.advance(1);
        remote.refresh_if_stale().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2, "the ceiling holds");
    }

    #[tokio::test]
    async fn the_cache_honours_max_age_within_its_bounds_and_keeps_keys_when_the_issuer_is_down() {
        let (fake, remote, verifier, clock, _key) = setup(Some(Duration::from_secs(5)));
        remote.refresh_if_stale().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        clock.advance(30); // max-age 5 s, but the floor is 60 s
        remote.refresh_if_stale().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        clock.advance(31);
        *fake.body.lock().unwrap() = Err("connection refused".into());
        assert!(remote.refresh_if_stale().await.is_err());
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            verifier.with_keys(KeySet::len),
            1,
            "the last good keys keep serving"
        );
        // A failure counts towards the cooldown: no hammering of a down issuer.
        assert!(remote.refresh_if_stale().await.is_ok());
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }
}
