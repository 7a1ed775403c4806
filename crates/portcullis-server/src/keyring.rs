//! Signing keys and their lifecycle. A key is *next* from its creation until its
//! `activates_at` (published in the JWKS and verifying, not signing), then *current*
//! (signing) until the next key activates, then *retired* (published and verifying)
//! until every token it signed has expired, then *gone*. The states follow from the
//! stored times and the clock alone ([`lifecycle`]), so every instance moves keys on
//! time without an event or a restart; a key change (a new key) is an event. Keys live in the database so that every
//! instance signs with the same one and a restart keeps them; their private halves are
//! sealed there under the key-encryption key (`kek.rs`).

use portcullis::clock::secs;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use portcullis::jwt::random_id;
use portcullis::keys::{Algorithm, Jwk, Jwks, KeySet, SigningKey};
use portcullis_store::{KeyStore, StoredKey};

use crate::kek::{self, Kek, Keks};

/// Where a key is in its life at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Published and verifying; signs from its `activates_at`.
    Next,
    /// Signs new tokens.
    Current,
    /// Published and verifying until its last token has expired.
    Retired,
    /// No longer published or trusted.
    Gone,
}

impl KeyState {
    /// Lower-case name, for listings and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Current => "current",
            KeyState::Retired => "retired",
            KeyState::Gone => "gone",
        }
    }
}

/// The state of each key of `keys` (in activation order, as the store lists them) at
/// `now`, where a retired key stays trusted for `keep` seconds after it stopped
/// signing; and the next moment at which a state changes.
pub fn lifecycle(keys: &[StoredKey], now: i64, keep: i64) -> (Vec<KeyState>, Option<i64>) {
    // The last key whose time has come signs. (If none has, which only a clock set
    // back can cause, the first one signs rather than none.)
    let current = keys
        .iter()
        .rposition(|k| k.activates_at <= now)
        .unwrap_or(0);
    let mut next_change: Option<i64> = None;
    let mut at = |t: i64| next_change = Some(next_change.map_or(t, |n| n.min(t)));
    let states = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            if i == current {
                KeyState::Current
            } else if i > current {
                at(key.activates_at);
                KeyState::Next
            } else {
                // It stopped signing when the key after it started.
                let gone_at = keys[i + 1].activates_at + keep + 1;
                if now < gone_at {
                    at(gone_at);
                    KeyState::Retired
                } else {
                    KeyState::Gone
                }
            }
        })
        .collect();
    (states, next_change)
}

/// A key as listed (no secret).
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub alg: Algorithm,
    /// When it starts (or started) signing.
    pub activates_at: i64,
    /// Its state when the keys were loaded.
    pub state: KeyState,
}

/// The keys as last loaded.
pub struct Keys {
    /// Signs new tokens.
    pub active: SigningKey,
    /// Verifies: the next, current and retired keys.
    pub verifying: KeySet,
    /// The public JWKS document, rendered once.
    pub jwks_json: String,
    /// Every stored key, in activation order.
    pub listing: Vec<KeyInfo>,
    /// When a state changes next (the keys must be rebuilt then).
    pub next_change: Option<i64>,
}

impl Keys {
    /// The key that activates last: what an automatic rotation succeeds.
    pub fn newest(&self) -> Option<&KeyInfo> {
        self.listing.last()
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("active", &self.active.kid())
            .field("verifying", &self.verifying.len())
            .field("next_change", &self.next_change)
            .finish()
    }
}

/// A shared, swappable view of the keys, and the KEKs that open them.
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Arc<ArcSwap<Keys>>,
    keks: Arc<Keks>,
}

impl KeyRing {
    /// The current keys.
    pub fn current(&self) -> Arc<Keys> {
        self.keys.load_full()
    }

    /// The key-encryption keys this instance holds.
    pub fn keks(&self) -> &Keks {
        &self.keks
    }

    /// Loads the keys, creating a first one of `alg` when there is none.
    pub async fn load(
        store: &dyn KeyStore,
        keks: Arc<Keks>,
        alg: Algorithm,
        keep_for: Duration,
        now: i64,
    ) -> anyhow::Result<KeyRing> {
        if store.signing_keys().await?.is_empty() {
            // The very first key signs at once: nobody can have cached a JWKS yet.
            add_key(store, &keks, alg, now, now, None).await?;
        }
        let keys = build(store, &keks, keep_for, now).await?;
        Ok(KeyRing {
            keys: Arc::new(ArcSwap::from_pointee(keys)),
            keks,
        })
    }

