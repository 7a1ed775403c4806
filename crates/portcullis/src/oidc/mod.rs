//! Signing people in with an OpenID Connect provider: the client side of the
//! authorization-code flow with PKCE, for applications that keep their own cookie
//! sessions (the Rust counterpart of passport-openidconnect). A whole server-rendered
//! axum application's sign-in, routes and extractors included, is `oidc::web`
//! (feature `webapp`, the counterpart of express-openid-connect).
//!
//! ```no_run
//! # async fn demo() -> Result<(), portcullis::oidc::OidcError> {
//! use portcullis::oidc::OidcClient;
//!
//! let oidc = OidcClient::builder(
//!     "https://id.example.com",               // the provider (its discovery document)
//!     "notes",                                // this application's client id
//!     "https://notes.example.com/auth/callback",
//! )
//! .client_secret("…")                         // confidential clients
//! .scope("openid profile")
//! .flow_key([7; 32])                          // 32 random bytes, kept secret
//! .build()
//! .await?;
//!
//! // GET /auth/login: send the browser to the provider, with the flow cookie.
//! let begun = oidc.begin("/notes")?;
//! // … answer 303 Location: begun.location, Set-Cookie: begun.set_cookie
//!
//! // GET /auth/callback?code=…&state=…&iss=…
//! # let (headers, query) = (http::HeaderMap::new(), "");
//! let signed_in = oidc.complete(&headers, query).await?;
//! // signed_in.claims.sub is the person; start your session, clear the flow cookie
//! // (signed_in.clear_cookie) and go to signed_in.return_to.
//! # Ok(()) }
//! ```
//!
//! What [`OidcClient::complete`] checks, and refuses with an [`OidcError`] otherwise:
//!
//! - the flow cookie [`OidcClient::begin`] set: sealed with AES-256-GCM under the
//!   application's flow key (so it can be neither read nor forged), at most ten minutes
//!   old, holding the `state`, the `nonce`, the PKCE verifier and where to go afterwards;
//! - `state` equal to the cookie's (compared in constant time): a callback this browser
//!   did not start (login CSRF) is refused;
//! - `iss` equal to the provider's issuer whenever the provider sends it, and required
//!   when its metadata says it does (RFC 9207: a response from another provider cannot
//!   be mixed up with this one's);
//! - the code exchanged at the token endpoint with the verifier (PKCE, S256);
//! - the ID token, with the library's own verifier over the provider's JWKS (fetched
//!   again for a new kid): signature, `iss`, `aud` containing the client id and no
//!   audience it does not trust (`OidcClientBuilder::trusted_audience`; `azp` equal to
//!   the client id when there are other audiences), `exp`, `iat`, `sub`, a `typ` that is
//!   not an access token's, `nonce` equal to the cookie's, and `at_hash` when present.
//!
//! Everything that reaches the provider is https, except on loopback addresses
//! (development and tests): the issuer, the endpoints its metadata names (the
//! authorization, token, logout and key endpoints), and this client's redirect URI.
//! Answers are read up to a size cap. The provider's keys are refreshed in the
//! background as their `Cache-Control` says, and refetched once for a new kid; a
//! symmetric key in its JWKS is ignored, and an RSA key without `alg` is RS256.

mod flow;
#[cfg(feature = "webapp")]
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};
use serde::Deserialize;
use zeroize::Zeroizing;

use self::flow::{Flow, FlowCookie, local_path, random_text};
use crate::clock::{Clock, SystemClock};
use crate::http::{HttpFetcher, RemoteError};
use crate::jwt::{Audience, Claims, Reason, TypPolicy, Validation, Verifier};
use crate::keys::KeySet;
use crate::remote::{IssuerMetadata, JwksFetcher, RemoteJwks, discover, is_https_or_loopback};

/// How long a sign-in may take, from [`OidcClient::begin`] to the callback.
pub const FLOW_LIFETIME: Duration = Duration::from_secs(600);

