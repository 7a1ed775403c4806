//! Signing keys: the active one signs, every key that may still have live tokens
//! verifies and is published in the JWKS. Keys live in the database so that every
//! instance signs with the same one and a restart keeps them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use portcullis::jwt::random_id;
use portcullis::keys::{Algorithm, Jwk, Jwks, KeySet, SigningKey};
use portcullis_store::{Store, StoredKey};

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

/// A shared, swappable view of the keys.
#[derive(Clone, Debug)]
pub struct KeyRing(Arc<ArcSwap<Keys>>);

impl KeyRing {
    /// The current keys.
    pub fn current(&self) -> Arc<Keys> {
        self.0.load_full()
    }

    /// Loads the keys, creating a first one of `alg` when there is none.
    pub async fn load(
        store: &dyn Store,
        alg: Algorithm,
        keep_for: Duration,
        now: i64,
    ) -> anyhow::Result<KeyRing> {
        if store.signing_keys().await?.is_empty() {
            rotate(store, alg, now).await?;
        }
        Ok(KeyRing(Arc::new(ArcSwap::from_pointee(
            build(store, keep_for, now).await?,
        ))))
    }

    /// Reloads after a key change.
    pub async fn reload(
        &self,
        store: &dyn Store,
        keep_for: Duration,
        now: i64,
    ) -> anyhow::Result<()> {
        self.0.store(Arc::new(build(store, keep_for, now).await?));
        Ok(())
    }
}

async fn build(store: &dyn Store, keep_for: Duration, now: i64) -> anyhow::Result<Keys> {
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
        let signing = SigningKey::from_jwk(&Jwk::from_json(&key.private_jwk)?)
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
pub async fn rotate(store: &dyn Store, alg: Algorithm, now: i64) -> anyhow::Result<String> {
    let kid = random_id()?;
    let key = SigningKey::generate(alg, Some(kid.clone()))?;
    store
        .add_signing_key(&StoredKey {
            kid: kid.clone(),
            alg: alg.as_str().to_owned(),
            private_jwk: key.to_jwk()?.to_json(),
            created_at: now,
            retired_at: None,
        })
        .await?;
    Ok(kid)
}
