//! How the server's failures become HTTP answers: the OAuth error shape
//! `{"error": …, "error_description": …}` everywhere.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis::rejection::{Refusal, Rejection};
use serde_json::json;

/// The realm in `WWW-Authenticate` challenges.
pub const REALM: &str = "portcullis";

/// A failed request.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `invalid_request`: the body or a parameter is wrong; the message says how.
    InvalidRequest(String),
    /// 409 `username_taken`.
    UsernameTaken,
    /// 401 `invalid_credentials`: the same for an unknown user and a wrong password.
    InvalidCredentials,
    /// 400 `invalid_grant`: a refresh token that is unknown, used, revoked or expired.
    InvalidGrant,
    /// 429 with `Retry-After`: too many login or signup attempts.
    Throttled {
        /// Seconds to wait.
        retry_after: i64,
    },
    /// 503 with `Retry-After`: password hashing is saturated.
    Busy,
    /// A bearer-token or session failure, answered per RFC 6750 (a refused cross-site
    /// request is 403 `access_denied`).
    Auth(Rejection),
    /// 401 `invalid_client` (RFC 6749 §5.2), with a `Basic` challenge: unknown client,
    /// wrong secret or disabled client, which look the same.
    InvalidClient,
    /// 400 `unsupported_grant_type` (RFC 6749 §5.2).
    UnsupportedGrantType,
    /// 400 `invalid_scope` (RFC 6749 §5.2): an empty scope, or one beyond what the
    /// client may get.
    InvalidScope,
    /// 403 `access_denied`: a machine client's token at a route for people (their
    /// sessions, their account).
    NotForClients,
    /// An OAuth 2.0 / OpenID Connect error of the token, introspection or revocation
    /// endpoint (RFC 6749 §5.2), 400 unless said otherwise, with a description that
    /// echoes nothing the client sent.
    OAuth {
        /// The error code (`invalid_grant`, `unauthorized_client`, …).
        error: &'static str,
        /// What a developer should read.
        description: &'static str,
    },
    /// 404 `not_found`.
    NotFound(&'static str),
    /// 400 `invalid_link`: a one-time token from a mail that is unknown, used, expired,
    /// replaced by a newer one, or for another purpose.
    InvalidLink,
    /// 409 `email_taken`: another account has verified this address.
    EmailTaken,
    /// 403 `wrong_password`: a signed-in person's current password did not match.
    WrongPassword,
    /// 413 `invalid_request`: the body is over `max_body_bytes`.
    TooLarge,
    /// 400 `invalid_mfa_token`: a second step's `mfa_token` that is unknown, used,
    /// expired, out of attempts, or overtaken by a password change or a revocation.
    InvalidMfaToken,
    /// 401 `invalid_code`: a second factor's code that is wrong or already used.
    InvalidCode,
    /// 401 `invalid_passkey`: a WebAuthn ceremony that is unknown, used, expired or
    /// another account's, or a credential that does not verify.
    PasskeyRefused,
    /// 403 `second_factor_locked`: too many wrong authenticator codes since the last
    /// successful second step; a recovery code still works.
    FactorLocked,
    /// 409 `conflict`: the state does not allow this (a factor already enrolled, none
    /// pending); the message says which.
    Conflict(&'static str),
    /// 415 `invalid_request`: a `Content-Type` other than JSON.
    UnsupportedMediaType(String),
    /// 500: anything unexpected; logged with its context, never shown.
    Unexpected(anyhow::Error),
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Unexpected(e)
    }
}

impl From<portcullis::keys::Error> for ApiError {
    fn from(e: portcullis::keys::Error) -> Self {
        ApiError::Unexpected(e.into())
    }
}

impl From<portcullis::session::Error> for ApiError {
    fn from(e: portcullis::session::Error) -> Self {
        ApiError::Unexpected(e.into())
    }
}

impl From<portcullis_store::Error> for ApiError {
    fn from(e: portcullis_store::Error) -> Self {
        ApiError::Unexpected(e.into())
    }
}

