//! The verifier: a key set, a validation policy and a cache of verified tokens.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwap, ArcSwapOption};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::claims::{Claims, OtherClaims};
use super::error::{Error, Reason};
use super::header::Header;
use super::jws;
use super::validation::Validation;
use crate::keys::KeySet;

/// Defaults to 10,000 tokens, weighing at most 24 MiB together.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;
const DEFAULT_CACHE_BYTES: u64 = 24 * 1024 * 1024;
/// What a cache entry costs in resident memory beyond its claims' JSON: the parsed
/// claims' structure and allocations, the digest it is found by, the cache's slot and
/// the allocator's share (the header is shared by the entries of one key). Each entry
/// weighs this plus the length of its decoded claims, so that the byte bound is about
/// the memory the cache takes. Measured: 980–984 bytes an entry for an 814-byte RS256
/// token shaped like the server's, whose claims are about 290 bytes
/// (`PORTCULLIS_CACHE_MEMORY=RS256 target/release/deps/ratios-*`, docs/BENCHMARKS.md);
/// rounded up, for tokens with more claims than the server's.
pub const CACHE_ENTRY_OVERHEAD: u64 = 750;

/// A token that passed every check.
///
/// The verifier's cache keeps these for as long as it keeps the token, so a token is
/// kept compact: the registered claims typed, the others in a sorted slice. The
/// `Map` of [`Claims::extra`] is built only when [`VerifiedToken::claims`] is first
/// asked of a token (then kept with it); the readers of one claim
/// ([`VerifiedToken::claim`], [`VerifiedToken::registered_claims`]) never build it.
#[derive(Clone)]
pub struct VerifiedToken {
    // Shared by every token of the same header (most of an issuer's tokens): a
    // cached entry does not keep its own copy of the key id and type.
    header: Arc<Header>,
    // The registered claims; `extra` is always empty here.
    registered: Claims,
    others: OtherClaims,
    // Every claim, built on the first `claims()`.
    full: OnceLock<Box<Claims>>,
}

impl VerifiedToken {
    fn new(header: Arc<Header>, registered: Claims, others: OtherClaims) -> VerifiedToken {
        VerifiedToken {
            header,
            registered,
            others,
            full: OnceLock::new(),
        }
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Every claim: the registered ones typed, the others in [`Claims::extra`].
    ///
    /// The first call on a token builds the map of its other claims, which the token
    /// then keeps beside a copy of the registered ones: a cached token asked for its
    /// claims holds several hundred bytes more than its weight in the cache counts
    /// (the byte bound's floor of `bytes / entries` per entry, 2.5 KB by default,
    /// still covers it for tokens of the usual size). A reader of a few claims spares
    /// that with [`VerifiedToken::registered_claims`] and [`VerifiedToken::claim`].
    pub fn claims(&self) -> &Claims {
        self.full
            .get_or_init(|| Box::new(self.registered.clone().with_others(&self.others)))
    }

    /// The registered claims alone (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`,
    /// `sid`, `scope`): its `extra` is empty whatever the token carries, so reading
    /// them builds nothing. The others are [`VerifiedToken::claim`]'s.
    pub fn registered_claims(&self) -> &Claims {
        &self.registered
    }

    /// A claim outside the registered ones, by name (what `claims().extra.get(name)`
    /// gives, without building the map). `None` for a registered name: those are
    /// [`VerifiedToken::registered_claims`]'s fields.
    pub fn claim(&self, name: &str) -> Option<&serde_json::Value> {
        self.others.get(name)
    }

    /// The claims as one JSON object, written from the compact form (the same
    /// members `claims()` serializes to, in the same order).
    pub(crate) fn claims_json(&self) -> Vec<u8> {
        serde_json::to_vec(&AllClaims(self)).unwrap_or_default()
    }

    /// A token with these claims, as if verified: for unit tests of what reads them.
    #[cfg(test)]
    pub(crate) fn for_tests(claims: Claims) -> VerifiedToken {
        let bytes = serde_json::to_vec(&claims).unwrap();
        let (registered, others) = Claims::parse_split(&bytes).unwrap();
        VerifiedToken::new(
            Arc::new(Header {
                alg: crate::keys::Algorithm::EdDSA,
                kid: None,
                typ: None,
                cty: None,
            }),
            registered,
            others,
        )
    }
}

impl PartialEq for VerifiedToken {
    fn eq(&self, other: &Self) -> bool {
        self.header == other.header
            && self.registered == other.registered
            && self.others == other.others
    }
}

impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("header", &self.header)
            .field("claims", &AllClaims(self))
            .finish()
    }
}