    /// Reloads after a key change.
    pub async fn reload(
        &self,
        store: &dyn KeyStore,
        keep_for: Duration,
        now: i64,
    ) -> anyhow::Result<()> {
        self.keys
            .store(Arc::new(build(store, &self.keks, keep_for, now).await?));
        Ok(())
    }
}

/// Finds the key-encryption keys for `config`'s database (the configured one and any
/// previous one), seals any key still stored in plaintext (a database from before
/// sealing) and re-seals, under the KEK that opens it, any key sealed before KEK ids.
/// The second value is true when the KEK was generated just now (the embedded
/// default's first start).
pub async fn open_kek(
    store: &dyn KeyStore,
    config: &crate::config::Config,
) -> anyhow::Result<(Arc<Keks>, bool)> {
    let stored = store.signing_keys().await?;
    let has_sealed = stored.iter().any(|k| kek::is_sealed(&k.private_jwk));
    let (kek, generated) = kek::resolve(&config.kek, &config.database_url, has_sealed)?;
    let keks = Keks::new(kek, kek::resolve_previous(&config.kek)?);
    let mut moved = Vec::new();
    for k in &stored {
        let material = &k.private_jwk;
        if !kek::is_sealed(material) {
            let under = keks.for_sealing(stored.iter().map(|k| k.private_jwk.as_str()))?;
            moved.push((k.kid.clone(), under.seal(&k.kid, &k.alg, material)?));
        } else if kek::sealed_under(material).is_none() {
            let opener = keks.opener(&k.kid, &k.alg, material)?;
            let private = opener.open(&k.kid, &k.alg, material)?;
            moved.push((k.kid.clone(), opener.seal(&k.kid, &k.alg, &private)?));
        }
    }
    if !moved.is_empty() {
        store.replace_key_material(&moved, false).await?;
        tracing::info!(
            keys = moved.len(),
            "sealed signing keys stored in plaintext or without their key-encryption key's id"
        );
    }
    Ok((Arc::new(keks), generated))
}

async fn build(
    store: &dyn KeyStore,
    keks: &Keks,
    keep_for: Duration,
    now: i64,
) -> anyhow::Result<Keys> {
    let stored = store.signing_keys().await?;
    let (states, next_change) = lifecycle(&stored, now, secs(keep_for));
    let mut active = None;
    let mut verifying = Vec::new();
    let mut listing = Vec::with_capacity(stored.len());
    for (key, state) in stored.iter().zip(&states) {
        let alg: Algorithm = key
            .alg
            .parse()
            .map_err(|e| anyhow::anyhow!("signing key {}: {e}", key.kid))?;
        listing.push(KeyInfo {
            kid: key.kid.clone(),
            alg,
            activates_at: key.activates_at,
            state: *state,
        });
        if *state == KeyState::Gone {
            continue;
        }
        let private = keks.open(&key.kid, &key.alg, &key.private_jwk)?;
        let signing = SigningKey::from_jwk(&Jwk::from_json(&private)?)
            .with_context(|| format!("signing key {}", key.kid))?;
        verifying.push(signing.verifying_key()?);
        if *state == KeyState::Current {
            active = Some(signing);
        }
    }
    let active = active.context("no signing key: run `portcullis keys rotate --now`")?;
    let verifying = KeySet::new(verifying)?;
    let jwks: Jwks = verifying.to_public_jwks()?;
    Ok(Keys {
        active,
        verifying,
        jwks_json: jwks.to_json(),
        listing,
        next_change,
    })
}

