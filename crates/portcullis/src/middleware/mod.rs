//! Tower middleware that runs a strategy [`Chain`] before the route, and the axum
//! extractors that read its result.
//!
//! [`AuthLayer::required`] answers 401/400 itself when the chain finds nobody or
//! rejects; [`AuthLayer::optional`] lets anonymous requests through (a rejection is
//! still a rejection: a bad token is never treated as no token). The identity goes into
//! the request extensions, where [`Authenticated`] finds it.
//!
//! One router with public, optional and required routes, bearer tokens and API keys
//! side by side, typed claims and a scope rule:
//!
//! ```
//! use std::sync::Arc;
//!
//! use axum::{Router, routing::{get, post}};
//! use portcullis::jwt::{Validation, Verifier};
//! use portcullis::keys::KeySet;
//! use portcullis::middleware::{AuthLayer, Authenticated, RequireScope};
//! use portcullis::strategy::{ApiKey, ApiKeyRecord, Bearer, Chain, MemoryApiKeys};
//!
//! /// The claims the routes read (registered ones and your own alike).
//! #[derive(serde::Deserialize)]
//! struct Claims {
//!     sub: String,
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let keys = KeySet::default();
//! let policy = Validation::builder().issuer("https://auth.example").audience("notes").build()?;
//! let keys_for_machines = Arc::new(MemoryApiKeys::default());
//! keys_for_machines.insert("pk_live_…", ApiKeyRecord {
//!     subject: "nightly-export".into(),
//!     scopes: vec!["notes:read".into()],
//! });
//! let chain = Chain::new()
//!     .with(Bearer::new(Arc::new(Verifier::new(keys, policy))))
//!     .with(ApiKey::new(keys_for_machines));
//!
//! // Writing needs a token (or key) with notes:write: the rule inside its own layer.
//! let writes = Router::new()
//!     .route("/notes", post(|a: Authenticated<Claims>| async move { a.claims.sub }))
//!     .route_layer(AuthLayer::required(chain.clone()).require(RequireScope::all(["notes:write"])));
//! let app: Router = Router::new()
//!     // Anyone may read; a signed-in reader is greeted by name.
//!     .route("/notes", get(|a: Option<Authenticated<Claims>>| async move {
//!         a.map_or("hello".to_owned(), |a| format!("hello {}", a.claims.sub))
//!     }))
//!     // A bad credential is refused even here: optional is not "anything goes".
//!     .layer(AuthLayer::optional(chain))
//!     .merge(writes);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

mod amr;
mod extract;
mod scope;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use amr::{RequireAmr, RequireAmrService};
pub use extract::{AuthRejection, Authenticated, NoClaims};
use http::{HeaderValue, Request, Response, header};
pub use scope::{RequireScope, RequireScopeService, ScopeFuture};

use crate::rejection::{Refusal, Rejection};
use crate::strategy::Chain;

/// The realm of challenges when nobody configured one.
pub const DEFAULT_REALM: &str = "api";

/// Configures [`Auth`]. Cheap to clone: one reference count, as axum clones the
/// middleware of a route for every request.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    config: Arc<Config>,
}

#[derive(Clone, Debug)]
struct Config {
    chain: Chain,
    required: bool,
    realm: &'static str,
    scope: Option<RequireScope>,
    record: bool,
}

impl AuthLayer {
    /// Every request must authenticate.
    pub fn required(chain: Chain) -> AuthLayer {
        AuthLayer::new(chain, true)
    }

    /// Anonymous requests pass; credentials that are present must be valid.
    pub fn optional(chain: Chain) -> AuthLayer {
        AuthLayer::new(chain, false)
    }

    fn new(chain: Chain, required: bool) -> AuthLayer {
        AuthLayer {
            config: Arc::new(Config {
                chain,
                required,
                realm: DEFAULT_REALM,
                scope: None,
                record: true,
            }),
        }
    }

    /// The realm of `WWW-Authenticate` challenges. Defaults to `api`. It is also the
    /// realm of the refusals the routes behind the layer answer (the [`Authenticated`]
    /// extractor, `require_all`, [`RequireScope`]).
    #[must_use]
    pub fn with_realm(mut self, realm: &'static str) -> AuthLayer {
        Arc::make_mut(&mut self.config).realm = realm;
        self
    }

    /// Whether this layer records the refusals it answers, and those the routes behind
    /// it answer ([`Rejection::record`]: counted and logged once). On by default. An
    /// application that logs every answer itself, with its own request id, turns it
    /// off and records the [`crate::rejection::Refusal`] it finds on the response.
    #[must_use]
    pub fn record_refusals(mut self, record: bool) -> AuthLayer {
        Arc::make_mut(&mut self.config).record = record;
        self
    }
}

