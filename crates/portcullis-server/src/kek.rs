//! Private signing keys at rest: envelope encryption under a key-encryption key (KEK)
//! kept outside the database.
//!
//! Each private JWK is sealed with AES-256-GCM (aws-lc-rs) under the KEK, with a fresh
//! random nonce, and the key id and algorithm as authenticated data: a sealed key moved
//! to another row, or relabelled with another algorithm, fails to open. The stored text
//! is `enc:v2:` + the KEK's id + `:` + base64url(nonce ‖ ciphertext ‖ tag). The KEK id
//! (11 characters: the first 64 bits of SHA-256 over a label and the KEK) says which
//! KEK a value needs without revealing anything of it; `enc:v1:` values, sealed before
//! ids, still open and are re-sealed as `v2` at the next start.
//!
//! Every stored key is under one KEK. The store refuses a key sealed under any other
//! (`KeyStore::add_signing_key`), so an instance still running on a KEK that `keys
//! rewrap` has replaced cannot leave a key no other instance opens; it logs why and
//! keeps signing with the keys it holds. An instance may hold a second, previous KEK
//! (`previous_key_encryption_key`): it opens keys under either and seals under the one
//! the database's keys are under, so a rewrap needs no coordinated restart (see
//! docs/operations.md, "Changing the key-encryption key").
//!
//! Where the KEK comes from, first match wins:
//! 1. `PORTCULLIS_KEY_ENCRYPTION_KEY` (or `key_encryption_key` in the file): 32 bytes,
//!    base64url or standard base64;
//! 2. `key_encryption_key_file`: a file holding that text;
//! 3. for the embedded SQLite default only: `<database>.kek` beside the database,
//!    generated on first start with mode 0600 (and said so in the log).
//!
//! A database that already holds sealed keys never gets a new KEK silently: a missing
//! or wrong one stops the start with a message naming the settings.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

/// Sealed before KEK ids: `enc:v1:` + base64url(nonce ‖ ciphertext ‖ tag).
const PREFIX_V1: &str = "enc:v1:";
/// `enc:v2:` + KEK id + `:` + base64url(nonce ‖ ciphertext ‖ tag).
const PREFIX_V2: &str = "enc:v2:";

/// The key-encryption key. Never printed.
pub struct Kek {
    key: RandomizedNonceKey,
    id: String,
    /// The key that seals upstream sign-ins' flow cookies ([`Kek::flow_key`]).
    flow_key: Zeroizing<[u8; 32]>,
    /// Where it came from, for messages.
    pub source: String,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// True when a stored private key is sealed (not a plaintext JWK from before 0.2).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX_V1) || stored.starts_with(PREFIX_V2)
}

/// The id of the KEK a stored value was sealed under (`None`: plaintext, or sealed
/// before ids).
pub fn sealed_under(stored: &str) -> Option<&str> {
    stored
        .strip_prefix(PREFIX_V2)?
        .split_once(':')
        .map(|(id, _)| id)
}

fn aad(kid: &str, alg: &str) -> Vec<u8> {
    // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    let mut aad = Vec::with_capacity(kid.len() + alg.len() + 16);
    aad.extend_from_slice(&(kid.len() as u64).to_be_bytes());
    aad.extend_from_slice(kid.as_bytes());
    aad.extend_from_slice(alg.as_bytes());
    aad
}

