//! The session secret (the cookie's value, stored only as its hash) and the
//! synchronizer token derived from it for forms.

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::error::Error;
use crate::b64;

/// The secret of a session: 256 random bits, base64url, the cookie's value. Only its
/// hash is ever stored.
pub struct SessionSecret(pub(super) String);

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecret([redacted])")
    }
}

impl Drop for SessionSecret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl SessionSecret {
    /// A new random secret.
    pub fn generate() -> Result<SessionSecret, Error> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Random)?;
        let secret = SessionSecret(b64::encode(&bytes));
        zeroize::Zeroize::zeroize(&mut bytes);
        Ok(secret)
    }

    /// Parses a presented secret: exactly the shape [`SessionSecret::generate`] makes.
    pub fn parse(text: &str) -> Option<SessionSecret> {
        (text.len() == 43
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| SessionSecret(text.to_owned()))
    }

    /// The hash the store keeps.
    pub fn hash(&self) -> SessionHash {
        let d = digest::digest(&digest::SHA256, self.0.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        SessionHash(out)
    }

    /// The synchronizer (CSRF) token of this session: derived from the secret with a
    /// domain-separated hash, so it needs no storage, cannot be computed without the
    /// cookie, and does not reveal the cookie.
    pub(super) fn csrf_token(&self) -> String {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"portcullis csrf token v1\0");
        ctx.update(self.0.as_bytes());
        b64::encode(ctx.finish().as_ref())
    }
}

/// SHA-256 of a session secret: what the store looks sessions up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionHash(pub [u8; 32]);

impl std::fmt::Debug for SessionHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionHash([redacted])")
    }
}
