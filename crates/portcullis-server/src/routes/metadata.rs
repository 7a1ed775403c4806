//! Authorization-server metadata (RFC 8414), also served as the OpenID Connect
//! discovery document: it lists exactly what is supported, so that a client library
//! configures itself from the issuer alone and never tries what would be refused.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

/// `GET /.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "resource servers",
    responses((status = 200, description = "Issuer metadata (also at /.well-known/oauth-authorization-server)", body = super::schemas::Metadata)))]
pub async fn metadata(State(state): State<AppState>) -> Json<Value> {
    let issuer = state.0.config.issuer.trim_end_matches('/').to_owned();
    let at = |path: &str| format!("{issuer}{path}");
    // The algorithm ID tokens are signed with now (and, during a rotation, the next).
    let keys = state.0.keys.current();
    let mut algs = vec![keys.active.algorithm().as_str()];
    if let Some(next) = keys.newest().map(|k| k.alg.as_str())
        && !algs.contains(&next)
    {
        algs.push(next);
    }
    Json(json!({
        "issuer": state.0.config.issuer,
        "jwks_uri": at("/.well-known/jwks.json"),
        "authorization_endpoint": at("/oauth/authorize"),
        "token_endpoint": at("/oauth/token"),
        "userinfo_endpoint": at("/oauth/userinfo"),
        "introspection_endpoint": at("/oauth/introspect"),
        "revocation_endpoint": at("/oauth/revoke"),
        "end_session_endpoint": at("/oauth/logout"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "amr", "acr", "idp", "preferred_username", "email", "email_verified"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "prompt_values_supported": ["none", "login", "consent"],
        "acr_values_supported": ["aal1", "aal2"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        // A Portcullis extension: the revocation feed (scope revocations:read).
        "portcullis_revocation_feed": at("/auth/revocations"),
    }))
}