impl Kek {
    /// A KEK from its 32 bytes.
    pub fn from_bytes(bytes: &[u8], source: impl Into<String>) -> anyhow::Result<Kek> {
        if bytes.len() != 32 {
            bail!("a key-encryption key is 32 bytes, got {}", bytes.len());
        }
        // An id that names the key without revealing it: a 256-bit key's hash, cut to
        // 64 bits (enough to tell a handful of KEKs apart, not meant to be unique
        // against an adversary: a wrong KEK still fails to open).
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(b"portcullis key-encryption key id\0");
        ctx.update(bytes);
        let id = URL_SAFE_NO_PAD.encode(&ctx.finish().as_ref()[..8]);
        // A key of its own for the flow cookies (HMAC-SHA-256 as a PRF, RFC 2104, under
        // a label no other use shares): the same on every instance, no new setting,
        // and nothing about the KEK learnt from it.
        let prf = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes);
        let tag = aws_lc_rs::hmac::sign(&prf, b"portcullis upstream sign-in flow cookie\0");
        let mut flow_key = Zeroizing::new([0u8; 32]);
        flow_key.copy_from_slice(tag.as_ref());
        Ok(Kek {
            flow_key,
            key: RandomizedNonceKey::new(&AES_256_GCM, bytes)
                .map_err(|_| anyhow!("unusable key-encryption key"))?,
            id,
            source: source.into(),
        })
    }

    /// Its id, as sealed values name it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key that seals the flow cookie of a sign-in through an upstream provider
    /// (derived from the KEK, so every instance has it).
    pub fn flow_key(&self) -> [u8; 32] {
        *self.flow_key
    }

    /// How every value sealed under this KEK begins.
    pub fn prefix(&self) -> String {
        format!("{PREFIX_V2}{}:", self.id)
    }

    /// A KEK from its text form (base64url or standard base64 of 32 bytes).
    pub fn from_text(text: &str, source: impl Into<String>) -> anyhow::Result<Kek> {
        let source = source.into();
        let text = text.trim();
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .or_else(|_| STANDARD.decode(text))
                .map_err(|_| anyhow!("{source} is not base64 of 32 bytes"))?,
        );
        Kek::from_bytes(&bytes, source)
    }

    /// A new random KEK, and its text form.
    pub fn generate(source: impl Into<String>) -> anyhow::Result<(Kek, Zeroizing<String>)> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut_slice()).map_err(|_| anyhow!("no randomness"))?;
        let text = Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_slice()));
        Ok((Kek::from_bytes(bytes.as_slice(), source)?, text))
    }

    /// Seals a private JWK for the row of `kid` and `alg`.
    pub fn seal(&self, kid: &str, alg: &str, private_jwk: &str) -> anyhow::Result<String> {
        let mut in_out = Zeroizing::new(private_jwk.as_bytes().to_vec());
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad(kid, alg)), &mut *in_out)
            .map_err(|_| anyhow!("sealing signing key {kid} failed"))?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&in_out);
        Ok(format!("{}{}", self.prefix(), URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens a sealed private JWK; the error says the KEK does not fit.
    pub fn open(&self, kid: &str, alg: &str, stored: &str) -> anyhow::Result<Zeroizing<String>> {
        let body = if let Some(under) = sealed_under(stored) {
            if under != self.id {
                bail!(
                    "signing key {kid} is sealed under key-encryption key {under}; the one from \
                     {} is {} (check PORTCULLIS_KEY_ENCRYPTION_KEY / key_encryption_key_file, \
                     and previous_key_encryption_key during a change of key)",
                    self.source,
                    self.id
                );
            }
            &stored[PREFIX_V2.len() + under.len() + 1..]
        } else {
            stored
                .strip_prefix(PREFIX_V1)
                .ok_or_else(|| anyhow!("signing key {kid} is not sealed"))?
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| anyhow!("signing key {kid}: the sealed text is damaged"))?;
        if bytes.len() < NONCE_LEN + 16 {
            bail!("signing key {kid}: the sealed text is damaged");
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| anyhow!("signing key {kid}: bad nonce"))?;
        let mut in_out = Zeroizing::new(sealed.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(kid, alg)), &mut in_out)
            .map_err(|_| {
                anyhow!(
                    "the key-encryption key from {} does not open signing key {kid}: it is not \
                     the key these signing keys were sealed with (check \
                     PORTCULLIS_KEY_ENCRYPTION_KEY / key_encryption_key_file)",
                    self.source
                )
            })?;
        Ok(Zeroizing::new(
            String::from_utf8(plain.to_vec()).context("signing key is not UTF-8")?,
        ))
    }
}

/// The key-encryption keys an instance holds: the configured one and, during a change
/// of key, the previous one (`previous_key_encryption_key`).
#[derive(Debug)]
pub struct Keks {
    current: Kek,
    previous: Option<Kek>,
}

impl Keks {
    /// The configured KEK, and the previous one if any.
    pub fn new(current: Kek, previous: Option<Kek>) -> Keks {
        Keks { current, previous }
    }

    /// The configured KEK.
    pub fn current(&self) -> &Kek {
        &self.current
    }

    /// The previous KEK, during a change of key.
    pub fn previous(&self) -> Option<&Kek> {
        self.previous.as_ref()
    }

    fn held(&self) -> impl Iterator<Item = &Kek> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// The held KEK with this id.
    pub fn by_id(&self, id: &str) -> Option<&Kek> {
        self.held().find(|k| k.id == id)
    }

