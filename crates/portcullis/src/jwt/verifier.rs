//! The verifier: a key set, a validation policy and a cache of verified tokens.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};

use super::claims::Claims;
use super::error::{Error, Reason};
use super::header::Header;
use super::jws;
use super::validation::Validation;
use crate::keys::KeySet;

/// Defaults to 10,000 tokens, weighing at most 24 MiB together.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;
const DEFAULT_CACHE_BYTES: u64 = 24 * 1024 * 1024;
/// What a cache entry costs in resident memory beyond the token's own bytes: the
/// parsed header and claims, the shared token, the cache's slots and the allocator's
/// share. Measured at about 1,390 bytes for tokens shaped like the server's
/// (`PORTCULLIS_CACHE_MEMORY=RS256 target/release/deps/ratios-*`: 2,060 bytes per
/// 677-byte RS256 token, 1,808 per 421-byte EdDSA one), so that the byte bound is
/// about the memory the cache takes.
pub const CACHE_ENTRY_OVERHEAD: u64 = 1_400;

/// A token that passed every check.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedToken {
    header: Header,
    claims: Claims,
}

impl VerifiedToken {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// A token with these claims, as if verified: for unit tests of what reads them.
    #[cfg(test)]
    pub(crate) fn for_tests(claims: Claims) -> VerifiedToken {
        VerifiedToken {
            header: Header {
                alg: crate::keys::Algorithm::EdDSA,
                kid: None,
                typ: None,
                cty: None,
            },
            claims,
        }
    }
}

struct Keys {
    set: KeySet,
    generation: u64,
}

#[derive(Clone)]
struct Entry {
    generation: u64,
    token: Arc<VerifiedToken>,
}

/// A cache key: the full bytes of a verified token, compared in full.
///
/// It hashes only the token's length and its last [`HASHED_TAIL`] bytes, which are
/// signature: hashing all of a token of a few hundred bytes was a third of the cost of
/// a cache hit. Collisions cannot be forced: only tokens that verified are stored, and
/// two verified tokens with the same signature tail would take the signing key to
/// make; a lookup with any other token only compares against the few entries of its
/// hash. The hasher is randomly seeded, as quick_cache's default is.
#[derive(PartialEq, Eq)]
struct TokenKey(Box<[u8]>);

/// A lookup by borrowed token bytes, hashed as [`TokenKey`] is.
struct TokenRef<'a>(&'a [u8]);

const HASHED_TAIL: usize = 24;

fn hash_token<H: Hasher>(token: &[u8], state: &mut H) {
    state.write_usize(token.len());
    state.write(&token[token.len().saturating_sub(HASHED_TAIL)..]);
}

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_token(&self.0, state);
    }
}

impl Hash for TokenRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_token(self.0, state);
    }
}

impl Equivalent<TokenKey> for TokenRef<'_> {
    fn equivalent(&self, key: &TokenKey) -> bool {
        *self.0 == *key.0
    }
}

#[derive(Clone)]
struct TokenWeight;

impl Weighter<TokenKey, Entry> for TokenWeight {
    fn weight(&self, key: &TokenKey, _: &Entry) -> u64 {
        key.0.len() as u64 + CACHE_ENTRY_OVERHEAD
    }
}

/// Verifies access tokens: format, header, key, signature, then every claim rule of its
/// [`Validation`].
///
/// Tokens that pass are remembered in a bounded cache keyed by the full token bytes
/// (never a hash alone): a repeat skips the signature check and the parsing, but its
/// time claims are checked against the clock again. Replacing the key set with
/// [`Verifier::set_keys`] empties the cache.
pub struct Verifier {
    keys: ArcSwap<Keys>,
    validation: Validation,
    cache: Option<Cache<TokenKey, Entry, TokenWeight>>,
    hits: AtomicU64,
    misses: AtomicU64,
    counting: bool,
}

/// How the verified-token cache is doing, for metrics (see [`Verifier::cache_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Verifications answered from the cache.
    pub hits: u64,
    /// Verifications that checked a signature (and then filled the cache if they passed).
    pub misses: u64,
    /// Tokens held now.
    pub entries: u64,
    /// Their weight now, in bytes (token bytes plus a fixed overhead each).
    pub bytes: u64,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.load().set)
            .field("validation", &self.validation)
            .field("cache", &self.cache.as_ref().map(|c| c.len()))
            .finish()
    }
}

