//! Everything a request handler needs, shared.

use std::sync::Arc;

use portcullis::clock::Clock;
use portcullis::jwt::{Validation, Verifier};
use portcullis::password::PasswordHasher;
use portcullis::session::Sessions;
use portcullis::strategy::{Bearer, Chain};
use portcullis_store::Store;

use crate::config::Config;
use crate::keyring::KeyRing;
use crate::throttle::Throttle;
use portcullis::revocation::RevocationList;

/// Shared state: cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub hasher: PasswordHasher,
    pub keys: KeyRing,
    pub verifier: Arc<Verifier>,
    pub revocations: Arc<RevocationList>,
    /// The bearer check over `verifier` and `revocations`.
    pub bearer: Bearer,
    /// Cookie sessions, in the same store, through `session_cache`.
    pub sessions: Sessions,
    /// Live sessions and their users' names, in memory (`session_cache.rs`).
    pub session_cache: Arc<crate::session_cache::CachedSessions>,
    /// Bearer, then session: for routes that accept either. A bad bearer token is
    /// refused and never falls back to the cookie.
    pub chain: Chain,
    /// Which throttle counters logins and signups spend (the counters are in the store).
    pub throttle: Throttle,
    /// The passkeys' relying party (`passkeys.rs`), when the issuer's host is a domain.
    pub webauthn: Option<Arc<webauthn_rs::prelude::Webauthn>>,
    /// The upstream providers' clients built so far (`providers.rs`).
    pub upstreams: crate::providers::Upstreams,
    /// Where this instance is in the event log; `events::catch_up` alone moves it and
    /// alone changes `revocations` and `keys` after start.
    pub events: crate::revocation::Cursor,
    pub clock: Arc<dyn Clock>,
    /// The last `/readyz` answer and when it was made (reused for a second).
    pub readiness: std::sync::Mutex<Option<Readiness>>,
}

/// When a readiness answer was made, whether it was ready, and its body.
pub(crate) type Readiness = (std::time::Instant, bool, serde_json::Value);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.0.store.backend())
            .field("issuer", &self.0.config.issuer)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub(crate) fn now(&self) -> i64 {
        self.0.clock.now()
    }
}

/// The access-token policy the server applies to its own tokens.
pub(crate) fn validation(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Validation> {
    Ok(Validation::builder()
        .issuer(&config.issuer)
        .audience(&config.audience)
        .required_claims(["exp", "iat", "sub", "sid", "jti"])
        .max_lifetime(config.access_token_ttl)
        .clock(clock)
        .build()?)
}