    /// The held KEK that opens a stored value: the one it names, or (sealed before
    /// ids) whichever opens it.
    pub fn opener(&self, kid: &str, alg: &str, stored: &str) -> anyhow::Result<&Kek> {
        match sealed_under(stored) {
            Some(id) => self.by_id(id).ok_or_else(|| {
                anyhow!(
                    "signing key {kid} is sealed under key-encryption key {id}, which this \
                     instance does not hold (it holds {}): set PORTCULLIS_KEY_ENCRYPTION_KEY / \
                     key_encryption_key_file to it, or to the key it was moved to with its \
                     previous_key_encryption_key set to it",
                    self.ids()
                )
            }),
            None => {
                let mut first_error = None;
                for kek in self.held() {
                    match kek.open(kid, alg, stored) {
                        Ok(_) => return Ok(kek),
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                Err(first_error.unwrap_or_else(|| anyhow!("no key-encryption key")))
            }
        }
    }

    /// Opens a stored value with the held KEK it needs.
    pub fn open(&self, kid: &str, alg: &str, stored: &str) -> anyhow::Result<Zeroizing<String>> {
        self.opener(kid, alg, stored)?.open(kid, alg, stored)
    }

    /// The KEK to seal a new key under, given the stored keys' material: the one they
    /// are all under (which a rewrap may have made the previous one's successor), if
    /// this instance holds it; the configured one when none is sealed with an id yet.
    /// Never any other: a key under another KEK than its siblings' would be one that
    /// the instances moved on to the new KEK cannot open.
    pub fn for_sealing<'a>(
        &self,
        stored: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<&Kek> {
        let mut ids: Vec<&str> = stored.into_iter().filter_map(sealed_under).collect();
        ids.sort_unstable();
        ids.dedup();
        match ids.as_slice() {
            [] => Ok(&self.current),
            [id] => self.by_id(id).ok_or_else(|| {
                anyhow!(
                    "the signing keys are sealed under key-encryption key {id} (a `keys rewrap` \
                     moved them there); this instance holds {} and seals no new key under \
                     another: restart it with that key (the keys it holds keep signing)",
                    self.ids()
                )
            }),
            several => bail!(
                "the signing keys are sealed under several key-encryption keys ({}): run \
                 `portcullis keys rewrap` with previous_key_encryption_key set, to put them \
                 under one",
                several.join(", ")
            ),
        }
    }

    /// The held KEKs' ids, for messages.
    pub fn ids(&self) -> String {
        self.held().map(Kek::id).collect::<Vec<_>>().join(" and ")
    }
}

/// Where the KEK is configured.
#[derive(Clone, Default)]
pub struct KekSetting {
    /// `key_encryption_key` / `PORTCULLIS_KEY_ENCRYPTION_KEY`.
    pub inline: Option<Zeroizing<String>>,
    /// `key_encryption_key_file`.
    pub file: Option<PathBuf>,
    /// `previous_key_encryption_key`: during a change of key, the one being replaced.
    pub previous_inline: Option<Zeroizing<String>>,
    /// `previous_key_encryption_key_file`.
    pub previous_file: Option<PathBuf>,
}

impl fmt::Debug for KekSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KekSetting")
            .field("inline", &self.inline.as_ref().map(|_| "[redacted]"))
            .field("file", &self.file)
            .field(
                "previous_inline",
                &self.previous_inline.as_ref().map(|_| "[redacted]"),
            )
            .field("previous_file", &self.previous_file)
            .finish()
    }
}

/// The previous KEK, if one is configured.
pub fn resolve_previous(setting: &KekSetting) -> anyhow::Result<Option<Kek>> {
    if let Some(text) = &setting.previous_inline {
        return Ok(Some(Kek::from_text(
            text,
            "PORTCULLIS_PREVIOUS_KEY_ENCRYPTION_KEY / previous_key_encryption_key",
        )?));
    }
    if let Some(file) = &setting.previous_file {
        let text = Zeroizing::new(std::fs::read_to_string(file).with_context(|| {
            format!(
                "previous_key_encryption_key_file {}: cannot read it",
                file.display()
            )
        })?);
        warn_if_readable_by_others(file);
        return Ok(Some(Kek::from_text(
            &text,
            format!("previous_key_encryption_key_file {}", file.display()),
        )?));
    }
    Ok(None)
}

