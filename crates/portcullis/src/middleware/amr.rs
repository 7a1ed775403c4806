//! [`RequireAmr`]: a route's rule on how its caller signed in, as a layer.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::response::IntoResponse as _;
use http::{Request, Response};

use super::scope::ScopeFuture;
use crate::rejection::Rejection;
use crate::strategy::Identity;

/// Refuses requests whose sign-in lacks the authentication methods a route needs
/// (RFC 8176 `amr` values, from the token's `amr` claim or the cookie session's
/// record): 401 with an RFC 9470 step-up challenge,
/// `error="insufficient_user_authentication"`, naming the `acr_values` the client
/// should ask the authorization server for; or 401 when nobody authenticated. Put it
/// inside an [`super::AuthLayer`], as [`super::RequireScope`]:
///
/// ```
/// # use std::sync::Arc;
/// # use axum::{Router, routing::post};
/// # use portcullis::jwt::{Validation, Verifier};
/// # use portcullis::keys::KeySet;
/// # use portcullis::middleware::{AuthLayer, RequireAmr};
/// # use portcullis::strategy::{Bearer, Chain};
/// # let verifier = Arc::new(Verifier::new(KeySet::default(),
/// #     Validation::builder().issuer("https://auth.example").audience("api").build().unwrap()));
/// // Moving money needs a sign-in with two factors; Portcullis asks for one with
/// // `acr_values=aal2`.
/// let app: Router = Router::new()
///     .route("/transfers", post(|| async { "sent" }))
///     .route_layer(RequireAmr::all(["mfa"]).acr_values("aal2"))
///     .layer(AuthLayer::required(Chain::new().with(Bearer::new(verifier))));
/// ```
#[derive(Clone, Debug)]
pub struct RequireAmr {
    methods: Arc<[String]>,
    all: bool,
    acr_values: Arc<str>,
}

impl RequireAmr {
    /// Every one of `methods` is needed (for example `["mfa"]`, or `["hwk"]`).
    pub fn all<I, S>(methods: I) -> RequireAmr
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RequireAmr {
            methods: methods.into_iter().map(Into::into).collect(),
            all: true,
            acr_values: Arc::from(""),
        }
    }

    /// At least one of `methods` is needed (for example `["otp", "hwk", "swk"]`).
    pub fn any<I, S>(methods: I) -> RequireAmr
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RequireAmr {
            all: false,
            ..RequireAmr::all(methods)
        }
    }

    /// The `acr_values` the step-up challenge names (space separated), so that the
    /// client knows what to ask for; none by default.
    #[must_use]
    pub fn acr_values(mut self, acr_values: &str) -> RequireAmr {
        self.acr_values = Arc::from(acr_values);
        self
    }

    fn check(&self, identity: Option<&Identity>) -> Result<(), Rejection> {
        let Some(identity) = identity else {
            return Err(Rejection::MissingCredentials);
        };
        let amr = identity.amr();
        let has = |m: &String| amr.contains(&m.as_str());
        let passes = if self.all {
            self.methods.iter().all(has)
        } else {
            self.methods.iter().any(has)
        };
        if passes {
            Ok(())
        } else {
            Err(Rejection::InsufficientUserAuthentication(
                self.acr_values.to_string(),
            ))
        }
    }
}

impl<S> tower::Layer<S> for RequireAmr {
    type Service = RequireAmrService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAmrService {
            inner,
            rule: self.clone(),
        }
    }
}

/// The service [`RequireAmr`] makes.
#[derive(Clone, Debug)]
pub struct RequireAmrService<S> {
    inner: S,
    rule: RequireAmr,
}

impl<S, B> tower::Service<Request<B>> for RequireAmrService<S>
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{Claims, VerifiedToken};

    fn token_identity(amr: serde_json::Value) -> Identity {
        let mut claims = Claims {
            sub: Some("u".into()),
            ..Claims::default()
        };
        claims.extra.insert("amr".into(), amr);
        Identity::from_token(Arc::new(VerifiedToken::for_tests(claims)), "bearer")
    }

    #[test]
    fn the_rule_reads_amr_and_asks_for_a_step_up() {
        let mfa = token_identity(serde_json::json!(["pwd", "otp", "mfa"]));
        let pwd = token_identity(serde_json::json!(["pwd"]));
        let odd = token_identity(serde_json::json!("mfa"));
        let rule = RequireAmr::all(["mfa"]).acr_values("aal2");
        assert_eq!(rule.check(Some(&mfa)), Ok(()));
        let refused = rule.check(Some(&pwd)).unwrap_err();
        assert_eq!(
            refused,
            Rejection::InsufficientUserAuthentication("aal2".into())
        );
        assert_eq!(refused.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.challenge("api"),
            "Bearer realm=\"api\", error=\"insufficient_user_authentication\", \
             error_description=\"a stronger sign-in is required\", acr_values=\"aal2\""
        );
        // `amr` must be an array of strings: a bare string is no method.
        assert!(rule.check(Some(&odd)).is_err());
        assert_eq!(rule.check(None), Err(Rejection::MissingCredentials));
        let any = RequireAmr::any(["hwk", "otp"]);
        assert_eq!(any.check(Some(&mfa)), Ok(()));
        assert!(any.check(Some(&pwd)).is_err());
        assert_eq!(
            any.check(Some(&pwd)).unwrap_err().challenge("api"),
            "Bearer realm=\"api\", error=\"insufficient_user_authentication\", \
             error_description=\"a stronger sign-in is required\""
        );
    }
}