fn oauth(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl ApiError {
    /// The HTTP status of this failure: the one mapping, used by the JSON answers and
    /// the pages alike.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_)
            | ApiError::InvalidGrant
            | ApiError::UnsupportedGrantType
            | ApiError::InvalidScope
            | ApiError::OAuth { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotForClients => StatusCode::FORBIDDEN,
            ApiError::InvalidClient => StatusCode::UNAUTHORIZED,
            ApiError::UsernameTaken | ApiError::EmailTaken => StatusCode::CONFLICT,
            ApiError::InvalidLink => StatusCode::BAD_REQUEST,
            ApiError::WrongPassword => StatusCode::FORBIDDEN,
            ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Auth(rejection) => rejection.status(),
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidMfaToken => StatusCode::BAD_REQUEST,
            ApiError::InvalidCode => StatusCode::UNAUTHORIZED,
            ApiError::FactorLocked => StatusCode::FORBIDDEN,
            ApiError::PasskeyRefused => StatusCode::UNAUTHORIZED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What a person should read for this failure on a page: the one text of each
    /// failure for people (the JSON answers say it for programs).
    pub fn for_people(&self) -> String {
        match self {
            ApiError::InvalidCredentials => "The username or password is wrong.".into(),
            ApiError::UsernameTaken => "That username is taken. Choose another one.".into(),
            ApiError::InvalidLink => "This link does not work any more: it was used, it \
                                      expired, or a newer one was sent. Ask for a new one."
                .into(),
            ApiError::EmailTaken => "Another account already uses that email address.".into(),
            ApiError::WrongPassword => "Your current password is wrong.".into(),
            ApiError::InvalidRequest(message) | ApiError::UnsupportedMediaType(message) => {
                sentence(message)
            }
            ApiError::Throttled { retry_after } => {
                format!("Too many attempts. Try again in {retry_after} seconds.")
            }
            ApiError::Busy => "The server is busy. Try again in a moment.".into(),
            ApiError::Auth(Rejection::CrossSiteRequest) => {
                "This form was sent from another site, so it was refused.".into()
            }
            ApiError::Auth(rejection) if rejection.status() == StatusCode::UNAUTHORIZED => {
                "You need to sign in again.".into()
            }
            // A malformed credential, a missing scope, the session store away.
            ApiError::Auth(rejection) => rejection.body()["error_description"]
                .as_str()
                .map_or_else(|| "That request was refused.".into(), sentence),
            ApiError::NotFound(what) => sentence(what),
            ApiError::TooLarge => "What you sent is too large.".into(),
            ApiError::InvalidGrant => "That sign-in has ended. Sign in again.".into(),
            ApiError::InvalidMfaToken => "This sign-in took too long or was tried too many \
                                          times. Sign in again."
                .into(),
            ApiError::InvalidCode => "That code is wrong or was already used.".into(),
            ApiError::PasskeyRefused => {
                "The passkey's answer was refused. Try again, or use another way to sign in.".into()
            }
            ApiError::FactorLocked => "Too many wrong codes: codes from your authenticator app \
                                       are refused now. Sign in with a recovery code."
                .into(),
            ApiError::Conflict(what) => sentence(what),
            // The token endpoint's answers; no page leads there.
            ApiError::InvalidClient
            | ApiError::UnsupportedGrantType
            | ApiError::InvalidScope
            | ApiError::NotForClients
            | ApiError::OAuth { .. } => "This request is for programs, not for a browser.".into(),
            ApiError::Unexpected(_) => "Something went wrong on our side. Try again.".into(),
        }
    }

    /// Seconds a client should wait before trying again, for the answers that say so.
    pub fn retry_after(&self) -> Option<i64> {
        match self {
            ApiError::Throttled { retry_after } => Some((*retry_after).max(1)),
            ApiError::Busy => Some(1),
            _ => None,
        }
    }
}

/// A message as a sentence: its first letter capitalised, a full stop at the end.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>() + ".",
        None => String::new(),
    }
}

/// A failure's text for people ([`ApiError::for_people`]), carried on the JSON answer
/// of every failure that is not a refused credential (those carry the library's
/// `Refusal`), so that a layer turning answers into pages reads it by type.
#[derive(Clone, Debug)]
pub struct ForPeople(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after();
        let for_people = (!matches!(self, ApiError::Auth(_))).then(|| ForPeople(self.for_people()));
        let mut r = match self {
            ApiError::InvalidRequest(message) => oauth(status, "invalid_request", &message),
            ApiError::UsernameTaken => oauth(status, "username_taken", "that username is taken"),
            ApiError::InvalidCredentials => oauth(
                status,
                "invalid_credentials",
                "the username or password is wrong",
            ),
            ApiError::NotFound(what) => oauth(status, "not_found", what),
            ApiError::InvalidLink => oauth(
                status,
                "invalid_link",
                "the token is unknown, used, expired, replaced by a newer one, or for another purpose",
            ),
            ApiError::EmailTaken => oauth(
                status,
                "email_taken",
                "another account has verified this email address",
            ),
            ApiError::WrongPassword => {
                oauth(status, "wrong_password", "the current password is wrong")
            }
            ApiError::OAuth { error, description } => oauth(status, error, description),
            ApiError::InvalidClient => {
                let mut r = oauth(status, "invalid_client", "client authentication failed");
                let challenge = HeaderValue::from_static("Basic realm=\"portcullis\"");
                r.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
                r.extensions_mut()
                    .insert(Failure::Refused("invalid_client"));
                r
            }
            // RFC 6749 §5.2: the description echoes nothing the client sent.
            ApiError::UnsupportedGrantType => oauth(
                status,
                "unsupported_grant_type",
                "this grant_type is not supported here; the metadata document lists those that are",
            ),
            ApiError::InvalidScope => oauth(
                status,
                "invalid_scope",
                "the scope is empty or beyond what this client may get",
            ),
            ApiError::NotForClients => oauth(
                status,
                "access_denied",
                "this route is for people; a machine client's token cannot use it",
            ),
            ApiError::TooLarge => oauth(
                status,
                "invalid_request",
                "the request body is larger than max_body_bytes",
            ),
            ApiError::UnsupportedMediaType(message) => oauth(status, "invalid_request", &message),
            ApiError::InvalidMfaToken => oauth(
                status,
                "invalid_mfa_token",
                "the mfa_token is unknown, used, expired or out of attempts, or the account \
                 changed since the password was checked: sign in again",
            ),
            ApiError::InvalidCode => oauth(
                status,
                "invalid_code",
                "the code is wrong, or was already used",
            ),
            ApiError::Conflict(what) => oauth(status, "conflict", what),
            ApiError::PasskeyRefused => oauth(
                status,
                "invalid_passkey",
                "the ceremony is unknown, used, expired or another account's, or the credential \
                 does not verify",
            ),
            ApiError::FactorLocked => oauth(
                status,
                "second_factor_locked",
                "too many wrong authenticator codes: they are refused until a recovery code \
                 signs in, the app is set up again, or an operator resets the account's factors",
            ),
            ApiError::InvalidGrant => oauth(
                status,
                "invalid_grant",
                "the refresh token is invalid, expired or revoked",
            ),
            ApiError::Throttled { .. } => oauth(
                status,
                "too_many_requests",
                "too many attempts; try again after Retry-After seconds",
            ),
            ApiError::Busy => oauth(
                status,
                "temporarily_unavailable",
                "the server is busy; try again shortly",
            ),
            // The library's one rendering of a refusal, which carries the `Refusal`
            // that `finish` records.
            ApiError::Auth(rejection) => {
                portcullis::middleware::rejection_response(&rejection, REALM)
            }
            ApiError::Unexpected(e) => {
                let mut r = oauth(status, "server_error", "an unexpected error occurred");
                r.extensions_mut()
                    .insert(Failure::Unexpected(format!("{e:#}")));
                r
            }
        };
        if let Some(secs) = retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(for_people) = for_people {
            r.extensions_mut().insert(for_people);
        }
        r
    }
}