/// Adds a new key of `alg` that starts signing at `activates_at` (published at once).
/// `predecessor` names the key an automatic rotation succeeds; `Ok(None)` when another
/// instance already added that successor.
pub async fn add_key(
    store: &dyn KeyStore,
    keks: &Keks,
    alg: Algorithm,
    now: i64,
    activates_at: i64,
    predecessor: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let kid = random_id()?;
    let key = SigningKey::generate(alg, Some(kid.clone()))?;
    let private = zeroize::Zeroizing::new(key.to_jwk()?.to_json());
    let stored_keys = store.signing_keys().await?;
    // Under the KEK the others are under, never another (the store checks it again in
    // the transaction that adds the key, against a rewrap racing this).
    let kek = keks.for_sealing(stored_keys.iter().map(|k| k.private_jwk.as_str()))?;
    // No two keys activate in the same second, so the order of activation, which
    // decides which key signs, has no ties. (A key for now still signs now, ahead of a
    // pending next key: `keys rotate --now` is for emergencies.)
    let taken: Vec<i64> = stored_keys.iter().map(|k| k.activates_at).collect();
    let mut activates_at = activates_at.max(now);
    while taken.contains(&activates_at) {
        activates_at += 1;
    }
    let stored = StoredKey {
        kid: kid.clone(),
        alg: alg.as_str().to_owned(),
        private_jwk: kek.seal(&kid, alg.as_str(), &private)?,
        created_at: now,
        activates_at,
        predecessor: predecessor.map(str::to_owned),
    };
    match store.add_signing_key(&stored, &kek.prefix()).await {
        Ok(()) => Ok(Some(kid)),
        Err(portcullis_store::Error::Conflict) if predecessor.is_some() => Ok(None),
        Err(portcullis_store::Error::Outdated(why)) => Err(anyhow::anyhow!(
            "{why}: a `keys rewrap` moved the signing keys while this key was made under \
             key-encryption key {}; nothing was added (try again)",
            kek.id()
        )),
        Err(e) => Err(e.into()),
    }
}

/// What `portcullis keys rotate` does on `config`'s database (`store`): a new key of
/// `alg`, published now and signing after `key_publication_delay` (or at once). Its
/// kid and the moment it signs from.
pub async fn rotate(
    store: &dyn KeyStore,
    config: &crate::config::Config,
    alg: Algorithm,
    at_once: bool,
    now: i64,
) -> anyhow::Result<(String, i64)> {
    let (keks, _) = open_kek(store, config).await?;
    let activates_at = if at_once {
        now
    } else {
        now + secs(config.key_publication_delay)
    };
    let kid = add_key(store, &keks, alg, now, activates_at, None)
        .await?
        .context("the key was not added")?;
    Ok((kid, activates_at))
}

/// Moves every stored key to `new` (each opened with whichever of `old` or `new` it
/// needs), in one transaction that covers every key: a key added meanwhile (by an
/// instance still sealing under the old KEK) makes it read again, up to five times.
pub async fn rewrap(store: &dyn KeyStore, old: &Keks, new: &Kek) -> anyhow::Result<usize> {
    for _ in 0..5 {
        let moved = store
            .signing_keys()
            .await?
            .iter()
            .map(|k| {
                let private = if kek::sealed_under(&k.private_jwk) == Some(new.id()) {
                    new.open(&k.kid, &k.alg, &k.private_jwk)?
                } else {
                    old.open(&k.kid, &k.alg, &k.private_jwk)?
                };
                Ok((k.kid.clone(), new.seal(&k.kid, &k.alg, &private)?))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        match store.replace_key_material(&moved, true).await {
            Ok(()) => return Ok(moved.len()),
            Err(portcullis_store::Error::Outdated(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("keys kept being added while they were re-sealed; try again")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, activates_at: i64) -> StoredKey {
        StoredKey {
            kid: kid.into(),
            alg: "EdDSA".into(),
            private_jwk: String::new(),
            created_at: activates_at - 330,
            activates_at,
            predecessor: None,
        }
    }

    #[test]
    fn keys_go_next_current_retired_gone_on_time() {
        use KeyState::*;
        let keys = [key("a", 1000), key("b", 2000), key("c", 3000)];
        let keep = 960;
        assert_eq!(
            lifecycle(&keys, 1500, keep),
            (vec![Current, Next, Next], Some(2000))
        );
        assert_eq!(
            lifecycle(&keys, 2000, keep),
            (vec![Retired, Current, Next], Some(2961))
        );
        assert_eq!(lifecycle(&keys, 2960, keep).0, vec![Retired, Current, Next]);
        assert_eq!(
            lifecycle(&keys, 2961, keep),
            (vec![Gone, Current, Next], Some(3000))
        );
        assert_eq!(
            lifecycle(&keys, 3000, keep),
            (vec![Gone, Retired, Current], Some(3961))
        );
        assert_eq!(
            lifecycle(&keys, 9999, keep),
            (vec![Gone, Gone, Current], None)
        );
        // A clock set before every key: the first signs rather than none.
        assert_eq!(lifecycle(&keys, 10, keep).0, vec![Current, Next, Next]);
    }
}