/// Every claim of a token, serialized or shown as one object without building the map.
struct AllClaims<'a>(&'a VerifiedToken);

impl serde::Serialize for AllClaims<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let token = self.0;
        // The members `Claims` serializes, in its order (a unit test holds the two
        // together): the registered ones present, then the others.
        let r = &token.registered;
        let mut map = serializer.serialize_map(None)?;
        let strings = [("iss", &r.iss), ("sub", &r.sub)];
        for (name, value) in strings {
            if let Some(value) = value {
                map.serialize_entry(name, value)?;
            }
        }
        if let Some(aud) = &r.aud {
            map.serialize_entry("aud", aud)?;
        }
        for (name, value) in [("exp", r.exp), ("nbf", r.nbf), ("iat", r.iat)] {
            if let Some(value) = value {
                map.serialize_entry(name, &value)?;
            }
        }
        for (name, value) in [("jti", &r.jti), ("sid", &r.sid), ("scope", &r.scope)] {
            if let Some(value) = value {
                map.serialize_entry(name, value)?;
            }
        }
        for (name, value) in token.others.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl fmt::Debug for AllClaims<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self.0;
        let mut map = f.debug_map();
        map.entry(&"registered", &token.registered);
        for (name, value) in token.others.iter() {
            map.entry(&name, value);
        }
        map.finish()
    }
}

struct Keys {
    set: KeySet,
    generation: u64,
}

#[derive(Clone)]
struct Entry {
    generation: u64,
    weight: u32,
    token: Arc<VerifiedToken>,
}

/// A cache key: a 128-bit keyed digest of a verified token's bytes ([`Digester`]).
///
/// The digest, not the token: an entry keeps 16 bytes where it kept the whole token
/// (about 730 bytes for an RS256 access token of the server's). A lookup digests the
/// presented bytes in full, so a token that differs from a cached one in any byte
/// (header, claims or signature) has another digest and misses, but for a chance
/// under 2^-105 per try against a full cache of 10,000 (see [`Digester`]). The hash
/// table's own hash is eight bytes of the digest, which no one can choose without the
/// key.
#[derive(Clone, Copy, PartialEq, Eq)]
struct TokenKey([u8; 16]);

/// Digests tokens for the cache: GMAC (AES-128-GCM sealing an empty message with the
/// token as associated data) under a random key made with the verifier, which never
/// leaves this process.
///
/// Why GMAC and not SHA-256: on every cached request the whole token is digested, and
/// for a 730-byte token SHA-256 took about 400 ns here (a cache hit took 90 ns before
/// it); GMAC takes about half that, most of it fixed setup. It is as safe for this
/// use: the tag is GHASH, a universal hash, under the secret key, masked by a
/// block of AES; two different tokens of at most ℓ 16-byte blocks get one tag with
/// probability at most (ℓ + 1) / 2^128 over the key (ℓ ≤ 4,096 at the largest size
/// cap a policy may set, 64 KiB: under 2^-115 per pair), and no tag is ever shown to
/// anyone: an attacker learns only whether a request was
/// answered, which it is for a token that verifies anyway. The fixed nonce is
/// deliberate: nonce reuse matters to GCM when its ciphertexts or tags are seen, and
/// here neither is. Should the primitive fail (it cannot for these inputs), the
/// digest is SHA-256's first 16 bytes: a miss, never a wrong hit.
struct Digester(Option<aws_lc_rs::aead::LessSafeKey>);

