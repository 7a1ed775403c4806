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
    /// The credentials could not be checked now (a store is down): 503, try again.
    Unavailable,
    /// A state-changing request authenticated by a session cookie that does not come
    /// from the site's own pages (CSRF): 403.
    CrossSiteRequest,
    /// The credential is valid but its sign-in was not strong enough for the route
    /// (its `amr` lacks what the route demands): 401 with an RFC 9470 step-up
    /// challenge, `error="insufficient_user_authentication"`, naming the `acr_values`
    /// to ask the authorization server for (empty: none named).
    InsufficientUserAuthentication(String),
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
    /// A followed revocation feed has not been read for too long, and the policy is to
    /// fail closed: answered 503, as credentials that cannot be checked now.
    RevocationsUnknown,
    /// An API key that no store knows (answered with an `ApiKey` challenge and "the
    /// API key is invalid", not as a bearer token).
    UnknownCredential,
}

impl TokenFailure {
    /// A stable code for logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            TokenFailure::Verification(reason) => reason.code(),
            TokenFailure::SessionRevoked => "session_revoked",
            TokenFailure::IssuedBeforeLogout => "issued_before_logout",
            TokenFailure::UnknownCredential => "unknown_credential",
            TokenFailure::RevocationsUnknown => "revocations_unknown",
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
            Rejection::InsufficientUserAuthentication(_) => StatusCode::UNAUTHORIZED,
            Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::CrossSiteRequest => StatusCode::FORBIDDEN,
        }
    }

    /// Seconds to wait before trying again, for the refusals that are not the
    /// credential's fault (the session store away, a revocation feed unread for too
    /// long): a client should come back, not give up. A follower retries its reads at
    /// its poll interval and then on a backoff, so a few seconds is the right scale.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Rejection::Unavailable => Some(5),
            _ => None,
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
            // An API key is not a bearer token: its refusal names its own scheme.
            Rejection::InvalidToken(TokenFailure::UnknownCredential) => format!(
                "ApiKey realm=\"{realm}\", error=\"invalid_token\", \
                 error_description=\"the API key is invalid\""
            ),
            Rejection::InvalidToken(_) => format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", \
                 error_description=\"the access token is invalid\""
            ),
            Rejection::InsufficientScope(scope) => format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
                quote(scope)
            ),
            Rejection::InsufficientUserAuthentication(acr_values) if acr_values.is_empty() => {
                format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_user_authentication\", \
                     error_description=\"a stronger sign-in is required\""
                )
            }
            Rejection::InsufficientUserAuthentication(acr_values) => format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_user_authentication\", \
                 error_description=\"a stronger sign-in is required\", acr_values=\"{}\"",
                quote(acr_values)
            ),
            Rejection::Unavailable | Rejection::CrossSiteRequest => {
                format!("Bearer realm=\"{realm}\"")
            }
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
            Rejection::InvalidToken(TokenFailure::UnknownCredential) => json!({
                "error": "invalid_token",
                "error_description": "the API key is invalid",
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
            Rejection::InsufficientUserAuthentication(acr_values) => {
                let mut body = json!({
                    "error": "insufficient_user_authentication",
                    "error_description": "a stronger sign-in is required: sign in again with a second factor",
                });
                if !acr_values.is_empty() {
                    body["acr_values"] = acr_values.as_str().into();
                }
                body
            }
            Rejection::Unavailable => json!({
                "error": "temporarily_unavailable",
                "error_description": "credentials cannot be checked right now; try again",
            }),
            Rejection::CrossSiteRequest => json!({
                "error": "access_denied",
                "error_description": CROSS_SITE_REFUSED,
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
            Rejection::InsufficientUserAuthentication(_) => "insufficient_user_authentication",
            Rejection::Unavailable => "unavailable",
            Rejection::CrossSiteRequest => "cross_site_request",
        }
    }

    /// Records a refusal once: counts it ([`Rejection::count`]) and logs its reason
    /// (never the token). The [`crate::middleware::AuthLayer`] calls it for every
    /// refusal it answers or finds on an answer from behind it, unless the application
    /// records refusals itself (`AuthLayer::record_refusals(false)`), from the
    /// [`Refusal`] on the response.
    pub fn record(&self) {
        self.count();
        tracing::info!(reason = self.log_reason(), "request not authenticated");
    }

    /// Counts this rejection under its reason in the `portcullis_rejections_total`
    /// counter of the [`metrics`] facade (label `reason`, one of the stable codes; never
    /// anything from the request). A no-op unless the application installs a metrics
    /// recorder, such as a Prometheus exporter. The middleware calls it once per refusal.
    pub fn count(&self) {
        metrics::counter!("portcullis_rejections_total", "reason" => self.log_reason())
            .increment(1);
    }
}

/// Every refusal answer the library renders ([`crate::middleware::rejection_response`])
/// carries its [`Rejection`] in the response's extensions: an application renders
/// another representation (an HTML page) from the type, never from the JSON text, and
/// logs it where it logs its answers.
#[derive(Clone, Debug)]
pub struct Refusal(pub Rejection);

/// What a cross-site refusal says: what the request lacked and what to send. Nothing in
/// it depends on the request.
pub const CROSS_SITE_REFUSED: &str = "cross-site request refused: a state-changing request with the session cookie must come from this site's pages (an Origin header of this site) or carry the session's CSRF token in X-CSRF-Token";

/// Keeps a value safe inside a quoted-string: drops `"` and `\` and control characters.
fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// The `b64token` characters of RFC 6750 §2.1.
fn b64token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// True when `token` is a non-empty run of `b64token` characters (RFC 6750 §2.1).
pub fn is_b64token(token: &[u8]) -> bool {
    !token.is_empty() && token.iter().all(|&b| b64token(b))
}

/// Extracts a bearer token from the `Authorization` header values of a request
/// (RFC 6750 §2.1): exactly one header, scheme `Bearer` in any case, one space, a
/// token of `b64token` characters.
pub fn bearer_token<'a>(
    authorization: impl Iterator<Item = &'a [u8]>,
) -> Result<&'a str, Rejection> {
    let token = bearer_candidate(authorization)?;
    if !is_b64token(token) {
        return Err(malformed_bearer_token());
    }
    // All bytes are ASCII, so this cannot fail.
    std::str::from_utf8(token).map_err(|_| malformed_bearer_token())
}