/// Why a sign-in failed. What to show the person is [`OidcError::is_user_error`]'s
/// call; the message is for logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// The provider could not be discovered or its keys fetched.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The configuration is wrong (the message says how).
    #[error("OpenID Connect client: {0}")]
    Config(String),
    /// The provider answered the sign-in with an error (`access_denied` when the
    /// person declined).
    #[error("the provider refused the sign-in: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Provider {
        /// The `error` code.
        error: String,
        /// Its `error_description`, if any.
        description: Option<String>,
    },
    /// The callback is not the end of a sign-in this browser started, or it expired:
    /// no flow cookie, a cookie that does not open, an old one, another `state`.
    #[error("this sign-in was not started here, or took too long: {0}")]
    Flow(&'static str),
    /// The response names another issuer (RFC 9207), or none where the provider
    /// promised one.
    #[error("the authorization response is not from this provider's issuer")]
    IssuerMismatch,
    /// The token endpoint refused the code (`invalid_grant`: used, expired, or not
    /// this client's) or answered something unusable.
    #[error("the token endpoint: {0}")]
    Token(String),
    /// The ID token failed a check.
    #[error("the ID token was refused: {0}")]
    IdToken(String),
}

impl OidcError {
    /// True for failures the person can cause by using the browser (declining, a stale
    /// or replayed callback, another tab's flow): say "sign in again"; false for
    /// failures of the provider or the configuration: log them loudly.
    pub fn is_user_error(&self) -> bool {
        match self {
            OidcError::Provider { .. } | OidcError::Flow(_) => true,
            // A callback used twice (a double click, a reload after a lost answer): the
            // code is spent, the person signs in again.
            OidcError::Token(error) => error == "invalid_grant",
            _ => false,
        }
    }
}

/// Builds an [`OidcClient`]: see [`OidcClient::builder`].
#[must_use = "call .build().await"]
pub struct OidcClientBuilder {
    issuer: String,
    client_id: String,
    redirect_uri: String,
    client_secret: Option<Zeroizing<String>>,
    scope: String,
    flow_key: Option<Zeroizing<[u8; 32]>>,
    fetcher: Option<Arc<dyn JwksFetcher>>,
    clock: Arc<dyn Clock>,
    trusted_audiences: Vec<String>,
    /// OAuth 2.0 without OpenID Connect: the authorization and token endpoints.
    oauth2: Option<(String, String)>,
}

