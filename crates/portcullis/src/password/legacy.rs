//! Password hashes made by other systems, so that accounts moved from them keep their
//! passwords (feature `legacy-hashes`): bcrypt (`$2a$`, `$2b$`, `$2y$`), Argon2i and
//! Argon2id at any parameters (`$argon2i$`, `$argon2id$`), scrypt (`$scrypt$`) and
//! PBKDF2-SHA256 (`$pbkdf2-sha256$`) in PHC string format.
//!
//! [`PasswordHasher::verify`](super::PasswordHasher::verify) accepts them with this
//! feature on, through the same bounded pool as Argon2id, and a match always asks for
//! a rehash (`needs_rehash`): the caller replaces the legacy hash with Argon2id at the
//! current parameters. [`inspect`] says, without a password, whether a stored hash is
//! one of these, and whether it is too weak to keep.
//!
//! Verification is the maintained crates' (`bcrypt`; RustCrypto's `scrypt` and
//! `pbkdf2`; `argon2-rust` for Argon2i); nothing here computes a hash.

use argon2_rust::params::{Memory, TagLen};
use argon2_rust::{Algorithm, Argon2, Params};
use pbkdf2::password_hash::PasswordVerifier as _;
use pbkdf2::password_hash::phc::PasswordHash;

/// The schemes [`inspect`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// Argon2id (any parameters; at the current ones it is no legacy hash at all).
    Argon2id,
    /// Argon2i.
    Argon2i,
    /// bcrypt, any of `$2a$`, `$2b$`, `$2y$`.
    Bcrypt,
    /// scrypt in PHC format.
    Scrypt,
    /// PBKDF2 with HMAC-SHA-256 in PHC format.
    Pbkdf2Sha256,
}

impl Scheme {
    /// Its usual name.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2id => "argon2id",
            Scheme::Argon2i => "argon2i",
            Scheme::Bcrypt => "bcrypt",
            Scheme::Scrypt => "scrypt",
            Scheme::Pbkdf2Sha256 => "pbkdf2-sha256",
        }
    }
}

/// What a stored hash is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inspection {
    /// A hash [`PasswordHasher::verify`](super::PasswordHasher::verify) checks.
    Usable(Scheme),
    /// A hash too weak to keep: bcrypt below cost 8, PBKDF2 below 100,000 iterations,
    /// scrypt below N = 2^14, or an unsalted digest (hex or base64 of an MD5, SHA-1 or
    /// SHA-2 output). The reason says which.
    TooWeak(String),
    /// Nothing this module reads; the reason says why.
    Unknown(String),
}

/// The most memory an Argon2 hash may ask for here (256 MiB): a stored hash's cost is
/// checked before anything is allocated.
const MAX_ARGON2_KIB: u32 = 256 * 1024;
/// The most passes and lanes an Argon2 hash may ask for here.
const MAX_ARGON2_PASSES: u32 = 64;
const MAX_ARGON2_LANES: u32 = 16;
/// The highest bcrypt cost accepted (the format allows 31: about 2^31 rounds, hours).
const MAX_BCRYPT_COST: u32 = 20;
/// The most scrypt may ask for: N up to 2^20 with r = 8 (1 GiB), p up to 16.
const MAX_SCRYPT_LOG_N: u8 = 20;
/// The most PBKDF2 iterations accepted (10 million: seconds of work).
const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;

