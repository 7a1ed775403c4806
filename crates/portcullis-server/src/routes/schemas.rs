//! The shapes of the JSON bodies the handlers build with `json!`, for the OpenAPI
//! description (`openapi.rs`); request bodies are described by their own types.

use utoipa::ToSchema;

/// `{"error", "error_description"}`: every JSON error.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// A stable code (`invalid_request`, `invalid_token`, …).
    error: String,
    /// What went wrong, for people.
    error_description: String,
    /// With `insufficient_scope`: the scope needed.
    scope: Option<String>,
}

/// A new account.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Account {
    id: String,
    username: String,
    /// The address given at signup, when one was (then `email_verified` too).
    email: Option<String>,
    email_verified: Option<bool>,
}

/// A token response of `/auth/login` and `/auth/refresh`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenResponse {
    access_token: String,
    /// `Bearer`.
    token_type: String,
    /// Seconds.
    expires_in: u64,
    refresh_token: String,
    scope: String,
    /// Only when the client was not a known device of the account yet.
    device_token: Option<String>,
}

/// An access token without a refresh token (`/oauth/token`, `/session/token`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ClientTokenResponse {
    access_token: String,
    token_type: String,
    expires_in: u64,
    scope: String,
}

/// `POST /oauth/token`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OAuthTokenResponse {
    access_token: String,
    /// `Bearer`.
    token_type: String,
    /// Seconds.
    expires_in: u64,
    scope: String,
    /// The code and refresh grants only.
    refresh_token: Option<String>,
    /// The code grant with the `openid` scope only.
    id_token: Option<String>,
}

/// `GET /oauth/userinfo`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UserInfo {
    sub: String,
    /// With the `profile` scope.
    preferred_username: Option<String>,
    /// With the `email` scope, when the account has an address.
    email: Option<String>,
    /// With `email`: whether the address is proven.
    email_verified: Option<bool>,
}

/// `POST /oauth/introspect` (RFC 7662): `active` alone when false.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Introspection {
    active: bool,
    /// `Bearer` (an access token) or `refresh_token`.
    token_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    sub: Option<String>,
    /// With the `profile` scope.
    username: Option<String>,
    iss: Option<String>,
    aud: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
    sid: Option<String>,
}

/// `GET /auth/me`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Me {
    id: String,
    username: Option<String>,
    scope: String,
    /// When the account has an address.
    email: Option<String>,
    /// With `email`.
    email_verified: Option<bool>,
}

/// A "not before" entry of the feed.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NotBefore {
    /// A user's or a machine client's id.
    sub: String,
    at: i64,
}

/// One page of the revocation feed.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Feed {
    cursor: i64,
    revoked_sessions: Vec<String>,
    /// Tokens of `sub` with an `iat` before `at` are refused.
    not_before: Vec<NotBefore>,
    more: bool,
    /// Ids (`kid`) of signing keys added since the cursor: fetch the JWKS at once
    /// when one is not known.
    keys: Vec<String>,
}

/// A JWK Set (public keys only).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Jwks {
    keys: Vec<serde_json::Value>,
}

/// `{"status": "ok"}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Status {
    status: String,
}

/// `/readyz`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    status: String,
    /// `store`, `signing_key`, `event_log`: `ok`, or what is wrong.
    checks: serde_json::Value,
}

/// Issuer metadata (RFC 8414 / OpenID Connect Discovery).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Metadata {
    issuer: String,
    jwks_uri: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: String,
    introspection_endpoint: String,
    revocation_endpoint: String,
    end_session_endpoint: String,
    grant_types_supported: Vec<String>,
    response_types_supported: Vec<String>,
    response_modes_supported: Vec<String>,
    code_challenge_methods_supported: Vec<String>,
    token_endpoint_auth_methods_supported: Vec<String>,
    introspection_endpoint_auth_methods_supported: Vec<String>,
    revocation_endpoint_auth_methods_supported: Vec<String>,
    scopes_supported: Vec<String>,
    claims_supported: Vec<String>,
    subject_types_supported: Vec<String>,
    id_token_signing_alg_values_supported: Vec<String>,
    prompt_values_supported: Vec<String>,
    authorization_response_iss_parameter_supported: bool,
    request_parameter_supported: bool,
    request_uri_parameter_supported: bool,
    portcullis_revocation_feed: String,
}

/// A started session (`POST /session/login`, JSON).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SessionStarted {
    session: serde_json::Value,
    user: serde_json::Value,
    csrf_token: String,
}

/// A browser session in `/session/list`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SessionItem {
    id: String,
    label: String,
    device: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    current: bool,
}

/// An API login in `/session/list`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ApiLogin {
    id: String,
    label: String,
    device: String,
    created_at: i64,
    last_used_at: i64,
    current: bool,
}

/// `GET /session/list`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Logins {
    sessions: Vec<SessionItem>,
    api_logins: Vec<ApiLogin>,
}

/// The refusals of every route that authenticates a bearer token or a session cookie
/// (RFC 6750): listed once, named in each route's `responses(...)`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CredentialRefusals {
    /// A malformed `Authorization` header.
    #[response(status = 400, description = "invalid_request (RFC 6750)")]
    Malformed(ErrorBody),
    /// No credentials, or a bad token.
    #[response(status = 401, description = "unauthorized or invalid_token")]
    Unauthorized(ErrorBody),
}

/// The refusals of every route that reads a JSON body (`JsonBody`).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum JsonBodyRefusals {
    /// Larger than `max_body_bytes`.
    #[response(status = 413, description = "body over max_body_bytes")]
    TooLarge(ErrorBody),
    /// Not `application/json`.
    #[response(status = 415, description = "not JSON")]
    NotJson(ErrorBody),
}