impl std::fmt::Debug for OidcClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClientBuilder")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl OidcClientBuilder {
    /// The client secret of a confidential client (sent with HTTP Basic,
    /// `client_secret_basic`). Without one the client is public (`none`).
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(Zeroizing::new(secret.into()));
        self
    }

    /// The scopes to ask for (default `openid`; `openid` is added if missing).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// The key that seals the flow cookie: 32 random bytes, secret, the same on every
    /// instance of the application (a sign-in may start on one and end on another).
    /// Required.
    pub fn flow_key(mut self, key: [u8; 32]) -> Self {
        self.flow_key = Some(Zeroizing::new(key));
        self
    }

    /// An audience besides this client that its ID tokens may also name (call again
    /// for more). OpenID Connect Core §3.1.3.7 refuses an ID token listing an audience
    /// the client does not trust; by default it trusts none but itself.
    pub fn trusted_audience(mut self, audience: impl Into<String>) -> Self {
        self.trusted_audiences.push(audience.into());
        self
    }

    /// A provider that speaks OAuth 2.0 but not OpenID Connect (GitHub's sign-in): its
    /// authorization and token endpoints, with no discovery and no keys. A sign-in
    /// then checks the flow cookie and `state`, sends PKCE, exchanges the code, and
    /// returns the access token with empty claims and no ID token: who the person is,
    /// the provider's own API says (with that token). The scope is sent as given.
    pub fn oauth2_endpoints(
        mut self,
        authorization_endpoint: impl Into<String>,
        token_endpoint: impl Into<String>,
    ) -> Self {
        self.oauth2 = Some((authorization_endpoint.into(), token_endpoint.into()));
        self
    }

    /// The fetcher for discovery and keys (tests); default [`HttpFetcher`].
    pub fn fetcher(mut self, fetcher: Arc<dyn JwksFetcher>) -> Self {
        self.fetcher = Some(fetcher);
        self
    }

    /// The clock (tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Discovers the provider, fetches its keys, and checks that it can do what this
    /// client needs (the code flow with S256).
    pub async fn build(self) -> Result<OidcClient, OidcError> {
        let key = self
            .flow_key
            .clone()
            .ok_or_else(|| OidcError::Config("flow_key is required".into()))?;
        let cookie = self.flow_cookie(&key)?;
        if !is_https_or_loopback(&self.redirect_uri) {
            return Err(OidcError::Config(format!(
                "redirect_uri {:?} must be https (plain http only on loopback)",
                self.redirect_uri
            )));
        }
        let mut scope: Vec<&str> = self.scope.split_whitespace().collect();
        if self.oauth2.is_none() && !scope.contains(&"openid") {
            scope.insert(0, "openid");
        }
        let scope = scope.join(" ");
        // The token endpoint is called with the library's own client (rustls, 10 s
        // timeouts, and no redirects: a 307 would post the code and the PKCE verifier
        // wherever it points).
        let http = HttpFetcher::new()?.client().clone();
        if let Some((authorization, token)) = self.oauth2.clone() {
            return self.build_oauth2(&authorization, &token, scope, cookie, http);
        }
        let fetcher: Arc<dyn JwksFetcher> = match self.fetcher {
            Some(f) => f,
            None => Arc::new(HttpFetcher::new()?),
        };
        let metadata = discover(&self.issuer, fetcher.as_ref())
            .await
            .map_err(RemoteError::from)?;
        let authorization_endpoint = metadata.authorization_endpoint.clone().ok_or_else(|| {
            OidcError::Config(format!("{} has no authorization_endpoint", self.issuer))
        })?;
        let token_endpoint = metadata
            .token_endpoint
            .clone()
            .ok_or_else(|| OidcError::Config(format!("{} has no token_endpoint", self.issuer)))?;
        for (name, endpoint) in [
            ("authorization_endpoint", Some(&authorization_endpoint)),
            (
                "end_session_endpoint",
                metadata.end_session_endpoint.as_ref(),
            ),
        ] {
            if let Some(endpoint) = endpoint
                && !is_https_or_loopback(endpoint)
            {
                return Err(OidcError::Config(format!(
                    "the {name} {endpoint:?} is not https"
                )));
            }
        }
        if !metadata.code_challenge_methods_supported.is_empty()
            && !metadata
                .code_challenge_methods_supported
                .iter()
                .any(|m| m == "S256")
        {
            return Err(OidcError::Config(format!(
                "{} does not offer PKCE with S256",
                self.issuer
            )));
        }
        // ID tokens: any `typ` but an access token's (checked after verification), a
        // lifetime of at most a day, this client among the audiences.
        let validation = Validation::builder()
            .issuer(&self.issuer)
            .audience(&self.client_id)
            .typ(TypPolicy::InsecureAny)
            .required_claims(["exp", "iat", "sub", "nonce"])
            .clock(self.clock.clone())
            .build()
            .map_err(RemoteError::from)?;
        let verifier = Arc::new(Verifier::new(KeySet::default(), validation));
        let jwks = Arc::new(RemoteJwks::new(
            metadata.jwks_uri.clone(),
            fetcher,
            verifier.clone(),
            self.clock.clone(),
        ));
        jwks.refresh_if_stale()
            .await
            .map_err(|reason| RemoteError::Jwks {
                url: metadata.jwks_uri.clone(),
                reason,
            })?;
        tokio::spawn(crate::http::refresh_in_background(Arc::downgrade(&jwks)));
        Ok(OidcClient {
            inner: Arc::new(Inner {
                cookie,
                issuer: self.issuer,
                client_id: self.client_id,
                client_secret: self.client_secret,
                redirect_uri: self.redirect_uri,
                scope,
                authorization_endpoint,
                token_endpoint,
                metadata,
                id_tokens: Some(IdTokenKeys { verifier, jwks }),
                http,
                clock: self.clock,
                trusted_audiences: self.trusted_audiences,
            }),
        })
    }

    /// The flow cookie, `__Host-` and `Secure` when the redirect URI is https (as a URL
    /// parser reads the scheme: `HTTPS://` is https too), bound to the issuer, the
    /// client and the redirect URI: a cookie sealed for another client or provider
    /// (sharing the key) does not open here.
    fn flow_cookie(&self, key: &[u8; 32]) -> Result<FlowCookie, OidcError> {
        let secure = url::Url::parse(&self.redirect_uri).is_ok_and(|u| u.scheme() == "https");
        let binding = format!("{}\n{}\n{}", self.issuer, self.client_id, self.redirect_uri);
        FlowCookie::new(key, secure, binding)
    }

    /// [`OidcClientBuilder::build`] for [`OidcClientBuilder::oauth2_endpoints`].
    fn build_oauth2(
        self,
        authorization: &str,
        token: &str,
        scope: String,
        cookie: FlowCookie,
        http: reqwest::Client,
    ) -> Result<OidcClient, OidcError> {
        for (name, endpoint) in [("authorization", authorization), ("token", token)] {
            if !is_https_or_loopback(endpoint) {
                return Err(OidcError::Config(format!(
                    "the {name} endpoint {endpoint:?} is not https"
                )));
            }
        }
        let metadata = IssuerMetadata {
            issuer: self.issuer.clone(),
            jwks_uri: String::new(),
            token_endpoint: Some(token.to_owned()),
            grant_types_supported: Vec::new(),
            portcullis_revocation_feed: None,
            authorization_endpoint: Some(authorization.to_owned()),
            end_session_endpoint: None,
            code_challenge_methods_supported: Vec::new(),
            authorization_response_iss_parameter_supported: false,
        };
        Ok(OidcClient {
            inner: Arc::new(Inner {
                cookie,
                issuer: self.issuer,
                client_id: self.client_id,
                client_secret: self.client_secret,
                redirect_uri: self.redirect_uri,
                scope,
                authorization_endpoint: authorization.to_owned(),
                token_endpoint: token.to_owned(),
                metadata,
                id_tokens: None,
                http,
                clock: self.clock,
                trusted_audiences: self.trusted_audiences,
            }),
        })
    }
}

