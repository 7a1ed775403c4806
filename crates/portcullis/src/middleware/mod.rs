//! Tower middleware that runs a strategy [`Chain`] before the route, and the axum
//! extractors that read its result.
//!
//! [`AuthLayer::required`] answers 401/400 itself when the chain finds nobody or
//! rejects; [`AuthLayer::optional`] lets anonymous requests through (a rejection is
//! still a rejection: a bad token is never treated as no token). The identity goes into
//! the request extensions, where [`Authenticated`] finds it.

mod extract;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use extract::{AuthRejection, Authenticated, NoClaims};
use http::{HeaderValue, Request, Response, header};

use crate::rejection::Rejection;
use crate::strategy::Chain;

/// Configures [`Auth`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    chain: Chain,
    required: bool,
    realm: &'static str,
}

impl AuthLayer {
    /// Every request must authenticate.
    pub fn required(chain: Chain) -> AuthLayer {
        AuthLayer {
            chain,
            required: true,
            realm: "api",
        }
    }

    /// Anonymous requests pass; credentials that are present must be valid.
    pub fn optional(chain: Chain) -> AuthLayer {
        AuthLayer {
            chain,
            required: false,
            realm: "api",
        }
    }

    /// The realm of `WWW-Authenticate` challenges. Defaults to `api`.
    #[must_use]
    pub fn with_realm(mut self, realm: &'static str) -> AuthLayer {
        self.realm = realm;
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

/// The response future of [`Auth`].
pub struct ResponseFuture<R, E> {
    inner: Pin<Box<dyn Future<Output = Result<R, E>> + Send>>,
}

impl<R, E> std::fmt::Debug for ResponseFuture<R, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<R, E> Future for ResponseFuture<R, E> {
    type Output = Result<R, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// The answer for a rejection: status, challenge, OAuth-shaped JSON body. The precise
/// reason is logged here, once, without the token.
pub fn rejection_response<B: From<String>>(rejection: &Rejection, realm: &str) -> Response<B> {
    tracing_log(rejection);
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
    response
}

fn tracing_log(rejection: &Rejection) {
    rejection.count();
    tracing::info!(reason = rejection.log_reason(), "request not authenticated");
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
    type Future = ResponseFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone that was driven to readiness serves this request; the fresh clone
        // waits for the next one (tower's usual pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        ResponseFuture {
            inner: Box::pin(async move {
                let (mut parts, body) = request.into_parts();
                match layer.chain.authenticate(&parts).await {
                    Ok(Some(identity)) => {
                        parts.extensions.insert(identity);
                    }
                    Ok(None) if layer.required => {
                        return Ok(rejection_response(
                            &Rejection::MissingCredentials,
                            layer.realm,
                        ));
                    }
                    Ok(None) => {}
                    Err(rejection) => return Ok(rejection_response(&rejection, layer.realm)),
                }
                inner.call(Request::from_parts(parts, body)).await
            }),
        }
    }
}
