//! Strategies: ways a request may prove who it is, tried in order (the Passport idea).
//!
//! A [`Strategy`] looks at the request parts and answers [`Outcome::Authenticated`],
//! [`Outcome::Skip`] (not my kind of credentials) or [`Outcome::Reject`] (my kind, but
//! invalid). A [`Chain`] tries its strategies in order; a rejection ends the chain, so a
//! bad bearer token never falls through to a weaker strategy.
//!
//! The guide that follows is docs/strategies.md.
#![doc = ""]
// The guide's examples use password hashing and sessions: without those features (a
// `cargo test -p portcullis` of the default features) it is left out of the page.
#![cfg_attr(
    all(feature = "password", feature = "sessions"),
    doc = include_str!("../../../../docs/strategies.md")
)]

mod api_key;
mod bearer;
#[cfg(feature = "sessions")]
mod session;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use api_key::{ApiKey, ApiKeyRecord, ApiKeyStore, LookupFuture, MemoryApiKeys};
pub use bearer::{Bearer, Issuers, RevocationCheck};
use http::request::Parts;
#[cfg(feature = "sessions")]
pub use session::Session;

use crate::jwt::{Claims, VerifiedToken};
use crate::rejection::Rejection;

/// Who a request is, as established by a strategy. Cheap to clone: for a token it is
/// the shared verified token and nothing else.
#[derive(Clone, Debug)]
pub struct Identity {
    credential: Credential,
    strategy: &'static str,
}

/// What established an [`Identity`]: a verified token (everything comes from its
/// claims), or something else that names a subject and its scopes (an API key, a
/// cookie session).
#[derive(Clone, Debug)]
enum Credential {
    Token(Arc<VerifiedToken>),
    // A cookie session: subject and scopes read from its record, nothing copied.
    #[cfg(feature = "sessions")]
    Session(Arc<crate::session::SessionContext>),
    Known {
        subject: String,
        scopes: Vec<String>,
        #[cfg(feature = "sessions")]
        session: Option<Arc<crate::session::SessionContext>>,
    },
}

/// Who is acting, by the rule of RFC 9068 §2.2: a token's `client_id` names the client
/// it was issued to, and its `sub` is that client itself when no person is involved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Actor<'a> {
    /// A subject acting for itself with its own credential: a person's cookie session
    /// or first-party token (one that names no client), or an API key.
    Person {
        /// The person (`sub`).
        subject: &'a str,
    },
    /// An application acting for a person: a token issued to `client_id` whose `sub`
    /// is the person who allowed it.
    Delegated {
        /// The person (`sub`).
        subject: &'a str,
        /// The application.
        client_id: &'a str,
    },
    /// A client acting as itself (the `client_credentials` grant): `sub` is the client.
    Client {
        /// The client (`client_id`, also the `sub`).
        client_id: &'a str,
    },
}

impl Identity {
    /// An identity established without a token (an API key, a session): its subject
    /// and scopes.
    pub fn new(
        subject: impl Into<String>,
        scopes: Vec<String>,
        strategy: &'static str,
    ) -> Identity {
        Identity {
            credential: Credential::Known {
                subject: subject.into(),
                scopes,
                #[cfg(feature = "sessions")]
                session: None,
            },
            strategy,
        }
    }

    /// The same identity, established by the cookie session `context`. An identity
    /// from a token has no session: it is returned unchanged.
    #[cfg(feature = "sessions")]
    #[must_use]
    pub fn with_session(mut self, context: crate::session::SessionContext) -> Identity {
        match &mut self.credential {
            Credential::Known { session, .. } => *session = Some(Arc::new(context)),
            Credential::Session(session) => *session = Arc::new(context),
            Credential::Token(_) => {}
        }
        self
    }

    /// The identity a cookie session establishes: the subject and scopes of its record.
    #[cfg(feature = "sessions")]
    pub(crate) fn from_session(
        context: crate::session::SessionContext,
        strategy: &'static str,
    ) -> Identity {
        Identity {
            credential: Credential::Session(Arc::new(context)),
            strategy,
        }
    }