/// The verifier of a provider's ID tokens and the keys it fetches.
struct IdTokenKeys {
    verifier: Arc<Verifier>,
    jwks: Arc<RemoteJwks>,
}

/// A provider this application signs people in with. Cheap to clone.
#[derive(Clone)]
pub struct OidcClient {
    inner: Arc<Inner>,
}

struct Inner {
    cookie: FlowCookie,
    issuer: String,
    client_id: String,
    client_secret: Option<Zeroizing<String>>,
    redirect_uri: String,
    scope: String,
    authorization_endpoint: String,
    token_endpoint: String,
    metadata: IssuerMetadata,
    /// What checks ID tokens; `None` for OAuth 2.0 without OpenID Connect.
    id_tokens: Option<IdTokenKeys>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    trusted_audiences: Vec<String>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.inner.issuer)
            .field("client_id", &self.inner.client_id)
            .finish_non_exhaustive()
    }
}

/// A sign-in begun: send the browser to `location` with `set_cookie`.
#[non_exhaustive]
pub struct Begun {
    /// The authorization request (answer `303 See Other` with it).
    pub location: String,
    /// The flow cookie.
    pub set_cookie: HeaderValue,
}

/// A sign-in completed. `Debug` shows who, never the tokens.
#[non_exhaustive]
pub struct SignedIn {
    /// The ID token's claims (`sub` is the person at this provider).
    pub claims: Claims,
    /// The ID token, for [`OidcClient::logout_url`].
    pub id_token: String,
    /// The access token, for the provider's APIs (userinfo).
    pub access_token: Zeroizing<String>,
    /// A refresh token, when the provider gave one.
    pub refresh_token: Option<Zeroizing<String>>,
    /// Where the person was going when the sign-in began.
    pub return_to: String,
    /// Clears the flow cookie: add it to the answer.
    pub clear_cookie: HeaderValue,
}

impl std::fmt::Debug for Begun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Begun").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("sub", &self.claims.sub)
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}