impl Digester {
    fn new() -> Digester {
        use aws_lc_rs::aead::{AES_128_GCM, LessSafeKey, UnboundKey};
        let mut secret = zeroize::Zeroizing::new([0u8; 16]);
        let key = aws_lc_rs::rand::fill(secret.as_mut_slice())
            .ok()
            .and_then(|()| UnboundKey::new(&AES_128_GCM, secret.as_slice()).ok())
            .map(LessSafeKey::new);
        Digester(key)
    }

    fn of(&self, token: &[u8]) -> TokenKey {
        use aws_lc_rs::aead::{Aad, Nonce};
        let mut out = [0u8; 16];
        let tag = self.0.as_ref().and_then(|key| {
            key.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0u8; 12]),
                Aad::from(token),
                &mut [],
            )
            .ok()
        });
        match tag {
            Some(tag) => out.copy_from_slice(tag.as_ref()),
            None => {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
                out.copy_from_slice(&digest.as_ref()[..16]);
            }
        }
        TokenKey(out)
    }
}

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_ne_bytes(head));
    }
}

/// An entry's weight: its estimated size, but never less than the byte bound's share
/// of one entry (`bytes / entries`).
///
/// The cache has one bound, on the sum of weights; its item count is only an
/// estimate for allocating. With every entry weighing at least `bytes / entries`, the
/// one bound keeps both: the sum of sizes is at most `bytes`, and the number of entries
/// at most `entries`. (Weighed by size alone, a cache of 10,000 entries and a byte bound
/// made for large tokens held 73,000 small ones.)
#[derive(Clone)]
struct TokenWeight {
    floor: u64,
}

impl Weighter<TokenKey, Entry> for TokenWeight {
    fn weight(&self, _: &TokenKey, entry: &Entry) -> u64 {
        u64::from(entry.weight).max(self.floor)
    }
}

/// A cache of at most `entries` tokens weighing at most `bytes` ([`TokenWeight`]).
fn token_cache(entries: usize, bytes: u64) -> Cache<TokenKey, Entry, TokenWeight> {
    let entries = entries.max(1);
    let floor = (bytes / entries as u64).max(1);
    Cache::with_weighter(
        entries,
        floor.saturating_mul(entries as u64),
        TokenWeight { floor },
    )
}

