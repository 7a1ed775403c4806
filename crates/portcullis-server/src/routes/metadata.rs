//! Authorization-server metadata (RFC 8414; the same document at the OpenID Connect
//! discovery path), so resource servers find the JWKS from the issuer alone.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

/// `GET /.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "resource servers",
    responses((status = 200, description = "Issuer metadata (also at /.well-known/oauth-authorization-server)", body = super::schemas::Metadata)))]
pub async fn metadata(State(state): State<AppState>) -> Json<Value> {
    let issuer = state.0.config.issuer.trim_end_matches('/').to_owned();
    Json(json!({
        "issuer": state.0.config.issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        // The OAuth token endpoint serves machine clients only (client credentials);
        // people log in at /auth/login (JSON) or /session/login.
        "token_endpoint": format!("{issuer}/oauth/token"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        // A Portcullis extension: the revocation feed (scope revocations:read).
        "portcullis_revocation_feed": format!("{issuer}/auth/revocations"),
        // RFC 8414 requires the member; there is no authorization endpoint.
        "response_types_supported": [],
    }))
}
