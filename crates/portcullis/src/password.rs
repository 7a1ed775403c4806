//! Password hashing: Argon2id at the OWASP parameters, off the async runtime, with a
//! bounded number of concurrent hashes and a bounded wait queue.
//!
//! We use `argon2-rust`, a port of the reference implementation with runtime-selected
//! SIMD: it writes and reads the same PHC strings as the reference and the RustCrypto
//! `argon2` crate, and on this project's machines it hashes faster than the latter at
//! the same parameters (measured in `benches/password.rs`; figures in
//! docs/BENCHMARKS.md). Its output is checked against RustCrypto's in the tests below.

#[cfg(feature = "legacy-hashes")]
pub mod legacy;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2_rust::params::Memory;
use argon2_rust::{Algorithm, Argon2, Hasher, Params, Version};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Shortest accepted password, in bytes (NIST SP 800-63B §3.1.1.2).
pub const MIN_PASSWORD_BYTES: usize = 8;
/// Longest accepted password, in bytes. Longer ones are refused before hashing, never
/// truncated.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A password as typed: any Unicode, 8 to 1024 bytes, wiped from memory on drop and
/// never shown by `Debug`.
pub struct Password(Zeroizing<String>);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    /// Checks the length; the password is used exactly as given.
    pub fn new(password: String) -> Result<Password, PasswordError> {
        let password = Zeroizing::new(password);
        if password.len() < MIN_PASSWORD_BYTES {
            return Err(PasswordError::TooShort);
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        Ok(Password(password))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The password text. Keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB. Defaults to 19456 (19 MiB).
    pub memory_kib: u32,
    /// Passes. Defaults to 2.
    pub iterations: u32,
    /// Lanes. Defaults to 1.
    pub parallelism: u32,
}

impl Default for HashParams {
    /// The OWASP Password Storage Cheat Sheet's first Argon2id line: m = 19 MiB,
    /// t = 2, p = 1.
    fn default() -> Self {
        HashParams {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Why hashing or verifying did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// Shorter than [`MIN_PASSWORD_BYTES`].
    #[error("password must be at least 8 bytes")]
    TooShort,
    /// Longer than [`MAX_PASSWORD_BYTES`].
    #[error("password must be at most 1024 bytes")]
    TooLong,
    /// Every hashing slot is busy and the wait queue is full: try again shortly.
    #[error("password hashing is saturated")]
    Busy,
    /// The hash function failed or the stored hash is unreadable.
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// The result of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verification {
    /// The password matches. When `needs_rehash` is set, the stored hash used other
    /// parameters than the current ones and should be replaced by a fresh hash.
    Match {
        /// Store a new hash of this password.
        needs_rehash: bool,
    },
    /// Wrong password, or no such user.
    Mismatch,
}

/// Hashes and verifies passwords on the blocking thread pool, at most `concurrency`
/// at once, with at most `queue` more waiting; beyond that it answers
/// [`PasswordError::Busy`] at once instead of letting latency grow without bound.
pub struct PasswordHasher {
    params: HashParams,
    arenas: Arc<Arenas>,
    permits: Arc<Semaphore>,
    capacity: usize,
    in_flight: Arc<AtomicUsize>,
    /// A hash of a random password, verified against for unknown users so that their
    /// answer takes as long as a wrong password's.
    dummy: Arc<str>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .field("capacity", &self.capacity)
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Defaults to the number of cores minus one, at least one: hashing never takes every
/// core from the requests that only verify tokens.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

impl PasswordHasher {
    /// A hasher running at most `concurrency` hashes at once with at most `queue`
    /// callers waiting. Computes the dummy hash, so it takes one hash's time.
    pub fn new(
        params: HashParams,
        concurrency: usize,
        queue: usize,
    ) -> Result<Self, PasswordError> {
        let built = Params::builder()
            .memory(Memory::kib(u64::from(params.memory_kib)))
            .passes(params.iterations)
            .lanes(params.parallelism)
            .build()
            .map_err(|e| PasswordError::Internal(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, built);
        let mut random = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(random.as_mut_slice())
            .map_err(|_| PasswordError::Internal("no randomness".into()))?;
        let dummy = argon2
            .hash_password_with_random_salt(random.as_slice())
            .map_err(|e| PasswordError::Internal(e.to_string()))?;
        let concurrency = concurrency.max(1);
        Ok(PasswordHasher {
            params,
            arenas: Arc::new(Arenas {
                argon2,
                idle: Mutex::new(Vec::new()),
            }),
            permits: Arc::new(Semaphore::new(concurrency)),
            capacity: concurrency + queue,
            in_flight: Arc::new(AtomicUsize::new(0)),
            dummy: dummy.into(),
        })
    }

    /// The parameters new hashes use.
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// Jobs hashing or waiting for a slot now (for a queue-depth gauge).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Runs `job` on the blocking pool once a slot is free; refuses at once when the
    /// slots and the queue are all taken.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Hasher) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(PasswordError::Busy);
        }
        // Released on every path, including cancellation of this future.
        let _slot = InFlight(self.in_flight.clone());
        let queued = std::time::Instant::now();
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Internal("hasher closed".into()))?;
        // How long the job waited for a hashing slot (the `metrics` facade: a no-op
        // unless the application installs a recorder).
        metrics::histogram!("portcullis_hash_wait_seconds").record(queued.elapsed().as_secs_f64());
        let arenas = self.arenas.clone();
        tokio::task::spawn_blocking(move || {
            let mut hasher = arenas.take();
            let out = job(&mut hasher);
            arenas.give_back(hasher);
            drop(permit);
            out
        })
        .await
        .map_err(|e| PasswordError::Internal(e.to_string()))
    }

    /// Hashes a password into a PHC string with a fresh random salt.
    pub async fn hash(&self, password: Password) -> Result<String, PasswordError> {
        self.run(move |hasher| hasher.hash_password_with_random_salt(password.bytes()))
            .await?
            .map_err(|e| PasswordError::Internal(e.to_string()))
    }

    /// Checks a password against a stored PHC string, or against the dummy hash when
    /// there is no such user (`stored` is `None`), which always answers `Mismatch`
    /// after the same amount of work.
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<&str>,
    ) -> Result<Verification, PasswordError> {
        let known = stored.is_some();
        let stored: Arc<str> = stored.map_or_else(|| self.dummy.clone(), Arc::from);
        let current = self.params;
        #[cfg(feature = "legacy-hashes")]
        let dummy = self.dummy.clone();
        self.run(move |hasher| {
            // Another system's hash (with `legacy-hashes`): a match is always due for a
            // rehash to Argon2id at the current parameters.
            #[cfg(feature = "legacy-hashes")]
            if known && !uses_params(&stored, current) {
                return match legacy::verify(&stored, password.bytes()) {
                    Some(true) => Verification::Match { needs_rehash: true },
                    Some(false) => Verification::Mismatch,
                    // Nothing it can check (a hash kept from import as unusable): the
                    // same work as an unknown account's, and no match.
                    None => {
                        let _ =
                            hasher.verify_password(&dummy, password.bytes(), Algorithm::Argon2id);
                        Verification::Mismatch
                    }
                };
            }
            let ok = hasher
                .verify_password(&stored, password.bytes(), Algorithm::Argon2id)
                .is_ok();
            if !(ok && known) {
                return Verification::Mismatch;
            }
            Verification::Match {
                needs_rehash: !uses_params(&stored, current),
            }
        })
        .await
    }
}

/// The hashing slots' block arenas, kept between hashes (argon2-rust's [`Hasher`]).
///
/// A fresh arena per hash (the one-shot API) costs a login its page faults over the
/// whole `m` (19 MiB at the defaults) and an `mmap`/`munmap` pair: a profile of logins
/// put that at about 6 % of the server's CPU on one machine, and `login-cost` at a
/// quarter of the hash on another (docs/BENCHMARKS.md). A kept arena skips both. It is
/// wiped when each hash returns, as the one-shot arena was before it was freed (the
/// crate's `zeroize-memory`, named in the workspace's `Cargo.toml` so that it cannot be
/// lost with the defaults), so no password-derived block outlives its hash. The price
/// is `m` of resident memory per hashing slot once that many hashes have run at once:
/// the memory the slots would take under load anyway. At most one arena per slot is
/// kept, since a hash holds a slot while it has an arena.
struct Arenas {
    argon2: Argon2,
    idle: Mutex<Vec<Hasher>>,
}

impl Arenas {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Hasher>> {
        // A panic while holding the lock leaves a list of wiped arenas: still usable.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A kept arena, or a new (empty: it allocates on its first hash) one.
    fn take(&self) -> Hasher {
        self.idle().pop().unwrap_or_else(|| self.argon2.hasher())
    }

    fn give_back(&self, hasher: Hasher) {
        self.idle().push(hasher);
    }
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// True when a PHC string is Argon2id v1.3 with exactly these parameters.
fn uses_params(phc: &str, params: HashParams) -> bool {
    argon2_rust::decode_string(phc, Algorithm::Argon2id).is_ok_and(|d| {
        d.version == Version::V0x13
            && d.params.memory_kib() == params.memory_kib
            && d.params.passes() == params.iterations
            && d.params.lanes() == params.parallelism
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 9106 §5.3, the Argon2id test vector of the reference implementation
    /// (version 0x13, 32 KiB, 3 passes, 4 lanes, with secret and associated data).
    #[test]
    fn argon2id_matches_the_rfc_9106_test_vector() {
        let params = Params::builder()
            .memory(Memory::kib(32))
            .passes(3)
            .lanes(4)
            .build()
            .unwrap();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut tag = [0u8; 32];
        argon2
            .hash_into_with_ad(&[1; 32], &[2; 16], &[3; 8], &[4; 12], &mut tag)
            .unwrap();
        assert_eq!(
            hex(&tag),
            "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
        );
    }

    fn small() -> HashParams {
        HashParams {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn pw(s: &str) -> Password {
        Password::new(s.to_owned()).unwrap()
    }

    /// Hashes and checks through the kept arenas give the one-shot API's answers, and
    /// no more arenas are kept than there are slots, however many jobs ran at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kept_arenas_answer_as_fresh_ones_and_one_is_kept_per_slot_at_most() {
        let hasher = Arc::new(PasswordHasher::new(small(), 2, 64).unwrap());
        let phc = hasher.hash(pw("correct horse")).await.unwrap();
        // The one-shot API, with a fresh arena, accepts what the kept one wrote.
        assert!(Argon2::verify_password(&phc, b"correct horse", Algorithm::Argon2id).is_ok());
        let jobs: Vec<_> = (0..16)
            .map(|i| {
                let (hasher, phc) = (hasher.clone(), phc.clone());
                tokio::spawn(async move {
                    let (typed, stored) = match i % 3 {
                        0 => ("correct horse", Some(phc.as_str())),
                        1 => ("wrong horse!", Some(phc.as_str())),
                        _ => ("correct horse", None),
                    };
                    (i, hasher.verify(pw(typed), stored).await.unwrap())
                })
            })
            .collect();
        for job in jobs {
            let (i, answer) = job.await.unwrap();
            let expected = if i % 3 == 0 {
                Verification::Match {
                    needs_rehash: false,
                }
            } else {
                Verification::Mismatch
            };
            assert_eq!(answer, expected, "job {i}");
        }
        let kept = hasher.arenas.idle().len();
        assert!((1..=2).contains(&kept), "{kept} arenas kept for 2 slots");
        assert_eq!(hasher.in_flight(), 0);
    }

    /// A hash stored at other parameters (more memory than the kept arenas have)
    /// still verifies, and asks for a rehash.
    #[tokio::test]
    async fn a_hash_at_other_parameters_verifies_beside_the_kept_arenas() {
        let hasher = PasswordHasher::new(small(), 1, 4).unwrap();
        let bigger = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::builder()
                .memory(Memory::kib(1024))
                .passes(1)
                .lanes(1)
                .build()
                .unwrap(),
        )
        .hash_password_with_random_salt(b"correct horse")
        .unwrap();
        assert_eq!(
            hasher
                .verify(pw("correct horse"), Some(&bigger))
                .await
                .unwrap(),
            Verification::Match { needs_rehash: true }
        );
        assert_eq!(
            hasher
                .verify(pw("wrong horse!"), Some(&bigger))
                .await
                .unwrap(),
            Verification::Mismatch
        );
    }

    /// The same tags as RustCrypto's `argon2` at the parameters we use, for several
    /// passwords and salts, and PHC strings each side verifies.
    #[test]
    fn argon2id_agrees_with_rustcrypto_at_the_owasp_parameters() {
        let p = HashParams::default();
        let ours = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::builder()
                .memory(Memory::kib(u64::from(p.memory_kib)))
                .passes(p.iterations)
                .lanes(p.parallelism)
                .build()
                .unwrap(),
        );
        let theirs = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32)).unwrap(),
        );
        for (password, salt) in [
            (
                &b"correct horse battery staple"[..],
                &b"0123456789abcdef"[..],
            ),
            ("pässwörd ✓ with ünïcode".as_bytes(), &[0u8; 16][..]),
            (&[0xffu8; 1024][..], &[7u8; 32][..]),
        ] {
            let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
            ours.hash_into(password, salt, &mut a).unwrap();
            theirs.hash_password_into(password, salt, &mut b).unwrap();
            assert_eq!(a, b);
        }
        // A PHC string we write verifies with theirs.
        let phc = ours
            .hash_password_with_random_salt(b"correct horse")
            .unwrap();
        use argon2::PasswordVerifier as _;
        let parsed = argon2::PasswordHash::new(&phc).unwrap();
        assert!(theirs.verify_password(b"correct horse", &parsed).is_ok());
        assert!(theirs.verify_password(b"wrong horse", &parsed).is_err());
    }
}