/// What went wrong behind an answer, for the log only: `into_response` (and the pages)
/// put it in the response's extensions, [`finish`] writes it once. Never sent.
#[derive(Clone, Debug)]
pub enum Failure {
    /// A client's own credentials refused (`invalid_client`), with the reason. A
    /// person's or a token's refused credential carries the library's `Refusal`
    /// instead, which [`finish`] records the same way.
    Refused(&'static str),
    /// Something unexpected, with its whole error chain.
    Unexpected(String),
}

/// The one layer every answer passes on its way out (one step on the hot path, not
/// two): failures are logged here, once (not in `IntoResponse`), and error answers
/// that are not ours yet get the JSON shape ([`json_errors`]).
pub fn finish(response: Response) -> Response {
    if response.status().is_success() {
        return response;
    }
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    // Every refusal of a credential, by the `AuthLayer` in front of a route or by the
    // route itself, carries its `Refusal`: counted and logged here, once.
    if let Some(Refusal(rejection)) = response.extensions().get::<Refusal>() {
        rejection.count();
        tracing::info!(
            reason = rejection.log_reason(),
            request_id,
            "authentication refused"
        );
    }
    match response.extensions().get::<Failure>() {
        Some(Failure::Refused(reason)) => {
            tracing::info!(reason, request_id, "authentication refused");
        }
        Some(Failure::Unexpected(error)) => {
            tracing::error!(error, request_id, "unexpected failure");
        }
        None => {}
    }
    json_errors(response)
}

/// Gives every error answer that is not ours yet (405 from the router, 408 from the
/// request timeout, 413 from the body limit, anything else a layer produces) the same
/// JSON shape as the rest. Pages (HTML) and our own JSON errors pass unchanged.
fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let typed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/html"));
    if typed {
        return response;
    }
    let (code, description) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this method is not allowed on this route; the Allow header lists those that are",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "request_timeout",
            "the request was not completed within request_timeout",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "invalid_request",
            "the request body is larger than max_body_bytes",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("invalid_request", "Content-Type must be application/json")
        }
        s if s.is_server_error() => ("server_error", "an unexpected error occurred"),
        _ => ("invalid_request", "the request was refused"),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut fresh = oauth(status, code, description);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CACHE_CONTROL {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The detail of a failure travels to the log layer in the extensions, and never
    /// in the body.
    #[tokio::test]
    async fn failures_reach_the_log_layer_not_the_client() {
        let r =
            ApiError::Unexpected(anyhow::anyhow!("db password wrong").context("opening the pool"))
                .into_response();
        match r.extensions().get::<Failure>() {
            Some(Failure::Unexpected(chain)) => {
                assert!(chain.contains("opening the pool") && chain.contains("db password wrong"));
            }
            other => panic!("{other:?}"),
        }
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("password"));
        let r = ApiError::Auth(Rejection::InvalidRequest("x")).into_response();
        assert!(matches!(
            r.extensions().get::<Refusal>(),
            Some(Refusal(Rejection::InvalidRequest("x")))
        ));
        assert!(
            ApiError::InvalidCredentials
                .into_response()
                .extensions()
                .get::<Failure>()
                .is_none()
        );
    }
}
