//! The library's own HTTP client (cargo feature `remote`, on by default): reqwest over
//! rustls, with aws-lc-rs for the cryptography (the crate the rest of the library
//! uses) and the system's trusted roots. It powers [`Bearer::from_issuer`] and
//! [`crate::feed::RevocationFollower`]; bring your own client through
//! [`JwksFetcher`] when you need other settings.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::jwt::{PolicyError, Validation, ValidationBuilder, Verifier};
use crate::keys::KeySet;
use crate::remote::{
    DiscoveryError, FetchFuture, Fetched, IssuerMetadata, JwksFetcher, RemoteJwks, discover,
    max_age,
};
use crate::strategy::Bearer;

/// Why a remote issuer could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// No usable metadata (the error names the URLs tried).
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The JWKS could not be fetched or read.
    #[error("fetching the JWKS at {url}: {reason}")]
    Jwks {
        /// The `jwks_uri`.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The validation policy is invalid.
    #[error("the validation policy: {0}")]
    Policy(#[from] PolicyError),
    /// The HTTP client could not be built (no trusted roots, say).
    #[error("the HTTP client: {0}")]
    Client(String),
    /// The issuer refused or could not serve a request a follower needs.
    #[error("{0}")]
    Refused(String),
}

/// An error with its causes, `outer: inner: root` (reqwest's own message says nothing
/// of why without them).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The largest metadata document or key set read (real ones are a few KiB).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// A response body as text, refused once it passes `cap` bytes (a hostile or broken
/// endpoint cannot make us buffer without end; a timeout alone bounds time, not size).
pub(crate) async fn read_capped(mut r: reqwest::Response, cap: usize) -> Result<String, String> {
    if r.content_length().is_some_and(|n| n > cap as u64) {
        return Err(format!("the answer is larger than {cap} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| chain(&e))? {
        if body.len() + chunk.len() > cap {
            return Err(format!("the answer is larger than {cap} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_owned())
}

/// A [`JwksFetcher`] on reqwest: 10 s timeouts, rustls with aws-lc-rs, the system's
/// trusted roots, no redirects (metadata and keys are fetched from where they are said
/// to be).
#[derive(Clone, Debug)]
pub struct HttpFetcher {
    client: reqwest::Client,
}

impl HttpFetcher {
    /// The default client.
    pub fn new() -> Result<HttpFetcher, RemoteError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A certificate the system holds but rustls cannot use is skipped.
            let _ = roots.add(cert);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RemoteError::Client(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RemoteError::Client(chain(&e)))?;
        Ok(HttpFetcher { client })
    }

    /// The underlying client (reqwest stays out of the public API, so that a new
    /// reqwest is not a new major version of this library).
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

impl JwksFetcher for HttpFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a> {
        Box::pin(async move {
            let r = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| format!("{url}: {}", chain(&e)))?;
            if !r.status().is_success() {
                return Err(format!("{url}: HTTP {}", r.status()));
            }
            let age = r
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok())
                .and_then(max_age);
            let body = read_capped(r, MAX_DOCUMENT_BYTES)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            Ok(Fetched { body, max_age: age })
        })
    }
}

/// Builds a [`Bearer`] that trusts a remote issuer: see [`Bearer::from_issuer`].
#[must_use = "call .build().await"]
pub struct RemoteBearer {
    issuer: String,
    audiences: Vec<String>,
    policy: Option<Box<dyn FnOnce(ValidationBuilder) -> ValidationBuilder + Send>>,
    fetcher: Option<Arc<dyn JwksFetcher>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RemoteBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBearer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl Bearer {
    /// Trusts the tokens of a remote issuer (a Portcullis server, or any OpenID
    /// Connect / RFC 8414 issuer):
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), portcullis::http::RemoteError> {
    /// use portcullis::strategy::Bearer;
    /// let bearer = Bearer::from_issuer("https://auth.example").audience("api").build().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// `build` discovers the issuer's metadata, fetches its JWKS and fails at once with
    /// a [`RemoteError`] naming the URLs when either is missing: a service does not
    /// start unable to verify anything. Afterwards a background task refreshes the keys
    /// when their `Cache-Control` lifetime ends (within 60 s and 24 h), a token naming
    /// an unknown kid triggers one refetch per 30 s, and the last good keys keep
    /// serving while the issuer is down. The policy is the library's strict default
    /// (`typ` `at+jwt`, 30 s leeway, 24 h longest lifetime) with `iss` pinned to the
    /// issuer and `aud` to the audiences given (at least one is required).
    pub fn from_issuer(issuer: impl Into<String>) -> RemoteBearer {
        RemoteBearer {
            issuer: issuer.into(),
            audiences: Vec::new(),
            policy: None,
            fetcher: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl RemoteBearer {
    /// An accepted audience (call again for more).
    pub fn audience(mut self, audience: impl Into<String>) -> RemoteBearer {
        self.audiences.push(audience.into());
        self
    }

    /// More rules on top of the default policy (a `typ`, required claims, leeway).
    pub fn policy(
        mut self,
        rules: impl FnOnce(ValidationBuilder) -> ValidationBuilder + Send + 'static,
    ) -> RemoteBearer {
        self.policy = Some(Box::new(rules));
        self
    }

    /// Fetches with your own HTTP client instead of [`HttpFetcher`].
    pub fn fetcher(mut self, fetcher: Arc<dyn JwksFetcher>) -> RemoteBearer {
        self.fetcher = Some(fetcher);
        self
    }

    /// The clock (tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> RemoteBearer {
        self.clock = clock;
        self
    }

    /// Discovers, fetches the keys, starts the background refresh (on the current
    /// tokio runtime), and returns the strategy.
    pub async fn build(self) -> Result<Bearer, RemoteError> {
        let (bearer, _) = self.build_with_metadata().await?;
        Ok(bearer)
    }

    /// As [`RemoteBearer::build`], with the issuer's metadata.
    pub async fn build_with_metadata(self) -> Result<(Bearer, IssuerMetadata), RemoteError> {
        let fetcher = match self.fetcher {
            Some(f) => f,
            None => Arc::new(HttpFetcher::new()?),
        };
        let metadata = discover(&self.issuer, fetcher.as_ref()).await?;
        let mut policy = Validation::builder()
            .issuer(&self.issuer)
            .clock(self.clock.clone());
        for audience in &self.audiences {
            policy = policy.audience(audience);
        }
        if let Some(rules) = self.policy {
            policy = rules(policy);
        }
        let verifier = Arc::new(Verifier::new(KeySet::default(), policy.build()?));
        let remote = Arc::new(RemoteJwks::new(
            metadata.jwks_uri.clone(),
            fetcher,
            verifier.clone(),
            self.clock,
        ));
        remote
            .refresh_if_stale()
            .await
            .map_err(|reason| RemoteError::Jwks {
                url: metadata.jwks_uri.clone(),
                reason,
            })?;
        tokio::spawn(refresh_in_background(Arc::downgrade(&remote)));
        Ok((Bearer::new(verifier).with_remote_jwks(remote), metadata))
    }
}

/// Refreshes the keys when they go stale, so that requests find them fresh; ends when
/// the last [`Bearer`] using them is dropped.
pub(crate) async fn refresh_in_background(remote: Weak<RemoteJwks>) {
    loop {
        let Some(due) = remote.upgrade().map(|r| r.refresh_due_in()) else {
            return;
        };
        // At least a second between attempts, so a failing issuer is not hammered (a
        // failed fetch keeps the keys stale; the fetch itself has a cooldown too).
        tokio::time::sleep(due.max(Duration::from_secs(1))).await;
        let Some(r) = remote.upgrade() else { return };
        if let Err(e) = r.refresh_if_stale().await {
            tracing::warn!(url = r.url(), error = %e, "JWKS refresh failed; serving the last good keys");
        }
    }
}
