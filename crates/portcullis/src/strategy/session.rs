//! The cookie-session strategy: requests that carry a live session cookie.

use http::request::Parts;

use super::{Identity, Outcome, Strategy, StrategyFuture};
use crate::rejection::Rejection;
use crate::session::{Sessions, csrf};

/// Authenticates requests by their session cookie ([`crate::session`]). Skips
/// requests without one, or whose session is unknown, revoked or expired (so an
/// optional route treats them as anonymous); refuses a state-changing request that a
/// session authenticates but that fails the CSRF check (403); answers 503 when the
/// store is down.
///
/// Put it after [`super::Bearer`] in a chain: a request with a bad bearer token is
/// refused by the bearer strategy and never reaches the cookie. A request that reaches
/// it with a cookie *and* an `Authorization` header (a scheme no earlier strategy
/// accepted) is refused with 400 `invalid_request`: one request, one credential.
#[derive(Clone, Debug)]
pub struct Session {
    sessions: Sessions,
}

impl Session {
    /// A session strategy over `sessions`.
    pub fn new(sessions: Sessions) -> Session {
        Session { sessions }
    }
}

impl Strategy for Session {
    fn name(&self) -> &'static str {
        "session"
    }

    fn authenticate_now(&self, parts: &Parts) -> Option<Outcome> {
        // No cookie of ours: decided without touching the store.
        let Some(secret) = self.sessions.config().secret_from(&parts.headers) else {
            return Some(Outcome::Skip);
        };
        if let Some(refused) = two_credentials(parts) {
            return Some(refused);
        }
        // A live session the store holds in memory: decided here, with no boxed
        // future (the usual cookie request on the server, whose store caches). The
        // rest (a miss, a touch due, one that looks ended) waits in `authenticate`.
        let context = self.sessions.cached(secret)?;
        Some(self.conclude(parts, context))
    }

    fn authenticate<'a>(&'a self, parts: &'a Parts) -> StrategyFuture<'a> {
        Box::pin(async move {
            if let Some(refused) = two_credentials(parts) {
                return refused;
            }
            let context = match self.sessions.lookup(&parts.headers).await {
                Ok(Some(context)) => context,
                Ok(None) => return Outcome::Skip,
                Err(e) => {
                    tracing::warn!(error = %e, "session store unavailable");
                    return Outcome::Reject(Rejection::Unavailable);
                }
            };
            self.conclude(parts, context)
        })
    }
}

impl Session {
    /// A live session's answer: the CSRF checks, then the identity.
    fn conclude(&self, parts: &Parts, context: crate::session::SessionContext) -> Outcome {
        if let Err(rejection) = csrf::check_request(parts, self.sessions.config(), &context) {
            return Outcome::Reject(rejection);
        }
        Outcome::Authenticated(Identity::from_session(context, "session"))
    }
}

/// A cookie beside an Authorization header that no earlier strategy took (a scheme
/// this chain does not accept): credentials in two places, so the request is refused
/// rather than judged by the cookie alone.
fn two_credentials(parts: &Parts) -> Option<Outcome> {
    parts
        .headers
        .contains_key(http::header::AUTHORIZATION)
        .then_some(Outcome::Reject(Rejection::InvalidRequest(
            "credentials in more than one place: an Authorization header and a session cookie",
        )))
}
