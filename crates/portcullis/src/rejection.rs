//! The one place where an authentication failure becomes an HTTP answer (RFC 6750 §3).
//!
//! The answer never says which check failed: every token failure is the same
//! `invalid_token`. The precise reason travels beside it for the log and the metrics.

use http::StatusCode;
use serde_json::json;

use crate::jwt::Reason;

/// Why a request was not authenticated or not authorized.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No credentials at all.
    MissingCredentials,
    /// Credentials presented in a malformed way: two `Authorization` headers, a token
    /// in more than one place, a token in the query string, a bad scheme or value.
    InvalidRequest(&'static str),
    /// The token failed verification, for this reason.
    InvalidToken(TokenFailure),
    /// The token is valid but lacks a scope the route needs.
    InsufficientScope(String),
}

/// What was wrong with a token, for logs and metrics only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenFailure {
    /// Verification refused it.
    Verification(Reason),
    /// Its session (`sid`) has been revoked.
    SessionRevoked,
    /// It was issued before its user's "not before" time (logout everywhere).
    IssuedBeforeLogout,
}

impl TokenFailure {
    /// A stable code for logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            TokenFailure::Verification(reason) => reason.code(),
            TokenFailure::SessionRevoked => "session_revoked",
            TokenFailure::IssuedBeforeLogout => "issued_before_logout",
        }
    }
}

impl Rejection {
    /// The HTTP status. One exhaustive match: adding a variant forces a decision here.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::MissingCredentials => StatusCode::UNAUTHORIZED,
            Rejection::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Rejection::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Rejection::InsufficientScope(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The `WWW-Authenticate` challenge. With no credentials it carries no error code
    /// (RFC 6750 §3.1).
    pub fn challenge(&self, realm: &str) -> String {
        let realm = quote(realm);
        match self {
            Rejection::MissingCredentials => format!("Bearer realm=\"{realm}\""),
            Rejection::InvalidRequest(_) => {
                format!("Bearer realm=\"{realm}\", error=\"invalid_request\"")
            }
            Rejection::InvalidToken(_) => format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", \
                 error_description=\"the access token is invalid\""
            ),
            Rejection::InsufficientScope(scope) => format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
                quote(scope)
            ),
        }
    }

    /// The JSON body, in the OAuth error shape.
    pub fn body(&self) -> serde_json::Value {
        match self {
            Rejection::MissingCredentials => json!({
                "error": "unauthorized",
                "error_description": "authentication is required",
            }),
            Rejection::InvalidRequest(what) => json!({
                "error": "invalid_request",
                "error_description": what,
            }),
            Rejection::InvalidToken(_) => json!({
                "error": "invalid_token",
                "error_description": "the access token is invalid",
            }),
            Rejection::InsufficientScope(scope) => json!({
                "error": "insufficient_scope",
                "error_description": format!("this needs scope {scope}"),
                "scope": scope,
            }),
        }
    }

    /// The reason for logs: never the token, never shown to the client.
    pub fn log_reason(&self) -> &'static str {
        match self {
            Rejection::MissingCredentials => "missing_credentials",
            Rejection::InvalidRequest(_) => "invalid_request",
            Rejection::InvalidToken(failure) => failure.code(),
            Rejection::InsufficientScope(_) => "insufficient_scope",
        }
    }
}

/// Keeps a value safe inside a quoted-string: drops `"` and `\` and control characters.
fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// Extracts a bearer token from the `Authorization` header values of a request
/// (RFC 6750 §2.1): exactly one header, scheme `Bearer` in any case, one space, a
/// token of `b64token` characters.
pub fn bearer_token<'a>(
    mut authorization: impl Iterator<Item = &'a [u8]>,
) -> Result<&'a str, Rejection> {
    let Some(value) = authorization.next() else {
        return Err(Rejection::MissingCredentials);
    };
    if authorization.next().is_some() {
        return Err(Rejection::InvalidRequest(
            "more than one Authorization header",
        ));
    }
    if value.len() > 8 * 1024 + 7 {
        return Err(Rejection::InvalidRequest("Authorization header too long"));
    }
    let (scheme, token) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => {
            return Err(Rejection::InvalidRequest(
                "Authorization header without a token",
            ));
        }
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Rejection::InvalidRequest(
            "Authorization scheme must be Bearer",
        ));
    }
    let b64token = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b);
    if token.is_empty() || !token.iter().all(b64token) {
        return Err(Rejection::InvalidRequest("malformed bearer token"));
    }
    // All bytes are ASCII, so this cannot fail.
    std::str::from_utf8(token).map_err(|_| Rejection::InvalidRequest("malformed bearer token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(values: &[&str]) -> Result<String, Rejection> {
        bearer_token(values.iter().map(|v| v.as_bytes())).map(str::to_owned)
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(extract(&["Bearer abc.def.ghi"]).unwrap(), "abc.def.ghi");
        assert_eq!(extract(&["bEaReR abc"]).unwrap(), "abc");
    }

    #[test]
    fn malformed_authorization_is_invalid_request() {
        assert_eq!(extract(&[]), Err(Rejection::MissingCredentials));
        for bad in [
            &["Bearer a", "Bearer b"][..],
            &["Basic abc"],
            &["Bearer"],
            &["Bearer "],
            &["Bearer  a"],
            &["Bearer a b"],
        ] {
            assert!(
                matches!(extract(bad), Err(Rejection::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        assert_eq!(
            Rejection::MissingCredentials.challenge("api"),
            "Bearer realm=\"api\""
        );
        let invalid = Rejection::InvalidToken(TokenFailure::Verification(Reason::Expired));
        assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
        assert!(invalid.challenge("api").contains("error=\"invalid_token\""));
        assert!(!invalid.body().to_string().contains("expired"));
        let scope = Rejection::InsufficientScope("admin".into());
        assert_eq!(scope.status(), StatusCode::FORBIDDEN);
        assert!(scope.challenge("api").ends_with("scope=\"admin\""));
    }
}
