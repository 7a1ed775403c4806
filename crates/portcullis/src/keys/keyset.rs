//! A set of verifying keys, looked up by `kid`.

use std::collections::HashMap;

use super::algorithm::Algorithm;
use super::error::{Error, Result};
use super::jwk::Jwks;
use super::verifying::VerifyingKey;

/// The keys a verifier trusts. May mix algorithm families: each key is bound to its
/// own algorithm, so mixing cannot cause confusion between them.
///
/// `kid`s are opaque map keys: never paths, URLs or queries. Two keys with one `kid`
/// are refused when the set is built.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    by_kid: HashMap<String, usize, foldhash::fast::RandomState>,
}

/// Why no key was found for a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Miss {
    /// No key has the token's `kid`, or the token has no `kid` and the set has zero or
    /// several keys of its algorithm.
    Unknown,
    /// The key with the token's `kid` is bound to another algorithm.
    AlgorithmMismatch(Algorithm),
}

impl KeySet {
    /// Builds a set; refuses duplicate `kid`s.
    pub fn new(keys: Vec<VerifyingKey>) -> Result<Self> {
        let mut by_kid = HashMap::with_capacity_and_hasher(keys.len(), Default::default());
        for (i, key) in keys.iter().enumerate() {
            if let Some(kid) = key.kid()
                && by_kid.insert(kid.to_owned(), i).is_some()
            {
                return Err(Error::DuplicateKid(kid.to_owned()));
            }
        }
        Ok(KeySet { keys, by_kid })
    }

    /// Builds a set from a JWK Set for verification. Keys marked for another use (by
    /// `use` or `key_ops`) are left out; any other bad key fails the whole set, so a
    /// typo never silently drops a key.
    pub fn from_jwks(jwks: &Jwks) -> Result<Self> {
        let mut keys = Vec::with_capacity(jwks.keys.len());
        for jwk in &jwks.keys {
            match VerifyingKey::from_jwk(jwk) {
                Ok(key) => keys.push(key),
                Err(Error::NotForVerification(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Self::new(keys)
    }

    /// Parses a JWK Set document and builds a set from it; see [`KeySet::from_jwks`].
    pub fn from_jwks_json(json: &str) -> Result<Self> {
        Self::from_jwks(&Jwks::from_json(json)?)
    }

    /// The public JWK Set of this key set. HMAC keys are secrets and are left out.
    pub fn to_public_jwks(&self) -> Result<Jwks> {
        let keys = self
            .keys
            .iter()
            .filter(|k| !k.is_secret())
            .map(VerifyingKey::to_jwk)
            .collect::<Result<Vec<_>>>()?;
        Ok(Jwks { keys })
    }

    /// The keys, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.keys.iter()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the set has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.by_kid.get(kid).map(|&i| &self.keys[i])
    }

    /// Selects the key for a token's header: by `kid` when it has one, otherwise the
    /// set's only key of the token's algorithm.
    pub(crate) fn select(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> std::result::Result<&VerifyingKey, Miss> {
        let key = match kid {
            Some(kid) => self.get(kid).ok_or(Miss::Unknown)?,
            None => {
                let mut of_alg = self.keys.iter().filter(|k| k.algorithm() == alg);
                match (of_alg.next(), of_alg.next()) {
                    (Some(only), None) => only,
                    _ => return Err(Miss::Unknown),
                }
            }
        };
        if key.algorithm() == alg {
            Ok(key)
        } else {
            Err(Miss::AlgorithmMismatch(key.algorithm()))
        }
    }
}
