//! Signing keys: the active one signs, every key that may still have live tokens
//! verifies and is published in the JWKS. Keys live in the database so that every
//! instance signs with the same one and a restart keeps them; their private halves are
//! sealed there under the key-encryption key (`kek.rs`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use portcullis::jwt::random_id;
use portcullis::keys::{Algorithm, Jwk, Jwks, KeySet, SigningKey};
use portcullis_store::{Store, StoredKey};

use crate::kek::{self, Kek};

/// The keys as last loaded.
pub struct Keys {
    /// Signs new tokens.
    pub active: SigningKey,
    /// Verifies: the active key and retired ones whose tokens may still be alive.
    pub verifying: KeySet,
    /// The public JWKS document, rendered once.
    pub jwks_json: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("active", &self.active.kid())
            .field("verifying", &self.verifying.len())
            .finish()
    }
}

/// A shared, swappable view of the keys, and the KEK that opens them.
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Arc<ArcSwap<Keys>>,
    kek: Arc<Kek>,
}

impl KeyRing {
    /// The current keys.
    pub fn current(&self) -> Arc<Keys> {
        self.keys.load_full()
    }

    /// Loads the keys, creating a first one of `alg` when there is none.
    pub async fn load(
        store: &dyn Store,
        kek: Arc<Kek>,
        alg: Algorithm,
        keep_for: Duration,
        now: i64,
    ) -> anyhow::Result<KeyRing> {
        if store.signing_keys().await?.is_empty() {
            rotate(store, &kek, alg, now).await?;
        }
        let keys = build(store, &kek, keep_for, now).await?;
        Ok(KeyRing {
            keys: Arc::new(ArcSwap::from_pointee(keys)),
            kek,
        })
    }

    /// Reloads after a key change.
    pub async fn reload(
        &self,
        store: &dyn Store,
        keep_for: Duration,
        now: i64,
    ) -> anyhow::Result<()> {
        self.keys
            .store(Arc::new(build(store, &self.kek, keep_for, now).await?));
        Ok(())
    }
}

/// Finds the key-encryption key for `config`'s database and seals any key still stored
/// in plaintext (a database from before sealing). The second value is true when the
/// KEK was generated just now (the embedded default's first start).
pub async fn open_kek(
    store: &dyn Store,
    config: &crate::config::Config,
) -> anyhow::Result<(Arc<Kek>, bool)> {
    let stored = store.signing_keys().await?;
    let has_sealed = stored.iter().any(|k| kek::is_sealed(&k.private_jwk));
    let (kek, generated) = kek::resolve(&config.kek, &config.database_url, has_sealed)?;
    let plain = stored
        .iter()
        .filter(|k| !kek::is_sealed(&k.private_jwk))
        .map(|k| Ok((k.kid.clone(), kek.seal(&k.kid, &k.alg, &k.private_jwk)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !plain.is_empty() {
        store.replace_key_material(&plain).await?;
        tracing::info!(
            keys = plain.len(),
            "sealed signing keys that were stored in plaintext"
        );
    }
    Ok((Arc::new(kek), generated))
}

async fn build(store: &dyn Store, kek: &Kek, keep_for: Duration, now: i64) -> anyhow::Result<Keys> {
    let stored = store.signing_keys().await?;
    let mut active = None;
    let mut verifying = Vec::new();
    for key in &stored {
        // A retired key verifies until every token it signed has expired.
        let live = key
            .retired_at
            .is_none_or(|at| now - at <= keep_for.as_secs() as i64);
        if !live {
            continue;
        }
        let private = kek.open(&key.kid, &key.alg, &key.private_jwk)?;
        let signing = SigningKey::from_jwk(&Jwk::from_json(&private)?)
            .with_context(|| format!("signing key {}", key.kid))?;
        verifying.push(signing.verifying_key()?);
        if key.retired_at.is_none() && active.is_none() {
            active = Some(signing);
        }
    }
    let active = active.context("no active signing key: run `portcullis keys rotate`")?;
    let verifying = KeySet::new(verifying)?;
    let jwks: Jwks = verifying.to_public_jwks()?;
    Ok(Keys {
        active,
        verifying,
        jwks_json: jwks.to_json(),
    })
}

/// Makes a new key of `alg` the active one; the previous ones are retired (and keep
/// verifying until their tokens expire).
pub async fn rotate(
    store: &dyn Store,
    kek: &Kek,
    alg: Algorithm,
    now: i64,
) -> anyhow::Result<String> {
    let kid = random_id()?;
    let key = SigningKey::generate(alg, Some(kid.clone()))?;
    let private = zeroize::Zeroizing::new(key.to_jwk()?.to_json());
    store
        .add_signing_key(&StoredKey {
            kid: kid.clone(),
            alg: alg.as_str().to_owned(),
            private_jwk: kek.seal(&kid, alg.as_str(), &private)?,
            created_at: now,
            retired_at: None,
        })
        .await?;
    Ok(kid)
}

/// Moves every stored key to `new` (each opened with `old`), in one transaction.
pub async fn rewrap(store: &dyn Store, old: &Kek, new: &Kek) -> anyhow::Result<usize> {
    let moved = store
        .signing_keys()
        .await?
        .iter()
        .map(|k| {
            let private = old.open(&k.kid, &k.alg, &k.private_jwk)?;
            Ok((k.kid.clone(), new.seal(&k.kid, &k.alg, &private)?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    store.replace_key_material(&moved).await?;
    Ok(moved.len())
}
