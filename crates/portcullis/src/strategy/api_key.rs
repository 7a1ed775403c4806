//! API keys: long random secrets sent in a header, stored only as their SHA-256.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use http::HeaderName;
use http::request::Parts;

use super::{Identity, Outcome, Strategy, StrategyFuture};
use crate::rejection::{Rejection, TokenFailure};

/// What a key grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Who the key authenticates as.
    pub subject: String,
    /// The scopes it grants.
    pub scopes: Vec<String>,
}

/// The future of an [`ApiKeyStore`] lookup.
pub type LookupFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<ApiKeyRecord>, ()>> + Send + 'a>>;

/// Where keys are looked up, by the SHA-256 of the key. `Err(())` means the store could
/// not answer (the request gets 503, not 401).
pub trait ApiKeyStore: Send + Sync + 'static {
    /// The record of the key with this hash, if any.
    fn lookup(&self, key_sha256: [u8; 32]) -> LookupFuture<'_>;
}

/// An in-memory [`ApiKeyStore`], for tests and small deployments.
#[derive(Debug, Default)]
pub struct MemoryApiKeys {
    keys: RwLock<HashMap<[u8; 32], ApiKeyRecord>>,
}

impl MemoryApiKeys {
    /// Stores a key (only its hash is kept).
    pub fn insert(&self, key: &str, record: ApiKeyRecord) {
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.insert(sha256(key), record);
    }
}

impl ApiKeyStore for MemoryApiKeys {
    fn lookup(&self, key_sha256: [u8; 32]) -> LookupFuture<'_> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = keys.get(&key_sha256).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }
}

fn sha256(key: &str) -> [u8; 32] {
    crate::opaque::sha256(key.as_bytes())
}

/// Authenticates a key in a header (default `x-api-key`). Skips requests without it;
/// rejects a malformed or unknown key.
#[derive(Clone)]
pub struct ApiKey {
    header: HeaderName,
    store: Arc<dyn ApiKeyStore>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// Longest accepted key, in bytes.
const MAX_KEY_BYTES: usize = 256;

impl ApiKey {
    /// Keys from `x-api-key`, looked up in `store`.
    pub fn new(store: Arc<dyn ApiKeyStore>) -> ApiKey {
        ApiKey {
            header: HeaderName::from_static("x-api-key"),
            store,
        }
    }

    /// Reads the key from another header.
    #[must_use]
    pub fn with_header(mut self, header: HeaderName) -> ApiKey {
        self.header = header;
        self
    }
}

impl Strategy for ApiKey {
    fn name(&self) -> &'static str {
        "api_key"
    }

    fn authenticate<'a>(&'a self, parts: &'a Parts) -> StrategyFuture<'a> {
        Box::pin(async move {
            let mut values = parts.headers.get_all(&self.header).iter();
            let Some(value) = values.next() else {
                return Outcome::Skip;
            };
            if values.next().is_some() {
                return Outcome::Reject(Rejection::InvalidRequest("more than one API key"));
            }
            let key = value.as_bytes();
            if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.iter().all(u8::is_ascii_graphic)
            {
                return Outcome::Reject(Rejection::InvalidRequest("malformed API key"));
            }
            // Graphic ASCII, so valid UTF-8.
            let key = String::from_utf8_lossy(key);
            match self.store.lookup(sha256(&key)).await {
                Ok(Some(record)) => {
                    Outcome::Authenticated(Identity::new(record.subject, record.scopes, "api_key"))
                }
                Ok(None) => {
                    Outcome::Reject(Rejection::InvalidToken(TokenFailure::UnknownCredential))
                }
                Err(()) => Outcome::Reject(Rejection::Unavailable),
            }
        })
    }
}
