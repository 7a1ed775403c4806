//! The axum extractor for an authenticated request, with typed custom claims.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::rejection::{Rejection, TokenFailure};
use crate::strategy::Identity;

/// The identity [`super::AuthLayer`] established, with the token's claims set
/// deserialized as `C` ([`NoClaims`], the default, when you need none), registered
/// claims included. An identity without a token (an API key, a cookie session) offers
/// only `sub` and `scope` (the scopes space-separated), so a `C` that needs more refuses
/// those. A token whose claims do not fit `C` is refused (401) and the reason recorded
/// (by the layer: [`super::AuthLayer::record_refusals`]). Never names your state type:
/// it reads only the request extensions.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Authenticated<C = NoClaims> {
    /// Who the request is.
    pub identity: Identity,
    /// The custom claims.
    pub claims: C,
}

/// Custom claims for routes that need none: accepts any claims set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoClaims;

impl<'de> serde::Deserialize<'de> for NoClaims {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| NoClaims)
    }
}

/// The rejection of [`Authenticated`]: an RFC 6750 answer.
#[derive(Debug)]
pub struct AuthRejection(pub Rejection);

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl IntoResponse for Rejection {
    /// The answer with the default realm `api`; inside an [`super::AuthLayer`] the
    /// layer's realm replaces it, and the layer records it (it carries its
    /// [`crate::rejection::Refusal`], like every refusal).
    fn into_response(self) -> Response {
        super::rejection_response(&self, super::DEFAULT_REALM)
    }
}

/// `C` from the whole claims set, registered claims included (so `struct C { sub:
/// String, scope: String, tenant: String }` works). An identity without a token (an API
/// key, a cookie session) offers `sub` and `scope`.
fn custom<C: DeserializeOwned + 'static>(identity: &Identity) -> Result<C, Rejection> {
    if std::any::TypeId::of::<C>() == std::any::TypeId::of::<NoClaims>() {
        // Nothing to read: skip copying the claims (the common case, on every request).
        return C::deserialize(
            serde::de::value::UnitDeserializer::<serde::de::value::Error>::new(),
        )
        .map_err(|_| Rejection::MissingCredentials);
    }
    // Through bytes, not a `serde_json::Value`: building the value's map of every claim
    // was most of what a cached request cost the middleware beyond axum.
    let set = match identity.token() {
        Some(token) => token.claims_json(),
        None => serde_json::to_vec(&serde_json::json!({
            "sub": identity.subject(),
            "scope": identity.scopes().collect::<Vec<_>>().join(" "),
        }))
        .unwrap_or_default(),
    };
    serde_json::from_slice(&set).map_err(|e| {
        // The token verified but does not have the shape this route declared: say why
        // in the log (the client only learns the token is not good here).
        tracing::warn!(
            claims_type = std::any::type_name::<C>(),
            error = %e,
            "the verified claims do not deserialize into the route's claims type"
        );
        Rejection::InvalidToken(TokenFailure::Verification(crate::jwt::Reason::InvalidClaim))
    })
}

impl<S, C> FromRequestParts<S> for Authenticated<C>
where
    S: Send + Sync,
    C: DeserializeOwned + Send + 'static,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let identity = parts
            .extensions
            .get::<Identity>()
            .cloned()
            .ok_or(AuthRejection(Rejection::MissingCredentials))?;
        let claims = custom(&identity).map_err(AuthRejection)?;
        Ok(Authenticated { identity, claims })
    }
}

impl<S, C> OptionalFromRequestParts<S> for Authenticated<C>
where
    S: Send + Sync,
    C: DeserializeOwned + Send + 'static,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let Some(identity) = parts.extensions.get::<Identity>().cloned() else {
            return Ok(None);
        };
        let claims = custom(&identity).map_err(AuthRejection)?;
        Ok(Some(Authenticated { identity, claims }))
    }
}