/// Says what `stored` is, without a password.
pub fn inspect(stored: &str) -> Inspection {
    if stored.starts_with("$argon2id$") {
        return argon2_bounds(stored, Algorithm::Argon2id, Scheme::Argon2id);
    }
    if stored.starts_with("$argon2i$") {
        return argon2_bounds(stored, Algorithm::Argon2i, Scheme::Argon2i);
    }
    if stored.starts_with("$argon2d$") {
        return Inspection::Unknown(
            "Argon2d is not a password hash (it is not side-channel safe)".into(),
        );
    }
    if let Some(cost) = bcrypt_cost(stored) {
        return match cost {
            Err(why) => Inspection::Unknown(why),
            Ok(cost) if cost < 8 => Inspection::TooWeak(format!("bcrypt cost {cost} (below 8)")),
            Ok(cost) if cost > MAX_BCRYPT_COST => Inspection::Unknown(format!(
                "bcrypt cost {cost} (above {MAX_BCRYPT_COST}: hours per login)"
            )),
            Ok(_) => Inspection::Usable(Scheme::Bcrypt),
        };
    }
    if stored.starts_with("$scrypt$") {
        return match PasswordHash::new(stored) {
            Err(e) => Inspection::Unknown(format!("not a PHC scrypt string: {e}")),
            Ok(hash) => match scrypt::Params::try_from(&hash) {
                Err(e) => Inspection::Unknown(format!("scrypt parameters: {e}")),
                Ok(params)
                    if params.log_n() > MAX_SCRYPT_LOG_N || params.p() > 16 || params.r() > 32 =>
                {
                    Inspection::Unknown("scrypt parameters beyond N = 2^20, r = 32, p = 16".into())
                }
                Ok(params) if params.log_n() < 14 => {
                    Inspection::TooWeak(format!("scrypt N = 2^{} (below 2^14)", params.log_n()))
                }
                Ok(_) if hash.salt.is_none() || hash.hash.is_none() => {
                    Inspection::Unknown("scrypt string without salt or hash".into())
                }
                Ok(_) => Inspection::Usable(Scheme::Scrypt),
            },
        };
    }
    if stored.starts_with("$pbkdf2-sha256$") {
        return match PasswordHash::new(stored) {
            Err(e) => Inspection::Unknown(format!("not a PHC pbkdf2-sha256 string: {e}")),
            Ok(hash) => match hash.params.get_decimal("i") {
                None => Inspection::Unknown("pbkdf2-sha256 without i= (iterations)".into()),
                Some(rounds) if rounds < 100_000 => {
                    Inspection::TooWeak(format!("PBKDF2 with {rounds} iterations (below 100,000)"))
                }
                Some(rounds) if rounds > MAX_PBKDF2_ROUNDS => Inspection::Unknown(format!(
                    "PBKDF2 with {rounds} iterations (above {MAX_PBKDF2_ROUNDS})"
                )),
                Some(_) if hash.salt.is_none() || hash.hash.is_none() => {
                    Inspection::Unknown("pbkdf2-sha256 string without salt or hash".into())
                }
                Some(_) => Inspection::Usable(Scheme::Pbkdf2Sha256),
            },
        };
    }
    if is_unsalted_digest(stored) {
        return Inspection::TooWeak(
            "an unsalted digest (MD5, SHA-1 or SHA-2 of the password alone)".into(),
        );
    }
    Inspection::Unknown(
        "not bcrypt ($2a$, $2b$, $2y$), Argon2 ($argon2id$, $argon2i$), scrypt ($scrypt$) or \
         PBKDF2-SHA256 ($pbkdf2-sha256$) in PHC form"
            .into(),
    )
}

fn argon2_bounds(stored: &str, algorithm: Algorithm, scheme: Scheme) -> Inspection {
    match argon2_rust::decode_string(stored, algorithm) {
        Err(e) => Inspection::Unknown(format!("not a PHC {} string: {e}", scheme.name())),
        Ok(d)
            if d.params.memory_kib() > MAX_ARGON2_KIB
                || d.params.passes() > MAX_ARGON2_PASSES
                || d.params.lanes() > MAX_ARGON2_LANES =>
        {
            Inspection::Unknown(format!(
                "{} asks for more than {MAX_ARGON2_KIB} KiB, {MAX_ARGON2_PASSES} passes or \
                 {MAX_ARGON2_LANES} lanes",
                scheme.name(),
            ))
        }
        Ok(_) => Inspection::Usable(scheme),
    }
}

/// The cost of a bcrypt string (`$2a$10$` + 53 characters), or `None` when it is not
/// one at all.
fn bcrypt_cost(stored: &str) -> Option<Result<u32, String>> {
    let rest = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|p| stored.strip_prefix(p))?;
    let Some((cost, tail)) = rest.split_once('$') else {
        return Some(Err("bcrypt string without a cost".into()));
    };
    let Ok(cost) = cost.parse::<u32>() else {
        return Some(Err(format!("bcrypt cost {cost:?} is not a number")));
    };
    if !(4..=31).contains(&cost) || tail.len() != 53 {
        return Some(Err("not a bcrypt string ($2b$NN$ and 53 characters)".into()));
    }
    Some(Ok(cost))
}