/// Verifies access tokens: format, header, key, signature, then every claim rule of its
/// [`Validation`].
///
/// Tokens that pass are remembered in a bounded cache keyed by a keyed 128-bit digest
/// of the full token bytes (never the token itself): a repeat skips the signature
/// check and the parsing, but its time claims are checked against the clock again.
/// Replacing the key set with [`Verifier::set_keys`] empties the cache.
pub struct Verifier {
    keys: ArcSwap<Keys>,
    validation: Validation,
    cache: Option<Cache<TokenKey, Entry, TokenWeight>>,
    hits: AtomicU64,
    misses: AtomicU64,
    counting: bool,
    // The header of the last token verified, shared with the next one that has the same.
    last_header: ArcSwapOption<Header>,
    digester: Digester,
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
    /// Their weight now, in bytes: each its decoded claims' length plus
    /// [`CACHE_ENTRY_OVERHEAD`], but at least the byte bound's share of one entry
    /// (`bytes / entries` of [`Verifier::with_cache`]), which is how one bound keeps
    /// both.
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
            cache: Some(token_cache(DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_BYTES)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            counting: false,
            last_header: ArcSwapOption::empty(),
            digester: Digester::new(),
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

    /// Sets the cache size: at most `entries` tokens, weighing at most `bytes` (an
    /// entry weighs its decoded claims' length plus [`CACHE_ENTRY_OVERHEAD`]). Zero
    /// entries turns the cache off.
    #[must_use]
    pub fn with_cache(mut self, entries: usize, bytes: u64) -> Self {
        self.cache = (entries > 0).then(|| token_cache(entries, bytes));
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
        let Some(cache) = &self.cache else {
            // Nothing is kept: no header to share.
            let (token, _) = self.verify_with(&keys.set, bytes)?;
            return Ok(Arc::new(token));
        };
        let key = self.digester.of(bytes);
        if let Some(hit) = cache.get(&key)
            && hit.generation == keys.generation
        {
            if self.counting {
                self.hits.fetch_add(1, Ordering::Relaxed);
            }
            let now = self.validation.clock().now();
            self.validation.check_time(&hit.token.registered, now)?;
            return Ok(hit.token);
        }
        if self.counting {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        let (token, claims_len) = self.verify_with(&keys.set, bytes)?;
        let verified = Arc::new(self.share_header(token));
        let weight = CACHE_ENTRY_OVERHEAD.saturating_add(claims_len as u64);
        cache.insert(
            key,
            Entry {
                generation: keys.generation,
                weight: u32::try_from(weight).unwrap_or(u32::MAX),
                token: verified.clone(),
            },
        );
        Ok(verified)
    }

    /// The token with the header of the last one verified when it is the same, so
    /// that cached tokens of one key share one header.
    fn share_header(&self, token: VerifiedToken) -> VerifiedToken {
        let last = self.last_header.load();
        match last.as_ref() {
            Some(shared) if **shared == *token.header => VerifiedToken {
                header: shared.clone(),
                ..token
            },
            _ => {
                self.last_header.store(Some(token.header.clone()));
                token
            }
        }
    }

    /// Verifies a token without consulting or filling the cache.
    pub fn verify_uncached(&self, token: &str) -> Result<VerifiedToken, Error> {
        self.verify_with(&self.keys.load().set, token.as_bytes())
            .map(|(token, _)| token)
    }

    /// The verified token and the length of its decoded claims.
    fn verify_with(&self, keys: &KeySet, token: &[u8]) -> Result<(VerifiedToken, usize), Error> {
        let parts = jws::split(token, self.validation.max_token_size())?;
        let (header, _key) = jws::verify_parts(&parts, keys)?;
        let mut stack = [0u8; 1024];
        let mut heap = Vec::new();
        let payload = jws::decode_segment(parts.payload, &mut stack, &mut heap)
            .ok_or_else(|| Error::new(Reason::Malformed, "payload is not strict base64url"))?;
        let (claims, others) = Claims::parse_split(payload)?;
        self.validation.check_typ(header.typ.as_deref())?;
        self.validation.check_claims(&claims, &others)?;
        let claims_len = payload.len();
        Ok((
            VerifiedToken::new(Arc::new(header), claims, others),
            claims_len,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON written from the compact form is what the full claims serialize to,
    /// member for member and in order (`Authenticated<C>` reads it).
    #[test]
    fn the_compact_form_writes_what_the_claims_serialize_to() {
        let every = Claims::parse(
            br#"{"iss":"i","sub":"s","aud":["a","b"],"exp":10,"nbf":1,"iat":2,"jti":"j","sid":"x","scope":"a b","zeta":[1,{"k":null}],"alpha":"v","mid":true}"#,
        )
        .unwrap();
        let few = Claims::parse(br#"{"sub":"s","aud":"a","exp":10}"#).unwrap();
        for claims in [every, few, Claims::default()] {
            let token = VerifiedToken::for_tests(claims.clone());
            assert_eq!(
                String::from_utf8(token.claims_json()).unwrap(),
                serde_json::to_string(&claims).unwrap()
            );
            assert_eq!(token.claims(), &claims);
            assert!(token.registered_claims().extra.is_empty());
        }
    }
}
