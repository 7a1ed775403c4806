//! The axum extractor for an authenticated request, with typed custom claims.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::rejection::{Rejection, TokenFailure};
use crate::strategy::Identity;

/// The identity [`super::AuthLayer`] established, with the token's custom claims
/// deserialized as `C` ([`NoClaims`], the default, when you need none). Never names
/// your state type: it reads only the request extensions.
#[derive(Debug, Clone)]
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
        super::rejection_response(&self.0, "api")
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        super::rejection_response(&self, "api")
    }
}

fn custom<C: DeserializeOwned + 'static>(identity: &Identity) -> Result<C, Rejection> {
    if std::any::TypeId::of::<C>() == std::any::TypeId::of::<NoClaims>() {
        // Nothing to read: skip copying the claims (the common case, on every request).
        return C::deserialize(
            serde::de::value::UnitDeserializer::<serde::de::value::Error>::new(),
        )
        .map_err(|_| Rejection::MissingCredentials);
    }
    let extra = identity
        .claims()
        .map(|c| serde_json::Value::Object(c.extra.clone()))
        .unwrap_or(serde_json::Value::Object(serde_json::Map::new()));
    serde_json::from_value(extra).map_err(|_| {
        // The token verified but lacks claims this route relies on.
        Rejection::InvalidToken(TokenFailure::Verification(crate::jwt::Reason::MissingClaim))
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
