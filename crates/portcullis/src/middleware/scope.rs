//! [`RequireScope`]: a route's scope rule as a layer, for axum's `route_layer`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::response::IntoResponse as _;
use http::{Request, Response};

use crate::rejection::Rejection;
use crate::strategy::Identity;

/// Refuses requests whose identity lacks the scopes a route needs: 403
/// `insufficient_scope` naming them (the same answer and challenge as
/// [`Identity::require_all`]), or 401 when nobody authenticated (behind
/// [`super::AuthLayer::optional`]). Put it inside an [`super::AuthLayer`], which
/// establishes the identity and gives the challenge its realm:
///
/// ```
/// # use std::sync::Arc;
/// # use axum::{Router, routing::{get, post}};
/// # use portcullis::jwt::{Validation, Verifier};
/// # use portcullis::keys::KeySet;
/// # use portcullis::middleware::{AuthLayer, RequireScope};
/// # use portcullis::strategy::{Bearer, Chain};
/// # let verifier = Arc::new(Verifier::new(KeySet::default(),
/// #     Validation::builder().issuer("https://auth.example").audience("api").build().unwrap()));
/// let app: Router = Router::new()
///     .route("/notes", post(|| async { "written" }))
///     .route_layer(RequireScope::all(["notes:write"]))
///     .route("/health", get(|| async { "ok" }))
///     .layer(AuthLayer::optional(Chain::new().with(Bearer::new(verifier))));
/// ```
#[derive(Clone, Debug)]
pub struct RequireScope {
    scopes: Arc<[String]>,
    all: bool,
}

impl RequireScope {
    /// Every one of `scopes` is needed.
    pub fn all<I, S>(scopes: I) -> RequireScope
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RequireScope {
            scopes: scopes.into_iter().map(Into::into).collect(),
            all: true,
        }
    }

    /// At least one of `scopes` is needed.
    pub fn any<I, S>(scopes: I) -> RequireScope
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RequireScope {
            scopes: scopes.into_iter().map(Into::into).collect(),
            all: false,
        }
    }

    pub(super) fn check(&self, identity: Option<&Identity>) -> Result<(), Rejection> {
        let Some(identity) = identity else {
            return Err(Rejection::MissingCredentials);
        };
        let has = |s: &String| identity.has_scope(s);
        let passes = if self.all {
            self.scopes.iter().all(has)
        } else {
            self.scopes.iter().any(has)
        };
        if passes {
            Ok(())
        } else {
            Err(Rejection::InsufficientScope(self.scopes.join(" ")))
        }
    }
}

impl<S> tower::Layer<S> for RequireScope {
    type Service = RequireScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopeService {
            inner,
            rule: self.clone(),
        }
    }
}

/// The service [`RequireScope`] makes.
#[derive(Clone, Debug)]
pub struct RequireScopeService<S> {
    inner: S,
    rule: RequireScope,
}

pin_project_lite::pin_project! {
    /// The route's future, or the refusal.
    pub struct ScopeFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response<axum_core::body::Body>> },
    }
}

impl<F> ScopeFuture<F> {
    /// The route's own future: the rule passed.
    pub(super) fn passed(future: F) -> ScopeFuture<F> {
        ScopeFuture {
            kind: Kind::Inner { future },
        }
    }

    /// The rule's refusal, answered without calling the route.
    pub(super) fn refused(response: Response<axum_core::body::Body>) -> ScopeFuture<F> {
        ScopeFuture {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F> std::fmt::Debug for ScopeFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScopeFuture")
    }
}

impl<F, E> Future for ScopeFuture<F>
where
    F: Future<Output = Result<Response<axum_core::body::Body>, E>>,
{
    type Output = Result<Response<axum_core::body::Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            // Taken once; a future polled again after completing may stay pending.
            KindProj::Refused { response } => response
                .take()
                .map_or(Poll::Pending, |r| Poll::Ready(Ok(r))),
        }
    }
}

impl<S, B> tower::Service<Request<B>> for RequireScopeService<S>
where
    S: tower::Service<Request<B>, Response = Response<axum_core::body::Body>>,
{
    type Response = Response<axum_core::body::Body>;
    type Error = S::Error;
    type Future = ScopeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.rule.check(request.extensions().get::<Identity>()) {
            Ok(()) => ScopeFuture::passed(self.inner.call(request)),
            Err(rejection) => ScopeFuture::refused(rejection.into_response()),
        }
    }
}