impl Verifier {
    /// A verifier with the default cache.
    pub fn new(keys: KeySet, validation: Validation) -> Self {
        Verifier {
            keys: ArcSwap::from_pointee(Keys {
                set: keys,
                generation: 0,
            }),
            validation,
            cache: Some(Cache::with_weighter(
                DEFAULT_CACHE_ENTRIES,
                DEFAULT_CACHE_BYTES,
                TokenWeight,
            )),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            counting: false,
        }
    }

    /// Counts the cache's hits and misses (for [`Verifier::cache_stats`]). Off by
    /// default: two shared counters on every verification cost a little under load,
    /// so only a service that exports them pays for them.
    #[must_use]
    pub fn with_cache_stats(mut self) -> Self {
        self.counting = true;
        self
    }

    /// The cache's counters since the verifier was made; `None` when the cache is off
    /// or [`Verifier::with_cache_stats`] was not asked for.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        if !self.counting {
            return None;
        }
        self.cache.as_ref().map(|cache| CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: cache.len() as u64,
            bytes: cache.weight(),
        })
    }

    /// Sets the cache size: at most `entries` tokens and `bytes` of token data. Zero
    /// entries turns the cache off.
    #[must_use]
    pub fn with_cache(mut self, entries: usize, bytes: u64) -> Self {
        self.cache = (entries > 0).then(|| Cache::with_weighter(entries, bytes, TokenWeight));
        self
    }

    /// The policy.
    pub fn validation(&self) -> &Validation {
        &self.validation
    }

    /// Replaces the key set and empties the cache, so no token is accepted on the
    /// strength of a key that is gone.
    pub fn set_keys(&self, keys: KeySet) {
        let generation = self.keys.load().generation + 1;
        self.keys.store(Arc::new(Keys {
            set: keys,
            generation,
        }));
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    /// A snapshot of the current key set.
    pub fn with_keys<R>(&self, f: impl FnOnce(&KeySet) -> R) -> R {
        f(&self.keys.load().set)
    }

    /// Verifies a token.
    pub fn verify(&self, token: &str) -> Result<Arc<VerifiedToken>, Error> {
        self.verify_bytes(token.as_bytes())
    }

    /// Verifies a token given as bytes, as it comes in a header value (which need not
    /// be UTF-8: anything but base64url and dots fails as malformed).
    pub fn verify_bytes(&self, bytes: &[u8]) -> Result<Arc<VerifiedToken>, Error> {
        if bytes.len() > self.validation.max_token_size() {
            return Err(jws::too_large(
                bytes.len(),
                self.validation.max_token_size(),
            ));
        }
        let keys = self.keys.load();
        if let Some(cache) = &self.cache
            && let Some(hit) = cache.get(&TokenRef(bytes))
            && hit.generation == keys.generation
        {
            if self.counting {
                self.hits.fetch_add(1, Ordering::Relaxed);
            }
            let now = self.validation.clock().now();
            self.validation.check_time(&hit.token.claims, now)?;
            return Ok(hit.token);
        }
        if self.counting && self.cache.is_some() {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        let verified = Arc::new(self.verify_with(&keys.set, bytes)?);
        if let Some(cache) = &self.cache {
            cache.insert(
                TokenKey(bytes.into()),
                Entry {
                    generation: keys.generation,
                    token: verified.clone(),
                },
            );
        }
        Ok(verified)
    }

    /// Verifies a token without consulting or filling the cache.
    pub fn verify_uncached(&self, token: &str) -> Result<VerifiedToken, Error> {
        self.verify_with(&self.keys.load().set, token.as_bytes())
    }

    fn verify_with(&self, keys: &KeySet, token: &[u8]) -> Result<VerifiedToken, Error> {
        let parts = jws::split(token, self.validation.max_token_size())?;
        let (header, _key) = jws::verify_parts(&parts, keys)?;
        let mut stack = [0u8; 1024];
        let mut heap = Vec::new();
        let payload = jws::decode_segment(parts.payload, &mut stack, &mut heap)
            .ok_or_else(|| Error::new(Reason::Malformed, "payload is not strict base64url"))?;
        let claims = Claims::parse(payload)?;
        self.validation.check_typ(header.typ.as_deref())?;
        self.validation.check_claims(&claims)?;
        Ok(VerifiedToken { header, claims })
    }
}
