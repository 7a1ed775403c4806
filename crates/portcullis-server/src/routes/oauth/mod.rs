//! OAuth 2.1 and OpenID Connect: the authorization server side.
//!
//! - `authorize`: `GET|POST /oauth/authorize`, the authorization-code flow with PKCE
//!   (S256 only), the sign-in and consent pages, single-use codes;
//! - `token`: `POST /oauth/token`, for the `authorization_code`, `refresh_token` and
//!   `client_credentials` grants;
//! - `id_token`: OpenID Connect ID tokens, and reading one back (`id_token_hint`);
//! - `userinfo`: `GET|POST /oauth/userinfo`;
//! - `introspect`: `POST /oauth/introspect` (RFC 7662) and `POST /oauth/revoke` (RFC 7009);
//! - `logout`: `GET|POST /oauth/logout`, RP-initiated logout;
//! - `client_auth`: who is asking, at the endpoints clients call directly;
//! - `redirect`: which redirect URIs can be registered and which match.
//!
//! The profile (what is supported, what is refused, and why) is docs/oauth.md.

pub(super) mod authorize;
mod client_auth;
pub(super) mod id_token;
pub(super) mod introspect;
pub(super) mod logout;
pub(crate) mod redirect;
pub(super) mod token;
pub(super) mod userinfo;

pub(super) use authorize::{AppAsking, app_asking, return_target};
pub use authorize::{authorize, authorize_decision};
pub use introspect::{introspect, revoke};
pub use logout::{end_session, end_session_confirmed};
pub use token::token;
pub use userinfo::userinfo;

/// How long an authorization code can be exchanged (RFC 6749 §4.1.2 recommends at
/// most ten minutes; a client exchanges it within a second of receiving it).
pub(crate) const CODE_TTL: i64 = 60;

/// What the consent page says about the scopes that say who the person is.
/// (`offline_access` says nothing more: every code grant has a refresh token, see
/// docs/oauth.md.)
pub(crate) fn describe_scope(scope: &str) -> Option<&'static str> {
    match scope {
        "openid" => Some("Confirm who you are (your user id)"),
        "profile" => Some("See your username"),
        "email" => Some("See your email address"),
        _ => None,
    }
}

/// The form of a request to the endpoints clients call directly, with its headers (for
/// the Basic credentials): `application/x-www-form-urlencoded` or 415.
pub(super) async fn client_form<T: serde::de::DeserializeOwned>(
    request: axum::extract::Request,
) -> Result<(axum::http::HeaderMap, T), crate::error::ApiError> {
    let (parts, body) = request.into_parts();
    if !super::cookie::is_form(&parts.headers) {
        return Err(crate::error::ApiError::UnsupportedMediaType(
            "this request is a form: Content-Type: application/x-www-form-urlencoded".into(),
        ));
    }
    let headers = parts.headers.clone();
    let form: T = super::cookie::read_form(parts, body).await?;
    Ok((headers, form))
}