    /// The session, when a cookie session authenticated the request: its id and the
    /// synchronizer token for forms.
    #[cfg(feature = "sessions")]
    pub fn session(&self) -> Option<&crate::session::SessionContext> {
        match &self.credential {
            Credential::Known { session, .. } => session.as_deref(),
            Credential::Session(session) => Some(session),
            Credential::Token(_) => None,
        }
    }

    /// The identity a verified token establishes: subject `sub`, scopes from `scope`.
    pub fn from_token(token: Arc<VerifiedToken>, strategy: &'static str) -> Identity {
        Identity {
            credential: Credential::Token(token),
            strategy,
        }
    }

    /// The subject (for tokens, `sub`).
    pub fn subject(&self) -> &str {
        match &self.credential {
            Credential::Known { subject, .. } => subject,
            #[cfg(feature = "sessions")]
            Credential::Session(session) => &session.record().subject,
            Credential::Token(t) => t.registered_claims().sub.as_deref().unwrap_or(""),
        }
    }

    /// Who is acting: a person for themselves, an application for a person, or a
    /// client as itself ([`Actor`]).
    pub fn actor(&self) -> Actor<'_> {
        let subject = self.subject();
        let Some(client_id) = self.token().and_then(|t| t.claim("client_id")) else {
            return Actor::Person { subject };
        };
        // A `client_id` that is not a string names no client we know, but says a
        // client is involved: never taken for the person acting alone.
        let client_id = client_id.as_str().unwrap_or_default();
        if client_id == subject {
            Actor::Client { client_id }
        } else {
            Actor::Delegated { subject, client_id }
        }
    }

    /// The granted scopes.
    pub fn scopes(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match &self.credential {
            Credential::Token(t) => Box::new(t.registered_claims().scopes()),
            #[cfg(feature = "sessions")]
            Credential::Session(session) => Box::new(session.record().scope.split_whitespace()),
            Credential::Known { scopes, .. } => Box::new(scopes.iter().map(String::as_str)),
        }
    }

    /// The name of the strategy that authenticated the request.
    pub fn strategy(&self) -> &'static str {
        self.strategy
    }

    /// True when the identity has `scope`. Allocates nothing (it runs on every request
    /// behind a scope rule).
    pub fn has_scope(&self, scope: &str) -> bool {
        match &self.credential {
            Credential::Token(t) => t.registered_claims().scopes().any(|s| s == scope),
            #[cfg(feature = "sessions")]
            Credential::Session(session) => session
                .record()
                .scope
                .split_whitespace()
                .any(|s| s == scope),
            Credential::Known { scopes, .. } => scopes.iter().any(|s| s == scope),
        }
    }

    /// How the sign-in behind this identity was authenticated: RFC 8176 `amr` values
    /// (`pwd`, `otp`, `hwk`, `mfa`, …), from the token's `amr` claim (strings only) or
    /// the session's record; none when neither says.
    pub fn amr(&self) -> Vec<&str> {
        match &self.credential {
            Credential::Token(t) => t
                .claim("amr")
                .and_then(serde_json::Value::as_array)
                .map(|values| {
                    values
                        .iter()
                        .filter_map(serde_json::Value::as_str)
                        .collect()
                })
                .unwrap_or_default(),
            #[cfg(feature = "sessions")]
            Credential::Known {
                session: Some(session),
                ..
            } => session.record().amr.split_ascii_whitespace().collect(),
            #[cfg(feature = "sessions")]
            Credential::Session(session) => session.record().amr.split_ascii_whitespace().collect(),
            Credential::Known { .. } => Vec::new(),
        }
    }

    /// True when the sign-in behind this identity was authenticated with `method` (an
    /// RFC 8176 `amr` value).
    pub fn has_amr(&self, method: &str) -> bool {
        self.amr().contains(&method)
    }

    /// The token's claims, if a token strategy authenticated the request (see
    /// [`VerifiedToken::claims`]: the first call builds the map of its other claims;
    /// [`Identity::token`] reads one claim without it).
    pub fn claims(&self) -> Option<&Claims> {
        self.token().map(|t| t.claims())
    }

    /// The verified token, if a token strategy authenticated the request.
    pub fn token(&self) -> Option<&VerifiedToken> {
        match &self.credential {
            Credential::Token(t) => Some(t),
            #[cfg(feature = "sessions")]
            Credential::Session(_) => None,
            Credential::Known { .. } => None,
        }
    }

    /// Passes when the identity has every one of `scopes`; otherwise the rejection to
    /// answer (403 `insufficient_scope` naming them).
    pub fn require_all(&self, scopes: &[&str]) -> Result<(), Rejection> {
        if scopes.iter().all(|s| self.has_scope(s)) {
            Ok(())
        } else {
            Err(Rejection::InsufficientScope(scopes.join(" ")))
        }
    }

    /// Passes when the identity has at least one of `scopes`.
    pub fn require_any(&self, scopes: &[&str]) -> Result<(), Rejection> {
        if scopes.iter().any(|s| self.has_scope(s)) {
            Ok(())
        } else {
            Err(Rejection::InsufficientScope(scopes.join(" ")))
        }
    }
}