/// The SQLite database file a URL names, if it is a file.
pub fn sqlite_path(database_url: &str) -> Option<PathBuf> {
    let rest = database_url.strip_prefix("sqlite:")?;
    let rest = rest.trim_start_matches("//");
    let path = rest.split('?').next()?;
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

/// What a PostgreSQL start without a key-encryption key is told.
const NO_KEK_FOR_POSTGRES: &str = "no key-encryption key: with PostgreSQL, set PORTCULLIS_KEY_ENCRYPTION_KEY or \
     key_encryption_key_file (32 random bytes, base64; e.g. `openssl rand -base64 32`), \
     the same on every instance";

/// Checks, before the database is touched, that a key-encryption key can be had: a
/// PostgreSQL database has no folder to keep one beside it, so one must be configured
/// (a start refused for the lack of it used to have created every table first).
pub fn check_configured(setting: &KekSetting, database_url: &str) -> anyhow::Result<()> {
    let configured = setting.inline.is_some() || setting.file.is_some();
    if configured || sqlite_path(database_url).is_some() || database_url.contains(":memory:") {
        return Ok(());
    }
    bail!(NO_KEK_FOR_POSTGRES)
}

/// Finds the KEK. `has_sealed_keys` says whether the database already holds sealed
/// keys: then a missing KEK is an error, never a new one.
pub fn resolve(
    setting: &KekSetting,
    database_url: &str,
    has_sealed_keys: bool,
) -> anyhow::Result<(Kek, bool)> {
    if let Some(text) = &setting.inline {
        return Ok((
            Kek::from_text(text, "PORTCULLIS_KEY_ENCRYPTION_KEY / key_encryption_key")?,
            false,
        ));
    }
    if let Some(file) = &setting.file {
        let text = Zeroizing::new(std::fs::read_to_string(file).with_context(|| {
            format!("key_encryption_key_file {}: cannot read it", file.display())
        })?);
        warn_if_readable_by_others(file);
        return Ok((
            Kek::from_text(&text, format!("key_encryption_key_file {}", file.display()))?,
            false,
        ));
    }
    let Some(db) = sqlite_path(database_url) else {
        if database_url.contains(":memory:") {
            // A database that lives and dies with the process: so does its KEK.
            return Ok((
                Kek::generate("an in-memory key for an in-memory database")?.0,
                false,
            ));
        }
        bail!(NO_KEK_FOR_POSTGRES);
    };
    let path = beside(&db);
    if path.exists() {
        let text = Zeroizing::new(
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading the key-encryption key {}", path.display()))?,
        );
        warn_if_readable_by_others(&path);
        return Ok((
            Kek::from_text(&text, format!("the file {}", path.display()))?,
            false,
        ));
    }
    if has_sealed_keys {
        bail!(
            "the database holds encrypted signing keys but their key-encryption key {} is \
             missing: restore that file, or set PORTCULLIS_KEY_ENCRYPTION_KEY or \
             key_encryption_key_file to the key they were sealed with",
            path.display()
        );
    }
    let (kek, text) = Kek::generate(format!("the file {}", path.display()))?;
    write_private(&path, text.as_bytes())
        .with_context(|| format!("writing the key-encryption key {}", path.display()))?;
    Ok((kek, true))
}

/// Locks `<database>.lock` (created 0600 if missing): shared while a server uses the
/// database (several may), exclusive for `portcullis restore`, which must run alone.
/// The lock lasts as long as the returned file is open. Fails at once when the other
/// kind is held.
pub fn lock_database(db: &Path, exclusive: bool) -> std::io::Result<std::fs::File> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&path)?;
    let locked = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    locked.map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            format!("{} is locked", path.display()),
        ),
        std::fs::TryLockError::Error(e) => e,
    })?;
    Ok(file)
}

/// `<database>.kek`.
pub fn beside(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".kek");
    PathBuf::from(name)
}