/// Hex or base64 of 16, 20, 32, 48 or 64 bytes, alone: a bare digest.
fn is_unsalted_digest(stored: &str) -> bool {
    let s = stored
        .trim_start_matches("{SHA}")
        .trim_start_matches("{MD5}");
    let hex = s.bytes().all(|b| b.is_ascii_hexdigit()) && [32, 40, 64, 96, 128].contains(&s.len());
    let b64 = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        && [24, 28, 44, 64, 88].contains(&s.len())
        && s != stored;
    hex || b64
}

/// Checks `password` against a legacy hash: `None` when `stored` is none of these (or
/// beyond the bounds of [`inspect`]), else whether it matches.
pub(super) fn verify(stored: &str, password: &[u8]) -> Option<bool> {
    let Inspection::Usable(scheme) = inspect(stored) else {
        return None;
    };
    Some(match scheme {
        Scheme::Argon2id | Scheme::Argon2i => {
            let algorithm = if scheme == Scheme::Argon2i {
                Algorithm::Argon2i
            } else {
                Algorithm::Argon2id
            };
            let ceiling = Params::builder()
                .memory(Memory::kib(u64::from(MAX_ARGON2_KIB)))
                .passes(MAX_ARGON2_PASSES)
                .lanes(MAX_ARGON2_LANES)
                .tag_len(TagLen::bytes(64))
                .build()
                .ok()?;
            Argon2::verify_encoded_bounded(stored, password, algorithm, &ceiling).is_ok()
        }
        Scheme::Bcrypt => bcrypt::verify(password, stored).unwrap_or(false),
        Scheme::Scrypt => PasswordHash::new(stored).is_ok_and(|h| {
            scrypt::Scrypt::default()
                .verify_password(password, &h)
                .is_ok()
        }),
        Scheme::Pbkdf2Sha256 => PasswordHash::new(stored).is_ok_and(|h| {
            pbkdf2::Pbkdf2::default()
                .verify_password(password, &h)
                .is_ok()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made on this project's machines by the libraries named, for the passwords given
    // (crates/portcullis-server/tests/vectors makes fresh ones on every CI run).
    const VECTORS: &[(&str, &str, &str)] = &[
        (
            "bcrypt (npm, native) cost 10",
            "node bcrypt password",
            "$2b$10$skWkwxhMyfzSUe8VFk5v/u8CZ7DHKmYy81JzXgI5hJImE3GUMQa5a",
        ),
        (
            "bcryptjs cost 9 as $2y$",
            "bcrypt 2y password",
            "$2y$09$j4b35oZItPdz.ab8lYMvOOfeBkCAl0GUq5w6SPRbbZhTJyPapYdl2",
        ),
        (
            "bcrypt (pyca) $2a$ cost 8",
            "python bcrypt password a",
            "$2a$08$lc/4.6uhV4W545KCBpzMHOWchh1ruXRlsUPf33jk1A.bOfnbIvaVK",
        ),
        (
            "argon2-cffi argon2i",
            "argon2 cffi password i",
            "$argon2i$v=19$m=4096,t=3,p=2$4Au/C6JIvnlC2nR5R5nGQg$HGrKuensuGC0g26Kpt347YnNjzWShKUZOt6PthJl0QE",
        ),
        (
            "argon2-cffi argon2id",
            "argon2 cffi password",
            "$argon2id$v=19$m=19456,t=2,p=1$d/dpRdn2NBtjCdvDtgxObA$Bh5M32qy9Nwq/mJwMplZ34zP223GAYeEyk/YkU0B+3Q",
        ),
        (
            "crypto.scryptSync",
            "node scrypt password",
            "$scrypt$ln=14,r=8,p=1$bIZ/xHpseT2ots2AGiEaAg$psSFfghU7hRJCgFW6AnlaS99JiwpJQGg1PIkszt6br4",
        ),
        (
            "hashlib.pbkdf2_hmac sha256",
            "hashlib pbkdf2 password",
            "$pbkdf2-sha256$i=100000,l=32$heBm4mj6D02CQVQsLT+yLw$m24UKp0Ep7dC31jHxRtBtybuncOcYh+c1WmmshQP5cM",
        ),
    ];

    #[test]
    fn hashes_of_other_libraries_verify_and_wrong_passwords_do_not() {
        for (made_by, password, hash) in VECTORS {
            assert!(
                matches!(inspect(hash), Inspection::Usable(_)),
                "{made_by}: {:?}",
                inspect(hash)
            );
            assert_eq!(verify(hash, password.as_bytes()), Some(true), "{made_by}");
            assert_eq!(verify(hash, b"not the password"), Some(false), "{made_by}");
        }
    }

    #[test]
    fn weak_and_unknown_hashes_are_told_apart() {
        let weak = |h: &str| matches!(inspect(h), Inspection::TooWeak(_));
        let unknown = |h: &str| matches!(inspect(h), Inspection::Unknown(_));
        // bcrypt below cost 8, PBKDF2 below 100,000 iterations, scrypt below 2^14.
        assert!(weak(
            "$2b$05$skWkwxhMyfzSUe8VFk5v/u8CZ7DHKmYy81JzXgI5hJImE3GUMQa5a"
        ));
        assert!(weak(
            "$pbkdf2-sha256$i=1000,l=32$heBm4mj6D02CQVQsLT+yLw$m24UKp0Ep7dC31jHxRtBtybuncOcYh+c1WmmshQP5cM"
        ));
        assert!(weak(
            "$scrypt$ln=10,r=8,p=1$bIZ/xHpseT2ots2AGiEaAg$psSFfghU7hRJCgFW6AnlaS99JiwpJQGg1PIkszt6br4"
        ));
        // Unsalted digests: MD5 and SHA-256 in hex, SHA-1 in base64.
        assert!(weak("5f4dcc3b5aa765d61d8327deb882cf99"));
        assert!(weak(
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        ));
        assert!(weak("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="));
        // Not a hash this reads, or beyond what a login may cost.
        assert!(unknown("correct horse battery"));
        assert!(unknown(
            "$2x$10$skWkwxhMyfzSUe8VFk5v/u8CZ7DHKmYy81JzXgI5hJImE3GUMQa5a"
        ));
        assert!(unknown(
            "$2b$31$skWkwxhMyfzSUe8VFk5v/u8CZ7DHKmYy81JzXgI5hJImE3GUMQa5a"
        ));
        assert!(unknown("$2b$10$short"));
        assert!(unknown(
            "$argon2d$v=19$m=4096,t=3,p=1$4Au/C6JIvnlC2nR5R5nGQg$HGrKuensuGC0g26Kpt347YnNjzWShKUZOt6PthJl0QE"
        ));
        assert!(unknown(
            "$argon2id$v=19$m=4194304,t=2,p=1$d/dpRdn2NBtjCdvDtgxObA$Bh5M32qy9Nwq/mJwMplZ34zP223GAYeEyk/YkU0B+3Q"
        ));
        assert!(unknown(
            "$scrypt$ln=30,r=8,p=1$bIZ/xHpseT2ots2AGiEaAg$psSFfghU7hRJCgFW6AnlaS99JiwpJQGg1PIkszt6br4"
        ));
        assert!(unknown(
            "$pbkdf2-sha256$l=32$heBm4mj6D02CQVQsLT+yLw$m24UKp0Ep7dC31jHxRtBtybuncOcYh+c1WmmshQP5cM"
        ));
        assert!(unknown(
            "$pbkdf2-sha512$i=100000$heBm4mj6D02CQVQsLT+yLw$m24UKp0Ep7dC31jHxRtBtybuncOcYh+c1WmmshQP5cM"
        ));
        // Nothing unknown is checked.
        assert_eq!(
            verify("5f4dcc3b5aa765d61d8327deb882cf99", b"password"),
            None
        );
        assert_eq!(verify("!import:too-weak", b"password"), None);
    }

    /// The example of passlib's documentation, as RustCrypto's scrypt tests it: a PHC
    /// string from a third implementation.
    #[test]
    fn passlibs_scrypt_example_verifies() {
        let hash = "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E";
        assert_eq!(verify(hash, b"password"), Some(true));
    }
}