/// The answer for a bearer token that is not `b64token` syntax: a malformed request.
pub(crate) fn malformed_bearer_token() -> Rejection {
    Rejection::InvalidRequest("malformed bearer token")
}

/// [`bearer_token`] without the character-class scan of the token, as bytes. For callers that
/// verify the token next: a token that verifies is base64url and dots, so it is
/// `b64token` syntax, and the scan (a few hundred instructions per request) is only
/// needed after a failure, to tell a malformed request (400) from a bad token (401).
pub(crate) fn bearer_candidate<'a>(
    mut authorization: impl Iterator<Item = &'a [u8]>,
) -> Result<&'a [u8], Rejection> {
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
    if token.is_empty() {
        return Err(malformed_bearer_token());
    }
    Ok(token)
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
    fn a_rejection_is_counted_under_its_reason() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            Rejection::InvalidToken(TokenFailure::Verification(Reason::Expired)).count();
            Rejection::InvalidToken(TokenFailure::Verification(Reason::Expired)).count();
            Rejection::MissingCredentials.count();
        });
        let mut counts: Vec<(String, String, u64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let reason = key.labels().find(|l| l.key() == "reason").unwrap();
                let DebugValue::Counter(n) = value else {
                    panic!("not a counter")
                };
                (key.name().to_owned(), reason.value().to_owned(), n)
            })
            .collect();
        counts.sort();
        assert_eq!(
            counts,
            [
                ("portcullis_rejections_total".into(), "expired".into(), 2),
                (
                    "portcullis_rejections_total".into(),
                    "missing_credentials".into(),
                    1
                ),
            ]
        );
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