impl OidcClient {
    /// A client of `issuer` registered as `client_id` with `redirect_uri` (exactly as
    /// registered at the provider).
    pub fn builder(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> OidcClientBuilder {
        OidcClientBuilder {
            issuer: issuer.into(),
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            client_secret: None,
            scope: "openid".into(),
            flow_key: None,
            fetcher: None,
            clock: Arc::new(SystemClock),
            trusted_audiences: Vec::new(),
            oauth2: None,
        }
    }

    /// The provider's metadata, as discovered.
    pub fn metadata(&self) -> &IssuerMetadata {
        &self.inner.metadata
    }

    /// Starts a sign-in: a fresh `state`, `nonce` and PKCE verifier, sealed in the
    /// flow cookie, and the authorization request to send the browser to. `return_to`
    /// is where to go afterwards: a path of this application (anything else is `/`).
    pub fn begin(&self, return_to: &str) -> Result<Begun, OidcError> {
        let i = &self.inner;
        let flow = Flow {
            s: random_text()?,
            n: random_text()?,
            v: random_text()? + &random_text()?,
            r: if local_path(return_to) {
                return_to.to_owned()
            } else {
                "/".to_owned()
            },
            e: i.clock.now() + crate::clock::secs(FLOW_LIFETIME),
        };
        let challenge = crate::b64::encode(&crate::opaque::sha256(flow.v.as_bytes()));
        let mut location = url::Url::parse(&i.authorization_endpoint)
            .map_err(|e| OidcError::Config(format!("authorization_endpoint: {e}")))?;
        location
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &i.client_id)
            .append_pair("redirect_uri", &i.redirect_uri)
            .append_pair("scope", &i.scope)
            .append_pair("state", &flow.s)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if i.id_tokens.is_some() {
            location.query_pairs_mut().append_pair("nonce", &flow.n);
        }
        Ok(Begun {
            location: location.into(),
            set_cookie: i.cookie.set(&flow)?,
        })
    }

    /// Ends a sign-in: the callback's headers (for the flow cookie) and its query
    /// string. Every check of the module documentation, then the person's claims.
    pub async fn complete(&self, headers: &HeaderMap, query: &str) -> Result<SignedIn, OidcError> {
        let i = &self.inner;
        let params: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        let flow = i.cookie.read(headers).ok_or(OidcError::Flow(
            "no flow cookie, or one this application did not seal",
        ))?;
        if flow.e < i.clock.now() {
            return Err(OidcError::Flow("the flow cookie has expired"));
        }
        let state = params
            .get("state")
            .ok_or(OidcError::Flow("the callback has no state"))?;
        if aws_lc_rs::constant_time::verify_slices_are_equal(state.as_bytes(), flow.s.as_bytes())
            .is_err()
        {
            return Err(OidcError::Flow("the state is not this browser's"));
        }
        match params.get("iss") {
            Some(iss) if *iss != i.issuer => return Err(OidcError::IssuerMismatch),
            None if i.metadata.authorization_response_iss_parameter_supported => {
                return Err(OidcError::IssuerMismatch);
            }
            _ => {}
        }
        if let Some(error) = params.get("error") {
            return Err(OidcError::Provider {
                error: error.clone(),
                description: params.get("error_description").cloned(),
            });
        }
        let code = params
            .get("code")
            .ok_or_else(|| OidcError::Token("the callback has no code".into()))?;
        let tokens = self.exchange(code, &flow.v).await?;
        let claims = match &i.id_tokens {
            Some(keys) => self.check_id_token(keys, &tokens, &flow.n).await?,
            // OAuth 2.0 alone: no ID token; the provider's API says who it is.
            None => Claims::default(),
        };
        Ok(SignedIn {
            claims,
            id_token: tokens.id_token.unwrap_or_default(),
            access_token: Zeroizing::new(tokens.access_token),
            refresh_token: tokens.refresh_token.map(Zeroizing::new),
            return_to: flow.r,
            clear_cookie: i.cookie.clear(),
        })
    }

    async fn exchange(&self, code: &str, verifier: &str) -> Result<TokenResponse, OidcError> {
        let i = &self.inner;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", i.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        let mut request = i.http.post(&i.token_endpoint);
        match &i.client_secret {
            // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic.
            Some(secret) => {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                request = request.basic_auth(enc(&i.client_id), Some(enc(secret)));
            }
            None => form.push(("client_id", i.client_id.as_str())),
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let r = request
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| OidcError::Token(crate::http::chain(&e)))?;
        let status = r.status();
        let text = crate::http::read_capped(r, 64 * 1024)
            .await
            .map_err(OidcError::Token)?;
        if !status.is_success() {
            let error = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(OidcError::Token(error));
        }
        let tokens: TokenResponse = serde_json::from_str(&text)
            .map_err(|e| OidcError::Token(format!("an unreadable answer: {e}")))?;
        if !tokens.token_type.eq_ignore_ascii_case("bearer") {
            return Err(OidcError::Token(format!(
                "token_type {:?} is not Bearer",
                tokens.token_type
            )));
        }
        Ok(tokens)
    }