/// What a strategy concluded.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// The request is this identity.
    Authenticated(Identity),
    /// Not this strategy's kind of credentials: try the next one.
    Skip,
    /// This strategy's kind of credentials, and they are bad: stop here.
    Reject(Rejection),
}

/// The future a strategy returns.
pub type StrategyFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// A way to authenticate a request. Object-safe, so chains can mix strategies.
pub trait Strategy: Send + Sync + 'static {
    /// A short name for logs and [`Identity::strategy`].
    fn name(&self) -> &'static str;

    /// Looks at the request and decides.
    fn authenticate<'a>(&'a self, parts: &'a Parts) -> StrategyFuture<'a>;

    /// Decides without waiting, when the strategy can (no I/O needed for this
    /// request); `None` makes the chain call [`Strategy::authenticate`]. Saves a boxed
    /// future per request for strategies like `Bearer` with local keys.
    fn authenticate_now(&self, _parts: &Parts) -> Option<Outcome> {
        None
    }
}

/// Strategies tried in order.
#[derive(Clone, Default)]
pub struct Chain {
    strategies: Vec<Arc<dyn Strategy>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.strategies.iter().map(|s| s.name()))
            .finish()
    }
}

impl Chain {
    /// An empty chain (authenticates nobody).
    pub fn new() -> Chain {
        Chain::default()
    }

    /// Appends a strategy.
    #[must_use]
    pub fn with(mut self, strategy: impl Strategy) -> Chain {
        self.strategies.push(Arc::new(strategy));
        self
    }

    /// Runs the chain without waiting, when every strategy it reaches can decide at
    /// once; `None` when one needs to wait (then use [`Chain::authenticate`]).
    pub fn authenticate_now(&self, parts: &Parts) -> Option<Result<Option<Identity>, Rejection>> {
        for strategy in &self.strategies {
            match strategy.authenticate_now(parts)? {
                Outcome::Authenticated(identity) => return Some(Ok(Some(identity))),
                Outcome::Reject(rejection) => return Some(Err(rejection)),
                Outcome::Skip => {}
            }
        }
        Some(Ok(None))
    }

    /// Runs the chain: the first authentication wins, the first rejection ends it,
    /// `Ok(None)` when every strategy skipped.
    pub async fn authenticate(&self, parts: &Parts) -> Result<Option<Identity>, Rejection> {
        for strategy in &self.strategies {
            let outcome = match strategy.authenticate_now(parts) {
                Some(outcome) => outcome,
                None => strategy.authenticate(parts).await,
            };
            match outcome {
                Outcome::Authenticated(identity) => return Ok(Some(identity)),
                Outcome::Reject(rejection) => return Err(rejection),
                Outcome::Skip => {}
            }
        }
        Ok(None)
    }
}