impl AuthLayer {
    /// Checks a scope rule in this layer too, after authentication: the same answer as
    /// [`RequireScope`] as a route layer, without the extra layer (axum boxes each route
    /// layer once more, which costs about 100 ns a request; see docs/BENCHMARKS.md). For
    /// routes that share one rule:
    /// `.route_layer(AuthLayer::required(chain).require(RequireScope::all(["notes:write"])))`.
    #[must_use]
    pub fn require(mut self, rule: RequireScope) -> AuthLayer {
        Arc::make_mut(&mut self.config).scope = Some(rule);
        self
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

/// The middleware service.
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

pin_project_lite::pin_project! {
    /// The response future of [`Auth`]: the inner service's own future when the chain
    /// decided at once (the usual case, no allocation), a ready rejection, or a boxed
    /// future when a strategy had to wait.
    pub struct ResponseFuture<F, R, E> {
        #[pin]
        kind: Kind<F, R, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, R, E> {
        Inner { #[pin] future: F, realm: &'static str, record: bool },
        Ready { response: Option<R> },
        Boxed { future: Pin<Box<dyn Future<Output = Result<R, E>> + Send>> },
    }
}

impl<F, R, E> std::fmt::Debug for ResponseFuture<F, R, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<F, B, E> Future for ResponseFuture<F, Response<B>, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner {
                future,
                realm,
                record,
            } => future
                .poll(cx)
                .map(|r| r.map(|response| settle(response, realm, *record))),
            // Taken once; a future polled again after completing may stay pending.
            KindProj::Ready { response } => response
                .take()
                .map_or(Poll::Pending, |r| Poll::Ready(Ok(r))),
            KindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

/// The answer for a rejection: status, challenge, OAuth-shaped JSON body, and the
/// rejection itself as a [`Refusal`] extension. The one JSON rendering of a refusal; it
/// logs and counts nothing (the layer records each refusal once: see
/// [`AuthLayer::record_refusals`]).
pub fn rejection_response<B: From<String>>(rejection: &Rejection, realm: &str) -> Response<B> {
    let mut response = Response::new(B::from(rejection.body().to_string()));
    *response.status_mut() = rejection.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(challenge) = HeaderValue::from_str(&rejection.challenge(realm)) {
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    if let Some(secs) = rejection.retry_after() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response.extensions_mut().insert(Refusal(rejection.clone()));
    response
}

/// Marks a refusal whose realm is final and which was recorded (or left to the
/// application): an outer layer leaves it as it is.
#[derive(Clone, Copy, Debug)]
struct Settled;

/// The layer's own refusal: recorded once, settled.
fn refuse<B: From<String>>(rejection: &Rejection, layer: &Config) -> Response<B> {
    if layer.record {
        rejection.record();
    }
    let mut response = rejection_response(rejection, layer.realm);
    response.extensions_mut().insert(Settled);
    response
}

/// A refusal answered behind the layer (a handler, an extractor) gets the layer's realm
/// in its challenge and is recorded once. Other answers pass untouched.
fn settle<B>(mut response: Response<B>, realm: &'static str, record: bool) -> Response<B> {
    // Every answer passes here: the usual one, no refusal, costs one lookup.
    let extensions = response.extensions();
    let Some(Refusal(rejection)) = extensions.get::<Refusal>() else {
        return response;
    };
    if extensions.get::<Settled>().is_some() {
        return response;
    }
    if record {
        rejection.record();
    }
    if realm != DEFAULT_REALM
        && let Ok(challenge) = HeaderValue::from_str(&rejection.challenge(realm))
    {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response.extensions_mut().insert(Settled);
    response
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for Auth<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let Some(decided) = self.layer.config.chain.authenticate_now(&parts) else {
            // The inner service is called later, from the future: the clone that was
            // driven to readiness goes with it and the fresh clone waits for the next
            // request (tower's usual pattern). The synchronous path below calls
            // `self.inner` at once and needs no clone (for an axum route, a clone is an
            // allocation).
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            let layer = self.layer.clone();
            return ResponseFuture {
                kind: Kind::Boxed {
                    future: Box::pin(async move {
                        let decided = layer.config.chain.authenticate(&parts).await;
                        match admit(decided, &layer.config, &mut parts) {
                            Ok(()) => inner
                                .call(Request::from_parts(parts, body))
                                .await
                                .map(|r| settle(r, layer.config.realm, layer.config.record)),
                            Err(response) => Ok(response),
                        }
                    }),
                },
            };
        };
        match admit(decided, &self.layer.config, &mut parts) {
            Ok(()) => ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(Request::from_parts(parts, body)),
                    realm: self.layer.config.realm,
                    record: self.layer.config.record,
                },
            },
            Err(response) => ResponseFuture {
                kind: Kind::Ready {
                    response: Some(response),
                },
            },
        }
    }
}

/// Puts the identity in the request, or gives the answer that refuses it.
fn admit<B: From<String>>(
    decided: Result<Option<crate::strategy::Identity>, Rejection>,
    layer: &Config,
    parts: &mut http::request::Parts,
) -> Result<(), Response<B>> {
    match decided {
        Ok(Some(identity)) => {
            if let Some(rule) = &layer.scope
                && let Err(rejection) = rule.check(Some(&identity))
            {
                return Err(refuse(&rejection, layer));
            }
            parts.extensions.insert(identity);
            Ok(())
        }
        Ok(None) if layer.scope.is_some() => Err(refuse(&Rejection::MissingCredentials, layer)),
        Ok(None) if layer.required => Err(refuse(&Rejection::MissingCredentials, layer)),
        Ok(None) => Ok(()),
        Err(rejection) => Err(refuse(&rejection, layer)),
    }
}