    async fn check_id_token(
        &self,
        keys: &IdTokenKeys,
        tokens: &TokenResponse,
        nonce: &str,
    ) -> Result<Claims, OidcError> {
        let i = &self.inner;
        let id_token = tokens
            .id_token
            .as_deref()
            .ok_or_else(|| OidcError::IdToken("the token response has no id_token".into()))?;
        let verified = match keys.verifier.verify_uncached(id_token) {
            Err(e)
                if e.reason() == Reason::UnknownKey
                    && keys.jwks.refresh_for_unknown_kid().await =>
            {
                keys.verifier.verify_uncached(id_token)
            }
            other => other,
        }
        .map_err(|e| OidcError::IdToken(e.to_string()))?;
        if verified
            .header()
            .typ
            .as_deref()
            .is_some_and(|t| crate::strict_json::media_subtype(t).eq_ignore_ascii_case("at+jwt"))
        {
            return Err(OidcError::IdToken("an access token is no ID token".into()));
        }
        let claims = verified.claims();
        let claimed_nonce = claims.extra.get("nonce").and_then(|n| n.as_str());
        let nonce_ok = claimed_nonce.is_some_and(|n| {
            aws_lc_rs::constant_time::verify_slices_are_equal(n.as_bytes(), nonce.as_bytes())
                .is_ok()
        });
        if !nonce_ok {
            return Err(OidcError::IdToken("the nonce is not this sign-in's".into()));
        }
        // `azp`, when present, must be this client; with other audiences it must be
        // present.
        let azp = claims.extra.get("azp");
        let several = matches!(&claims.aud, Some(Audience::Many(a)) if a.len() > 1);
        if (azp.is_some() || several) && azp.and_then(|a| a.as_str()) != Some(i.client_id.as_str())
        {
            return Err(OidcError::IdToken("azp is not this client".into()));
        }
        // Every other audience must be one this client trusts (§3.1.3.7, step 3): an
        // ID token also meant for a stranger is not taken, whatever its `azp`.
        if let Some(Audience::Many(list)) = &claims.aud
            && let Some(stranger) = list
                .iter()
                .find(|a| **a != i.client_id && !i.trusted_audiences.contains(a))
        {
            return Err(OidcError::IdToken(format!(
                "the audience {stranger:?} is not one this client trusts"
            )));
        }
        if let Some(expected) = claims.extra.get("at_hash") {
            let alg = verified.header().alg.as_str();
            let matches = expected
                .as_str()
                .is_some_and(|e| at_hash(alg, &tokens.access_token).as_deref() == Some(e));
            if !matches {
                return Err(OidcError::IdToken(
                    "at_hash does not match the access token".into(),
                ));
            }
        }
        Ok(claims.clone())
    }

    /// Where to send the browser to sign out at the provider too (RP-initiated logout),
    /// if it has an `end_session_endpoint`; `post_logout_redirect_uri` must be one the
    /// client registered there.
    pub fn logout_url(
        &self,
        id_token_hint: &str,
        post_logout_redirect_uri: Option<&str>,
    ) -> Option<String> {
        let i = &self.inner;
        let mut url = url::Url::parse(i.metadata.end_session_endpoint.as_deref()?).ok()?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("id_token_hint", id_token_hint)
                .append_pair("client_id", &i.client_id);
            if let Some(uri) = post_logout_redirect_uri {
                q.append_pair("post_logout_redirect_uri", uri);
            }
        }
        Some(url.into())
    }
}

/// The members of a token response this client reads.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// OpenID Connect Core §3.1.3.6: the left half of the access token's hash with the ID
/// token's algorithm's hash function (SHA-512 for EdDSA on Ed25519); `None` for an
/// algorithm it does not name.
fn at_hash(alg: &str, access_token: &str) -> Option<String> {
    use aws_lc_rs::digest;
    let function = match alg {
        "RS256" | "PS256" | "ES256" | "HS256" => &digest::SHA256,
        "RS384" | "PS384" | "ES384" | "HS384" => &digest::SHA384,
        "RS512" | "PS512" | "ES512" | "HS512" | "EdDSA" => &digest::SHA512,
        _ => return None,
    };
    let d = digest::digest(function, access_token.as_bytes());
    let bytes = d.as_ref();
    Some(crate::b64::encode(&bytes[..bytes.len() / 2]))
}

#[cfg(test)]
mod tests;