/// Creates a file readable by its owner only (0600), failing if it exists.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Logs a warning when a file holding secrets can be read by group or others.
pub fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "a file holding secrets is readable by other users; chmod 600 it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_their_kek_kid_and_alg() {
        let (kek, _) = Kek::generate("test").unwrap();
        let sealed = kek
            .seal("k1", "EdDSA", r#"{"kty":"OKP","d":"secret"}"#)
            .unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("secret"));
        assert_eq!(
            kek.open("k1", "EdDSA", &sealed).unwrap().as_str(),
            r#"{"kty":"OKP","d":"secret"}"#
        );
        assert!(
            kek.open("k2", "EdDSA", &sealed).is_err(),
            "moved to another row"
        );
        assert!(kek.open("k1", "ES256", &sealed).is_err(), "relabelled");
        let (other, _) = Kek::generate("other").unwrap();
        let err = format!("{:#}", other.open("k1", "EdDSA", &sealed).unwrap_err());
        assert!(err.contains("PORTCULLIS_KEY_ENCRYPTION_KEY"), "{err}");
        // Two seals of one key differ (fresh nonces).
        assert_ne!(
            sealed,
            kek.seal("k1", "EdDSA", r#"{"kty":"OKP","d":"secret"}"#)
                .unwrap()
        );
    }

    #[test]
    fn values_name_their_kek_and_those_sealed_before_ids_still_open() {
        let (kek, _) = Kek::generate("test").unwrap();
        let (again, _) = Kek::generate("test").unwrap();
        assert_eq!(kek.id().len(), 11);
        assert_ne!(kek.id(), again.id());
        let sealed = kek.seal("k", "EdDSA", "secret").unwrap();
        assert_eq!(sealed_under(&sealed), Some(kek.id()));
        assert!(sealed.starts_with(&kek.prefix()));
        // The same value as an `enc:v1:` one (no id) still opens, with the right KEK.
        let v1 = format!("{PREFIX_V1}{}", &sealed[kek.prefix().len()..]);
        assert!(is_sealed(&v1) && sealed_under(&v1).is_none());
        assert_eq!(kek.open("k", "EdDSA", &v1).unwrap().as_str(), "secret");
        assert!(again.open("k", "EdDSA", &v1).is_err());
    }

    #[test]
    fn an_instance_seals_only_under_the_kek_the_stored_keys_are_under() {
        let (old, _) = Kek::generate("old").unwrap();
        let (new, _) = Kek::generate("new").unwrap();
        let (other, _) = Kek::generate("other").unwrap();
        let under_old = old.seal("k1", "EdDSA", "a").unwrap();
        let under_new = new.seal("k2", "EdDSA", "b").unwrap();
        let (old_id, new_id) = (old.id().to_owned(), new.id().to_owned());
        let transition = Keks::new(new, Some(old));
        // Before the rewrap the keys are under the old KEK: seal under it.
        assert_eq!(
            transition.for_sealing([under_old.as_str()]).unwrap().id(),
            old_id
        );
        // After it, under the new one; with nothing sealed yet, the configured one.
        assert_eq!(
            transition.for_sealing([under_new.as_str()]).unwrap().id(),
            new_id
        );
        assert_eq!(transition.for_sealing([]).unwrap().id(), new_id);
        // Keys under two KEKs, or under one not held: refused, with the way out.
        let err = transition
            .for_sealing([under_old.as_str(), under_new.as_str()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("several") && err.contains("rewrap"), "{err}");
        let alone = Keks::new(other, None);
        let err = alone
            .for_sealing([under_new.as_str()])
            .unwrap_err()
            .to_string();
        assert!(err.contains(&new_id) && err.contains("restart"), "{err}");
        // Opening picks the KEK a value names.
        assert_eq!(
            transition.open("k1", "EdDSA", &under_old).unwrap().as_str(),
            "a"
        );
        assert_eq!(
            transition.open("k2", "EdDSA", &under_new).unwrap().as_str(),
            "b"
        );
        let err = format!("{:#}", alone.open("k1", "EdDSA", &under_old).unwrap_err());
        assert!(err.contains("does not hold"), "{err}");
    }

    #[test]
    fn the_text_form_round_trips_and_bad_lengths_are_refused() {
        let (kek, text) = Kek::generate("a").unwrap();
        let again = Kek::from_text(&text, "b").unwrap();
        let sealed = kek.seal("k", "EdDSA", "x").unwrap();
        assert_eq!(again.open("k", "EdDSA", &sealed).unwrap().as_str(), "x");
        assert!(Kek::from_text("c2hvcnQ", "short").is_err());
        assert!(!format!("{kek:?}").contains(text.as_str()));
    }

    #[test]
    fn the_embedded_default_lives_beside_the_database_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let (first, generated) = resolve(&KekSetting::default(), &url, false).unwrap();
        assert!(generated);
        let path = dir.path().join("p.db.kek");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (again, generated) = resolve(&KekSetting::default(), &url, true).unwrap();
        assert!(!generated, "found, not made again");
        let sealed = first.seal("k", "EdDSA", "secret").unwrap();
        assert_eq!(
            again.open("k", "EdDSA", &sealed).unwrap().as_str(),
            "secret"
        );
        std::fs::remove_file(&path).unwrap();
        let err = format!(
            "{:#}",
            resolve(&KekSetting::default(), &url, true).unwrap_err()
        );
        assert!(
            err.contains("key_encryption_key_file") && err.contains("p.db.kek"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            resolve(&KekSetting::default(), "postgres://db/x", false).unwrap_err()
        );
        assert!(err.contains("PORTCULLIS_KEY_ENCRYPTION_KEY"), "{err}");
    }
}
